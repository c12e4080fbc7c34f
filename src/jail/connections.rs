//! The connections a jail has counted a failure of (address and client port), for lines that
//! end a connection and count only when nothing of that connection counted before: sshd's
//! "Connection closed by authenticating user U IP port N [preauth]" is the only trace of a
//! key-only or publickey-only attempt, but it also follows every "Failed password" line of the
//! same connection. Bounded: past the cap, the oldest connections are forgotten first (which
//! can only make a follow-up line count, never hide a failure).
//!
//! Owned by the jail's window task, in message order; it knows nothing of regexes or bans.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Connections remembered per jail (about 50 bytes each).
pub const REMEMBERED: usize = 20_000;

/// Recently counted connections.
#[derive(Debug)]
pub struct ConnectionMemory {
    /// When each connection last counted, and how many attempts it counted.
    last: HashMap<(IpAddr, u16), (Instant, u32)>,
    order: VecDeque<((IpAddr, u16), Instant)>,
    cap: usize,
}

impl ConnectionMemory {
    /// Remembers at most `cap` connections.
    pub fn new(cap: usize) -> Self {
        ConnectionMemory {
            last: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Whether the connection counted within `findtime` (nothing is noted).
    pub fn seen(&self, address: IpAddr, port: u16, now: Instant, findtime: Duration) -> bool {
        self.last
            .get(&(address, port))
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) < findtime)
    }

    /// Notes a counted line of connection (`address`, `port`) at `now` with `counted`
    /// attempts (what a login on it would forgive); answers whether the connection had
    /// counted before, within `findtime` (a client port reused later is a new connection).
    pub fn count(
        &mut self,
        address: IpAddr,
        port: u16,
        now: Instant,
        findtime: Duration,
        counted: u32,
    ) -> bool {
        let key = (address, port);
        let earlier = self
            .last
            .get(&key)
            .filter(|(t, _)| now.saturating_duration_since(*t) < findtime)
            .map(|(_, n)| *n);
        let known = earlier.is_some();
        self.last
            .insert(key, (now, earlier.unwrap_or(0).saturating_add(counted)));
        self.order.push_back((key, now));
        while self.order.len() > self.cap {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            // Only the entry's latest time removes it.
            if self.last.get(&old).is_some_and(|(t, _)| *t == at) {
                self.last.remove(&old);
            }
        }
        known
    }

    /// A login succeeded on the connection: the attempts it counted (within `findtime`),
    /// which the caller takes back; the connection is forgotten.
    pub fn forgive(&mut self, address: IpAddr, port: u16, now: Instant, findtime: Duration) -> u32 {
        match self.last.remove(&(address, port)) {
            Some((t, n)) if now.saturating_duration_since(t) < findtime => n,
            _ => 0,
        }
    }

    /// Connections remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    #[test]
    fn a_connection_is_known_after_its_first_line_within_findtime() {
        let (t0, a) = (Instant::now(), "198.51.100.66".parse().unwrap());
        let mut m = ConnectionMemory::new(10);
        assert!(!m.count(a, 40000, t0, TEN_MINUTES, 1));
        assert!(m.count(a, 40000, t0, TEN_MINUTES, 1));
        assert!(
            !m.count(a, 40001, t0, TEN_MINUTES, 1),
            "another port, another connection"
        );
        assert!(
            !m.count(a, 40000, t0 + TEN_MINUTES, TEN_MINUTES, 1),
            "a reused port later"
        );
    }

    #[test]
    fn a_login_forgives_what_its_connection_counted() {
        let (t0, a) = (Instant::now(), "198.51.100.20".parse().unwrap());
        let mut m = ConnectionMemory::new(10);
        m.count(a, 40000, t0, TEN_MINUTES, 1);
        m.count(a, 40000, t0, TEN_MINUTES, 2);
        m.count(a, 40001, t0, TEN_MINUTES, 1);
        assert_eq!(m.forgive(a, 40000, t0, TEN_MINUTES), 3);
        assert_eq!(m.forgive(a, 40000, t0, TEN_MINUTES), 0, "once");
        assert_eq!(
            m.forgive(a, 40001, t0 + TEN_MINUTES, TEN_MINUTES),
            0,
            "too late"
        );
    }

    #[test]
    fn the_oldest_are_forgotten_past_the_cap() {
        let (t0, a) = (Instant::now(), "198.51.100.66".parse().unwrap());
        let mut m = ConnectionMemory::new(3);
        for port in 1..=5 {
            m.count(a, port, t0, TEN_MINUTES, 1);
        }
        assert_eq!(m.len(), 3);
        assert!(!m.count(a, 1, t0, TEN_MINUTES, 1), "forgotten");
        assert!(m.count(a, 5, t0, TEN_MINUTES, 1));
    }
}
