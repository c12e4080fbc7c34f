//! Ban length policy: the bantime a new ban gets, given the jail's settings and the address's
//! earlier bans. Pure arithmetic, no state.
//!
//! The formula (fail2ban's `bantime.increment`, documented in the README):
//!
//! ```text
//! n = earlier bans of the address still in the history (dbpurgeage), in this jail,
//!     or in every jail when overalljails = true
//! t = bantime * multipliers[min(n, len - 1)]          if multipliers is not empty
//! t = bantime * factor * 2^min(n, 20)                   otherwise
//! t = min(t, maxtime) + uniform random in [0, rndtime)
//! ```
//!
//! The first ban (n = 0) therefore lasts `bantime * factor` (or `bantime * multipliers[0]`).
//! A permanent bantime stays permanent.

use std::time::Duration;

use crate::config::{BanTime, Increment};

/// The bantime of a new ban after `earlier` previous bans; `jitter` is a number in [0, 1)
/// (the caller's random draw, so this stays deterministic under test).
pub fn grown_bantime(
    base: BanTime,
    increment: Option<&Increment>,
    earlier: usize,
    jitter: f64,
) -> BanTime {
    let (BanTime::For(base), Some(inc)) = (base, increment) else {
        return base;
    };
    let multiplier = if inc.multipliers.is_empty() {
        inc.factor * f64::from(1u32 << earlier.min(20))
    } else {
        inc.multipliers[earlier.min(inc.multipliers.len() - 1)]
    };
    let grown = base.as_secs_f64() * multiplier;
    let capped = grown.min(inc.maxtime.as_secs_f64());
    let extra = inc.rndtime.as_secs_f64() * jitter.clamp(0.0, 0.999_999);
    BanTime::For(Duration::from_secs_f64((capped + extra).max(0.001)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(factor: f64, multipliers: &[f64], maxtime_h: u64, rnd_s: u64) -> Increment {
        Increment {
            factor,
            multipliers: multipliers.to_vec(),
            maxtime: Duration::from_secs(maxtime_h * 3600),
            rndtime: Duration::from_secs(rnd_s),
            overalljails: false,
        }
    }

    fn secs(t: BanTime) -> u64 {
        match t {
            BanTime::For(d) => d.as_secs(),
            BanTime::Permanent => u64::MAX,
        }
    }

    const HOUR: BanTime = BanTime::For(Duration::from_secs(3600));

    #[test]
    fn doubling_formula_with_factor_and_maxtime() {
        let i = inc(1.0, &[], 24, 0);
        let got: Vec<u64> = (0..7)
            .map(|n| secs(grown_bantime(HOUR, Some(&i), n, 0.0)))
            .collect();
        // 1h, 2h, 4h, 8h, 16h, then capped at maxtime 24h.
        assert_eq!(got, vec![3600, 7200, 14400, 28800, 57600, 86400, 86400]);
        let i = inc(1.5, &[], 1000, 0);
        assert_eq!(secs(grown_bantime(HOUR, Some(&i), 2, 0.0)), 3600 * 6);
    }

    #[test]
    fn multipliers_replace_doubling_and_stick_at_the_last() {
        let i = inc(1.0, &[1.0, 5.0, 30.0], 10_000, 0);
        let got: Vec<u64> = (0..5)
            .map(|n| secs(grown_bantime(HOUR, Some(&i), n, 0.0)))
            .collect();
        assert_eq!(got, vec![3600, 18000, 108000, 108000, 108000]);
    }

    #[test]
    fn rndtime_adds_up_to_its_length_after_the_cap() {
        let i = inc(1.0, &[], 1, 600);
        assert_eq!(secs(grown_bantime(HOUR, Some(&i), 5, 0.5)), 3600 + 300);
        assert!(secs(grown_bantime(HOUR, Some(&i), 5, 0.999_999_9)) < 3600 + 600);
    }

    #[test]
    fn no_increment_or_permanent_is_unchanged() {
        assert_eq!(grown_bantime(HOUR, None, 9, 0.0), HOUR);
        let i = inc(1.0, &[], 1, 0);
        assert_eq!(
            grown_bantime(BanTime::Permanent, Some(&i), 3, 0.0),
            BanTime::Permanent
        );
    }
}
