//! The matched lines of each address a jail is counting, so that a ban's notification can
//! show what the attacker did, not only the line that crossed maxretry.
//!
//! Kept only by jails with notifiers (the cost is a map entry and a few short strings per
//! counted address), capped per address, per line and in addresses, and dropped with the
//! address's window. Owns nothing else; counting is the window's.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Lines kept per address (the newest).
pub const LINES_PER_ADDRESS: usize = 20;
/// Longest line kept, in bytes (cut at a character boundary).
const LINE_CAP: usize = 1000;
/// Most addresses with lines; past it, a new address keeps only its last line.
const ADDRESS_CAP: usize = 100_000;

/// Lines per address.
#[derive(Debug, Default)]
pub struct MatchedLines {
    lines: HashMap<IpAddr, VecDeque<(Instant, Box<str>)>>,
}

fn capped(line: &str) -> Box<str> {
    let mut end = line.len().min(LINE_CAP);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line.split_at(end).0.into()
}

impl MatchedLines {
    /// Keeps `line` of `address`, seen at `now`.
    pub fn keep(&mut self, address: IpAddr, now: Instant, line: &str) {
        if self.lines.len() >= ADDRESS_CAP && !self.lines.contains_key(&address) {
            return;
        }
        let list = self.lines.entry(address).or_default();
        if list.len() == LINES_PER_ADDRESS {
            list.pop_front();
        }
        list.push_back((now, capped(line)));
    }

    /// The lines of `address` within `findtime` of `now`, oldest first, then `last`; the
    /// address's lines are forgotten.
    pub fn take(
        &mut self,
        address: IpAddr,
        now: Instant,
        findtime: Duration,
        last: &str,
    ) -> Vec<String> {
        let mut out: Vec<String> = self
            .lines
            .remove(&address)
            .unwrap_or_default()
            .into_iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= findtime)
            .map(|(_, line)| line.into())
            .collect();
        if out.len() == LINES_PER_ADDRESS {
            out.remove(0);
        }
        out.push(capped(last).into());
        out
    }

    /// Drops lines older than `findtime`.
    pub fn sweep(&mut self, now: Instant, findtime: Duration) {
        self.lines.retain(|_, list| {
            list.retain(|(at, _)| now.saturating_duration_since(*at) <= findtime);
            !list.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offence_gets_its_recent_lines_in_order_capped() {
        let mut lines = MatchedLines::default();
        let t0 = Instant::now();
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let b: IpAddr = "198.51.100.8".parse().unwrap();
        lines.keep(a, t0, "old");
        let later = t0 + Duration::from_secs(700);
        lines.keep(a, later, "one");
        lines.keep(b, later, "other");
        lines.keep(a, later, &"é".repeat(800));
        let got = lines.take(a, later, Duration::from_secs(600), "last");
        assert_eq!(got.len(), 3, "the line older than findtime is gone");
        assert_eq!((got[0].as_str(), got[2].as_str()), ("one", "last"));
        assert_eq!(got[1].len(), 1000);
        assert_eq!(lines.take(a, later, Duration::from_secs(600), "x"), ["x"]);
        for i in 0..30 {
            lines.keep(b, later, &i.to_string());
        }
        let got = lines.take(b, later, Duration::from_secs(600), "last");
        assert_eq!(got.len(), LINES_PER_ADDRESS);
        assert_eq!((got[0].as_str(), got[19].as_str()), ("11", "last"));
        lines.keep(a, t0, "stale");
        lines.sweep(later, Duration::from_secs(600));
        assert!(lines.lines.is_empty());
    }
}
