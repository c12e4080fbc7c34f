//! Where the daemon's log lines go: stderr, one write per line, except inside [`gathered`],
//! where a thread's lines are kept and written together when it ends. The ban store logs
//! one line per ban once a commit is durable; in a ban storm that was a `write` per ban on
//! the store thread, which is what gathers them now (a commit's lines in one write).
//!
//! Also the lines' timestamps ([`LineTime`]): the same text as tracing-subscriber's, with the
//! date and time of day formatted once per second instead of once per line (a storm's store
//! thread writes a line per ban).
//!
//! Owns only the bytes of formatted lines and their timestamps: the rest of the format and
//! the filter are `main.rs`'s (tracing-subscriber). A gathered line is never dropped: it is
//! written when the gathering ends, when the buffer reaches [`FLUSH_AT`], or when the thread
//! unwinds through it.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::MakeWriter;

/// Gathered bytes that are written at once without waiting for the end.
const FLUSH_AT: usize = 64 * 1024;

thread_local! {
    /// This thread's gathered lines, while it is inside [`gathered`].
    static GATHERED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    /// The second this thread last wrote a timestamp in, and its text up to the fraction.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// The log's writer for tracing-subscriber: stderr, or this thread's gathering buffer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOutput;

/// One formatted line on its way out.
#[derive(Debug)]
pub struct LineWriter;

impl<'a> MakeWriter<'a> for LogOutput {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter
    }
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let kept = GATHERED.with_borrow_mut(|gathered| match gathered {
            Some(lines) => {
                lines.extend_from_slice(buf);
                if lines.len() >= FLUSH_AT {
                    write_out(lines);
                }
                true
            }
            None => false,
        });
        if kept {
            Ok(buf.len())
        } else {
            io::stderr().write(buf)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Writes `lines` to stderr in one go (a failed write is lost, as a line would be) and
/// empties them.
fn write_out(lines: &mut Vec<u8>) {
    if !lines.is_empty() {
        #[cfg(not(test))]
        let _ = io::stderr().lock().write_all(lines);
        #[cfg(test)]
        tests::WRITTEN.with_borrow_mut(|written| written.extend_from_slice(lines));
        lines.clear();
    }
}

/// Ends a gathering: its lines are written, also when `f` panics.
struct Gathering;

impl Drop for Gathering {
    fn drop(&mut self) {
        if let Some(mut lines) = GATHERED.with_borrow_mut(Option::take) {
            write_out(&mut lines);
        }
    }
}

/// Runs `f` with this thread's log lines gathered, then writes them with one write. Nested
/// calls gather into the outer one.
pub fn gathered<R>(f: impl FnOnce() -> R) -> R {
    let outer = GATHERED.with_borrow_mut(|gathered| {
        let outer = gathered.is_some();
        gathered.get_or_insert_with(Vec::new);
        outer
    });
    // Built only by the outermost call: a `Gathering` dropped ends the gathering.
    let _end = if outer { None } else { Some(Gathering) };
    f()
}

/// Timestamps as tracing-subscriber's `SystemTime` writes them (`2026-12-06T10:31:11.123456Z`,
/// UTC), with the part up to the second kept per thread until the second changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct LineTime;

impl FormatTime for LineTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = SystemTime::now();
        let Some((secs, micros)) = now
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| (d.as_secs(), d.subsec_micros()))
            .filter(|(secs, _)| *secs <= LAST_SECOND)
        else {
            // Before 1970 or after 9999: as tracing-subscriber writes it.
            return tracing_subscriber::fmt::time::SystemTime.format_time(w);
        };
        SECOND.with_borrow_mut(|(at, text)| {
            if *at != secs {
                *text = civil(secs).unwrap_or_default();
                *at = secs;
            }
            w.write_str(text)
        })?;
        let mut fraction = *b".000000Z";
        let mut rest = micros;
        for digit in fraction[1..7].iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        w.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
    }
}

/// 9999-12-31T23:59:59: the last second [`civil`] writes.
const LAST_SECOND: u64 = 253_402_300_799;

/// `YYYY-MM-DDTHH:MM:SS` for `secs` after 1970 (UTC), or None past the year 9999.
fn civil(secs: u64) -> Option<String> {
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    // Days counted from 0000-03-01, so that a leap day ends its year; 400-year eras of
    // 146,097 days.
    let from_march = days + 719_468;
    let era = from_march / 146_097;
    let of_era = from_march % 146_097;
    let year_of_era = (of_era - of_era / 1_460 + of_era / 36_524 - of_era / 146_096) / 365;
    let of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * of_year + 2) / 153;
    let day = of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year <= 9999).then(|| {
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            of_day / 3_600,
            of_day / 60 % 60,
            of_day % 60
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// What this thread's gatherings wrote (instead of stderr, in tests).
        pub(super) static WRITTEN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }

    /// What a gathering holds on this thread now.
    fn held() -> Option<Vec<u8>> {
        GATHERED.with_borrow(Clone::clone)
    }

    fn written() -> Vec<u8> {
        WRITTEN.with_borrow(Clone::clone)
    }

    #[test]
    fn lines_are_kept_until_the_gathering_ends_and_then_written() {
        gathered(|| {
            LineWriter.write_all(b"one\n").unwrap();
            gathered(|| LineWriter.write_all(b"two\n").unwrap());
            assert_eq!(
                held().as_deref(),
                Some(&b"one\ntwo\n"[..]),
                "nested: still held"
            );
            assert!(written().is_empty());
        });
        assert_eq!(held(), None);
        assert_eq!(written(), b"one\ntwo\n", "written at the end, in order");
    }

    #[test]
    fn a_large_gathering_is_written_on_the_way() {
        let line = [b'x'; 1000];
        let lines = FLUSH_AT / line.len() + 1;
        gathered(|| {
            for _ in 0..lines {
                LineWriter.write_all(&line).unwrap();
            }
            assert_eq!(written().len(), lines * line.len(), "at {FLUSH_AT} bytes");
            assert_eq!(held().map(|h| h.len()), Some(0));
        });
    }

    #[test]
    fn a_panic_inside_still_writes_what_was_gathered() {
        let result = std::panic::catch_unwind(|| {
            gathered(|| {
                LineWriter.write_all(b"before the panic\n").unwrap();
                panic!("inside");
            })
        });
        assert!(result.is_err());
        assert_eq!(held(), None);
        assert_eq!(written(), b"before the panic\n");
    }

    #[test]
    fn outside_a_gathering_nothing_is_held() {
        LineWriter.write_all(b"").unwrap();
        assert_eq!(held(), None);
    }
    #[test]
    fn dates_are_written_as_the_calendar_has_them() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_709_164_800, "2024-02-29T00:00:00"),
            (1_798_761_599, "2026-12-31T23:59:59"),
            (4_102_444_800, "2100-01-01T00:00:00"),
            (253_402_300_799, "9999-12-31T23:59:59"),
        ] {
            assert_eq!(civil(secs).as_deref(), Some(text), "{secs}");
        }
        assert_eq!(civil(LAST_SECOND + 1), None, "the year 10000");
    }

    #[test]
    fn a_timestamp_reads_as_tracing_subscribers_own() {
        let stamp = |time: &dyn FormatTime| {
            let mut text = String::new();
            time.format_time(&mut Writer::new(&mut text)).unwrap();
            text
        };
        // Taken a moment apart: they agree up to the second unless one fell in the next.
        let agreed = (0..5).any(|_| {
            let (ours, theirs) = (
                stamp(&LineTime),
                stamp(&tracing_subscriber::fmt::time::SystemTime),
            );
            ours.len() == theirs.len() && ours[..19] == theirs[..19]
        });
        assert!(
            agreed,
            "{} against {}",
            stamp(&LineTime),
            stamp(&tracing_subscriber::fmt::time::SystemTime)
        );
        let ours = stamp(&LineTime);
        assert_eq!(ours.len(), "2026-12-06T10:31:11.123456Z".len(), "{ours}");
        assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
        assert!(ours[20..26].bytes().all(|b| b.is_ascii_digit()), "{ours}");
    }
}
