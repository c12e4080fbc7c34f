//! A minimal HTTP/1.1 server for `GET /metrics`: one request per connection, no keep-alive.
//! Enough for Prometheus and curl; anything else gets 404 or 405.
//!
//! A scraper needs one connection at a time, so the endpoint keeps few: at most
//! `MAX_CONNECTIONS`, `MAX_PER_PEER` from one host, each with a deadline, so idle
//! connections cannot lock Prometheus out or use up the daemon's file descriptors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::input::http;
use crate::input::peers::PeerTable;
use crate::input::AcceptBackoff;
use crate::metrics::Metrics;
use crate::throttle::Throttle;
use crate::warn_throttled;

/// Time to send the request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the client to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 32;
/// Connections one host may hold.
const MAX_PER_PEER: usize = 4;

/// Binds `address` and serves metrics until `shutdown`.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(address).await?;
    info!(%address, "Metrics endpoint ready at /metrics");
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let peers = PeerTable::new(MAX_PER_PEER);
    let warnings = Throttle::new(5, Duration::from_secs(60));
    Ok(tokio::spawn(async move {
        let mut backoff = AcceptBackoff::default();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (mut stream, peer) = match accepted {
                Ok(accepted) => {
                    backoff.succeeded();
                    accepted
                }
                Err(e) => {
                    warn_throttled!(warnings, error = %e, "Metrics accept failed");
                    backoff.failed(&shutdown).await;
                    continue;
                }
            };
            // Beyond the limits the connection is closed at once (dropped).
            let Some(slot) = peers.take(peer.ip()) else {
                continue;
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let _held = (slot, permit);
                let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
                let mut buf = BytesMut::with_capacity(1024);
                // The request head, read with the same parser as journal-upload's.
                let request = loop {
                    match http::parse_head(&mut buf) {
                        Ok(Some(request)) => break Some(request),
                        Ok(None) => {}
                        Err(_) => break None,
                    }
                    match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return,
                    }
                };
                let (method, path) = request
                    .as_ref()
                    .map_or(("", ""), |r| (r.method.as_str(), r.path.as_str()));
                let (status, content_type, body) = match (method, path) {
                    // Rendering reads /proc/net/udp (the UDP listeners' drops): off the
                    // async workers, which carry ingest.
                    ("GET", "/metrics") => {
                        match tokio::task::spawn_blocking(move || metrics.render()).await {
                            Ok(text) => ("200 OK", "text/plain; version=0.0.4", text),
                            Err(_) => (
                                "500 Internal Server Error",
                                "text/plain",
                                "the metrics could not be rendered\n".to_string(),
                            ),
                        }
                    }
                    ("GET", _) => (
                        "404 Not Found",
                        "text/plain",
                        "not found; try /metrics\n".to_string(),
                    ),
                    ("", _) => (
                        "400 Bad Request",
                        "text/plain",
                        "malformed request\n".to_string(),
                    ),
                    _ => (
                        "405 Method Not Allowed",
                        "text/plain",
                        "only GET\n".to_string(),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
                    stream.write_all(response.as_bytes()).await?;
                    stream.shutdown().await
                })
                .await;
            });
        }
    }))
}
