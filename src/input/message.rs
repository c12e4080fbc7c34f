//! What a listener hands on (`RawMessage`: origin, payload, arrival time), the context every
//! listener task works in (`InputContext`: the queues, counters, shutdown, task tracker), and
//! the small helpers all transports share. Owns no socket; every transport imports it, and it
//! imports no transport (only the journal export format, whose entries are a payload).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Messages bound for one matching worker, handed over together: one queue operation (and
/// one wake-up) per batch instead of per message is most of what the queues cost.
pub type Batch = Vec<RawMessage>;

/// Most messages in one batch (bounds a queue's memory at its capacity times this).
pub const BATCH_MAX: usize = 64;

/// The queues of the parallel matching workers. Every connection (and every datagram
/// sender) always goes to the same queue, and so does every sender a relay's frames name, so
/// the messages of one connection or datagram sender, and of each host a relay forwards for,
/// stay in order.
#[derive(Debug, Clone)]
pub struct Fanout {
    queues: Arc<[mpsc::Sender<Batch>]>,
    /// Hands each new connection the next queue, so a few long connections (four relays,
    /// two workers) share the workers evenly; a hash of their ports often would not.
    next_lane: Arc<AtomicUsize>,
}

/// The matching workers are gone (shutdown): nothing more can be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the matching workers have stopped")]
pub struct Closed;

impl Fanout {
    /// Over these queues (at least one).
    pub fn new(queues: Vec<mpsc::Sender<Batch>>) -> Self {
        assert!(!queues.is_empty(), "a fanout needs at least one queue");
        Fanout {
            queues: queues.into(),
            next_lane: Arc::default(),
        }
    }

    /// Sends one message on its own (a journal entry, a datagram from a unix socket: each
    /// arrives alone), to the queue a [`Batcher`] would put it in.
    pub async fn send(&self, message: RawMessage) -> Result<(), Closed> {
        let queue = self.queue_of(&message, None);
        self.queues[queue]
            .send(vec![message])
            .await
            .map_err(|_| Closed)
    }

    /// A batcher for one datagram socket: what one receive call brought goes on together,
    /// each sender's to the queue its address and port pick.
    pub fn batcher(&self) -> Batcher {
        self.batcher_in(None)
    }

    /// A batcher for one connection: its messages go to the connection's own queue (the
    /// next one in turn), and what a relay forwards for other hosts spreads from there.
    pub fn connection_batcher(&self) -> Batcher {
        let lane = self.next_lane.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        self.batcher_in(Some(lane))
    }

    fn batcher_in(&self, lane: Option<usize>) -> Batcher {
        Batcher {
            fanout: self.clone(),
            lane,
            pending: (0..self.queues.len()).map(|_| Vec::new()).collect(),
        }
    }

    /// The queue of `message`: by its connection's lane (or its origin) and the host it is
    /// from (a syslog frame's header, a journal entry's `_HOSTNAME`).
    fn queue_of(&self, message: &RawMessage, lane: Option<usize>) -> usize {
        let sender = match &message.payload {
            Payload::Frame(frame) => header_sender(frame),
            // An uploader relaying other hosts' journals (journal-remote's output uploaded
            // on) carries many hosts, as a syslog relay does.
            Payload::Journal(entry) => entry.get("_HOSTNAME"),
        };
        self.queue_for_sender(&message.origin, lane, sender)
    }

    /// The queue of a message from `origin` (on a connection in `lane`) whose own sender is
    /// `sender` (a header's host name, or its program where the header has no host name):
    /// what one relay (or `/dev/log`) forwards for many hosts spreads over the workers while
    /// the messages of each host stay in order.
    fn queue_for_sender(
        &self,
        origin: &Origin,
        lane: Option<usize>,
        sender: Option<&[u8]>,
    ) -> usize {
        let n = self.queues.len();
        if n == 1 {
            return 0;
        }
        let sender = sender.map_or(0, |name| {
            // FNV-1a: a few bytes, mixed again below.
            name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        });
        match lane {
            Some(lane) => (lane + self.queue(sender)) % n,
            None => self.queue(origin_key(origin) ^ sender.rotate_left(17)),
        }
    }

    fn queue(&self, key: u64) -> usize {
        let n = self.queues.len();
        if n == 1 {
            return 0;
        }
        // splitmix64's finalizer: every input bit reaches the low bits, so ports that differ
        // only in high bits (Linux hands out every other ephemeral port) still spread over
        // the queues.
        let mut z = key;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z as usize) % n
    }

    /// Every queue (for depth gauges, in batches).
    pub fn queues(&self) -> &[mpsc::Sender<Batch>] {
        &self.queues
    }
}

impl From<mpsc::Sender<Batch>> for Fanout {
    fn from(queue: mpsc::Sender<Batch>) -> Self {
        Fanout::new(vec![queue])
    }
}

/// Collects one listener task's messages per worker queue and sends each queue's batch when
/// it is full or when the task is about to wait for its socket ([`Batcher::flush`]), so a
/// batch never waits for traffic that has not arrived yet.
#[derive(Debug)]
pub struct Batcher {
    fanout: Fanout,
    /// A connection's own queue (None: datagrams, by sender).
    lane: Option<usize>,
    pending: Vec<Batch>,
}

impl Batcher {
    /// Adds `message`; sends its queue's batch once full.
    pub async fn push(&mut self, message: RawMessage) -> Result<(), Closed> {
        let queue = self.fanout.queue_of(&message, self.lane);
        let batch = &mut self.pending[queue];
        if batch.capacity() == 0 {
            batch.reserve_exact(BATCH_MAX);
        }
        batch.push(message);
        if batch.len() >= BATCH_MAX {
            self.send(queue).await?;
        }
        Ok(())
    }

    /// Sends every batch that holds a message.
    pub async fn flush(&mut self) -> Result<(), Closed> {
        for queue in 0..self.pending.len() {
            if !self.pending[queue].is_empty() {
                self.send(queue).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, queue: usize) -> Result<(), Closed> {
        let batch = std::mem::take(&mut self.pending[queue]);
        self.fanout.queues[queue]
            .send(batch)
            .await
            .map_err(|_| Closed)
    }
}

/// An origin as a key: the peer's address and port (local sockets: 0).
fn origin_key(origin: &Origin) -> u64 {
    match origin {
        Origin::Local => 0,
        Origin::Peer(peer) => {
            let ip = match peer.ip() {
                IpAddr::V4(v4) => u64::from(u32::from(v4)),
                IpAddr::V6(v6) => {
                    let bits = u128::from(v6);
                    (bits as u64) ^ ((bits >> 64) as u64)
                }
            };
            ip ^ (u64::from(peer.port()) << 32)
        }
    }
}

/// Who a syslog frame says sent it, cheaply, without parsing it: RFC 5424's HOSTNAME (the
/// third field after `<PRI>`), or the token after an RFC 3164 timestamp (`Mmm dd hh:mm:ss`
/// or an ISO one): the host name, or, in a header without one (`/dev/log`), the program, cut
/// at its `[pid]` so every process of a program stays together. None for anything else.
pub fn header_sender(frame: &[u8]) -> Option<&[u8]> {
    let rest = frame.strip_prefix(b"<")?;
    let close = rest.iter().take(4).position(|&b| b == b'>')?;
    let rest = &rest[close + 1..];
    let mut fields = rest.split(|&b| b == b' ');
    let token = match rest.first()? {
        // RFC 5424: VERSION TIMESTAMP HOSTNAME.
        b'1'..=b'9' if rest.get(1) == Some(&b' ') => fields.nth(2)?,
        // RFC 3164 with an ISO timestamp.
        b'0'..=b'9' => fields.nth(1)?,
        // RFC 3164: "Mmm dd hh:mm:ss " is 16 bytes (the day is space-padded).
        b'A'..=b'Z' if rest.len() > 16 && rest[15] == b' ' => {
            rest[16..].split(|&b| b == b' ').next()?
        }
        _ => return None,
    };
    let token = token.split(|&b| b == b'[').next().unwrap_or(token);
    (!token.is_empty()).then_some(token)
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
    let arrived = (crate::clock::now(), crate::clock::wall_now());
    message_at(ctx, origin, identity, payload, arrived)
}

/// Like [`message`], for a message that arrived at `arrived` (monotonic, wall clock): a
/// batch of datagrams read in one call reads the clocks once.
pub(super) fn message_at(
    ctx: &InputContext,
    origin: Origin,
    identity: Option<Arc<str>>,
    payload: Payload,
    arrived: (Instant, SystemTime),
) -> RawMessage {
    RawMessage {
        origin,
        identity,
        trust_hostname: ctx.trust_hostname,
        payload,
        received: arrived.0,
        received_at: arrived.1,
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
            fanout.queue(origin_key(&origin))
        };
        // Linux hands out every other ephemeral port: such neighbours must not all collide.
        let mut used = [0usize; 2];
        for port in (40001..40401).step_by(2) {
            used[queue(port)] += 1;
        }
        assert!(used[0] > 60 && used[1] > 60, "uneven spread: {used:?}");
        // One origin always goes to the same queue.
        assert_eq!(queue(40001), queue(40001));
        assert_eq!(fanout.queue(origin_key(&Origin::Local)), 0);
    }

    #[test]
    fn the_sender_in_a_frame_header_is_found_in_each_format() {
        let sender = |frame: &str| header_sender(frame.as_bytes()).map(|s| s.to_vec());
        let some = |s: &str| Some(s.as_bytes().to_vec());
        assert_eq!(
            sender("<38>1 2026-12-03T20:17:27.103447+00:00 web3 sshd 5434 - -  Failed"),
            some("web3")
        );
        assert_eq!(
            sender("<38>Dec  3 20:17:27 web3 sshd[5434]: Failed"),
            some("web3")
        );
        assert_eq!(
            sender("<38>2026-12-03T20:17:27+00:00 web3 sshd[5434]: Failed"),
            some("web3")
        );
        // /dev/log: no host name, the program without its pid.
        assert_eq!(
            sender("<38>Dec  3 20:17:27 sshd[5434]: Failed"),
            some("sshd")
        );
        assert_eq!(sender("no header"), None);
        assert_eq!(sender("<38>"), None);
        assert_eq!(sender("<38>Dec 3"), None);
    }

    #[test]
    fn a_relays_hosts_spread_over_the_queues_and_each_host_keeps_one() {
        let (txs, _rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| mpsc::channel(1)).unzip();
        let fanout = Fanout::new(txs);
        let relay = Origin::Peer(SocketAddr::from(([198, 51, 100, 1], 514)));
        let queue = |host: usize, pid: usize| {
            let frame = format!("<38>Dec  3 20:17:27 host{host} sshd[{pid}]: x");
            fanout.queue_for_sender(&relay, None, header_sender(frame.as_bytes()))
        };
        let mut used = [0usize; 2];
        for host in 0..200 {
            used[queue(host, 1)] += 1;
            assert_eq!(queue(host, 1), queue(host, 2), "one host, one queue");
        }
        assert!(used[0] > 60 && used[1] > 60, "uneven spread: {used:?}");
    }

    #[test]
    fn a_journal_relays_hosts_spread_over_the_queues_and_each_host_keeps_one() {
        use super::super::journal::export::Field;
        let (txs, _rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| mpsc::channel(1)).unzip();
        let fanout = Fanout::new(txs);
        let relay = Origin::Peer(SocketAddr::from(([198, 51, 100, 1], 19532)));
        let entry = |host: usize, pid: usize| RawMessage {
            origin: relay,
            identity: None,
            trust_hostname: false,
            payload: Payload::Journal(Box::new(Entry {
                fields: vec![
                    Field {
                        name: "_HOSTNAME".into(),
                        value: format!("host{host}").into_bytes(),
                    },
                    Field {
                        name: "_PID".into(),
                        value: pid.to_string().into_bytes(),
                    },
                ],
            })),
            received: Instant::now(),
            received_at: SystemTime::now(),
        };
        let mut used = [0usize; 2];
        for host in 0..200 {
            let queue = fanout.queue_of(&entry(host, 1), None);
            used[queue] += 1;
            assert_eq!(
                queue,
                fanout.queue_of(&entry(host, 2), None),
                "one host, one queue"
            );
        }
        assert!(used[0] > 60 && used[1] > 60, "uneven spread: {used:?}");
    }

    /// Connections take the queues in turn: four connections of one host over two workers
    /// are two each, whatever their ports; a relay's hosts still spread from its lane.
    #[test]
    fn connections_share_the_queues_evenly() {
        let (txs, _rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| mpsc::channel(1)).unzip();
        let fanout = Fanout::new(txs);
        let frame = b"<38>1 2026-12-03T20:17:27Z web01 sshd 1 - - Failed";
        let mut used = [0usize; 2];
        for port in [40001, 40003, 40005, 40007] {
            let batcher = fanout.connection_batcher();
            let origin = Origin::Peer(SocketAddr::from(([127, 0, 0, 1], port)));
            used[fanout.queue_for_sender(&origin, batcher.lane, header_sender(frame))] += 1;
        }
        assert_eq!(used, [2, 2]);
        let relay = fanout.connection_batcher();
        let origin = Origin::Peer(SocketAddr::from(([198, 51, 100, 1], 514)));
        let mut hosts = [0usize; 2];
        for host in 0..200 {
            let frame = format!("<38>Dec  3 20:17:27 host{host} sshd[1]: x");
            hosts[fanout.queue_for_sender(&origin, relay.lane, header_sender(frame.as_bytes()))] +=
                1;
        }
        assert!(hosts[0] > 60 && hosts[1] > 60, "uneven spread: {hosts:?}");
    }

    fn frame_message(port: u16, text: &str) -> RawMessage {
        RawMessage {
            origin: Origin::Peer(SocketAddr::from(([127, 0, 0, 1], port))),
            identity: None,
            trust_hostname: false,
            payload: Payload::Frame(Bytes::copy_from_slice(text.as_bytes())),
            received: Instant::now(),
            received_at: SystemTime::now(),
        }
    }

    /// A batch goes on when full or flushed, never before; messages keep their order.
    #[tokio::test]
    async fn a_batcher_sends_full_batches_and_flushes_the_rest_in_order() {
        let (tx, mut rx) = mpsc::channel(8);
        let fanout = Fanout::new(vec![tx]);
        let mut batcher = fanout.batcher();
        for i in 0..BATCH_MAX + 3 {
            let text = format!("<38>Dec  3 20:17:27 web sshd[1]: {i}");
            batcher.push(frame_message(40001, &text)).await.unwrap();
        }
        let full = rx.try_recv().expect("a full batch went on at once");
        assert_eq!(full.len(), BATCH_MAX);
        assert!(rx.try_recv().is_err(), "the rest waits for flush");
        batcher.flush().await.unwrap();
        let rest = rx.try_recv().expect("flushed");
        assert_eq!(rest.len(), 3);
        let text = |m: &RawMessage| match &m.payload {
            Payload::Frame(b) => String::from_utf8_lossy(b).into_owned(),
            Payload::Journal(_) => unreachable!(),
        };
        assert!(text(&full[0]).ends_with(": 0"));
        assert!(text(&rest[2]).ends_with(&format!(": {}", BATCH_MAX + 2)));
        batcher.flush().await.unwrap();
        assert!(rx.try_recv().is_err(), "nothing left to flush");
        drop(rx);
        let text = "<38>Dec  3 20:17:27 web sshd[1]: late";
        batcher.push(frame_message(40001, text)).await.unwrap();
        assert_eq!(batcher.flush().await, Err(Closed));
    }
}
