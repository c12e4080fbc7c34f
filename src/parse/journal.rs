//! What one journal entry means to the jails: the `LogRecord` made of its fields. The entry
//! itself (the Journal Export Format's fields) comes from the journal listeners'
//! framing, `input::journal::export`; this module only reads the fields it needs.

use std::borrow::Cow;

use chrono::DateTime;

use super::LogRecord;
use crate::input::journal::export::Entry;

/// The record the jails see: program from `SYSLOG_IDENTIFIER`, else `_COMM`; message from
/// `MESSAGE`; time from `_SOURCE_REALTIME_TIMESTAMP`, else `__REALTIME_TIMESTAMP` (µs since
/// the epoch); host from `_HOSTNAME` (as claimed by the sender); pid from `_PID`, else
/// `SYSLOG_PID`; priority from `PRIORITY` and `SYSLOG_FACILITY`. None for an entry without
/// `MESSAGE` (nothing a jail could match).
pub fn to_record(entry: &Entry) -> Option<LogRecord> {
    let message = entry.text("MESSAGE")?;
    let message = message
        .trim_start_matches(' ')
        .trim_start_matches('\u{feff}')
        .trim_end_matches(['\n', '\r'])
        .to_string();
    let nonempty = |name: &str| entry.text(name).filter(|v| !v.is_empty());
    let program = nonempty("SYSLOG_IDENTIFIER")
        .or_else(|| nonempty("_COMM"))
        .map(Cow::into_owned)
        .unwrap_or_default();
    let number = |name: &str| entry.text(name).and_then(|v| v.trim().parse::<u64>().ok());
    let timestamp = number("_SOURCE_REALTIME_TIMESTAMP")
        .or_else(|| number("__REALTIME_TIMESTAMP"))
        .and_then(|us| i64::try_from(us).ok())
        .and_then(DateTime::from_timestamp_micros)
        .map(|t| t.fixed_offset());
    let pid = number("_PID")
        .or_else(|| number("SYSLOG_PID"))
        .and_then(|p| u32::try_from(p).ok());
    let priority = number("PRIORITY").filter(|p| *p <= 7).map(|severity| {
        let facility = number("SYSLOG_FACILITY").filter(|f| *f <= 23).unwrap_or(1);
        (facility * 8 + severity) as u8
    });
    Some(LogRecord {
        priority,
        timestamp,
        // Binary-safe fields can carry anything: a forged name is none.
        host: nonempty("_HOSTNAME")
            .filter(|h| super::printable_name(h))
            .map(Cow::into_owned),
        program,
        pid,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::journal::export::{JournalError, Limits, Parser};

    use crate::testing::capture;

    fn parse_all(mut data: &[u8]) -> Result<Vec<Entry>, JournalError> {
        let mut parser = Parser::new(Limits {
            max_field: 4096,
            max_fields: 64,
            max_entry: 16 * 1024,
        });
        let mut entries = Vec::new();
        while let Some(entry) = parser.feed(&mut data)? {
            entries.push(entry);
        }
        entries.extend(parser.finish()?);
        Ok(entries)
    }

    #[test]
    fn sample_export_entries_become_sshd_records() {
        let data = capture("sample.export");
        let whole = parse_all(&data).unwrap();
        assert_eq!(whole.len(), 3);
        let r = to_record(&whole[0]).unwrap();
        assert_eq!(r.program, "sshd");
        assert_eq!(r.host.as_deref(), Some("nl-server"));
        assert_eq!(r.pid, Some(4000));
        assert_eq!(r.priority, Some(4 * 8 + 6));
        assert_eq!(
            r.message,
            "Failed password for invalid user admin from 198.51.100.66 port 33544 ssh2"
        );
        assert_eq!(
            r.timestamp.unwrap().timestamp_micros(),
            1_795_595_782_174_576
        );
        let last = to_record(&whole[2]).unwrap();
        assert_eq!(
            last.message,
            "Invalid user test from 198.51.100.67 port 50000"
        );
    }

    #[test]
    fn binary_message_field_is_the_message() {
        let data = capture("bin.export");
        let entries = parse_all(&data).unwrap();
        assert_eq!(entries.len(), 1);
        let r = to_record(&entries[0]).unwrap();
        assert_eq!(r.program, "sshd");
        assert_eq!(r.pid, Some(77));
        assert_eq!(
            r.message,
            "Failed password for root from 198.51.100.66 port 1 ssh2\nsecond line"
        );
    }

    #[test]
    fn text_sample_without_cursor() {
        let entries = parse_all(&capture("journal-export-sample.txt")).unwrap();
        assert_eq!(entries.len(), 1);
        let r = to_record(&entries[0]).unwrap();
        assert_eq!(
            (r.program.as_str(), r.host.as_deref(), r.pid),
            ("sshd", Some("web1"), Some(1234))
        );
        assert_eq!(r.timestamp.unwrap().timestamp(), 1_732_523_401);
    }

    #[test]
    fn program_falls_back_to_comm_and_source_time_wins() {
        let data = b"__REALTIME_TIMESTAMP=2000000\n_SOURCE_REALTIME_TIMESTAMP=1000000\n\
                     _COMM=sshd\nSYSLOG_IDENTIFIER=\nSYSLOG_PID=9\nMESSAGE= hi\n\n";
        let r = to_record(&parse_all(data).unwrap()[0]).unwrap();
        assert_eq!(r.program, "sshd");
        assert_eq!(r.timestamp.unwrap().timestamp(), 1);
        assert_eq!(r.pid, Some(9));
        assert_eq!(r.message, "hi");
        assert_eq!(r.host, None);
        assert_eq!(r.priority, None);
    }

    #[test]
    fn a_host_name_with_a_line_break_is_none() {
        // The export format's binary form: name, newline, 64-bit little-endian length, data.
        let mut data = b"_COMM=sshd\nMESSAGE=Failed password\n_HOSTNAME\n".to_vec();
        let forged = b"web1\nINFO forged";
        data.extend_from_slice(&(forged.len() as u64).to_le_bytes());
        data.extend_from_slice(forged);
        data.extend_from_slice(b"\n\n");
        let r = to_record(&parse_all(&data).unwrap()[0]).unwrap();
        assert_eq!(r.host, None);
        assert_eq!(r.program, "sshd");
    }

    #[test]
    fn entry_without_message_is_no_record() {
        let entries = parse_all(b"_COMM=x\n\n").unwrap();
        assert_eq!(to_record(&entries[0]), None);
    }
}
