//! nft batch rendering: `batch_script` for 1, 100 and 5000 element changes (80% IPv4 adds
//! with a timeout, 20% IPv6 adds, plus 10% removes for the larger batches).

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syslog2ban::enforce::nft::{batch_script, ElementChange};

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
                ElementChange::Remove(address.into())
            } else {
                ElementChange::Add(address.into(), Some(Duration::from_millis(3_599_123)))
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

criterion_group!(benches, bench);
criterion_main!(benches);
