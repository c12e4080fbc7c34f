//! Ban state: which jail holds which address until when, the recent ban history (for growing
//! bantimes and recidive), and the store writes every change needs.
//!
//! Pure: every method takes the time (`Moment`) and returns the writes (`StoreOp`) that carry
//! firewall commands forward; the manager task feeds it and sends the results on.

use crate::target::{ByAttacker, Target};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::debug;

use super::messages::{BanCommand, BanError, BanInfo, BanReason, JailPolicy};
use super::placement::{Fleet, Place};
use super::policy::grown_bantime;
use super::record::{BanRecord, StoreOp};
use crate::config::{BanTime, JailName, PlacementRule, RecidiveConfig, RECIDIVE_JAIL};
use crate::jail::{BanFeedback, Offence};
use crate::metrics::{JailMetrics, Metrics};
use hold::{
    all_places, before_at, changed_commands, deadline_at, ports_at, reason_at, Decided, Hold, Node,
};

/// The time, both monotonic (timers) and wall clock (what is stored).
#[derive(Debug, Clone, Copy)]
pub struct Moment {
    /// Monotonic.
    pub instant: Instant,
    /// Wall clock.
    pub wall: SystemTime,
}

impl Moment {
    /// The current time, by the daemon's clock.
    pub fn now() -> Self {
        Moment {
            instant: crate::clock::now(),
            wall: crate::clock::wall_now(),
        }
    }

    /// `at` (an earlier or later instant) with its wall-clock equivalent.
    pub fn at(&self, at: Instant) -> Moment {
        let wall = if at >= self.instant {
            self.wall + (at - self.instant)
        } else {
            self.wall - (self.instant - at)
        };
        Moment { instant: at, wall }
    }
}

/// A list per address with room for one: nearly every address is banned by one jail (a
/// `Vec`'s first push would make room for four, hundreds of bytes each in a storm).
fn one<T>() -> Vec<T> {
    Vec::with_capacity(1)
}

/// What a new ban is made of.
struct NewBan<'a> {
    jail: &'a JailName,
    address: Target,
    origin: String,
    /// Placement instead of the jail's (a manual ban's `--place`).
    placement: Option<Vec<PlacementRule>>,
    failures: u32,
    sample: String,
    lines: Vec<String>,
    /// Some: the ban ends then (None inside: never) instead of by the jail's bantime (an
    /// adopted ban ends when it ends where it was decided).
    until: Option<Option<SystemTime>>,
    /// Some: another collector decided it (adopted).
    decided_by: Option<String>,
    /// Other attacked hosts the ban covers (an adopted ban widened where it was decided).
    more_origins: Vec<String>,
}

impl NewBan<'_> {
    /// The ban as the store records it: started at `started`, ending at `expires` (None:
    /// never).
    fn into_record(self, expires: Option<SystemTime>, started: SystemTime) -> BanRecord {
        BanRecord {
            address: self.address,
            jail: self.jail.to_string(),
            origin: self.origin,
            more_origins: self.more_origins,
            placement: self.placement,
            started,
            expires,
            failures: self.failures,
            sample: self.sample,
            lines: self.lines,
            decided_by: self.decided_by,
        }
    }
}

/// All ban state.
#[derive(Debug)]
pub struct BanState {
    /// Shared, not cloned, per ban: a storm decides tens of thousands a second. Recidive's
    /// is among them.
    policies: HashMap<JailName, Arc<JailPolicy>>,
    recidive: Option<(JailName, RecidiveConfig)>,
    holds: ByAttacker<Target, Vec<Hold>>,
    deadlines: BTreeSet<(Instant, Target, JailName)>,
    /// Where the holds made by a ban told where to go (`ban --place`) are placed: rare, so
    /// kept beside the holds rather than in each (a storm holds tens of thousands). Kept so
    /// that a republished or widened ban goes on saying so.
    told: HashMap<(Target, JailName), Vec<PlacementRule>>,
    /// Earlier bans per address (jail, start), kept for `retention`.
    history: ByAttacker<Target, Vec<(JailName, SystemTime)>>,
    retention: Duration,
    /// Targets, for placement.
    fleet: Fleet,
    metrics: Arc<Metrics>,
    /// Random draws for rndtime; a function so tests can fix it.
    jitter: fn() -> f64,
    /// Jails of adopted bans this collector lacks (warned about once each).
    unknown_adopted: HashSet<JailName>,
    /// The names of the other collectors whose bans are held, by number ([`Node`]), and
    /// their numbers by name.
    nodes: Vec<Box<str>>,
    node_numbers: HashMap<Box<str>, Node>,
    /// Told whenever a ban ends, so the jails count its address again.
    feedback: BanFeedback,
}

fn random_jitter() -> f64 {
    rand::random::<f64>()
}

impl BanState {
    /// Empty state for these jails; `retention` is how long history counts (dbpurgeage).
    pub fn new(
        policies: Vec<JailPolicy>,
        recidive: Option<RecidiveConfig>,
        retention: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut state = BanState {
            policies: HashMap::new(),
            recidive: None,
            holds: Default::default(),
            deadlines: BTreeSet::new(),
            told: HashMap::new(),
            history: Default::default(),
            retention,
            fleet: Fleet::default(),
            metrics,
            jitter: random_jitter,
            unknown_adopted: HashSet::new(),
            nodes: Vec::new(),
            node_numbers: HashMap::new(),
            feedback: BanFeedback::default(),
        };
        state.reconfigure(policies, recidive);
        state
    }

    /// The targets placement resolves against (fixed for the daemon's life).
    pub fn with_fleet(mut self, fleet: Fleet) -> Self {
        self.fleet = fleet;
        self
    }

    /// Where the end of every ban is told (the pipeline's jails).
    pub fn with_feedback(mut self, feedback: BanFeedback) -> Self {
        self.feedback = feedback;
        self
    }

    /// Fixes the random draw (tests).
    pub fn with_jitter(mut self, jitter: fn() -> f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Replaces the jail policies; existing bans keep their deadlines.
    pub fn reconfigure(&mut self, policies: Vec<JailPolicy>, recidive: Option<RecidiveConfig>) {
        self.policies = policies
            .into_iter()
            .map(|p| (p.name.clone(), Arc::new(p)))
            .collect();
        self.recidive = recidive.map(|r| (JailName::new(RECIDIVE_JAIL).expect("valid name"), r));
        if let Some((name, r)) = &self.recidive {
            // A jail of that name is refused by the config: recidive's own is the only one.
            self.policies.insert(
                name.clone(),
                Arc::new(JailPolicy {
                    name: name.clone(),
                    bantime: r.bantime,
                    increment: None,
                    placement: r.placement.clone(),
                    kill_connections: false,
                    ports: None,
                }),
            );
        }
    }

    /// Rebuilds state from the store at start-up; returns the firewall commands that put
    /// every active ban back (with its remaining time), one per address and place.
    pub fn restore(
        &mut self,
        active: Vec<BanRecord>,
        history: Vec<(Target, String, SystemTime)>,
        now: Moment,
    ) -> Vec<BanCommand> {
        for (address, jail, started) in history {
            if let Ok(jail) = JailName::new(&jail) {
                self.history
                    .entry(address)
                    .or_insert_with(one)
                    .push((jail, started));
            }
        }
        for record in active {
            let Ok(jail) = JailName::new(&record.jail) else {
                continue;
            };
            let expires = match record.expires {
                None => None,
                Some(wall) => match wall.duration_since(now.wall) {
                    Ok(left) if !left.is_zero() => Some(now.instant + left),
                    _ => continue,
                },
            };
            let policy = self.policy(&jail);
            // As decided: a manual ban's `--place`, else the jail's placement (a jail no
            // longer configured: here).
            let places = match (&record.placement, &policy) {
                (Some(rules), _) => self.resolve(rules, &record.origin, &record.more_origins),
                (None, Some(policy)) => {
                    self.resolve(&policy.placement, &record.origin, &record.more_origins)
                }
                (None, None) => vec![Place::Local],
            };
            let kill_connections = policy.as_ref().is_some_and(|p| p.kill_connections);
            let ports = policy.and_then(|p| p.ports.clone());
            let decided = self.decided(record.decided_by.as_deref());
            let holds = self.holds.entry(record.address).or_insert_with(one);
            if holds.iter().any(|h| h.jail == jail) {
                continue;
            }
            let reason = Arc::new(BanReason {
                jail: jail.clone(),
                failures: record.failures,
                origin: record.origin.clone(),
                bantime: record
                    .expires
                    .and_then(|end| end.duration_since(record.started).ok()),
                kill_connections,
            });
            holds.push(Hold {
                jail: jail.clone(),
                expires,
                places,
                reason,
                ports,
                decided,
                more_origins: record.more_origins.clone(),
            });
            if let Some(deadline) = expires {
                self.deadlines
                    .insert((deadline, record.address, jail.clone()));
            }
            if let Some(rules) = &record.placement {
                self.told
                    .insert((record.address, jail.clone()), rules.clone());
            }
            self.metrics
                .jail(jail.as_str())
                .banned
                .fetch_add(1, Ordering::Relaxed);
        }
        self.update_gauge();
        self.holds
            .iter()
            .flat_map(|(address, holds)| {
                all_places(holds).into_iter().filter_map(|place| {
                    let expires = deadline_at(holds, &place)?;
                    let reason = reason_at(holds, &place)?;
                    Some(BanCommand::Ban {
                        ports: ports_at(holds, &place),
                        place,
                        address: *address,
                        expires,
                        decided: now.instant,
                        reason,
                    })
                })
            })
            .collect()
    }

    /// Applies an offence; returns the writes (and firewall commands) it leads to.
    pub fn offence(&mut self, offence: &Offence, now: Moment) -> Vec<StoreOp> {
        self.offence_decided_by(offence.clone(), None, now)
    }

    /// As [`BanState::offence`], the ban recorded as decided by collector `node` when
    /// another one holds the attacker's shared claim (its ban, on its way, is that one).
    pub fn offence_decided_by(
        &mut self,
        offence: Offence,
        node: Option<&str>,
        now: Moment,
    ) -> Vec<StoreOp> {
        let now = now.at(offence.at);
        let mut ops = Vec::new();
        let origin = offence
            .origin_name
            .as_deref()
            .map_or_else(|| offence.origin.to_string(), str::to_string);
        // Moved, not copied: a storm decides tens of thousands a second.
        let new = NewBan {
            jail: &offence.jail,
            address: offence.target,
            origin: origin.clone(),
            placement: None,
            failures: offence.failures,
            sample: offence.sample,
            lines: offence.lines,
            until: None,
            // A claim is about an attacker's first ban in the jail; widening a ban held
            // already to another attacked host is this collector's own decision.
            decided_by: node
                .filter(|_| !self.holds(offence.jail.as_str(), offence.target))
                .map(str::to_string),
            more_origins: Vec::new(),
        };
        if let Some(op) = self.ban(new, now) {
            ops.push(op);
            ops.extend(self.recidive_check(offence.target, origin, now));
        }
        ops
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A manual ban (`syslog2ban ban JAIL IP`): whether it is new, and its writes.
    pub fn manual_ban(
        &mut self,
        jail: &JailName,
        address: Target,
        placement: Option<Vec<PlacementRule>>,
        origin: Option<String>,
        now: Moment,
    ) -> Result<(bool, Vec<StoreOp>), BanError> {
        if self.policy(jail).is_none() {
            return Err(BanError::UnknownJail(jail.to_string()));
        }
        let new = NewBan {
            jail,
            address,
            origin: origin.unwrap_or_else(|| "manual".into()),
            placement,
            failures: 0,
            sample: String::new(),
            lines: Vec::new(),
            until: None,
            decided_by: None,
            more_origins: Vec::new(),
        };
        Ok(match self.ban(new, now) {
            None => (false, Vec::new()),
            Some(op) => (true, vec![op]),
        })
    }

    /// (bantime, increment) of a jail, recidive included.
    fn policy(&self, jail: &JailName) -> Option<Arc<JailPolicy>> {
        self.policies.get(jail).cloned()
    }

    /// The jail named `name`, if this collector has it.
    fn jail_named(&self, name: &str) -> Option<JailName> {
        self.policies
            .get_key_value(name)
            .map(|(jail, _)| jail.clone())
    }

    /// Earlier bans of `address` within the retention window, optionally only in `jail`.
    fn earlier_bans(
        &mut self,
        address: Target,
        jail: Option<&JailName>,
        since: SystemTime,
    ) -> usize {
        let Some(list) = self.history.get_mut(&address) else {
            return 0;
        };
        list.retain(|(_, t)| *t >= since);
        list.iter()
            .filter(|(j, _)| jail.is_none_or(|jail| j == jail))
            .count()
    }

    fn ban(&mut self, new: NewBan<'_>, now: Moment) -> Option<StoreOp> {
        let policy = self.policy(new.jail)?;
        let rules = new.placement.as_deref().unwrap_or(&policy.placement);
        let places = self.resolve(rules, &new.origin, &new.more_origins);
        if self.holds(new.jail.as_str(), new.address) {
            return self.widen(new, places, &policy, now);
        }
        let bantime = self.bantime_of(&new, &policy, now)?;
        let (expires, expires_wall) = match bantime {
            BanTime::Permanent => (None, None),
            BanTime::For(d) => (Some(now.instant + d), Some(now.wall + d)),
        };
        let decided = self.decided(new.decided_by.as_deref());
        let holds = self.holds.entry(new.address).or_insert_with(one);
        let before = before_at(holds, &places);
        let reason = Arc::new(BanReason {
            jail: new.jail.clone(),
            failures: new.failures,
            origin: new.origin.clone(),
            bantime: match bantime {
                BanTime::Permanent => None,
                BanTime::For(d) => Some(d),
            },
            kill_connections: policy.kill_connections,
        });
        holds.push(Hold {
            jail: new.jail.clone(),
            expires,
            places,
            reason,
            ports: policy.ports.clone(),
            decided,
            more_origins: new.more_origins.clone(),
        });
        if let Some(deadline) = expires {
            self.deadlines
                .insert((deadline, new.address, new.jail.clone()));
        }
        if let Some(rules) = &new.placement {
            self.told
                .insert((new.address, new.jail.clone()), rules.clone());
        }
        let m = self.banned_now(new.jail, new.address, now);
        m.banned.fetch_add(1, Ordering::Relaxed);
        self.update_gauge();
        debug!(jail = %new.jail, address = %new.address, %bantime, "Ban decided");
        let commands =
            changed_commands(&self.holds[&new.address], new.address, before, now.instant);
        Some(StoreOp::Ban(
            new.into_record(expires_wall, now.wall),
            commands,
        ))
    }

    /// The places `rules` give for a ban from `origin` and `more` attacked hosts, sorted,
    /// without duplicates.
    fn resolve(&self, rules: &[PlacementRule], origin: &str, more: &[String]) -> Vec<Place> {
        let mut places = self.fleet.resolve(rules, origin);
        if !more.is_empty() {
            for origin in more {
                places.extend(self.fleet.resolve(rules, origin));
            }
            places.sort();
            places.dedup();
        }
        places
    }

    /// How long `new` bans: until it ends where it was decided (adopted), or the jail's
    /// bantime grown by the address's earlier bans. None: it ended already.
    fn bantime_of(
        &mut self,
        new: &NewBan<'_>,
        policy: &JailPolicy,
        now: Moment,
    ) -> Option<BanTime> {
        let since = now
            .wall
            .checked_sub(self.retention)
            .unwrap_or(std::time::UNIX_EPOCH);
        let earlier = match &policy.increment {
            Some(inc) => {
                let scope = (!inc.overalljails).then_some(new.jail);
                self.earlier_bans(new.address, scope, since)
            }
            None => 0,
        };
        Some(match new.until {
            Some(None) => BanTime::Permanent,
            Some(Some(end)) => match end.duration_since(now.wall) {
                Ok(left) if !left.is_zero() => BanTime::For(left),
                // Ended already where it was decided.
                _ => return None,
            },
            None => grown_bantime(
                policy.bantime,
                policy.increment.as_ref(),
                earlier,
                (self.jitter)(),
            ),
        })
    }

    /// What a ban made now in `jail` leaves behind besides its hold: the windows learn of it
    /// (a ban they did not decide, adopted, claimed by the cluster's count or by hand: the
    /// address's failures need not count again), it joins the history, and it is counted.
    /// Returns the jail's counters (looked up once per ban).
    /// A new hold's decision: here unless the ban names the collector that decided it.
    fn decided(&mut self, decided_by: Option<&str>) -> Decided {
        let Some(name) = decided_by else {
            return Decided::Here;
        };
        if let Some(node) = self.node_numbers.get(name) {
            return Decided::Elsewhere(*node);
        }
        let node = Node(u32::try_from(self.nodes.len()).unwrap_or(u32::MAX));
        self.nodes.push(name.into());
        self.node_numbers.insert(name.into(), node);
        Decided::Elsewhere(node)
    }

    /// The name of a collector numbered by [`BanState::decided`].
    fn node_name(&self, node: Node) -> &str {
        self.nodes.get(node.0 as usize).map_or("", |name| name)
    }

    fn banned_now(&mut self, jail: &JailName, address: Target, now: Moment) -> Arc<JailMetrics> {
        self.feedback.banned(jail, address.addr());
        self.history
            .entry(address)
            .or_insert_with(one)
            .push((jail.clone(), now.wall));
        let counters = self.metrics.jail(jail.as_str());
        Metrics::inc(&counters.bans);
        counters
    }

    /// After a ban in another jail: enough bans within recidive's window earn the long ban.
    fn recidive_check(&mut self, address: Target, origin: String, now: Moment) -> Option<StoreOp> {
        let (name, config) = self.recidive.clone()?;
        let since = now
            .wall
            .checked_sub(config.findtime)
            .unwrap_or(std::time::UNIX_EPOCH);
        let bans = self.history.get(&address).map_or(0, |list| {
            list.iter()
                .filter(|(j, t)| *j != name && *t >= since)
                .count()
        });
        if bans < config.maxretry as usize {
            return None;
        }
        let new = NewBan {
            jail: &name,
            address,
            origin,
            placement: None,
            failures: bans as u32,
            sample: format!(
                "{bans} bans within {}",
                humantime::format_duration(config.findtime)
            ),
            lines: Vec::new(),
            until: None,
            decided_by: None,
            more_origins: Vec::new(),
        };
        self.ban(new, now)
    }

    fn update_gauge(&self) {
        Metrics::set(&self.metrics.active_bans, self.holds.len() as u64);
    }

    /// Every active ban, sorted by jail then address.
    pub fn list(&self, now: Instant) -> Vec<BanInfo> {
        let mut out: Vec<BanInfo> = self
            .holds
            .iter()
            .flat_map(|(address, holds)| {
                holds.iter().map(move |h| BanInfo {
                    address: *address,
                    jail: h.jail.to_string(),
                    remaining_secs: h
                        .expires
                        .map(|e| e.saturating_duration_since(now).as_secs_f64().ceil() as u64),
                    origin: h.reason.origin.clone(),
                    places: h.places.iter().map(ToString::to_string).collect(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.jail, a.address).cmp(&(&b.jail, b.address)));
        out
    }

    /// (jail, address) of every hold of the jails whose names start with `prefix`, in no
    /// order: a feed's bans without formatting and sorting every other ban.
    pub fn held_by(&self, prefix: &str) -> Vec<(JailName, Target)> {
        self.holds
            .iter()
            .flat_map(|(address, holds)| {
                holds
                    .iter()
                    .filter(|h| h.jail.as_str().starts_with(prefix))
                    .map(|h| (h.jail.clone(), *address))
            })
            .collect()
    }

    /// The next deadline, for the manager's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _, _)| *d)
    }

    /// Whether `address` is banned by any jail.
    pub fn is_banned(&self, address: Target) -> bool {
        self.holds.contains_key(&address)
    }

    /// Whether `jail` holds `address`.
    pub fn holds(&self, jail: &str, address: Target) -> bool {
        self.holds
            .get(&address)
            .is_some_and(|h| h.iter().any(|h| h.jail.as_str() == jail))
    }

    /// Number of banned addresses.
    pub fn banned_count(&self) -> usize {
        self.holds.len()
    }

    /// Drops history older than the retention window; returns the store's purge of its copy.
    pub fn prune_history(&mut self, now: SystemTime) -> StoreOp {
        let since = now
            .checked_sub(self.retention)
            .unwrap_or(std::time::UNIX_EPOCH);
        self.history.retain(|_, list| {
            list.retain(|(_, t)| *t >= since);
            !list.is_empty()
        });
        StoreOp::Purge { before: since }
    }
}

mod ending;
mod hold;
mod shared;
mod widen;

#[cfg(test)]
mod tests;
