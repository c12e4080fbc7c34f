//! Remote ban latency: from the threshold message reaching the collector to the element being
//! in server A's nft set, over a warm SSH connection; and, as the peer, what one ban costs
//! when every ban opens its own ssh connection (a fail2ban action running `ssh host nft ...`).
//!
//! Run as root: `cargo bench --bench remote` (env `S2B_REMOTE_BANS`, default 300). Uses the
//! fleet test bed of the integration tests (namespaces, real sshd and nft; nothing in the root
//! namespace). The message goes into the daemon's unix listener from this process, timestamped
//! just before `send`; the element's arrival is timestamped when `nft monitor` in A prints it.
//! Without root it prints why and exits 0.

#[path = "../integration/lab.rs"]
mod lab;

#[path = "../integration/fleet_lab.rs"]
mod fleet_lab;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fleet_lab::{Fleet, A_IP, PORT, TOOLS};
use lab::{tool, NFT_TABLE};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if !lab::preflight("remote bench", TOOLS) {
        return;
    }
    let bans: usize = std::env::var("S2B_REMOTE_BANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let mut f = Fleet::new("rbench");
    let devlog = f.lab.dir.join("devlog");
    f.start_daemon(&format!(
        "[[listen]]\ntype = \"unix\"\npath = \"{}\"\n\n\
         [jail.bench]\nenabled = true\nprograms = [\"benchd\"]\n\
         failregex = ['^Failed password for \\S+ from <HOST> port \\d+ ssh2$']\n\
         maxretry = 1\nbantime = \"10m\"\nplacement = [\"target:a\"]\n",
        devlog.display()
    ));
    f.wait_connected("a", Duration::from_secs(20));

    // nft monitor in A prints each element as the kernel commits it.
    let mut monitor = Command::new(tool("ip"))
        .args(["netns", "exec", &f.a])
        .arg(tool("nft"))
        .args(["monitor", "elements"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nft monitor");
    let (seen_tx, seen_rx) = mpsc::channel::<(Instant, String)>();
    let stdout = monitor.stdout.take().expect("monitor stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if seen_tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));

    let socket = UnixDatagram::unbound().expect("unix socket");
    let mut latencies = Vec::with_capacity(bans);
    let mut lost = 0;
    for i in 0..bans {
        // 198.18.0.0/15 (benchmarking range): only ever set elements, never routed.
        let address = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        let message = format!(
            "<38>Nov 25 10:00:00 benchd[1]: Failed password for root from {address} port 1 ssh2"
        );
        let sent = Instant::now();
        socket
            .send_to(message.as_bytes(), &devlog)
            .expect("send to the daemon's unix listener");
        let needle = format!("{{ {address} ");
        let deadline = sent + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match seen_rx.recv_timeout(left) {
                Ok((at, line)) if line.starts_with("add element") && line.contains(&needle) => {
                    latencies.push(at - sent);
                    break;
                }
                Ok(_) => continue,
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
        // Sequential bans on a warm connection, not a burst.
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    latencies.sort();

    // The peer: one ssh connection per ban, as a fail2ban action over ssh does.
    let mut cold = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        let out = f.lab.exec(
            &f.lab.srv.clone(),
            &[
                tool("ssh").display().to_string(),
                "-F".into(),
                f.lab.dir.join("ssh_config").display().to_string(),
                "-i".into(),
                f.client_key.display().to_string(),
                "-o".into(),
                "IdentitiesOnly=yes".into(),
                "-o".into(),
                "BatchMode=yes".into(),
                "-o".into(),
                "StrictHostKeyChecking=yes".into(),
                "-o".into(),
                format!("UserKnownHostsFile={}", f.known_hosts.display()),
                "-p".into(),
                PORT.to_string(),
                format!("root@{A_IP}"),
                "nft".into(),
                "add".into(),
                "element".into(),
                "inet".into(),
                NFT_TABLE.into(),
                "banned4".into(),
                format!("{{ 198.19.0.{} timeout 60s }}", i + 1),
            ],
            Duration::from_secs(20),
        );
        assert!(out.success(), "ssh peer: {}", out.describe());
        cold.push(started.elapsed());
    }
    cold.sort();

    println!("remote ban latency, threshold message -> element in A's set (warm SSH, {bans} bans, one at a time):");
    if latencies.is_empty() {
        println!("  no ban arrived ({lost} lost)");
        return;
    }
    println!(
        "  p50 {}  p90 {}  p99 {}  max {}  lost {lost}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
    );
    let cold_p50 = percentile(&cold, 0.5);
    println!(
        "peer: a new `ssh root@A nft add element ...` per ban (10 runs): p50 {}  max {}",
        ms(cold_p50),
        ms(cold[cold.len() - 1])
    );
    println!(
        "ratio peer p50 / syslog2ban p50: {:.1}x",
        cold_p50.as_secs_f64() / percentile(&latencies, 0.5).as_secs_f64()
    );
}
