//! RFC 3164 (BSD syslog) and the classic syslog file line, as real senders write them:
//! with or without host, with RFC 3339 or BSD timestamps (fractional seconds allowed), with or
//! without `[pid]`, and rsyslog's colon-less tags.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};

use super::{clean_message, LogRecordRef};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses what follows `<PRI>` (or a whole file line when `priority` is None). Never fails:
/// whatever cannot be recognised stays in the message, with an empty program.
pub(super) fn parse(priority: Option<u8>, rest: &str, now: DateTime<Utc>) -> LogRecordRef<'_> {
    let (timestamp, rest) = match bsd_timestamp(rest, now) {
        Some((ts, rest)) => (Some(ts), rest),
        None => match rfc3339_timestamp(rest) {
            Some((ts, rest)) => (Some(ts), rest),
            None => (None, rest),
        },
    };
    let rest = rest.trim_start_matches(' ');
    let (first, after_first) = split_word(rest);
    // Host-less form (glibc to /dev/log, journald's syslog socket): the first word is the tag.
    if let Some((program, pid)) = tag(first, true) {
        return record(priority, timestamp, None, program, pid, after_first);
    }
    // `[sshd]:` / `[sshd]` with no host: some relays and appliances bracket the tag.
    if let Some((program, None)) = first
        .strip_prefix('[')
        .and_then(|w| w.strip_suffix(':').unwrap_or(w).strip_suffix(']'))
        .and_then(|inner| tag(inner, false))
    {
        return record(priority, timestamp, None, program, None, after_first);
    }
    let host = (!first.is_empty()).then_some(first);
    let (second, after_second) = split_word(after_first);
    if let Some((program, pid)) = tag(second, true) {
        return record(priority, timestamp, host, program, pid, after_second);
    }
    // rsyslog writes colon-less tags (`vm sudo multi line`): accept a plain program word.
    if let Some((program, pid)) = tag(second, false) {
        return record(priority, timestamp, host, program, pid, after_second);
    }
    record(priority, timestamp, host, "", None, after_first)
}

fn record<'a>(
    priority: Option<u8>,
    timestamp: Option<DateTime<FixedOffset>>,
    host: Option<&'a str>,
    program: &'a str,
    pid: Option<u32>,
    message: &'a str,
) -> LogRecordRef<'a> {
    LogRecordRef {
        priority,
        timestamp,
        host,
        program,
        pid,
        message: clean_message(message),
    }
}

fn split_word(text: &str) -> (&str, &str) {
    // Words here are short (host, tag): a plain byte loop beats a memchr call. The space is
    // ASCII, so both halves start on a character boundary.
    match text.bytes().position(|b| b == b' ') {
        Some(i) => match (text.get(..i), text.get(i + 1..)) {
            (Some(word), Some(rest)) => (word, rest),
            _ => (text, ""),
        },
        None => (text, ""),
    }
}

/// `prog[123]:`, `prog:`, and (when `need_colon` is false) `prog[123]` or `prog`.
fn tag(word: &str, need_colon: bool) -> Option<(&str, Option<u32>)> {
    let (word, had_colon) = match word.strip_suffix(':') {
        Some(w) => (w, true),
        None => (word, false),
    };
    if need_colon && !had_colon {
        return None;
    }
    let (program, pid) = match word.strip_suffix(']').and_then(|w| w.split_once('[')) {
        Some((program, pid)) => (program, pid.parse().ok()),
        None => (word, None),
    };
    let valid = !program.is_empty()
        && program.len() <= 64
        && program.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b'@' | b'+')
        });
    // A bare word is a program only with a colon or a pid; otherwise it is too ambiguous to
    // take from a host-less message (see the `need_colon` callers).
    valid.then_some((program, pid))
}

/// `Nov 25 08:32:44`, `Nov  5 08:32:44`, with optional fractional seconds and optional year.
fn bsd_timestamp(text: &str, now: DateTime<Utc>) -> Option<(DateTime<FixedOffset>, &str)> {
    let month = MONTHS.iter().position(|m| text.starts_with(m))? as u32 + 1;
    let rest = text.get(3..)?.strip_prefix(' ')?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let (day, rest) = leading_number(rest, 1..=2)?;
    let rest = rest.strip_prefix(' ')?;
    let (hour, rest) = leading_number(rest, 2..=2)?;
    let (minute, rest) = leading_number(rest.strip_prefix(':')?, 2..=2)?;
    let (second, mut rest) = leading_number(rest.strip_prefix(':')?, 2..=2)?;
    let mut micros = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        // Microseconds from the first six digits, right-padded with zeros.
        micros = frac
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(6)
            .enumerate()
            .map(|(i, b)| if i < digits { u32::from(b - b'0') } else { 0 })
            .fold(0, |acc, d| acc * 10 + d);
        rest = frac.get(digits..)?;
    }
    // Some senders append the year: `Nov 25 08:32:44 2026 host ...`.
    let mut year = None;
    if let Some((y, after)) = rest
        .strip_prefix(' ')
        .and_then(|r| leading_number(r, 4..=4))
        .filter(|(_, after)| after.starts_with(' '))
    {
        year = i32::try_from(y).ok();
        rest = after;
    }
    let year = year.unwrap_or_else(|| infer_year(month, now));
    let naive = NaiveDate::from_ymd_opt(year, month, day)?
        .and_hms_micro_opt(hour, minute, second, micros)?;
    let ts = Utc.from_utc_datetime(&naive).fixed_offset();
    Some((ts, rest))
}

/// The run of ASCII digits `text` starts with, when its length is in `len`, and what follows.
fn leading_number(text: &str, len: std::ops::RangeInclusive<usize>) -> Option<(u32, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if !len.contains(&digits) {
        return None;
    }
    let (number, rest) = text.split_at_checked(digits)?;
    Some((number.parse().ok()?, rest))
}

/// RFC 3164 has no year: a December message read in January belongs to last year.
fn infer_year(month: u32, now: DateTime<Utc>) -> i32 {
    if month > now.month() + 1 {
        now.year() - 1
    } else {
        now.year()
    }
}

/// `2026-11-25T08:35:56.497297+00:00` (rsyslog's high-precision forward format).
fn rfc3339_timestamp(text: &str) -> Option<(DateTime<FixedOffset>, &str)> {
    let end = text.find(' ').unwrap_or(text.len());
    let (word, rest) = text.split_at_checked(end)?;
    let bytes = word.as_bytes();
    if bytes.len() < 19 || bytes[4] != b'-' || bytes[10] != b'T' {
        return None;
    }
    let ts = DateTime::parse_from_rfc3339(word).ok()?;
    Some((ts, rest))
}
