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
    last: HashMap<(IpAddr, u16), Instant>,
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

    /// Notes a counted line of connection (`address`, `port`) at `now`; answers whether the
    /// connection had counted before, within `findtime` (a client port reused later is a new
    /// connection).
    pub fn remember(
        &mut self,
        address: IpAddr,
        port: u16,
        now: Instant,
        findtime: Duration,
    ) -> bool {
        let key = (address, port);
        let known = self
            .last
            .get(&key)
            .is_some_and(|t| now.saturating_duration_since(*t) < findtime);
        self.last.insert(key, now);
        self.order.push_back((key, now));
        while self.order.len() > self.cap {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            // Only the entry's latest time removes it.
            if self.last.get(&old) == Some(&at) {
                self.last.remove(&old);
            }
        }
        known
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
        assert!(!m.remember(a, 40000, t0, TEN_MINUTES));
        assert!(m.remember(a, 40000, t0, TEN_MINUTES));
        assert!(
            !m.remember(a, 40001, t0, TEN_MINUTES),
            "another port, another connection"
        );
        assert!(
            !m.remember(a, 40000, t0 + TEN_MINUTES, TEN_MINUTES),
            "a reused port later"
        );
    }

    #[test]
    fn the_oldest_are_forgotten_past_the_cap() {
        let (t0, a) = (Instant::now(), "198.51.100.66".parse().unwrap());
        let mut m = ConnectionMemory::new(3);
        for port in 1..=5 {
            m.remember(a, port, t0, TEN_MINUTES);
        }
        assert_eq!(m.len(), 3);
        assert!(!m.remember(a, 1, t0, TEN_MINUTES), "forgotten");
        assert!(m.remember(a, 5, t0, TEN_MINUTES));
    }
}
