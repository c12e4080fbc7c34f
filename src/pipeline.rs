//! The per-message loop: parse → route → jails, with offences sent on to the ban manager.
//!
//! Owns the jails' runtime state (their failure windows) and swaps jail configs on reload
//! while keeping the windows of jails that still exist. It calls the stages in order and adds
//! no logic of its own besides counting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::config::JailConfig;
use crate::input::RawMessage;
use crate::jail::{Jail, Offence, Verdict};
use crate::metrics::{JailMetrics, Metrics};
use crate::parse;
use crate::route::Router;

/// How often stale failure windows are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A change pushed into the running pipeline.
#[derive(Debug)]
pub enum Update {
    /// The enabled jails after a reload; acknowledged once in effect.
    Jails(Vec<JailConfig>, oneshot::Sender<()>),
}

/// The jails with their routing index and counters.
struct Jails {
    router: Router,
    jails: Vec<Jail>,
    counters: Vec<Arc<JailMetrics>>,
}

impl Jails {
    fn build(
        configs: &[JailConfig],
        mut previous: HashMap<String, Jail>,
        metrics: &Metrics,
    ) -> Self {
        let router = Router::new(
            configs
                .iter()
                .map(|j| j.programs.iter().map(String::as_str)),
        );
        let jails = configs
            .iter()
            .map(|config| match previous.remove(config.name.as_str()) {
                Some(mut jail) => {
                    jail.reconfigure(config);
                    jail
                }
                None => Jail::new(config),
            })
            .collect();
        let counters = configs
            .iter()
            .map(|c| metrics.jail(c.name.as_str()))
            .collect();
        Jails {
            router,
            jails,
            counters,
        }
    }

    fn into_previous(self) -> HashMap<String, Jail> {
        self.jails
            .into_iter()
            .map(|j| (j.name().as_str().to_string(), j))
            .collect()
    }
}

/// Runs until `messages` closes (all listeners stopped).
pub async fn run(
    mut messages: mpsc::Receiver<RawMessage>,
    mut updates: mpsc::Receiver<Update>,
    configs: Vec<JailConfig>,
    offences: mpsc::Sender<Offence>,
    metrics: Arc<Metrics>,
) {
    let mut state = Jails::build(&configs, HashMap::new(), &metrics);
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    let mut updates_open = true;
    loop {
        let message = tokio::select! {
            m = messages.recv() => match m {
                Some(m) => m,
                None => break,
            },
            update = updates.recv(), if updates_open => {
                match update {
                    Some(Update::Jails(configs, applied)) => {
                        let previous = std::mem::replace(&mut state, Jails::build(&[], HashMap::new(), &metrics)).into_previous();
                        state = Jails::build(&configs, previous, &metrics);
                        // The reloader may have gone; the update is in effect either way.
                        let _ = applied.send(());
                    }
                    None => updates_open = false,
                }
                continue;
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                for (jail, counters) in state.jails.iter_mut().zip(&state.counters) {
                    jail.sweep(now);
                    Metrics::set(&counters.tracked, jail.tracked_addresses() as u64);
                }
                continue;
            }
        };
        if !process(&mut state, message, &offences, &metrics).await {
            warn!("Ban manager stopped; offences are dropped");
            return;
        }
    }
}

/// One message through parse, route and its jails; false when the ban manager is gone.
async fn process(
    state: &mut Jails,
    message: RawMessage,
    offences: &mpsc::Sender<Offence>,
    metrics: &Metrics,
) -> bool {
    let now: DateTime<Utc> = message.received_at.into();
    let record = match parse::parse_syslog(&message.frame, now) {
        Ok(r) => r,
        Err(e) => {
            Metrics::inc(&metrics.unparsed);
            debug!(origin = %message.origin, error = %e, "Unparsed frame");
            return true;
        }
    };
    let targets = state.router.jails_for(&record.program);
    if targets.is_empty() {
        Metrics::inc(&metrics.unrouted);
        return true;
    }
    for &index in targets {
        let jail = &mut state.jails[index];
        let counters = &state.counters[index];
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
                    return false;
                }
            }
        }
        Metrics::set(&counters.tracked, jail.tracked_addresses() as u64);
    }
    true
}
