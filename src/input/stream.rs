//! Stream listeners: TCP and TLS syslog (RFC 6587 framing, RFC 5425) and the journal
//! listeners' connections. Accepts within the limits (`max_connections`, per peer), closes
//! connections that never talk (`handshake_timeout`), runs the TLS handshake and the client
//! checks, then hands the connection to its protocol: syslog framing here, the journal
//! protocols in `journal`.
//!
//! Owns accepting, connection limits, timeouts and frame boundaries; it never reads what a
//! frame says.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, Instrument};

use super::framing::{FrameError, Framer};
use super::journal::{self, JournalShared, Protocol};
use super::message::{allowed, message, message_at, InputContext, Origin, Payload, SharedTls};
use super::peers::PeerTable;
use super::tls;
use crate::config::ConnectionLimits;
use crate::metrics::{ListenerMetrics, Metrics};
use crate::throttle::Throttle;
use crate::warn_throttled;

/// Warnings a peer can cause (failed handshakes, refused clients) per listener and minute.
const PEER_WARNINGS_PER_MINUTE: u32 = 10;
/// Longest pause after a failed accept (EMFILE: wait for connections to close).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(super) struct TcpLimits {
    max_frame: usize,
    limits: ConnectionLimits,
    connections: Arc<Semaphore>,
    /// Set for journal listeners: connections speak the export format, not syslog.
    journal: Option<Arc<JournalShared>>,
    /// Open connections per peer.
    peers: PeerTable,
    allow: Arc<Vec<IpNet>>,
    /// The acceptor and the client checks of a TLS listener.
    tls: Option<SharedTls>,
    /// Warnings peers can cause on this listener.
    peer_warnings: Arc<Throttle>,
}

impl TcpLimits {
    pub(super) fn new(
        max_frame: usize,
        limits: ConnectionLimits,
        allow: Arc<Vec<IpNet>>,
        tls: Option<SharedTls>,
        journal: Option<Arc<JournalShared>>,
    ) -> Self {
        TcpLimits {
            max_frame,
            limits,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            journal,
            peers: PeerTable::new(limits.max_connections_per_peer),
            allow,
            tls,
            peer_warnings: Arc::new(Throttle::new(
                PEER_WARNINGS_PER_MINUTE,
                Duration::from_secs(60),
            )),
        }
    }
}

pub(super) async fn tcp_accept_loop(
    listener: TcpListener,
    limits: TcpLimits,
    counters: Arc<ListenerMetrics>,
    ctx: InputContext,
) {
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.succeeded();
                a
            }
            Err(e) => {
                // EMFILE and friends: wait for connections to close instead of spinning.
                Metrics::inc(&counters.accept_errors);
                warn_throttled!(limits.peer_warnings, listener = %counters.label, error = %e, "Accept failed");
                backoff.failed(&ctx.shutdown).await;
                continue;
            }
        };
        // Every event of this connection carries its listener and peer.
        let span = info_span!("connection", listener = %counters.label, %peer);
        let refuse = |why: Refused| span.in_scope(|| why.record(&limits, &counters));
        if !allowed(&limits.allow, peer.ip()) {
            refuse(Refused::Outsider);
            continue;
        }
        // One peer cannot take every slot: idle or hostile connections from one address
        // never lock out the others.
        let Some(slot) = limits.peers.take(peer.ip()) else {
            refuse(Refused::PeerFull);
            continue;
        };
        // Accept then close beyond the limit, so the kernel backlog never fills with
        // connections that would starve well-behaved senders.
        let Ok(permit) = limits.connections.clone().try_acquire_owned() else {
            refuse(Refused::ListenerFull);
            drop(stream);
            continue;
        };
        let tracker = ctx.tracker.clone();
        let ctx = ctx.clone();
        let limits = limits.clone();
        let counters = counters.clone();
        let connection = async move {
            // Taken once per connection: a reload affects only later connections.
            let tls = limits.tls.as_ref().map(|shared| {
                shared
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            });
            // A connection that never says anything holds its slot only this long.
            if tls.is_none() && !first_byte(&stream, &limits, &ctx).await {
                Refused::Silent.record(&limits, &counters);
                drop((permit, slot));
                return;
            }
            match (&tls, &limits.journal) {
                (None, Some(j)) if j.protocol == Protocol::Upload => {
                    journal::serve_upload(stream, Origin::Peer(peer), j, &counters, &ctx).await
                }
                (None, Some(j)) => journal::serve_stream(stream, peer, j, &counters, &ctx).await,
                (None, None) => tcp_connection(stream, peer, None, &limits, &counters, &ctx).await,
                (Some((acceptor, settings)), _) => {
                    // A client that never finishes the handshake holds its slot only this long.
                    let handshake = tokio::time::timeout(
                        limits.limits.handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            let chain = stream.get_ref().1.peer_certificates();
                            match tls::check_peer(settings, chain) {
                                Ok(identity) => {
                                    debug!(
                                        identity = identity.as_deref().unwrap_or("-"),
                                        "TLS client accepted"
                                    );
                                    match &limits.journal {
                                        // journal-upload over HTTPS.
                                        Some(j) => {
                                            journal::serve_upload(
                                                stream,
                                                Origin::Peer(peer),
                                                j,
                                                &counters,
                                                &ctx,
                                            )
                                            .await
                                        }
                                        None => {
                                            tcp_connection(
                                                stream,
                                                peer,
                                                identity.map(Arc::from),
                                                &limits,
                                                &counters,
                                                &ctx,
                                            )
                                            .await
                                        }
                                    }
                                }
                                Err(why) => Refused::ClientNotAllowed(why.to_string())
                                    .record(&limits, &counters),
                            }
                        }
                        Ok(Err(e)) => {
                            Refused::HandshakeFailed(e.to_string()).record(&limits, &counters)
                        }
                        Err(_) => Refused::HandshakeTimeout.record(&limits, &counters),
                    }
                }
            }
            drop((permit, slot));
        };
        tracker.spawn(connection.instrument(span));
    }
}

/// Why a connection was refused or closed before it delivered anything: one call counts it
/// and logs it (inside the connection's span, which names listener and peer). Only what a peer
/// can repeat at will and an operator must see is a warning, and those are throttled.
enum Refused {
    /// The sender is outside the listener's allow-list.
    Outsider,
    /// Its peer holds `max_connections_per_peer` already.
    PeerFull,
    /// The listener holds `max_connections` already.
    ListenerFull,
    /// No first byte within `handshake_timeout`.
    Silent,
    /// The TLS handshake did not finish within `handshake_timeout`.
    HandshakeTimeout,
    /// The TLS handshake failed.
    HandshakeFailed(String),
    /// The client certificate is not allowed.
    ClientNotAllowed(String),
}

impl Refused {
    fn record(&self, limits: &TcpLimits, counters: &ListenerMetrics) {
        match self {
            Refused::Outsider => {
                Metrics::inc(&counters.refused_senders);
                debug!("Connection from a sender outside allow closed");
            }
            Refused::PeerFull => {
                Metrics::inc(&counters.refused_connections);
                debug!("Connection refused: max_connections_per_peer reached");
            }
            Refused::ListenerFull => {
                Metrics::inc(&counters.refused_connections);
                debug!("Connection refused: max_connections reached");
            }
            Refused::Silent => {
                Metrics::inc(&counters.handshake_timeouts);
                debug!("Closed: no first byte within handshake_timeout");
            }
            Refused::HandshakeTimeout => {
                Metrics::inc(&counters.handshake_timeouts);
                debug!("TLS handshake timed out");
            }
            Refused::HandshakeFailed(error) => {
                Metrics::inc(&counters.refused_senders);
                warn_throttled!(limits.peer_warnings, %error, "TLS handshake failed");
            }
            Refused::ClientNotAllowed(reason) => {
                Metrics::inc(&counters.refused_senders);
                warn_throttled!(limits.peer_warnings, %reason, "TLS client refused");
            }
        }
    }
}

/// Waits for a plain connection's first byte (or its end); false when `handshake_timeout`
/// passed first, and the connection is to be closed.
async fn first_byte(
    stream: &tokio::net::TcpStream,
    limits: &TcpLimits,
    ctx: &InputContext,
) -> bool {
    let readable = tokio::select! {
        _ = ctx.shutdown.cancelled() => return false,
        r = tokio::time::timeout(limits.limits.handshake_timeout, stream.readable()) => r,
    };
    readable.is_ok()
}

/// Pauses an accept loop after failures: 10 ms, doubling to `MAX_ACCEPT_BACKOFF`.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    next: Option<Duration>,
}

impl AcceptBackoff {
    /// Waits before the next accept (or until shutdown).
    pub async fn failed(&mut self, shutdown: &CancellationToken) {
        let pause = self.next.unwrap_or(Duration::from_millis(10));
        self.next = Some((pause * 2).min(MAX_ACCEPT_BACKOFF));
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }

    /// Resets the pause after a successful accept.
    pub fn succeeded(&mut self) {
        self.next = None;
    }
}

async fn tcp_connection<S: tokio::io::AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    identity: Option<Arc<str>>,
    limits: &TcpLimits,
    counters: &ListenerMetrics,
    ctx: &InputContext,
) {
    let origin = Origin::Peer(peer);
    let mut framer = Framer::new(limits.max_frame);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut batcher = ctx.tx.connection_batcher();
    debug!("Connection opened");
    loop {
        // Every frame of one read arrived at once: one clock reading for them all.
        let arrived = (crate::clock::now(), crate::clock::wall_now());
        while let Some(frame) = framer.next_frame(&mut buf) {
            match frame {
                Ok(frame) => {
                    Metrics::inc(&counters.messages);
                    let raw = message_at(
                        ctx,
                        origin,
                        identity.clone(),
                        Payload::Frame(frame),
                        arrived,
                    );
                    if batcher.push(raw).await.is_err() {
                        return;
                    }
                }
                Err(FrameError::Oversize) => {
                    Metrics::inc(&counters.oversize);
                    debug!("Oversize frame skipped");
                }
            }
        }
        // What this read brought goes on before waiting for the next one.
        if batcher.flush().await.is_err() {
            return;
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let read = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = tokio::time::timeout(limits.limits.idle_timeout, stream.read_buf(&mut buf)) => r,
        };
        match read {
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "Connection error");
                break;
            }
            Err(_) => {
                debug!("Idle timeout");
                break;
            }
        }
    }
    if let Some(frame) = framer.finish(&mut buf) {
        Metrics::inc(&counters.messages);
        // Through the batcher: the connection's last frame goes where its others went.
        let last = message(ctx, origin, identity, Payload::Frame(frame));
        if batcher.push(last).await.is_ok() {
            let _ = batcher.flush().await;
        }
    }
    debug!("Connection closed");
}
