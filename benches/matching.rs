//! Routing + filter matching on a realistic mix: 30% sshd failures (10,000 attacker addresses,
//! 20% IPv6), 20% sshd lines that must not count, 50% other programs (some heard by other
//! jails, most by none), all 40 shipped jails of conf.d/ enabled. Also the whole per-message
//! path of the pipeline task (parse + route + jails) from the frame's bytes, and single filter
//! checks.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syslog2ban::config::{self, JailConfig};
use syslog2ban::input::Origin;
use syslog2ban::jail::{Jail, Verdict};
use syslog2ban::parse::{parse_syslog, LogRecord};
use syslog2ban::route::Router;

#[path = "../src/bin/loadgen/mix.rs"]
mod mix;

const N: usize = 10_000;

fn jails() -> Vec<JailConfig> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conf.d");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("conf.d")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let jails = config::load_jails(&files, None).expect("conf.d loads");
    assert_eq!(jails.len(), 40, "all shipped jails");
    jails
}

struct State {
    router: Router,
    jails: Vec<Jail>,
}

impl State {
    fn new(configs: &[JailConfig]) -> Self {
        State {
            router: Router::new(
                configs
                    .iter()
                    .map(|j| j.programs.iter().map(String::as_str)),
            ),
            jails: configs.iter().map(Jail::new).collect(),
        }
    }

    /// What pipeline::process does after parsing, minus counters and channels.
    fn route(&mut self, record: &LogRecord, origin: Origin, now: Instant) -> u32 {
        let mut counted = 0;
        for &index in self.router.jails_for(&record.program).iter() {
            match self.jails[index].process(record, origin, now) {
                Verdict::Counted { .. } | Verdict::Reported { .. } | Verdict::Offence(_) => {
                    counted += 1
                }
                Verdict::NoMatch | Verdict::Ignored => {}
            }
        }
        counted
    }
}

fn bench(c: &mut Criterion) {
    let configs = jails();
    let mut mix = mix::Mix::new(mix::MixOptions::default());
    let mut frames = Vec::with_capacity(N);
    let mut failures = 0;
    for _ in 0..N {
        let (frame, kind) = mix.next_message();
        failures += u32::from(matches!(kind, mix::Kind::Failure(_)));
        frames.push(frame);
    }
    let now_utc = Utc::now();
    let records: Vec<LogRecord> = frames
        .iter()
        .map(|f| parse_syslog(f, now_utc).expect("mix parses"))
        .collect();
    let origin = Origin::Peer("198.51.100.10:514".parse::<SocketAddr>().expect("addr"));

    // The mix is what it claims: every failure, and nothing else, is counted once.
    let mut check = State::new(&configs);
    let counted: u32 = records
        .iter()
        .map(|r| check.route(r, origin, Instant::now()))
        .sum();
    assert_eq!(counted, failures, "sshd failures counted exactly once each");

    let mut group = c.benchmark_group("matching");
    group.throughput(Throughput::Elements(N as u64));
    let mut state = State::new(&configs);
    group.bench_function("route_and_match_mix_40_jails", |b| {
        b.iter(|| {
            let now = Instant::now();
            records
                .iter()
                .map(|r| state.route(r, origin, now))
                .sum::<u32>()
        })
    });
    let mut state = State::new(&configs);
    group.bench_function("parse_route_match_mix_40_jails", |b| {
        b.iter(|| {
            let now = Instant::now();
            let now_utc = Utc::now();
            frames
                .iter()
                .map(|f| match parse_syslog(f, now_utc) {
                    Ok(r) => state.route(&r, origin, now),
                    Err(_) => 0,
                })
                .sum::<u32>()
        })
    });
    let only_sshd: Vec<JailConfig> = configs
        .iter()
        .filter(|j| j.name.as_str() == "sshd")
        .cloned()
        .collect();
    let mut state = State::new(&only_sshd);
    group.bench_function("parse_route_match_mix_sshd_only", |b| {
        b.iter(|| {
            let now = Instant::now();
            let now_utc = Utc::now();
            frames
                .iter()
                .map(|f| match parse_syslog(f, now_utc) {
                    Ok(r) => state.route(&r, origin, now),
                    Err(_) => 0,
                })
                .sum::<u32>()
        })
    });
    group.finish();

    let sshd = &only_sshd[0].filter;
    let mut group = c.benchmark_group("sshd_filter");
    group.throughput(Throughput::Elements(1));
    for (name, line) in [
        ("failed_password", "Failed password for root from 198.18.3.7 port 54290 ssh2"),
        ("failed_password_v6", "Failed password for invalid user admin from 2001:db8:0:7::1 port 54290 ssh2"),
        ("invalid_user", "Invalid user oracle from 198.18.3.7 port 54290"),
        ("no_match_closed", "Connection closed by authenticating user root 198.18.3.7 port 54290 [preauth]"),
        ("no_match_pam", "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.18.3.7  user=root"),
    ] {
        group.bench_function(name, |b| b.iter(|| sshd.check(std::hint::black_box(line))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
