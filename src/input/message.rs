//! What a listener hands on (`RawMessage`: origin, payload, arrival time), the context every
//! listener task works in (`InputContext`: the queues, counters, shutdown, task tracker), and
//! the small helpers all transports share. Owns no socket; every transport imports it, and it
//! imports no transport (only the journal export format, whose entries are a payload).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use ipnet::IpNet;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::journal::export::Entry;
use super::tls;
use crate::metrics::Metrics;

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
    Journal(Box<Entry>),
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

/// The acceptor and client checks of a TLS listener; replaced whole on reload, so each new
/// connection uses the latest certificates and established ones are untouched.
pub(super) type SharedTls =
    Arc<std::sync::RwLock<(tokio_rustls::TlsAcceptor, Arc<tls::TlsSettings>)>>;

/// Whether `peer` may send to a listener with this allow-list (empty: everyone).
pub(super) fn allowed(allow: &[IpNet], peer: IpAddr) -> bool {
    allow.is_empty() || allow.iter().any(|net| net.contains(&peer))
}

pub(super) fn message(
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
