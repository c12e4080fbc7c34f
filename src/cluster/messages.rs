//! What the cluster exchanges with the pipeline and the ban manager: failures in, bans both
//! ways (a ban as the Stream carries it is `entry`'s), and the claims other collectors hold.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::entry::{Published, SharedBan};
use crate::config::JailName;
use crate::input::Origin;
use crate::jail::Offence;
use crate::target::{ByAttacker, Target};

/// A failure a jail counted, for the shared count.
#[derive(Debug, Clone)]
pub struct SharedFailure {
    /// The jail.
    pub jail: JailName,
    /// The attacker.
    pub target: Target,
    /// Attempts the line counted.
    pub weight: u32,
    /// The jail's maxretry and findtime.
    pub maxretry: u32,
    /// The jail's findtime.
    pub findtime: Duration,
    /// How long a claim on the attacker holds: the jail's findtime, or its bantime if
    /// shorter.
    pub claim_for: Duration,
    /// When it happened.
    pub at: SystemTime,
    /// Where the message came from.
    pub origin: Origin,
    /// The origin's proven or trusted name.
    pub origin_name: Option<Arc<str>>,
    /// The line.
    pub sample: String,
    /// The journal entry it came from (its key, the same on every collector): the shared
    /// count takes it once, whichever collectors an uploader sent it to.
    pub entry: Option<[u8; 16]>,
    /// This failure made the local count reach maxretry: the collector bans the attacker
    /// itself; this failure only takes the claim on the engine, and the attacker's later
    /// failures in the jail need no shared count.
    pub reached: bool,
    /// The jail counts per origin host: the failure adds to its sender's count of the
    /// attacker only (on every collector that sender reaches).
    pub per_origin: bool,
}

/// What the cluster asks of the ban manager.
#[derive(Debug, Clone)]
pub enum ToBan {
    /// Other collectors' bans, in the order one read of the stream found them: hold them
    /// here too, until they end there. (One message per read, not per ban: a storm's
    /// adoptions then wake the ban manager once per read.)
    Adopt(Vec<SharedBan>),
    /// Another collector lifted this address by hand: lift it here too.
    Unban(Target),
    /// The engine lost its data: publish every active ban again.
    Republish,
    /// Bans decided here whose claim another collector took first: that collector
    /// publishes and announces them; these were not published.
    Yield(Vec<Yielded>),
    /// Bans decided here and held back for another collector's claim, whose holder never
    /// published them (it stopped in between): published from here now, so announced from
    /// here too. Each is the jail and the banned address or prefix.
    TakeOver(Vec<(JailName, Target)>),
}

/// A ban decided here that is another collector's to publish and announce.
#[derive(Debug, Clone)]
pub struct Yielded {
    /// The jail.
    pub jail: JailName,
    /// The banned address or prefix.
    pub address: Target,
    /// The collector holding the claim.
    pub to: Arc<str>,
}

/// Attackers whose shared count another collector claimed, per jail, with that collector's
/// name: a ban this collector's own count decides for one of them (before the other's ban
/// arrives) is held here at once, but it is the other collector's to publish and announce.
/// Written by the counter, read by the ban manager. Also the bans held back that way, until
/// the claim holder's ban arrives (the follower says so) or is overdue.
#[derive(Debug, Default)]
pub struct ClaimedElsewhere(Mutex<Held>);

/// Per jail and attacker: the collector holding the claim, and when it lapses.
type Claims = ByAttacker<(JailName, Target), (Arc<str>, Instant)>;

#[derive(Debug, Default)]
struct Held {
    claims: Claims,
    /// Bans decided here and not published because another collector holds the claim, per
    /// jail and attacker, with the time by which that collector's ban should have arrived.
    awaited: ByAttacker<(JailName, Target), (SharedBan, Instant)>,
}

/// Most attackers remembered as claimed elsewhere, and most bans held back (past it, a
/// storm's double decisions are only published twice, and a ban held back past it is
/// not published should its claim holder never publish it).
const CLAIMED_ELSEWHERE_CAP: usize = 1_000_000;

impl ClaimedElsewhere {
    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // The maps hold no invariant a panicking holder could break.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `node` holds the claim of `target` in `jail` until `until`.
    pub fn note(&self, jail: &JailName, target: Target, node: &str, until: Instant) {
        let claims = &mut self.held().claims;
        let key = (jail.clone(), target);
        if claims.len() < CLAIMED_ELSEWHERE_CAP || claims.contains_key(&key) {
            claims.insert(key, (Arc::from(node), until));
        }
    }

    /// `target` was lifted by hand: no claim on it holds any more, in any jail, and no ban
    /// of it held back is published.
    pub fn forget_address(&self, target: Target) {
        let mut held = self.held();
        held.claims.retain(|(_, t), _| *t != target);
        held.awaited.retain(|(_, t), _| *t != target);
    }

    /// This collector took the claim: nobody else holds it.
    pub fn forget(&self, jail: &JailName, target: Target) {
        self.held().claims.remove(&(jail.clone(), target));
    }

    /// The collector that holds the claim of `target` in `jail` now, if another does.
    pub fn holder(&self, jail: &JailName, target: Target) -> Option<Arc<str>> {
        let held = self.held();
        let (node, until) = held.claims.get(&(jail.clone(), target))?;
        (*until > Instant::now()).then(|| node.clone())
    }

    /// Drops the claims that lapsed by `now`.
    pub fn prune(&self, now: Instant) {
        self.held().claims.retain(|_, (_, until)| *until > now);
    }

    /// `ban` (decided here, in `jail`) was not published because another collector holds
    /// its claim; that collector's ban should arrive by `due`.
    pub fn hold_back(&self, jail: JailName, ban: SharedBan, due: Instant) {
        let awaited = &mut self.held().awaited;
        if awaited.len() < CLAIMED_ELSEWHERE_CAP {
            awaited.insert((jail, ban.address), (ban, due));
        }
    }

    /// Bans of other collectors read from the stream: the bans held back for them here are
    /// published.
    pub fn arrived(&self, bans: &[SharedBan]) {
        let awaited = &mut self.held().awaited;
        if awaited.is_empty() {
            return;
        }
        for ban in bans {
            if let Ok(jail) = JailName::new(&ban.jail) {
                awaited.remove(&(jail, ban.address));
            }
        }
    }

    /// The bans held back whose claim holder's ban did not arrive by `now`, taken out.
    pub fn overdue(&self, now: Instant) -> Vec<SharedBan> {
        let awaited = &mut self.held().awaited;
        let due: Vec<(JailName, Target)> = awaited
            .iter()
            .filter(|(_, (_, due))| *due <= now)
            .map(|(key, _)| key.clone())
            .collect();
        due.iter()
            .filter_map(|key| awaited.remove(key))
            .map(|(ban, _)| ban)
            .collect()
    }
}

/// The cluster's channels.
#[derive(Debug)]
pub struct Links {
    /// Failures from the jails.
    pub failures: mpsc::Receiver<Vec<SharedFailure>>,
    /// The failures that made a local count reach maxretry, on a queue of their own: each
    /// takes the attacker's claim before the ban it made is published (not seconds later,
    /// behind a storm's counted failures).
    pub reached: mpsc::Receiver<SharedFailure>,
    /// Bans this collector decided, and addresses lifted here by hand, to publish.
    pub decided: mpsc::Receiver<Published>,
    /// Offences the shared count decided, to the ban manager.
    pub offences: mpsc::Sender<Offence>,
    /// Adoptions and requests, to the ban manager.
    pub to_ban: mpsc::Sender<ToBan>,
    /// What the counter learns of claims other collectors hold, for the ban manager.
    pub claims: Arc<ClaimedElsewhere>,
    /// The jails, whose claims on an address lifted by hand are lifted with it.
    pub jails: Vec<JailName>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_held_elsewhere_is_named_until_it_lapses_or_is_taken_here() {
        let claims = ClaimedElsewhere::default();
        let sshd = JailName::new("sshd").unwrap();
        let postfix = JailName::new("postfix").unwrap();
        let (one, two): (Target, Target) = (
            "198.51.100.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        );
        let now = Instant::now();
        claims.note(&sshd, one, "b", now + Duration::from_secs(60));
        claims.note(&sshd, two, "c", now);
        assert_eq!(claims.holder(&sshd, one).as_deref(), Some("b"));
        // Per jail, and a lapsed claim names nobody.
        assert_eq!(claims.holder(&postfix, one), None);
        assert_eq!(claims.holder(&sshd, two), None);
        claims.prune(now + Duration::from_secs(1));
        assert_eq!(claims.held().claims.len(), 1, "the lapsed claim is dropped");
        // This collector took the claim (after the other's lapsed): nobody else holds it.
        claims.forget(&sshd, one);
        assert_eq!(claims.holder(&sshd, one), None);
    }

    #[test]
    fn a_ban_held_back_goes_out_when_overdue_unless_it_arrived_or_was_lifted() {
        let claims = ClaimedElsewhere::default();
        let sshd = JailName::new("sshd").unwrap();
        let ban = |address: &str| SharedBan {
            node: "a".into(),
            jail: "sshd".into(),
            address: address.parse().unwrap(),
            failures: 5,
            origin: "web1".into(),
            started: SystemTime::now(),
            expires: None,
            sample: String::new(),
            republished: false,
            decided_by: None,
            more_origins: Vec::new(),
            placement: None,
        };
        let (arrives, lifted, never) = (
            ban("198.51.100.1"),
            ban("198.51.100.2"),
            ban("198.51.100.3"),
        );
        let now = Instant::now();
        let due = now + Duration::from_secs(10);
        for held in [&arrives, &lifted, &never] {
            claims.hold_back(sshd.clone(), held.clone(), due);
        }
        assert!(claims.overdue(now).is_empty(), "not due yet");
        // The holder's ban of the first arrives (from whichever collector), the second is
        // lifted by hand.
        let mut theirs = arrives.clone();
        theirs.node = "b".into();
        claims.arrived(&[theirs]);
        claims.forget_address(lifted.address);
        assert_eq!(claims.overdue(due), vec![never]);
        assert!(claims.overdue(due).is_empty(), "taken out once");
    }
}
