//! Enforcement: applies the ban manager's decisions to the firewall, in batches, beside the
//! message flow.
//!
//! Owns firewall I/O (nft processes), batching and retry. It holds no policy: it never decides
//! who is banned or for how long, only makes the firewall match the commands it receives. It
//! always drains its channel, even while nft runs, so the manager never waits on the firewall.

pub mod nft;
pub mod reconcile;
pub mod remote;
pub mod session;

use crate::jail::Target;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::ban::{BanCommand, Place};
use crate::config::TargetName;
use crate::metrics::{Metrics, TargetMetrics};
use nft::{ElementChange, NftError};
pub use remote::RemoteTarget;

/// Failed batches are retried this many times before their bans are reported lost.
const MAX_ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Where bans go.
#[derive(Debug, Clone)]
pub enum Firewall {
    /// A local nftables table.
    Nftables {
        /// nft binary.
        nft: PathBuf,
        /// Table name (family inet).
        table: String,
        /// Keep the table on stop.
        keep_table: bool,
        /// The long-running nft that applies batches (one at a time).
        session: Arc<tokio::sync::Mutex<session::NftSession>>,
    },
    /// Only log what would be done (`--dry-run`, backend "log").
    Log,
}

impl Firewall {
    /// A local nftables table managed through a long-running nft.
    pub fn nftables(nft: PathBuf, table: String, keep_table: bool) -> Self {
        let session = Arc::new(tokio::sync::Mutex::new(session::NftSession::new(
            &table,
            session::local_spawner(nft.clone()),
        )));
        Firewall::Nftables {
            nft,
            table,
            keep_table,
            session,
        }
    }

    /// Creates the table and sets (nftables) before any ban can arrive.
    pub async fn setup(&self) -> Result<(), NftError> {
        match self {
            Firewall::Nftables { nft, table, .. } => {
                nft::apply(nft, &nft::setup_script(table)).await?;
                info!(%table, "nftables table ready");
                Ok(())
            }
            Firewall::Log => {
                info!("Dry run: bans are logged, not applied");
                Ok(())
            }
        }
    }

    /// Removes the table on a clean stop unless configured to keep it.
    pub async fn teardown(&self) {
        if let Firewall::Nftables {
            nft,
            table,
            keep_table: false,
            ..
        } = self
        {
            match nft::apply(nft, &nft::teardown_script(table)).await {
                Ok(()) => info!(%table, "nftables table removed"),
                Err(e) => warn!(%table, error = %e, "Could not remove nftables table"),
            }
        }
    }

    async fn apply(&self, changes: Vec<ElementChange>) -> Result<(), NftError> {
        match self {
            Firewall::Nftables {
                nft,
                table,
                session,
                ..
            } => {
                let script = nft::batch_script(table, &changes);
                if script.len() > session::MAX_LINE {
                    return nft::apply(nft, &script).await;
                }
                session
                    .lock()
                    .await
                    .apply(&script)
                    .await
                    .map_err(|e| NftError::Rejected {
                        status: "nft -i".into(),
                        stderr: e.to_string(),
                    })
            }
            Firewall::Log => {
                for change in changes {
                    info!(?change, "Dry run: firewall change not applied");
                }
                Ok(())
            }
        }
    }
}

/// A pending change with its deadline, rendered into a timeout when the batch starts.
#[derive(Debug, Clone, Copy)]
struct Pending {
    command: Desired,
    attempts: u32,
    /// When the manager decided it (latency is measured from here).
    decided: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Desired {
    Ban(Option<Instant>),
    Unban,
}

/// A finished batch: its result, its changes (for a retry) and how long it took.
type BatchOutcome = (Result<(), NftError>, HashMap<Target, Pending>, Duration);

/// Commands queued per firewall worker; workers drain continuously, so this only smooths
/// bursts.
const WORKER_QUEUE: usize = 4096;

/// Hands each command to the worker of its firewall (local, or one per remote target) until
/// the channel closes, then waits for every worker to finish its last batch. With
/// `dry_run`, commands for remote targets are only logged.
pub async fn run(
    local: Firewall,
    remotes: Vec<RemoteTarget>,
    dry_run: bool,
    mut commands: mpsc::Receiver<BanCommand>,
    metrics: Arc<Metrics>,
) {
    let mut workers = JoinSet::new();
    let (local_tx, local_rx) = mpsc::channel(WORKER_QUEUE);
    workers.spawn(run_local(local, local_rx, metrics.target("local")));
    let mut remote_txs: HashMap<TargetName, mpsc::Sender<BanCommand>> = HashMap::new();
    for target in remotes {
        let (tx, rx) = mpsc::channel(WORKER_QUEUE);
        let counters = metrics.target(target.name().as_str());
        remote_txs.insert(target.name().clone(), tx);
        workers.spawn(remote::run(target, rx, counters));
    }
    while let Some(command) = commands.recv().await {
        let place = match &command {
            BanCommand::Ban { place, .. } | BanCommand::Unban { place, .. } => place.clone(),
        };
        let tx = match &place {
            Place::Local => &local_tx,
            Place::Remote(name) => match remote_txs.get(name) {
                Some(tx) => tx,
                None if dry_run => {
                    info!(?command, "Dry run: remote firewall change not applied");
                    continue;
                }
                None => {
                    // Placement only names configured targets; a restart is needed to add one.
                    error!(target = %name, "Ban for an unknown target dropped");
                    continue;
                }
            },
        };
        if tx.send(command).await.is_err() {
            error!(%place, "Firewall worker stopped; command dropped");
        }
    }
    drop(local_tx);
    drop(remote_txs);
    while workers.join_next().await.is_some() {}
}

/// Applies commands to the local firewall until the channel closes, then finishes the last
/// batch and tears the table down (unless kept).
async fn run_local(
    firewall: Firewall,
    mut commands: mpsc::Receiver<BanCommand>,
    metrics: Arc<TargetMetrics>,
) {
    // Latest desired state per address: a newer command replaces an older pending one.
    let mut pending: HashMap<Target, Pending> = HashMap::new();
    let mut inflight: JoinSet<BatchOutcome> = JoinSet::new();
    let mut open = true;
    loop {
        if inflight.is_empty() && !pending.is_empty() {
            let batch = std::mem::take(&mut pending);
            let now = Instant::now();
            let changes: Vec<ElementChange> = batch
                .iter()
                .filter_map(|(address, p)| match p.command {
                    Desired::Ban(None) => Some(ElementChange::Add(*address, None)),
                    Desired::Ban(Some(expires)) => nft::remaining(expires, now)
                        .map(|left| ElementChange::Add(*address, Some(left))),
                    Desired::Unban => Some(ElementChange::Remove(*address)),
                })
                .collect();
            let firewall = firewall.clone();
            inflight.spawn(async move {
                let started = Instant::now();
                let result = if changes.is_empty() {
                    Ok(())
                } else {
                    firewall.apply(changes).await
                };
                (result, batch, started.elapsed())
            });
        }
        if !open && inflight.is_empty() && pending.is_empty() {
            break;
        }
        tokio::select! {
            command = commands.recv(), if open => match command {
                Some(BanCommand::Ban { address, expires, decided, .. }) => {
                    pending.insert(address, Pending { command: Desired::Ban(expires), attempts: 0, decided });
                }
                Some(BanCommand::Unban { address, .. }) => {
                    pending.insert(address, Pending { command: Desired::Unban, attempts: 0, decided: Instant::now() });
                }
                None => open = false,
            },
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                let Ok((result, batch, took)) = done else { continue };
                match result {
                    Ok(()) => {
                        metrics.succeeded();
                        Metrics::inc(&metrics.batches);
                        let applied = Instant::now();
                        for p in batch.values() {
                            metrics.latency.observe(applied.saturating_duration_since(p.decided));
                        }
                        debug!(elements = batch.len(), took_us = took.as_micros() as u64, "Firewall batch applied");
                    }
                    Err(e) => {
                        metrics.failed(e.to_string());
                        error!(elements = batch.len(), error = %e, "Firewall batch failed");
                        requeue(&mut pending, batch);
                        if !pending.is_empty() {
                            tokio::time::sleep(RETRY_DELAY).await;
                        }
                    }
                }
            }
        }
    }
    firewall.teardown().await;
}

/// Puts a failed batch back, unless a newer command for the same address arrived meanwhile
/// or it has been tried enough.
fn requeue(pending: &mut HashMap<Target, Pending>, batch: HashMap<Target, Pending>) {
    for (address, mut p) in batch {
        p.attempts += 1;
        if p.attempts >= MAX_ATTEMPTS {
            error!(%address, "Giving up on firewall change after {MAX_ATTEMPTS} attempts");
            continue;
        }
        pending.entry(address).or_insert(p);
    }
}
