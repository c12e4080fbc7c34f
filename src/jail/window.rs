//! The failure window: per address, the times of recent failures, and the rule "the failure
//! that makes the count within `findtime` reach `maxretry` is an offence, at once".
//!
//! Owns counting only. Time is passed in (no clock), so tests need no sleeps. It does not
//! know about regexes, addresses to ignore, or bans.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failure times per address for one jail.
#[derive(Debug)]
pub struct FailureWindow {
    maxretry: u32,
    findtime: Duration,
    failures: HashMap<IpAddr, VecDeque<Instant>>,
    /// Entries present at the last sweep; a sweep runs when the map doubles past it.
    swept_len: usize,
}

/// What recording one failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Still below maxretry: this many failures within findtime.
    Below(u32),
    /// maxretry reached: the address's failures are cleared and it should be banned.
    Reached(u32),
}

impl FailureWindow {
    /// A window for `maxretry` failures within `findtime`.
    pub fn new(maxretry: u32, findtime: Duration) -> Self {
        FailureWindow {
            maxretry: maxretry.max(1),
            findtime,
            failures: HashMap::new(),
            swept_len: 0,
        }
    }

    /// Changes maxretry and findtime (on reload); failures already counted stay.
    pub fn set_limits(&mut self, maxretry: u32, findtime: Duration) {
        self.maxretry = maxretry.max(1);
        self.findtime = findtime;
    }

    /// Records a failure of `address` at `now`.
    pub fn record(&mut self, address: IpAddr, now: Instant) -> Count {
        let times = self.failures.entry(address).or_default();
        while times
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= self.findtime)
        {
            times.pop_front();
        }
        times.push_back(now);
        let count = times.len() as u32;
        if count >= self.maxretry {
            self.failures.remove(&address);
            return Count::Reached(count);
        }
        if self.failures.len() > 1024 && self.failures.len() > 2 * self.swept_len {
            self.sweep(now);
        }
        Count::Below(count)
    }

    /// Failures of `address` still inside the window at `now`.
    pub fn current(&self, address: IpAddr, now: Instant) -> u32 {
        self.failures.get(&address).map_or(0, |times| {
            times
                .iter()
                .filter(|&&t| now.saturating_duration_since(t) < self.findtime)
                .count() as u32
        })
    }

    /// Addresses with at least one failure tracked.
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }

    /// Forgets `address` (it was banned or unbanned by hand).
    pub fn forget(&mut self, address: IpAddr) {
        self.failures.remove(&address);
    }

    /// Drops addresses whose failures all fell out of the window.
    pub fn sweep(&mut self, now: Instant) {
        let findtime = self.findtime;
        self.failures.retain(|_, times| {
            times
                .back()
                .is_some_and(|&t| now.saturating_duration_since(t) < findtime)
        });
        self.swept_len = self.failures.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_maxretry_th_failure_within_findtime_is_reached_at_once() {
        let t0 = Instant::now();
        let mut w = FailureWindow::new(3, Duration::from_secs(600));
        let a = ip("198.51.100.66");
        assert_eq!(w.record(a, t0), Count::Below(1));
        assert_eq!(w.record(a, t0 + Duration::from_secs(1)), Count::Below(2));
        assert_eq!(w.record(a, t0 + Duration::from_secs(2)), Count::Reached(3));
        // Cleared: counting starts again.
        assert_eq!(w.current(a, t0 + Duration::from_secs(2)), 0);
        assert_eq!(w.record(a, t0 + Duration::from_secs(3)), Count::Below(1));
    }

    #[test]
    fn failures_older_than_findtime_do_not_count() {
        let t0 = Instant::now();
        let mut w = FailureWindow::new(3, Duration::from_secs(60));
        let a = ip("2001:db8::1");
        w.record(a, t0);
        w.record(a, t0 + Duration::from_secs(30));
        // The first failure is exactly findtime old: out of the window.
        assert_eq!(w.record(a, t0 + Duration::from_secs(60)), Count::Below(2));
        assert_eq!(w.record(a, t0 + Duration::from_secs(61)), Count::Reached(3));
    }

    #[test]
    fn addresses_are_counted_separately() {
        let t0 = Instant::now();
        let mut w = FailureWindow::new(2, Duration::from_secs(60));
        assert_eq!(w.record(ip("198.51.100.1"), t0), Count::Below(1));
        assert_eq!(w.record(ip("198.51.100.2"), t0), Count::Below(1));
        assert_eq!(w.record(ip("198.51.100.1"), t0), Count::Reached(2));
        assert_eq!(w.current(ip("198.51.100.2"), t0), 1);
    }

    #[test]
    fn maxretry_one_bans_on_first_failure() {
        let mut w = FailureWindow::new(1, Duration::from_secs(60));
        assert_eq!(
            w.record(ip("198.51.100.1"), Instant::now()),
            Count::Reached(1)
        );
    }

    #[test]
    fn sweep_forgets_stale_addresses() {
        let t0 = Instant::now();
        let mut w = FailureWindow::new(5, Duration::from_secs(10));
        for i in 0..=255u8 {
            w.record(IpAddr::from([198, 51, 100, i]), t0);
        }
        w.record(ip("203.0.113.1"), t0 + Duration::from_secs(20));
        assert_eq!(w.tracked(), 257);
        w.sweep(t0 + Duration::from_secs(20));
        assert_eq!(w.tracked(), 1);
    }
}
