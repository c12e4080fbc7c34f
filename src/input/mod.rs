//! Input: sockets and framing. Turns bytes from UDP, TCP and unix datagram sockets into
//! `RawMessage`s on a bounded channel.
//!
//! Owns binding, accepting, connection limits, idle timeouts and frame boundaries. It never
//! reads syslog message content (no parsing, no routing) and never decides anything about
//! bans. The exception is `journal`: the Journal Export Format cannot be split into entries
//! without parsing it, so the journal listeners drive `parse::journal` and hand on records
//! (its module doc says why).

// Reads network or config input: a byte index inside a UTF-8 character would panic.
#![deny(clippy::string_slice)]

pub mod activation;
pub mod framing;
pub mod http;
pub mod journal;
pub mod peers;
pub mod tls;

use std::io;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket, UnixDatagram};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::config::{ConnectionLimits, JournalListener, ListenerConfig, ListenerKind};
use crate::metrics::{ListenerMetrics, Metrics};
use crate::parse::LogRecord;
use crate::throttle::Throttle;
use crate::warn_throttled;
use framing::{FrameError, Framer};
use journal::{JournalShared, Protocol};
use peers::PeerTable;

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
    /// Who the transport proved the sender to be: the verified TLS client certificate name.
    pub identity: Option<Arc<str>>,
    /// The listener trusts the HOSTNAME messages claim (a relay in front of it): the claimed
    /// host then stands for the origin.
    pub trust_hostname: bool,
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
    /// The TLS certificates or keys could not be loaded.
    #[error("listener {label}: {message}")]
    Tls {
        /// Listener label.
        label: String,
        /// What was wrong.
        message: String,
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
    pub tx: Fanout,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Stops the listener.
    pub shutdown: CancellationToken,
    /// Tracks spawned tasks for a clean drain.
    pub tracker: TaskTracker,
    /// Set per listener from its `trust_hostname` key.
    pub trust_hostname: bool,
}

/// The queues of the parallel matching workers. Every origin always goes to the same queue,
/// so the messages of one connection (or one datagram sender) stay in order.
#[derive(Debug, Clone)]
pub struct Fanout(Arc<[mpsc::Sender<RawMessage>]>);

impl Fanout {
    /// Over these queues (at least one).
    pub fn new(queues: Vec<mpsc::Sender<RawMessage>>) -> Self {
        assert!(!queues.is_empty(), "a fanout needs at least one queue");
        Fanout(queues.into())
    }

    /// The queue of `origin`.
    pub fn to(&self, origin: &Origin) -> &mpsc::Sender<RawMessage> {
        let n = self.0.len();
        if n == 1 {
            return &self.0[0];
        }
        let key = match origin {
            Origin::Local => 0,
            Origin::Peer(peer) => {
                let ip = match peer.ip() {
                    IpAddr::V4(v4) => u64::from(u32::from(v4)),
                    IpAddr::V6(v6) => {
                        let bits = u128::from(v6);
                        (bits as u64) ^ ((bits >> 64) as u64)
                    }
                };
                // splitmix64's finalizer: every input bit reaches the low bits, so ports that
                // differ only in high bits (Linux hands out every other ephemeral port) still
                // spread over the queues.
                let mut z = ip ^ (u64::from(peer.port()) << 32);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            }
        };
        &self.0[(key as usize) % n]
    }

    /// Every queue (for depth gauges).
    pub fn queues(&self) -> &[mpsc::Sender<RawMessage>] {
        &self.0
    }
}

impl From<mpsc::Sender<RawMessage>> for Fanout {
    fn from(queue: mpsc::Sender<RawMessage>) -> Self {
        Fanout::new(vec![queue])
    }
}

/// A running listener.
pub struct ListenerHandle {
    stop: CancellationToken,
    /// A TLS listener's acceptor, swapped on reload.
    tls: Option<SharedTls>,
}

/// The acceptor and client checks of a TLS listener; replaced whole on reload, so each new
/// connection uses the latest certificates and established ones are untouched.
type SharedTls = Arc<std::sync::RwLock<(tokio_rustls::TlsAcceptor, Arc<tls::TlsSettings>)>>;

impl std::fmt::Debug for ListenerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerHandle")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl ListenerHandle {
    /// Stops this listener (its open connections close; queued frames are still processed).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Re-reads a TLS listener's certificate, key and client CA (on reload). On error the
    /// running configuration stays. Returns whether this is a TLS listener.
    pub fn reload_tls(&self) -> Result<bool, tls::TlsError> {
        let Some(shared) = &self.tls else {
            return Ok(false);
        };
        let settings = shared
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone();
        let config = tls::server_config(&settings)?;
        *shared.write().unwrap_or_else(PoisonError::into_inner) =
            (tokio_rustls::TlsAcceptor::from(config), settings);
        Ok(true)
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
        trust_hostname: config.trust_hostname,
        ..ctx.clone()
    };
    let counters = ctx.metrics.listener(&label);
    let bind_err = |source| InputError::Bind {
        label: label.clone(),
        source,
    };
    let allow = Arc::new(config.allow.clone());
    let mut handle_tls = None;
    match &config.kind {
        ListenerKind::Udp {
            address,
            recv_buffer,
        } => {
            let socket = udp_socket(*address, *recv_buffer).map_err(bind_err)?;
            if let Ok(meta) = std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd())) {
                use std::os::unix::fs::MetadataExt;
                Metrics::set(&counters.udp_inode, meta.ino());
            }
            info!(listener = %label, "Listening");
            ctx.tracker.spawn(udp_loop(
                socket,
                config.max_frame,
                allow,
                counters,
                ctx.clone(),
            ));
        }
        ListenerKind::Tcp {
            address,
            limits,
            tls,
        } => {
            let tls = tls
                .as_ref()
                .map(|settings| shared_tls(&label, settings))
                .transpose()?;
            let listener = match activation::take_inet(socket2::Type::STREAM, *address) {
                Some(inherited) => {
                    let std: std::net::TcpListener = inherited.into();
                    std.set_nonblocking(true).map_err(bind_err)?;
                    info!(listener = %label, "Using the socket passed by systemd");
                    TcpListener::from_std(std).map_err(bind_err)?
                }
                None => TcpListener::bind(address).await.map_err(bind_err)?,
            };
            info!(listener = %label, "Listening");
            handle_tls = tls.clone();
            let limits = TcpLimits::new(config.max_frame, *limits, allow, tls, None);
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
                limits,
                max_entry,
                tls,
            } = j;
            let tls = tls
                .as_ref()
                .map(|settings| shared_tls(&label, settings))
                .transpose()?;
            handle_tls = tls.clone();
            let listener = TcpListener::bind(address).await.map_err(bind_err)?;
            info!(listener = %label, "Listening");
            let journal =
                JournalShared::new(protocol, config.max_frame, *max_entry, limits.idle_timeout);
            let limits = TcpLimits::new(
                config.max_frame,
                *limits,
                allow,
                tls,
                Some(Arc::new(journal)),
            );
            ctx.tracker
                .spawn(tcp_accept_loop(listener, limits, counters, ctx.clone()));
        }
        ListenerKind::Unix { path, mode } => {
            let (socket, owned_path) = match activation::take_unix(path) {
                // The service manager owns the path: it is neither replaced nor removed.
                Some(inherited) => {
                    let std: std::os::unix::net::UnixDatagram = inherited.into();
                    std.set_nonblocking(true).map_err(bind_err)?;
                    info!(listener = %label, "Using the socket passed by systemd");
                    (UnixDatagram::from_std(std).map_err(bind_err)?, None)
                }
                None => {
                    remove_stale_socket(path).map_err(|_| InputError::NotASocket {
                        label: label.clone(),
                        path: path.clone(),
                    })?;
                    let socket = UnixDatagram::bind(path).map_err(bind_err)?;
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                        .map_err(bind_err)?;
                    (socket, Some(path.clone()))
                }
            };
            info!(listener = %label, "Listening");
            ctx.tracker.spawn(unix_loop(
                socket,
                owned_path,
                config.max_frame,
                counters,
                ctx.clone(),
            ));
        }
    }
    Ok(ListenerHandle {
        stop,
        tls: handle_tls,
    })
}

/// A TLS listener's acceptor from its settings; the error names the listener.
fn shared_tls(label: &str, settings: &tls::TlsSettings) -> Result<SharedTls, InputError> {
    let config = tls::server_config(settings).map_err(|e| InputError::Tls {
        label: label.to_string(),
        message: e.to_string(),
    })?;
    Ok(Arc::new(std::sync::RwLock::new((
        tokio_rustls::TlsAcceptor::from(config),
        Arc::new(settings.clone()),
    ))))
}

/// Warnings a peer can cause (failed handshakes, refused clients) per listener and minute.
const PEER_WARNINGS_PER_MINUTE: u32 = 10;
/// Longest pause after a failed accept (EMFILE: wait for connections to close).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// A UDP socket: inherited from systemd, or bound here with the configured SO_RCVBUF.
fn udp_socket(address: SocketAddr, recv_buffer: Option<usize>) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = match activation::take_inet(Type::DGRAM, address) {
        Some(inherited) => inherited,
        None => {
            let socket = Socket::new(
                Domain::for_address(address),
                Type::DGRAM,
                Some(Protocol::UDP),
            )?;
            if address.is_ipv6() {
                // "[::]:514" should not also grab IPv4 unless asked; matches std's bind.
                let _ = socket.set_only_v6(true);
            }
            socket.bind(&address.into())?;
            socket
        }
    };
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// Whether `peer` may send to a listener with this allow-list (empty: everyone).
fn allowed(allow: &[IpNet], peer: IpAddr) -> bool {
    allow.is_empty() || allow.iter().any(|net| net.contains(&peer))
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

fn message(
    ctx: &InputContext,
    origin: Origin,
    identity: Option<Arc<str>>,
    payload: Payload,
) -> RawMessage {
    RawMessage {
        origin,
        identity,
        trust_hostname: ctx.trust_hostname,
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
    allow: Arc<Vec<IpNet>>,
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
        if !allowed(&allow, peer.ip()) {
            Metrics::inc(&counters.refused_senders);
            debug!(listener = %counters.label, %peer, "Datagram from a sender outside allow dropped");
            continue;
        }
        if !deliver(&ctx, &counters, Origin::Peer(peer), &buf[..len], max_frame).await {
            return;
        }
    }
}

async fn unix_loop(
    socket: UnixDatagram,
    path: Option<PathBuf>,
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
    if let Some(path) = path {
        let _ = std::fs::remove_file(&path);
    }
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
        .to(&origin)
        .send(message(
            ctx,
            origin,
            None,
            Payload::Frame(Bytes::copy_from_slice(data)),
        ))
        .await
        .is_ok()
}

#[derive(Clone)]
struct TcpLimits {
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
    fn new(
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

async fn tcp_accept_loop(
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
        if !allowed(&limits.allow, peer.ip()) {
            Metrics::inc(&counters.refused_senders);
            debug!(listener = %counters.label, %peer, "Connection from a sender outside allow closed");
            continue;
        }
        // One peer cannot take every slot: idle or hostile connections from one address
        // never lock out the others.
        let Some(slot) = limits.peers.take(peer.ip()) else {
            Metrics::inc(&counters.refused_connections);
            debug!(listener = %counters.label, %peer, "Connection refused: max_connections_per_peer reached");
            continue;
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
                                    // Taken once per connection: a reload affects only later connections.
            let tls = limits
                .tls
                .as_ref()
                .map(|shared| shared.read().unwrap_or_else(PoisonError::into_inner).clone());
            // A connection that never says anything holds its slot only this long.
            if tls.is_none() && !first_byte(&stream, &limits, &counters, peer, &ctx).await {
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
                    let handshake = tokio::time::timeout(limits.limits.handshake_timeout, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            let chain = stream.get_ref().1.peer_certificates();
                            match tls::check_peer(settings, chain) {
                                Ok(identity) => {
                                    debug!(listener = %counters.label, %peer, identity = identity.as_deref().unwrap_or("-"), "TLS client accepted");
                                    match &limits.journal {
                                        // journal-upload over HTTPS.
                                        Some(j) => journal::serve_upload(stream, Origin::Peer(peer), j, &counters, &ctx).await,
                                        None => tcp_connection(stream, peer, identity.map(Arc::from), &limits, &counters, &ctx).await,
                                    }
                                }
                                Err(why) => {
                                    Metrics::inc(&counters.refused_senders);
                                    warn_throttled!(limits.peer_warnings, listener = %counters.label, %peer, reason = %why, "TLS client refused");
                                }
                            }
                        }
                        Ok(Err(e)) => {
                            Metrics::inc(&counters.refused_senders);
                            warn_throttled!(limits.peer_warnings, listener = %counters.label, %peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            Metrics::inc(&counters.handshake_timeouts);
                            debug!(listener = %counters.label, %peer, "TLS handshake timed out");
                        }
                    }
                }
            }
            drop((permit, slot));
        });
    }
}

/// Waits for a plain connection's first byte (or its end); false when `handshake_timeout`
/// passed first, and the connection is to be closed.
async fn first_byte(
    stream: &tokio::net::TcpStream,
    limits: &TcpLimits,
    counters: &ListenerMetrics,
    peer: SocketAddr,
    ctx: &InputContext,
) -> bool {
    let readable = tokio::select! {
        _ = ctx.shutdown.cancelled() => return false,
        r = tokio::time::timeout(limits.limits.handshake_timeout, stream.readable()) => r,
    };
    if readable.is_err() {
        Metrics::inc(&counters.handshake_timeouts);
        debug!(listener = %counters.label, %peer, "Closed: no first byte within handshake_timeout");
        return false;
    }
    true
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
    debug!(listener = %counters.label, %peer, "Connection opened");
    loop {
        while let Some(frame) = framer.next_frame(&mut buf) {
            match frame {
                Ok(frame) => {
                    Metrics::inc(&counters.messages);
                    if ctx
                        .tx
                        .to(&origin)
                        .send(message(
                            ctx,
                            origin,
                            identity.clone(),
                            Payload::Frame(frame),
                        ))
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
            r = tokio::time::timeout(limits.limits.idle_timeout, stream.read_buf(&mut buf)) => r,
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
        let _ = ctx
            .tx
            .to(&origin)
            .send(message(ctx, origin, identity, Payload::Frame(frame)))
            .await;
    }
    debug!(listener = %counters.label, %peer, "Connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fanout_spreads_connections_of_one_host_over_the_queues() {
        let (txs, _rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| mpsc::channel(1)).unzip();
        let fanout = Fanout::new(txs);
        let queue = |port: u16| {
            let origin = Origin::Peer(SocketAddr::from(([127, 0, 0, 1], port)));
            let chosen = fanout.to(&origin);
            fanout
                .queues()
                .iter()
                .position(|q| q.same_channel(chosen))
                .unwrap()
        };
        // Linux hands out every other ephemeral port: such neighbours must not all collide.
        let mut used = [0usize; 2];
        for port in (40001..40401).step_by(2) {
            used[queue(port)] += 1;
        }
        assert!(used[0] > 60 && used[1] > 60, "uneven spread: {used:?}");
        // One origin always goes to the same queue.
        assert_eq!(queue(40001), queue(40001));
        assert!(fanout.to(&Origin::Local).same_channel(&fanout.queues()[0]));
    }
}
