//! Where the daemon's log lines go: stderr, one write per line, except inside [`gathered`],
//! where a thread's lines are kept and written together when it ends. The ban store logs
//! one line per ban once a commit is durable; in a ban storm that was a `write` per ban on
//! the store thread, which is what gathers them now (a commit's lines in one write).
//!
//! Owns only the bytes of formatted lines: the format and the filter are `main.rs`'s
//! (tracing-subscriber). A gathered line is never dropped: it is written when the gathering
//! ends, when the buffer reaches [`FLUSH_AT`], or when the thread unwinds through it.

use std::cell::RefCell;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Gathered bytes that are written at once without waiting for the end.
const FLUSH_AT: usize = 64 * 1024;

thread_local! {
    /// This thread's gathered lines, while it is inside [`gathered`].
    static GATHERED: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
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
}
