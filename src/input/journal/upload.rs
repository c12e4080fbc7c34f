//! journal-upload's HTTP exchange: requests on one connection until the peer closes, an
//! error or idle; each `POST /upload` body is fed to the export parser, and every error gets
//! its status and a closed connection.
//!
//! Owns statuses and the request/response rhythm (100-continue, keep-alive, lingering after
//! an error); HTTP syntax is `input::http`'s, entries are the parent module's.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::super::http::{self, Body, BodyEvent, Request};
use super::conn::{read_more, Conn, Gone, JournalShared};
use super::export::{JournalError, Parser};
use crate::input::message::{InputContext, Origin};
use crate::metrics::{ListenerMetrics, Metrics};

/// After an error response: how long, and how many bytes, the rest of the request is read and
/// dropped before closing, so the client sees the response instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// How a request ended.
enum Outcome {
    /// 202 sent; the connection may serve another request.
    Done { keep_alive: bool },
    /// Answer this status with `Connection: close`, then close.
    Reject(u16, String),
    /// The peer went away mid-request (or the pipeline did): just close.
    Closed,
}

/// Serves one `journal-upload` connection: requests until the peer closes, an error, or idle.
pub async fn serve_upload<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    origin: Origin,
    shared: &JournalShared,
    counters: &ListenerMetrics,
    ctx: &InputContext,
) {
    let conn = Conn {
        origin,
        shared,
        counters,
        ctx,
    };
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let request = loop {
            match http::parse_head(&mut buf) {
                Ok(Some(request)) => break Ok(request),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            if !read_more(&mut stream, &mut buf, &conn).await {
                return;
            }
        };
        let outcome = match request {
            Ok(request) => upload(&mut stream, &mut buf, &request, &conn).await,
            Err(e) => Outcome::Reject(400, format!("{e}\n")),
        };
        match outcome {
            Outcome::Done { keep_alive: true } => continue,
            Outcome::Done { keep_alive: false } | Outcome::Closed => return,
            Outcome::Reject(status, text) => {
                Metrics::inc(&counters.rejected);
                debug!(listener = %counters.label, %origin, status, reason = %text.trim_end(), "Upload refused");
                if stream
                    .write_all(&http::response(status, &text, true))
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = stream.shutdown().await;
                linger(&mut stream).await;
                return;
            }
        }
    }
}

/// Reads and drops what the client still sends (bounded), so closing does not reset the
/// connection before the client has read the error response.
async fn linger<S: AsyncRead + Unpin>(stream: &mut S) {
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut scratch = vec![0u8; 16 * 1024];
    let mut total = 0;
    while total < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => return,
        }
    }
}

/// One request whose head has been read.
async fn upload<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    request: &Request,
    conn: &Conn<'_>,
) -> Outcome {
    if request.path != "/upload" {
        return Outcome::Reject(404, "Not found.\n".into());
    }
    if request.method != "POST" {
        return Outcome::Reject(405, "Only POST is supported.\n".into());
    }
    let content_type = request
        .header("content-type")
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !content_type.is_some_and(|t| t.eq_ignore_ascii_case("application/vnd.fdo.journal")) {
        return Outcome::Reject(
            415,
            "Content-Type: application/vnd.fdo.journal is required.\n".into(),
        );
    }
    let mut body = match Body::of(request) {
        Ok(Some(body)) => body,
        Ok(None) => {
            return Outcome::Reject(
                400,
                "A chunked body or a Content-Length is required.\n".into(),
            )
        }
        Err(e) => return Outcome::Reject(400, format!("{e}\n")),
    };
    if request
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        && stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return Outcome::Closed;
    }
    let mut parser = Parser::new(conn.shared.limits);
    loop {
        let event = match body.next(buf) {
            Ok(event) => event,
            Err(e) => return Outcome::Reject(400, format!("{e}\n")),
        };
        match event {
            BodyEvent::Data(data) => match conn.feed(&mut parser, &data).await {
                Err(Gone) => return Outcome::Closed,
                Ok(Err(e)) => return reject_journal(&e),
                Ok(Ok(())) => {}
            },
            BodyEvent::NeedMore => {
                if !read_more(stream, buf, conn).await {
                    return Outcome::Closed;
                }
            }
            BodyEvent::End => break,
        }
    }
    match parser.finish() {
        Ok(Some(entry)) => {
            if conn.deliver(entry).await.is_err() {
                return Outcome::Closed;
            }
        }
        Ok(None) => {}
        Err(e) => return reject_journal(&e),
    }
    let keep_alive = request.keep_alive();
    if stream
        .write_all(&http::response(202, "OK.\n", !keep_alive))
        .await
        .is_err()
    {
        return Outcome::Closed;
    }
    Outcome::Done { keep_alive }
}

/// Malformed export data. (Size is never refused: fields over a limit are skipped, because
/// an uploader that gets an error resends the same entry forever.)
fn reject_journal(e: &JournalError) -> Outcome {
    Outcome::Reject(400, format!("{e}\n"))
}
