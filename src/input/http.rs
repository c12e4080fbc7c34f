//! The little HTTP/1.1 the journal-upload listener needs, as pure functions over buffers: a
//! request head parser, a chunked-body decoder, a Content-Length body, and response bytes.
//!
//! Owns HTTP syntax only; what a request means (paths, content types, status codes) is
//! `journal`'s business. No I/O here: the caller reads into a `BytesMut` and asks again when
//! told more input is needed, so every piece is testable with in-memory bytes. Hand-written
//! instead of hyper because one endpoint with one method needs about 200 lines, and hyper
//! would bring its own body, connection and executor model along.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Largest request head (request line + headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest chunk-size line or trailer line accepted.
const MAX_LINE: usize = 1024;
/// Most headers in one request.
const MAX_HEADERS: usize = 64;

/// Malformed HTTP (answered with 400 and a closed connection).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HttpError {
    /// The request head is longer than `MAX_HEAD`.
    #[error("request head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The request line or a header line is malformed.
    #[error("malformed request head: {0}")]
    BadHead(&'static str),
    /// A chunk size line or chunk terminator is malformed.
    #[error("malformed chunked body: {0}")]
    BadChunk(&'static str),
    /// The headers do not say unambiguously where the body ends.
    #[error("ambiguous message body: {0}")]
    BadFraming(&'static str),
}

/// A request line and its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The request target without its query string.
    pub path: String,
    /// True for HTTP/1.1 (keep-alive by default), false for HTTP/1.0.
    pub http11: bool,
    /// Header names (lowercased) and values (trimmed), in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection may stay open after the response.
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").map(str::to_ascii_lowercase);
        match connection.as_deref() {
            Some(c) if c.split(',').any(|t| t.trim() == "close") => false,
            Some(c) if c.split(',').any(|t| t.trim() == "keep-alive") => true,
            _ => self.http11,
        }
    }
}

/// Parses a request head from the front of `buf`: `Ok(None)` if it is not complete yet,
/// otherwise the request, with the head removed from `buf`.
pub fn parse_head(buf: &mut BytesMut) -> Result<Option<Request>, HttpError> {
    // Leading empty lines before a request are allowed (RFC 9112 §2.2).
    while buf.starts_with(b"\r\n") {
        buf.advance(2);
    }
    while buf.starts_with(b"\n") {
        buf.advance(1);
    }
    let Some(end) = find_head_end(buf) else {
        return if buf.len() > MAX_HEAD {
            Err(HttpError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    if end.0 > MAX_HEAD {
        return Err(HttpError::HeadTooLarge);
    }
    let head = buf.split_to(end.1);
    let text = std::str::from_utf8(&head[..end.0]).map_err(|_| HttpError::BadHead("not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadHead("request line"));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(HttpError::BadHead("HTTP version")),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) || target.is_empty() {
        return Err(HttpError::BadHead("request line"));
    }
    let mut headers = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            return Err(HttpError::BadHead("obsolete line folding"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::BadHead("header without colon"))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(HttpError::BadHead("header name"));
        }
        if headers.len() == MAX_HEADERS {
            return Err(HttpError::BadHead("too many headers"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let path = target.split('?').next().unwrap_or_default().to_string();
    Ok(Some(Request {
        method: method.to_string(),
        path,
        http11,
        headers,
    }))
}

/// (end of the last header line, end of the head including the empty line).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let limit = buf.len().min(MAX_HEAD + 4);
    let mut i = 0;
    while i < limit {
        if buf[i] == b'\n' {
            if buf[i + 1..].starts_with(b"\r\n") {
                return Some((i, i + 3));
            }
            if buf[i + 1..].starts_with(b"\n") {
                return Some((i, i + 2));
            }
        }
        i += 1;
    }
    None
}

/// What a body decoder yields.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEvent {
    /// Body bytes, in order.
    Data(Bytes),
    /// Nothing decodable in the buffer: read more.
    NeedMore,
    /// The body is complete.
    End,
}

/// How the body of a request is delimited.
#[derive(Debug)]
pub enum Body {
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkState),
    /// `Content-Length`: bytes still to come.
    Length(u64),
}

/// Where a chunked decoder is.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailer,
    /// Done.
    Done,
}

impl Body {
    /// A chunked body.
    pub fn chunked() -> Self {
        Body::Chunked(ChunkState::Size)
    }

    /// How `request`'s body is delimited (RFC 9112 §6.3); None when it has neither
    /// `Transfer-Encoding` nor `Content-Length`. A request with both, with a coding other than
    /// chunked, or with several or malformed lengths is refused: a proxy in front of us could
    /// read its end elsewhere (request smuggling).
    pub fn of(request: &Request) -> Result<Option<Body>, HttpError> {
        let all = |name: &'static str| -> Vec<&str> {
            request
                .headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let (encodings, lengths) = (all("transfer-encoding"), all("content-length"));
        match (encodings.as_slice(), lengths.as_slice()) {
            ([], []) => Ok(None),
            ([_, ..], [_, ..]) => Err(HttpError::BadFraming(
                "Content-Length together with Transfer-Encoding",
            )),
            ([coding], []) if coding.eq_ignore_ascii_case("chunked") => Ok(Some(Body::chunked())),
            ([_, ..], []) => Err(HttpError::BadFraming(
                "only one Transfer-Encoding: chunked is supported",
            )),
            ([], [length]) => {
                let digits = !length.is_empty() && length.bytes().all(|b| b.is_ascii_digit());
                match length.parse::<u64>() {
                    Ok(length) if digits => Ok(Some(Body::Length(length))),
                    _ => Err(HttpError::BadFraming("bad Content-Length")),
                }
            }
            ([], [_, ..]) => Err(HttpError::BadFraming("several Content-Length headers")),
        }
    }

    /// Takes the next piece of body from the front of `buf`.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<BodyEvent, HttpError> {
        match self {
            Body::Length(0) => Ok(BodyEvent::End),
            Body::Length(left) => {
                if buf.is_empty() {
                    return Ok(BodyEvent::NeedMore);
                }
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                Ok(BodyEvent::Data(buf.split_to(n).freeze()))
            }
            Body::Chunked(state) => next_chunked(state, buf),
        }
    }
}

fn next_chunked(state: &mut ChunkState, buf: &mut BytesMut) -> Result<BodyEvent, HttpError> {
    loop {
        match state {
            ChunkState::Done => return Ok(BodyEvent::End),
            ChunkState::Size => {
                let Some(line) = take_line(buf)? else {
                    return Ok(BodyEvent::NeedMore);
                };
                let size = line[..].split(|&b| b == b';').next().unwrap_or_default();
                let size = trim_ows(size);
                if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
                    return Err(HttpError::BadChunk("chunk size"));
                }
                let text =
                    std::str::from_utf8(size).map_err(|_| HttpError::BadChunk("chunk size"))?;
                let size =
                    u64::from_str_radix(text, 16).map_err(|_| HttpError::BadChunk("chunk size"))?;
                *state = if size == 0 {
                    ChunkState::Trailer
                } else {
                    ChunkState::Data(size)
                };
            }
            ChunkState::Data(left) => {
                if buf.is_empty() {
                    return Ok(BodyEvent::NeedMore);
                }
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                if *left == 0 {
                    *state = ChunkState::DataEnd;
                }
                return Ok(BodyEvent::Data(buf.split_to(n).freeze()));
            }
            ChunkState::DataEnd => {
                if buf.starts_with(b"\r\n") {
                    buf.advance(2);
                } else if buf.starts_with(b"\n") {
                    buf.advance(1);
                } else if buf.is_empty() || &buf[..] == b"\r" {
                    return Ok(BodyEvent::NeedMore);
                } else {
                    return Err(HttpError::BadChunk("chunk longer than its size"));
                }
                *state = ChunkState::Size;
            }
            ChunkState::Trailer => {
                let Some(line) = take_line(buf)? else {
                    return Ok(BodyEvent::NeedMore);
                };
                if line.is_empty() {
                    *state = ChunkState::Done;
                }
            }
        }
    }
}

/// One line (without CRLF or LF) from the front of `buf`, if complete.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, HttpError> {
    match buf.iter().take(MAX_LINE + 2).position(|&b| b == b'\n') {
        Some(pos) => {
            let mut line = buf.split_to(pos + 1);
            line.truncate(pos);
            if line.ends_with(b"\r") {
                line.truncate(pos - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(HttpError::BadChunk("line too long")),
        None => Ok(None),
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A complete response with a short text body.
pub fn response(status: u16, body: &str, close: bool) -> Vec<u8> {
    let reason = match status {
        100 => "Continue",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: POST\r\n");
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture() -> Vec<u8> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/captures/journal-upload-request.raw");
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Decodes a whole body fed `piece` bytes at a time.
    fn decode(mut body: Body, data: &[u8], piece: usize) -> Result<(Vec<u8>, bool), HttpError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut chunks = data.chunks(piece);
        loop {
            match body.next(&mut buf)? {
                BodyEvent::Data(d) => out.extend_from_slice(&d),
                BodyEvent::End => return Ok((out, true)),
                BodyEvent::NeedMore => match chunks.next() {
                    Some(c) => buf.extend_from_slice(c),
                    None => return Ok((out, false)),
                },
            }
        }
    }

    #[test]
    fn real_upload_request_head_and_chunked_body() {
        let data = capture();
        let mut buf = BytesMut::from(&data[..]);
        let req = parse_head(&mut buf).unwrap().unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/upload");
        assert!(req.http11 && req.keep_alive());
        assert_eq!(
            req.header("content-type"),
            Some("application/vnd.fdo.journal")
        );
        assert_eq!(req.header("transfer-encoding"), Some("chunked"));
        assert_eq!(req.header("expect"), Some("100-continue"));
        let body = buf.to_vec();
        for piece in [1, 2, 5, 100, body.len()] {
            let (decoded, complete) = decode(Body::chunked(), &body, piece).unwrap();
            assert!(complete, "piece {piece}");
            assert_eq!(decoded.len(), 0x1a8);
            assert!(decoded.starts_with(b"__CURSOR=s=") && decoded.ends_with(b"ssh2\n\n"));
        }
    }

    #[test]
    fn head_arrives_in_pieces() {
        let data = capture();
        let mut buf = BytesMut::new();
        for (i, b) in data.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            if let Some(req) = parse_head(&mut buf).unwrap() {
                assert_eq!(req.path, "/upload");
                assert!(buf.is_empty(), "the head ends at byte {i}");
                return;
            }
        }
        panic!("head never complete");
    }

    #[test]
    fn bad_heads() {
        for head in [
            &b"POST /upload\r\n\r\n"[..],
            b"POST /upload HTTP/2.0\r\n\r\n",
            b"post /upload HTTP/1.1\r\n\r\n",
            b"POST /upload HTTP/1.1\r\nNoColon\r\n\r\n",
            b"POST /upload HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            b"\xff\xfe HTTP/1.1\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(head);
            assert!(
                matches!(parse_head(&mut buf), Err(HttpError::BadHead(_))),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        let mut huge = BytesMut::from(&b"POST /upload HTTP/1.1\r\nX: "[..]);
        huge.extend_from_slice(&vec![b'a'; MAX_HEAD]);
        assert_eq!(parse_head(&mut huge), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn connection_header_and_http10() {
        let mut buf =
            BytesMut::from(&b"POST /upload?x=1 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"[..]);
        let req = parse_head(&mut buf).unwrap().unwrap();
        assert_eq!(req.path, "/upload");
        assert!(req.keep_alive());
        let mut buf = BytesMut::from(&b"POST / HTTP/1.1\r\nConnection: close\r\n\r\n"[..]);
        assert!(!parse_head(&mut buf).unwrap().unwrap().keep_alive());
    }

    #[test]
    fn chunk_extensions_trailers_and_bare_lf() {
        let body = b"3;name=value\r\nabc\r\n2\nde\n0\r\nTrailer: x\r\n\r\nNEXT";
        let (decoded, complete) = decode(Body::chunked(), body, body.len()).unwrap();
        assert!(complete);
        assert_eq!(decoded, b"abcde");
    }

    #[test]
    fn bad_chunks() {
        for body in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcdef\r\n0\r\n\r\n",
            b"\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            assert!(
                matches!(
                    decode(Body::chunked(), body, 3),
                    Err(HttpError::BadChunk(_))
                ),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let long = vec![b'1'; MAX_LINE + 10];
        assert!(decode(Body::chunked(), &long, 100).is_err());
    }

    #[test]
    fn truncated_chunked_body_is_incomplete() {
        let (decoded, complete) = decode(Body::chunked(), b"5\r\nabc", 2).unwrap();
        assert_eq!((decoded.as_slice(), complete), (&b"abc"[..], false));
    }

    #[test]
    fn content_length_body_stops_at_its_length() {
        let (decoded, complete) = decode(Body::Length(4), b"abcdef", 3).unwrap();
        assert_eq!((decoded.as_slice(), complete), (&b"abcd"[..], true));
    }

    #[test]
    fn body_framing_refuses_what_a_proxy_could_read_differently() {
        let head = |headers: &str| {
            let mut buf =
                BytesMut::from(format!("POST /upload HTTP/1.1\r\n{headers}\r\n").as_str());
            parse_head(&mut buf).unwrap().unwrap()
        };
        let body = |headers: &str| Body::of(&head(headers));
        assert!(matches!(body(""), Ok(None)));
        assert!(matches!(
            body("Content-Length: 12\r\n"),
            Ok(Some(Body::Length(12)))
        ));
        assert!(matches!(
            body("Transfer-Encoding: Chunked\r\n"),
            Ok(Some(Body::Chunked(_)))
        ));
        for refused in [
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "Content-Length: +5\r\n",
            "Content-Length: 5 5\r\n",
            "Content-Length: \r\n",
        ] {
            assert!(
                matches!(body(refused), Err(HttpError::BadFraming(_))),
                "{refused:?} accepted"
            );
        }
    }

    #[test]
    fn responses() {
        let r = String::from_utf8(response(202, "OK.\n", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 202 Accepted\r\n"));
        assert!(r.ends_with("Content-Length: 4\r\n\r\nOK.\n"));
        let r = String::from_utf8(response(415, "", true)).unwrap();
        assert!(r.contains("Connection: close\r\n"));
    }
}
