//! The Journal Export Format (systemd's `application/vnd.fdo.journal`), parsed incrementally,
//! and the conversion of one journal entry into a `LogRecord`.
//!
//! Owns the export grammar only: text fields `KEY=VALUE\n`, binary fields
//! `KEY\n<u64 little-endian length><bytes>\n`, entries separated by an empty line. It is pure
//! (no I/O, no clock) and fuzzable: bytes go in in arbitrary pieces, entries come out, and every
//! limit (field size, fields per entry, entry size) is enforced while reading, so memory is
//! bounded by one entry however long the stream is. Malformed input is an error, never a panic.
//! It knows nothing about HTTP, sockets or jails.

use std::borrow::Cow;

use chrono::DateTime;
use thiserror::Error;

use super::LogRecord;

/// Longest field name accepted (systemd's own limit).
const MAX_NAME: usize = 64;

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest field value, in bytes.
    pub max_field: usize,
    /// Most fields in one entry.
    pub max_fields: usize,
    /// Largest entry, in bytes (names + values).
    pub max_entry: usize,
}

/// One field of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Field name, e.g. `MESSAGE` (validated: `A-Z 0-9 _`, not starting with a digit).
    pub name: String,
    /// Raw value; any bytes for binary fields.
    pub value: Vec<u8>,
}

/// One journal entry: its fields in stream order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The fields, in the order they arrived (a name may repeat).
    pub fields: Vec<Field>,
}

impl Entry {
    /// The first value of field `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_slice())
    }

    /// The first value of field `name` as text (invalid UTF-8 replaced).
    pub fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(String::from_utf8_lossy)
    }
}

/// Why an export stream was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum JournalError {
    /// A field value (or a text line) larger than `max_field`.
    #[error("field larger than {limit} bytes")]
    FieldTooLarge {
        /// The limit.
        limit: usize,
    },
    /// An entry with more than `max_fields` fields.
    #[error("entry has more than {limit} fields")]
    TooManyFields {
        /// The limit.
        limit: usize,
    },
    /// An entry larger than `max_entry`.
    #[error("entry larger than {limit} bytes")]
    EntryTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A field name that is empty, too long or has characters outside `A-Z 0-9 _`.
    #[error("invalid field name")]
    BadFieldName,
    /// A binary field whose data is not followed by a newline: its length is wrong.
    #[error("binary field of {len} bytes not followed by a newline (bad length)")]
    BadBinaryLength {
        /// The declared length.
        len: u64,
    },
    /// The stream ended inside a field.
    #[error("stream ends inside a field")]
    Truncated,
}

impl JournalError {
    /// True for limit violations (HTTP 413), false for malformed input (HTTP 400).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            JournalError::FieldTooLarge { .. }
                | JournalError::TooManyFields { .. }
                | JournalError::EntryTooLarge { .. }
        )
    }
}

#[derive(Debug)]
enum State {
    /// Reading a line: `KEY=VALUE`, a binary field's `KEY`, or the empty line ending an entry.
    Line,
    /// Reading the 8-byte length of binary field `name`.
    BinaryLength {
        name: String,
        bytes: [u8; 8],
        have: usize,
    },
    /// Reading `len` bytes of binary field `name` into `value`.
    BinaryData { name: String, len: usize },
    /// Expecting the newline after a binary field's data.
    BinaryEnd { name: String, len: usize },
    /// An error happened; the stream cannot be resynchronised.
    Failed(JournalError),
}

/// Incremental parser: feed it bytes as they arrive, take entries as they complete.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    state: State,
    /// The current line (text field or binary field name), without its newline.
    line: Vec<u8>,
    /// The current binary value.
    value: Vec<u8>,
    entry: Entry,
    entry_size: usize,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new(limits: Limits) -> Self {
        Parser {
            limits,
            state: State::Line,
            line: Vec::new(),
            value: Vec::new(),
            entry: Entry::default(),
            entry_size: 0,
        }
    }

    /// Consumes bytes from the front of `input` until one entry is complete (`Ok(Some)`, with
    /// the rest left in `input`) or `input` is used up (`Ok(None)`). After an error every call
    /// returns the same error.
    pub fn feed(&mut self, input: &mut &[u8]) -> Result<Option<Entry>, JournalError> {
        let result = self.step(input);
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
        }
        result
    }

    /// The end of the stream: the last entry if the stream ends after a complete field
    /// without the final empty line (accepted, like systemd-journal-remote), an error if it
    /// ends inside a field.
    pub fn finish(&mut self) -> Result<Option<Entry>, JournalError> {
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            State::Line if self.line.is_empty() => Ok(self.take_entry()),
            _ => {
                self.state = State::Failed(JournalError::Truncated);
                Err(JournalError::Truncated)
            }
        }
    }

    fn step(&mut self, input: &mut &[u8]) -> Result<Option<Entry>, JournalError> {
        let line_cap = self.limits.max_field + MAX_NAME + 1;
        while !input.is_empty() {
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Line => {
                    let (taken, complete) = match input.iter().position(|&b| b == b'\n') {
                        Some(pos) => (pos, true),
                        None => (input.len(), false),
                    };
                    if self.line.len() + taken > line_cap {
                        return Err(JournalError::FieldTooLarge {
                            limit: self.limits.max_field,
                        });
                    }
                    self.line.extend_from_slice(&input[..taken]);
                    *input = &input[taken + usize::from(complete)..];
                    if !complete {
                        return Ok(None);
                    }
                    if self.line.is_empty() {
                        if let Some(entry) = self.take_entry() {
                            return Ok(Some(entry));
                        }
                        continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    match line.iter().position(|&b| b == b'=') {
                        Some(eq) => {
                            let name = valid_name(&line[..eq])?;
                            if line.len() - eq - 1 > self.limits.max_field {
                                return Err(JournalError::FieldTooLarge {
                                    limit: self.limits.max_field,
                                });
                            }
                            let value = line[eq + 1..].to_vec();
                            self.push(name, value)?;
                        }
                        None => {
                            let name = valid_name(&line)?;
                            self.state = State::BinaryLength {
                                name,
                                bytes: [0; 8],
                                have: 0,
                            };
                        }
                    }
                    // Keep the allocation for the next line.
                    self.line = line;
                    self.line.clear();
                }
                State::BinaryLength { name, bytes, have } => {
                    let n = (8 - *have).min(input.len());
                    bytes[*have..*have + n].copy_from_slice(&input[..n]);
                    *have += n;
                    *input = &input[n..];
                    if *have < 8 {
                        return Ok(None);
                    }
                    let len = u64::from_le_bytes(*bytes);
                    if len > self.limits.max_field as u64 {
                        return Err(JournalError::FieldTooLarge {
                            limit: self.limits.max_field,
                        });
                    }
                    let len = len as usize;
                    if self.entry_size + name.len() + len > self.limits.max_entry {
                        return Err(JournalError::EntryTooLarge {
                            limit: self.limits.max_entry,
                        });
                    }
                    let name = std::mem::take(name);
                    self.value.clear();
                    self.state = State::BinaryData { name, len };
                }
                State::BinaryData { name, len } => {
                    let n = (*len - self.value.len()).min(input.len());
                    self.value.extend_from_slice(&input[..n]);
                    *input = &input[n..];
                    if self.value.len() == *len {
                        self.state = State::BinaryEnd {
                            name: std::mem::take(name),
                            len: *len,
                        };
                    }
                }
                State::BinaryEnd { name, len } => {
                    if input[0] != b'\n' {
                        return Err(JournalError::BadBinaryLength { len: *len as u64 });
                    }
                    *input = &input[1..];
                    let name = std::mem::take(name);
                    let value = std::mem::take(&mut self.value);
                    self.state = State::Line;
                    self.push(name, value)?;
                }
            }
        }
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            _ => Ok(None),
        }
    }

    fn push(&mut self, name: String, value: Vec<u8>) -> Result<(), JournalError> {
        if self.entry.fields.len() >= self.limits.max_fields {
            return Err(JournalError::TooManyFields {
                limit: self.limits.max_fields,
            });
        }
        self.entry_size += name.len() + value.len();
        if self.entry_size > self.limits.max_entry {
            return Err(JournalError::EntryTooLarge {
                limit: self.limits.max_entry,
            });
        }
        self.entry.fields.push(Field { name, value });
        Ok(())
    }

    fn take_entry(&mut self) -> Option<Entry> {
        self.entry_size = 0;
        let entry = std::mem::take(&mut self.entry);
        (!entry.fields.is_empty()).then_some(entry)
    }
}

/// `A-Z 0-9 _`, 1 to 64 bytes, not starting with a digit (systemd's `journal_field_valid`;
/// the export format's `__CURSOR` and friends start with `__`, which passes).
fn valid_name(name: &[u8]) -> Result<String, JournalError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name[0].is_ascii_digit()
        && name
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(JournalError::BadFieldName);
    }
    // All ASCII: cannot fail.
    Ok(String::from_utf8_lossy(name).into_owned())
}

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
        host: nonempty("_HOSTNAME").map(Cow::into_owned),
        program,
        pid,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_field: 4096,
        max_fields: 64,
        max_entry: 16 * 1024,
    };

    fn capture(name: &str) -> Vec<u8> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/captures")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Feeds `data` in pieces of `piece` bytes; all entries and the final result.
    fn parse_in_pieces(
        data: &[u8],
        piece: usize,
        limits: Limits,
    ) -> Result<Vec<Entry>, JournalError> {
        let mut parser = Parser::new(limits);
        let mut entries = Vec::new();
        for chunk in data.chunks(piece.max(1)) {
            let mut rest = chunk;
            while let Some(entry) = parser.feed(&mut rest)? {
                entries.push(entry);
            }
            assert!(rest.is_empty());
        }
        entries.extend(parser.finish()?);
        Ok(entries)
    }

    fn parse_all(data: &[u8]) -> Result<Vec<Entry>, JournalError> {
        parse_in_pieces(data, data.len(), LIMITS)
    }

    #[test]
    fn sample_export_has_three_sshd_entries_at_any_split() {
        let data = capture("sample.export");
        let whole = parse_all(&data).unwrap();
        assert_eq!(whole.len(), 3);
        for piece in [1, 2, 7, 8, 9, 64, 333] {
            assert_eq!(
                parse_in_pieces(&data, piece, LIMITS).unwrap(),
                whole,
                "piece {piece}"
            );
        }
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
    fn binary_message_field_at_any_split() {
        let data = capture("bin.export");
        for piece in [1, 3, 8, 13, data.len()] {
            let entries = parse_in_pieces(&data, piece, LIMITS).unwrap();
            assert_eq!(entries.len(), 1, "piece {piece}");
            let r = to_record(&entries[0]).unwrap();
            assert_eq!(r.program, "sshd");
            assert_eq!(r.pid, Some(77));
            assert_eq!(
                r.message,
                "Failed password for root from 198.51.100.66 port 1 ssh2\nsecond line"
            );
        }
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
    fn entry_without_message_is_no_record() {
        let entries = parse_all(b"_COMM=x\n\n").unwrap();
        assert_eq!(to_record(&entries[0]), None);
    }

    #[test]
    fn blank_lines_between_entries_and_missing_final_blank_line() {
        let entries = parse_all(b"\n\nA=1\n\n\n\nB=2\n").unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].get("B"), Some(&b"2"[..]));
        assert_eq!(entries[0].text("A").as_deref(), Some("1"));
    }

    #[test]
    fn value_may_contain_equals_signs() {
        let entries = parse_all(b"MESSAGE=a=b=c\n\n").unwrap();
        assert_eq!(entries[0].get("MESSAGE"), Some(&b"a=b=c"[..]));
    }

    fn binary(name: &str, len: u64, data: &[u8], end: &[u8]) -> Vec<u8> {
        let mut out = format!("{name}\n").into_bytes();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(end);
        out
    }

    #[test]
    fn binary_length_that_lies_is_an_error() {
        let data = binary("MESSAGE", 3, b"hello", b"\n\n");
        assert_eq!(
            parse_all(&data),
            Err(JournalError::BadBinaryLength { len: 3 })
        );
        assert!(!JournalError::BadBinaryLength { len: 3 }.is_too_large());
    }

    #[test]
    fn truncated_binary_field_is_an_error() {
        for cut in [b"MESSAGE\n".len() + 3, b"MESSAGE\n".len() + 8 + 2] {
            let data = binary("MESSAGE", 5, b"hello", b"\n\n");
            assert_eq!(
                parse_all(&data[..cut]),
                Err(JournalError::Truncated),
                "cut {cut}"
            );
        }
        assert_eq!(
            parse_all(b"MESSAGE=unterminated"),
            Err(JournalError::Truncated)
        );
    }

    #[test]
    fn huge_binary_length_is_refused_before_reading_data() {
        let mut parser = Parser::new(LIMITS);
        let data = binary("MESSAGE", u64::MAX, b"", b"");
        let mut rest = &data[..];
        let err = parser.feed(&mut rest).unwrap_err();
        assert_eq!(err, JournalError::FieldTooLarge { limit: 4096 });
        assert!(err.is_too_large());
        // Poisoned: the stream cannot be resynchronised.
        assert_eq!(parser.feed(&mut &b"A=1\n\n"[..]), Err(err.clone()));
        assert_eq!(parser.finish(), Err(err));
    }

    #[test]
    fn long_text_line_is_refused_without_buffering_it() {
        let mut parser = Parser::new(LIMITS);
        let mut first = &b"MESSAGE="[..];
        assert_eq!(parser.feed(&mut first), Ok(None));
        let block = vec![b'x'; 1000];
        let mut result = Ok(None);
        for _ in 0..10 {
            result = parser.feed(&mut &block[..]);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(JournalError::FieldTooLarge { limit: 4096 }));
        assert!(parser.line.len() <= 4096 + MAX_NAME + 1);
    }

    #[test]
    fn field_and_entry_caps() {
        let limits = Limits {
            max_field: 10,
            max_fields: 3,
            max_entry: 20,
        };
        let run = |d: &[u8]| parse_in_pieces(d, 4, limits);
        assert_eq!(run(b"A=1\nB=2\nC=3\n\n").map(|e| e.len()), Ok(1));
        assert_eq!(
            run(b"A=1\nB=2\nC=3\nD=4\n\n"),
            Err(JournalError::TooManyFields { limit: 3 })
        );
        assert_eq!(
            run(b"A=12345678901\n\n"),
            Err(JournalError::FieldTooLarge { limit: 10 })
        );
        assert_eq!(
            run(b"AAAA=123456789\nBBBB=123456789\n\n"),
            Err(JournalError::EntryTooLarge { limit: 20 })
        );
        // The entry size restarts with each entry.
        assert_eq!(
            run(b"AAAA=123456789\n\nBBBB=123456789\n\n").map(|e| e.len()),
            Ok(2)
        );
        assert_eq!(
            run(&binary("AAAAAAAAAA", 10, b"0123456789", b"\n\n")),
            Ok(vec![Entry {
                fields: vec![Field {
                    name: "AAAAAAAAAA".into(),
                    value: b"0123456789".to_vec()
                }]
            }])
        );
        assert_eq!(
            run(&[
                b"BBBBBBBBBBBB=1\n".as_slice(),
                &binary("AAAAAAAAAA", 10, b"0123456789", b"\n\n")
            ]
            .concat()),
            Err(JournalError::EntryTooLarge { limit: 20 })
        );
    }

    #[test]
    fn bad_field_names() {
        for data in [
            &b"GET /upload HTTP/1.1\r\n\r\n"[..],
            b"=value\n\n",
            b"lower=x\n\n",
            b"1ABC=x\n\n",
            b"MESSAGE\r\n",
        ] {
            assert_eq!(
                parse_all(data),
                Err(JournalError::BadFieldName),
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        let long = format!("{}=x\n\n", "A".repeat(65));
        assert_eq!(parse_all(long.as_bytes()), Err(JournalError::BadFieldName));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic fuzz: every prefix and a few mutations of the captures.
        let mut corpus = vec![capture("sample.export"), capture("bin.export")];
        let base = capture("bin.export");
        for i in 0..base.len() {
            let mut m = base.clone();
            m[i] ^= 0xff;
            corpus.push(m);
        }
        for data in &corpus {
            for cut in 0..data.len() {
                let _ = parse_in_pieces(&data[..cut], 5, LIMITS);
            }
        }
    }
}
