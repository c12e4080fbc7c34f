//! Enforcement: applies the ban manager's decisions to the firewall, in batches, beside the
//! message flow.
//!
//! Owns firewall I/O (a netfilter netlink socket, nft processes), batching and retry. It holds no policy: it never decides
//! who is banned or for how long, only makes the firewall match the commands it receives. It
//! always drains its channel, even while nft runs, so the manager never waits on the firewall.

pub mod netlink;
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
        /// Single-address batches, straight to the kernel.
        netlink: Arc<std::sync::Mutex<netlink::Netlink>>,
        /// The long-running nft that applies the other batches (prefixes), one at a time.
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
            netlink: Arc::default(),
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

    /// Applies a batch at once if it can go over netlink (single addresses on the local
    /// table): a couple of system calls, cheap enough to run on the enforcement task itself.
    /// None: the batch needs nft ([`Firewall::apply`]).
    fn apply_now(&self, changes: &[ElementChange]) -> Option<Result<(), NftError>> {
        let Firewall::Nftables { table, netlink, .. } = self else {
            return None;
        };
        // A poisoned lock only means an earlier batch panicked; the socket is sound.
        let result = netlink
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .apply(table, changes)?;
        match result {
            Ok(()) => Some(Ok(())),
            Err(e) => {
                // nft gets the batch: it either applies it or says clearly why not.
                warn!(error = %e, "Netlink batch failed; handing it to nft");
                None
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
/// bursts (a restore of many bans waits for room).
const WORKER_QUEUE: usize = 4096;

/// The queue of each firewall's worker, for the ban manager to send commands to directly
/// (no dispatching task between the decision and the firewall).
pub type Queues = HashMap<Place, mpsc::Sender<BanCommand>>;

/// Starts one worker per firewall: the local one and one per remote target. With `dry_run`,
/// `dry_run_targets` (the configured remote targets, not connected) get workers that only log
/// their commands. The returned task ends when every queue has been closed and every worker
/// has finished its last batch.
pub fn start(
    local: Firewall,
    remotes: Vec<RemoteTarget>,
    dry_run_targets: Vec<TargetName>,
    metrics: Arc<Metrics>,
) -> (Queues, tokio::task::JoinHandle<()>) {
    let mut workers = JoinSet::new();
    let mut queues = Queues::new();
    let (local_tx, local_rx) = mpsc::channel(WORKER_QUEUE);
    workers.spawn(run_local(local, local_rx, metrics.target("local")));
    queues.insert(Place::Local, local_tx);
    for target in remotes {
        let (tx, rx) = mpsc::channel(WORKER_QUEUE);
        let counters = metrics.target(target.name().as_str());
        queues.insert(Place::Remote(target.name().clone()), tx);
        workers.spawn(remote::run(target, rx, counters));
    }
    for name in dry_run_targets {
        let (tx, mut rx) = mpsc::channel::<BanCommand>(WORKER_QUEUE);
        queues.insert(Place::Remote(name), tx);
        workers.spawn(async move {
            while let Some(command) = rx.recv().await {
                info!(?command, "Dry run: remote firewall change not applied");
            }
        });
    }
    let all_done = tokio::spawn(async move { while workers.join_next().await.is_some() {} });
    (queues, all_done)
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
            if changes.is_empty() {
                finished(&metrics, &mut pending, (Ok(()), batch, Duration::ZERO)).await;
                continue;
            }
            if let Some(result) = firewall.apply_now(&changes) {
                Metrics::inc(&metrics.netlink_batches);
                finished(&metrics, &mut pending, (result, batch, now.elapsed())).await;
                continue;
            }
            let firewall = firewall.clone();
            inflight.spawn(async move {
                let started = Instant::now();
                let result = firewall.apply(changes).await;
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
                if let Ok(outcome) = done {
                    finished(&metrics, &mut pending, outcome).await;
                }
            }
        }
    }
    firewall.teardown().await;
}

/// Counts a finished batch, or puts it back for a retry after a pause.
async fn finished(
    metrics: &TargetMetrics,
    pending: &mut HashMap<Target, Pending>,
    (result, batch, took): BatchOutcome,
) {
    match result {
        Ok(()) => {
            metrics.succeeded();
            Metrics::inc(&metrics.batches);
            let applied = Instant::now();
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
            error!(elements = batch.len(), error = %e, "Firewall batch failed");
            requeue(pending, batch);
            if !pending.is_empty() {
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    }
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
