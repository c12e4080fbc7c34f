//! Log throttling: a warning that a peer can cause (a failed handshake, an accept error, a
//! message that hit a bug) is written at most a few times per interval, with a count of what
//! was held back, so a flood costs counters, not gigabytes of log.
//!
//! Owns only the decision "write this line now?"; callers still count every event in their
//! metrics. It must not log by itself or know about any stage.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Allows `burst` events per `interval`; the rest are held back and counted.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    burst: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window_start: Option<Instant>,
    written: u32,
    held_back: u64,
}

/// The answer for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write it; `held_back` events were dropped since the last line written.
    Write {
        /// Events not written since the last written one.
        held_back: u64,
    },
    /// Do not write it (it is counted in the next `Write`).
    HoldBack,
}

impl Throttle {
    /// At most `burst` lines per `interval`.
    pub const fn new(burst: u32, interval: Duration) -> Self {
        Throttle {
            interval,
            burst,
            state: Mutex::new(State {
                window_start: None,
                written: 0,
                held_back: 0,
            }),
        }
    }

    /// Whether to write the line for an event happening now.
    pub fn check(&self) -> Decision {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Decision {
        // Only counters change under the lock: a panic cannot leave it inconsistent.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let expired = state
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.interval);
        if expired {
            state.window_start = Some(now);
            state.written = 0;
        }
        if state.written < self.burst {
            state.written += 1;
            Decision::Write {
                held_back: std::mem::take(&mut state.held_back),
            }
        } else {
            state.held_back += 1;
            Decision::HoldBack
        }
    }
}

/// Logs with `tracing::warn!` unless the throttle holds the line back; a written line carries
/// `held_back`, the number of similar lines dropped before it.
#[macro_export]
macro_rules! warn_throttled {
    ($throttle:expr, $($arg:tt)+) => {
        if let $crate::throttle::Decision::Write { held_back } = $throttle.check() {
            tracing::warn!(held_back, $($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_written_then_held_back_until_the_interval_ends() {
        let throttle = Throttle::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(matches!(throttle.check_at(t0), Decision::Write { .. }));
        }
        for i in 0..100 {
            assert_eq!(
                throttle.check_at(t0 + Duration::from_millis(i)),
                Decision::HoldBack
            );
        }
        assert_eq!(
            throttle.check_at(t0 + Duration::from_secs(10)),
            Decision::Write { held_back: 100 }
        );
        assert_eq!(
            throttle.check_at(t0 + Duration::from_secs(10)),
            Decision::Write { held_back: 0 }
        );
    }
}
