//! The failure window: per address, the times of recent failures, and the rule "the failure
//! that makes the count within `findtime` reach `maxretry` is an offence, at once".
//!
//! Owns counting and the memory bound. Time is passed in (no clock), so tests need no
//! sleeps. It does not know about regexes, addresses to ignore, or bans.
//!
//! Memory: at most `max_tracked` addresses are tracked. When a new address arrives at the
//! cap, addresses whose failures all left the window are dropped first; if none has, the
//! address that has been tracked the longest is evicted (its failures are forgotten). A flood
//! of spoofed addresses therefore costs bounded memory; the price is that, during such a
//! flood, a slow attacker's count may restart.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failure times are kept as ticks of 100 ms since the window was created: 4 bytes each
/// instead of 16, and 13 years before they overflow.
const TICK: Duration = Duration::from_millis(100);
/// At the cap, stale entries are swept out at most this often (10 ticks = 1 s).
const SWEEP_AT_CAP_TICKS: u32 = 10;

/// Failure times per key (an address, or origin and address) for one jail.
#[derive(Debug)]
pub struct FailureWindow<K = IpAddr> {
    maxretry: u32,
    findtime_ticks: u32,
    max_tracked: usize,
    /// Set by the first failure: later times are ticks after it.
    epoch: Option<Instant>,
    failures: HashMap<K, Vec<u32>>,
    /// Addresses in the order they started being tracked (may hold addresses no longer
    /// tracked; those are skipped and compacted away).
    order: VecDeque<K>,
    /// Entries present at the last sweep; a sweep runs when the map doubles past it.
    swept_len: usize,
    evicted: u64,
    /// Tick of the last sweep.
    last_sweep: u32,
}

/// What recording one failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Still below maxretry: this many failures within findtime.
    Below(u32),
    /// maxretry reached: the address's failures are cleared and it should be banned.
    Reached(u32),
}

fn ticks(d: Duration) -> u32 {
    u32::try_from(d.as_millis() / TICK.as_millis()).unwrap_or(u32::MAX)
}

impl<K: Hash + Eq + Copy> FailureWindow<K> {
    /// A window for `maxretry` failures within `findtime`, tracking at most `max_tracked`
    /// addresses.
    pub fn new(maxretry: u32, findtime: Duration, max_tracked: usize) -> Self {
        FailureWindow {
            maxretry: maxretry.max(1),
            findtime_ticks: ticks(findtime).max(1),
            max_tracked: max_tracked.max(1),
            epoch: None,
            failures: HashMap::new(),
            order: VecDeque::new(),
            swept_len: 0,
            evicted: 0,
            last_sweep: 0,
        }
    }

    /// Changes maxretry, findtime and the cap (on reload); failures already counted stay.
    pub fn set_limits(&mut self, maxretry: u32, findtime: Duration, max_tracked: usize) {
        self.maxretry = maxretry.max(1);
        self.findtime_ticks = ticks(findtime).max(1);
        self.max_tracked = max_tracked.max(1);
    }

    fn tick(&self, now: Instant) -> u32 {
        self.epoch
            .map_or(0, |epoch| ticks(now.saturating_duration_since(epoch)))
    }

    /// Records a failure of `address` at `now`.
    pub fn record(&mut self, address: K, now: Instant) -> Count {
        self.epoch.get_or_insert(now);
        let now = self.tick(now);
        if !self.failures.contains_key(&address) {
            self.make_room(now);
            self.order.push_back(address);
        }
        let findtime = self.findtime_ticks;
        let times = self.failures.entry(address).or_default();
        times.retain(|&t| now.saturating_sub(t) < findtime);
        times.push(now);
        let count = times.len() as u32;
        if count >= self.maxretry {
            self.failures.remove(&address);
            return Count::Reached(count);
        }
        Count::Below(count)
    }

    /// Keeps the map below the cap before a new address is added.
    fn make_room(&mut self, now: u32) {
        if self.failures.len() > 1024 && self.failures.len() > 2 * self.swept_len {
            self.sweep_ticks(now);
        }
        if self.failures.len() < self.max_tracked {
            return;
        }
        // A sweep is O(tracked): at most one per second at the cap, or a flood would sweep
        // on every new address.
        if now.saturating_sub(self.last_sweep) >= SWEEP_AT_CAP_TICKS {
            self.sweep_ticks(now);
        }
        while self.failures.len() >= self.max_tracked {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if self.failures.remove(&oldest).is_some() {
                self.evicted += 1;
            }
        }
    }

    /// Failures of `address` still inside the window at `now`.
    pub fn current(&self, address: K, now: Instant) -> u32 {
        let now = self.tick(now);
        self.failures.get(&address).map_or(0, |times| {
            times
                .iter()
                .filter(|&&t| now.saturating_sub(t) < self.findtime_ticks)
                .count() as u32
        })
    }

    /// Addresses with at least one failure tracked.
    pub fn tracked(&self) -> usize {
        self.failures.len()
    }

    /// Addresses evicted at the cap so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Forgets `address` (it was banned or unbanned by hand).
    pub fn forget(&mut self, address: K) {
        self.failures.remove(&address);
    }

    /// Drops addresses whose failures all fell out of the window.
    pub fn sweep(&mut self, now: Instant) {
        let now = self.tick(now);
        self.sweep_ticks(now);
    }

    fn sweep_ticks(&mut self, now: u32) {
        let findtime = self.findtime_ticks;
        self.failures.retain(|_, times| {
            times
                .last()
                .is_some_and(|&t| now.saturating_sub(t) < findtime)
        });
        let failures = &self.failures;
        self.order.retain(|a| failures.contains_key(a));
        self.failures.shrink_to(self.failures.len() * 2);
        self.order.shrink_to(self.order.len() * 2);
        self.swept_len = self.failures.len();
        self.last_sweep = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const BIG: usize = 1_000_000;

    #[test]
    fn the_maxretry_th_failure_within_findtime_is_reached_at_once() {
        let t0 = Instant::now();
        let mut w: FailureWindow = FailureWindow::new(3, Duration::from_secs(600), BIG);
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
        let mut w: FailureWindow = FailureWindow::new(3, Duration::from_secs(60), BIG);
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
        let mut w: FailureWindow = FailureWindow::new(2, Duration::from_secs(60), BIG);
        assert_eq!(w.record(ip("198.51.100.1"), t0), Count::Below(1));
        assert_eq!(w.record(ip("198.51.100.2"), t0), Count::Below(1));
        assert_eq!(w.record(ip("198.51.100.1"), t0), Count::Reached(2));
        assert_eq!(w.current(ip("198.51.100.2"), t0), 1);
    }

    #[test]
    fn maxretry_one_bans_on_first_failure() {
        let mut w: FailureWindow = FailureWindow::new(1, Duration::from_secs(60), BIG);
        assert_eq!(
            w.record(ip("198.51.100.1"), Instant::now()),
            Count::Reached(1)
        );
    }

    #[test]
    fn sweep_forgets_stale_addresses() {
        let t0 = Instant::now();
        let mut w: FailureWindow = FailureWindow::new(5, Duration::from_secs(10), BIG);
        for i in 0..=255u8 {
            w.record(IpAddr::from([198, 51, 100, i]), t0);
        }
        w.record(ip("203.0.113.1"), t0 + Duration::from_secs(20));
        assert_eq!(w.tracked(), 257);
        w.sweep(t0 + Duration::from_secs(20));
        assert_eq!(w.tracked(), 1);
    }

    #[test]
    fn the_cap_holds_and_evicts_the_longest_tracked() {
        let t0 = Instant::now();
        let mut w: FailureWindow = FailureWindow::new(5, Duration::from_secs(600), 100);
        let first = ip("203.0.113.1");
        w.record(first, t0);
        for i in 0..1000u32 {
            let address =
                std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16);
            w.record(IpAddr::V6(address), t0 + Duration::from_secs(1));
            assert!(w.tracked() <= 100);
        }
        assert_eq!(w.tracked(), 100);
        assert_eq!(
            w.current(first, t0 + Duration::from_secs(1)),
            0,
            "the oldest was evicted"
        );
        assert_eq!(w.evicted(), 901);
        // Stale entries go before live ones are evicted.
        let later = t0 + Duration::from_secs(700);
        w.record(ip("203.0.113.2"), later);
        assert_eq!(w.tracked(), 1);
        assert_eq!(w.evicted(), 901);
    }
}
