//! The Journal Export Format (systemd's `application/vnd.fdo.journal`), read incrementally
//! into entries (name/value fields). It is the journal transports' framing: a binary field's
//! length decides where the next field starts, so finding entry boundaries needs the grammar.
//! What an entry means (message, program, time) is `parse::journal`'s business.
//!
//! Owns the export grammar only: text fields `KEY=VALUE\n`, binary fields
//! `KEY\n<u64 little-endian length><bytes>\n`, entries separated by an empty line. It is pure
//! (no I/O, no clock) and fuzzable: bytes go in in arbitrary pieces, entries come out, and every
//! limit (field size, fields per entry, entry size) is enforced while reading, so memory is
//! bounded by one entry however long the stream is. A field over a limit is skipped (its bytes
//! are read and dropped, and counted) and the entry goes on without it: refusing the stream
//! would make systemd-journal-upload resend the same entry forever (a core dump's `COREDUMP`
//! field is megabytes). Malformed input is an error, never a panic.
//! It knows nothing about HTTP, sockets, syslog records or jails.

use std::borrow::Cow;

use thiserror::Error;

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
        fields < self.max_fields && (used as u64).saturating_add(size) <= self.max_entry as u64
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
        // Saturating: limits near usize::MAX (a library caller's, not the config's) mean none.
        let line_cap = self.limits.max_field.saturating_add(MAX_NAME + 1);
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
                            // The length is the sender's: any u64.
                            (name.len() as u64).saturating_add(len),
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

#[cfg(test)]
mod tests;
