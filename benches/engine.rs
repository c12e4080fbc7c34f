//! What counting one failure on the engine costs the collector: a batch of 2048 count-script
//! calls in one round trip (a storm's batch) to a real `redis-server` this bench starts on a
//! loopback port, each attacker failing three times (maxretry 3: every third call takes a
//! claim). Measured is the CPU time of the calling thread (encoding, the socket calls, reading
//! and parsing the replies), not the engine's: the engine is not limited in a cluster and
//! the collector is. Skipped without `redis-server`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syslog2ban::cluster::engine::{millis, CountArgs, FailureId, Keys};
use syslog2ban::cluster::resp::Connection;
use syslog2ban::config::EngineUrl;
use syslog2ban::target::Target;

const BATCH: usize = 2048;

/// redis-server on a free loopback port, without persistence; stopped by PID when dropped.
struct Engine(Child);

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_engine() -> Option<(Engine, u16)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let engine = Engine(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((engine, port));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn bench(c: &mut Criterion) {
    let Some((_engine, port)) = start_engine() else {
        eprintln!("skipped: no redis-server (apt-get install redis-server)");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let url = EngineUrl::parse(&format!("redis://127.0.0.1:{port}")).expect("a URL");
    let keys = Keys::new("bench");
    let (mut conn, mut sha) = runtime.block_on(async {
        let mut conn = Connection::connect(&url, None, Duration::from_secs(5))
            .await
            .expect("connect");
        let sha = keys.load_script(&mut conn).await.expect("load the script");
        (conn, sha)
    });
    let started_ms = millis(SystemTime::now());
    let mut sequence = 0u64;
    let (mut commands, mut counted) = (Vec::new(), Vec::new());
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("count 2048 failures (client CPU)", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let first = sequence;
                sequence += BATCH as u64;
                let targets: Vec<Target> = (first..sequence)
                    .map(|n| {
                        let attacker = 0xc612_0000 + (n / 3) as u32;
                        Target::from(IpAddr::V4(Ipv4Addr::from(attacker)))
                    })
                    .collect();
                let at_ms = millis(SystemTime::now());
                let args: Vec<CountArgs> = targets
                    .iter()
                    .zip(first..)
                    .map(|(target, n)| CountArgs {
                        jail: "sshd",
                        target: *target,
                        at_ms,
                        findtime_ms: 600_000,
                        claim_ms: 600_000,
                        maxretry: 3,
                        weight: 1,
                        member: FailureId {
                            node: "bench",
                            started_ms,
                            sequence: n,
                            entry: None,
                        },
                        origin: None,
                    })
                    .collect();
                let t0 = thread_cpu();
                runtime
                    .block_on(keys.count_all(
                        &mut conn,
                        &mut sha,
                        SystemTime::now(),
                        &args,
                        &mut commands,
                        &mut counted,
                    ))
                    .expect("counted");
                spent += thread_cpu() - t0;
                assert_eq!(counted.len(), BATCH);
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
