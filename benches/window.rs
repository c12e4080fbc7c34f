//! The failure window: `record` on a tracker already holding 100,000 addresses (the default
//! max_tracked), for a new address (insert, at the cap: eviction) and for a known one.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syslog2ban::jail::window::FailureWindow;

fn address(i: u32) -> IpAddr {
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
}

const POPULATED: u32 = 100_000;

fn bench(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(1));

    // Known addresses: 100k tracked, each failing again. The clock advances 200 ms per
    // record and findtime is 100 ms, so each address holds one failure time (the lookup, the
    // retain and the push are measured, not a growing list).
    let mut w = FailureWindow::new(1_000_000, Duration::from_millis(100), 1_000_000);
    for i in 0..POPULATED {
        w.record(address(i), t0);
    }
    let mut i = 0u32;
    let mut step = 0u64;
    group.bench_function("record_known_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % POPULATED;
            step += 1;
            w.record(address(i), t0 + Duration::from_millis(200 * step))
        })
    });

    // New addresses below the cap (1M): an insert each time.
    let mut w = FailureWindow::new(5, Duration::from_secs(600), 10_000_000);
    for i in 0..POPULATED {
        w.record(address(i), t0);
    }
    let mut next = POPULATED;
    group.bench_function("record_new_100k", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            w.record(address(next), t0 + Duration::from_secs(1))
        })
    });

    // New addresses at the cap of 100k: every record evicts the longest tracked.
    let mut w = FailureWindow::new(5, Duration::from_secs(600), POPULATED as usize);
    for i in 0..POPULATED {
        w.record(address(i), t0);
    }
    let mut next = POPULATED;
    group.bench_function("record_new_at_cap_100k", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            w.record(address(next), t0 + Duration::from_secs(1))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
