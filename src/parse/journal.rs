//! The Journal Export Format (systemd's `application/vnd.fdo.journal`), parsed incrementally,
//! and the conversion of one journal entry into a `LogRecord`.
//!
//! Owns the export grammar only: text fields `KEY=VALUE\n`, binary fields
//! `KEY\n<u64 little-endian length><bytes>\n`, entries separated by an empty line. It is pure
//! (no I/O, no clock) and fuzzable: bytes go in in arbitrary pieces, entries come out, and every
//! limit (field size, fields per entry, entry size) is enforced while reading, so memory is
//! bounded by one entry however long the stream is. A field over a limit is skipped (its bytes
//! are read and dropped, and counted) and the entry goes on without it: refusing the stream
//! would make systemd-journal-upload resend the same entry forever (a core dump's `COREDUMP`
//! field is megabytes). Malformed input is an error, never a panic.
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

impl Limits {
    /// Whether an entry of `fields` fields and `used` bytes has room for one more field of
    /// `size` bytes (name + value).
    fn room_for(&self, fields: usize, used: usize, size: u64) -> bool {
        fields < self.max_fields && used as u64 + size <= self.max_entry as u64
    }
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

/// Why an export stream was refused: malformed input (HTTP 400), never size (fields over a
/// limit are skipped).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum JournalError {
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
    /// Expecting the newline after a binary field's data (`name` None: a skipped field).
    BinaryEnd { name: Option<String>, len: u64 },
    /// Dropping the rest of a text line that is over the field limit.
    SkipLine,
    /// Dropping `left` bytes of a binary field that is over a limit (`len` in all).
    SkipBinary { left: u64, len: u64 },
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
    /// Fields skipped for a limit since the stream started.
    skipped: u64,
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
            skipped: 0,
        }
    }

    /// Fields skipped so far for being over a limit (too large, too many, or an entry too
    /// large); their entries went on without them.
    pub fn skipped_fields(&self) -> u64 {
        self.skipped
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
                        // Too long to be a name line: a text field, whose name is checked
                        // before its value is dropped.
                        let mut head = std::mem::take(&mut self.line);
                        head.extend_from_slice(&input[..taken.min(MAX_NAME + 1)]);
                        match head.iter().take(MAX_NAME + 1).position(|&b| b == b'=') {
                            Some(eq) => {
                                valid_name(&head[..eq])?;
                            }
                            None => return Err(JournalError::BadFieldName),
                        }
                        head.clear();
                        self.line = head;
                        self.skipped += 1;
                        *input = &input[taken + usize::from(complete)..];
                        if !complete {
                            self.state = State::SkipLine;
                        }
                        continue;
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
                                self.skipped += 1;
                            } else {
                                let value = line[eq + 1..].to_vec();
                                self.push(name, value);
                            }
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
                    let fits = len <= self.limits.max_field as u64
                        && self.limits.room_for(
                            self.entry.fields.len(),
                            self.entry_size,
                            name.len() as u64 + len,
                        );
                    if fits {
                        let name = std::mem::take(name);
                        self.value.clear();
                        self.state = State::BinaryData {
                            name,
                            len: len as usize,
                        };
                    } else {
                        self.skipped += 1;
                        self.state = State::SkipBinary { left: len, len };
                    }
                }
                State::BinaryData { name, len } => {
                    let n = (*len - self.value.len()).min(input.len());
                    self.value.extend_from_slice(&input[..n]);
                    *input = &input[n..];
                    if self.value.len() == *len {
                        self.state = State::BinaryEnd {
                            name: Some(std::mem::take(name)),
                            len: *len as u64,
                        };
                    }
                }
                State::BinaryEnd { name, len } => {
                    if input[0] != b'\n' {
                        return Err(JournalError::BadBinaryLength { len: *len });
                    }
                    *input = &input[1..];
                    let name = name.take();
                    let value = std::mem::take(&mut self.value);
                    self.state = State::Line;
                    if let Some(name) = name {
                        self.push(name, value);
                    }
                }
                State::SkipLine => match input.iter().position(|&b| b == b'\n') {
                    Some(pos) => {
                        *input = &input[pos + 1..];
                        self.state = State::Line;
                    }
                    None => *input = &[],
                },
                State::SkipBinary { left, len } => {
                    let n = (*left).min(input.len() as u64);
                    *input = &input[n as usize..];
                    *left -= n;
                    if *left == 0 {
                        self.state = State::BinaryEnd {
                            name: None,
                            len: *len,
                        };
                    }
                }
            }
        }
        match &self.state {
            State::Failed(e) => Err(e.clone()),
            _ => Ok(None),
        }
    }

    /// Adds a field to the entry, or skips it when the entry is full.
    fn push(&mut self, name: String, value: Vec<u8>) {
        let size = (name.len() + value.len()) as u64;
        if !self
            .limits
            .room_for(self.entry.fields.len(), self.entry_size, size)
        {
            self.skipped += 1;
            return;
        }
        self.entry_size += name.len() + value.len();
        self.entry.fields.push(Field { name, value });
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

    /// Parses with a fresh parser; the entries and the count of skipped fields.
    fn parse_counting(data: &[u8], limits: Limits) -> (Vec<Entry>, u64) {
        let mut parser = Parser::new(limits);
        let mut entries = Vec::new();
        let mut rest = data;
        while let Some(entry) = parser.feed(&mut rest).unwrap() {
            entries.push(entry);
        }
        entries.extend(parser.finish().unwrap());
        (entries, parser.skipped_fields())
    }

    fn names(entries: &[Entry]) -> Vec<Vec<&str>> {
        entries
            .iter()
            .map(|e| e.fields.iter().map(|f| f.name.as_str()).collect())
            .collect()
    }

    #[test]
    fn oversize_binary_field_is_skipped_without_buffering_it() {
        // A core dump's worth of binary data between two ordinary fields, at any split.
        let dump = vec![0u8; 100_000];
        let data = [
            b"A=1\n".as_slice(),
            &binary("COREDUMP", dump.len() as u64, &dump, b"\n"),
            b"MESSAGE=after\n\nB=2\n\n",
        ]
        .concat();
        let (entries, skipped) = parse_counting(&data, LIMITS);
        assert_eq!(names(&entries), [vec!["A", "MESSAGE"], vec!["B"]]);
        assert_eq!(skipped, 1);
        for piece in [1, 7, 4096] {
            let parsed = parse_in_pieces(&data, piece, LIMITS).unwrap();
            assert_eq!(parsed, entries, "piece {piece}");
        }
        let mut parser = Parser::new(LIMITS);
        let mut rest = &data[..50_000];
        assert_eq!(parser.feed(&mut rest), Ok(None));
        assert!(
            parser.value.capacity() <= LIMITS.max_field,
            "nothing of it was kept"
        );
        // A length beyond the stream is read to the end, which is inside the field.
        let lying = binary("MESSAGE", u64::MAX, b"", b"");
        assert_eq!(parse_all(&lying), Err(JournalError::Truncated));
        // Its closing newline is still checked.
        let bad = binary("COREDUMP", 5000, &[0u8; 5001], b"\n");
        assert_eq!(
            parse_all(&bad),
            Err(JournalError::BadBinaryLength { len: 5000 })
        );
    }

    #[test]
    fn long_text_line_is_skipped_without_buffering_it() {
        let mut parser = Parser::new(LIMITS);
        let mut first = &b"MESSAGE="[..];
        assert_eq!(parser.feed(&mut first), Ok(None));
        let block = vec![b'x'; 1000];
        for _ in 0..10 {
            assert_eq!(parser.feed(&mut &block[..]), Ok(None));
            assert!(parser.line.len() <= 4096 + MAX_NAME + 1);
        }
        let mut end = &b"\nB=2\n\n"[..];
        let entry = parser.feed(&mut end).unwrap().unwrap();
        assert_eq!(names(&[entry]), [vec!["B"]]);
        assert_eq!(parser.skipped_fields(), 1);
        // A line that long with no `=` in a name's reach is not a field at all.
        let garbage = vec![b'x'; 5000];
        assert_eq!(parse_all(&garbage), Err(JournalError::BadFieldName));
        let mut bad_name = b"lower=".to_vec();
        bad_name.extend_from_slice(&garbage);
        assert_eq!(parse_all(&bad_name), Err(JournalError::BadFieldName));
    }

    #[test]
    fn field_and_entry_caps_skip_fields_and_keep_the_entry() {
        let limits = Limits {
            max_field: 10,
            max_fields: 3,
            max_entry: 20,
        };
        let run = |d: &[u8]| {
            let counted = parse_counting(d, limits);
            for piece in [1, 4] {
                assert_eq!(parse_in_pieces(d, piece, limits).unwrap(), counted.0);
            }
            counted
        };
        assert_eq!(names(&run(b"A=1\nB=2\nC=3\n\n").0), [vec!["A", "B", "C"]]);
        let (entries, skipped) = run(b"A=1\nB=2\nC=3\nD=4\n\n");
        assert_eq!((names(&entries), skipped), (vec![vec!["A", "B", "C"]], 1));
        // A value over max_field (but short enough to be read as a line).
        let (entries, skipped) = run(b"A=12345678901\nB=1\n\n");
        assert_eq!((names(&entries), skipped), (vec![vec!["B"]], 1));
        // An entry whose only field was skipped is no entry.
        assert_eq!(run(b"A=12345678901\n\n"), (vec![], 1));
        let (entries, skipped) = run(b"AAAA=123456789\nBBBB=123456789\n\n");
        assert_eq!((names(&entries), skipped), (vec![vec!["AAAA"]], 1));
        // The entry size restarts with each entry.
        assert_eq!(run(b"AAAA=123456789\n\nBBBB=123456789\n\n").0.len(), 2);
        assert_eq!(
            run(&binary("AAAAAAAAAA", 10, b"0123456789", b"\n\n")).0,
            vec![Entry {
                fields: vec![Field {
                    name: "AAAAAAAAAA".into(),
                    value: b"0123456789".to_vec()
                }]
            }]
        );
        let (entries, skipped) = run(&[
            b"BBBBBBBBBBBB=1\n".as_slice(),
            &binary("AAAAAAAAAA", 10, b"0123456789", b"\n\n"),
        ]
        .concat());
        assert_eq!((names(&entries), skipped), (vec![vec!["BBBBBBBBBBBB"]], 1));
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
