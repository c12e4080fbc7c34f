//! The ban manager: the one task that owns ban state. It turns offences into bans (bantime
//! policy, growing bantimes, recidive), expires them, answers control requests (list, manual
//! ban, unban), records every change in the store and, once stored, tells enforcement what the
//! firewall should hold.
//!
//! Owns which address is banned by which jail until when. It never touches a firewall (it
//! sends `BanCommand`s forward through the store thread) and never blocks on one:
//! enforcement drains its channel continuously and batches on its own side.

pub mod placement;
pub mod policy;
pub mod record;
pub mod state;
pub mod store;

use crate::target::Target;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::config::{BanTime, Increment, JailName, PlacementRule, RecidiveConfig};
use crate::jail::Offence;
pub use placement::{Fleet, Place};
pub use state::{BanState, Moment};
use store::StoreOp;

/// What one firewall should do, as decided by the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanCommand {
    /// Hold `address` until `expires` (None: until removed).
    Ban {
        /// Which firewall.
        place: Place,
        /// The address.
        address: Target,
        /// Deadline; the element's kernel timeout is the time left until it.
        expires: Option<Instant>,
        /// When the ban was decided (for the latency histogram).
        decided: Instant,
    },
    /// Remove `address` now.
    Unban {
        /// Which firewall.
        place: Place,
        /// The address.
        address: Target,
    },
}

impl BanCommand {
    /// The firewall it is for.
    pub fn place(&self) -> &Place {
        match self {
            BanCommand::Ban { place, .. } | BanCommand::Unban { place, .. } => place,
        }
    }
}

/// The ban policy of one jail.
#[derive(Debug, Clone)]
pub struct JailPolicy {
    /// Jail name.
    pub name: JailName,
    /// How long its bans last (before growth).
    pub bantime: BanTime,
    /// Growing bantimes, when enabled.
    pub increment: Option<Increment>,
    /// Where its bans go.
    pub placement: Vec<PlacementRule>,
}

/// A request to the manager, answered on its `reply` channel.
#[derive(Debug)]
pub enum Request {
    /// Every active ban.
    List {
        /// Answer.
        reply: oneshot::Sender<Vec<BanInfo>>,
    },
    /// Ban by hand, as if `jail` had reached maxretry.
    Ban {
        /// Jail whose bantime applies.
        jail: JailName,
        /// The address.
        address: Target,
        /// Answer: whether the address was newly banned in that jail.
        reply: oneshot::Sender<Result<bool, BanError>>,
    },
    /// Lift every ban of an address; answers the jails it was banned in.
    Unban {
        /// The address.
        address: Target,
        /// Answer.
        reply: oneshot::Sender<Vec<JailName>>,
    },
    /// Lift every ban; answers how many addresses were freed.
    UnbanAll {
        /// Answer.
        reply: oneshot::Sender<usize>,
    },
    /// New jail policies after a reload. Bans of jails that disappeared run out as decided.
    Reconfigure {
        /// The jails now configured.
        policies: Vec<JailPolicy>,
        /// The recidive jail, if enabled.
        recidive: Option<RecidiveConfig>,
        /// Answered once in effect.
        reply: oneshot::Sender<()>,
    },
}

/// A request the manager refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BanError {
    /// No such jail.
    #[error("unknown jail '{0}'")]
    UnknownJail(String),
}

/// One active ban, for `banned` and `status JAIL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInfo {
    /// The address.
    pub address: Target,
    /// The jail holding it.
    pub jail: String,
    /// Seconds left; None for permanent bans.
    pub remaining_secs: Option<u64>,
    /// Where the failures came from (`local`, a peer address, or `manual`).
    pub origin: String,
    /// The firewalls the ban was sent to (`local`, target names).
    #[serde(default)]
    pub places: Vec<String>,
}

/// The manager's inputs and output.
pub struct Inputs {
    /// Offences from the jails.
    pub offences: mpsc::Receiver<Offence>,
    /// Control requests.
    pub requests: mpsc::Receiver<Request>,
    /// Where store writes go.
    pub store: mpsc::Sender<StoreOp>,
    /// The queue of each firewall's worker: the commands of those writes go there, before
    /// the writes are committed.
    pub firewalls: HashMap<Place, mpsc::Sender<BanCommand>>,
}

/// How often old history is dropped from memory.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Runs the manager until the offence channel closes (the pipeline ended).
pub async fn run(mut state: BanState, inputs: Inputs) {
    let Inputs {
        mut offences,
        mut requests,
        store,
        firewalls,
    } = inputs;
    // Far enough to never fire; avoids an Option in select!.
    let idle = Duration::from_secs(86400 * 365);
    let mut requests_open = true;
    let mut prune = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        let next = state
            .next_deadline()
            .unwrap_or_else(|| crate::clock::now() + idle);
        let ops: Vec<StoreOp> = tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => state.expire(crate::clock::now()),
            offence = offences.recv() => {
                let Some(offence) = offence else { break };
                state.offence(&offence, Moment::now())
            }
            request = requests.recv(), if requests_open => match request {
                None => {
                    requests_open = false;
                    Vec::new()
                }
                Some(request) => answer(&mut state, request),
            },
            _ = prune.tick() => {
                state.prune_history(crate::clock::wall_now());
                Vec::new()
            }
        };
        // The firewall is told first: the ban is in the kernel before the attacker's next
        // attempt, without waiting for the commit (which follows within a millisecond; the
        // `Banned` line is logged once it is durable).
        for command in ops.iter().flat_map(StoreOp::commands) {
            send_to_firewall(&firewalls, command.clone()).await;
        }
        for op in ops {
            if store.send(op).await.is_err() {
                error!("Ban store stopped; bans are no longer recorded or applied");
                return;
            }
        }
    }
    // Expiries still due are the kernel's business; nothing else to flush.
    warn_if_pending(&state);
}

/// Queues `command` for the worker of its firewall.
pub async fn send_to_firewall(
    firewalls: &HashMap<Place, mpsc::Sender<BanCommand>>,
    command: BanCommand,
) {
    let place = command.place().clone();
    match firewalls.get(&place) {
        Some(queue) => {
            if queue.send(command).await.is_err() {
                error!(%place, "Firewall worker stopped; command dropped");
            }
        }
        // Placement only names configured targets, and targets need a restart to change.
        None => error!(%place, ?command, "Command for an unknown firewall dropped"),
    }
}

fn warn_if_pending(state: &BanState) {
    if state.banned_count() > 0 {
        warn!(
            banned = state.banned_count(),
            "Stopping with active bans; they are in the store and restored on start"
        );
    }
}

fn answer(state: &mut BanState, request: Request) -> Vec<StoreOp> {
    let now = Moment::now();
    // A requester that went away does not need its answer: send errors are ignored.
    match request {
        Request::List { reply } => {
            let _ = reply.send(state.list(now.instant));
            Vec::new()
        }
        Request::Ban {
            jail,
            address,
            reply,
        } => match state.manual_ban(&jail, address, now) {
            Ok((new, ops)) => {
                let _ = reply.send(Ok(new));
                ops
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                Vec::new()
            }
        },
        Request::Unban { address, reply } => {
            let (jails, ops) = state.unban(address);
            let _ = reply.send(jails);
            ops
        }
        Request::UnbanAll { reply } => {
            let (freed, ops) = state.unban_all();
            let _ = reply.send(freed);
            ops
        }
        Request::Reconfigure {
            policies,
            recidive,
            reply,
        } => {
            state.reconfigure(policies, recidive);
            let _ = reply.send(());
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    //! The manager task itself on paused tokio time: a ban decided now ends after its
    //! bantime without the test waiting for it.
    use super::*;
    use crate::input::Origin;
    use crate::metrics::Metrics;
    use std::sync::Arc;

    const BANTIME: Duration = Duration::from_secs(600);

    fn sshd() -> JailName {
        JailName::new("sshd").unwrap()
    }

    struct Manager {
        offences: mpsc::Sender<Offence>,
        requests: mpsc::Sender<Request>,
        store: mpsc::Receiver<StoreOp>,
        firewall: mpsc::Receiver<BanCommand>,
    }

    fn start() -> Manager {
        let policy = JailPolicy {
            name: sshd(),
            bantime: BanTime::For(BANTIME),
            increment: None,
            placement: vec![PlacementRule::Local],
        };
        let state = BanState::new(
            vec![policy],
            None,
            Duration::from_secs(86400),
            Arc::new(Metrics::default()),
        )
        .with_jitter(|| 0.0);
        let (offences, offences_rx) = mpsc::channel(8);
        let (requests, requests_rx) = mpsc::channel(8);
        let (store_tx, store) = mpsc::channel(8);
        let (firewall_tx, firewall) = mpsc::channel(8);
        let inputs = Inputs {
            offences: offences_rx,
            requests: requests_rx,
            store: store_tx,
            firewalls: HashMap::from([(Place::Local, firewall_tx)]),
        };
        tokio::spawn(run(state, inputs));
        Manager {
            offences,
            requests,
            store,
            firewall,
        }
    }

    fn offence(address: &str) -> Offence {
        Offence {
            jail: sshd(),
            target: address.parse().unwrap(),
            origin: Origin::Local,
            origin_name: None,
            failures: 3,
            at: crate::clock::now(),
            sample: "Failed password for root from 198.51.100.66".into(),
        }
    }

    async fn remaining(requests: &mpsc::Sender<Request>) -> Vec<Option<u64>> {
        let (reply, answer) = oneshot::channel();
        requests.send(Request::List { reply }).await.unwrap();
        answer
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.remaining_secs)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_ban_ends_after_its_bantime_on_tokio_time() {
        let mut m = start();
        let started = tokio::time::Instant::now();
        m.offences.send(offence("198.51.100.66")).await.unwrap();

        let Some(StoreOp::Ban(record, commands)) = m.store.recv().await else {
            panic!("expected a ban record")
        };
        assert_eq!(record.address.to_string(), "198.51.100.66");
        assert!(matches!(
            m.firewall.recv().await,
            Some(BanCommand::Ban {
                expires: Some(_),
                ..
            })
        ));
        assert_eq!(commands.len(), 1);
        assert_eq!(remaining(&m.requests).await, vec![Some(600)]);

        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(remaining(&m.requests).await, vec![Some(1)]);

        // Nothing is due until the bantime has run: the next write is the ban's end.
        let Some(StoreOp::End { address, jail, .. }) = m.store.recv().await else {
            panic!("expected the ban to end")
        };
        assert_eq!(
            (address.to_string(), jail.as_str()),
            ("198.51.100.66".to_string(), "sshd")
        );
        let ran = started.elapsed();
        assert!(
            ran >= BANTIME && ran < BANTIME + Duration::from_secs(1),
            "{ran:?}"
        );
        assert!(remaining(&m.requests).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unban_by_hand_before_expiry_removes_it_from_the_firewall() {
        let mut m = start();
        m.offences.send(offence("2001:db8::66")).await.unwrap();
        assert!(matches!(m.store.recv().await, Some(StoreOp::Ban(..))));
        assert!(matches!(
            m.firewall.recv().await,
            Some(BanCommand::Ban { .. })
        ));
        tokio::time::advance(BANTIME / 2).await;

        let (reply, answer) = oneshot::channel();
        let address: Target = "2001:db8::66".parse().unwrap();
        m.requests
            .send(Request::Unban { address, reply })
            .await
            .unwrap();
        assert_eq!(answer.await.unwrap(), vec![sshd()]);
        assert!(matches!(
            m.firewall.recv().await,
            Some(BanCommand::Unban {
                place: Place::Local,
                ..
            })
        ));
        assert!(matches!(m.store.recv().await, Some(StoreOp::End { .. })));
    }
}
