//! The ban manager: the one task that owns ban state. It turns offences into bans (bantime
//! policy), expires them, answers control requests (list, manual ban, unban), and tells
//! enforcement what the firewall should hold.
//!
//! Owns which address is banned by which jail until when. It never touches a firewall (it
//! sends `BanCommand`s forward) and never blocks on one: enforcement drains its channel
//! continuously and batches on its own side.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::config::{BanTime, JailName};
use crate::jail::Offence;
use crate::metrics::{JailMetrics, Metrics};

/// What the firewall should do, as decided by the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanCommand {
    /// Hold `address` until `expires` (None: until removed).
    Ban {
        /// The address.
        address: IpAddr,
        /// Deadline; the element's kernel timeout is the time left until it.
        expires: Option<Instant>,
        /// When the ban was decided (for the latency histogram).
        decided: Instant,
    },
    /// Remove `address` now.
    Unban {
        /// The address.
        address: IpAddr,
    },
}

/// The ban policy of one jail.
#[derive(Debug, Clone)]
pub struct JailPolicy {
    /// Jail name.
    pub name: JailName,
    /// How long its bans last.
    pub bantime: BanTime,
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
        address: IpAddr,
        /// Answer: whether the address was newly banned in that jail.
        reply: oneshot::Sender<Result<bool, BanError>>,
    },
    /// Lift every ban of an address; answers the jails it was banned in.
    Unban {
        /// The address.
        address: IpAddr,
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
    pub address: IpAddr,
    /// The jail holding it.
    pub jail: String,
    /// Seconds left; None for permanent bans.
    pub remaining_secs: Option<u64>,
    /// Where the failures came from (`local`, a peer address, or `manual`).
    pub origin: String,
}

/// One jail's hold on an address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hold {
    jail: JailName,
    expires: Option<Instant>,
    origin: String,
}

/// All ban state. Pure: every method takes `now`; `run` wires it to channels and the clock.
#[derive(Debug)]
pub struct BanState {
    policies: HashMap<JailName, BanTime>,
    holds: HashMap<IpAddr, Vec<Hold>>,
    deadlines: BTreeSet<(Instant, IpAddr, JailName)>,
    metrics: Arc<Metrics>,
}

/// The latest deadline of a set of holds; None if any is permanent.
fn overall(holds: &[Hold]) -> Option<Instant> {
    holds
        .iter()
        .map(|h| h.expires)
        .try_fold(None::<Instant>, |acc, e| {
            e.map(|e| Some(acc.map_or(e, |a| a.max(e))))
        })
        .flatten()
}

impl BanState {
    /// Empty state for these jails.
    pub fn new(policies: Vec<JailPolicy>, metrics: Arc<Metrics>) -> Self {
        let mut state = BanState {
            policies: HashMap::new(),
            holds: HashMap::new(),
            deadlines: BTreeSet::new(),
            metrics,
        };
        state.reconfigure(policies);
        state
    }

    /// Replaces the jail policies; existing bans keep their deadlines.
    pub fn reconfigure(&mut self, policies: Vec<JailPolicy>) {
        self.policies = policies.into_iter().map(|p| (p.name, p.bantime)).collect();
    }

    fn jail_metrics(&self, jail: &JailName) -> Arc<JailMetrics> {
        self.metrics.jail(jail.as_str())
    }

    /// Applies an offence; returns the firewall command, if the firewall must change.
    pub fn offence(&mut self, offence: &Offence) -> Option<BanCommand> {
        let origin = offence.origin.to_string();
        let command = self.ban(&offence.jail, offence.address, offence.at, origin.clone())?;
        info!(
            jail = %offence.jail,
            address = %offence.address,
            %origin,
            failures = offence.failures,
            bantime = %describe(self.policies.get(&offence.jail).copied()),
            target = "local",
            "Banned"
        );
        command
    }

    /// Bans `address` in `jail` from `now`. None when the jail is unknown or already holds
    /// it; Some(command) otherwise, where the command is None if the firewall already holds
    /// the address at least as long.
    fn ban(
        &mut self,
        jail: &JailName,
        address: IpAddr,
        now: Instant,
        origin: String,
    ) -> Option<Option<BanCommand>> {
        let bantime = *self.policies.get(jail)?;
        let holds = self.holds.entry(address).or_default();
        if holds.iter().any(|h| &h.jail == jail) {
            // Messages already in flight when the ban was decided; nothing new to do.
            debug!(%jail, %address, "Already banned");
            return None;
        }
        let before = (!holds.is_empty()).then(|| overall(holds));
        let expires = match bantime {
            BanTime::Permanent => None,
            BanTime::For(d) => Some(now + d),
        };
        holds.push(Hold {
            jail: jail.clone(),
            expires,
            origin,
        });
        if let Some(deadline) = expires {
            self.deadlines.insert((deadline, address, jail.clone()));
        }
        let after = overall(holds);
        let m = self.jail_metrics(jail);
        Metrics::inc(&m.bans);
        m.banned.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.update_gauge();
        // Only tell the firewall when the address's overall deadline moves later.
        let extends = match (before, after) {
            (None, _) => true,
            (Some(None), _) => false,
            (Some(Some(_)), None) => true,
            (Some(Some(b)), Some(a)) => a > b,
        };
        Some(extends.then_some(BanCommand::Ban {
            address,
            expires: after,
            decided: now,
        }))
    }

    /// A manual ban (`syslog2ban ban JAIL IP`).
    pub fn manual_ban(
        &mut self,
        jail: &JailName,
        address: IpAddr,
        now: Instant,
    ) -> Result<(bool, Option<BanCommand>), BanError> {
        if !self.policies.contains_key(jail) {
            return Err(BanError::UnknownJail(jail.to_string()));
        }
        match self.ban(jail, address, now, "manual".into()) {
            None => Ok((false, None)),
            Some(command) => {
                info!(%jail, %address, origin = "manual", bantime = %describe(self.policies.get(jail).copied()), target = "local", "Banned");
                Ok((true, command))
            }
        }
    }

    /// Lifts every ban of `address`; returns the jails that held it.
    pub fn unban(&mut self, address: IpAddr) -> Vec<JailName> {
        let Some(holds) = self.holds.remove(&address) else {
            return Vec::new();
        };
        let mut jails = Vec::new();
        for hold in holds {
            if let Some(deadline) = hold.expires {
                self.deadlines
                    .remove(&(deadline, address, hold.jail.clone()));
            }
            self.released(&hold.jail);
            info!(jail = %hold.jail, %address, reason = "unban", target = "local", "Unbanned");
            jails.push(hold.jail);
        }
        self.update_gauge();
        jails
    }

    /// Lifts every ban; returns the addresses freed.
    pub fn unban_all(&mut self) -> Vec<IpAddr> {
        let addresses: Vec<IpAddr> = self.holds.keys().copied().collect();
        for address in &addresses {
            self.unban(*address);
        }
        addresses
    }

    fn released(&self, jail: &JailName) {
        let m = self.jail_metrics(jail);
        Metrics::inc(&m.unbans);
        let _ = m.banned.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |v| Some(v.saturating_sub(1)),
        );
    }

    fn update_gauge(&self) {
        Metrics::set(&self.metrics.active_bans, self.holds.len() as u64);
    }

    /// Ends every hold whose deadline has passed. The kernel expires the set element on its
    /// own (it was given the same timeout), so nothing is sent to the firewall.
    pub fn expire(&mut self, now: Instant) {
        while let Some((deadline, address, jail)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(holds) = self.holds.get_mut(&address) else {
                continue;
            };
            holds.retain(|h| h.jail != jail);
            let empty = holds.is_empty();
            self.released(&jail);
            info!(%jail, %address, reason = "expired", target = "local", "Unbanned");
            if empty {
                self.holds.remove(&address);
            }
        }
        self.update_gauge();
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
                    origin: h.origin.clone(),
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
    pub fn is_banned(&self, address: IpAddr) -> bool {
        self.holds.contains_key(&address)
    }

    /// Number of banned addresses.
    pub fn banned_count(&self) -> usize {
        self.holds.len()
    }
}

fn describe(bantime: Option<BanTime>) -> String {
    match bantime {
        Some(BanTime::Permanent) => "permanent".into(),
        Some(BanTime::For(d)) => humantime::format_duration(d).to_string(),
        None => "?".into(),
    }
}

/// The manager's inputs.
pub struct Inputs {
    /// Offences from the jails.
    pub offences: mpsc::Receiver<Offence>,
    /// Control requests.
    pub requests: mpsc::Receiver<Request>,
    /// Where firewall commands go.
    pub firewall: mpsc::Sender<BanCommand>,
}

/// Runs the manager until the offence channel closes (the pipeline ended).
pub async fn run(mut state: BanState, inputs: Inputs) {
    let Inputs {
        mut offences,
        mut requests,
        firewall,
    } = inputs;
    // Far enough to never fire; avoids an Option in select!.
    let idle = Duration::from_secs(86400 * 365);
    let mut requests_open = true;
    loop {
        let next = state
            .next_deadline()
            .unwrap_or_else(|| Instant::now() + idle);
        let commands: Vec<BanCommand> = tokio::select! {
            _ = tokio::time::sleep_until(next.into()) => {
                state.expire(Instant::now());
                Vec::new()
            }
            offence = offences.recv() => {
                let Some(offence) = offence else { break };
                state.offence(&offence).into_iter().collect()
            }
            request = requests.recv(), if requests_open => match request {
                None => {
                    requests_open = false;
                    Vec::new()
                }
                Some(request) => answer(&mut state, request),
            },
        };
        for command in commands {
            if firewall.send(command).await.is_err() {
                warn!("Enforcement stopped; bans are no longer applied");
                return;
            }
        }
    }
}

fn answer(state: &mut BanState, request: Request) -> Vec<BanCommand> {
    let now = Instant::now();
    // A requester that went away does not need its answer: send errors are ignored.
    match request {
        Request::List { reply } => {
            let _ = reply.send(state.list(now));
            Vec::new()
        }
        Request::Ban {
            jail,
            address,
            reply,
        } => match state.manual_ban(&jail, address, now) {
            Ok((new, command)) => {
                let _ = reply.send(Ok(new));
                command.into_iter().collect()
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                Vec::new()
            }
        },
        Request::Unban { address, reply } => {
            let jails = state.unban(address);
            let command = (!jails.is_empty()).then_some(BanCommand::Unban { address });
            let _ = reply.send(jails);
            command.into_iter().collect()
        }
        Request::UnbanAll { reply } => {
            let freed = state.unban_all();
            let _ = reply.send(freed.len());
            freed
                .into_iter()
                .map(|address| BanCommand::Unban { address })
                .collect()
        }
        Request::Reconfigure { policies, reply } => {
            state.reconfigure(policies);
            let _ = reply.send(());
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Origin;

    fn name(s: &str) -> JailName {
        JailName::new(s).unwrap()
    }

    fn state() -> BanState {
        let policies = vec![
            JailPolicy {
                name: name("sshd"),
                bantime: BanTime::For(Duration::from_secs(60)),
            },
            JailPolicy {
                name: name("forever"),
                bantime: BanTime::Permanent,
            },
            JailPolicy {
                name: name("long"),
                bantime: BanTime::For(Duration::from_secs(600)),
            },
        ];
        BanState::new(policies, Arc::new(Metrics::default()))
    }

    fn offence(jail: &str, at: Instant) -> Offence {
        Offence {
            jail: name(jail),
            address: "203.0.113.9".parse().unwrap(),
            origin: Origin::Local,
            failures: 3,
            at,
            sample: String::new(),
        }
    }

    fn addr() -> IpAddr {
        "203.0.113.9".parse().unwrap()
    }

    #[test]
    fn offence_bans_until_bantime_then_expires() {
        let mut s = state();
        let t = Instant::now();
        let cmd = s.offence(&offence("sshd", t));
        assert_eq!(
            cmd,
            Some(BanCommand::Ban {
                address: addr(),
                expires: Some(t + Duration::from_secs(60)),
                decided: t,
            })
        );
        assert!(s.is_banned(addr()));
        assert_eq!(
            s.offence(&offence("sshd", t)),
            None,
            "same jail twice is one ban"
        );
        assert_eq!(s.list(t)[0].remaining_secs, Some(60));
        s.expire(t + Duration::from_secs(59));
        assert!(s.is_banned(addr()));
        s.expire(t + Duration::from_secs(60));
        assert!(!s.is_banned(addr()));
        assert_eq!(s.next_deadline(), None);
        assert_eq!(Metrics::get(&s.metrics.jail("sshd").banned), 0);
        assert_eq!(Metrics::get(&s.metrics.jail("sshd").unbans), 1);
    }

    #[test]
    fn a_second_jail_only_extends_never_shortens() {
        let mut s = state();
        let t = Instant::now();
        assert!(s.offence(&offence("long", t)).is_some());
        // sshd's 60 s ban ends before long's 600 s one: the firewall keeps the longer.
        assert_eq!(s.offence(&offence("sshd", t)), None);
        s.expire(t + Duration::from_secs(61));
        assert!(s.is_banned(addr()));
        // A permanent ban extends.
        assert_eq!(
            s.offence(&offence("forever", t)),
            Some(BanCommand::Ban {
                address: addr(),
                expires: None,
                decided: t,
            })
        );
        s.expire(t + Duration::from_secs(10_000));
        assert!(s.is_banned(addr()));
        assert_eq!(s.banned_count(), 1);
        assert_eq!(s.list(t)[0].remaining_secs, None);
    }

    #[test]
    fn manual_ban_and_unban() {
        let mut s = state();
        let t = Instant::now();
        assert_eq!(
            s.manual_ban(&name("nope"), addr(), t),
            Err(BanError::UnknownJail("nope".into()))
        );
        let (new, cmd) = s.manual_ban(&name("sshd"), addr(), t).unwrap();
        assert!(new && cmd.is_some());
        assert_eq!(s.list(t)[0].origin, "manual");
        let (new, cmd) = s.manual_ban(&name("sshd"), addr(), t).unwrap();
        assert!(!new && cmd.is_none());
        s.manual_ban(&name("long"), addr(), t).unwrap();
        let mut jails = s.unban(addr());
        jails.sort();
        assert_eq!(jails, vec![name("long"), name("sshd")]);
        assert!(!s.is_banned(addr()));
        assert_eq!(
            s.next_deadline(),
            None,
            "deadlines of unbanned holds are gone"
        );
        assert!(s.unban(addr()).is_empty());
    }

    #[test]
    fn unban_all_frees_everything() {
        let mut s = state();
        let t = Instant::now();
        for i in 1..=3u8 {
            s.manual_ban(&name("forever"), IpAddr::from([198, 51, 100, i]), t)
                .unwrap();
        }
        assert_eq!(s.unban_all().len(), 3);
        assert_eq!(s.banned_count(), 0);
        assert_eq!(Metrics::get(&s.metrics.active_bans), 0);
    }

    #[test]
    fn reconfigure_keeps_bans_of_removed_jails_until_they_expire() {
        let mut s = state();
        let t = Instant::now();
        s.offence(&offence("sshd", t));
        s.reconfigure(vec![JailPolicy {
            name: name("long"),
            bantime: BanTime::For(Duration::from_secs(600)),
        }]);
        assert!(s.is_banned(addr()));
        assert_eq!(
            s.offence(&offence("sshd", t)),
            None,
            "sshd no longer exists"
        );
        s.expire(t + Duration::from_secs(60));
        assert!(!s.is_banned(addr()));
    }
}
