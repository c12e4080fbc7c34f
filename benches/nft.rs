//! nft batch rendering: `batch_script` for 1, 100 and 5000 element changes (80% IPv4 adds
//! with a timeout, 20% IPv6 adds, plus 10% removes for the larger batches).
//!
//! As root, also applying batches of 1 and 100 changes to a real table, the netlink way
//! (`enforce::netlink`) against the long-running `nft -e -i` it replaced for single addresses,
//! in the same run. The bench re-runs itself under `unshare --net`, so the table lives in a
//! private network namespace that disappears with the process.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use syslog2ban::enforce::netlink::Netlink;
use syslog2ban::enforce::nft::{batch_script, setup_script, ElementChange};
use syslog2ban::enforce::session::{local_spawner, NftSession};
use syslog2ban::target::Target;

/// Set in the re-run inside the private namespace.
const IN_NETNS: &str = "S2B_BENCH_IN_NETNS";
const TABLE: &str = "s2bbench";

fn changes(n: usize) -> Vec<ElementChange> {
    (0..n as u32)
        .map(|i| {
            let address = if i % 5 == 4 {
                IpAddr::V6(Ipv6Addr::new(
                    0x2001,
                    0xdb8,
                    0,
                    0,
                    0,
                    0,
                    (i >> 16) as u16,
                    i as u16,
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(0xc612_0000 + i))
            };
            if n > 1 && i % 10 == 9 {
                ElementChange::Remove(Target::from(address).into())
            } else {
                ElementChange::Add(
                    Target::from(address).into(),
                    Some(Duration::from_millis(3_599_123)),
                )
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("nft_batch");
    for n in [1usize, 100, 5000] {
        let batch = changes(n);
        assert!(batch_script("syslog2ban", &batch).contains("add element"));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("render_{n}"), |b| {
            b.iter(|| batch_script("syslog2ban", std::hint::black_box(&batch)))
        });
    }
    group.finish();
}

fn apply(c: &mut Criterion) {
    if std::env::var_os(IN_NETNS).is_none() {
        eprintln!("nft_apply skipped: needs root (it runs in a private network namespace)");
        return;
    }
    let nft = std::path::PathBuf::from("nft");
    let setup = std::process::Command::new(&nft)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("piped");
            stdin
                .write_all(setup_script(TABLE, syslog2ban::config::Hooks::default()).as_bytes())?;
            drop(stdin);
            child.wait()
        })
        .expect("nft runs");
    assert!(setup.success(), "nft could not create the bench table");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut netlink = Netlink::default();
    let mut session = NftSession::new(TABLE, local_spawner(nft));
    let mut group = c.benchmark_group("nft_apply");
    for n in [1usize, 100] {
        let batch = changes(n);
        let script = batch_script(TABLE, &batch);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("netlink_{n}"), |b| {
            b.iter(|| {
                netlink
                    .apply(TABLE, &batch)
                    .expect("encodable")
                    .expect("applied")
            })
        });
        group.bench_function(format!("nft_session_{n}"), |b| {
            b.iter(|| runtime.block_on(session.apply(&script)).expect("applied"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench, apply);

fn main() {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    if root && std::env::var_os(IN_NETNS).is_none() {
        let exe = std::env::current_exe().expect("own path");
        let status = std::process::Command::new("unshare")
            .arg("--net")
            .arg("--")
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env(IN_NETNS, "1")
            .status();
        match status {
            Ok(status) => std::process::exit(status.code().unwrap_or(1)),
            Err(e) => eprintln!("unshare --net failed ({e}); applying is not measured"),
        }
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
