//! Enforcement: applies the ban manager's decisions to the firewall, in batches, beside the
//! message flow.
//!
//! Owns firewall I/O (a netfilter netlink socket, nft, ipset and iptables processes, a
//! hosts.deny file, a user's ban command), batching and retry. It holds no policy: it never
//! decides who is banned or for how long, only makes the firewall match the commands it
//! receives. It always drains its channel, even while a tool runs, so the manager never waits
//! on the firewall.

pub mod command;
pub mod cut;
pub mod hosts_deny;
pub mod ipset;
pub mod local;
pub mod monitor;
pub mod netlink;
pub mod nft;
pub mod pending;
pub mod reconcile;
pub mod remote;
pub mod session;
pub mod ssh;
pub mod tool;
pub mod unheard;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::ban::{BanCommand, Place};
use crate::config::{CommandConfig, Hooks, TableName, TargetName};
use crate::metrics::Metrics;
use hosts_deny::{HostsDeny, HostsDenyError};
use ipset::Ipset;
use nft::{ElementChange, NftError};
pub use ssh::RemoteTarget;
use tool::ToolError;

/// A firewall change or reading failed.
#[derive(Debug, Error)]
pub enum FirewallError {
    /// nft or the netlink socket.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// ipset or iptables.
    #[error(transparent)]
    Tool(#[from] ToolError),
    /// The hosts.deny file.
    #[error(transparent)]
    File(#[from] HostsDenyError),
}

/// Where bans go.
#[derive(Debug, Clone)]
pub enum Firewall {
    /// A local nftables table.
    Nftables {
        /// nft binary.
        nft: PathBuf,
        /// Table name (family inet).
        table: TableName,
        /// Keep the table on stop.
        keep_table: bool,
        /// The hooks of the drop rules.
        hooks: Hooks,
        /// Single-address batches, straight to the kernel.
        netlink: Arc<std::sync::Mutex<netlink::Netlink>>,
        /// The long-running nft that applies the other batches (prefixes), one at a time.
        session: Arc<tokio::sync::Mutex<session::NftSession>>,
    },
    /// ipset sets and iptables rules.
    Ipset {
        /// The sets and rules.
        ipset: Ipset,
        /// Keep them on stop.
        keep: bool,
    },
    /// Entries in a tcp-wrappers file.
    HostsDeny {
        /// The file.
        file: HostsDeny,
        /// Keep the entries on stop.
        keep: bool,
    },
    /// Only log what would be done (`--dry-run`, backend "log").
    Log,
}

impl Firewall {
    /// A local nftables table managed through a long-running nft.
    pub fn nftables(nft: PathBuf, table: TableName, keep_table: bool, hooks: Hooks) -> Self {
        let session = Arc::new(tokio::sync::Mutex::new(session::NftSession::new(
            &table,
            session::local_spawner(nft.clone()),
        )));
        Firewall::Nftables {
            nft,
            table,
            keep_table,
            hooks,
            netlink: Arc::default(),
            session,
        }
    }

    /// Whether the firewall can be read back and repaired (everything but the log).
    pub fn attests(&self) -> bool {
        !matches!(self, Firewall::Log)
    }

    /// Creates the table and sets (nftables, ipset) before any ban can arrive. A complete
    /// table kept by a previous run is adopted untouched: its bans stay enforced throughout.
    pub async fn setup(&self) -> Result<(), FirewallError> {
        match self {
            Firewall::Nftables {
                nft, table, hooks, ..
            } => {
                if nft::list(nft, table)
                    .await
                    .is_ok_and(|json| reconcile::is_complete(&json, *hooks))
                {
                    info!(%table, "nftables table kept by the previous run adopted");
                    return Ok(());
                }
                nft::apply(nft, &nft::setup_script(table, *hooks)).await?;
                info!(%table, hooks = ?hooks.names(), "nftables table ready");
                Ok(())
            }
            Firewall::Ipset { ipset, .. } => ipset.setup().await.map(drop).map_err(Into::into),
            Firewall::HostsDeny { file, .. } => {
                info!(path = %file.path().display(), "Bans go to a tcp-wrappers file");
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
        match self {
            Firewall::Nftables {
                nft,
                table,
                keep_table: false,
                ..
            } => match nft::apply(nft, &nft::teardown_script(table)).await {
                Ok(()) => info!(%table, "nftables table removed"),
                Err(e) => warn!(%table, error = %e, "Could not remove nftables table"),
            },
            Firewall::Ipset { ipset, keep: false } => match ipset.teardown().await {
                Ok(()) => info!("ipset sets and iptables rules removed"),
                Err(e) => warn!(error = %e, "Could not remove ipset sets and iptables rules"),
            },
            Firewall::HostsDeny { file, keep: false } => match file.clear().await {
                Ok(()) => info!(path = %file.path().display(), "Ban entries removed"),
                Err(e) => warn!(error = %e, "Could not remove ban entries"),
            },
            _ => {}
        }
    }

    /// Applies a batch at once if it can go over netlink (single addresses on the local
    /// table): a couple of system calls, cheap enough to run on the enforcement task itself.
    /// None: the batch needs nft ([`Firewall::apply`]).
    pub(crate) fn apply_now(&self, changes: &[ElementChange]) -> Option<Result<(), NftError>> {
        let Firewall::Nftables { table, netlink, .. } = self else {
            return None;
        };
        // A poisoned lock only means an earlier batch panicked; the socket is sound.
        let result = netlink
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .apply(table, changes)?;
        netlink_outcome(result)
    }

    /// As [`Firewall::apply_now`], for a storm's batch: applied with the drift monitor away
    /// (`quiet`), so the kernel builds no notification of each element for it; window
    /// `window`'s markers let the monitor check that nothing else went unheard meanwhile.
    pub(crate) fn apply_unheard(
        &self,
        changes: &[ElementChange],
        quiet: &unheard::Quiet,
        window: u32,
    ) -> Option<Result<(), NftError>> {
        let Firewall::Nftables { table, netlink, .. } = self else {
            return None;
        };
        let mut netlink = netlink
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = unheard::apply(&mut netlink, table, changes, quiet, window)?;
        netlink_outcome(result)
    }

    pub(crate) async fn apply(&self, changes: Vec<ElementChange>) -> Result<(), FirewallError> {
        match self {
            Firewall::Nftables {
                nft,
                table,
                session,
                ..
            } => {
                let script = nft::batch_script(table, &changes);
                if script.len() > session::MAX_LINE || nft::crashes_echo(&changes) {
                    return Ok(nft::apply(nft, &script).await?);
                }
                session.lock().await.apply(&script).await.map_err(|e| {
                    NftError::Rejected {
                        status: "nft -i".into(),
                        stderr: e.to_string(),
                    }
                    .into()
                })
            }
            Firewall::Ipset { ipset, .. } => Ok(ipset.apply(&changes).await?),
            Firewall::HostsDeny { file, .. } => Ok(file.apply(&changes).await?),
            Firewall::Log => {
                for change in changes {
                    info!(?change, "Dry run: firewall change not applied");
                }
                Ok(())
            }
        }
    }
}

/// What enforces bans on this host.
#[derive(Debug)]
pub enum LocalBackend {
    /// A firewall the worker batches changes into and reconciles.
    Firewall(Firewall),
    /// A user's program per ban and unban.
    Command(Arc<CommandConfig>),
}

/// The local backend and what its worker starts from.
#[derive(Debug)]
pub struct LocalFirewall {
    /// The firewall, or the command.
    pub backend: LocalBackend,
    /// The restored bans for this host: the first reconcile adopts what the firewall still
    /// holds of them (a kept table) and adds the rest; a command runs `ban` for each.
    pub restored: Vec<BanCommand>,
    /// How often the table is read and compared with the desired state.
    pub reconcile_interval: Duration,
}

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
    local: LocalFirewall,
    remotes: Vec<RemoteTarget>,
    dry_run_targets: Vec<TargetName>,
    metrics: Arc<Metrics>,
) -> (Queues, tokio::task::JoinHandle<()>) {
    let mut workers = JoinSet::new();
    let mut queues = Queues::new();
    let (local_tx, local_rx) = mpsc::channel(WORKER_QUEUE);
    match local.backend {
        // On a thread of its own: during a ban storm a ban waits for this worker's turn
        // among the connections and matching workers otherwise (milliseconds at the tail).
        LocalBackend::Firewall(firewall) => workers.spawn(crate::supervise::on_own_thread(
            "local-firewall",
            crate::supervise::Priority::Favoured,
            local::run(
                firewall,
                local.restored,
                local_rx,
                metrics.target("local"),
                local.reconcile_interval,
            ),
        )),
        LocalBackend::Command(config) => {
            let runner = Arc::new(tool::Local {
                limit: config.timeout,
            });
            workers.spawn(command::run(
                config,
                local.restored,
                local_rx,
                metrics.target("local"),
                runner,
            ))
        }
    };
    queues.insert(Place::Local, local_tx);
    for target in remotes {
        let (tx, rx) = mpsc::channel(WORKER_QUEUE);
        let counters = metrics.target(target.name().as_str());
        queues.insert(Place::Remote(target.name().clone()), tx);
        match ssh::CommandRunner::of(target.clone(), counters.clone()) {
            // Its bans run the target's program over SSH, and cut connections there.
            Some((config, runner)) => {
                workers.spawn(command::run(config, Vec::new(), rx, counters, runner))
            }
            None => workers.spawn(remote::run(target, rx, counters)),
        };
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

/// What a netlink batch's result means for the caller: done, refused (the caller reconciles),
/// or None: nft gets the batch.
fn netlink_outcome(result: Result<(), netlink::NetlinkError>) -> Option<Result<(), NftError>> {
    match result {
        Ok(()) => Some(Ok(())),
        // The table or a set is gone: nft would fail too. The caller reconciles, which
        // re-creates them and applies this batch with every other ban.
        Err(netlink::NetlinkError::Refused(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Some(Err(NftError::Rejected {
                status: "netlink".into(),
                stderr: format!("the kernel refused the batch: {e}"),
            }))
        }
        Err(e) => {
            // nft gets the batch: it either applies it or says clearly why not.
            warn!(error = %e, "Netlink batch failed; handing it to nft");
            None
        }
    }
}
