//! What a jail remembers having reported: the addresses whose offence it reported (or whose
//! ban was made elsewhere) within findtime, so that a ban storm's later failures of them
//! repeat nothing.
//!
//! A jail that bans where the attack happened (`placement = ["origin"]`) remembers per
//! attacked host: its ban covers only the hosts it came from, so the failures an attacker
//! goes on to cause on the next host must still count (the ban manager then widens the ban
//! to that host). Owns only this memory; the counting is the windows'.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::input::Origin;

/// Addresses a jail remembers having reported (a memory bound, not a limit on bans: past
/// it, the memory starts over and the next failures of those addresses report them again).
const REPORTED_CAP: usize = 200_000;

/// The host a failure was reported from, as placement names it: the sender's proven or
/// trusted name, else its address (the ban manager resolves `origin` the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttackedHost {
    /// A TLS identity or a trusted host name.
    Named(Arc<str>),
    /// The sender's address (this host for local sockets).
    Address(Option<IpAddr>),
}

impl AttackedHost {
    /// The host of a failure from `origin`, named `name` when the listener proves or trusts
    /// one.
    pub fn of(origin: Origin, name: Option<&Arc<str>>) -> AttackedHost {
        match (name, origin) {
            (Some(name), _) => AttackedHost::Named(name.clone()),
            (None, Origin::Peer(peer)) => AttackedHost::Address(Some(peer.ip())),
            (None, Origin::Local) => AttackedHost::Address(None),
        }
    }
}

#[derive(Debug)]
enum Entry {
    /// Reported for every host.
    Everywhere(Instant),
    /// Reported from these hosts only.
    From(Vec<(AttackedHost, Instant)>),
}

/// The addresses a jail reported, and when.
#[derive(Debug, Default)]
pub struct Reported {
    per_host: bool,
    at: HashMap<IpAddr, Entry>,
}

impl Reported {
    /// Remembers per attacked host when `per_host` (the jail's bans go where the attack
    /// happened), else per address.
    pub fn new(per_host: bool) -> Reported {
        Reported {
            per_host,
            at: HashMap::new(),
        }
    }

    /// A change of placement: what was remembered the other way is forgotten.
    pub fn set_per_host(&mut self, per_host: bool) {
        if per_host != self.per_host {
            self.per_host = per_host;
            self.at.clear();
        }
    }

    fn room(&mut self) {
        if self.at.len() >= REPORTED_CAP {
            self.at.clear();
        }
    }

    /// This jail reported `address` at `now` from a failure of `origin` (named `name`).
    pub fn mark(&mut self, address: IpAddr, origin: Origin, name: Option<&Arc<str>>, now: Instant) {
        self.room();
        if !self.per_host {
            self.at.insert(address, Entry::Everywhere(now));
            return;
        }
        let host = AttackedHost::of(origin, name);
        match self
            .at
            .entry(address)
            .or_insert_with(|| Entry::From(Vec::new()))
        {
            Entry::Everywhere(at) => *at = now,
            Entry::From(hosts) => match hosts.iter_mut().find(|(h, _)| *h == host) {
                Some((_, at)) => *at = now,
                None => hosts.push((host, now)),
            },
        }
    }

    /// A ban of `address` made elsewhere (adopted, by hand, by the cluster's count) at
    /// `now`. A jail remembering per host does not know which hosts that ban covers: it
    /// keeps counting, and the ban manager drops what the ban covers already.
    pub fn mark_banned_elsewhere(&mut self, address: IpAddr, now: Instant) {
        if !self.per_host {
            self.room();
            self.at.insert(address, Entry::Everywhere(now));
        }
    }

    /// Whether a failure of `address` from `origin` (named `name`) at `now` repeats a
    /// report made within `findtime`.
    pub fn covers(
        &self,
        address: IpAddr,
        origin: Origin,
        name: Option<&Arc<str>>,
        now: Instant,
        findtime: Duration,
    ) -> bool {
        let recent = |at: &Instant| now.saturating_duration_since(*at) < findtime;
        match self.at.get(&address) {
            None => false,
            Some(Entry::Everywhere(at)) => recent(at),
            Some(Entry::From(hosts)) => {
                let host = AttackedHost::of(origin, name);
                hosts.iter().any(|(h, at)| *h == host && recent(at))
            }
        }
    }

    /// Forgets `address` (its ban ended): it counts again everywhere.
    pub fn forget(&mut self, address: IpAddr) {
        self.at.remove(&address);
    }

    /// Forgets everything (the news of bans overflowed).
    pub fn clear(&mut self) {
        self.at.clear();
    }

    /// Drops reports older than `findtime`.
    pub fn sweep(&mut self, now: Instant, findtime: Duration) {
        let recent = |at: &Instant| now.saturating_duration_since(*at) < findtime;
        self.at.retain(|_, entry| match entry {
            Entry::Everywhere(at) => recent(at),
            Entry::From(hosts) => {
                hosts.retain(|(_, at)| recent(at));
                !hosts.is_empty()
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINDTIME: Duration = Duration::from_secs(600);

    fn peer(last: u8) -> Origin {
        Origin::Peer(std::net::SocketAddr::from(([198, 51, 100, last], 514)))
    }

    fn attacker() -> IpAddr {
        IpAddr::from([203, 0, 113, 9])
    }

    #[test]
    fn per_address_a_report_covers_every_host_until_findtime() {
        let mut r = Reported::new(false);
        let t = Instant::now();
        r.mark(attacker(), peer(1), None, t);
        assert!(r.covers(attacker(), peer(2), None, t, FINDTIME));
        assert!(!r.covers(attacker(), peer(2), None, t + FINDTIME, FINDTIME));
        r.forget(attacker());
        assert!(!r.covers(attacker(), peer(1), None, t, FINDTIME));
    }

    #[test]
    fn per_host_a_report_covers_the_host_it_came_from_only() {
        let mut r = Reported::new(true);
        let t = Instant::now();
        r.mark(attacker(), peer(1), None, t);
        assert!(r.covers(attacker(), peer(1), None, t, FINDTIME));
        assert!(!r.covers(attacker(), peer(2), None, t, FINDTIME));
        r.mark(attacker(), peer(2), None, t);
        assert!(r.covers(attacker(), peer(2), None, t, FINDTIME));
        // A name is a host of its own, whatever address relays it.
        let web7: Arc<str> = Arc::from("web7");
        assert!(!r.covers(attacker(), peer(1), Some(&web7), t, FINDTIME));
        r.mark(attacker(), peer(1), Some(&web7), t);
        assert!(r.covers(attacker(), peer(1), Some(&web7), t, FINDTIME));
        // A ban made elsewhere says nothing about which hosts it covers.
        r.mark_banned_elsewhere(IpAddr::from([203, 0, 113, 10]), t);
        assert!(!r.covers(IpAddr::from([203, 0, 113, 10]), peer(1), None, t, FINDTIME));
        r.sweep(t + FINDTIME, FINDTIME);
        assert!(!r.covers(attacker(), peer(1), None, t + FINDTIME, FINDTIME));
    }
}
