//! RFC 5424 through `syslog_loose`, with a small splitter for the headers it rejects
//! (host ending in `::`, timestamps without offset, odd structured data).

use chrono::{DateTime, FixedOffset, NaiveDateTime};
use syslog_loose::{parse_message_with_year_exact, ProcId, Variant};

use super::{clean_message, LogRecordRef, ParseError};

/// `full` is the whole message (for syslog_loose); `after_version` follows `<PRI>1 `.
pub(super) fn parse<'a>(
    full: &'a str,
    priority: u8,
    after_version: &'a str,
) -> Result<LogRecordRef<'a>, ParseError> {
    // The year callback is never used for RFC 5424 timestamps; any value will do.
    match parse_message_with_year_exact(full, |_| 1970, Variant::RFC5424) {
        Ok(msg) => {
            let nil = |s: Option<&'a str>| s.filter(|v| *v != "-");
            Ok(LogRecordRef {
                priority: Some(priority),
                timestamp: msg.timestamp,
                host: nil(msg.hostname),
                program: nil(msg.appname).unwrap_or_default(),
                pid: match msg.procid {
                    Some(ProcId::PID(pid)) => u32::try_from(pid).ok(),
                    Some(ProcId::Name(name)) => name.parse().ok(),
                    None => None,
                },
                message: clean_message(msg.msg),
            })
        }
        Err(_) => fallback(priority, after_version),
    }
}

/// Splits the six header fields by spaces and skips structured data by hand.
fn fallback(priority: u8, text: &str) -> Result<LogRecordRef<'_>, ParseError> {
    let mut fields = text.splitn(6, ' ');
    let mut next = || fields.next().ok_or(ParseError::Rfc5424);
    let timestamp = next()?;
    let host = next()?;
    let app = next()?;
    let procid = next()?;
    let _msgid = next()?;
    let rest = fields.next().unwrap_or("");
    let message = skip_structured_data(rest).ok_or(ParseError::Rfc5424)?;
    let nil = |s| (s != "-").then_some(s);
    Ok(LogRecordRef {
        priority: Some(priority),
        timestamp: parse_timestamp(timestamp),
        host: nil(host),
        program: nil(app).unwrap_or_default(),
        pid: procid.parse().ok(),
        message: clean_message(message),
    })
}

fn parse_timestamp(text: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(text).ok().or_else(|| {
        // No offset: read as UTC rather than dropping the time.
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|n| n.and_utc().fixed_offset())
    })
}

/// `- msg` → `msg`; `[a b="c\]"][d] msg` → `msg`. None when a bracket never closes.
fn skip_structured_data(text: &str) -> Option<&str> {
    if text == "-" {
        return Some("");
    }
    if let Some(rest) = text.strip_prefix("- ") {
        return Some(rest);
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && bytes[i] == b'[' {
        let mut in_quotes = false;
        i += 1;
        loop {
            let b = *bytes.get(i)?;
            match b {
                b'\\' if in_quotes => i += 1,
                b'"' => in_quotes = !in_quotes,
                b']' if !in_quotes => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
    }
    let rest = text.get(i..)?;
    Some(rest.strip_prefix(' ').unwrap_or(rest))
}
