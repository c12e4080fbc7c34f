//! One journal connection's delivery, shared by both journal protocols: the listener's shared
//! settings (`JournalShared`), dropping entries a sender resends (`Dedupe`), and `Conn`, which
//! feeds bytes to the export parser and sends each new entry on. Knows nothing of HTTP.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::debug;

use super::export::{Entry, JournalError, Limits, Parser};
use crate::fault;
use crate::input::message::{InputContext, Origin, Payload, RawMessage};
use crate::metrics::{ListenerMetrics, Metrics};

/// Most fields in one entry (real entries have 20-40).
pub const MAX_FIELDS: usize = 1024;
/// How long an entry's identity is remembered to drop an uploader's resend: longer than any
/// sensible retry delay (a resent entry gets a fresh receive time, so it would count again).
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(3600);
/// Most entry identities remembered per listener (about 40 bytes each).
pub const DEDUPE_CAP: usize = 100_000;

/// Which protocol a journal listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP `POST /upload`.
    Upload,
    /// Plain export stream.
    Stream,
}

/// What every connection of one journal listener shares.
#[derive(Debug)]
pub struct JournalShared {
    /// Upload or stream.
    pub protocol: Protocol,
    /// Parser limits.
    pub limits: Limits,
    /// Silence after which a connection is closed.
    pub idle_timeout: Duration,
    /// Recently seen entries, by origin.
    pub dedupe: Mutex<Dedupe>,
}

impl JournalShared {
    /// Settings for one listener.
    pub fn new(protocol: Protocol, max_field: usize, max_entry: usize, idle: Duration) -> Self {
        JournalShared {
            protocol,
            limits: Limits {
                max_field,
                max_fields: MAX_FIELDS,
                max_entry,
            },
            idle_timeout: idle,
            dedupe: Mutex::new(Dedupe::new(DEDUPE_WINDOW, DEDUPE_CAP)),
        }
    }
}

/// Remembers entry identities (origin address + `__CURSOR`, or + boot id and sequence number)
/// for `window`, at most `cap` of them (oldest forgotten first). Stores 64-bit keyed hashes,
/// not the cursors: bounded memory, and a forged collision needs the per-process random key.
#[derive(Debug)]
pub struct Dedupe {
    window: Duration,
    cap: usize,
    hasher: RandomState,
    seen: HashSet<u64>,
    order: VecDeque<(Instant, u64)>,
}

impl Dedupe {
    /// An empty memory.
    pub fn new(window: Duration, cap: usize) -> Self {
        Dedupe {
            window,
            cap: cap.max(1),
            hasher: RandomState::new(),
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// True if this entry was seen from this origin within the window; otherwise remembers it.
    pub fn is_repeat(&mut self, origin: IpAddr, id: &[u8], now: Instant) -> bool {
        while let Some(&(at, key)) = self.order.front() {
            if now.saturating_duration_since(at) < self.window {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&key);
        }
        let mut h = self.hasher.build_hasher();
        origin.hash(&mut h);
        id.hash(&mut h);
        let key = h.finish();
        if !self.seen.insert(key) {
            return true;
        }
        self.order.push_back((now, key));
        if self.order.len() > self.cap {
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        false
    }

    /// Identities remembered now.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// An entry's identity: `__CURSOR`, else `_BOOT_ID` + `__SEQNUM_ID` + `__SEQNUM`; None when
/// the entry carries neither (it is then never taken for a repeat).
pub(super) fn entry_id(entry: &Entry) -> Option<Vec<u8>> {
    if let Some(cursor) = entry.get("__CURSOR").filter(|c| !c.is_empty()) {
        return Some(cursor.to_vec());
    }
    let seqnum = entry.get("__SEQNUM")?;
    let mut id = b"seq;".to_vec();
    for part in [
        entry.get("_BOOT_ID"),
        entry.get("__SEQNUM_ID"),
        Some(seqnum),
    ] {
        id.extend_from_slice(part.unwrap_or_default());
        id.push(b';');
    }
    Some(id)
}

/// An entry's identity as a cluster counts it: the first 16 bytes of the SHA-256 of its
/// [`entry_id`]. An uploader that fails over sends the entries the first collector did not
/// acknowledge again to the next one; with this as the failure's id in the shared count, one
/// the first collector had counted already is not counted twice. None: no identity.
pub fn shared_key(entry: &Entry) -> Option<[u8; 16]> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(entry_id(entry)?);
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    Some(key)
}

/// One connection's view: shared settings, counters, the pipeline.
pub(super) struct Conn<'a> {
    pub(super) origin: Origin,
    pub(super) shared: &'a JournalShared,
    pub(super) counters: &'a ListenerMetrics,
    pub(super) ctx: &'a InputContext,
}

/// The pipeline is gone, or the export parser hit a bug (counted and logged by `fault`): close
/// the connection.
pub(super) struct Gone;

impl Conn<'_> {
    fn ip(&self) -> IpAddr {
        match self.origin {
            Origin::Peer(addr) => addr.ip(),
            Origin::Local => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }

    /// Sends one entry on (unless it is a resend).
    pub(super) async fn deliver(&self, entry: Entry) -> Result<(), Gone> {
        let received = crate::clock::now();
        if let Some(id) = entry_id(&entry) {
            let repeat = self
                .shared
                .dedupe
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_repeat(self.ip(), &id, received);
            if repeat {
                Metrics::inc(&self.counters.duplicates);
                return Ok(());
            }
        }
        Metrics::inc(&self.counters.messages);
        let message = RawMessage {
            origin: self.origin,
            identity: None,
            trust_hostname: self.ctx.trust_hostname,
            payload: Payload::Journal(Box::new(entry)),
            received,
            received_at: crate::clock::wall_now(),
        };
        self.ctx.tx.send(message).await.map_err(|_| Gone)
    }

    /// Feeds body bytes to the parser, delivering every entry completed, and counts the
    /// fields it skipped for their size as `oversize`.
    pub(super) async fn feed(
        &self,
        parser: &mut Parser,
        mut data: &[u8],
    ) -> Result<Result<(), JournalError>, Gone> {
        let skipped_before = parser.skipped_fields();
        let result = loop {
            let fed = fault::contain(&self.ctx.metrics, || parser.feed(&mut data));
            match fed.ok_or(Gone)? {
                Ok(Some(entry)) => self.deliver(entry).await?,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let skipped = parser.skipped_fields() - skipped_before;
        if skipped > 0 {
            self.counters.oversize.fetch_add(skipped, Ordering::Relaxed);
            debug!(listener = %self.counters.label, origin = %self.origin, skipped, "Journal fields over a limit skipped");
        }
        Ok(result)
    }
}

/// Reads more bytes into `buf`; false on end of stream, error, idle timeout or shutdown.
pub(super) async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    conn: &Conn<'_>,
) -> bool {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    let read = tokio::select! {
        _ = conn.ctx.shutdown.cancelled() => return false,
        r = tokio::time::timeout(conn.shared.idle_timeout, stream.read_buf(buf)) => r,
    };
    match read {
        Ok(Ok(0)) => false,
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            debug!(listener = %conn.counters.label, origin = %conn.origin, error = %e, "Connection error");
            false
        }
        Err(_) => {
            debug!(listener = %conn.counters.label, origin = %conn.origin, "Idle timeout");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_forgets_after_the_window_and_beyond_the_cap() {
        let mut d = Dedupe::new(Duration::from_secs(10), 3);
        let t = Instant::now();
        let a: IpAddr = "198.51.100.10".parse().unwrap();
        let b: IpAddr = "198.51.100.11".parse().unwrap();
        assert!(!d.is_repeat(a, b"c1", t));
        assert!(d.is_repeat(a, b"c1", t + Duration::from_secs(9)));
        assert!(!d.is_repeat(b, b"c1", t), "per origin");
        assert!(
            !d.is_repeat(a, b"c1", t + Duration::from_secs(10)),
            "window over"
        );
        for i in 0..10u8 {
            d.is_repeat(a, &[i], t + Duration::from_secs(10));
        }
        assert_eq!(d.len(), 3);
        assert!(
            !d.is_repeat(a, &[0], t + Duration::from_secs(10)),
            "evicted by the cap"
        );
    }

    #[test]
    fn entry_id_prefers_the_cursor() {
        let entry = |fields: &[(&str, &str)]| Entry {
            fields: fields
                .iter()
                .map(|(n, v)| super::super::export::Field {
                    name: n.to_string(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
        };
        assert_eq!(
            entry_id(&entry(&[("__CURSOR", "s=1;i=2"), ("__SEQNUM", "2")])),
            Some(b"s=1;i=2".to_vec())
        );
        assert_eq!(
            entry_id(&entry(&[("_BOOT_ID", "b"), ("__SEQNUM", "2")])),
            Some(b"seq;b;;2;".to_vec())
        );
        assert_eq!(entry_id(&entry(&[("MESSAGE", "x")])), None);
        // The cluster's key: the same for the same entry wherever it arrives.
        let one = shared_key(&entry(&[("__CURSOR", "s=1;i=2"), ("MESSAGE", "a")]));
        let again = shared_key(&entry(&[("MESSAGE", "a"), ("__CURSOR", "s=1;i=2")]));
        let other = shared_key(&entry(&[("__CURSOR", "s=1;i=3"), ("MESSAGE", "a")]));
        assert!(one.is_some());
        assert_eq!(one, again);
        assert_ne!(one, other);
        assert_eq!(shared_key(&entry(&[("MESSAGE", "x")])), None);
    }
}
