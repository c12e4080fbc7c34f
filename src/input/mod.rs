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
mod message;
mod mmsg;
pub mod peers;
mod stream;
pub mod tls;

pub use message::{
    header_sender, Batch, Batcher, Closed, Fanout, InputContext, InputError, Origin, Payload,
    RawMessage, BATCH_MAX,
};
pub use stream::AcceptBackoff;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, PoisonError};

use tokio::net::{TcpListener, UnixDatagram};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::{JournalListener, ListenerConfig, ListenerKind};
use crate::metrics::Metrics;
use datagram::{remove_stale_socket, udp_loop, udp_socket, unix_loop};
use journal::{JournalShared, Protocol};
use message::SharedTls;
use stream::{tcp_accept_loop, TcpLimits};

/// A running listener.
pub struct ListenerHandle {
    stop: CancellationToken,
    /// A TLS listener's acceptor, swapped on reload.
    tls: Option<SharedTls>,
    /// The address it is bound to (the port the kernel chose for `:0`); None for unix.
    bound: Option<SocketAddr>,
}

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
