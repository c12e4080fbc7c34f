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
    // Words here are short (host, tag): a plain byte loop beats a memchr call.
    match text.bytes().position(|b| b == b' ') {
        Some(i) => (&text[..i], &text[i + 1..]),
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
    let day_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if !(1..=2).contains(&day_len) {
        return None;
    }
    let day: u32 = rest[..day_len].parse().ok()?;
    let rest = rest[day_len..].strip_prefix(' ')?;
    let clock = rest.get(..8)?;
    let b = clock.as_bytes();
    if b[2] != b':' || b[5] != b':' {
        return None;
    }
    let hour: u32 = clock[..2].parse().ok()?;
    let minute: u32 = clock[3..5].parse().ok()?;
    let second: u32 = clock[6..8].parse().ok()?;
    let mut rest = &rest[8..];
    let mut micros = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let padded = format!("{:0<6}", &frac[..digits.min(6)]);
        micros = padded.parse().unwrap_or(0);
        rest = &frac[digits..];
    }
    // Some senders append the year: `Nov 25 08:32:44 2026 host ...`.
    let mut year = None;
    if rest.len() > 5
        && rest.as_bytes()[0] == b' '
        && rest[1..5].bytes().all(|c| c.is_ascii_digit())
        && rest.as_bytes()[5] == b' '
    {
        year = rest[1..5].parse().ok();
        rest = &rest[5..];
    }
    let year = year.unwrap_or_else(|| infer_year(month, now));
    let naive = NaiveDate::from_ymd_opt(year, month, day)?
        .and_hms_micro_opt(hour, minute, second, micros)?;
    let ts = Utc.from_utc_datetime(&naive).fixed_offset();
    Some((ts, rest))
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
    let word = &text[..end];
    if word.len() < 19 || word.as_bytes()[4] != b'-' || word.as_bytes()[10] != b'T' {
        return None;
    }
    let ts = DateTime::parse_from_rfc3339(word).ok()?;
    Some((ts, &text[end..]))
}
