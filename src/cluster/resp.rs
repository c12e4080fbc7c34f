//! A minimal client of the Redis serialization protocol (RESP2), which Valkey and Redis speak:
//! one connection, one command at a time, over TCP or TLS, with AUTH and SELECT.
//!
//! Owns the wire format and its limits. The engine's replies are network input: sizes are
//! capped and anything malformed is an error, never a panic. A call that times out leaves the
//! connection in an unknown state; the caller drops it and connects again.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
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

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// One connection to the engine.
pub struct Connection {
    stream: BufReader<Box<dyn Stream>>,
    timeout: Duration,
}

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
        let mut conn = Connection {
            stream: BufReader::new(stream),
            timeout,
        };
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
        let timeout = self.timeout;
        let exchange = async {
            self.stream.get_mut().write_all(bytes).await?;
            let mut replies = Vec::with_capacity(commands);
            for _ in 0..commands {
                match read_reply(&mut self.stream, 0).await {
                    Err(EngineError::Server(e)) => replies.push(Err(EngineError::Server(e))),
                    other => replies.push(Ok(other?)),
                }
            }
            Ok(replies)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| EngineError::Timeout(timeout))?
    }

    async fn exchange(&mut self, args: &[&[u8]]) -> Result<Reply, EngineError> {
        self.stream.get_mut().write_all(&encode(args)).await?;
        read_reply(&mut self.stream, 0).await
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

/// Appends the header of a command of `n` arguments (each then written with [`bulk`]).
pub fn array_header(out: &mut Vec<u8>, n: usize) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "*{n}\r\n");
}

/// Appends one argument as a bulk string.
pub fn bulk(out: &mut Vec<u8>, arg: &[u8]) {
    use std::io::Write as _;
    let _ = write!(out, "${}\r\n", arg.len());
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<String, EngineError> {
    let mut line = Vec::new();
    let n = (&mut *reader)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Err(EngineError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the engine closed the connection",
        )));
    }
    if !line.ends_with(b"\r\n") {
        return Err(EngineError::Protocol("a line without CRLF".into()));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| EngineError::Protocol("a line that is not UTF-8".into()))
}

use tokio::io::AsyncBufRead;

fn length(text: &str, cap: usize) -> Result<Option<usize>, EngineError> {
    let n: i64 = text
        .parse()
        .map_err(|_| EngineError::Protocol(format!("bad length {text:?}")))?;
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

/// Reads one reply; `depth` is its nesting.
fn read_reply<'a, R: AsyncBufRead + Unpin + Send>(
    reader: &'a mut R,
    depth: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply, EngineError>> + Send + 'a>> {
    Box::pin(async move {
        let line = read_line(reader).await?;
        let mut chars = line.chars();
        let kind = chars.next();
        let rest = chars.as_str();
        match kind {
            Some('+') => Ok(Reply::Status(rest.to_string())),
            Some('-') => Err(EngineError::Server(rest.to_string())),
            Some(':') => rest
                .parse()
                .map(Reply::Int)
                .map_err(|_| EngineError::Protocol(format!("bad integer {rest:?}"))),
            Some('$') => match length(rest, MAX_BULK)? {
                None => Ok(Reply::Bulk(None)),
                Some(n) => {
                    let mut data = vec![0u8; n + 2];
                    reader.read_exact(&mut data).await?;
                    if !data.ends_with(b"\r\n") {
                        return Err(EngineError::Protocol("a bulk string without CRLF".into()));
                    }
                    data.truncate(n);
                    Ok(Reply::Bulk(Some(data)))
                }
            },
            Some('*') => {
                if depth >= MAX_DEPTH {
                    return Err(EngineError::Protocol("arrays nested too deep".into()));
                }
                match length(rest, MAX_ARRAY)? {
                    None => Ok(Reply::Array(None)),
                    Some(n) => {
                        let mut items = Vec::with_capacity(n.min(1024));
                        for _ in 0..n {
                            // An error inside an array (a script's) is an element, not the
                            // end of the reply: read the rest so the connection stays usable.
                            match read_reply(reader, depth + 1).await {
                                Ok(item) => items.push(item),
                                Err(EngineError::Server(e)) => {
                                    items.push(Reply::Status(format!("ERR {e}")))
                                }
                                Err(e) => return Err(e),
                            }
                        }
                        Ok(Reply::Array(Some(items)))
                    }
                }
            }
            _ => Err(EngineError::Protocol(format!(
                "unknown reply type in {:?}",
                line.chars().take(40).collect::<String>()
            ))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> Result<Reply, EngineError> {
        let mut reader = BufReader::new(bytes);
        read_reply(&mut reader, 0).await
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
        assert_eq!(
            encode(&[b"GET", b"k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()
        );
    }
}
