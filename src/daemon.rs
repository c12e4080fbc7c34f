//! Wiring: builds the pipeline from a compiled config — listeners → parse/route/jails → ban
//! manager → enforcement — connects the stages with bounded channels, and shuts them down in
//! order (inputs first, so everything received is counted and every decided ban applied).
//!
//! Owns task lifetimes and channel sizes. Holds no logic of its own beyond the per-message
//! loop that calls parse, route and the jails in turn.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::ban::{self, BanState, JailPolicy};
use crate::config::{Backend, Config};
use crate::enforce::{self, nft::NftError, Firewall};
use crate::input::{self, InputContext, InputError, RawMessage};
use crate::jail::{Jail, Offence, Verdict};
use crate::metrics::Metrics;
use crate::parse;
use crate::route::Router;

/// Frames in flight between the sockets and the jails.
const INPUT_QUEUE: usize = 16 * 1024;
/// Offences waiting for the ban manager.
const OFFENCE_QUEUE: usize = 4 * 1024;
/// Commands waiting for enforcement (drained continuously, so rarely more than a batch).
const FIREWALL_QUEUE: usize = 16 * 1024;
/// How often stale failure windows are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Options from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Decide bans but only log them.
    pub dry_run: bool,
}

/// The daemon could not start.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The firewall could not be prepared.
    #[error("cannot set up the firewall: {0}")]
    Firewall(#[from] NftError),
    /// A listener could not start.
    #[error(transparent)]
    Input(#[from] InputError),
}

/// Runs until `shutdown` completes, then drains and stops.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let metrics = Arc::new(Metrics::new(
        config.listeners.iter().map(|l| l.label.as_str()),
        config.jails.iter().map(|j| j.name.as_str()),
    ));
    let firewall = if options.dry_run || config.ban.backend == Backend::Log {
        Firewall::Log
    } else {
        Firewall::Nftables {
            nft: config.ban.nft.clone(),
            table: config.ban.table.clone(),
            keep_table: config.ban.keep_table,
        }
    };
    // The table exists before the first message can be received.
    firewall.setup().await?;

    let (raw_tx, raw_rx) = mpsc::channel(INPUT_QUEUE);
    let (offence_tx, offence_rx) = mpsc::channel(OFFENCE_QUEUE);
    let (firewall_tx, firewall_rx) = mpsc::channel(FIREWALL_QUEUE);

    let enforcer = tokio::spawn(enforce::run(firewall, firewall_rx, metrics.clone()));
    let policies = config
        .jails
        .iter()
        .map(|j| JailPolicy {
            name: j.name.clone(),
            bantime: j.bantime,
        })
        .collect();
    let stop_timers = CancellationToken::new();
    let manager = tokio::spawn(ban::run(
        BanState::new(policies, metrics.clone()),
        offence_rx,
        firewall_tx,
        stop_timers.clone(),
    ));
    let router = Router::new(
        config
            .jails
            .iter()
            .map(|j| j.programs.iter().map(String::as_str)),
    );
    let jails = config
        .jails
        .iter()
        .enumerate()
        .map(|(i, j)| Jail::new(i, j))
        .collect();
    let pipeline = tokio::spawn(pipeline(raw_rx, router, jails, offence_tx, metrics.clone()));

    let stop_inputs = CancellationToken::new();
    let inputs = TaskTracker::new();
    let ctx = InputContext {
        tx: raw_tx,
        metrics: metrics.clone(),
        shutdown: stop_inputs.clone(),
        tracker: inputs.clone(),
    };
    let mut started = Ok(());
    for (index, listener) in config.listeners.iter().enumerate() {
        if let Err(e) = input::start(index, listener, &ctx).await {
            started = Err(e);
            break;
        }
    }
    // Listener tasks hold their own senders; ours must go so the pipeline can end.
    drop(ctx);
    if started.is_ok() {
        info!(
            listeners = config.listeners.len(),
            jails = config.jails.len(),
            "Ready"
        );
        shutdown.await;
        info!("Stopping");
    }

    stop_inputs.cancel();
    inputs.close();
    inputs.wait().await;
    // With the inputs gone the pipeline drains and ends, which ends the manager's offences,
    // which ends enforcement after its last batch.
    let _ = pipeline.await;
    stop_timers.cancel();
    let _ = manager.await;
    let _ = enforcer.await;
    started.map_err(DaemonError::from)
}

/// The per-message loop: parse → route → jails; offences go to the ban manager.
async fn pipeline(
    mut messages: mpsc::Receiver<RawMessage>,
    router: Router,
    mut jails: Vec<Jail>,
    offences: mpsc::Sender<Offence>,
    metrics: Arc<Metrics>,
) {
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        let message = tokio::select! {
            m = messages.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = sweep.tick() => {
                let now = Instant::now();
                jails.iter_mut().for_each(|j| j.sweep(now));
                continue;
            }
        };
        let now: DateTime<Utc> = message.received_at.into();
        let record = match parse::parse_syslog(&message.frame, now) {
            Ok(r) => r,
            Err(e) => {
                Metrics::inc(&metrics.unparsed);
                debug!(origin = %message.origin, error = %e, "Unparsed frame");
                continue;
            }
        };
        let targets = router.jails_for(&record.program);
        if targets.is_empty() {
            Metrics::inc(&metrics.unrouted);
            continue;
        }
        for &index in targets {
            let jail = &mut jails[index];
            let counters = &metrics.jails[index];
            match jail.process(&record, message.origin, message.received) {
                Verdict::NoMatch => {}
                Verdict::Ignored => Metrics::inc(&counters.ignored),
                Verdict::Counted { address, failures } => {
                    Metrics::inc(&counters.failures);
                    debug!(jail = %jail.name(), %address, failures, "Failure");
                }
                Verdict::Offence(offence) => {
                    Metrics::inc(&counters.failures);
                    if offences.send(offence).await.is_err() {
                        warn!("Ban manager stopped; offences are dropped");
                        return;
                    }
                }
            }
        }
    }
}
