//! A fail2ban filter file in a jail against the shipped native jail, on the sshd lines of the
//! load generator's mix: what running users' filter.d files unchanged costs per message.
//! fail2ban's sshd.conf comes from `$S2B_F2B_CORPUS/filter.d` (GPL test data, read at
//! run time); without it the benchmark says so and measures nothing.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syslog2ban::config::{self, JailConfig};
use syslog2ban::input::Origin;
use syslog2ban::jail::{Jail, Verdict};
use syslog2ban::parse::{parse_syslog, LogRecord};

#[path = "../src/bin/loadgen/mix.rs"]
mod mix;

const N: usize = 10_000;

fn jail_from(toml: &str) -> JailConfig {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jail.toml");
    std::fs::write(&path, toml).expect("write");
    let mut jails = config::load_jails(&[path], None).expect("jail loads");
    jails.remove(0)
}

fn count(jail: &mut Jail, records: &[LogRecord]) -> usize {
    let now = Instant::now();
    let origin = Origin::Local;
    records
        .iter()
        .filter(|r| {
            matches!(
                jail.process(r, origin, now),
                Verdict::Counted { .. } | Verdict::Offence(_)
            )
        })
        .count()
}

fn bench(c: &mut Criterion) {
    let Some(corpus) = std::env::var_os("S2B_F2B_CORPUS").map(PathBuf::from) else {
        println!("skipped: S2B_F2B_CORPUS is not set (fail2ban's filters are needed)");
        return;
    };
    let conf = corpus.join("filter.d/sshd.conf");
    if !conf.is_file() {
        println!("skipped: no {}", conf.display());
        return;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let native = config::load_jails(&[repo.join("conf.d/sshd.toml")], Some("sshd"))
        .expect("shipped sshd jail")
        .remove(0);
    // A maxretry no mix reaches: the benchmark measures matching and counting, not offences.
    let fail2ban = jail_from(&format!(
        "[jail.f2b]\nenabled = true\nmaxretry = 1000000\nfail2ban_filter = '{}'\n",
        conf.display()
    ));
    let mut mix = mix::Mix::new(mix::MixOptions::default());
    let now = Utc::now();
    let records: Vec<LogRecord> = std::iter::repeat_with(|| mix.next_message().0)
        .map(|f| parse_syslog(&f, now).expect("mix parses"))
        .filter(|r| native.programs.contains(&r.program))
        .take(N)
        .collect();
    let mut group = c.benchmark_group("fail2ban");
    group.throughput(Throughput::Elements(records.len() as u64));
    let mut check_native = Jail::new(&native);
    let mut check_f2b = Jail::new(&fail2ban);
    println!(
        "{} sshd records: native jail counts {}, fail2ban sshd.conf counts {}",
        records.len(),
        count(&mut check_native, &records),
        count(&mut check_f2b, &records)
    );
    let mut jail = Jail::new(&native);
    group.bench_function("sshd_records_native_jail", |b| {
        b.iter(|| count(&mut jail, &records))
    });
    let mut jail = Jail::new(&fail2ban);
    group.bench_function("sshd_records_fail2ban_sshd_conf", |b| {
        b.iter(|| count(&mut jail, &records))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
