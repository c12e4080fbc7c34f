//! A minimal HTTP/1.1 server for `GET /metrics`: one request per connection, no keep-alive.
//! Enough for Prometheus and curl; anything else gets 404 or 405.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::metrics::Metrics;

const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `address` and serves metrics until `shutdown`.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(address).await?;
    info!(%address, "Metrics endpoint ready at /metrics");
    Ok(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let Ok((mut stream, _)) = accepted else {
                warn!("Metrics accept failed");
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut head = vec![0u8; 4096];
                let mut len = 0;
                // Read until the end of the request head (or a full buffer, or timeout).
                while len < head.len() && !head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut head[len..])).await {
                        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                        Ok(Ok(n)) => len += n,
                    }
                }
                let request_line = String::from_utf8_lossy(&head[..len]);
                let request_line = request_line.lines().next().unwrap_or("");
                let mut parts = request_line.split(' ');
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let (status, content_type, body) = match (method, path) {
                    ("GET", "/metrics") => {
                        ("200 OK", "text/plain; version=0.0.4", metrics.render())
                    }
                    ("GET", _) => (
                        "404 Not Found",
                        "text/plain",
                        "not found; try /metrics\n".to_string(),
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
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    }))
}
