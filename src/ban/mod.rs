//! The ban manager: the one task that owns ban state. It turns offences into bans (bantime
//! policy, growing bantimes, recidive), expires them, answers control requests (list, manual
//! ban, unban), records every change in the store and, once stored, tells enforcement what the
//! firewall should hold.
//!
//! Owns which address is banned by which jail until when. It never touches a firewall (it
//! sends `BanCommand`s forward through the store thread) and never blocks on one:
//! enforcement drains its channel continuously and batches on its own side.

pub mod event;
mod messages;
pub mod placement;
pub mod policy;
pub mod record;
pub mod state;
pub mod store;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::cluster::{ClaimedElsewhere, Published, SharedBan, ToBan};
use crate::jail::Offence;
pub use messages::{BanCommand, BanError, BanInfo, BanReason, JailPolicy, Request};
pub use placement::{Fleet, Place};
use record::StoreOp;
pub use state::{BanState, Moment};

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
    /// The cluster, when configured.
    pub cluster: Option<ClusterLink>,
}

/// The ban manager's side of the cluster.
#[derive(Debug)]
pub struct ClusterLink {
    /// This collector's name.
    pub node: String,
    /// Bans of other collectors to adopt, and requests.
    pub from_cluster: mpsc::Receiver<ToBan>,
    /// Bans decided here, and addresses lifted here by hand, to publish.
    pub to_cluster: mpsc::Sender<Published>,
    /// Attackers whose shared count another collector claimed: a ban decided here for one
    /// of them is that collector's to publish and announce.
    pub claims: Arc<ClaimedElsewhere>,
}

/// Most messages waiting for the cluster's queue (a ban storm's bans while the engine is slow);
/// past it the oldest are dropped, counted. Every ban is also in the ban state, which the
/// cluster republishes whole when its engine lost them.
const OUTGOING_CAP: usize = 1_000_000;

/// What the manager hands to the cluster, in order: the queue is never waited on, so what it
/// cannot take yet waits here and goes as soon as it has room.
#[derive(Default)]
struct Outgoing(VecDeque<Published>);

impl Outgoing {
    fn push(&mut self, message: Published, metrics: &crate::metrics::Metrics) {
        if self.0.len() >= OUTGOING_CAP {
            self.0.pop_front();
            crate::metrics::Metrics::inc(&metrics.cluster.buffer_dropped);
        }
        self.0.push_back(message);
    }

    /// Sends what the queue takes now.
    fn flush(&mut self, link: Option<&ClusterLink>) {
        let Some(link) = link else {
            self.0.clear();
            return;
        };
        while let Some(message) = self.0.pop_front() {
            match link.to_cluster.try_send(message) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(message)) => {
                    self.0.push_front(message);
                    return;
                }
                // The cluster stage is gone (the daemon is stopping): nothing to hand to.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.0.clear();
                    return;
                }
            }
        }
    }
}

/// Queues the bans among `ops` for the cluster to publish.
fn publish(
    outgoing: &mut Outgoing,
    link: Option<&ClusterLink>,
    ops: &[StoreOp],
    metrics: &crate::metrics::Metrics,
) {
    let Some(link) = link else { return };
    for op in ops {
        if let StoreOp::Ban(record, _) = op {
            // A ban decided here for an attacker whose claim another collector holds
            // (`decided_by`) goes too: the counter holds it back for that collector's, and
            // publishes it only if that one never comes. (Adopted bans never pass here.)
            if record.jail.starts_with(crate::config::FEED_JAIL_PREFIX) {
                // Every collector fetches its feeds itself.
                continue;
            }
            let ban = SharedBan {
                node: link.node.clone(),
                jail: record.jail.clone(),
                address: record.address,
                failures: record.failures,
                origin: record.origin.clone(),
                started: record.started,
                expires: record.expires,
                sample: record.sample.clone(),
                republished: false,
                decided_by: None,
                more_origins: record.more_origins.clone(),
                placement: record.placement.clone(),
            };
            outgoing.push(Published::Ban(ban), metrics);
        }
    }
}

/// Most offences decided in one turn of the manager's loop.
const OFFENCE_BATCH: usize = 1000;

/// How often old history is dropped from memory.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Runs the manager until the offence channel closes (the pipeline ended).
pub async fn run(mut state: BanState, inputs: Inputs) {
    let Inputs {
        mut offences,
        mut requests,
        store,
        firewalls,
        mut cluster,
    } = inputs;
    let mut cluster_open = cluster.is_some();
    let mut outgoing = Outgoing::default();
    // A handle of its own: waiting for room in the cluster's queue borrows nothing else.
    let to_cluster = cluster.as_ref().map(|link| link.to_cluster.clone());
    // Far enough to never fire; avoids an Option in select!.
    let idle = Duration::from_secs(86400 * 365);
    let mut requests_open = true;
    // Start-up purged the store and read only the history it kept: the first prune is due
    // an interval from now.
    let mut prune =
        tokio::time::interval_at(tokio::time::Instant::now() + PRUNE_INTERVAL, PRUNE_INTERVAL);
    loop {
        let mut adopted = false;
        let next = state
            .next_deadline()
            .unwrap_or_else(|| crate::clock::now() + idle);
        let ops: Vec<StoreOp> = tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => state.expire(crate::clock::now()),
            offence = offences.recv() => {
                let Some(offence) = offence else { break };
                let mut ops = decide(&mut state, offence, cluster.as_ref());
                // Offences already queued (a ban storm) are decided in the same turn, so
                // their commands reach the firewall worker together, as one batch.
                for _ in 1..OFFENCE_BATCH {
                    let Ok(offence) = offences.try_recv() else { break };
                    ops.extend(decide(&mut state, offence, cluster.as_ref()));
                }
                ops
            }
            request = requests.recv(), if requests_open => match request {
                None => {
                    requests_open = false;
                    Vec::new()
                }
                Some(request) => {
                    // A lift by hand is the operator's word for the whole cluster.
                    if let (Request::Unban { address, .. }, Some(link)) = (&request, &cluster) {
                        let lifted = Published::Unban { node: link.node.clone(), address: *address };
                        outgoing.push(lifted, state.metrics());
                    }
                    answer(&mut state, request)
                }
            },
            _ = prune.tick() => vec![state.prune_history(crate::clock::wall_now())],
            shared = async { cluster.as_mut()?.from_cluster.recv().await }, if cluster_open => match shared {
                None => {
                    cluster_open = false;
                    Vec::new()
                }
                // `cluster` is there: the message came from it.
                Some(first) => match cluster.as_mut() {
                    None => Vec::new(),
                    Some(link) => {
                        // None of it is published again: adopted bans are another
                        // collector's, and the rest yields no new ban. What else is queued
                        // (another collector's share of a storm) goes in the same turn, as one
                        // batch to the firewall.
                        adopted = true;
                        let mut ops = apply_from_cluster(&mut state, first, &link.node, &mut outgoing);
                        for _ in 1..OFFENCE_BATCH {
                            let Ok(next) = link.from_cluster.try_recv() else { break };
                            ops.extend(apply_from_cluster(&mut state, next, &link.node, &mut outgoing));
                        }
                        ops
                    }
                },
            },
            permit = async { to_cluster.as_ref()?.reserve().await.ok() }, if !outgoing.0.is_empty() => {
                // Room again: the oldest waiting message goes, the rest after this turn.
                if let (Some(permit), Some(message)) = (permit, outgoing.0.pop_front()) {
                    permit.send(message);
                }
                Vec::new()
            }
        };
        // Adopted bans are another collector's: not published again.
        if !adopted {
            publish(&mut outgoing, cluster.as_ref(), &ops, state.metrics());
        }
        outgoing.flush(cluster.as_ref());
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

/// Bans for `offence`. When another collector holds the attacker's shared claim, its ban is
/// on its way here: the ban is held at once all the same, recorded as that collector's (it
/// publishes and announces it, not this one).
fn decide(state: &mut BanState, offence: Offence, cluster: Option<&ClusterLink>) -> Vec<StoreOp> {
    let holder = cluster.and_then(|link| link.claims.holder(&offence.jail, offence.target));
    state.offence_decided_by(offence, holder.as_deref(), Moment::now())
}

/// What a message from the cluster changes here (`node`: this collector).
fn apply_from_cluster(
    state: &mut BanState,
    message: ToBan,
    node: &str,
    outgoing: &mut Outgoing,
) -> Vec<StoreOp> {
    match message {
        ToBan::Adopt(bans) => {
            let now = Moment::now();
            let mut ops = Vec::with_capacity(bans.len());
            for ban in bans {
                ops.extend(state.adopt(ban, node, now));
            }
            ops
        }
        ToBan::Unban(address) => state.unban(address).1,
        ToBan::Yield(bans) => bans
            .iter()
            .filter_map(|y| state.yield_to(&y.jail, y.address, &y.to))
            .collect(),
        ToBan::TakeOver(bans) => bans
            .iter()
            .filter_map(|(jail, address)| state.take_over(jail, *address))
            .collect(),
        ToBan::Republish => {
            for ban in state.shared_bans(node, Moment::now()) {
                outgoing.push(Published::Ban(ban), state.metrics());
            }
            Vec::new()
        }
    }
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
            "Stopping with active bans; they are restored from the store on start (a dry run stored none)"
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
        Request::HeldBy { prefix, reply } => {
            let _ = reply.send(state.held_by(prefix));
            Vec::new()
        }
        Request::Ban {
            jail,
            address,
            placement,
            origin,
            reply,
        } => match state.manual_ban(&jail, address, placement, origin, now) {
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
        Request::Lift {
            jail,
            address,
            reply,
        } => {
            let ops = state.lift(address, &jail, now.instant);
            let _ = reply.send(!ops.is_empty());
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
    use crate::config::{BanTime, JailName, PlacementRule};
    use crate::input::Origin;
    use crate::metrics::Metrics;
    use crate::target::Target;
    use std::sync::Arc;
    use tokio::sync::oneshot;

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

    fn state() -> BanState {
        let policy = JailPolicy {
            name: sshd(),
            bantime: BanTime::For(BANTIME),
            increment: None,
            placement: vec![PlacementRule::Local],
            kill_connections: false,
            ports: None,
        };
        BanState::new(
            vec![policy],
            None,
            Duration::from_secs(86400),
            Arc::new(Metrics::default()),
        )
        .with_jitter(|| 0.0)
    }

    fn start() -> Manager {
        let state = state();
        let (offences, offences_rx) = mpsc::channel(8);
        let (requests, requests_rx) = mpsc::channel(8);
        let (store_tx, store) = mpsc::channel(8);
        let (firewall_tx, firewall) = mpsc::channel(8);
        let inputs = Inputs {
            offences: offences_rx,
            requests: requests_rx,
            store: store_tx,
            firewalls: HashMap::from([(Place::Local, firewall_tx)]),
            cluster: None,
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
            lines: Vec::new(),
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

    /// Collector a's link, its queue to the cluster `room` deep (and that queue's end).
    fn cluster_link(room: usize) -> (ClusterLink, mpsc::Receiver<Published>) {
        let (to_cluster, published) = mpsc::channel(room);
        let (_to_ban, from_cluster) = mpsc::channel(1);
        let link = ClusterLink {
            node: "a".into(),
            from_cluster,
            to_cluster,
            claims: Arc::default(),
        };
        (link, published)
    }

    #[test]
    fn what_the_cluster_queue_cannot_take_waits_in_order_and_nothing_is_lost() {
        let (link, mut published) = cluster_link(2);
        let metrics = crate::metrics::Metrics::default();
        let lifted = |n: u8| Published::Unban {
            node: "a".into(),
            address: crate::target::Target::from(std::net::IpAddr::from([198, 51, 100, n])),
        };
        let mut outgoing = Outgoing::default();
        for n in 1..=5 {
            outgoing.push(lifted(n), &metrics);
        }
        outgoing.flush(Some(&link));
        assert_eq!(outgoing.0.len(), 3, "the queue took two");
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let Ok(Published::Unban { address, .. }) = published.try_recv() else {
                outgoing.flush(Some(&link));
                continue;
            };
            seen.push(address.to_string());
        }
        assert_eq!(
            seen,
            [
                "198.51.100.1",
                "198.51.100.2",
                "198.51.100.3",
                "198.51.100.4",
                "198.51.100.5"
            ]
        );
        assert_eq!(
            crate::metrics::Metrics::get(&metrics.cluster.buffer_dropped),
            0
        );
    }

    #[test]
    fn a_ban_decided_here_for_an_attacker_another_collector_claimed_is_that_ones() {
        let (link, _published) = cluster_link(8);
        let claimed = offence("198.51.100.8");
        let later = std::time::Instant::now() + Duration::from_secs(60);
        link.claims.note(&sshd(), claimed.target, "b", later);
        let mut state = state();
        let mut ops = decide(&mut state, claimed, Some(&link));
        ops.extend(decide(&mut state, offence("198.51.100.9"), Some(&link)));
        // Both are held here at once (their firewall commands go out)...
        assert!(ops.iter().all(|op| !op.commands().is_empty()));
        let deciders: Vec<Option<&str>> = ops
            .iter()
            .map(|op| match op {
                StoreOp::Ban(record, _) => record.decided_by.as_deref(),
                StoreOp::End { .. }
                | StoreOp::Yield { .. }
                | StoreOp::TakeOver { .. }
                | StoreOp::Purge { .. } => {
                    panic!("only bans: {op:?}")
                }
            })
            .collect();
        assert_eq!(deciders, vec![Some("b"), None]);
        // ...and both go to the counter, which publishes the one decided here and holds the
        // other back for b's (publishing it only should b's never come).
        let metrics = Metrics::default();
        let mut outgoing = Outgoing::default();
        publish(&mut outgoing, Some(&link), &ops, &metrics);
        let published: Vec<String> = outgoing
            .0
            .iter()
            .map(|p| match p {
                Published::Ban(ban) => ban.address.to_string(),
                Published::Unban { .. } => panic!("no unban"),
            })
            .collect();
        assert_eq!(published, vec!["198.51.100.8", "198.51.100.9"]);
    }
}
