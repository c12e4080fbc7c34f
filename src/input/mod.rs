//! Input: sockets and framing. Turns bytes from UDP, TCP, TLS and unix datagram sockets into
//! `RawMessage`s on a bounded channel.
//!
//! Owns binding, accepting, connection limits, idle timeouts and frame boundaries. It never
//! reads syslog message content (no parsing, no routing) and never decides anything about
//! bans. The journal listeners hand on entries (the Journal Export Format's fields, its
//! framing) instead of frames; `parse::journal` reads them. This file holds the message types
//! and `start`, which binds a listener and hands it to its transport: `datagram` (UDP, unix), `stream` (TCP, TLS, and the
//! connections of the journal listeners), `journal` (their HTTP and stream protocols).

// Reads network or config input: a byte index inside a UTF-8 character would panic.
#![deny(clippy::string_slice)]

pub mod activation;
mod datagram;
pub mod framing;
pub mod http;
pub mod journal;
pub mod peers;
mod stream;
pub mod tls;

pub use stream::AcceptBackoff;

use std::io;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use ipnet::IpNet;
use thiserror::Error;
use tokio::net::{TcpListener, UnixDatagram};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::{JournalListener, ListenerConfig, ListenerKind};
use crate::metrics::Metrics;
use datagram::{remove_stale_socket, udp_loop, udp_socket, unix_loop};
use journal::{JournalShared, Protocol};
use stream::{tcp_accept_loop, TcpLimits};

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
    /// A journal entry's fields, as a journal listener read them (see `journal::export`).
    Journal(Box<journal::export::Entry>),
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
    /// The address it is bound to (the port the kernel chose for `:0`); None for unix.
    bound: Option<SocketAddr>,
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
    /// The address it is bound to (with the port the kernel chose for `:0`); None for unix.
    pub fn bound(&self) -> Option<SocketAddr> {
        self.bound
    }

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
    let mut bound = None;
    match &config.kind {
        ListenerKind::Udp {
            address,
            recv_buffer,
        } => {
            let socket = udp_socket(*address, *recv_buffer).map_err(bind_err)?;
            bound = socket.local_addr().ok();
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
            bound = listener.local_addr().ok();
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
            bound = listener.local_addr().ok();
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
        bound,
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

/// Whether `peer` may send to a listener with this allow-list (empty: everyone).
fn allowed(allow: &[IpNet], peer: IpAddr) -> bool {
    allow.is_empty() || allow.iter().any(|net| net.contains(&peer))
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
        received: crate::clock::now(),
        received_at: crate::clock::wall_now(),
    }
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
