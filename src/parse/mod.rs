//! Parsing: one syslog frame (RFC 3164 or RFC 5424) or one log-file line → `LogRecord`; the
//! Journal Export Format (`journal`) → entries → `LogRecord`.
//!
//! Owns the syslog header grammar and its real-world deviations. It is pure (no I/O, no
//! clock: the caller passes the receive time) and must not know about jails or routing.
//! RFC 5424 goes through `syslog_loose` with a hand-written fallback for its known failures;
//! RFC 3164 uses the hand-written parser below, because `syslog_loose` mistakes the program of
//! host-less local messages (`<38>Nov 25 08:30:01 su: msg`) for a host name, which would
//! break routing for everything that arrives over `/dev/log`.

// Everything here reads network input: a byte index inside a UTF-8 character would panic.
#![deny(clippy::string_slice)]

pub mod journal;
mod rfc3164;
mod rfc5424;

use chrono::{DateTime, FixedOffset, Utc};
use thiserror::Error;

/// A parsed message: who logged what, as claimed by the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Facility * 8 + severity, when a `<PRI>` was present.
    pub priority: Option<u8>,
    /// The time the message claims (informative; windows use the receive time).
    pub timestamp: Option<DateTime<FixedOffset>>,
    /// HOSTNAME as claimed by the sender (not verified).
    pub host: Option<String>,
    /// TAG / APP-NAME: the routing key. Empty when the message carries none.
    pub program: String,
    /// Process id, when numeric.
    pub pid: Option<u32>,
    /// The free-text message (MSG), without leading whitespace or BOM.
    pub message: String,
}

/// A parsed message that borrows its text from the input: what the parsers produce, so a
/// caller that only reads the record (`syslog2ban regex`) allocates nothing per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecordRef<'a> {
    /// Facility * 8 + severity, when a `<PRI>` was present.
    pub priority: Option<u8>,
    /// The time the message claims.
    pub timestamp: Option<DateTime<FixedOffset>>,
    /// HOSTNAME as claimed by the sender (not verified).
    pub host: Option<&'a str>,
    /// TAG / APP-NAME. Empty when the message carries none.
    pub program: &'a str,
    /// Process id, when numeric.
    pub pid: Option<u32>,
    /// The free-text message (MSG), without leading whitespace or BOM.
    pub message: &'a str,
}

impl LogRecordRef<'_> {
    /// The owned record.
    pub fn to_owned(&self) -> LogRecord {
        LogRecord {
            priority: self.priority,
            timestamp: self.timestamp,
            host: self.host.map(str::to_string),
            program: self.program.to_string(),
            pid: self.pid,
            message: self.message.to_string(),
        }
    }
}

/// Why a frame could not be parsed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but whitespace.
    #[error("empty message")]
    Empty,
    /// `<PRI>` missing or out of range.
    #[error("missing or invalid <PRI>")]
    BadPriority,
    /// An RFC 5424 header that even the fallback could not split.
    #[error("malformed RFC 5424 header")]
    Rfc5424,
}

/// Parses one syslog message as received from a socket (with `<PRI>`).
///
/// `now` resolves the missing year of RFC 3164 timestamps.
pub fn parse_syslog(frame: &[u8], now: DateTime<Utc>) -> Result<LogRecord, ParseError> {
    // Valid UTF-8 (nearly every frame) is checked by the fast validator; only invalid
    // frames pay for the lossy conversion.
    let text = match std::str::from_utf8(frame) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(frame),
    };
    parse_text(&text, now).map(|record| record.to_owned())
}

/// `parse_syslog` on text, borrowing from it.
fn parse_text(text: &str, now: DateTime<Utc>) -> Result<LogRecordRef<'_>, ParseError> {
    let text = text.trim_matches(|c: char| c == '\n' || c == '\r' || c == '\0' || c == ' ');
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    let (priority, rest) = split_priority(text).ok_or(ParseError::BadPriority)?;
    if let Some(after_version) = rest.strip_prefix("1 ") {
        return rfc5424::parse(text, priority, after_version).map(settle_host);
    }
    Ok(settle_host(rfc3164::parse(Some(priority), rest, now)))
}

/// What every syslog record's host goes through after its header is read.
fn settle_host(record: LogRecordRef<'_>) -> LogRecordRef<'_> {
    unwrap_doubled_host(printable_host(record))
}

/// Whether `name` (a host or collector name from the network) can be one: a name with a
/// control character (a line break, a terminal escape) cannot. Such names go into the log and
/// notifications, and a forged one must not carry its own lines into them.
pub fn printable_name(name: &str) -> bool {
    !name.chars().any(char::is_control)
}

/// A host name that is not [`printable_name`] is none: the host becomes a ban's origin. The
/// message then counts as from no named host.
fn printable_host(record: LogRecordRef<'_>) -> LogRecordRef<'_> {
    if record.host.is_some_and(|host| !printable_name(host)) {
        return LogRecordRef {
            host: None,
            ..record
        };
    }
    record
}

/// A daemon that writes its own host name into its `/dev/log` datagrams (nginx's
/// `syslog:server=unix:/dev/log` does) reaches us through rsyslog with that name taken for
/// its tag: HOST and program are the same word and the message starts with the real
/// `tag[pid]: `. That tag is the program. Only then: a program named like its host is left
/// alone when the message does not start with a tag.
fn unwrap_doubled_host(record: LogRecordRef<'_>) -> LogRecordRef<'_> {
    if record.host != Some(record.program) || record.program.is_empty() {
        return record;
    }
    let Some((tag, message)) = record.message.split_once(": ") else {
        return record;
    };
    let (name, pid) = match tag.split_once('[') {
        Some((name, rest)) => match rest.strip_suffix(']').map(str::parse::<u32>) {
            Some(Ok(pid)) => (name, Some(pid)),
            _ => return record,
        },
        None => (tag, record.pid),
    };
    let plausible = !name.is_empty()
        && name.len() <= 48
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'));
    if !plausible {
        return record;
    }
    LogRecordRef {
        program: name,
        pid,
        message,
        ..record
    }
}

/// Parses one line of a classic syslog file (`Nov 25 08:32:44 host prog[pid]: msg`), or a raw
/// syslog message with `<PRI>`: the input of `syslog2ban regex` and of the filter fixtures.
pub fn parse_line(line: &str, now: DateTime<Utc>) -> Result<LogRecord, ParseError> {
    parse_line_ref(line, now).map(|record| record.to_owned())
}

/// `parse_line`, borrowing the record's text from the line.
pub fn parse_line_ref(line: &str, now: DateTime<Utc>) -> Result<LogRecordRef<'_>, ParseError> {
    let trimmed = line.trim_end_matches(['\n', '\r']);
    if trimmed.starts_with('<') {
        // A &str is valid UTF-8: what parse_syslog does after its conversion.
        return parse_text(trimmed, now);
    }
    if trimmed.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(settle_host(rfc3164::parse(None, trimmed, now)))
}

/// `<38>rest` → (38, "rest").
fn split_priority(text: &str) -> Option<(u8, &str)> {
    let (digits, rest) = text.strip_prefix('<')?.split_once('>')?;
    if !(1..=3).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let priority: u8 = digits.parse().ok()?;
    (priority <= 191).then_some((priority, rest))
}

/// Message text without the leading spaces rsyslog keeps and without a UTF-8 BOM.
fn clean_message(msg: &str) -> &str {
    msg.trim_start_matches(' ').trim_start_matches('\u{feff}')
}

#[cfg(test)]
mod tests;
