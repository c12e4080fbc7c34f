//! The store's thread: group-commits what the ban manager hands it, logs each write once it
//! is durable, and keeps failed writes for retry.
//!
//! Owns the batching and the retry policy; the SQL is the store's (`Store::write`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info};

use super::{Store, StoreOp};
use crate::ban::record::report;
use crate::metrics::Metrics;
use crate::supervise::BusyClock;
use crate::throttle::{Decision, Throttle};

/// Writes kept for retry while the store fails (a full or read-only disk); beyond it the
/// oldest are dropped, counted and logged.
const MAX_BACKLOG: usize = 200_000;
/// While failing, a commit is retried this often (with whatever arrived meanwhile).
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// A commit of this many writes means more are coming: the next one waits [`COALESCE`].
const BUSY_BATCH: usize = 16;
/// How long a busy store gathers writes before its next commit: bans are enforced
/// meanwhile; only their row waits.
const COALESCE: Duration = Duration::from_millis(10);
/// Attempts at a clean stop before writes still failing are given up.
const FINAL_ATTEMPTS: u32 = 3;

/// Runs the store thread: group-commits writes and logs each once it is durable. A failed
/// commit is kept and retried, in order, until it succeeds (bounded by [`MAX_BACKLOG`]); the
/// bans are enforced meanwhile, and `status`, the log and the metrics say the store is failing.
/// Ends when `ops` closes.
pub fn spawn(
    mut store: Store,
    mut ops: mpsc::Receiver<StoreOp>,
    clock: Arc<BusyClock>,
    metrics: Arc<Metrics>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("ban-store".into())
        .spawn(move || {
            info!(db = %store.path.display(), "Ban store open");
            let health = &metrics.store;
            let mut backlog: Vec<StoreOp> = Vec::new();
            let mut closed = false;
            let mut final_attempts = 0;
            let failures_log = Throttle::new(3, Duration::from_secs(60));
            let mut busy = false;
            loop {
                let mut batch = std::mem::take(&mut backlog);
                if batch.is_empty() {
                    match ops.blocking_recv() {
                        Some(op) => batch.push(op),
                        None => break,
                    }
                    // Under a ban storm a commit per handful of bans costs more than the
                    // rows: wait a moment for more. A lone ban is committed at once.
                    if busy {
                        std::thread::sleep(COALESCE);
                    }
                } else if !closed {
                    closed = gather_for(&mut ops, &mut batch, RETRY_EVERY);
                }
                while let Ok(op) = ops.try_recv() {
                    batch.push(op);
                }
                busy = batch.len() >= BUSY_BATCH;
                let working = clock.busy();
                let written = store.write(&batch);
                drop(working);
                match written {
                    Ok(()) => {
                        if Metrics::get(&health.failing) == 1 {
                            info!(writes = batch.len(), "Ban store writes succeed again; the delayed writes are committed");
                        }
                        health.succeeded();
                        // One write for the commit's lines, not one per ban.
                        crate::log_output::gathered(|| batch.iter().for_each(report));
                    }
                    Err(e) => {
                        health.failed(e.to_string());
                        if batch.len() > MAX_BACKLOG {
                            let lost = batch.len() - MAX_BACKLOG;
                            batch.drain(..lost);
                            health.lost.fetch_add(lost as u64, std::sync::atomic::Ordering::Relaxed);
                            error!(lost, "Ban store backlog full: the oldest writes are dropped (their bans stay enforced until they expire or the daemon restarts)");
                        }
                        Metrics::set(&health.pending, batch.len() as u64);
                        if let Decision::Write { held_back } = failures_log.check() {
                            error!(error = %e, pending = batch.len(), held_back, "Ban store write failed; bans are enforced and the writes kept for retry");
                        }
                        if closed {
                            final_attempts += 1;
                            if final_attempts >= FINAL_ATTEMPTS {
                                error!(writes = batch.len(), "Stopping with ban store writes that could not be committed");
                                break;
                            }
                        }
                        backlog = batch;
                    }
                }
            }
        })
        .expect("spawning a thread only fails when the OS is out of resources")
}

/// Adds what arrives within `wait` to `batch`; true when `ops` closed.
fn gather_for(ops: &mut mpsc::Receiver<StoreOp>, batch: &mut Vec<StoreOp>, wait: Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        match ops.try_recv() {
            Ok(op) => batch.push(op),
            Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(20)),
            Err(mpsc::error::TryRecvError::Disconnected) => return true,
        }
    }
    false
}
