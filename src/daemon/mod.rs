//! Wiring: builds the pipeline from a compiled config — listeners → pipeline (parse, route,
//! jails) → ban manager → enforcement — connects the stages with bounded channels, serves
//! control requests and reloads, and shuts the stages down in order (inputs first, so
//! everything received is counted and every decided ban applied).
//!
//! Owns task lifetimes, channel sizes and the reload diff. It answers control requests by
//! asking the stage that owns the answer; it holds no ban or failure state itself.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use crate::ban::store::{self, Store, StoreError};
use crate::ban::{self, BanInfo, BanState, Fleet, JailPolicy, Moment};
use crate::config::{Backend, Config, JailName, ListenerConfig};
use crate::control::protocol::{
    AttestReport, JailReport, ListenerReport, RemoteReport, Request, Response, StatusReport,
    StoreReport, StuckStage, TargetReport,
};
use crate::control::{self, ControlError, Envelope};
use crate::enforce::{self, Firewall, FirewallError, LocalBackend, RemoteTarget};
use crate::fd_limit;
use crate::input::{self, InputContext, InputError, ListenerHandle};
use crate::metrics::{depth, Metrics};
use crate::ownership::{self, OwnershipError};
use crate::pipeline::{self, Update};
use crate::supervise::{self, stage, Supervisor};
use crate::systemd;
use crate::target::Target;
use crate::throttle::Throttle;
use crate::warn_throttled;

mod answer;
mod live;
pub mod reload;
pub mod settings;

/// Batches of frames in flight between the sockets and each matching worker: what one read
/// brought for that worker, up to `input::BATCH_MAX` frames. A sender that trickles fills
/// batches of one, so the count is in batches, not frames.
const INPUT_QUEUE: usize = 256;
/// Offences waiting for the ban manager.
const OFFENCE_QUEUE: usize = 4 * 1024;
/// Writes waiting for the store thread (group-committed, so rarely more than a batch).
const STORE_QUEUE: usize = 16 * 1024;
/// Control requests waiting for the daemon, and requests waiting for the ban manager.
const CONTROL_QUEUE: usize = 64;
/// Bans on their way from the manager to the cluster.
const CLUSTER_QUEUE: usize = 16 * 1024;
/// Failures on their way to the cluster, one batch of hits per entry (up to
/// `input::BATCH_MAX` failures each): a full queue drops (counted) rather than slow ingest.
/// A CPU-limited collector's counter falls behind for a second or more in a storm: at 1,024
/// the queue dropped 8,000-23,000 failures per `cluster2` run (their attackers then decided on
/// both collectors), at 4,096 none. At most about 60 MB (a failure carries its line).
const CLUSTER_FAILURE_BATCHES: usize = 4096;
/// A stage busy with one piece of work for longer than this is stuck: the watchdog is not fed.
const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Decide bans but only log them.
    pub dry_run: bool,
    /// Where the config came from, re-read on reload.
    pub config_path: PathBuf,
    /// Test hook: kill this stage after this long (see `supervise`; the binary reads
    /// `S2B_TEST_KILL_STAGE` instead).
    pub kill_stage: Option<(String, std::time::Duration)>,
}

/// The daemon could not start.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// A stage stopped while the daemon ran.
    #[error("stage {stage} stopped ({reason}); the daemon stopped with it")]
    StageDied {
        /// The stage.
        stage: &'static str,
        /// How it ended.
        reason: String,
    },
    /// Another daemon owns the state directory or the table.
    #[error(transparent)]
    Owned(#[from] OwnershipError),
    /// The firewall could not be prepared.
    #[error("cannot set up the firewall: {0}")]
    Firewall(#[from] FirewallError),
    /// A listener could not start.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The control socket could not start.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The metrics endpoint could not start.
    #[error("metrics endpoint {address}: {source}")]
    Metrics {
        /// Configured address.
        address: std::net::SocketAddr,
        /// OS error.
        source: std::io::Error,
    },
    /// The ban store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The directory for ssh control sockets could not be made.
    #[error("cannot create ssh control directory {path}: {source}")]
    ControlDir {
        /// The directory.
        path: std::path::PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// What the running daemon holds between requests.
struct Running {
    options: RunOptions,
    config: Config,
    /// Which notifiers hear which jail, shared with the store thread.
    routes: ban::event::SharedRoutes,
    /// The notifiers, for the notify stage (a reload sends new ones).
    notifiers: tokio::sync::watch::Sender<Vec<crate::config::NotifierConfig>>,
    /// The feeds, for the feeds stage (a reload sends new ones).
    feeds: tokio::sync::watch::Sender<Vec<crate::config::FeedConfig>>,
    metrics: Arc<Metrics>,
    listeners: Vec<(ListenerConfig, ListenerHandle)>,
    input: InputContext,
    pipeline: mpsc::Sender<Update>,
    manager: mpsc::Sender<ban::Request>,
    supervisor: Supervisor,
}

/// Runs until `shutdown` completes, then drains and stops.
pub async fn run(
    mut config: Config,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    // Before any firewall, socket or store is touched: a second daemon stops here.
    // The ipset backend's sets are named after the table: claimed the same way.
    let managed_table = (!options.dry_run
        && matches!(config.ban.backend, Backend::Nftables | Backend::Ipset(_)))
    .then_some(&*config.ban.table);
    let _ownership = ownership::claim(&config.state_dir, managed_table)?;
    let (supervisor, mut deaths) = Supervisor::new(
        options
            .kill_stage
            .clone()
            .or_else(supervise::kill_hook_from_env),
    );
    let open_files = fd_limit::raise_soft_limit();
    fd_limit::fit_connections(&mut config.listeners, open_files);
    let metrics = Arc::new(Metrics::default());
    let backend = local_backend(&config, options.dry_run);
    let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;
    // The store is read before anything runs: it may hold bans to restore. SQLite blocks:
    // not on an async worker.
    let now = Moment::now();
    let (state_dir, since) = (
        config.state_dir.clone(),
        now.wall
            .checked_sub(config.dbpurgeage)
            .unwrap_or(std::time::UNIX_EPOCH),
    );
    let dry_run = options.dry_run;
    if dry_run {
        info!("Dry run: bans are logged, not applied, and kept in memory only (nothing stored)");
    }
    // Notifications are queued in the store's outbox with the ban itself; a dry run sends none.
    let routes: ban::event::SharedRoutes = Arc::new(std::sync::RwLock::new(routes(&config)));
    let notify_wake = Arc::new(tokio::sync::Notify::new());
    // The notify stage runs whenever notifications can be sent, notifiers or not: a reload
    // may add the first.
    let notifying = !dry_run;
    let (notifiers, notifiers_rx) = tokio::sync::watch::channel(config.notifiers.clone());
    let (store_routes, store_wake) = (routes.clone(), notify_wake.clone());
    let (store, purged, active, history) = tokio::task::spawn_blocking(move || {
        let mut store = if dry_run {
            Store::in_memory()?
        } else if notifying {
            Store::open(&state_dir)?.with_notifications(store_routes, store_wake)
        } else {
            Store::open(&state_dir)?
        };
        let purged = store.purge_history(since, now.wall)?;
        let active = store.active(now.wall)?;
        let history = store.history_since(since)?;
        Ok::<_, StoreError>((store, purged, active, history))
    })
    .await
    .map_err(|e| DaemonError::StageDied {
        stage: stage::STORE,
        reason: format!("reading the store failed: {e}"),
    })??;
    // The ban manager tells the jails when a ban ends, so they count its address again.
    let feedback = crate::jail::BanFeedback::default();
    let mut state = BanState::new(
        policies(&config),
        config.recidive.clone(),
        config.dbpurgeage,
        metrics.clone(),
    )
    .with_fleet(Fleet::new(&config.targets))
    .with_feedback(feedback.clone());
    let restore = state.restore(active, history, now);
    info!(
        restored = restore.len(),
        purged_history = purged,
        "Ban store read"
    );
    // The table exists before the first message can be received.
    if let LocalBackend::Firewall(firewall) = &backend {
        firewall.setup().await?;
    }

    // One input queue per matching worker; a connection takes the next one in turn, a
    // datagram sender the one its address and port pick.
    let (raw_txs, raw_rxs): (Vec<_>, Vec<_>) = (0..pipeline::worker_count())
        .map(|_| mpsc::channel(INPUT_QUEUE))
        .unzip();
    let raw_tx = input::Fanout::new(raw_txs);
    let (update_tx, update_rx) = mpsc::channel(CONTROL_QUEUE);
    let (offence_tx, offence_rx) = mpsc::channel(OFFENCE_QUEUE);
    let (request_tx, request_rx) = mpsc::channel(CONTROL_QUEUE);
    let (store_tx, store_rx) = mpsc::channel(STORE_QUEUE);
    let (remotes, dry_run_targets) = if options.dry_run {
        let names = config.targets.iter().map(|t| t.name.clone()).collect();
        (Vec::new(), names)
    } else {
        (remote_targets(&config)?, Vec::new())
    };
    // Restored bans for the local table become its worker's starting state: its first
    // reconcile adopts what a kept table still holds (no element is deleted and re-added)
    // and adds the rest. Those for remote targets go to their queues.
    let restored = restore.len();
    let (local_restore, remote_restore): (Vec<_>, Vec<_>) = restore
        .into_iter()
        .partition(|command| *command.place() == ban::Place::Local);
    let local = enforce::LocalFirewall {
        backend,
        restored: local_restore,
        reconcile_interval: config.ban.reconcile_interval,
    };
    let (firewalls, enforcer) = enforce::start(local, remotes, dry_run_targets, metrics.clone());
    let enforcer = supervisor.watch(stage::ENFORCER, enforcer);
    register_queues(&metrics, &raw_tx, &offence_tx, &store_tx, &firewalls);
    for command in remote_restore {
        ban::send_to_firewall(&firewalls, command).await;
    }
    if restored > 0 {
        info!(bans = restored, "Restored bans sent to the firewall");
    }
    let store_thread = store::writer::spawn(
        store,
        store_rx,
        supervisor.clock(stage::STORE),
        metrics.clone(),
    );
    let store_thread = supervisor.watch_thread(stage::STORE, store_thread);
    // The cluster: failures from the pipeline, bans both ways with the manager. A dry run
    // shares nothing (its bans are not real).
    let cluster = config.cluster.clone().filter(|_| !dry_run);
    // Notifications wait for a yield only where bans are shared.
    let announce_delay = cluster
        .as_ref()
        .map_or(std::time::Duration::ZERO, |c| c.announce_delay);
    let (sharing, cluster_link, cluster_links) = match &cluster {
        Some(c) => {
            let (failures_tx, failures_rx) = mpsc::channel(CLUSTER_FAILURE_BATCHES);
            let (reached_tx, reached_rx) = mpsc::channel(CLUSTER_QUEUE);
            let (decided_tx, decided_rx) = mpsc::channel(CLUSTER_QUEUE);
            let (to_ban_tx, to_ban_rx) = mpsc::channel(CONTROL_QUEUE);
            let claims = Arc::new(crate::cluster::ClaimedElsewhere::default());
            (
                Some(pipeline::Sharing {
                    failures: failures_tx,
                    reached: reached_tx,
                    metrics: metrics.clone(),
                }),
                Some(ban::ClusterLink {
                    node: c.node.to_string(),
                    from_cluster: to_ban_rx,
                    to_cluster: decided_tx,
                    claims: claims.clone(),
                }),
                Some(crate::cluster::Links {
                    failures: failures_rx,
                    reached: reached_rx,
                    decided: decided_rx,
                    offences: offence_tx.clone(),
                    to_ban: to_ban_tx,
                    claims,
                    jails: config.jails.iter().map(|j| j.name.clone()).collect(),
                }),
            )
        }
        None => (None, None, None),
    };
    // The ban manager is the one owner of ban state, so it runs on a thread of its own: in a
    // ban storm it must not wait for a turn among the connections and matching workers.
    let manager = supervisor.spawn(
        stage::BAN_MANAGER,
        crate::supervise::on_own_thread(
            stage::BAN_MANAGER,
            crate::supervise::Priority::Favoured,
            ban::run(
                state,
                ban::Inputs {
                    offences: offence_rx,
                    requests: request_rx,
                    store: store_tx,
                    firewalls,
                    cluster: cluster_link,
                },
            ),
        ),
    );
    let pipeline = supervisor.spawn(
        stage::PIPELINE,
        pipeline::run(
            raw_rxs,
            update_rx,
            config.jails.clone(),
            offence_tx,
            sharing,
            feedback,
            metrics.clone(),
        ),
    );

    let stop_side = CancellationToken::new();
    if let (Some(cluster), Some(links)) = (cluster, cluster_links) {
        // A thread of its own, like the ban manager: in a storm the shared count must not
        // wait for a turn among the matching workers (its queue would overflow). Not
        // favoured: when the cores are short it falls behind and drops counts (each collector
        // still counts and bans alone), never ingest.
        supervisor.spawn(
            stage::CLUSTER,
            crate::supervise::on_own_thread(
                stage::CLUSTER,
                crate::supervise::Priority::AsIs,
                crate::cluster::run(
                    cluster,
                    config.state_dir.clone(),
                    links,
                    metrics.clone(),
                    stop_side.clone(),
                ),
            ),
        );
    }
    if notifying {
        crate::notify::announce(&config.notifiers);
        supervisor.spawn(
            stage::NOTIFY,
            crate::notify::run(
                config.state_dir.clone(),
                notifiers_rx,
                announce_delay,
                notify_wake,
                metrics.clone(),
                stop_side.clone(),
            ),
        );
    }
    // Feeds, or none yet: a reload may add them.
    let (feeds, feeds_rx) = tokio::sync::watch::channel(config.feeds.clone());
    supervisor.spawn(
        stage::FEEDS,
        crate::feed::run_all(
            feeds_rx,
            request_tx.clone(),
            metrics.clone(),
            stop_side.clone(),
        ),
    );
    let inputs = TaskTracker::new();
    let mut running = Running {
        supervisor: supervisor.clone(),
        routes,
        notifiers,
        feeds,
        options,
        metrics: metrics.clone(),
        listeners: Vec::new(),
        input: InputContext {
            tx: raw_tx,
            metrics: metrics.clone(),
            shutdown: CancellationToken::new(),
            tracker: inputs.clone(),
            trust_hostname: false,
        },
        pipeline: update_tx,
        manager: request_tx,
        config,
    };
    let (control_tx, mut control_rx) = mpsc::channel::<Envelope>(CONTROL_QUEUE);
    let mut outcome = start_side(&mut running, control_tx, &stop_side, &supervisor).await;

    if outcome.is_ok() {
        log_fail2ban_filters(&running.config.jails);
        info!(
            listeners = running.listeners.len(),
            jails = running.config.jails.len(),
            "Ready"
        );
        systemd::notify("READY=1\nSTATUS=Ready");
        let watchdog_every = systemd::watchdog_interval();
        let mut watchdog =
            tokio::time::interval(watchdog_every.unwrap_or(std::time::Duration::from_secs(3600)));
        let stuck_log = Throttle::new(1, std::time::Duration::from_secs(60));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = hangup.recv() => match running.reload().await {
                    Ok(message) => info!("{message}"),
                    Err(message) => error!("Reload refused, running config kept: {message}"),
                },
                Some((request, reply)) = control_rx.recv() => {
                    let response = running.answer(request).await;
                    // The CLI may have gone away; its answer is then not needed.
                    let _ = reply.send(response);
                }
                _ = watchdog.tick(), if watchdog_every.is_some() => {
                    // A stage stuck on one piece of work (a frozen disk) is not healthy:
                    // without pings the service manager restarts the daemon.
                    let stuck = supervisor.stuck(STUCK_AFTER);
                    if stuck.is_empty() {
                        systemd::notify("WATCHDOG=1");
                    } else {
                        warn_throttled!(stuck_log, ?stuck, "A stage is stuck; the watchdog is not fed");
                    }
                }
                Some(death) = deaths.recv() => {
                    let death = supervise::root_cause(death, &mut deaths).await;
                    error!(stage = death.stage, reason = %death.reason, "A stage stopped; stopping the daemon");
                    outcome = Err(DaemonError::StageDied { stage: death.stage, reason: death.reason });
                    break;
                }
            }
        }
        info!("Stopping");
    }
    systemd::notify("STOPPING=1");
    supervisor.stopping();

    stop_side.cancel();
    running.input.shutdown.cancel();
    let Running {
        input,
        pipeline: update_tx,
        manager: request_tx,
        ..
    } = running;
    drop((input, update_tx, request_tx));
    inputs.close();
    inputs.wait().await;
    // With the inputs gone the pipeline drains and ends, which ends the manager's offences,
    // which ends enforcement after its last batch.
    let _ = pipeline.await;
    let _ = manager.await;
    // The store thread ends when the manager's sender is gone; it may block briefly on its
    // last commit, so it is joined off the async workers.
    let _ = store_thread.await;
    let _ = enforcer.await;
    outcome
}

/// Listeners, control socket and metrics endpoint.
async fn start_side(
    running: &mut Running,
    control_tx: mpsc::Sender<Envelope>,
    stop_side: &CancellationToken,
    supervisor: &Supervisor,
) -> Result<(), DaemonError> {
    for listener in running.config.listeners.clone() {
        let handle = input::start(&listener, &running.input).await?;
        running.listeners.push((listener, handle));
    }
    let control = control::serve(
        &running.config.control_socket,
        control_tx,
        stop_side.clone(),
    )?;
    supervisor.watch(stage::CONTROL, control);
    if let Some(address) = running.config.metrics_listen {
        let metrics = control::http::serve(address, running.metrics.clone(), stop_side.clone())
            .await
            .map_err(|source| DaemonError::Metrics { address, source })?;
        supervisor.watch(stage::METRICS, metrics);
    }
    Ok(())
}

/// What enforces bans on this host: `[ban] backend`, or the log on a dry run.
fn local_backend(config: &Config, dry_run: bool) -> LocalBackend {
    let ban = &config.ban;
    let firewall = match &ban.backend {
        _ if dry_run => Firewall::Log,
        Backend::Log => Firewall::Log,
        Backend::Nftables => Firewall::nftables(
            ban.nft.clone(),
            ban.table.clone(),
            ban.keep_table,
            ban.hooks,
        ),
        Backend::Ipset(tools) => Firewall::Ipset {
            ipset: enforce::ipset::Ipset::new(tools.clone(), &ban.table, ban.hooks),
            keep: ban.keep_table,
        },
        Backend::HostsDeny(file) => Firewall::HostsDeny {
            file: enforce::hosts_deny::HostsDeny::new(file.path.clone(), file.daemons.clone()),
            keep: ban.keep_table,
        },
        Backend::Command(command) => return LocalBackend::Command(Arc::new(command.clone())),
    };
    LocalBackend::Firewall(firewall)
}

fn policies(config: &Config) -> Vec<JailPolicy> {
    let jails = config.jails.iter().map(|j| JailPolicy {
        name: j.name.clone(),
        bantime: j.bantime,
        increment: j.increment.clone(),
        placement: j.placement.clone(),
        kill_connections: j.kill_connections,
        ports: j.ports.clone(),
    });
    // A feed's bans are held by its own jail, with the feed's bantime and placement.
    let feeds = config.feeds.iter().map(|f| JailPolicy {
        name: f.jail.clone(),
        bantime: f.bantime,
        increment: None,
        placement: f.placement.clone(),
        kill_connections: false,
        ports: None,
    });
    jails.chain(feeds).collect()
}

/// The remote targets, with their ssh control sockets under the state directory.
fn remote_targets(config: &Config) -> Result<Vec<RemoteTarget>, DaemonError> {
    if config.targets.is_empty() {
        return Ok(Vec::new());
    }
    let control_dir = config.state_dir.join("ssh");
    std::fs::create_dir_all(&control_dir)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&control_dir, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|source| DaemonError::ControlDir {
            path: control_dir.clone(),
            source,
        })?;
    Ok(config
        .targets
        .iter()
        .map(|t| {
            RemoteTarget::new(
                t.clone(),
                &config.ban.table,
                config.ban.hooks,
                &config.ban.collector,
                control_dir.clone(),
            )
        })
        .collect())
}

fn register_queues<B: Send + 'static, C: Send + 'static>(
    metrics: &Metrics,
    input: &input::Fanout,
    offences: &mpsc::Sender<B>,
    store: &mpsc::Sender<C>,
    firewalls: &enforce::Queues,
) {
    let inputs: Vec<_> = input
        .queues()
        .iter()
        .map(|q| depth(q.downgrade()))
        .collect();
    metrics.register_queue("input", Box::new(move || inputs.iter().map(|d| d()).sum()));
    metrics.register_queue("offences", depth(offences.downgrade()));
    metrics.register_queue("store", depth(store.downgrade()));
    let firewalls: Vec<_> = firewalls.values().map(|q| depth(q.downgrade())).collect();
    metrics.register_queue(
        "firewall",
        Box::new(move || firewalls.iter().map(|d| d()).sum()),
    );
}

/// Per jail with notifiers, the notifiers its `notify` names and the events each hears.
fn routes(config: &Config) -> ban::event::Routes {
    let recidive = config
        .recidive
        .as_ref()
        .map(|r| (crate::config::RECIDIVE_JAIL.to_string(), &r.notify));
    config
        .jails
        .iter()
        .map(|jail| (jail.name.to_string(), &jail.notify))
        .chain(recidive)
        .map(|(jail, notify)| {
            let routes = notify
                .iter()
                .filter_map(|name| config.notifiers.iter().find(|n| &n.name == name))
                .map(|n| ban::event::Route {
                    notifier: n.name.to_string(),
                    ban: n.events.ban,
                    unban: n.events.unban,
                })
                .collect::<Vec<_>>();
            (jail, routes)
        })
        // A jail nobody hears has no entry: the store reads nothing for its bans' ends.
        .filter(|(_, routes)| !routes.is_empty())
        .collect()
}

fn parse_address(text: &str) -> Result<Target, String> {
    text.parse::<Target>()
}

/// Says which jails use fail2ban filters, and which of their regexes need the backtracking
/// engine (bounded, but slower per line than the linear one).
fn log_fail2ban_filters(jails: &[crate::config::JailConfig]) {
    for jail in jails {
        let Some(source) = &jail.fail2ban else {
            continue;
        };
        let slow = source.filter.backtracking_regexes();
        info!(
            jail = %jail.name,
            filter = %source.spec,
            programs = ?jail.programs,
            backtracking = slow.len(),
            "Jail uses a fail2ban filter"
        );
        for (key, index, regex) in slow {
            info!(jail = %jail.name, key, index, regex, "Regex runs on the backtracking engine");
        }
    }
}
