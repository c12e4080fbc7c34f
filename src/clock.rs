//! The daemon's clock. Every timer and deadline of the pipeline and the ban manager reads the
//! time here, and this reads tokio's clock, so a test that pauses tokio's time
//! (`tokio::time::pause`, `advance`) drives windows, bans and expiry without waiting.
//!
//! A leaf: it knows nothing of any stage. Outside a paused test it is the system's clock.

use std::time::{Instant, SystemTime};

/// Monotonic now, as tokio's timers see it.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Wall-clock now, moved by as much as paused test time ran ahead of (or behind) real time,
/// so that what is stored agrees with the monotonic deadlines.
pub fn wall_now() -> SystemTime {
    let real = Instant::now();
    let wall = SystemTime::now();
    let tokio = now();
    if tokio >= real {
        wall + (tokio - real)
    } else {
        wall - (real - tokio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn paused_time_moves_both_clocks() {
        let (instant, wall) = (now(), wall_now());
        tokio::time::advance(Duration::from_secs(3600)).await;
        let moved = now() - instant;
        assert!(moved >= Duration::from_secs(3600), "{moved:?}");
        let wall_moved = wall_now().duration_since(wall).unwrap();
        // It follows the paused clock, not real time (give or take the sampling).
        let hour = Duration::from_secs(3600);
        let slack = Duration::from_millis(5);
        assert!(
            wall_moved > hour - slack && wall_moved < hour + slack,
            "{wall_moved:?}"
        );
    }

    #[test]
    fn outside_a_runtime_it_is_the_system_clock() {
        let before = SystemTime::now();
        let wall = wall_now();
        let after = SystemTime::now();
        assert!(
            before <= wall + Duration::from_millis(1) && wall <= after + Duration::from_millis(1)
        );
    }
}
