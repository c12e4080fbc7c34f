//! What a jail remembers of the failures it counted, per address: each one's connection
//! (client port) and user name. Two kinds of line need it:
//! - a follow-up line that ends a connection counts only when nothing of that connection
//!   counted before: sshd's "Connection closed by authenticating user U IP port N [preauth]"
//!   is the only trace of a key-only attempt, but it also follows every "Failed password"
//!   line of the same connection;
//! - a line that opens an attempt counts it, and the connection's next failure line, the
//!   same attempt, adds nothing: sshd's "Invalid user U from IP port N" comes before the
//!   first "Failed password for invalid user U ... port N", and is the only line of a
//!   connection that never sends a password;
//! - a successful login takes back the failures of its own connection and those of the same
//!   user name from the same address (a typo, then the right password, possibly on a new
//!   connection). A login never takes back another user's failures, so an attacker holding
//!   one account cannot wash out its guesses at the others.
//!
//! Bounded: past the cap, the oldest notes are forgotten first (which can only make a
//! follow-up line count or a login forgive less, never hide a failure). Owned by the jail's
//! window task, in message order; it knows nothing of regexes or bans.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Failures remembered per jail (about 60 bytes each).
pub const REMEMBERED: usize = 20_000;

/// Notes kept per address; an address trying more connections or user names than this
/// within findtime has its oldest forgotten.
const PER_ADDRESS: usize = 16;

/// A user name as a key (with the pattern's `realm`, when it has one): hashed with a key
/// drawn once per process, so a name chosen to collide with another cannot be computed
/// offline, and the memory holds no user names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserKey(u64);

impl UserKey {
    /// The key of `user` within `realm` (the part of a service the login is for, e.g. a
    /// web request; empty when the daemon has one).
    pub fn new(user: &str, realm: &str) -> Self {
        static KEYS: OnceLock<RandomState> = OnceLock::new();
        // Hashing the pair (each str ends with a terminator byte) keeps ("ab", "c") and
        // ("a", "bc") apart.
        UserKey(KEYS.get_or_init(RandomState::new).hash_one((user, realm)))
    }
}

/// One counted failure line's identity.
#[derive(Debug, Clone, Copy)]
struct Noted {
    at: Instant,
    port: Option<u16>,
    user: Option<UserKey>,
    /// Attempts it counted (what a login would take back).
    count: u32,
    /// It opened an attempt that no failure line of its connection has completed yet.
    open: bool,
}

/// Recently counted failures, by address.
#[derive(Debug)]
pub struct AttemptMemory {
    by_address: HashMap<IpAddr, Vec<Noted>>,
    /// Every note in order, for the cap.
    order: VecDeque<(IpAddr, Instant)>,
    cap: usize,
}

impl AttemptMemory {
    /// Remembers at most `cap` notes.
    pub fn new(cap: usize) -> Self {
        AttemptMemory {
            by_address: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Whether the connection (`address`, `port`) counted within `findtime`.
    pub fn seen(&self, address: IpAddr, port: u16, now: Instant, findtime: Duration) -> bool {
        self.by_address.get(&address).is_some_and(|notes| {
            notes
                .iter()
                .any(|n| n.port == Some(port) && now.saturating_duration_since(n.at) < findtime)
        })
    }

    /// Notes a counted line of `address` at `now` with `count` attempts, its connection's
    /// `port` and its `user`, when the line names them; `opens` when it opened an attempt.
    /// Returns the attempts it adds: `count`, less the one an earlier line of the same
    /// connection opened within `findtime` and counted already (that attempt is now
    /// completed). 0: the line adds nothing and is not noted. One map lookup per line.
    #[allow(clippy::too_many_arguments)]
    pub fn note(
        &mut self,
        address: IpAddr,
        port: Option<u16>,
        user: Option<UserKey>,
        count: u32,
        opens: bool,
        now: Instant,
        findtime: Duration,
    ) -> u32 {
        let notes = self.by_address.entry(address).or_default();
        notes.retain(|n| now.saturating_duration_since(n.at) < findtime);
        let mut count = count;
        if !opens && port.is_some() {
            if let Some(opened) = notes.iter_mut().find(|n| n.open && n.port == port) {
                opened.open = false;
                count = count.saturating_sub(1);
                if count == 0 {
                    return 0;
                }
            }
        }
        match notes.iter_mut().find(|n| n.port == port && n.user == user) {
            Some(same) => {
                same.at = now;
                same.count = same.count.saturating_add(count);
                same.open |= opens;
            }
            None => {
                if notes.len() >= PER_ADDRESS {
                    notes.remove(0);
                }
                notes.push(Noted {
                    at: now,
                    port,
                    user,
                    count,
                    open: opens,
                });
            }
        }
        self.order.push_back((address, now));
        while self.order.len() > self.cap {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            if let Some(notes) = self.by_address.get_mut(&old) {
                // A note refreshed since is newer than `at` and stays.
                notes.retain(|n| n.at > at);
                if notes.is_empty() {
                    self.by_address.remove(&old);
                }
            }
        }
        count
    }

    /// A login of `user` (when the line names it) succeeded on connection `port` (when the
    /// line names it): the attempts, within `findtime`, of that connection (unless they
    /// were for another user) and of that user from `address`, which the caller takes back.
    /// They are forgotten.
    pub fn forgive(
        &mut self,
        address: IpAddr,
        port: Option<u16>,
        user: Option<UserKey>,
        now: Instant,
        findtime: Duration,
    ) -> u32 {
        let Some(notes) = self.by_address.get_mut(&address) else {
            return 0;
        };
        let mut forgiven = 0u32;
        notes.retain(|n| {
            if now.saturating_duration_since(n.at) >= findtime {
                return false;
            }
            let same_connection = port.is_some()
                && n.port == port
                && (n.user.is_none() || user.is_none() || n.user == user);
            let same_user = user.is_some() && n.user == user;
            if same_connection || same_user {
                forgiven = forgiven.saturating_add(n.count);
                false
            } else {
                true
            }
        });
        if notes.is_empty() {
            self.by_address.remove(&address);
        }
        forgiven
    }

    /// Notes remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_address.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    fn user(name: &str) -> Option<UserKey> {
        Some(UserKey::new(name, ""))
    }

    #[test]
    fn a_connection_is_known_after_its_first_line_within_findtime() {
        let (t0, a) = (Instant::now(), "198.51.100.66".parse().unwrap());
        let mut m = AttemptMemory::new(10);
        assert!(!m.seen(a, 40000, t0, TEN_MINUTES));
        m.note(a, Some(40000), None, 1, false, t0, TEN_MINUTES);
        assert!(m.seen(a, 40000, t0, TEN_MINUTES));
        assert!(!m.seen(a, 40001, t0, TEN_MINUTES), "another port");
        assert!(
            !m.seen(a, 40000, t0 + TEN_MINUTES, TEN_MINUTES),
            "a reused port later"
        );
    }

    #[test]
    fn a_login_forgives_what_its_connection_counted() {
        let (t0, a) = (Instant::now(), "198.51.100.20".parse().unwrap());
        let mut m = AttemptMemory::new(10);
        m.note(a, Some(40000), None, 1, false, t0, TEN_MINUTES);
        m.note(a, Some(40000), None, 2, false, t0, TEN_MINUTES);
        m.note(a, Some(40001), None, 1, false, t0, TEN_MINUTES);
        assert_eq!(m.forgive(a, Some(40000), None, t0, TEN_MINUTES), 3);
        assert_eq!(m.forgive(a, Some(40000), None, t0, TEN_MINUTES), 0, "once");
        assert_eq!(
            m.forgive(a, Some(40001), None, t0 + TEN_MINUTES, TEN_MINUTES),
            0,
            "too late"
        );
    }

    #[test]
    fn a_login_forgives_its_own_users_failures_on_any_connection_and_no_one_elses() {
        let (t0, a) = (Instant::now(), "198.51.100.20".parse().unwrap());
        let b = "198.51.100.66".parse().unwrap();
        let mut m = AttemptMemory::new(10);
        m.note(a, Some(40000), user("alice"), 1, false, t0, TEN_MINUTES);
        m.note(a, None, user("alice"), 2, false, t0, TEN_MINUTES);
        m.note(a, Some(40001), user("root"), 5, false, t0, TEN_MINUTES);
        m.note(b, None, user("alice"), 7, false, t0, TEN_MINUTES);
        // alice logs in from a on a new connection: her 3 go, root's 5 and b's 7 stay.
        assert_eq!(m.forgive(a, Some(40002), user("alice"), t0, TEN_MINUTES), 3);
        // A login as alice on root's connection takes nothing of root's.
        assert_eq!(m.forgive(a, Some(40001), user("alice"), t0, TEN_MINUTES), 0);
        assert_eq!(m.forgive(a, None, user("root"), t0, TEN_MINUTES), 5);
        assert_eq!(m.forgive(b, None, user("alice"), t0, TEN_MINUTES), 7);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn an_opened_attempt_is_completed_once_by_its_own_connection() {
        let (t0, a) = (Instant::now(), "198.51.100.66".parse().unwrap());
        let mut m = AttemptMemory::new(10);
        let line = |m: &mut AttemptMemory, port, count, opens, at| {
            m.note(a, Some(port), user("oracle"), count, opens, at, TEN_MINUTES)
        };
        assert_eq!(
            line(&mut m, 40000, 1, true, t0),
            1,
            "the opening line counts"
        );
        assert_eq!(line(&mut m, 40001, 1, false, t0), 1, "another connection");
        assert_eq!(line(&mut m, 40000, 1, false, t0), 0, "the same attempt");
        assert_eq!(line(&mut m, 40000, 1, false, t0), 1, "completed once");
        assert_eq!(line(&mut m, 40000, 2, true, t0), 2);
        assert_eq!(
            line(&mut m, 40000, 3, false, t0),
            2,
            "one of three was opened"
        );
        assert_eq!(line(&mut m, 40002, 1, true, t0), 1);
        assert_eq!(
            line(&mut m, 40002, 1, false, t0 + TEN_MINUTES),
            1,
            "too late"
        );
    }

    #[test]
    fn the_oldest_are_forgotten_past_the_cap() {
        let (t0, a) = (Instant::now(), "198.51.100.66".parse().unwrap());
        let mut m = AttemptMemory::new(3);
        for port in 1..=5 {
            m.note(
                a,
                Some(port),
                None,
                1,
                false,
                t0 + Duration::from_millis(u64::from(port)),
                TEN_MINUTES,
            );
        }
        assert_eq!(m.len(), 3);
        let later = t0 + Duration::from_secs(1);
        assert!(!m.seen(a, 1, later, TEN_MINUTES), "forgotten");
        assert!(m.seen(a, 5, later, TEN_MINUTES));
    }

    #[test]
    fn an_address_keeps_its_newest_notes() {
        let (t0, a) = (Instant::now(), "198.51.100.66".parse().unwrap());
        let mut m = AttemptMemory::new(1000);
        for port in 0..(PER_ADDRESS as u16 + 4) {
            m.note(a, Some(port), None, 1, false, t0, TEN_MINUTES);
        }
        assert_eq!(m.len(), PER_ADDRESS);
        assert!(!m.seen(a, 0, t0, TEN_MINUTES));
        assert!(m.seen(a, PER_ADDRESS as u16 + 3, t0, TEN_MINUTES));
    }

    #[test]
    fn user_keys_tell_user_and_realm_apart() {
        assert_eq!(UserKey::new("alice", ""), UserKey::new("alice", ""));
        assert_ne!(UserKey::new("alice", ""), UserKey::new("Alice", ""));
        assert_ne!(UserKey::new("ab", "c"), UserKey::new("a", "bc"));
    }
}
