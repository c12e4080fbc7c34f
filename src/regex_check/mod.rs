//! The engine of `syslog2ban regex`: runs one jail's filter over log lines and reports, per
//! line, whether it matched, which address, and whether ignoreregex vetoed it.
//!
//! Owns the per-line result, the summary, and the rendering of the per-line output (`--json`
//! objects, `--show-matched`/`--show-missed` listings). Opening files, resolving filter names
//! and printing the summary are the CLI's job.
//!
//! A native jail filter is stateless, so [`check_reader`] cuts its input into pieces of whole
//! lines and checks them on several threads; the reports are joined in input order, so the
//! output is the same as a sequential run. It reads and writes only through the reader and
//! writer it is given. fail2ban filters keep multi-line state and go line by line
//! ([`check_fail2ban_line`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::sync::{mpsc, Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;

use crate::fail2ban::Fail2banMatcher;
use crate::jail::filter::{Filter, FilterMatch};
use crate::parse;

/// The result for one input line (the `--json` object). The host is an address for native
/// filters, and text under a fail2ban filter ([`Fail2banLineResult`]), which may capture a
/// host name or a failure id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineResult<Host = IpAddr> {
    /// 1-based line number.
    pub line: usize,
    /// A failregex matched and was not ignored (nor, for fail2ban, a `<F-NOFAIL>` helper).
    pub matched: bool,
    /// The captured host of a match.
    pub host: Option<Host>,
    /// The `user` capture of a match.
    pub user: Option<String>,
    /// Attempts the line counts for (a pattern's `count` group); shown only when not 1.
    #[serde(skip_serializing_if = "is_one")]
    pub count: u32,
    /// A failregex matched but ignoreregex vetoed it.
    pub ignored: bool,
    /// Which failregex matched (0-based), for matches and ignored lines.
    #[serde(skip)]
    pub failregex: Option<usize>,
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// The result for one input line under a fail2ban filter.
pub type Fail2banLineResult = LineResult<String>;

impl<Host: std::fmt::Display> LineResult<Host> {
    /// One `--show-matched` line: number, what was captured (as fail2ban-regex shows it), line.
    pub fn matched_listing(&self, line: &str) -> String {
        let host = self
            .host
            .as_ref()
            .map_or_else(|| "-".to_string(), ToString::to_string);
        let user = self
            .user
            .as_deref()
            .map(|u| format!(" user={u}"))
            .unwrap_or_default();
        format!(
            "{:>6} | host={host}{user} | {}\n",
            self.line,
            line.trim_end()
        )
    }
}

impl<Host> LineResult<Host> {
    /// Line `number` before it is checked: no match.
    fn unmatched(number: usize) -> Self {
        LineResult {
            line: number,
            matched: false,
            host: None,
            user: None,
            count: 1,
            ignored: false,
            failregex: None,
        }
    }
}

/// Checks one line of a log file with a fail2ban filter. Comment (`#`) and blank lines never
/// match and do not reach the filter (so they cannot disturb its multi-line state).
pub fn check_fail2ban_line(
    matcher: &mut Fail2banMatcher,
    number: usize,
    line: &str,
) -> Fail2banLineResult {
    let mut result = Fail2banLineResult::unmatched(number);
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return result;
    }
    let out = matcher.file_line(line);
    result.matched = out.matched;
    result.host = out.host;
    result.user = out.user;
    result.ignored = out.ignored;
    result.failregex = out.failregex;
    result
}

/// Counts over a whole input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Lines read (including comments and blanks).
    pub lines: usize,
    /// Lines that matched.
    pub matched: usize,
    /// Lines vetoed by ignoreregex.
    pub ignored: usize,
    /// Lines with content that did not match.
    pub missed: usize,
    /// Hits per failregex.
    pub per_regex: Vec<usize>,
}

/// Checks one line: a classic syslog file line, or a raw message with `<PRI>`. Comment
/// (`#`) and blank lines never match.
pub fn check_line(filter: &Filter, number: usize, line: &str, now: DateTime<Utc>) -> LineResult {
    let mut result = LineResult::unmatched(number);
    if line.trim_start().starts_with('#') {
        return result;
    }
    let Ok(record) = parse::parse_line_ref(line, now) else {
        return result;
    };
    match filter.check(record.message) {
        // A login that forgives its connection's failures is not a failure.
        FilterMatch::None | FilterMatch::Failure { gained: true, .. } => {}
        FilterMatch::Ignored { failregex } => {
            result.ignored = true;
            result.failregex = Some(failregex);
        }
        FilterMatch::Failure {
            host,
            user,
            failregex,
            count,
            ..
        } => {
            result.matched = true;
            result.host = Some(host);
            result.user = user;
            result.failregex = Some(failregex);
            result.count = count;
        }
    }
    result
}

/// What [`tally`] needs of a line result.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    /// The line matched.
    pub matched: bool,
    /// ignoreregex vetoed it.
    pub ignored: bool,
    /// Which failregex matched.
    pub failregex: Option<usize>,
}

impl<Host> From<&LineResult<Host>> for Verdict {
    fn from(r: &LineResult<Host>) -> Self {
        Verdict {
            matched: r.matched,
            ignored: r.ignored,
            failregex: r.failregex,
        }
    }
}

impl Summary {
    /// Adds the counts of a later part of the same input.
    pub fn merge(&mut self, other: &Summary) {
        self.lines += other.lines;
        self.matched += other.matched;
        self.ignored += other.ignored;
        self.missed += other.missed;
        // An empty part has no per-regex counts at all (see `tally`).
        if self.per_regex.len() < other.per_regex.len() {
            self.per_regex.resize(other.per_regex.len(), 0);
        }
        for (mine, theirs) in self.per_regex.iter_mut().zip(&other.per_regex) {
            *mine += theirs;
        }
    }
}

/// Adds one result to the summary.
pub fn tally(summary: &mut Summary, result: Verdict, line: &str, regex_count: usize) {
    summary.per_regex.resize(regex_count, 0);
    summary.lines += 1;
    if result.matched {
        summary.matched += 1;
    } else if result.ignored {
        summary.ignored += 1;
    } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
        summary.missed += 1;
    }
    if let (true, Some(i)) = (result.matched, result.failregex) {
        if let Some(hits) = summary.per_regex.get_mut(i) {
            *hits += 1;
        }
    }
}

/// A chunk's per-line output could not be rendered.
#[derive(Debug, Error)]
pub enum CheckError {
    /// serde_json refused a line result.
    #[error("line {line}: cannot write the JSON result")]
    Json {
        /// 1-based line number.
        line: usize,
        /// serde_json's explanation.
        source: serde_json::Error,
    },
    /// The input could not be read.
    #[error("read error")]
    Read(#[source] std::io::Error),
    /// The JSON output could not be written.
    #[error(transparent)]
    Write(std::io::Error),
}

/// Which per-line output to render besides the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct Listing {
    /// One JSON object per line (then no listings).
    pub json: bool,
    /// `--show-matched`.
    pub matched: bool,
    /// `--show-missed`.
    pub missed: bool,
}

/// The result of checking a run of consecutive lines: the counts and the rendered output, in
/// input order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChunkReport {
    /// Counts over the chunk.
    pub summary: Summary,
    /// One JSON object and newline per line (with `Listing::json`).
    pub json: Vec<u8>,
    /// `{number:>6} | {line}` and newline per matched line.
    pub matched: String,
    /// The same per missed line.
    pub missed: String,
}

impl ChunkReport {
    /// Appends the report of the chunk that follows this one.
    pub fn append(&mut self, next: ChunkReport) {
        self.summary.merge(&next.summary);
        self.json.extend_from_slice(&next.json);
        self.matched.push_str(&next.matched);
        self.missed.push_str(&next.missed);
    }
}

/// The lines of a chunk of a file: split at `\n`, with no empty line after a final `\n` (as
/// `BufRead::split` gives them). Each line keeps a `\r` of a CRLF file.
pub fn lines(chunk: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = chunk.strip_suffix(b"\n").unwrap_or(chunk);
    let mut rest = (!chunk.is_empty()).then_some(body);
    std::iter::from_fn(move || {
        let text = rest?;
        match memchr::memchr(b'\n', text) {
            Some(i) => {
                rest = Some(&text[i + 1..]);
                Some(&text[..i])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// Checks the lines of `chunk` with a native jail filter; `first_line` is the 1-based number
/// of its first line. Invalid UTF-8 is replaced (U+FFFD), as `String::from_utf8_lossy` does.
pub fn check_chunk(
    filter: &Filter,
    chunk: &[u8],
    first_line: usize,
    now: DateTime<Utc>,
    listing: Listing,
) -> Result<ChunkReport, CheckError> {
    let mut report = ChunkReport::default();
    let regex_count = filter.failregex_count();
    for (offset, bytes) in lines(chunk).enumerate() {
        let number = first_line + offset;
        // Nearly every line is valid UTF-8: the fast validator, lossy only on invalid input.
        let line = match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        };
        let result = check_line(filter, number, &line, now);
        tally(&mut report.summary, (&result).into(), &line, regex_count);
        if listing.json {
            serde_json::to_writer(&mut report.json, &result).map_err(|source| {
                CheckError::Json {
                    line: number,
                    source,
                }
            })?;
            report.json.push(b'\n');
        } else if result.matched && listing.matched {
            // Writing to a String cannot fail; hence the ignored results here and below.
            report.matched.push_str(&result.matched_listing(&line));
        } else if !result.matched
            && !result.ignored
            && listing.missed
            && !line.trim().is_empty()
            && !line.starts_with('#')
        {
            let _ = writeln!(report.missed, "{number:>6} | {}", line.trim_end());
        }
    }
    Ok(report)
}

/// How [`check_reader`] spreads its input over threads.
#[derive(Debug, Clone, Copy)]
pub struct Parallel {
    /// Worker threads.
    pub threads: usize,
    /// Bytes per piece of work, cut at a line end (a longer line makes a longer piece).
    pub piece: usize,
}

impl Parallel {
    /// One worker per core, pieces of 1 MiB: a few milliseconds of work each, so the
    /// channel hops cost nothing and the workers finish within a piece of each other.
    pub fn all_cores() -> Self {
        Parallel {
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            piece: 1 << 20,
        }
    }
}

/// Whole lines of the input, and where they are in it.
struct Piece {
    /// Position in the input, counted in pieces.
    index: usize,
    /// 1-based number of the first line.
    first_line: usize,
    data: Vec<u8>,
}

/// What a worker hands back: the piece (for its buffer) and its report.
type Done = (Piece, Result<ChunkReport, CheckError>);

/// Checks every line of `input` with a native jail filter, on `parallel.threads` workers,
/// and writes the JSON objects (with `Listing::json`) to `out` in input order. The returned
/// report has the summary and the listings of the whole input, its `json` is empty. A
/// reader thread cuts the input into pieces of whole lines; the calling thread puts the
/// workers' reports back in order. At most `4 * threads` pieces are read but not yet
/// merged, which bounds the memory on any input size.
pub fn check_reader(
    filter: &Filter,
    input: impl Read + Send,
    out: &mut impl Write,
    now: DateTime<Utc>,
    listing: Listing,
    parallel: Parallel,
) -> Result<ChunkReport, CheckError> {
    let threads = parallel.threads.max(1);
    let buffers = 4 * threads;
    let (free_tx, free_rx) = mpsc::sync_channel::<Vec<u8>>(buffers);
    let (work_tx, work_rx) = mpsc::sync_channel::<Piece>(threads);
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    // Shared by the workers only: when the last one quits, the reader's send fails instead of
    // blocking forever.
    let work_rx = Arc::new(Mutex::new(work_rx));
    std::thread::scope(|scope| {
        let reader = scope
            .spawn(move || read_pieces(input, parallel.piece.max(1), buffers, free_rx, work_tx));
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let work_rx = Arc::clone(&work_rx);
            scope.spawn(move || loop {
                // The lock is held only while taking the next piece.
                let piece = match work_rx.lock().map(|rx| rx.recv()) {
                    Ok(Ok(piece)) => piece,
                    // End of input, or another worker panicked (the scope re-raises that).
                    _ => break,
                };
                let report = check_chunk(filter, &piece.data, piece.first_line, now, listing);
                if done_tx.send((piece, report)).is_err() {
                    break; // The merger stopped on an error; it reports it.
                }
            });
        }
        // The merger ends when the last worker drops its sender.
        drop(done_tx);
        drop(work_rx);
        let merged = merge_in_order(done_rx, free_tx, out);
        let read = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        read.map_err(CheckError::Read)?;
        merged
    })
}

/// The reader thread: fills free buffers with whole lines and numbers them. Stops at the end
/// of the input or when the merger hangs up (it failed and reports why).
fn read_pieces(
    mut input: impl Read,
    piece: usize,
    buffers: usize,
    free: mpsc::Receiver<Vec<u8>>,
    work: mpsc::SyncSender<Piece>,
) -> std::io::Result<()> {
    let mut carry = Vec::new();
    // Zeroed once; each read lands here and only what it read is copied into its piece.
    let mut chunk = vec![0u8; piece];
    let mut first_line = 1;
    let mut index = 0;
    loop {
        let mut data = if index < buffers {
            Vec::with_capacity(piece)
        } else {
            match free.recv() {
                Ok(data) => data,
                Err(_) => return Ok(()),
            }
        };
        // The start of a line cut by the previous read.
        data.append(&mut carry);
        // One read at a time, and whatever whole lines it completed go out at once: a file
        // gives a piece per read, and a live pipe (`tail -f | ... -`) is answered as its lines
        // arrive instead of once a piece has filled.
        let at_end = loop {
            let filled = data.len();
            let read = loop {
                match input.read(&mut chunk) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    result => break result?,
                }
            };
            if read == 0 {
                break true;
            }
            data.extend_from_slice(&chunk[..read]);
            if let Some(newline) = memchr::memrchr(b'\n', &data[filled..]) {
                let end = filled + newline + 1;
                carry.extend_from_slice(&data[end..]);
                data.truncate(end);
                break false;
            }
            // No line ends in this read (a line longer than a read): read on.
        };
        if data.is_empty() {
            return Ok(());
        }
        // Every piece but the last ends with a newline: its lines are its newlines.
        let lines = memchr::memchr_iter(b'\n', &data).count();
        let next = Piece {
            index,
            first_line,
            data,
        };
        if work.send(next).is_err() || at_end {
            return Ok(());
        }
        first_line += lines;
        index += 1;
    }
}

/// The merger (calling thread): reports back in input order, JSON written as soon as its
/// turn comes, buffers recycled to the reader only once merged.
fn merge_in_order(
    done: mpsc::Receiver<Done>,
    free: mpsc::SyncSender<Vec<u8>>,
    out: &mut impl Write,
) -> Result<ChunkReport, CheckError> {
    let mut report = ChunkReport::default();
    let mut waiting = BTreeMap::new();
    let mut next = 0;
    for (piece, part) in done {
        waiting.insert(piece.index, (piece.data, part));
        while let Some((mut data, part)) = waiting.remove(&next) {
            let mut part = part?;
            if !part.json.is_empty() {
                out.write_all(&part.json).map_err(CheckError::Write)?;
                // A piece is a read's worth of lines: a live pipe sees its answers now.
                out.flush().map_err(CheckError::Write)?;
            }
            part.json = Vec::new();
            report.append(part);
            data.clear();
            // Fails only when the reader is done; then the buffer is simply dropped.
            let _ = free.try_send(data);
            next += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
