//! Ban state: which jail holds which address until when, the recent ban history (for growing
//! bantimes and recidive), and the store writes every change needs.
//!
//! Pure: every method takes the time (`Moment`) and returns the writes (`StoreOp`) that carry
//! firewall commands forward; the manager task feeds it and sends the results on.

use crate::target::{Ports, Target};
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
use crate::metrics::Metrics;

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

/// One jail's hold on an address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hold {
    jail: JailName,
    expires: Option<Instant>,
    /// The firewalls this hold is applied to.
    places: Vec<Place>,
    /// What the firewall commands carry about it.
    reason: Arc<BanReason>,
    /// The ports it covers (None: every port).
    ports: Option<Ports>,
    /// Whose decision it is: the collector that announces it.
    decided: Decided,
}

/// Which collector's decision a hold is, as far as this one knows (a ban two collectors
/// decided at once is announced by one of them: see `adopt` and `yield_to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decided {
    /// This collector's.
    Here,
    /// This collector's, and another decided it too: this one announces it.
    HereAndElsewhere,
    /// Another collector's: adopted, recorded as its decision, or yielded to it.
    Elsewhere,
}

impl Decided {
    /// A new hold's: here unless the ban names the collector that decided it.
    fn by(decided_by: Option<&str>) -> Decided {
        match decided_by {
            None => Decided::Here,
            Some(_) => Decided::Elsewhere,
        }
    }
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
}

/// All ban state.
#[derive(Debug)]
pub struct BanState {
    /// Shared, not cloned, per ban: a storm decides tens of thousands a second. Recidive's
    /// is among them.
    policies: HashMap<JailName, Arc<JailPolicy>>,
    recidive: Option<(JailName, RecidiveConfig)>,
    holds: HashMap<Target, Vec<Hold>>,
    deadlines: BTreeSet<(Instant, Target, JailName)>,
    /// Earlier bans per address (jail, start), kept for `retention`.
    history: HashMap<Target, Vec<(JailName, SystemTime)>>,
    retention: Duration,
    /// Targets, for placement.
    fleet: Fleet,
    metrics: Arc<Metrics>,
    /// Random draws for rndtime; a function so tests can fix it.
    jitter: fn() -> f64,
    /// Jails of adopted bans this collector lacks (warned about once each).
    unknown_adopted: HashSet<JailName>,
    /// Told whenever a ban ends, so the jails count its address again.
    feedback: BanFeedback,
}

/// The latest deadline of the holds applied at `place`: None when no hold is, Some(None)
/// when one of them is permanent.
fn deadline_at(holds: &[Hold], place: &Place) -> Option<Option<Instant>> {
    let mut covering = holds.iter().filter(|h| h.places.contains(place)).peekable();
    covering.peek()?;
    Some(
        covering
            .map(|h| h.expires)
            .try_fold(None::<Instant>, |acc, e| {
                e.map(|e| Some(acc.map_or(e, |a| a.max(e))))
            })
            .flatten(),
    )
}

/// The reason behind the command for `place`: the covering hold that lasts longest
/// (a permanent one first), and among equals the newest.
fn reason_at(holds: &[Hold], place: &Place) -> Option<Arc<BanReason>> {
    holds
        .iter()
        .filter(|h| h.places.contains(place))
        .max_by_key(|h| (h.expires.is_none(), h.expires))
        .map(|h| h.reason.clone())
}

/// The ports the holds covering `place` ban together: every port if any of them does.
fn ports_at(holds: &[Hold], place: &Place) -> Option<Ports> {
    let mut union = std::collections::BTreeSet::new();
    for hold in holds.iter().filter(|h| h.places.contains(place)) {
        union.extend(hold.ports.as_ref()?.iter().copied());
    }
    Some(Arc::new(union))
}

/// Every place any of the holds is applied to, sorted.
fn all_places(holds: &[Hold]) -> Vec<Place> {
    let mut places: Vec<Place> = holds.iter().flat_map(|h| h.places.clone()).collect();
    places.sort();
    places.dedup();
    places
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
            holds: HashMap::new(),
            deadlines: BTreeSet::new(),
            history: HashMap::new(),
            retention,
            fleet: Fleet::default(),
            metrics,
            jitter: random_jitter,
            unknown_adopted: HashSet::new(),
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

    /// Where a ban of `jail` from `origin` goes. Jails no longer configured keep the
    /// default (local).
    fn places(&self, jail: &JailName, origin: &str) -> Vec<Place> {
        match self.policy(jail) {
            Some(p) => self.fleet.resolve(&p.placement, origin),
            None => vec![Place::Local],
        }
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
            let places = self.places(&jail, &record.origin);
            let policy = self.policy(&jail);
            let kill_connections = policy.as_ref().is_some_and(|p| p.kill_connections);
            let ports = policy.and_then(|p| p.ports.clone());
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
                decided: Decided::by(record.decided_by.as_deref()),
            });
            if let Some(deadline) = expires {
                self.deadlines
                    .insert((deadline, record.address, jail.clone()));
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
            decided_by: node.map(str::to_string),
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
        if self
            .holds
            .get(&new.address)
            .is_some_and(|h| h.iter().any(|h| &h.jail == new.jail))
        {
            // Messages already in flight when the ban was decided; nothing new to do.
            debug!(jail = %new.jail, address = %new.address, "Already banned");
            return None;
        }
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
        let bantime = match new.until {
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
        };
        let (expires, expires_wall) = match bantime {
            BanTime::Permanent => (None, None),
            BanTime::For(d) => (Some(now.instant + d), Some(now.wall + d)),
        };
        let rules = new.placement.as_deref().unwrap_or(&policy.placement);
        let places = self.fleet.resolve(rules, &new.origin);
        let holds = self.holds.entry(new.address).or_insert_with(one);
        let before: Vec<(Option<Option<Instant>>, Option<Ports>)> = places
            .iter()
            .map(|p| (deadline_at(holds, p), ports_at(holds, p)))
            .collect();
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
            places: places.clone(),
            reason,
            ports: policy.ports.clone(),
            decided: Decided::by(new.decided_by.as_deref()),
        });
        if let Some(deadline) = expires {
            self.deadlines
                .insert((deadline, new.address, new.jail.clone()));
        }
        // The jail's windows learn of bans they did not decide (adopted, claimed by the
        // cluster's count, by hand): their address's failures need not count again.
        self.feedback.banned(new.jail, new.address.addr());
        self.history
            .entry(new.address)
            .or_insert_with(one)
            .push((new.jail.clone(), now.wall));
        let m = self.metrics.jail(new.jail.as_str());
        Metrics::inc(&m.bans);
        m.banned.fetch_add(1, Ordering::Relaxed);
        self.update_gauge();
        debug!(jail = %new.jail, address = %new.address, %bantime, earlier_bans = earlier, "Ban decided");
        // Only tell a firewall when the address's deadline there moves later or the ban
        // there covers more ports.
        let holds = &self.holds[&new.address];
        let commands: Vec<BanCommand> = places
            .into_iter()
            .zip(before)
            .filter_map(|(place, (before, ports_before))| {
                let after = deadline_at(holds, &place).flatten();
                let ports = ports_at(holds, &place);
                let extends = match before {
                    None => true,
                    Some(None) => false,
                    Some(Some(b)) => after.is_none_or(|a| a > b),
                };
                let widens = before.is_some() && ports != ports_before;
                let reason = reason_at(holds, &place)?;
                (extends || widens).then_some(BanCommand::Ban {
                    place,
                    address: new.address,
                    expires: after,
                    decided: now.instant,
                    reason,
                    ports,
                })
            })
            .collect();
        Some(StoreOp::Ban(
            BanRecord {
                address: new.address,
                jail: new.jail.to_string(),
                origin: new.origin,
                started: now.wall,
                expires: expires_wall,
                failures: new.failures,
                sample: new.sample,
                lines: new.lines,
                decided_by: new.decided_by,
            },
            commands,
        ))
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

    /// Drops history older than the retention window (the store purges its copy too).
    pub fn prune_history(&mut self, now: SystemTime) {
        let since = now
            .checked_sub(self.retention)
            .unwrap_or(std::time::UNIX_EPOCH);
        self.history.retain(|_, list| {
            list.retain(|(_, t)| *t >= since);
            !list.is_empty()
        });
    }
}

mod ending;
mod shared;

#[cfg(test)]
mod tests;
