//! Framing: RFC 6587 octet-counted and LF-terminated TCP streams cut into frames.
//! Input: 1000 messages of the benchmark mix (`src/bin/loadgen/mix.rs`), read as one buffer
//! (as after a large read) and in 16 KiB reads (as the daemon reads).

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use syslog2ban::input::framing::Framer;

#[path = "../src/bin/loadgen/mix.rs"]
mod mix;

const N: usize = 1000;

fn stream(octet: bool) -> Vec<u8> {
    let mut mix = mix::Mix::new(mix::MixOptions::default());
    let mut out = Vec::new();
    for _ in 0..N {
        let (message, _) = mix.next_message();
        if octet {
            out.extend_from_slice(format!("{} ", message.len()).as_bytes());
            out.extend_from_slice(&message);
        } else {
            out.extend_from_slice(&message);
            out.push(b'\n');
        }
    }
    out
}

fn frame_all(data: &[u8], read: usize) -> usize {
    let mut framer = Framer::new(65536);
    let mut buf = BytesMut::with_capacity(32 * 1024);
    let mut frames = 0;
    for chunk in data.chunks(read) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = framer.next_frame(&mut buf) {
            frames += usize::from(frame.is_ok());
        }
    }
    frames
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Elements(N as u64));
    for (name, octet) in [("octet_counted", true), ("lf", false)] {
        let data = stream(octet);
        assert_eq!(frame_all(&data, data.len()), N);
        assert_eq!(frame_all(&data, 16 * 1024), N);
        group.bench_function(format!("{name}/one_buffer"), |b| {
            b.iter_batched(
                || BytesMut::from(&data[..]),
                |mut buf| {
                    let mut framer = Framer::new(65536);
                    let mut frames = 0;
                    while let Some(frame) = framer.next_frame(&mut buf) {
                        frames += usize::from(frame.is_ok());
                    }
                    frames
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function(format!("{name}/16k_reads"), |b| {
            b.iter(|| frame_all(std::hint::black_box(&data), 16 * 1024))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
