//! What one ban costs after matching, stage by stage, on one thread without throttling: the
//! ban manager deciding it (`offence`) or taking another collector's (`adopt`), and the store
//! committing it (40 bans per transaction, as a collector at 0.3 core commits in a storm;
//! attackers in no particular order; and a storm's 35,000 adopted bans, a stream read's 175 per
//! transaction, into an empty store). In a ban storm these costs
//! are paid once per ban on every collector of a cluster, so they decide how far collectors
//! scale (`benches/system.sh` part cluster2) and how close a storm comes to the stream
//! without bans (part storm).

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use syslog2ban::ban::record::StoreOp;
use syslog2ban::ban::store::Store;
use syslog2ban::ban::{BanState, JailPolicy, Moment};
use syslog2ban::cluster::SharedBan;
use syslog2ban::config::{BanTime, JailName, PlacementRule};
use syslog2ban::input::Origin;
use syslog2ban::jail::Offence;
use syslog2ban::metrics::Metrics;
use syslog2ban::target::Target;

/// The `i`th attacker (198.18.0.0/15, benchmark space).
fn attacker(i: u32) -> Target {
    Target::from(std::net::IpAddr::V4(Ipv4Addr::from(0xc612_0000 + i)))
}

fn state() -> BanState {
    let policy = JailPolicy {
        name: JailName::new("sshd").expect("a jail name"),
        bantime: BanTime::For(Duration::from_secs(3600)),
        increment: None,
        placement: vec![PlacementRule::Local],
        kill_connections: false,
        ports: None,
    };
    BanState::new(
        vec![policy],
        None,
        Duration::from_secs(86400),
        Arc::new(Metrics::default()),
    )
}

fn offence(i: u32) -> Offence {
    Offence {
        jail: JailName::new("sshd").expect("a jail name"),
        target: attacker(i),
        origin: Origin::Local,
        origin_name: None,
        failures: 3,
        at: Instant::now(),
        sample: format!("Failed password for root from {} port 22 ssh2", attacker(i)),
        lines: Vec::new(),
    }
}

fn shared(i: u32) -> SharedBan {
    let now = SystemTime::now();
    SharedBan {
        node: "other".into(),
        jail: "sshd".into(),
        address: attacker(i),
        failures: 3,
        origin: "web1".into(),
        started: now,
        expires: Some(now + Duration::from_secs(3600)),
        sample: format!("Failed password for root from {} port 22 ssh2", attacker(i)),
        republished: false,
        decided_by: None,
        more_origins: Vec::new(),
        placement: None,
    }
}

/// Times `apply` on `iters` inputs made by `make`, on a state that starts empty (each input
/// handed over whole, as the manager hands them; dropping it is part of the time).
fn per_ban<T>(
    b: &mut criterion::Bencher<'_>,
    make: fn(u32) -> T,
    apply: fn(&mut BanState, T) -> Vec<StoreOp>,
) {
    b.iter_custom(|iters| {
        let mut state = state();
        let inputs: Vec<T> = (0..iters as u32).map(make).collect();
        let t0 = Instant::now();
        for input in inputs {
            std::hint::black_box(apply(&mut state, input));
        }
        t0.elapsed()
    })
}

/// Each iteration bans a new attacker, as a storm does: every sample starts from an empty
/// state that grows by one hold per ban (a storm's 50,000 bans are up to 50,000 holds).
fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("ban");
    group.throughput(Throughput::Elements(1));
    group.bench_function("offence (decide)", |b| {
        per_ban(b, offence, |state, offence| {
            state.offence_decided_by(offence, None, Moment::now())
        })
    });
    group.bench_function("adopt", |b| {
        per_ban(b, shared, |state, ban| {
            state
                .adopt(ban, "this", Moment::now())
                .into_iter()
                .collect()
        })
    });
    const BATCH: u32 = 40;
    group.throughput(Throughput::Elements(u64::from(BATCH)));
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut store = Store::open(dir.path()).expect("a store");
    let mut source = state();
    let mut next = 0u32;
    group.bench_function("store write (40 bans per commit)", |b| {
        b.iter_batched(
            || -> Vec<StoreOp> {
                (0..BATCH)
                    .flat_map(|_| {
                        next += 1;
                        // Scattered, as a storm's attackers arrive.
                        source.offence(&offence(next.wrapping_mul(7919) % (1 << 24)), Moment::now())
                    })
                    .collect()
            },
            |ops| store.write(&ops).expect("a commit"),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    // A storm's adopted bans as an adopting collector's store gets them: one stream read's
    // worth per commit, into a store that starts empty.
    const STORM: u32 = 35_000;
    const READ: usize = 175;
    let mut storm = c.benchmark_group("store");
    storm.sample_size(10);
    storm.throughput(Throughput::Elements(u64::from(STORM)));
    storm.bench_function("a storm's adopted bans (175 per commit)", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let mut store = Store::open(dir.path()).expect("a store");
                let mut state = state();
                let ops: Vec<StoreOp> = (0..STORM)
                    .flat_map(|i| {
                        state.adopt(
                            shared(i.wrapping_mul(7919) % (1 << 24)),
                            "this",
                            Moment::now(),
                        )
                    })
                    .collect();
                let t0 = Instant::now();
                for commit in ops.chunks(READ) {
                    store.write(commit).expect("a commit");
                }
                took += t0.elapsed();
            }
            took
        })
    });
    storm.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
