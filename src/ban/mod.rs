//! The ban manager: the one task that owns ban state. It turns offences into bans (bantime
//! policy), expires them, and tells enforcement what the firewall should hold.
//!
//! Owns which address is banned by which jail until when. It never touches a firewall (it
//! sends `BanCommand`s forward) and never blocks on one: enforcement drains its channel
//! continuously and batches on its own side.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{BanTime, JailName};
use crate::jail::Offence;
use crate::metrics::Metrics;
use crate::route::JailIndex;

/// What the firewall should do, as decided by the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanCommand {
    /// Hold `address` until `expires` (None: until removed).
    Ban {
        /// The address.
        address: IpAddr,
        /// Deadline; the element's kernel timeout is the time left until it.
        expires: Option<Instant>,
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
    /// Jail name, for logs.
    pub name: JailName,
    /// How long its bans last.
    pub bantime: BanTime,
}

/// One jail's hold on an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    jail: JailIndex,
    expires: Option<Instant>,
}

/// All ban state. Pure: every method takes `now`; `run` wires it to channels and the clock.
#[derive(Debug)]
pub struct BanState {
    policies: Vec<JailPolicy>,
    holds: HashMap<IpAddr, Vec<Hold>>,
    deadlines: BTreeSet<(Instant, IpAddr, JailIndex)>,
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
        BanState {
            policies,
            holds: HashMap::new(),
            deadlines: BTreeSet::new(),
            metrics,
        }
    }

    /// Applies an offence; returns the firewall command, if the firewall must change.
    pub fn offence(&mut self, offence: &Offence) -> Option<BanCommand> {
        let policy = self.policies.get(offence.jail)?;
        let holds = self.holds.entry(offence.address).or_default();
        if holds.iter().any(|h| h.jail == offence.jail) {
            // Messages already in flight when the ban was decided; nothing new to do.
            debug!(jail = %policy.name, address = %offence.address, "Already banned");
            return None;
        }
        let before = (!holds.is_empty()).then(|| overall(holds));
        let expires = match policy.bantime {
            BanTime::Permanent => None,
            BanTime::For(d) => Some(offence.at + d),
        };
        holds.push(Hold {
            jail: offence.jail,
            expires,
        });
        if let Some(deadline) = expires {
            self.deadlines
                .insert((deadline, offence.address, offence.jail));
        }
        let after = overall(holds);
        if let Some(m) = self.metrics.jails.get(offence.jail) {
            Metrics::inc(&m.bans);
        }
        self.metrics.active_bans.store(
            self.holds.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        info!(
            jail = %policy.name,
            address = %offence.address,
            origin = %offence.origin,
            failures = offence.failures,
            bantime = %describe(policy.bantime),
            "Banned"
        );
        // Only tell the firewall when the address's overall deadline moves later.
        let extends = match (before, after) {
            (None, _) => true,
            (Some(None), _) => false,
            (Some(Some(_)), None) => true,
            (Some(Some(b)), Some(a)) => a > b,
        };
        extends.then_some(BanCommand::Ban {
            address: offence.address,
            expires: after,
        })
    }

    /// Ends every hold whose deadline has passed. The kernel expires the set element on its
    /// own (it was given the same timeout), so nothing is sent to the firewall.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, address, jail)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            let Some(holds) = self.holds.get_mut(&address) else {
                continue;
            };
            holds.retain(|h| h.jail != jail);
            let name = self
                .policies
                .get(jail)
                .map(|p| p.name.as_str())
                .unwrap_or("?");
            if let Some(m) = self.metrics.jails.get(jail) {
                Metrics::inc(&m.unbans);
            }
            info!(jail = name, %address, reason = "expired", "Unbanned");
            if holds.is_empty() {
                self.holds.remove(&address);
            }
        }
        self.metrics.active_bans.store(
            self.holds.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
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

fn describe(bantime: BanTime) -> String {
    match bantime {
        BanTime::Permanent => "permanent".into(),
        BanTime::For(d) => humantime::format_duration(d).to_string(),
    }
}

/// Runs the manager until `offences` closes or `shutdown` fires.
pub async fn run(
    mut state: BanState,
    mut offences: mpsc::Receiver<Offence>,
    firewall: mpsc::Sender<BanCommand>,
    shutdown: CancellationToken,
) {
    // Far enough to never fire; avoids an Option in select!.
    let idle = Duration::from_secs(86400 * 365);
    loop {
        let next = state
            .next_deadline()
            .unwrap_or_else(|| Instant::now() + idle);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(next.into()) => state.expire(Instant::now()),
            offence = offences.recv() => {
                let Some(offence) = offence else { break };
                if let Some(command) = state.offence(&offence) {
                    if firewall.send(command).await.is_err() {
                        warn!("Enforcement stopped; bans are no longer applied");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Origin;

    fn state() -> BanState {
        let policies = vec![
            JailPolicy {
                name: JailName::new("sshd").unwrap(),
                bantime: BanTime::For(Duration::from_secs(60)),
            },
            JailPolicy {
                name: JailName::new("forever").unwrap(),
                bantime: BanTime::Permanent,
            },
            JailPolicy {
                name: JailName::new("long").unwrap(),
                bantime: BanTime::For(Duration::from_secs(600)),
            },
        ];
        BanState::new(
            policies,
            Arc::new(Metrics::new([], ["sshd", "forever", "long"])),
        )
    }

    fn offence(jail: JailIndex, at: Instant) -> Offence {
        Offence {
            jail,
            address: "203.0.113.9".parse().unwrap(),
            origin: Origin::Local,
            failures: 3,
            at,
            sample: String::new(),
        }
    }

    #[test]
    fn offence_bans_until_bantime_then_expires() {
        let mut s = state();
        let t = Instant::now();
        let cmd = s.offence(&offence(0, t));
        assert_eq!(
            cmd,
            Some(BanCommand::Ban {
                address: "203.0.113.9".parse().unwrap(),
                expires: Some(t + Duration::from_secs(60))
            })
        );
        assert!(s.is_banned("203.0.113.9".parse().unwrap()));
        assert_eq!(
            s.offence(&offence(0, t)),
            None,
            "same jail twice is one ban"
        );
        s.expire(t + Duration::from_secs(59));
        assert!(s.is_banned("203.0.113.9".parse().unwrap()));
        s.expire(t + Duration::from_secs(60));
        assert!(!s.is_banned("203.0.113.9".parse().unwrap()));
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_second_jail_only_extends_never_shortens() {
        let mut s = state();
        let t = Instant::now();
        assert!(s.offence(&offence(2, t)).is_some());
        // sshd's 60 s ban ends before long's 600 s one: the firewall keeps the longer.
        assert_eq!(s.offence(&offence(0, t)), None);
        s.expire(t + Duration::from_secs(61));
        assert!(s.is_banned("203.0.113.9".parse().unwrap()));
        // A permanent ban extends.
        assert_eq!(
            s.offence(&offence(1, t)),
            Some(BanCommand::Ban {
                address: "203.0.113.9".parse().unwrap(),
                expires: None
            })
        );
        s.expire(t + Duration::from_secs(10_000));
        assert!(s.is_banned("203.0.113.9".parse().unwrap()));
        assert_eq!(s.banned_count(), 1);
    }
}
