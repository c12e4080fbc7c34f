//! The failure window: per address, the times of recent failures, and the rule "the failure
//! that makes the count within `findtime` reach `maxretry` is an offence, at once".
//!
//! Owns counting and the memory bound. Time is passed in (no clock), so tests need no
//! sleeps. It does not know about regexes, addresses to ignore, or bans.
//!
//! Memory: at most `max_tracked` addresses are tracked. When a new address arrives at the
//! cap, addresses whose failures all left the window are dropped first; if none has, the
//! address with the least progress towards maxretry is evicted (the longest-tracked among
//! equals). A flood of spoofed one-shot addresses therefore costs bounded memory and evicts
//! only its own kind: an attacker one failure short of maxretry keeps its count unless the
//! flood's addresses each fail as often, which bans them first.

use std::collections::VecDeque;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::target::ByAttacker;

/// Failure times are kept as ticks of 100 ms since the window was created: 4 bytes each
/// instead of 16, and 13 years before they overflow.
const TICK: Duration = Duration::from_millis(100);
/// At the cap, stale entries are swept out at most this often (10 ticks = 1 s).
const SWEEP_AT_CAP_TICKS: u32 = 10;
/// Queue entries a compaction pass checks per failure recorded. A pass over everything at
/// once stalled the window task for 10-30 ms with 70,000 addresses tracked (a ban storm's
/// bans waited behind it); spread out, it ends within a few thousand failures and never
/// stops the one being counted for long.
const COMPACT_STEP: usize = 8;
/// Queue entries whose failures left the window that are dropped per failure recorded (with
/// their address when it has no newer failure): the map sheds stale addresses as it goes,
/// without a pass over it.
const EXPIRE_STEP: usize = 8;

/// Failure times per key (an address, or origin and address) for one jail.
#[derive(Debug)]
pub struct FailureWindow<K = IpAddr> {
    maxretry: u32,
    findtime_ticks: u32,
    max_tracked: usize,
    /// Set by the first failure: later times are ticks after it.
    epoch: Option<Instant>,
    /// Looked up for every failure and again for each queue entry a compaction or expiry
    /// step checks (up to 16 per failure).
    failures: ByAttacker<K, Vec<u32>>,
    /// Eviction order: `by_progress[n - 1]` holds addresses in the order they reached n
    /// failures. Entries are never updated in place: each failure queues its address again,
    /// and an entry counts only while it describes the address's latest failure (see
    /// `Queued::is_current`); the others are skipped and compacted away.
    by_progress: Vec<Level<K>>,
    /// Entries in `by_progress`, current or not.
    queued: usize,
    /// The level a compaction pass is at (levels below it are done); None: no pass.
    compacting: Option<usize>,
    evicted: u64,
    /// Of `evicted`, how many `take_new_evictions` has reported.
    evicted_reported: u64,
    /// Tick of the last sweep.
    last_sweep: u32,
}

/// One count's eviction queue, oldest first: `kept`, then `queue`. A compaction pass moves
/// the current entries from the front of `queue` to the back of `kept`, a few per failure,
/// and swaps them when `queue` is empty; new entries join `queue` meanwhile. Outside a pass
/// `kept` is empty.
#[derive(Debug)]
struct Level<K> {
    kept: VecDeque<Queued<K>>,
    queue: VecDeque<Queued<K>>,
}

impl<K> Default for Level<K> {
    fn default() -> Self {
        Level {
            kept: VecDeque::new(),
            queue: VecDeque::new(),
        }
    }
}

impl<K> Level<K> {
    fn front(&self) -> Option<&Queued<K>> {
        self.kept.front().or_else(|| self.queue.front())
    }

    fn pop_front(&mut self) -> Option<Queued<K>> {
        self.kept.pop_front().or_else(|| self.queue.pop_front())
    }
}

/// An address as queued for eviction when its count became `failures` at tick `at`.
#[derive(Debug, Clone, Copy)]
struct Queued<K> {
    key: K,
    at: u32,
}

impl<K: Hash + Eq> Queued<K> {
    /// Whether the address still has exactly the count it was queued with at level `level`,
    /// from that same failure (a later failure queued it again).
    fn is_current(&self, level: usize, failures: &ByAttacker<K, Vec<u32>>) -> bool {
        failures
            .get(&self.key)
            .is_some_and(|times| times.len() == level + 1 && times.last() == Some(&self.at))
    }
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
            failures: ByAttacker::default(),
            by_progress: Vec::new(),
            queued: 0,
            compacting: None,
            evicted: 0,
            evicted_reported: 0,
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
        self.record_n(address, now, 1)
    }

    /// Records `n` failures of `address` at `now` (a line that reports several attempts).
    /// More than maxretry at once change nothing: the count is capped there.
    pub fn record_n(&mut self, address: K, now: Instant, n: u32) -> Count {
        self.epoch.get_or_insert(now);
        let now = self.tick(now);
        self.expire_step(now, EXPIRE_STEP);
        // The lookup only when a new address could need room: one hash lookup per failure
        // fewer in the common case.
        if self.failures.len() >= self.max_tracked && !self.failures.contains_key(&address) {
            self.make_room(now);
        }
        let findtime = self.findtime_ticks;
        let times = self.failures.entry(address).or_default();
        times.retain(|&t| now.saturating_sub(t) < findtime);
        for _ in 0..n.clamp(1, self.maxretry) {
            times.push(now);
        }
        let count = times.len();
        if count >= self.maxretry as usize {
            self.failures.remove(&address);
            return Count::Reached(count as u32);
        }
        self.enqueue(count - 1, address, now);
        // Amortised: the queues never hold much more than one entry per tracked address.
        if self.compacting.is_none() && self.queued > 2 * self.failures.len() + 1024 {
            self.compacting = Some(0);
        }
        self.compact_step(COMPACT_STEP);
        Count::Below(count as u32)
    }

    /// Keeps the map below the cap before a new address is added.
    fn make_room(&mut self, now: u32) {
        // A sweep is O(tracked): at most one per second at the cap, or a flood would sweep
        // on every new address.
        if now.saturating_sub(self.last_sweep) >= SWEEP_AT_CAP_TICKS {
            self.sweep_ticks(now);
        }
        while self.failures.len() >= self.max_tracked {
            let Some(victim) = self.least_progress() else {
                break;
            };
            if let Some(times) = self.failures.remove(&victim) {
                let findtime = self.findtime_ticks;
                if times.iter().any(|&t| now.saturating_sub(t) < findtime) {
                    self.evicted += 1;
                }
            }
        }
    }

    /// Takes the address with the fewest failures that was queued first at that count.
    fn least_progress(&mut self) -> Option<K> {
        for (level, queue) in self.by_progress.iter_mut().enumerate() {
            while let Some(entry) = queue.pop_front() {
                self.queued -= 1;
                if entry.is_current(level, &self.failures) {
                    return Some(entry.key);
                }
            }
        }
        None
    }

    /// Takes back the last `n` failures of `address` (a successful login forgives its own
    /// connection's failures).
    pub fn forgive(&mut self, address: K, n: u32) {
        let Some(times) = self.failures.get_mut(&address) else {
            return;
        };
        let keep = times.len().saturating_sub(n as usize);
        times.truncate(keep);
        match times.last().copied() {
            None => {
                self.failures.remove(&address);
            }
            // Queued again at its new count, so eviction by least progress still finds it.
            Some(at) => {
                let level = times.len() - 1;
                self.enqueue(level, address, at);
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

    /// Addresses evicted at the cap so far while they still had failures within findtime
    /// (counts an attacker could have lost).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Evictions since the last call (for a counter that must not go back on reload).
    pub fn take_new_evictions(&mut self) -> u64 {
        let new = self.evicted - self.evicted_reported;
        self.evicted_reported = self.evicted;
        new
    }

    /// Forgets `address` (it was banned or unbanned by hand).
    pub fn forget(&mut self, address: K) {
        self.failures.remove(&address);
    }

    /// Drops addresses whose failures all fell out of the window (found from the front of
    /// the queues: the work grows with what left, not with what is tracked), and gives back
    /// the map's room when it holds a quarter of what it could.
    pub fn sweep(&mut self, now: Instant) {
        let now = self.tick(now);
        self.expire_step(now, usize::MAX);
        if self.failures.capacity() > 4 * self.failures.len() + 1024 {
            self.failures.shrink_to(self.failures.len() * 2);
        }
    }

    /// Drops up to `budget` entries, from the front of each queue, whose failure left the
    /// window; an address whose latest failure that was (its current entry) goes with its
    /// entry. Each queue is in time order, so its front holds what left first (an address
    /// queued again by `forgive`, with an older time, waits behind newer entries and goes
    /// later).
    fn expire_step(&mut self, now: u32, mut budget: usize) {
        let findtime = self.findtime_ticks;
        for (level, queue) in self.by_progress.iter_mut().enumerate() {
            while budget > 0 {
                match queue.front() {
                    Some(entry) if now.saturating_sub(entry.at) >= findtime => {}
                    _ => break,
                }
                let Some(entry) = queue.pop_front() else {
                    break;
                };
                budget -= 1;
                self.queued -= 1;
                if entry.is_current(level, &self.failures) {
                    self.failures.remove(&entry.key);
                }
            }
        }
    }

    fn sweep_ticks(&mut self, now: u32) {
        let findtime = self.findtime_ticks;
        self.failures.retain(|_, times| {
            times
                .last()
                .is_some_and(|&t| now.saturating_sub(t) < findtime)
        });
        self.failures.shrink_to(self.failures.len() * 2);
        // The queues' entries of the addresses dropped go in a pass, spread over the next
        // failures.
        self.compacting = Some(0);
        self.last_sweep = now;
    }

    /// Queues `key` at count `level + 1` from tick `at`.
    fn enqueue(&mut self, level: usize, key: K, at: u32) {
        if self.by_progress.len() <= level {
            self.by_progress.resize_with(level + 1, Level::default);
        }
        self.by_progress[level].queue.push_back(Queued { key, at });
        self.queued += 1;
    }

    /// Checks up to `budget` entries of the compaction pass, if one runs: entries that no
    /// longer describe their address are dropped.
    fn compact_step(&mut self, mut budget: usize) {
        while let Some(level) = self.compacting {
            let Some(queue) = self.by_progress.get_mut(level) else {
                self.compacting = None;
                return;
            };
            while budget > 0 {
                let Some(entry) = queue.queue.pop_front() else {
                    break;
                };
                budget -= 1;
                if entry.is_current(level, &self.failures) {
                    queue.kept.push_back(entry);
                } else {
                    self.queued -= 1;
                }
            }
            if !queue.queue.is_empty() {
                return;
            }
            // This level is done: what was kept is the queue, in its order, and the old
            // queue's room goes.
            queue.queue = std::mem::take(&mut queue.kept);
            self.compacting = Some(level + 1);
        }
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
        // The new failure took the oldest few with it; the sweep takes the rest.
        assert_eq!(w.tracked(), 257 - EXPIRE_STEP);
        w.sweep(t0 + Duration::from_secs(20));
        assert_eq!(w.tracked(), 1);
        assert_eq!(w.queued, 1);
    }

    #[test]
    fn stale_addresses_leave_as_new_failures_arrive() {
        let t0 = Instant::now();
        let mut w: FailureWindow = FailureWindow::new(1000, Duration::from_secs(10), BIG);
        let old: Vec<IpAddr> = (0..100u8)
            .map(|i| IpAddr::from([198, 51, 100, i]))
            .collect();
        for a in &old {
            w.record(*a, t0);
        }
        // Still inside the window: nothing goes.
        w.record(ip("203.0.113.1"), t0 + Duration::from_secs(9));
        assert_eq!(w.tracked(), 101);
        // Past it, each new failure takes up to EXPIRE_STEP of them, oldest first.
        let later = t0 + Duration::from_secs(11);
        w.record(ip("203.0.113.2"), later);
        assert_eq!(w.tracked(), 102 - EXPIRE_STEP);
        assert_eq!(w.current(old[0], later), 0);
        assert_eq!(w.current(ip("203.0.113.1"), later), 1, "newer: kept");
        for _ in 0..(100 / EXPIRE_STEP) {
            w.record(ip("203.0.113.2"), later);
        }
        assert_eq!(w.tracked(), 2, "only the two recent addresses");
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
        // Stale entries go before live ones are evicted: the new failure's step makes room.
        let later = t0 + Duration::from_secs(700);
        w.record(ip("203.0.113.2"), later);
        assert_eq!(w.tracked(), 100 - EXPIRE_STEP + 1);
        assert_eq!(w.evicted(), 901);
        w.sweep(later);
        assert_eq!(w.tracked(), 1);
    }

    fn spoofed(i: u32) -> IpAddr {
        IpAddr::V6(std::net::Ipv6Addr::new(
            0x2001,
            0xdb8,
            1,
            0,
            0,
            0,
            (i >> 16) as u16,
            i as u16,
        ))
    }

    #[test]
    fn a_flood_of_one_shot_addresses_cannot_erase_an_attacker_near_maxretry() {
        let t0 = Instant::now();
        let mut w: FailureWindow = FailureWindow::new(5, Duration::from_secs(600), 10_000);
        let attacker = ip("198.51.100.66");
        let mut next = 0u32;
        // The attacker's failures arrive among spoofed one-shot addresses, then the bulk of
        // a 150,000-address flood passes. (While the attacker has one failure it looks like
        // any one-shot address: the rule protects progress, not a single failure.)
        let mut flood = |w: &mut FailureWindow, n: u32| {
            for _ in 0..n {
                w.record(
                    spoofed(next),
                    t0 + Duration::from_millis(u64::from(next / 100)),
                );
                next += 1;
                assert!(w.tracked() <= 10_000);
            }
        };
        for failure in 1..=4 {
            assert_eq!(w.record(attacker, t0), Count::Below(failure));
            flood(&mut w, 1_000);
        }
        flood(&mut w, 146_000);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(w.current(attacker, later), 4, "the attacker kept its count");
        assert_eq!(w.record(attacker, later), Count::Reached(5));
        // What the flood displaced were its own addresses, counted as evictions.
        assert_eq!(w.evicted(), 150_000 - 10_000 + 1);
    }

    #[test]
    fn more_progress_outranks_age_but_equals_go_oldest_first() {
        let t0 = Instant::now();
        let mut w: FailureWindow = FailureWindow::new(5, Duration::from_secs(600), 3);
        let (old, busy, young) = (ip("198.51.100.1"), ip("198.51.100.2"), ip("198.51.100.3"));
        w.record(old, t0);
        w.record(busy, t0);
        w.record(busy, t0);
        w.record(young, t0);
        // At the cap: the oldest of the two with one failure goes.
        w.record(ip("198.51.100.4"), t0);
        assert_eq!(w.current(old, t0), 0);
        assert_eq!(w.current(young, t0), 1);
        // Then the next one-failure address, never the one with two.
        w.record(ip("198.51.100.5"), t0);
        assert_eq!(w.current(young, t0), 0);
        assert_eq!(w.current(busy, t0), 2);
        w.record(ip("198.51.100.6"), t0);
        assert_eq!(w.current(busy, t0), 2);
    }

    #[test]
    fn the_eviction_queues_stay_bounded_for_a_slow_steady_attacker() {
        let t0 = Instant::now();
        let mut w: FailureWindow = FailureWindow::new(5, Duration::from_secs(10), 100);
        let slow = ip("198.51.100.9");
        // One failure every 6 s for a day: the count never passes 2, the address never leaves.
        for i in 0..14_400u64 {
            assert!(matches!(
                w.record(slow, t0 + Duration::from_secs(i * 6)),
                Count::Below(_)
            ));
        }
        // A compaction pass starts past 1,026 entries and checks 8 per failure: at most
        // 1026 / 7 more entries are queued before it ends.
        assert!(w.queued <= 1024 + 2 + 150, "{} queue entries", w.queued);
    }

    #[test]
    fn a_compaction_pass_drops_stale_entries_and_keeps_the_eviction_order() {
        let t0 = Instant::now();
        let addresses: Vec<IpAddr> = (1..=6).map(|i| ip(&format!("198.51.100.{i}"))).collect();
        let window = || {
            let mut w: FailureWindow = FailureWindow::new(5, Duration::from_secs(600), BIG);
            for a in &addresses {
                w.record(*a, t0);
            }
            // Every other address reaches two failures: its first entry is stale.
            for a in addresses.iter().step_by(2) {
                w.record(*a, t0 + Duration::from_secs(1));
            }
            assert_eq!((w.queued, w.compacting), (9, None));
            w.compacting = Some(0);
            w
        };
        let evictions = |w: &mut FailureWindow| {
            std::iter::from_fn(|| w.least_progress())
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
        };
        let order = [".2", ".4", ".6", ".1", ".3", ".5"].map(|s| format!("198.51.100{s}"));
        // Half-way through the first level (one stale entry dropped, one kept).
        let mut w = window();
        w.compact_step(2);
        assert_eq!((w.queued, w.compacting), (8, Some(0)));
        assert_eq!(evictions(&mut w), order);
        // The whole pass.
        let mut w = window();
        w.compact_step(100);
        assert_eq!((w.queued, w.compacting), (6, None));
        assert_eq!(evictions(&mut w), order);
    }

    #[test]
    fn forgiven_failures_are_taken_back() {
        let t0 = Instant::now();
        let mut w = FailureWindow::new(3, Duration::from_secs(600), 100);
        w.record(ip("198.51.100.1"), t0);
        w.record(ip("198.51.100.1"), t0);
        w.forgive(ip("198.51.100.1"), 1);
        assert_eq!(w.current(ip("198.51.100.1"), t0), 1);
        assert_eq!(w.record(ip("198.51.100.1"), t0), Count::Below(2));
        w.forgive(ip("198.51.100.1"), 5);
        assert_eq!(w.tracked(), 0);
    }

    #[test]
    fn several_attempts_at_once_count_each_up_to_maxretry() {
        let t0 = Instant::now();
        let mut w = FailureWindow::new(5, Duration::from_secs(600), 100);
        assert_eq!(w.record_n(ip("198.51.100.1"), t0, 3), Count::Below(3));
        // The offence says how many attempts there were: 6.
        assert_eq!(w.record_n(ip("198.51.100.1"), t0, 3), Count::Reached(6));
        // More than maxretry in one line bans at maxretry, not beyond.
        assert_eq!(w.record_n(ip("198.51.100.2"), t0, 50), Count::Reached(5));
    }
}
