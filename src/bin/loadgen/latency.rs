//! `ban-latency`: attackers paced at a fixed rate against a running daemon, each until
//! `nft monitor` shows its address; reports the decision-to-kernel latency and the overshoot.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::*;

/// Element additions seen by `nft monitor`: address → arrival time.
async fn monitor(
    command: &str,
    seen: mpsc::UnboundedSender<(IpAddr, Instant)>,
) -> Result<tokio::process::Child> {
    let mut words = command.split_whitespace();
    let program = words.next().context("empty monitor command")?;
    let mut child = tokio::process::Command::new(program)
        .args(words)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {command}"))?;
    let stdout = child.stdout.take().context("monitor stdout")?;
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let now = Instant::now();
            // add element inet TABLE SET { ADDR timeout ..., ADDR ... }; `create element`
            // for an exclusive add (the daemon's new bans).
            let Some(rest) = line
                .strip_prefix("add element ")
                .or_else(|| line.strip_prefix("create element "))
            else {
                continue;
            };
            let Some((_, elements)) = rest.split_once('{') else {
                continue;
            };
            for element in elements.trim_end_matches('}').split(',') {
                if let Some(Ok(address)) = element.split_whitespace().next().map(str::parse) {
                    let _ = seen.send((address, now));
                }
            }
        }
    });
    Ok(child)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) async fn ban_latency(args: LatencyArgs) -> Result<()> {
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let _monitor = monitor(&args.monitor, seen_tx).await?;
    // nft monitor prints nothing when it is ready; give it time to subscribe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The attacker runs on a thread of its own with blocking sends and `thread::sleep`
    // pacing (microseconds, where tokio's timer ticks in milliseconds), while the monitor
    // is read on the runtime.
    let attacker = args.clone();
    let (latencies, overshoots, missed) =
        tokio::task::spawn_blocking(move || attack(&attacker, seen_rx)).await??;
    report_latency(&args, latencies, overshoots, missed);
    Ok(())
}

/// Per attacker: failures at exactly `attacker_rate` (each one `interval` after the previous
/// send, never a catch-up burst) until `nft monitor` shows its address. Returns the
/// latencies (ms), the overshoots (failures sent after the threshold and before the element
/// was seen, by send time) and the attackers never seen.
fn attack(
    args: &LatencyArgs,
    mut seen_rx: mpsc::UnboundedReceiver<(IpAddr, Instant)>,
) -> Result<(Vec<f64>, Vec<usize>, u32)> {
    let mut stream = std::net::TcpStream::connect(args.target)
        .with_context(|| format!("connecting to {}", args.target))?;
    stream.set_nodelay(true)?;
    let interval = Duration::from_secs_f64(1.0 / args.attacker_rate.max(1) as f64);
    // How often the monitor is looked at while waiting for a send slot.
    let poll = Duration::from_micros(100).min(interval);
    let mut rng = mix::Rng::new(7);
    let mut early: HashMap<IpAddr, Instant> = HashMap::new();
    let mut latencies = Vec::new();
    let mut overshoots = Vec::new();
    let mut missed = 0u32;
    let mut text = String::new();
    for a in 0..args.attackers {
        let address = mix::attacker(args.first + a, args.ipv6);
        let begin = Instant::now();
        let mut threshold_at = None;
        let mut sent_after = Vec::new();
        let mut last_sent: Option<Instant> = None;
        let mut n = 0u32;
        let arrived = loop {
            // Drain the monitor first: the ban may have arrived.
            while let Ok((addr, at)) = seen_rx.try_recv() {
                early.insert(addr, at);
            }
            if let Some(at) = early.remove(&address) {
                break Some(at);
            }
            if begin.elapsed() > args.timeout {
                break None;
            }
            let due = last_sent.map_or(begin, |sent| sent + interval);
            let now = Instant::now();
            if now < due {
                std::thread::sleep((due - now).min(poll));
                continue;
            }
            text.clear();
            mix::failure_text(&mut text, &mut rng, address);
            let message =
                format!("<38>1 2026-11-25T08:32:44.000000+00:00 web01 sshd 4242 - -  {text}");
            let frame = format!("{} {message}", message.len());
            last_sent = Some(Instant::now());
            stream.write_all(frame.as_bytes())?;
            n += 1;
            if n == args.maxretry {
                threshold_at = Some(Instant::now());
            } else if n > args.maxretry {
                sent_after.extend(last_sent);
            }
        };
        match (arrived, threshold_at) {
            (Some(at), Some(threshold)) => {
                latencies.push(at.saturating_duration_since(threshold).as_secs_f64() * 1e3);
                // Failures sent after the threshold but before the monitor printed the ban.
                overshoots.push(sent_after.iter().filter(|&&sent| sent < at).count());
            }
            _ => missed += 1,
        }
        std::thread::sleep(args.pause);
    }
    Ok((latencies, overshoots, missed))
}

fn report_latency(
    args: &LatencyArgs,
    mut latencies: Vec<f64>,
    overshoots: Vec<usize>,
    missed: u32,
) {
    latencies.sort_by(f64::total_cmp);
    let max_overshoot = overshoots.iter().copied().max().unwrap_or(0);
    let with_overshoot = overshoots.iter().filter(|&&o| o > 0).count();
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    println!(
        "{}",
        json!({
            "attackers": args.attackers,
            "measured": latencies.len(),
            "missed": missed,
            "maxretry": args.maxretry,
            "attacker_rate": args.attacker_rate,
            "latency_ms": {
                "p50": round(percentile(&latencies, 50.0)),
                "p90": round(percentile(&latencies, 90.0)),
                "p99": round(percentile(&latencies, 99.0)),
                "max": round(latencies.last().copied().unwrap_or(f64::NAN)),
                "mean": round(latencies.iter().sum::<f64>() / latencies.len().max(1) as f64),
            },
            "overshoot": {
                "max": max_overshoot,
                "attackers_with_overshoot": with_overshoot,
            },
        })
    );
}
