//! A minimal HTTP client for notifiers and feeds: one request per connection, over TCP or TLS
//! (rustls with the Mozilla roots of `webpki-roots`). A POST (a delivery) reads only the
//! answer's status; a GET (a feed) is sent as HTTP/1.0, so the answer comes whole, without
//! chunking, and is read up to a size cap.
//!
//! Owns the wire format. A leaf: it knows nothing of bans. Header values come from config or are computed
//! (signatures, lengths); any that holds CR or LF is refused rather than sent, so nothing can
//! add a header or a request.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::HttpUrl;

/// The longest status line read.
const STATUS_LINE_CAP: usize = 8 * 1024;

/// A delivery that did not get an answer.
#[derive(Debug, Error)]
pub enum HttpError {
    /// Connecting, TLS, writing or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No answer within the time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer did not start with an HTTP status line.
    #[error("the answer is not HTTP: {0:?}")]
    NotHttp(String),
    /// A header value would have broken the request.
    #[error("header {0} holds a line break; not sent")]
    Header(String),
    /// The answer's body is over the cap.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
}

/// A connection to the server, plain or TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// Connects to `url`'s server (TLS for https).
async fn open(url: &HttpUrl) -> Result<Box<dyn Stream>, HttpError> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port)).await?;
    if !url.tls {
        return Ok(Box::new(tcp));
    }
    let name = rustls_pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| std::io::Error::other(format!("server name {}: {e}", url.host)))?;
    Ok(Box::new(
        crate::tls_client::connector(None)?
            .connect(name, tcp)
            .await?,
    ))
}

/// The request line and headers, ending with the blank line.
fn head(
    request_line: &str,
    url: &HttpUrl,
    fixed: &str,
    headers: &[(&str, String)],
) -> Result<String, HttpError> {
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let mut head = format!(
        "{request_line}\r\nHost: {host}:{}\r\nUser-Agent: syslog2ban/{}\r\n{fixed}",
        url.port,
        env!("CARGO_PKG_VERSION"),
    );
    for (name, value) in headers {
        if value.contains(['\r', '\n']) {
            return Err(HttpError::Header((*name).to_string()));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    Ok(head)
}

/// POSTs `body` to `url` with `headers`; the answer's status code.
pub async fn post(
    url: &HttpUrl,
    headers: &[(&str, String)],
    body: &[u8],
    limit: Duration,
) -> Result<u16, HttpError> {
    let fixed = format!("Content-Length: {}\r\nConnection: close\r\n", body.len());
    let mut bytes =
        head(&format!("POST {} HTTP/1.1", url.path), url, &fixed, headers)?.into_bytes();
    bytes.extend_from_slice(body);
    let exchange = async { exchange(open(url).await?, &bytes).await };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or(Err(HttpError::Timeout(limit)))
}

/// An answer to a GET.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body, up to the cap.
    pub body: Vec<u8>,
}

impl Answer {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// GETs `url` with `headers` (HTTP/1.0); the answer with at most `max_body` bytes of body
/// (a longer one is an error: the caller keeps what it had).
pub async fn get(
    url: &HttpUrl,
    headers: &[(&str, String)],
    limit: Duration,
    max_body: usize,
) -> Result<Answer, HttpError> {
    let request = head(&format!("GET {} HTTP/1.0", url.path), url, "", headers)?;
    let fetch = async { read_answer(open(url).await?, request.as_bytes(), max_body).await };
    tokio::time::timeout(limit, fetch)
        .await
        .unwrap_or(Err(HttpError::Timeout(limit)))
}

async fn read_answer(
    mut stream: Box<dyn Stream>,
    request: &[u8],
    max_body: usize,
) -> Result<Answer, HttpError> {
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let cap = max_body + STATUS_LINE_CAP * 8;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(n) => n,
            // A TLS peer closing without close_notify still sent the whole answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        if data.len() > cap {
            return Err(HttpError::TooLarge(max_body));
        }
    }
    parse_answer(&data, max_body)
}

/// An answer read to its end: status, headers and a body of at most `max_body` bytes.
pub fn parse_answer(data: &[u8], max_body: usize) -> Result<Answer, HttpError> {
    let split = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| HttpError::NotHttp("no end of headers".into()))?;
    let status = status(&data[..split])?;
    let head = String::from_utf8_lossy(&data[..split]).into_owned();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = data[split + 4..].to_vec();
    if body.len() > max_body {
        return Err(HttpError::TooLarge(max_body));
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn exchange(mut stream: Box<dyn Stream>, request: &[u8]) -> Result<u16, HttpError> {
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < STATUS_LINE_CAP {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    status(&head)
}

/// The code of `HTTP/1.x NNN reason`.
fn status(head: &[u8]) -> Result<u16, HttpError> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line).trim_end().to_string();
    let mut words = line.split(' ');
    match (
        words.next(),
        words.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") && (100..600).contains(&code) => Ok(code),
        _ => Err(HttpError::NotHttp(line.chars().take(80).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn status_lines_are_read_and_anything_else_refused() {
        assert_eq!(status(b"HTTP/1.1 204 No Content\r\n").unwrap(), 204);
        assert_eq!(status(b"HTTP/1.0 500 x\r\nA: b\r\n").unwrap(), 500);
        assert!(status(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(status(b"").is_err());
    }

    #[tokio::test]
    async fn a_post_carries_its_headers_and_body_and_refuses_line_breaks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.ends_with(b"{\"a\":1}") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/hook?x=1")).unwrap();
        let code = post(
            &url,
            &[("Content-Type", "application/json".into())],
            b"{\"a\":1}",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(code, 202);
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /hook?x=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nContent-Length: 7\r\n"), "{request}");
        assert!(
            request.contains("\r\nContent-Type: application/json\r\n"),
            "{request}"
        );
        let refused = post(
            &url,
            &[("X-Evil", "a\r\nInjected: yes".into())],
            b"{}",
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(refused, Err(HttpError::Header(_))));
    }
}
