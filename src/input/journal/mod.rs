//! Journal listeners: `journal-upload` (systemd-journal-upload's HTTP protocol, `POST /upload`)
//! and `journal-stream` (the same Journal Export Format over plain TCP, journald's
//! `ForwardToSocket=`). Both turn a byte stream into journal entries on the pipeline's channel.
//!
//! The export format is these transports' framing: `export` reads a byte stream into entries
//! (name/value fields), which go on as `Payload::Journal`; what an entry means (message,
//! program, time) is read later by `parse::journal`, as a syslog frame's header is by the
//! syslog parsers. The HTTP syntax is in `http`, journal-upload's exchange in `upload`, and a
//! connection's delivery (limits, dropping resent entries) in `conn`; this file holds the
//! journal-stream protocol. Nothing here decides anything about jails or bans.
//!
//! Status codes follow systemd-journal-remote: 202 accepted; 400 malformed (request head,
//! chunked encoding, export format, or a body that is neither chunked nor has a length); 404
//! any path but `/upload`; 405 any method but POST; 415 a Content-Type other than
//! `application/vnd.fdo.journal`. A field over `max_field` (or beyond the entry's limits) is
//! skipped and counted as `oversize`, and its entry accepted without it: a 413 would make
//! systemd-journal-upload resend that entry forever and stall the host's whole upload. After
//! any error the response says `Connection: close` and the connection closes; the listener goes
//! on serving.

use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::message::{InputContext, Origin};
use crate::metrics::{ListenerMetrics, Metrics};
use export::Parser;

mod conn;
pub mod export;
mod upload;

use conn::{read_more, Conn, Gone};
pub use conn::{
    shared_key, Dedupe, JournalShared, Protocol, DEDUPE_CAP, DEDUPE_WINDOW, MAX_FIELDS,
};
pub use upload::serve_upload;

/// Serves one `journal-stream` connection: the export format until end of stream.
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    shared: &JournalShared,
    counters: &ListenerMetrics,
    ctx: &InputContext,
) {
    let conn = Conn {
        origin: Origin::Peer(peer),
        shared,
        counters,
        ctx,
    };
    let mut parser = Parser::new(shared.limits);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let data = buf.split().freeze();
        match conn.feed(&mut parser, &data).await {
            Err(Gone) => return,
            Ok(Err(e)) => {
                Metrics::inc(&counters.rejected);
                debug!(listener = %counters.label, %peer, error = %e, "Journal stream refused");
                return;
            }
            Ok(Ok(())) => {}
        }
        if !read_more(&mut stream, &mut buf, &conn).await {
            break;
        }
    }
    match parser.finish() {
        Ok(Some(entry)) => {
            let _ = conn.deliver(entry).await;
        }
        Ok(None) => {}
        Err(e) => {
            Metrics::inc(&counters.rejected);
            debug!(listener = %counters.label, %peer, error = %e, "Journal stream ended inside a field");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::message::Payload;
    use export::Entry;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use crate::testing::capture;

    struct Harness {
        shared: JournalShared,
        counters: ListenerMetrics,
        ctx: InputContext,
        rx: mpsc::Receiver<crate::input::Batch>,
    }

    fn harness(protocol: Protocol) -> Harness {
        let (tx, rx) = mpsc::channel(64);
        Harness {
            shared: JournalShared::new(protocol, 4096, 16 * 1024, Duration::from_secs(5)),
            counters: ListenerMetrics::default(),
            ctx: InputContext {
                tx: tx.into(),
                metrics: Arc::default(),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
                trust_hostname: false,
            },
            rx,
        }
    }

    const PEER: &str = "198.51.100.10:40000";

    impl Harness {
        /// Runs one upload connection over an in-memory pipe: writes `input`, half-closes, and
        /// returns everything the server answered.
        async fn upload(&self, input: &[u8]) -> String {
            let (mut client, server) = tokio::io::duplex(1 << 20);
            let origin = Origin::Peer(PEER.parse().unwrap());
            let serve = serve_upload(server, origin, &self.shared, &self.counters, &self.ctx);
            let talk = async {
                client.write_all(input).await.unwrap();
                client.shutdown().await.unwrap();
                let mut out = Vec::new();
                client.read_to_end(&mut out).await.unwrap();
                out
            };
            let ((), out) = tokio::join!(serve, talk);
            String::from_utf8_lossy(&out).into_owned()
        }

        fn records(&mut self) -> Vec<Entry> {
            let mut out = Vec::new();
            while let Ok(batch) = self.rx.try_recv() {
                for m in batch {
                    match m.payload {
                        Payload::Journal(entry) => out.push(*entry),
                        Payload::Frame(_) => panic!("journal input sent a frame"),
                    }
                }
            }
            out
        }
    }

    fn statuses(response: &str) -> Vec<u16> {
        response
            .split("HTTP/1.1 ")
            .skip(1)
            .filter_map(|r| r.get(..3)?.parse().ok())
            .collect()
    }

    fn request(headers: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!("POST /upload HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes();
        out.extend_from_slice(body);
        out
    }

    fn chunked(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in body.chunks(100) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    const JOURNAL: &str = "Content-Type: application/vnd.fdo.journal\r\n";

    #[tokio::test]
    async fn real_request_gets_100_continue_then_202() {
        let mut h = harness(Protocol::Upload);
        let response = h.upload(&capture("journal-upload-request.raw")).await;
        assert_eq!(statuses(&response), vec![100, 202], "{response}");
        assert!(response.ends_with("OK.\n"));
        let records = h.records();
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].text("SYSLOG_IDENTIFIER").as_deref(),
            Some("sshd")
        );
        assert_eq!(
            records[0].text("MESSAGE").as_deref(),
            Some("Failed password for root from 203.0.113.5 port 4242 ssh2")
        );
    }

    #[tokio::test]
    async fn keep_alive_serves_several_requests_and_drops_resent_entries() {
        let mut h = harness(Protocol::Upload);
        let body = capture("sample.export");
        let cursor = |n: u32, e: &[u8]| [format!("__CURSOR=s=x;i={n}\n").as_bytes(), e].concat();
        // Three entries, each with a cursor; the second request resends all three plus one.
        let text = std::str::from_utf8(&body).unwrap();
        let parts: Vec<&str> = text.split_inclusive("\n\n").collect();
        assert_eq!(parts.len(), 3);
        let first: Vec<u8> = parts
            .iter()
            .enumerate()
            .flat_map(|(i, p)| cursor(i as u32, p.as_bytes()))
            .collect();
        let mut second = first.clone();
        second.extend(cursor(3, parts[0].as_bytes()));
        let mut input = request(
            &format!("{JOURNAL}Transfer-Encoding: chunked\r\n"),
            &chunked(&first),
        );
        input.extend(request(
            &format!("{JOURNAL}Content-Length: {}\r\n", second.len()),
            &second,
        ));
        let response = h.upload(&input).await;
        assert_eq!(statuses(&response), vec![202, 202], "{response}");
        assert_eq!(h.records().len(), 4, "3 new, then 3 repeats and 1 new");
        assert_eq!(Metrics::get(&h.counters.duplicates), 3);
        assert_eq!(Metrics::get(&h.counters.messages), 4);
    }

    #[tokio::test]
    async fn an_oversize_field_is_skipped_and_its_entry_accepted() {
        let mut h = harness(Protocol::Upload);
        // systemd-coredump logs the dump itself as a binary field of its entry.
        let mut body = b"COREDUMP\n".to_vec();
        body.extend_from_slice(&100_000u64.to_le_bytes());
        body.extend_from_slice(&vec![0u8; 100_000]);
        body.extend_from_slice(b"\nSYSLOG_IDENTIFIER=sshd\nMESSAGE=");
        body.extend_from_slice(b"Failed password for root from 203.0.113.6 port 1 ssh2\n\n");
        let te = format!("{JOURNAL}Transfer-Encoding: chunked\r\n");
        let response = h.upload(&request(&te, &chunked(&body))).await;
        assert_eq!(statuses(&response), vec![202], "{response}");
        let records = h.records();
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].text("SYSLOG_IDENTIFIER").as_deref(),
            Some("sshd")
        );
        assert!(records[0].text("MESSAGE").unwrap().contains("203.0.113.6"));
        assert_eq!(Metrics::get(&h.counters.oversize), 1);
    }

    #[tokio::test]
    async fn errors_get_their_status_and_close_the_connection() {
        let good = capture("sample.export");
        let mut bad_length = b"MESSAGE\n".to_vec();
        bad_length.extend_from_slice(&3u64.to_le_bytes());
        bad_length.extend_from_slice(b"hello\n\n");
        let mut huge = b"MESSAGE\n".to_vec();
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        let mut truncated = b"MESSAGE\n".to_vec();
        truncated.extend_from_slice(&50u64.to_le_bytes());
        truncated.extend_from_slice(b"only a few bytes");
        let te = format!("{JOURNAL}Transfer-Encoding: chunked\r\n");
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            (
                "bad binary length",
                request(&te, &chunked(&bad_length)),
                400,
            ),
            // A length past the end of the body: the body ends inside the field.
            ("huge binary length", request(&te, &chunked(&huge)), 400),
            (
                "truncated binary field",
                request(&te, &chunked(&truncated)),
                400,
            ),
            (
                "wrong content type",
                request(
                    "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n",
                    &chunked(&good),
                ),
                415,
            ),
            (
                "no content type",
                request("Transfer-Encoding: chunked\r\n", &chunked(&good)),
                415,
            ),
            ("neither chunked nor length", request(JOURNAL, &good), 400),
            (
                "unchunked garbage",
                request(&te, b"this is not chunked\r\n\r\n"),
                400,
            ),
            (
                "gzip",
                request(&format!("{JOURNAL}Transfer-Encoding: gzip\r\n"), &good),
                400,
            ),
            // Request smuggling: a proxy could take either header as the body's end.
            (
                "Content-Length with Transfer-Encoding",
                request(
                    &format!("{te}Content-Length: {}\r\n", chunked(&good).len()),
                    &chunked(&good),
                ),
                400,
            ),
            ("garbage head", b"\x16\x03\x01 hello\r\n\r\n".to_vec(), 400),
            ("other path", b"POST /x HTTP/1.1\r\n\r\n".to_vec(), 404),
            ("GET", b"GET /upload HTTP/1.1\r\n\r\n".to_vec(), 405),
        ];
        for (what, mut input, status) in cases {
            let mut h = harness(Protocol::Upload);
            // A good request after the bad one on the same connection is not served: the
            // connection closes after an error.
            input.extend(request(&te, &chunked(&good)));
            let response = h.upload(&input).await;
            assert_eq!(statuses(&response), vec![status], "{what}: {response}");
            assert!(response.contains("Connection: close"), "{what}");
            assert!(h.records().is_empty(), "{what}: nothing delivered");
            assert_eq!(Metrics::get(&h.counters.rejected), 1, "{what}");
        }
    }

    #[tokio::test]
    async fn expect_100_is_not_sent_when_the_request_is_refused() {
        let h = harness(Protocol::Upload);
        let response = h
            .upload(&request(
                "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n",
                b"",
            ))
            .await;
        assert_eq!(statuses(&response), vec![415]);
    }

    #[tokio::test]
    async fn stream_delivers_entries_and_stops_at_malformed_input() {
        let mut h = harness(Protocol::Stream);
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let peer: SocketAddr = PEER.parse().unwrap();
        let mut data = capture("sample.export");
        data.extend(capture("bin.export"));
        data.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        data.extend(capture("sample.export"));
        let serve = serve_stream(server, peer, &h.shared, &h.counters, &h.ctx);
        let talk = async {
            client.write_all(&data).await.unwrap();
            client.shutdown().await.unwrap();
        };
        tokio::join!(serve, talk);
        let records = h.records();
        assert_eq!(records.len(), 4, "3 + 1 entries before the garbage");
        assert_eq!(Metrics::get(&h.counters.rejected), 1);
    }
}
