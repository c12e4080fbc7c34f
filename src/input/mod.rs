//! Input: sockets and framing. Turns bytes from UDP, TCP and unix datagram sockets into
//! `RawMessage`s on a bounded channel.
//!
//! Owns binding, accepting, connection limits, idle timeouts and frame boundaries. It never
//! reads syslog message content (no parsing, no routing) and never decides anything about
//! bans. The exception is `journal`: the Journal Export Format cannot be split into entries
//! without parsing it, so the journal listeners drive `parse::journal` and hand on records
//! (its module doc says why).

pub mod framing;
pub mod http;
pub mod journal;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::{JournalListener, ListenerConfig, ListenerKind};
use crate::metrics::{ListenerMetrics, Metrics};
use crate::parse::LogRecord;
use framing::{FrameError, Framer};
use journal::{JournalShared, Protocol};

/// Where a message came from, as the transport says (not as the message claims).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A network peer.
    Peer(SocketAddr),
    /// A local unix socket sender.
    Local,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Peer(addr) => write!(f, "{}", addr.ip()),
            Origin::Local => f.write_str("local"),
        }
    }
}

/// What a listener hands on.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A syslog frame's bytes, trailer removed: parsed by the pipeline.
    Frame(Bytes),
    /// A journal entry, already parsed by a journal listener (see `journal`): the export
    /// format cannot be split into entries without parsing it.
    Record(Box<LogRecord>),
}

/// One message, as received.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Transport origin.
    pub origin: Origin,
    /// The frame, or the parsed journal entry.
    pub payload: Payload,
    /// When it arrived (monotonic: jail windows).
    pub received: Instant,
    /// When it arrived (wall clock: year inference, logs).
    pub received_at: SystemTime,
}

/// A listener that could not start.
#[derive(Debug, Error)]
pub enum InputError {
    /// bind() failed.
    #[error("listener {label}: cannot bind: {source}")]
    Bind {
        /// Listener label.
        label: String,
        /// The OS error.
        source: io::Error,
    },
    /// A path exists and is not a socket we may replace.
    #[error("listener {label}: {path} exists and is not a socket")]
    NotASocket {
        /// Listener label.
        label: String,
        /// The path.
        path: PathBuf,
    },
}

/// Everything a listener task needs besides its socket.
#[derive(Clone)]
pub struct InputContext {
    /// Where frames go.
    pub tx: mpsc::Sender<RawMessage>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Stops the listener.
    pub shutdown: CancellationToken,
    /// Tracks spawned tasks for a clean drain.
    pub tracker: TaskTracker,
}

/// A running listener.
#[derive(Debug)]
pub struct ListenerHandle {
    stop: CancellationToken,
}

impl ListenerHandle {
    /// Stops this listener (its open connections close; queued frames are still processed).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// Binds the listener now (so errors surface at start-up) and spawns its receive loop.
pub async fn start(
    config: &ListenerConfig,
    ctx: &InputContext,
) -> Result<ListenerHandle, InputError> {
    let label = config.label.clone();
    let stop = ctx.shutdown.child_token();
    let ctx = &InputContext {
        shutdown: stop.clone(),
        ..ctx.clone()
    };
    let counters = ctx.metrics.listener(&label);
    let bind_err = |source| InputError::Bind {
        label: label.clone(),
        source,
    };
    match &config.kind {
        ListenerKind::Udp { address } => {
            let socket = UdpSocket::bind(address).await.map_err(bind_err)?;
            info!(listener = %label, "Listening");
            ctx.tracker
                .spawn(udp_loop(socket, config.max_frame, counters, ctx.clone()));
        }
        ListenerKind::Tcp {
            address,
            max_connections,
            idle_timeout,
        } => {
            let listener = TcpListener::bind(address).await.map_err(bind_err)?;
            info!(listener = %label, "Listening");
            let limits = TcpLimits {
                max_frame: config.max_frame,
                idle_timeout: *idle_timeout,
                connections: Arc::new(Semaphore::new(*max_connections)),
                journal: None,
            };
            ctx.tracker
                .spawn(tcp_accept_loop(listener, limits, counters, ctx.clone()));
        }
        ListenerKind::JournalUpload(j) | ListenerKind::JournalStream(j) => {
            let protocol = match &config.kind {
                ListenerKind::JournalUpload(_) => Protocol::Upload,
                _ => Protocol::Stream,
            };
            let JournalListener {
                address,
                max_connections,
                idle_timeout,
                max_entry,
            } = j;
            let listener = TcpListener::bind(address).await.map_err(bind_err)?;
            info!(listener = %label, "Listening");
            let limits = TcpLimits {
                max_frame: config.max_frame,
                idle_timeout: *idle_timeout,
                connections: Arc::new(Semaphore::new(*max_connections)),
                journal: Some(Arc::new(JournalShared::new(
                    protocol,
                    config.max_frame,
                    *max_entry,
                    *idle_timeout,
                ))),
            };
            ctx.tracker
                .spawn(tcp_accept_loop(listener, limits, counters, ctx.clone()));
        }
        ListenerKind::Unix { path, mode } => {
            remove_stale_socket(path).map_err(|_| InputError::NotASocket {
                label: label.clone(),
                path: path.clone(),
            })?;
            let socket = UnixDatagram::bind(path).map_err(bind_err)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                .map_err(bind_err)?;
            info!(listener = %label, "Listening");
            ctx.tracker.spawn(unix_loop(
                socket,
                path.clone(),
                config.max_frame,
                counters,
                ctx.clone(),
            ));
        }
    }
    Ok(ListenerHandle { stop })
}

/// Removes a socket left by a previous run; refuses to delete anything else.
fn remove_stale_socket(path: &Path) -> Result<(), ()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(|_| ()),
        Ok(_) => Err(()),
    }
}

fn message(origin: Origin, payload: Payload) -> RawMessage {
    RawMessage {
        origin,
        payload,
        received: Instant::now(),
        received_at: SystemTime::now(),
    }
}

/// Trailing CR/LF/NUL are transport noise in datagrams (RFC 5426 senders differ).
fn trim_datagram(mut data: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r' | b'\0'] = data {
        data = rest;
    }
    data
}

async fn udp_loop(
    socket: UdpSocket,
    max_frame: usize,
    counters: Arc<ListenerMetrics>,
    ctx: InputContext,
) {
    // One byte more than allowed tells an oversize datagram from one that just fits.
    let mut buf = vec![0u8; max_frame + 1];
    loop {
        let received = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let (len, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                warn!(listener = %counters.label, error = %e, "Receive failed");
                continue;
            }
        };
        if !deliver(&ctx, &counters, Origin::Peer(peer), &buf[..len], max_frame).await {
            return;
        }
    }
}

async fn unix_loop(
    socket: UnixDatagram,
    path: PathBuf,
    max_frame: usize,
    counters: Arc<ListenerMetrics>,
    ctx: InputContext,
) {
    let mut buf = vec![0u8; max_frame + 1];
    loop {
        let received = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            r = socket.recv(&mut buf) => r,
        };
        match received {
            Ok(len) => {
                if !deliver(&ctx, &counters, Origin::Local, &buf[..len], max_frame).await {
                    break;
                }
            }
            Err(e) => warn!(listener = %counters.label, error = %e, "Receive failed"),
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// Sends one datagram on; false when the pipeline is gone.
async fn deliver(
    ctx: &InputContext,
    counters: &ListenerMetrics,
    origin: Origin,
    data: &[u8],
    max_frame: usize,
) -> bool {
    if data.len() > max_frame {
        Metrics::inc(&counters.oversize);
        debug!(listener = %counters.label, %origin, "Oversize datagram skipped");
        return true;
    }
    let data = trim_datagram(data);
    if data.is_empty() {
        return true;
    }
    Metrics::inc(&counters.messages);
    ctx.tx
        .send(message(
            origin,
            Payload::Frame(Bytes::copy_from_slice(data)),
        ))
        .await
        .is_ok()
}

#[derive(Clone)]
struct TcpLimits {
    max_frame: usize,
    idle_timeout: Duration,
    connections: Arc<Semaphore>,
    /// Set for journal listeners: connections speak the export format, not syslog.
    journal: Option<Arc<JournalShared>>,
}

async fn tcp_accept_loop(
    listener: TcpListener,
    limits: TcpLimits,
    counters: Arc<ListenerMetrics>,
    ctx: InputContext,
) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(listener = %counters.label, error = %e, "Accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Accept then close beyond the limit, so the kernel backlog never fills with
        // connections that would starve well-behaved senders.
        let Ok(permit) = limits.connections.clone().try_acquire_owned() else {
            Metrics::inc(&counters.refused_connections);
            debug!(listener = %counters.label, %peer, "Connection refused: max_connections reached");
            drop(stream);
            continue;
        };
        let ctx = ctx.clone();
        let limits = limits.clone();
        let counters = counters.clone();
        ctx.tracker.clone().spawn(async move {
            match &limits.journal {
                None => tcp_connection(stream, peer, &limits, &counters, &ctx).await,
                Some(j) if j.protocol == Protocol::Upload => {
                    journal::serve_upload(stream, Origin::Peer(peer), j, &counters, &ctx).await
                }
                Some(j) => journal::serve_stream(stream, peer, j, &counters, &ctx).await,
            }
            drop(permit);
        });
    }
}

async fn tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    limits: &TcpLimits,
    counters: &ListenerMetrics,
    ctx: &InputContext,
) {
    let origin = Origin::Peer(peer);
    let mut framer = Framer::new(limits.max_frame);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    debug!(listener = %counters.label, %peer, "Connection opened");
    loop {
        while let Some(frame) = framer.next_frame(&mut buf) {
            match frame {
                Ok(frame) => {
                    Metrics::inc(&counters.messages);
                    if ctx
                        .tx
                        .send(message(origin, Payload::Frame(frame)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(FrameError::Oversize) => {
                    Metrics::inc(&counters.oversize);
                    debug!(listener = %counters.label, %peer, "Oversize frame skipped");
                }
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let read = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = tokio::time::timeout(limits.idle_timeout, stream.read_buf(&mut buf)) => r,
        };
        match read {
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(listener = %counters.label, %peer, error = %e, "Connection error");
                break;
            }
            Err(_) => {
                debug!(listener = %counters.label, %peer, "Idle timeout");
                break;
            }
        }
    }
    if let Some(frame) = framer.finish(&mut buf) {
        Metrics::inc(&counters.messages);
        let _ = ctx.tx.send(message(origin, Payload::Frame(frame))).await;
    }
    debug!(listener = %counters.label, %peer, "Connection closed");
}
