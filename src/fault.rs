//! Fault containment: a bug that one message reaches costs that message, never the worker
//! that processes every other sender's messages.
//!
//! Owns the panic boundary around per-message work and the panic hook that reports a caught
//! panic through the log (throttled, so a crafted flood cannot fill the disk). It holds no
//! state of any stage and decides nothing about messages: callers choose what to skip.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::metrics::Metrics;
use crate::throttle::{Decision, Throttle};

/// Panic reports written per minute; the rest are counted in the next report.
static PANIC_LOG: Throttle = Throttle::new(10, Duration::from_secs(60));

/// Runs `work` for one message. A panic inside it is counted as a message fault and gives
/// None; the caller drops that message and goes on. The closure's state is discarded with
/// the message (hence `AssertUnwindSafe`): callers pass only per-message scratch state or
/// state that stays valid whatever point a panic interrupts (counters, windows).
pub fn contain<T>(metrics: &Metrics, work: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(value) => Some(value),
        Err(_) => {
            // The hook has already logged where and why.
            Metrics::inc(&metrics.message_faults);
            None
        }
    }
}

/// The text a panic was raised with.
pub fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Reports panics through `tracing` (at most 10 a minute, with a count of those held back)
/// instead of the default hook's unthrottled stderr lines.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if let Decision::Write { held_back } = PANIC_LOG.check() {
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let thread = std::thread::current();
            tracing::error!(
                thread = thread.name().unwrap_or("?"),
                %location,
                held_back,
                "Bug: {}",
                panic_text(info.payload())
            );
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_costs_one_result_and_is_counted() {
        let metrics = Metrics::default();
        let mut done = Vec::new();
        for n in 0..5 {
            let result = contain(&metrics, || {
                if n == 2 {
                    // A reached bug: the slice a malformed message once hit.
                    let text = "h\u{e9}";
                    let index = text.len() - 1;
                    return text.get(index..).map(str::len).expect("inside a character");
                }
                n
            });
            done.extend(result);
        }
        assert_eq!(done, vec![0, 1, 3, 4]);
        assert_eq!(Metrics::get(&metrics.message_faults), 1);
    }
}
