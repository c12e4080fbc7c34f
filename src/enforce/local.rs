//! The local firewall's worker: applies the ban manager's commands in batches, and attests
//! that the kernel holds what it should.
//!
//! Owns the desired state of the local table (every active ban with its deadline) and the
//! reconcile that makes the kernel match it: at start (adopting a table a previous run kept),
//! every `reconcile_interval`, at once when a batch fails, and at once when the kernel reports
//! that something took our table, chain, rules or elements away (`monitor`). A reconcile
//! re-creates what is missing (the setup keeps elements) and adds or removes the difference,
//! so a ban decided while the table was gone lands with the rest. It decides nothing about who
//! is banned: the desired state is exactly the commands received.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::cut;
use super::ipset;
use super::monitor::{self, Drift};
use super::netlink;
use super::nft::{self, ElementChange, NftError};
use super::pending::{self, Batch};
use super::reconcile;
use super::unheard::Quiet;
use super::{Firewall, FirewallError};
use crate::ban::BanCommand;
use crate::metrics::{Metrics, TargetMetrics};
use crate::target::Target;
use crate::throttle::Throttle;
use crate::warn_throttled;

pub use super::pending::Desired;

/// After a failed batch or drift, a reconcile waits this long for the rest of the burst.
const SETTLE: Duration = Duration::from_millis(50);
/// Batches up to this many changes go to the kernel inline; larger ones on a blocking thread.
const INLINE_CHANGES: usize = 16;
/// How long batches are heard by the drift monitor after a structural drift (see
/// `unheard`).
const HEARD_AFTER_DRIFT: Duration = Duration::from_secs(60);
/// First pause after a failed reconcile; doubles up to the reconcile interval.
const FIRST_RETRY: Duration = Duration::from_millis(500);

enum Outcome {
    Applied(Result<(), FirewallError>, Batch, Duration),
    Reconciled(Result<Attested, FirewallError>),
}

/// What a reconcile found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attested {
    /// Elements in the kernel afterwards.
    present: usize,
    /// Elements added or removed, plus one if the table, a set, the chain or a rule had to
    /// be re-created.
    fixes: usize,
}

/// Runs the local firewall until the channel closes, then finishes the last batch and tears
/// the table down (unless kept). `restored` are the bans of the previous run: the first
/// reconcile adopts what the firewall already has of them and adds the rest, without
/// removing any.
pub async fn run(
    firewall: Firewall,
    restored: Vec<BanCommand>,
    mut commands: mpsc::Receiver<BanCommand>,
    metrics: Arc<TargetMetrics>,
    interval: Duration,
) {
    let mut desired = Desired::default();
    {
        // Restored bans only set the desired state: the first reconcile applies them.
        let mut unused = Batch::default();
        for command in restored {
            pending::record(&mut desired, &mut unused, command);
        }
    }
    let attest = firewall.attests();
    let mut cuts = JoinSet::new();
    let (mut drifts, quiet) = match &firewall {
        Firewall::Nftables { table, .. } => match monitor::start(table) {
            Ok((drifts, quiet)) => (Some(drifts), Some(quiet)),
            Err(e) => {
                warn!(error = %e, "Cannot follow nftables changes; drift is repaired every reconcile_interval only");
                (None, None)
            }
        },
        _ => (None, None),
    };
    // Numbers the windows in which a storm's batch is applied unheard.
    let mut window: u32 = 0;
    // After a structural drift (an unsound window among them) batches are heard for a while:
    // another tool busy with nftables would otherwise make each window cost a reconcile.
    let mut unheard_from = crate::clock::now();
    let drift_log = Throttle::new(5, Duration::from_secs(60));
    let mut pending = Batch::default();
    let mut inflight: JoinSet<Outcome> = JoinSet::new();
    let mut reconcile_at = crate::clock::now();
    let mut retry = FIRST_RETRY;
    let mut open = true;
    loop {
        let now = crate::clock::now();
        if inflight.is_empty() {
            if attest && now >= reconcile_at {
                desired.retain(|_, wanted| wanted.live(now));
                // The snapshot covers every queued change: they are all in `desired`.
                pending.clear();
                Metrics::set(&metrics.desired, desired.len() as u64);
                let (firewall, snapshot) = (firewall.clone(), desired.clone());
                inflight.spawn(async move {
                    Outcome::Reconciled(reconcile(&firewall, &snapshot).await)
                });
            } else if !pending.is_empty() {
                // At most one netlink transaction's worth: a larger batch would go to nft.
                let batch = pending::take(&mut pending, netlink::MAX_CHANGES);
                let changes = pending::changes(&batch, now);
                if changes.is_empty() {
                    continue;
                }
                if changes.len() > INLINE_CHANGES {
                    // A storm's batch: the kernel's work grows with it, so the netlink round
                    // trip runs on a blocking thread while the next batch gathers here.
                    let (firewall, metrics) = (firewall.clone(), metrics.clone());
                    // Unheard by our own monitor while it listens (see `unheard`).
                    let quiet = quiet
                        .clone()
                        .filter(|_| drifts.is_some() && now >= unheard_from);
                    window = window.wrapping_add(1);
                    let unheard = quiet.map(|quiet| (quiet, window));
                    inflight.spawn(async move {
                        let started = crate::clock::now();
                        let result = apply_off_thread(firewall, changes, &metrics, unheard).await;
                        Outcome::Applied(result, batch, started.elapsed())
                    });
                    continue;
                }
                // A few changes: the netlink round trip takes microseconds (the kernel answers
                // within the send), less than a hand-off to another thread would.
                match firewall.apply_now(&changes) {
                    Some(result) => {
                        Metrics::inc(&metrics.netlink_batches);
                        let failed = result.is_err();
                        finished(
                            &metrics,
                            result.map_err(Into::into),
                            &batch,
                            now.elapsed(),
                            &mut cuts,
                        );
                        if failed {
                            reconcile_at = crate::clock::now() + SETTLE;
                        }
                        continue;
                    }
                    None => {
                        let firewall = firewall.clone();
                        inflight.spawn(async move {
                            let started = crate::clock::now();
                            let result = firewall.apply(changes).await;
                            Outcome::Applied(result, batch, started.elapsed())
                        });
                    }
                }
            }
        }
        if !open && inflight.is_empty() && pending.is_empty() {
            break;
        }
        // Connection cuts run beside the batches; their results only need collecting.
        while cuts.try_join_next().is_some() {}
        tokio::select! {
            command = commands.recv(), if open => match command {
                Some(command) => {
                    pending::record(&mut desired, &mut pending, command);
                    // A burst (a botnet's ban storm) becomes one batch: what is already
                    // queued joins it, up to what one netlink transaction carries.
                    while pending.len() < netlink::MAX_CHANGES {
                        let Ok(command) = commands.try_recv() else { break };
                        pending::record(&mut desired, &mut pending, command);
                    }
                }
                None => open = false,
            },
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                let Ok(outcome) = done else { continue };
                match outcome {
                    Outcome::Applied(result, batch, took) => {
                        if result.is_err() {
                            // The table may be gone: the reconcile re-creates it and applies
                            // every desired ban, this batch's included.
                            reconcile_at = crate::clock::now() + SETTLE;
                        }
                        finished(&metrics, result, &batch, took, &mut cuts);
                    }
                    Outcome::Reconciled(Ok(attested)) => {
                        retry = FIRST_RETRY;
                        reconciled(&metrics, attested);
                        reconcile_at = crate::clock::now() + interval;
                    }
                    Outcome::Reconciled(Err(e)) => {
                        metrics.failed(e.to_string());
                        error!(error = %e, retry_in = ?retry, "Local firewall reconcile failed: bans may not be enforced");
                        reconcile_at = crate::clock::now() + retry;
                        retry = (retry * 2).min(interval);
                    }
                }
            }
            Some(drift) = recv_drift(&mut drifts), if attest => {
                if drift.structural {
                    unheard_from = crate::clock::now() + HEARD_AFTER_DRIFT;
                }
                if drift.unheard {
                    Metrics::inc(&metrics.unheard_unsound);
                }
                if matters(&drift, &desired, crate::clock::now()) {
                    warn_throttled!(drift_log, structural = drift.structural, removed = drift.removed.len(), "Something else changed our nftables table; reconciling");
                    reconcile_at = reconcile_at.min(crate::clock::now() + SETTLE);
                }
            }
            _ = tokio::time::sleep_until(reconcile_at.into()), if attest && inflight.is_empty() => {}
        }
    }
    firewall.teardown().await;
    while cuts.join_next().await.is_some() {}
}

/// A batch over netlink on a blocking thread (with `unheard`, our drift monitor away while it
/// is applied, in that window), or through nft when netlink cannot take it.
async fn apply_off_thread(
    firewall: Firewall,
    changes: Vec<ElementChange>,
    metrics: &TargetMetrics,
    unheard: Option<(Quiet, u32)>,
) -> Result<(), FirewallError> {
    let on_thread = firewall.clone();
    if unheard.is_some() {
        Metrics::inc(&metrics.unheard_batches);
    }
    let joined = tokio::task::spawn_blocking(move || {
        let result = match &unheard {
            Some((quiet, window)) => on_thread.apply_unheard(&changes, quiet, *window),
            None => on_thread.apply_now(&changes),
        };
        (result, changes)
    })
    .await;
    match joined {
        Ok((Some(result), _)) => {
            Metrics::inc(&metrics.netlink_batches);
            Ok(result?)
        }
        Ok((None, changes)) => firewall.apply(changes).await,
        Err(e) => Err(NftError::Rejected {
            status: "netlink".into(),
            stderr: format!("the batch's thread failed: {e}"),
        }
        .into()),
    }
}

async fn recv_drift(drifts: &mut Option<mpsc::Receiver<Drift>>) -> Option<Drift> {
    match drifts {
        Some(rx) => match rx.recv().await {
            Some(drift) => Some(drift),
            None => {
                *drifts = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

/// Whether a drift took something the table should hold (our own unbans remove addresses
/// that are no longer desired).
fn matters(drift: &Drift, desired: &Desired, now: Instant) -> bool {
    drift.structural
        || drift.removed.iter().any(|address| {
            desired
                .get(&Target::from(*address))
                .is_some_and(|wanted| wanted.live(now))
        })
}

/// Counts a finished batch and starts the connection cuts its bans ask for. A failed batch
/// is not retried by itself: the reconcile that follows applies the whole desired state.
fn finished(
    metrics: &TargetMetrics,
    result: Result<(), FirewallError>,
    batch: &Batch,
    took: Duration,
    cuts: &mut JoinSet<()>,
) {
    match result {
        Ok(()) => {
            for (target, _) in batch.iter().filter(|(_, p)| p.cut && p.until.is_some()) {
                cuts.spawn(cut::connections_of(cut::here(), *target));
            }
            metrics.succeeded();
            Metrics::inc(&metrics.batches);
            let applied = crate::clock::now();
            for p in batch.values() {
                metrics
                    .latency
                    .observe(applied.saturating_duration_since(p.decided));
            }
            debug!(
                elements = batch.len(),
                took_us = took.as_micros() as u64,
                "Firewall batch applied"
            );
        }
        Err(e) => {
            metrics.failed(e.to_string());
            error!(elements = batch.len(), error = %e, "Firewall batch failed; reconciling the table");
        }
    }
}

fn reconciled(metrics: &TargetMetrics, attested: Attested) {
    metrics.succeeded();
    Metrics::inc(&metrics.reconciles);
    metrics
        .reconcile_fixes
        .fetch_add(attested.fixes as u64, std::sync::atomic::Ordering::Relaxed);
    Metrics::set(&metrics.present, attested.present as u64);
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Metrics::set(&metrics.last_reconcile_unix, unix);
    if attested.fixes > 0 {
        info!(
            fixes = attested.fixes,
            present = attested.present,
            "Reconciled the local table: missing parts re-created, missing bans added, stray elements removed"
        );
    } else {
        debug!(
            present = attested.present,
            "Reconciled the local table: in sync"
        );
    }
}

/// Reads the firewall, re-creates what is missing, and applies the difference to `desired`.
async fn reconcile(firewall: &Firewall, desired: &Desired) -> Result<Attested, FirewallError> {
    let now = crate::clock::now();
    let (nft, table, hooks) = match firewall {
        Firewall::Nftables {
            nft, table, hooks, ..
        } => (nft, table, hooks),
        Firewall::Ipset { ipset, .. } => {
            let repaired = ipset.setup().await?;
            let actual = ipset.list().await?;
            let changes = ipset::settle(reconcile::diff(desired, &actual, now), &actual);
            if !changes.is_empty() {
                ipset.apply(&changes).await?;
            }
            return Ok(attested(&actual, &changes, repaired));
        }
        Firewall::HostsDeny { file, .. } => {
            let wanted = desired
                .iter()
                .filter(|(_, wanted)| wanted.live(now))
                .map(|(target, _)| *target)
                .collect();
            let (present, fixes) = file.reconcile(wanted).await?;
            return Ok(Attested { present, fixes });
        }
        Firewall::Log => {
            return Ok(Attested {
                present: 0,
                fixes: 0,
            })
        }
    };
    let mut repaired = 0;
    let listing = match nft::list(nft, table).await {
        Ok(json) if reconcile::is_complete(&json, *hooks) => json,
        _ => {
            // Gone or partly gone: the setup creates what is missing and keeps elements.
            nft::apply(nft, &nft::setup_script(table, *hooks)).await?;
            repaired = 1;
            nft::list(nft, table).await?
        }
    };
    let actual = reconcile::parse_listing(&listing).map_err(|e| NftError::Rejected {
        status: "nft -j list table".into(),
        stderr: e.to_string(),
    })?;
    let changes = reconcile::diff(desired, &actual, now);
    if !changes.is_empty() {
        nft::apply(nft, &nft::batch_script(table, &changes)).await?;
    }
    Ok(attested(&actual, &changes, repaired))
}

/// What a reconcile that found `actual` and applied `changes` leaves.
fn attested(actual: &reconcile::Actual, changes: &[ElementChange], repaired: usize) -> Attested {
    let added = changes
        .iter()
        .filter(|c| matches!(c, ElementChange::Add(a, _) if !actual.contains_key(a)))
        .count();
    let removed = changes
        .iter()
        .filter(|c| matches!(c, ElementChange::Remove(_)))
        .count();
    Attested {
        present: actual.len() + added - removed,
        fixes: changes.len() + repaired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::pending::Wanted;

    fn t(s: &str) -> Target {
        s.parse().unwrap()
    }

    #[test]
    fn drift_matters_only_for_addresses_still_wanted() {
        let now = crate::clock::now();
        let mut desired = Desired::default();
        desired.insert(
            t("198.51.100.1"),
            Wanted {
                until: Some(now + Duration::from_secs(60)),
                ports: None,
            },
        );
        desired.insert(
            t("198.51.100.2"),
            Wanted {
                until: Some(now - Duration::from_secs(1)),
                ports: None,
            },
        );
        let removed = |a: &str| Drift {
            structural: false,
            removed: vec![a.parse().unwrap()],
            unheard: false,
        };
        assert!(matters(&removed("198.51.100.1"), &desired, now));
        // Expired, or unbanned (not desired): its removal is expected.
        assert!(!matters(&removed("198.51.100.2"), &desired, now));
        assert!(!matters(&removed("198.51.100.3"), &desired, now));
        let structural = Drift {
            structural: true,
            removed: Vec::new(),
            unheard: false,
        };
        assert!(matters(&structural, &Desired::default(), now));
    }
}
