//! A minimal client of the Redis serialization protocol (RESP2), which Valkey and Redis speak:
//! one connection, one command at a time, over TCP or TLS, with AUTH and SELECT.
//!
//! Owns the wire format and its limits. The engine's replies are network input: sizes are
//! capped and anything malformed is an error, never a panic. A call that times out leaves the
//! connection in an unknown state; the caller drops it and connects again.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::EngineUrl;

/// Longest bulk string read.
const MAX_BULK: usize = 16 * 1024 * 1024;
/// Most elements of an array read.
const MAX_ARRAY: usize = 1_000_000;
/// Deepest nesting of arrays read.
const MAX_DEPTH: usize = 8;
/// Longest line (status, error, length) read.
const MAX_LINE: usize = 64 * 1024;

/// An engine call that failed.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Connecting, TLS, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The engine answered with an error.
    #[error("the engine answered: {0}")]
    Server(String),
    /// The answer is not RESP.
    #[error("the answer is not RESP: {0}")]
    Protocol(String),
    /// No server of `urls` could be written to: why, per server.
    #[error("no server takes writes: {0}")]
    NoPrimary(String),
    /// A node of a Redis Cluster: it holds some slots' keys and redirects (MOVED) for the
    /// rest, which this client does not follow.
    #[error("a Redis Cluster node (cluster_enabled:1), whose MOVED redirects syslog2ban does not follow: name a standalone primary (with its replicas, or `sentinels`) in [cluster] urls")]
    ClusterMode,
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `:n`.
    Int(i64),
    /// `$n` (None: nil).
    Bulk(Option<Vec<u8>>),
    /// `*n` (None: nil).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The integer, if this is one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The bytes of a bulk or status reply, as sent.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(Some(b)) => Some(b),
            Reply::Status(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The text of a bulk or status reply.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Status(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The elements of an array reply (nil and others: none).
    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(Some(items)) => items,
            _ => &[],
        }
    }
}

/// One element of a reply read in place: what its first line said (a bulk string's bytes as
/// a span of the buffer), and how many elements its subtree holds (itself included), so that
/// its next sibling is one step away. Each line is read once: walking a storm's stream
/// entries, the follower asks every string for its bytes.
#[derive(Debug, Clone, Copy)]
struct Node {
    kind: Kind,
    size: usize,
}

/// An element's type, and where its content is in the buffer.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A status line's text (`+OK`), or a bulk string's bytes.
    Bytes { start: usize, len: usize },
    /// An array of this many elements.
    Array(usize),
    /// Anything else: an integer, an error inside an array, nil.
    Other,
}

/// Indexes the reply at `buf[at..]`, which [`reply_end`] found whole, into `tape` (elements in
/// order, each before its own); returns where it ends. One pass: walking a stream entry's 16
/// strings level by level, as the follower does, would read each line again at every level.
fn index(buf: &[u8], at: usize, tape: &mut Vec<Node>) -> Result<usize, EngineError> {
    let slot = tape.len();
    let (head, next) =
        head(buf, at)?.ok_or_else(|| EngineError::Protocol("a reply cut short".into()))?;
    let (kind, mut end) = match head {
        Head::Status(s) => (
            Kind::Bytes {
                start: at + 1,
                len: s.len(),
            },
            next,
        ),
        Head::Bulk(Some(n)) => (
            Kind::Bytes {
                start: next,
                len: n,
            },
            next + n + 2,
        ),
        Head::Array(Some(n)) => (Kind::Array(n), next),
        _ => (Kind::Other, next),
    };
    tape.push(Node { kind, size: 1 });
    if let Kind::Array(n) = kind {
        for _ in 0..n {
            end = index(buf, end, tape)?;
        }
    }
    let size = tape.len() - slot;
    if let Some(node) = tape.get_mut(slot) {
        node.size = size;
    }
    Ok(end)
}

/// A reply read in place: its bytes in the connection's buffer and their index, nothing copied.
/// A storm's follower reads 500 stream entries of 16 strings per call; built as [`Reply`]s
/// they were an allocation each.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    buf: &'a [u8],
    tape: &'a [Node],
    node: usize,
}

impl<'a> Frame<'a> {
    fn kind(self) -> Option<Kind> {
        self.tape.get(self.node).map(|n| n.kind)
    }

    /// The bytes of a bulk or status reply, as sent.
    pub fn bytes(self) -> Option<&'a [u8]> {
        match self.kind()? {
            Kind::Bytes { start, len } => self.buf.get(start..start + len),
            Kind::Array(_) | Kind::Other => None,
        }
    }

    /// The text of a bulk or status reply.
    pub fn text(self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The elements of an array reply (nil and others: none).
    pub fn items(self) -> Items<'a> {
        let left = match self.kind() {
            Some(Kind::Array(n)) => n,
            _ => 0,
        };
        Items {
            frame: Frame {
                node: self.node + 1,
                ..self
            },
            left,
        }
    }
}

/// The elements of an array [`Frame`], in order.
#[derive(Debug, Clone)]
pub struct Items<'a> {
    /// The next element.
    frame: Frame<'a>,
    left: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.left == 0 {
            return None;
        }
        let item = self.frame;
        let size = self.frame.tape.get(item.node).map_or(0, |n| n.size);
        if size == 0 {
            self.left = 0;
            return None;
        }
        self.frame.node += size;
        self.left -= 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Items<'_> {}

/// The whole replies at the start of `buf`, read both ways a connection reads them (built
/// as [`Reply`]s for calls, indexed in place for the follower's stream reads), `each` called
/// with every one in place; how many bytes they took. What the `resp` fuzz target drives
/// without a socket: a reply from the engine (or whoever answers on its address) is network
/// input.
pub fn read_whole(buf: &[u8], mut each: impl FnMut(Frame<'_>)) -> Result<usize, EngineError> {
    let mut at = 0;
    let mut tape = Vec::new();
    while let Some(len) = reply_end(buf.get(at..).unwrap_or_default(), 0, 0)? {
        let reply = buf.get(at..at + len).unwrap_or_default();
        let _ = build(reply, 0, 0)?;
        tape.clear();
        index(reply, 0, &mut tape)?;
        each(Frame {
            buf: reply,
            tape: &tape,
            node: 0,
        });
        at += len;
    }
    Ok(at)
}

/// A reply's bytes and their index, owned (what tests build replies with).
#[cfg(test)]
#[derive(Debug)]
pub struct OwnedReply {
    buf: Vec<u8>,
    tape: Vec<Node>,
}

#[cfg(test)]
impl OwnedReply {
    /// The one reply that `buf` holds, checked whole.
    pub fn read(buf: Vec<u8>) -> Result<OwnedReply, EngineError> {
        if reply_end(&buf, 0, 0)?.is_none() {
            return Err(EngineError::Protocol("a reply cut short".into()));
        }
        let mut tape = Vec::new();
        index(&buf, 0, &mut tape)?;
        Ok(OwnedReply { buf, tape })
    }

    /// The reply, to walk.
    pub fn frame(&self) -> Frame<'_> {
        Frame {
            buf: &self.buf,
            tape: &self.tape,
            node: 0,
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// One connection to the engine.
pub struct Connection {
    stream: Box<dyn Stream>,
    /// Bytes read and not yet taken as replies, from `start` on (a pipeline's replies arrive
    /// together: each is parsed in place, none moved until the next read).
    read: Vec<u8>,
    start: usize,
    /// The index of the last reply read in place (kept: its room is reused).
    tape: Vec<Node>,
    timeout: Duration,
}

/// Room made for each read from the engine.
const READ_CHUNK: usize = 64 * 1024;

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects to `url` (TLS for `rediss://`, with `ca_pem` trusted besides the Mozilla
    /// roots), authenticates and selects its database, all within `timeout` per step.
    pub async fn connect(
        url: &EngineUrl,
        ca_pem: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Connection, EngineError> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect((url.host.as_str(), url.port)))
            .await
            .map_err(|_| EngineError::Timeout(timeout))??;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = if url.tls {
            let name = rustls_pki_types::ServerName::try_from(url.host.clone())
                .map_err(|e| std::io::Error::other(format!("server name {}: {e}", url.host)))?;
            let tls = tokio::time::timeout(
                timeout,
                crate::tls_client::connector(ca_pem)?.connect(name, tcp),
            )
            .await
            .map_err(|_| EngineError::Timeout(timeout))??;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let mut conn = Connection::over(stream, timeout);
        if let Some(password) = &url.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &url.username {
                auth.push(user.as_bytes());
            }
            auth.push(password.as_bytes());
            conn.call(&auth).await?;
        }
        if url.db != 0 {
            conn.call(&[b"SELECT", url.db.to_string().as_bytes()])
                .await?;
        }
        Ok(conn)
    }

    fn over(stream: Box<dyn Stream>, timeout: Duration) -> Connection {
        Connection {
            stream,
            read: Vec::new(),
            start: 0,
            tape: Vec::new(),
            timeout,
        }
    }

    /// Sends one command and reads its reply; an error reply is `EngineError::Server`.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, EngineError> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.exchange(args))
            .await
            .map_err(|_| EngineError::Timeout(timeout))?
    }

    /// Sends several commands at once and reads their replies in order (one round trip):
    /// each reply or its error reply; Err when the connection failed.
    pub async fn pipeline(
        &mut self,
        commands: &[Vec<&[u8]>],
    ) -> Result<Vec<Result<Reply, EngineError>>, EngineError> {
        let mut bytes = Vec::new();
        for args in commands {
            encode_into(&mut bytes, args);
        }
        self.pipeline_encoded(&bytes, commands.len()).await
    }

    /// Sends `commands` commands already encoded in `bytes` and reads their replies, as
    /// [`Connection::pipeline`].
    pub async fn pipeline_encoded(
        &mut self,
        bytes: &[u8],
        commands: usize,
    ) -> Result<Vec<Result<Reply, EngineError>>, EngineError> {
        let mut replies = Vec::with_capacity(commands);
        self.pipeline_each(bytes, commands, |reply| replies.push(reply))
            .await?;
        Ok(replies)
    }

    /// As [`Connection::pipeline_encoded`], handing each reply to `each` as it is read
    /// instead of collecting them (a storm's batch of 2048 needs no list of replies).
    pub async fn pipeline_each(
        &mut self,
        bytes: &[u8],
        commands: usize,
        mut each: impl FnMut(Result<Reply, EngineError>),
    ) -> Result<(), EngineError> {
        let timeout = self.timeout;
        let exchange = async {
            self.stream.write_all(bytes).await?;
            for _ in 0..commands {
                each(self.next_reply().await?.map_err(EngineError::Server));
            }
            Ok(())
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| EngineError::Timeout(timeout))?
    }

    async fn exchange(&mut self, args: &[&[u8]]) -> Result<Reply, EngineError> {
        self.stream.write_all(&encode(args)).await?;
        self.next_reply().await?.map_err(EngineError::Server)
    }

    /// Sends one command and reads its reply in place, as [`Connection::call`] does, without
    /// building it: the frame lasts until the connection is used again.
    pub async fn call_in_place(&mut self, args: &[&[u8]]) -> Result<Frame<'_>, EngineError> {
        let timeout = self.timeout;
        let span = tokio::time::timeout(timeout, async {
            self.stream.write_all(&encode(args)).await?;
            self.next_span().await
        })
        .await
        .map_err(|_| EngineError::Timeout(timeout))??;
        let buf = self.read.get(span).unwrap_or_default();
        if let Some((Head::Error(e), _)) = head(buf, 0)? {
            return Err(EngineError::Server(String::from_utf8_lossy(e).into_owned()));
        }
        self.tape.clear();
        index(buf, 0, &mut self.tape)?;
        Ok(Frame {
            buf,
            tape: &self.tape,
            node: 0,
        })
    }

    /// The next reply, or the engine's error reply as text; Err when the connection failed
    /// or the bytes are not RESP. Reads until a whole reply is there, then builds it once.
    async fn next_reply(&mut self) -> Result<Result<Reply, String>, EngineError> {
        let span = self.next_span().await?;
        let (reply, _) = build(self.read.get(span).unwrap_or_default(), 0, 0)?;
        Ok(reply)
    }

    /// Where the next whole reply is in the buffer, reading until it is all there. What was
    /// taken before stays until this is called again (a [`Frame`] may point into it).
    async fn next_span(&mut self) -> Result<std::ops::Range<usize>, EngineError> {
        if self.start > 0 && self.start >= self.read.len() {
            self.read.clear();
            self.start = 0;
        }
        loop {
            let unread = self.read.get(self.start..).unwrap_or_default();
            if let Some(end) = reply_end(unread, 0, 0)? {
                let span = self.start..self.start + end;
                self.start += end;
                return Ok(span);
            }
            if self.start > 0 {
                self.read.drain(..self.start);
                self.start = 0;
            }
            // Room for as much again as is waiting: a long reply is scanned from its start
            // after each read, so reads that double keep the scanning within twice its size.
            let waiting = self.read.len() - self.start;
            self.read.reserve(READ_CHUNK.max(waiting));
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(EngineError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the engine closed the connection",
                )));
            }
        }
    }
}

/// A command as RESP: an array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, args);
    out
}

/// Appends `args` as one RESP command to `out`.
pub fn encode_into(out: &mut Vec<u8>, args: &[&[u8]]) {
    array_header(out, args.len());
    for arg in args {
        bulk(out, arg);
    }
}

/// `n` in decimal, written into the end of `buf`: the digits. (A storm encodes a dozen
/// numbers per failure; the formatting machinery cost more than the bytes.)
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Appends a RESP line header: `kind`, the decimal `n`, CRLF.
fn line_header(out: &mut Vec<u8>, kind: u8, n: usize) {
    out.push(kind);
    out.extend_from_slice(decimal(n as u64, &mut [0; 20]));
    out.extend_from_slice(b"\r\n");
}

/// Appends the header of a command of `n` arguments (each then written with [`bulk`]).
pub fn array_header(out: &mut Vec<u8>, n: usize) {
    line_header(out, b'*', n);
}

/// Appends one argument as a bulk string.
pub fn bulk(out: &mut Vec<u8>, arg: &[u8]) {
    bulk_parts(out, &[arg]);
}

/// Appends one argument made of `parts` in order (a key from its pieces, without building
/// it first).
pub fn bulk_parts(out: &mut Vec<u8>, parts: &[&[u8]]) {
    line_header(out, b'$', parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends one number argument, in decimal.
pub fn bulk_number(out: &mut Vec<u8>, n: u64) {
    bulk(out, decimal(n, &mut [0; 20]));
}

/// A reply's first line: its type and what follows the type byte.
enum Head<'a> {
    Status(&'a [u8]),
    Error(&'a [u8]),
    Int(&'a [u8]),
    /// A bulk string's length (None: nil).
    Bulk(Option<usize>),
    /// An array's length (None: nil).
    Array(Option<usize>),
}

/// The first line of the reply at `buf[at..]` and where the rest starts; None when the line
/// is not all there yet.
fn head(buf: &[u8], at: usize) -> Result<Option<(Head<'_>, usize)>, EngineError> {
    let rest = buf.get(at..).unwrap_or_default();
    let window = rest.get(..MAX_LINE).unwrap_or(rest);
    let Some(newline) = memchr::memchr(b'\n', window) else {
        if rest.len() >= MAX_LINE {
            return Err(EngineError::Protocol("a line over the cap".into()));
        }
        return Ok(None);
    };
    let Some(line) = window.get(..newline).and_then(|l| l.strip_suffix(b"\r")) else {
        return Err(EngineError::Protocol("a line without CRLF".into()));
    };
    let next = at + newline + 1;
    let (&kind, text) = line
        .split_first()
        .ok_or_else(|| EngineError::Protocol("an empty line".into()))?;
    let head = match kind {
        b'+' => Head::Status(text),
        b'-' => Head::Error(text),
        b':' => Head::Int(text),
        b'$' => Head::Bulk(length(text, MAX_BULK)?),
        b'*' => Head::Array(length(text, MAX_ARRAY)?),
        _ => {
            return Err(EngineError::Protocol(format!(
                "unknown reply type in {:?}",
                String::from_utf8_lossy(line.get(..40).unwrap_or(line))
            )))
        }
    };
    Ok(Some((head, next)))
}

/// The decimal number of a reply line (`what` names it in the error). Read by hand: every
/// string of a reply has one (its length), and a storm's replies hold tens of thousands.
fn number(text: &[u8], what: &str) -> Result<i64, EngineError> {
    let bad = || EngineError::Protocol(format!("bad {what} {:?}", String::from_utf8_lossy(text)));
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        // Negative numbers accumulate downwards: i64::MIN has no positive twin.
        let digit = i64::from(d - b'0');
        n = n
            .checked_mul(10)
            .and_then(|n| {
                if negative {
                    n.checked_sub(digit)
                } else {
                    n.checked_add(digit)
                }
            })
            .ok_or_else(bad)?;
    }
    Ok(n)
}

fn length(text: &[u8], cap: usize) -> Result<Option<usize>, EngineError> {
    let n = number(text, "length")?;
    if n < 0 {
        return Ok(None);
    }
    let n = n as usize;
    if n > cap {
        return Err(EngineError::Protocol(format!(
            "length {n} over the cap {cap}"
        )));
    }
    Ok(Some(n))
}

/// Where the reply at `buf[at..]` (nested `depth` deep) ends, without building it; None when
/// it is not all there yet. Checks what [`build`] relies on.
fn reply_end(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, EngineError> {
    let Some((head, next)) = head(buf, at)? else {
        return Ok(None);
    };
    match head {
        Head::Bulk(Some(n)) => {
            let end = next + n + 2;
            match buf.get(next + n..end) {
                None => Ok(None),
                Some(b"\r\n") => Ok(Some(end)),
                Some(_) => Err(EngineError::Protocol("a bulk string without CRLF".into())),
            }
        }
        Head::Array(Some(n)) => {
            if depth >= MAX_DEPTH {
                return Err(EngineError::Protocol("arrays nested too deep".into()));
            }
            let mut end = next;
            for _ in 0..n {
                match reply_end(buf, end, depth + 1)? {
                    Some(e) => end = e,
                    None => return Ok(None),
                }
            }
            Ok(Some(end))
        }
        _ => Ok(Some(next)),
    }
}

/// Builds the reply at `buf[at..]`, which [`reply_end`] found whole, and where it ends; an
/// error reply is its text. Inside an array, an error (a script's) is an element, so the
/// rest is read and the connection stays usable.
fn build(
    buf: &[u8],
    at: usize,
    depth: usize,
) -> Result<(Result<Reply, String>, usize), EngineError> {
    let (head, next) =
        head(buf, at)?.ok_or_else(|| EngineError::Protocol("a reply cut short".into()))?;
    let text = |bytes: &[u8]| {
        String::from_utf8(bytes.to_vec())
            .map_err(|_| EngineError::Protocol("a line that is not UTF-8".into()))
    };
    Ok(match head {
        Head::Status(s) => (Ok(Reply::Status(text(s)?)), next),
        Head::Error(e) => (Err(text(e)?), next),
        Head::Int(n) => (Ok(Reply::Int(number(n, "integer")?)), next),
        Head::Bulk(None) => (Ok(Reply::Bulk(None)), next),
        Head::Bulk(Some(n)) => {
            let data = buf
                .get(next..next + n)
                .ok_or_else(|| EngineError::Protocol("a bulk string cut short".into()))?;
            (Ok(Reply::Bulk(Some(data.to_vec()))), next + n + 2)
        }
        Head::Array(None) => (Ok(Reply::Array(None)), next),
        Head::Array(Some(n)) => {
            if depth >= MAX_DEPTH {
                return Err(EngineError::Protocol("arrays nested too deep".into()));
            }
            let mut items = Vec::with_capacity(n.min(1024));
            let mut end = next;
            for _ in 0..n {
                let (item, e) = build(buf, end, depth + 1)?;
                items.push(item.unwrap_or_else(|e| Reply::Status(format!("ERR {e}"))));
                end = e;
            }
            (Ok(Reply::Array(Some(items))), end)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first reply of `bytes`, sent by an engine that then closes the connection.
    async fn parse(bytes: &[u8]) -> Result<Reply, EngineError> {
        let (ours, mut engine) = tokio::io::duplex(bytes.len().max(1));
        engine.write_all(bytes).await.unwrap();
        drop(engine);
        let mut conn = Connection::over(Box::new(ours), Duration::from_secs(5));
        conn.next_reply().await?.map_err(EngineError::Server)
    }

    #[tokio::test]
    async fn replies_are_read_and_garbage_refused() {
        assert_eq!(parse(b"+OK\r\n").await.unwrap(), Reply::Status("OK".into()));
        assert_eq!(parse(b":42\r\n").await.unwrap(), Reply::Int(42));
        assert_eq!(parse(b"$-1\r\n").await.unwrap(), Reply::Bulk(None));
        assert_eq!(
            parse(b"*2\r\n$3\r\nfoo\r\n:1\r\n").await.unwrap(),
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"foo".to_vec())),
                Reply::Int(1)
            ]))
        );
        assert!(matches!(
            parse(b"-NOSCRIPT x\r\n").await,
            Err(EngineError::Server(e)) if e == "NOSCRIPT x"
        ));
        for bad in [
            &b"$5\r\nab\r\n"[..],
            b"$99999999999\r\n",
            b"*-x\r\n",
            b"?\r\n",
            b"+OK\n",
            b"",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(parse(bad).await.is_err(), "{bad:?}");
        }
        assert!(
            matches!(
                parse(&[b'+'; MAX_LINE + 1]).await,
                Err(EngineError::Protocol(_))
            ),
            "a line that never ends is refused, not waited for"
        );
        assert_eq!(
            encode(&[b"GET", b"k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()
        );
    }

    #[test]
    fn whole_replies_are_read_in_place_and_a_partial_one_is_left() {
        let mut seen = Vec::new();
        let took = read_whole(b"+OK\r\n*2\r\n$1\r\na\r\n:7\r\n$5\r\nab", |reply| {
            seen.push((reply.text(), reply.items().len()));
        })
        .unwrap();
        assert_eq!(took, 20);
        assert_eq!(seen, vec![(Some("OK".to_string()), 0), (None, 2)]);
        assert!(read_whole(b"?\r\n", |_| ()).is_err());
    }

    #[test]
    fn numbers_are_read_to_the_limits_and_anything_else_refused() {
        for (text, n) in [
            (&b"0"[..], 0),
            (b"42", 42),
            (b"-1", -1),
            (b"+7", 7),
            (b"9223372036854775807", i64::MAX),
            (b"-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(
                number(text, "n").unwrap(),
                n,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        for text in [
            &b""[..],
            b"-",
            b"1a",
            b" 1",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"\xff",
        ] {
            assert!(
                number(text, "n").is_err(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    /// Replies that arrive a byte at a time, and several in one read (a pipeline's), are
    /// each read whole and in order; an error inside an array is an element.
    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 99, 1_764_000_000_000, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
            let mut out = Vec::new();
            bulk_number(&mut out, n);
            assert_eq!(
                out,
                format!("${}\r\n{n}\r\n", n.to_string().len()).as_bytes()
            );
        }
        let mut out = Vec::new();
        array_header(&mut out, 12);
        assert_eq!(out, b"*12\r\n");
    }

    #[tokio::test]
    async fn replies_split_or_together_are_read_in_order() {
        let bytes =
            b"*3\r\n$5\r\nhello\r\n-ERR inside\r\n*1\r\n:7\r\n+OK\r\n$-1\r\n-NOSCRIPT x\r\n";
        let (ours, mut engine) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            for byte in bytes {
                engine.write_all(&[*byte]).await.unwrap();
            }
        });
        let mut conn = Connection::over(Box::new(ours), Duration::from_secs(5));
        assert_eq!(
            conn.next_reply().await.unwrap(),
            Ok(Reply::Array(Some(vec![
                Reply::Bulk(Some(b"hello".to_vec())),
                Reply::Status("ERR ERR inside".into()),
                Reply::Array(Some(vec![Reply::Int(7)])),
            ])))
        );
        assert_eq!(
            conn.next_reply().await.unwrap(),
            Ok(Reply::Status("OK".into()))
        );
        assert_eq!(conn.next_reply().await.unwrap(), Ok(Reply::Bulk(None)));
        assert_eq!(
            conn.next_reply().await.unwrap(),
            Err("NOSCRIPT x".to_string())
        );
        writer.await.unwrap();
        assert!(conn.next_reply().await.is_err(), "then the engine is gone");

        let (ours, mut engine) = tokio::io::duplex(bytes.len());
        engine.write_all(bytes).await.unwrap();
        let mut conn = Connection::over(Box::new(ours), Duration::from_secs(5));
        let first = conn.next_reply().await.unwrap();
        assert!(matches!(first, Ok(Reply::Array(Some(ref items))) if items.len() == 3));
        assert_eq!(
            conn.next_reply().await.unwrap(),
            Ok(Reply::Status("OK".into()))
        );
        assert_eq!(
            conn.read.len(),
            bytes.len(),
            "taken in place, nothing moved"
        );
    }

    #[tokio::test]
    async fn a_reply_read_in_place_is_walked_without_building_it() {
        let bytes = b"*3\r\n$5\r\nhello\r\n*2\r\n+OK\r\n$-1\r\n-ERR inside\r\n-NOSCRIPT x\r\n";
        let (ours, mut engine) = tokio::io::duplex(bytes.len());
        engine.write_all(bytes).await.unwrap();
        let mut conn = Connection::over(Box::new(ours), Duration::from_secs(5));
        let frame = conn.call_in_place(&[b"PING"]).await.unwrap();
        assert_eq!(frame.items().len(), 3);
        let items: Vec<Frame<'_>> = frame.items().collect();
        assert_eq!(items[0].bytes(), Some(&b"hello"[..]));
        assert_eq!(items[0].items().len(), 0, "a string has no elements");
        let inner: Vec<Option<&[u8]>> = items[1].items().map(Frame::bytes).collect();
        assert_eq!(inner, [Some(&b"OK"[..]), None]);
        assert_eq!(items[2].bytes(), None, "an error element is no text");
        assert!(matches!(
            conn.call_in_place(&[b"PING"]).await,
            Err(EngineError::Server(e)) if e == "NOSCRIPT x"
        ));
        assert!(
            OwnedReply::read(b"*2\r\n:1\r\n".to_vec()).is_err(),
            "cut short"
        );
        let kept = OwnedReply::read(b"*2\r\n*1\r\n$1\r\na\r\n$1\r\nb\r\n".to_vec()).unwrap();
        let texts: Vec<Option<String>> = kept
            .frame()
            .items()
            .map(|item| match item.items().next() {
                Some(inner) => inner.text(),
                None => item.text(),
            })
            .collect();
        assert_eq!(
            texts,
            [Some("a".to_string()), Some("b".to_string())],
            "siblings past a nested array"
        );
    }
}
