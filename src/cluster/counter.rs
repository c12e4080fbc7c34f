//! The counter: takes the failures the jails counted to the shared count, hands the ban
//! manager an offence when one of them reached maxretry first, publishes the bans decided
//! here, and keeps the heartbeat and the epoch. Buffers what the engine cannot take.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::engine::{millis, CountArgs, Counted, FailureId};
use super::entry::{Form, Published};
use super::messages::{ClaimedElsewhere, SharedFailure, ToBan, Yielded};
use super::resp::{Connection, EngineError};
use super::shared::{Shared, COUNT_BATCH, HEARTBEAT, PUBLISH_BATCH, STREAM_CAP};
use crate::config::JailName;
use crate::input::Origin;
use crate::jail::Offence;
use crate::target::{ByAttacker, Target};

/// Longest a stop waits to publish the bans still buffered.
const STOP_FLUSH: Duration = Duration::from_secs(2);
/// Most attackers remembered as settled (a storm past it only costs engine calls).
const SETTLED_CAP: usize = 1_000_000;
/// How long a ban held back for the collector holding its claim waits for that collector's
/// ban before this one publishes it: the holder publishes right after its claim, so a ban
/// that has not arrived by then (a storm's backlog takes a few seconds) means the holder
/// stopped between the two, and the other collectors would never get it.
const HOLDER_PUBLISHES_WITHIN: Duration = Duration::from_secs(10);
use crate::metrics::{ClusterMetrics, Metrics};

/// An attacker in a jail, and its sender when the jail counts per origin host (None for a
/// local socket's).
type Attacker = (JailName, Target, Option<IpAddr>);

fn attacker(failure: &SharedFailure) -> Attacker {
    let sender = match failure.origin {
        Origin::Peer(peer) if failure.per_origin => Some(peer.ip()),
        Origin::Peer(_) | Origin::Local => None,
    };
    (failure.jail.clone(), failure.target, sender)
}

/// How a jail counting per origin host names the sender on the engine: its address, or, for
/// a local socket, this collector (each collector's local senders are its own host's).
fn origin_key(failure: &SharedFailure, node: &str) -> Option<String> {
    failure.per_origin.then(|| match failure.origin {
        Origin::Peer(peer) => peer.ip().to_string(),
        Origin::Local => format!("local.{node}"),
    })
}

/// Notes an attacker settled until `until`, within [`SETTLED_CAP`].
fn remember(settled: &mut ByAttacker<Attacker, Instant>, key: Attacker, until: Instant) {
    if settled.len() < SETTLED_CAP {
        settled.insert(key, until);
    }
}

/// A failure with its number in this run (its id in the cluster, kept when it is sent
/// again).
pub(super) struct Pending {
    sequence: u64,
    failure: SharedFailure,
}

/// The counting side's state.
pub(super) struct Counter {
    shared: Shared,
    /// The connection and the count script's SHA1; None: degraded.
    conn: Option<(Connection, String)>,
    /// Failures waiting for the engine, oldest first.
    failures: VecDeque<Pending>,
    /// Bans waiting to be published, oldest first.
    bans: VecDeque<Published>,
    /// The engine's epoch as last read.
    epoch: Option<String>,
    /// The replication id of the primary last connected to (when it tells it).
    primary: Option<String>,
    /// The active bans were published again for a new primary since the last heartbeat's
    /// epoch check.
    republished_since_beat: bool,
    /// Attackers whose claim is taken, per jail (and sender, in a jail counting per origin):
    /// by this collector (its own count reached maxretry, or the shared count was claimed
    /// here) or by another (its ban is on its way here). Until the claim lapses no failure
    /// of theirs can take it, so none is sent.
    settled: ByAttacker<Attacker, Instant>,
    /// The last failure id given out, and when this run started (ids stay unique across
    /// restarts).
    sequence: u64,
    started_ms: u64,
    offences: mpsc::Sender<Offence>,
    to_ban: mpsc::Sender<ToBan>,
    /// The encoded calls of the last batch and their answers, kept for the next (a storm's
    /// batch is half a megabyte: allocated once, not per round trip).
    commands: Vec<u8>,
    counted: Vec<Counted>,
    /// Claims other collectors hold, for the ban manager.
    claims: Arc<ClaimedElsewhere>,
    /// The jails, whose claims on an address lifted by hand here are lifted on the engine.
    jails: Vec<JailName>,
    /// Addresses another collector lifted by hand: no longer settled here.
    lifted: mpsc::Receiver<Target>,
    /// The form bans go out in, as the last heartbeat chose it (None before the first:
    /// a field per value, which every version reads).
    form: Option<Form>,
    /// What the heartbeat keeps between beats.
    beat: heartbeat::BeatState,
}

impl Counter {
    pub(super) fn new(
        shared: Shared,
        offences: mpsc::Sender<Offence>,
        to_ban: mpsc::Sender<ToBan>,
        claims: Arc<ClaimedElsewhere>,
        jails: Vec<JailName>,
        lifted: mpsc::Receiver<Target>,
    ) -> Counter {
        Counter {
            shared,
            conn: None,
            failures: VecDeque::new(),
            bans: VecDeque::new(),
            epoch: None,
            primary: None,
            republished_since_beat: false,
            form: None,
            beat: heartbeat::BeatState::new(),
            settled: ByAttacker::default(),
            commands: Vec::new(),
            counted: Vec::new(),
            claims,
            jails,
            lifted,
            sequence: 0,
            started_ms: millis(SystemTime::now()),
            offences,
            to_ban,
        }
    }

    pub(super) async fn run(
        mut self,
        mut failures: mpsc::Receiver<Vec<SharedFailure>>,
        mut reached: mpsc::Receiver<SharedFailure>,
        mut decided: mpsc::Receiver<Published>,
        stop: CancellationToken,
    ) {
        self.reconnect().await;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // In order: the bans decided here first, after the claims queued before them
            // (each ban's claim is queued before the ban), then further claims, then the
            // counted failures, which in a storm are always waiting. Claims come as fast as
            // round trips go in a storm: taken before the bans, they would hold the bans
            // back for seconds while the other collectors count their attackers on.
            tokio::select! {
                biased;
                () = stop.cancelled() => {
                    self.flush_at_stop().await;
                    return;
                }
                ban = decided.recv() => match ban {
                    Some(first) => {
                        // A storm's bans go out together: one round trip per batch.
                        let mut batch = vec![first];
                        while batch.len() < PUBLISH_BATCH {
                            let Ok(next) = decided.try_recv() else { break };
                            batch.push(next);
                        }
                        // Their claims, queued before them, go first (with the failures
                        // waiting, as in any round trip: a round trip of claims alone would
                        // leave the failures' queue to overflow).
                        let claims: Vec<Pending> = (0..reached.len())
                            .map_while(|_| reached.try_recv().ok())
                            .map(|claim| self.pending(claim))
                            .collect();
                        if !claims.is_empty() {
                            self.count_round(claims, &mut reached, &mut failures).await;
                        }
                        self.publish(batch).await;
                    }
                    None => return,
                },
                failure = reached.recv() => match failure {
                    Some(first) => {
                        let seed = vec![self.pending(first)];
                        self.count_round(seed, &mut reached, &mut failures).await;
                    }
                    None => return,
                },
                _ = heartbeat.tick() => {
                    let now = Instant::now();
                    self.settled.retain(|_, until| *until > now);
                    self.claims.prune(now);
                    if self.conn.is_none() {
                        self.reconnect().await;
                    }
                    self.heartbeat().await;
                    self.publish_overdue(now).await;
                }
                failure = failures.recv() => match failure {
                    Some(first) => {
                        let seed = first.into_iter().map(|f| self.pending(f)).collect();
                        self.count_round(seed, &mut reached, &mut failures).await;
                    }
                    None => return,
                },
            }
        }
    }

    /// One round trip of counting: `seed`, then the claims of local decisions that queued,
    /// then as many counted failures as fit (a storm's round trips are long: every one that
    /// goes out is filled).
    async fn count_round(
        &mut self,
        mut batch: Vec<Pending>,
        reached: &mut mpsc::Receiver<SharedFailure>,
        failures: &mut mpsc::Receiver<Vec<SharedFailure>>,
    ) {
        while batch.len() < COUNT_BATCH {
            let Ok(next) = reached.try_recv() else { break };
            batch.push(self.pending(next));
        }
        while batch.len() < COUNT_BATCH {
            let Ok(next) = failures.try_recv() else { break };
            batch.extend(next.into_iter().map(|f| self.pending(f)));
        }
        self.count(batch).await;
    }

    fn pending(&mut self, failure: SharedFailure) -> Pending {
        self.sequence += 1;
        Pending {
            sequence: self.sequence,
            failure,
        }
    }

    /// At a stop, bans still waiting get one more chance to reach the others (within
    /// `STOP_FLUSH`); what cannot is said in the log.
    async fn flush_at_stop(&mut self) {
        if self.bans.is_empty() {
            return;
        }
        let flush = async {
            if self.conn.is_none() {
                // Replays on success.
                self.reconnect().await;
            } else {
                self.replay().await;
            }
        };
        let _ = tokio::time::timeout(STOP_FLUSH, flush).await;
        if !self.bans.is_empty() {
            warn!(
                bans = self.bans.len(),
                "Stopping with bans the other collectors were not told of (the engine is away); they stay in this collector's store"
            );
        }
    }

    fn degrade(&mut self, error: &EngineError) {
        let cm = self.shared.cm();
        Metrics::inc(&cm.call_errors);
        self.conn = None;
        if !cm.degraded.swap(true, Ordering::Relaxed) {
            cm.degraded_since_ms
                .store(millis(SystemTime::now()), Ordering::Relaxed);
            warn!(error = %error, "Cluster engine unreachable: counting and banning alone, buffering for it");
        }
        cm.last_error.set(Some(error.to_string()));
    }

    async fn reconnect(&mut self) {
        let shared = self.shared.clone();
        let connected = async {
            let (mut conn, primary) = shared.connect(shared.config.timeout).await?;
            let sha = shared.keys.load_script(&mut conn).await?;
            Ok::<_, EngineError>((conn, sha, primary))
        }
        .await;
        match connected {
            Ok((conn, sha, primary)) => {
                self.conn = Some((conn, sha));
                let cm = self.shared.cm();
                if cm.degraded.swap(false, Ordering::Relaxed) {
                    let since = cm.degraded_since_ms.swap(0, Ordering::Relaxed);
                    let spent = millis(SystemTime::now()).saturating_sub(since);
                    cm.degraded_ms_total.fetch_add(spent, Ordering::Relaxed);
                    info!(
                        degraded_for = ?Duration::from_millis(spent),
                        failures = self.failures.len(),
                        bans = self.bans.len(),
                        "Cluster engine back: replaying what waited"
                    );
                }
                cm.last_error.set(None);
                self.check_primary(primary).await;
                self.replay().await;
            }
            Err(e) => self.degrade(&e),
        }
    }

    /// Sends what waited, bans first (the other collectors need them most).
    async fn replay(&mut self) {
        while self.conn.is_some() && !self.bans.is_empty() {
            let n = self.bans.len().min(PUBLISH_BATCH);
            let batch: Vec<Published> = self.bans.drain(..n).collect();
            if !self.try_publish(&batch).await {
                for ban in batch.into_iter().rev() {
                    self.bans.push_front(ban);
                }
            }
        }
        while self.conn.is_some() && !self.failures.is_empty() {
            let n = self.failures.len().min(COUNT_BATCH);
            let batch: Vec<Pending> = self.failures.drain(..n).collect();
            if !self.try_count(&batch).await {
                for failure in batch.into_iter().rev() {
                    self.failures.push_front(failure);
                }
            }
        }
        self.gauges();
    }

    fn gauges(&self) {
        let cm = self.shared.cm();
        Metrics::set(&cm.buffered_failures, self.failures.len() as u64);
        Metrics::set(&cm.buffered_bans, self.bans.len() as u64);
    }

    fn buffer<T>(list: &mut VecDeque<T>, item: T, cap: usize, cm: &ClusterMetrics) {
        if list.len() >= cap {
            list.pop_front();
            Metrics::inc(&cm.buffer_dropped);
        }
        list.push_back(item);
    }

    /// Takes out of `batch` the failures of settled attackers (in a storm, most failures
    /// arrive after the threshold: they would only cost engine calls), remembering each
    /// attacker its own count reached maxretry on for as long as its claim holds. The
    /// failure that reached it stays: it takes the claim on the engine (see `try_count`).
    fn skip_settled(&mut self, batch: &mut Vec<Pending>) {
        while let Ok(address) = self.lifted.try_recv() {
            self.settled.retain(|(_, target, _), _| *target != address);
        }
        let now = Instant::now();
        batch.retain(|pending| {
            let f = &pending.failure;
            let key = attacker(f);
            if f.reached {
                remember(&mut self.settled, key, now + f.claim_for);
                return true;
            }
            self.settled.get(&key).is_none_or(|until| *until <= now)
        });
    }

    /// Counts `batch` (failures that queued up together), or buffers it.
    async fn count(&mut self, mut batch: Vec<Pending>) {
        self.skip_settled(&mut batch);
        if batch.is_empty() {
            return;
        }
        if self.conn.is_none() || !self.try_count(&batch).await {
            let cap = self.shared.config.buffer;
            for failure in batch {
                Self::buffer(
                    &mut self.failures,
                    failure,
                    cap,
                    &self.shared.metrics.cluster,
                );
            }
            self.gauges();
        }
    }

    async fn publish(&mut self, bans: Vec<Published>) {
        for message in &bans {
            if let Published::Unban { address, .. } = message {
                // Lifted here: a ban of it held back for a claim holder must not go out later.
                self.claims.forget_address(*address);
            }
        }
        let bans = self.withhold_claimed_elsewhere(bans).await;
        self.publish_now(bans).await;
    }

    /// Publishes the bans held back for a claim holder whose own ban did not arrive in
    /// time: it stopped between its claim and its publication, or the others would never
    /// hold them. Should it publish after all, both are adopted, as for a double decision
    /// without a claim; the announcement stays with it.
    async fn publish_overdue(&mut self, now: Instant) {
        let overdue = self.claims.overdue(now);
        if overdue.is_empty() {
            return;
        }
        let cm = self.shared.cm();
        cm.holder_overdue
            .fetch_add(overdue.len() as u64, Ordering::Relaxed);
        warn!(
            bans = overdue.len(),
            first = %overdue[0].address,
            within = ?HOLDER_PUBLISHES_WITHIN,
            "Bans another collector claimed were not published by it in time (it may have stopped); published here"
        );
        let taken: Vec<(JailName, Target)> = overdue
            .iter()
            .filter_map(|ban| Some((JailName::new(&ban.jail).ok()?, ban.address)))
            .collect();
        self.publish_now(overdue.into_iter().map(Published::Ban).collect())
            .await;
        // Nobody else announces them now: the holder that would have is gone.
        if self.to_ban.send(ToBan::TakeOver(taken)).await.is_err() {
            debug!("Ban manager stopped; overdue bans not taken over");
        }
    }

    /// Publishes `bans` now, or buffers them while the engine is away.
    async fn publish_now(&mut self, bans: Vec<Published>) {
        if bans.is_empty() {
            return;
        }
        if self.conn.is_none() || !self.try_publish(&bans).await {
            let cap = self.shared.config.buffer;
            for ban in bans {
                Self::buffer(&mut self.bans, ban, cap, &self.shared.metrics.cluster);
            }
            self.gauges();
        }
    }

    /// Leaves out of `bans` those decided here whose claim another collector took first
    /// (each collector's own count reached maxretry before it learnt of the other's ban):
    /// that collector publishes and announces it, and the ban manager is told so. Without
    /// this both would publish, and each adopt the other's ban. Each is held back until
    /// that collector's ban arrives, or published after [`HOLDER_PUBLISHES_WITHIN`].
    async fn withhold_claimed_elsewhere(&mut self, bans: Vec<Published>) -> Vec<Published> {
        let node = self.shared.config.node.as_str();
        let mut yielded = Vec::new();
        let bans: Vec<Published> = bans
            .into_iter()
            .filter(|message| {
                let Published::Ban(ban) = message else {
                    return true;
                };
                // A widened ban is no first decision racing another collector's claim.
                if ban.republished || ban.node != node || !ban.more_origins.is_empty() {
                    return true;
                }
                let Ok(jail) = JailName::new(&ban.jail) else {
                    return true;
                };
                match self.claims.holder(&jail, ban.address) {
                    Some(to) => {
                        self.claims.hold_back(
                            jail.clone(),
                            ban.clone(),
                            Instant::now() + HOLDER_PUBLISHES_WITHIN,
                        );
                        yielded.push(Yielded {
                            jail,
                            address: ban.address,
                            to,
                        });
                        false
                    }
                    None => true,
                }
            })
            .collect();
        if !yielded.is_empty() {
            debug!(
                bans = yielded.len(),
                "Bans decided here whose claim another collector took first: not published"
            );
            if self.to_ban.send(ToBan::Yield(yielded)).await.is_err() {
                debug!("Ban manager stopped; yields are dropped");
            }
        }
        bans
    }

    /// Counts `failures` on the engine in one round trip; false when the engine did not
    /// answer (none of them is then known to be counted).
    async fn try_count(&mut self, failures: &[Pending]) -> bool {
        let Some((conn, sha)) = self.conn.as_mut() else {
            return false;
        };
        let node = self.shared.config.node.as_str();
        let started_ms = self.started_ms;
        let origins: Vec<Option<String>> = failures
            .iter()
            .map(|pending| origin_key(&pending.failure, node))
            .collect();
        let args: Vec<CountArgs> = failures
            .iter()
            .zip(&origins)
            .map(|(pending, origin)| CountArgs {
                jail: pending.failure.jail.as_str(),
                target: pending.failure.target,
                at_ms: millis(pending.failure.at),
                findtime_ms: pending.failure.findtime.as_millis() as u64,
                claim_ms: pending.failure.claim_for.as_millis() as u64,
                // A failure that made the local count reach maxretry takes the claim (a
                // count of one suffices), which also clears the shared count: another
                // collector that has not adopted this ban yet cannot decide it again, and
                // the attacker's return starts from zero everywhere.
                maxretry: if pending.failure.reached {
                    1
                } else {
                    pending.failure.maxretry
                },
                weight: pending.failure.weight.max(1),
                member: FailureId {
                    node,
                    started_ms,
                    sequence: pending.sequence,
                    entry: pending.failure.entry,
                },
                origin: origin.as_deref(),
            })
            .collect();
        let cm = self.shared.cm();
        cm.calls.fetch_add(failures.len() as u64, Ordering::Relaxed);
        Metrics::inc(&cm.round_trips);
        let mut counted = std::mem::take(&mut self.counted);
        let result = self
            .shared
            .keys
            .count_all(
                conn,
                sha,
                SystemTime::now(),
                &args,
                &mut self.commands,
                &mut counted,
            )
            .await;
        if let Err(e) = result {
            self.counted = counted;
            self.degrade(&e);
            return false;
        }
        let node = self.shared.config.node.as_str();
        for (pending, counted) in failures.iter().zip(&counted) {
            let failure = &pending.failure;
            if counted.claimed || counted.holder.is_some() {
                // The claim is taken: the attacker's failures need no more calls until it
                // lapses.
                let until = Instant::now() + failure.claim_for;
                remember(&mut self.settled, attacker(failure), until);
                match &counted.holder {
                    // Another collector's ban arrives here soon, and a ban this collector's
                    // own count decides meanwhile is that collector's. Not in a jail counting
                    // per sender: that claim is one sender's, and a ban decided here on
                    // another sender's count is this collector's own (the manager's claims
                    // are per attacker).
                    Some(holder) if holder != node && !failure.per_origin => {
                        self.claims
                            .note(&failure.jail, failure.target, holder, until);
                    }
                    _ => self.claims.forget(&failure.jail, failure.target),
                }
            }
            // Claimed by a local decision: the ban is under way here already.
            if !counted.claimed || failure.reached {
                continue;
            }
            Metrics::inc(&self.shared.cm().shared_offences);
            debug!(jail = %failure.jail, address = %failure.target, failures = counted.count, "The shared count reached maxretry here");
            let offence = Offence {
                jail: failure.jail.clone(),
                target: failure.target,
                origin: failure.origin,
                origin_name: failure.origin_name.clone(),
                failures: counted.count,
                at: crate::clock::now(),
                sample: failure.sample.clone(),
                lines: vec![failure.sample.clone()],
            };
            if self.offences.send(offence).await.is_err() {
                debug!("Ban manager stopped; a shared offence is dropped");
            }
        }
        self.counted = counted;
        true
    }

    /// Publishes `bans` in one round trip; false when the engine did not answer.
    async fn try_publish(&mut self, bans: &[Published]) -> bool {
        let Some((conn, _)) = self.conn.as_mut() else {
            return false;
        };
        let cm = self.shared.cm();
        cm.calls.fetch_add(bans.len() as u64, Ordering::Relaxed);
        Metrics::inc(&cm.round_trips);
        let form = self.form.unwrap_or(Form::FieldPerValue);
        let clock_ahead = self.shared.clock_out_of_step();
        let entries: Vec<_> = bans
            .iter()
            .map(|message| match (message, clock_ahead) {
                // A ban's times go out on the engine's clock.
                (Published::Ban(ban), Some(ahead)) => {
                    let mut ban = ban.clone();
                    ban.shift_clock(-ahead);
                    ban.fields(form)
                }
                _ => message.fields(form),
            })
            .collect();
        let mut result = self.shared.keys.publish(conn, &entries, STREAM_CAP).await;
        // An address lifted by hand here: its claims and counts go too (after the unban is on
        // the stream; if this fails, both go again with the batch).
        for message in bans {
            if let (Published::Unban { address, .. }, Ok(())) = (message, &result) {
                result = self.shared.keys.lift(conn, *address, &self.jails).await;
                self.claims.forget_address(*address);
                self.settled.retain(|(_, target, _), _| target != address);
            }
        }
        match result {
            Ok(()) => {
                // Bans only: lifts are entries of the stream too, but not bans.
                let now = SystemTime::now();
                let mut published = 0;
                for message in bans {
                    let Published::Ban(ban) = message else {
                        continue;
                    };
                    published += 1;
                    // A republished ban started long ago: its delay says nothing.
                    if !ban.republished {
                        cm.publish_delay
                            .observe(now.duration_since(ban.started).unwrap_or_default());
                    }
                }
                cm.published.fetch_add(published, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.degrade(&e);
                false
            }
        }
    }
}

mod heartbeat;
