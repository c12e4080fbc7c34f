//! The engine of `syslog2ban regex`: runs one jail's filter over log lines and reports, per
//! line, whether it matched, which address, and whether ignoreregex vetoed it.
//!
//! Owns the per-line result, the summary, and the rendering of the per-line output (`--json`
//! objects, `--show-matched`/`--show-missed` listings) of a chunk of lines. Pure over its
//! input: reading files, resolving filter names and writing to stdout are the CLI's job.
//!
//! A native jail filter is stateless, so a chunk of a file can be split at line boundaries
//! and the pieces checked on several threads ([`check_parallel`]); the reports are joined in
//! input order, so the output is the same as a sequential run. fail2ban filters keep
//! multi-line state and go line by line ([`check_fail2ban_line`]).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;

use crate::fail2ban::Fail2banMatcher;
use crate::jail::filter::{Filter, FilterMatch};
use crate::parse;

/// The result for one input line (the `--json` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineResult {
    /// 1-based line number.
    pub line: usize,
    /// A failregex matched and was not ignored.
    pub matched: bool,
    /// The captured address of a match.
    pub host: Option<IpAddr>,
    /// The `user` capture of a match.
    pub user: Option<String>,
    /// A failregex matched but ignoreregex vetoed it.
    pub ignored: bool,
    /// Which failregex matched (0-based), for matches and ignored lines.
    #[serde(skip)]
    pub failregex: Option<usize>,
}

/// The result for one input line under a fail2ban filter: the same JSON object, but the host
/// is text, because fail2ban filters may capture a host name or a failure id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fail2banLineResult {
    /// 1-based line number.
    pub line: usize,
    /// A failregex matched and was neither ignored nor a `<F-NOFAIL>` helper.
    pub matched: bool,
    /// The captured host (address, name or failure id).
    pub host: Option<String>,
    /// The `user` capture.
    pub user: Option<String>,
    /// A failregex matched but ignoreregex vetoed it.
    pub ignored: bool,
    /// Which failregex matched (0-based).
    #[serde(skip)]
    pub failregex: Option<usize>,
}

/// Checks one line of a log file with a fail2ban filter. Comment (`#`) and blank lines never
/// match and do not reach the filter (so they cannot disturb its multi-line state).
pub fn check_fail2ban_line(
    matcher: &mut Fail2banMatcher,
    number: usize,
    line: &str,
) -> Fail2banLineResult {
    let mut result = Fail2banLineResult {
        line: number,
        matched: false,
        host: None,
        user: None,
        ignored: false,
        failregex: None,
    };
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
    let mut result = LineResult {
        line: number,
        matched: false,
        host: None,
        user: None,
        ignored: false,
        failregex: None,
    };
    if line.trim_start().starts_with('#') {
        return result;
    }
    let Ok(record) = parse::parse_line_ref(line, now) else {
        return result;
    };
    match filter.check(record.message) {
        FilterMatch::None => {}
        FilterMatch::Ignored { failregex } => {
            result.ignored = true;
            result.failregex = Some(failregex);
        }
        FilterMatch::Failure {
            host,
            user,
            failregex,
        } => {
            result.matched = true;
            result.host = Some(host);
            result.user = user;
            result.failregex = Some(failregex);
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

impl From<&LineResult> for Verdict {
    fn from(r: &LineResult) -> Self {
        Verdict {
            matched: r.matched,
            ignored: r.ignored,
            failregex: r.failregex,
        }
    }
}

impl From<&Fail2banLineResult> for Verdict {
    fn from(r: &Fail2banLineResult) -> Self {
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
    #[error("line {line}: cannot write the JSON result: {source}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// serde_json's explanation.
        source: serde_json::Error,
    },
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

/// Splits a chunk into at most `parts` pieces of about equal size, each but the last ending
/// with `\n`, so that the lines of the pieces, in order, are the lines of the chunk.
pub fn split_at_lines(chunk: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::with_capacity(parts);
    let mut rest = chunk;
    for remaining in (2..=parts.max(1)).rev() {
        let target = rest.len() / remaining;
        let Some(newline) = memchr::memchr(b'\n', &rest[target..]) else {
            break;
        };
        let (piece, tail) = rest.split_at(target + newline + 1);
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    pieces
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
        // Writing to a String cannot fail; the results are ignored for that reason.
        if listing.json {
            serde_json::to_writer(&mut report.json, &result).map_err(|source| {
                CheckError::Json {
                    line: number,
                    source,
                }
            })?;
            report.json.push(b'\n');
        } else if result.matched && listing.matched {
            let _ = writeln!(report.matched, "{number:>6} | {}", line.trim_end());
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

/// [`check_chunk`] on `threads` threads: the chunk is split at line boundaries and the reports
/// are joined in input order, so the result is the same as one sequential run.
pub fn check_parallel(
    filter: &Filter,
    chunk: &[u8],
    first_line: usize,
    now: DateTime<Utc>,
    listing: Listing,
    threads: usize,
) -> Result<ChunkReport, CheckError> {
    let pieces = split_at_lines(chunk, threads);
    // Each piece's first line number: the lines before it, each ending with '\n'.
    let mut firsts = Vec::with_capacity(pieces.len());
    let mut next = first_line;
    for piece in &pieces {
        firsts.push(next);
        next += memchr::memchr_iter(b'\n', piece).count();
    }
    let Some((head, tail)) = pieces.split_first() else {
        return Ok(ChunkReport::default());
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = tail
            .iter()
            .zip(&firsts[1..])
            .map(|(piece, &first)| {
                scope.spawn(move || check_chunk(filter, piece, first, now, listing))
            })
            .collect();
        // The calling thread takes the first piece instead of waiting idle.
        let mut report = check_chunk(filter, head, first_line, now, listing)?;
        for worker in workers {
            let part = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            report.append(part);
        }
        Ok(report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_input_lines() {
        let filter = Filter::compile(
            &[r"^Failed password for (?P<user>\S+) from <HOST> port \d+ ssh2$".into()],
            &[r"for monitor ".into()],
        )
        .unwrap();
        let now = Utc::now();
        let lines = [
            "# comment",
            "",
            "Nov 25 08:32:44 web1 sshd[1]: Failed password for root from 198.51.100.66 port 22 ssh2",
            "Nov 25 08:32:44 web1 sshd[1]: Failed password for monitor from 198.51.100.67 port 22 ssh2",
            "Nov 25 08:32:44 web1 cron[2]: something else",
            "<38>1 2026-11-25T08:32:44Z web1 sshd 1 - - Failed password for bob from 2001:db8::1 port 2 ssh2",
        ];
        let mut summary = Summary::default();
        let results: Vec<LineResult> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let r = check_line(&filter, i + 1, l, now);
                tally(&mut summary, (&r).into(), l, filter.failregex_count());
                r
            })
            .collect();
        assert_eq!(results[2].host, Some("198.51.100.66".parse().unwrap()));
        assert_eq!(results[2].user.as_deref(), Some("root"));
        assert!(results[3].ignored && !results[3].matched);
        assert!(!results[4].matched);
        assert_eq!(results[5].host, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(
            summary,
            Summary {
                lines: 6,
                matched: 2,
                ignored: 1,
                missed: 1,
                per_regex: vec![2]
            }
        );
        let json = serde_json::to_string(&results[2]).unwrap();
        assert_eq!(
            json,
            r#"{"line":3,"matched":true,"host":"198.51.100.66","user":"root","ignored":false}"#
        );
    }

    #[test]
    fn lines_like_bufread_split() {
        let split = |text: &[u8]| -> Vec<Vec<u8>> {
            std::io::BufRead::split(text, b'\n')
                .map(|l| l.unwrap())
                .collect()
        };
        for text in [
            &b""[..],
            b"\n",
            b"\n\n",
            b"a",
            b"a\n",
            b"a\nb",
            b"a\n\nb\n",
            b"a\r\nb\r\n",
            b"\na\n\n\n",
        ] {
            let ours: Vec<Vec<u8>> = lines(text).map(<[u8]>::to_vec).collect();
            assert_eq!(ours, split(text), "{text:?}");
        }
    }

    #[test]
    fn split_at_lines_keeps_every_line_whole_and_in_order() {
        let text = b"one\ntwo\n\nthree is longer\nfour\nfive";
        for parts in 0..8 {
            for len in 0..=text.len() {
                let chunk = &text[..len];
                let pieces = split_at_lines(chunk, parts);
                assert!(!pieces.is_empty() && pieces.len() <= parts.max(1));
                assert_eq!(pieces.concat(), chunk, "parts {parts}, len {len}");
                for piece in &pieces[..pieces.len() - 1] {
                    assert!(piece.ends_with(b"\n"), "{piece:?}");
                }
                let joined: Vec<&[u8]> = pieces.iter().flat_map(|p| lines(p)).collect();
                let whole: Vec<&[u8]> = lines(chunk).collect();
                assert_eq!(joined, whole, "parts {parts}, len {len}");
            }
        }
        let halves = split_at_lines(b"aaaa\nbbbb\ncccc\ndddd\n", 2);
        assert_eq!(halves, [&b"aaaa\nbbbb\ncccc\n"[..], b"dddd\n"]);
    }

    #[test]
    fn parallel_reports_equal_the_sequential_one() {
        let filter = Filter::compile(
            &[
                r"^Failed password for (?P<user>\S+) from <HOST> port \d+ ssh2$".into(),
                r"^Invalid user (?P<user>\S*) from <HOST>$".into(),
            ],
            &[r"for monitor ".into()],
        )
        .unwrap();
        let now = Utc::now();
        let mut text = Vec::new();
        for i in 0..500 {
            let line = match i % 7 {
                0 => format!("Nov 25 08:32:44 web1 sshd[1]: Failed password for u{i} from 198.51.100.{} port 22 ssh2\n", i % 250),
                1 => format!("Nov 25 08:32:44 web1 sshd[1]: Invalid user x{i} from 2001:db8::{i:x}\n"),
                2 => "Nov 25 08:32:44 web1 sshd[1]: Failed password for monitor from 198.51.100.1 port 22 ssh2\n".into(),
                3 => "# comment\n".into(),
                4 => "\n".into(),
                5 => "Nov 25 08:32:44 web1 cron[2]: caf\u{e9} \r\n".into(),
                _ => "Nov 25 08:32:44 web1 sshd[1]: bad \u{ff} byte\n".into(),
            };
            text.extend_from_slice(line.as_bytes());
            if i % 7 == 6 {
                // Invalid UTF-8 goes through the lossy conversion.
                text.pop();
                text.extend_from_slice(b"\xff\n");
            }
        }
        text.extend_from_slice(b"Nov 25 08:32:44 web1 sshd[1]: Invalid user  from 198.51.100.9");
        for listing in [
            Listing::default(),
            Listing {
                json: true,
                ..Listing::default()
            },
            Listing {
                json: false,
                matched: true,
                missed: true,
            },
        ] {
            let one = check_chunk(&filter, &text, 10, now, listing).unwrap();
            for threads in 1..5 {
                let many = check_parallel(&filter, &text, 10, now, listing, threads).unwrap();
                assert_eq!(many, one, "{threads} threads, {listing:?}");
            }
            // Two halves appended give the whole.
            let halves = split_at_lines(&text, 2);
            let mut joined = check_chunk(&filter, halves[0], 10, now, listing).unwrap();
            let first = 10 + lines(halves[0]).count();
            joined.append(check_chunk(&filter, halves[1], first, now, listing).unwrap());
            assert_eq!(joined, one);
            assert_eq!(one.summary.lines, 501);
        }
        let empty = check_parallel(&filter, b"", 1, now, Listing::default(), 2).unwrap();
        assert_eq!(empty, ChunkReport::default());
    }

    #[test]
    fn merge_adds_counts_and_tolerates_empty_parts() {
        let mut a = Summary {
            lines: 3,
            matched: 1,
            ignored: 1,
            missed: 1,
            per_regex: vec![1, 0],
        };
        a.merge(&Summary::default());
        let b = Summary {
            lines: 2,
            matched: 2,
            ignored: 0,
            missed: 0,
            per_regex: vec![0, 2],
        };
        let mut empty = Summary::default();
        empty.merge(&a);
        empty.merge(&b);
        assert_eq!(
            empty,
            Summary {
                lines: 5,
                matched: 3,
                ignored: 1,
                missed: 1,
                per_regex: vec![1, 2]
            }
        );
    }
}
