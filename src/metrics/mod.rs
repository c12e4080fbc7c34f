//! Counters every stage increments and the Prometheus text they render to.
//!
//! Owns the metric names and labels (never an address as a label). Stages hold `Arc`s to
//! their own counters and bump atomics; nothing here blocks the hot path. Counters are kept
//! by listener label and jail name, so a reload keeps the counts of what still exists.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

mod cluster;
mod histogram;
mod last_error;
mod notifiers;
mod render;
pub use cluster::{ClusterMetrics, Peer};
pub use histogram::Histogram;
pub use last_error::LastError;
pub use notifiers::{FeedMetrics, NotifierMetrics};

/// Per-listener counters.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    /// `udp:0.0.0.0:514` style label.
    pub label: String,
    /// Frames handed on to parsing.
    pub messages: AtomicU64,
    /// Frames larger than max_frame, skipped.
    pub oversize: AtomicU64,
    /// Connections refused because max_connections (or the per-peer limit) was reached.
    pub refused_connections: AtomicU64,
    /// Journal listeners: entries skipped because the same entry (same `__CURSOR`, or boot id
    /// and sequence number) came from the same origin recently (an uploader's resend).
    pub duplicates: AtomicU64,
    /// Journal listeners: requests or streams refused as malformed or over a limit.
    pub rejected: AtomicU64,
    /// Datagrams and connections from senders outside the listener's allow-list, and TLS
    /// clients refused (handshake failed, certificate not allowed).
    pub refused_senders: AtomicU64,
    /// Connections closed for not finishing the TLS handshake, or not sending a first byte,
    /// within `handshake_timeout`.
    pub handshake_timeouts: AtomicU64,
    /// accept() failures (EMFILE: the process is out of file descriptors).
    pub accept_errors: AtomicU64,
    /// UDP only: the socket's inode, to read the kernel's drop counter (0: none).
    pub udp_inode: AtomicU64,
}

/// Per-jail counters.
#[derive(Debug, Default)]
pub struct JailMetrics {
    /// Jail name.
    pub name: String,
    /// Failures counted.
    pub failures: AtomicU64,
    /// Failures from ignoreip addresses or vetoed by ignoreregex.
    pub ignored: AtomicU64,
    /// Bans decided.
    pub bans: AtomicU64,
    /// Bans ended (expired or unbanned).
    pub unbans: AtomicU64,
    /// Addresses with failures in the window now (gauge).
    pub tracked: AtomicU64,
    /// Addresses evicted at `max_tracked` while their failures still counted.
    pub evicted: AtomicU64,
    /// Addresses banned by this jail now (gauge).
    pub banned: AtomicU64,
}

/// Per-firewall counters (`local`, or a `[target.NAME]`).
#[derive(Debug, Default)]
pub struct TargetMetrics {
    /// `local` or the target's name.
    pub name: String,
    /// Batches applied.
    pub batches: AtomicU64,
    /// Local only: of those, the batches sent to the kernel over netlink (the rest ran nft).
    pub netlink_batches: AtomicU64,
    /// Local only: batches applied with the drift monitor away (a storm's; see
    /// `enforce::unheard`).
    pub unheard_batches: AtomicU64,
    /// Local only: of those, the ones judged unsound afterwards (another transaction may
    /// have gone unheard, or a marker was lost): each cost a reconcile.
    pub unheard_unsound: AtomicU64,
    /// Batches (or connections, for remote targets) that failed.
    pub errors: AtomicU64,
    /// Time from a ban decision to the firewall holding it.
    pub latency: Histogram,
    /// Remote only: 1 while the SSH session is up (gauge).
    pub connected: AtomicU64,
    /// Remote only: changes waiting to be applied (gauge).
    pub queued: AtomicU64,
    /// Remote only: changes dropped from a full queue (the next reconcile restores them).
    pub queue_overflows: AtomicU64,
    /// Reconciles completed.
    pub reconciles: AtomicU64,
    /// Elements a reconcile added (missing) or removed (stray), and parts of the table it
    /// re-created.
    pub reconcile_fixes: AtomicU64,
    /// Unix time of the last completed reconcile (0: none yet).
    pub last_reconcile_unix: AtomicU64,
    /// Local only: addresses the table should hold, as of the last reconcile (gauge).
    pub desired: AtomicU64,
    /// Local only: addresses the table held after the last reconcile (gauge).
    pub present: AtomicU64,
    /// The last error, cleared by the next success.
    pub last_error: LastError,
}

impl TargetMetrics {
    /// Records an error (and counts it).
    pub fn failed(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.last_error.set(Some(error));
    }

    /// Clears the last error after a success.
    pub fn succeeded(&self) {
        self.last_error.set(None);
    }

    /// The last error, if the last attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.get()
    }
}

/// The ban store's health.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    /// 1 while the last commit failed (gauge).
    pub failing: AtomicU64,
    /// Writes waiting for a commit that works (gauge).
    pub pending: AtomicU64,
    /// Failed commits.
    pub errors: AtomicU64,
    /// Writes dropped because the retry backlog was full.
    pub lost: AtomicU64,
    /// Why the last commit failed, while failing.
    pub last_error: LastError,
}

impl StoreMetrics {
    /// Records a failed commit.
    pub fn failed(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.failing.store(1, Ordering::Relaxed);
        self.last_error.set(Some(error));
    }

    /// Records a commit that worked.
    pub fn succeeded(&self) {
        self.failing.store(0, Ordering::Relaxed);
        self.pending.store(0, Ordering::Relaxed);
        self.last_error.set(None);
    }
}

/// A gauge read at scrape time (queue depths).
pub type GaugeFn = Box<dyn Fn() -> u64 + Send + Sync>;

/// A queue-depth gauge over a bounded channel: what waits in it. Weak: the gauge must not keep
/// a channel open at shutdown.
pub fn depth<T: Send + 'static>(tx: tokio::sync::mpsc::WeakSender<T>) -> GaugeFn {
    Box::new(move || {
        tx.upgrade()
            .map_or(0, |tx| (tx.max_capacity() - tx.capacity()) as u64)
    })
}

/// All counters of one daemon.
#[derive(Default)]
pub struct Metrics {
    listeners: Mutex<Vec<Arc<ListenerMetrics>>>,
    jails: Mutex<Vec<Arc<JailMetrics>>>,
    targets: Mutex<Vec<Arc<TargetMetrics>>>,
    notifiers: Mutex<Vec<Arc<NotifierMetrics>>>,
    feeds: Mutex<Vec<Arc<FeedMetrics>>>,
    queues: Mutex<Vec<(String, GaugeFn)>>,
    /// Frames no parser could read.
    pub unparsed: AtomicU64,
    /// Messages for programs no jail hears.
    pub unrouted: AtomicU64,
    /// Messages whose processing hit a bug (a caught panic) and were skipped.
    pub message_faults: AtomicU64,
    /// Addresses currently banned.
    pub active_bans: AtomicU64,
    /// The ban store's health.
    pub store: StoreMetrics,
    /// The shared engine, when `[cluster]` is configured.
    pub cluster: ClusterMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn get_or_add<T>(
    list: &Mutex<Vec<Arc<T>>>,
    key: &str,
    key_of: fn(&T) -> &str,
    make: impl FnOnce() -> T,
) -> Arc<T> {
    // Only counters live behind the lock; a panic elsewhere cannot leave them inconsistent.
    let mut list = list.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = list.iter().find(|m| key_of(m) == key) {
        return found.clone();
    }
    let made = Arc::new(make());
    list.push(made.clone());
    made
}

impl Metrics {
    /// Increments a counter by one.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    /// The counters of the listener with this label (created on first use).
    pub fn listener(&self, label: &str) -> Arc<ListenerMetrics> {
        get_or_add(
            &self.listeners,
            label,
            |m| &m.label,
            || ListenerMetrics {
                label: label.to_string(),
                ..Default::default()
            },
        )
    }

    /// The counters of the jail with this name (created on first use).
    pub fn jail(&self, name: &str) -> Arc<JailMetrics> {
        get_or_add(
            &self.jails,
            name,
            |m| &m.name,
            || JailMetrics {
                name: name.to_string(),
                ..Default::default()
            },
        )
    }

    /// The counters of a firewall (`local` or a target name; created on first use).
    pub fn target(&self, name: &str) -> Arc<TargetMetrics> {
        get_or_add(
            &self.targets,
            name,
            |m| &m.name,
            || TargetMetrics {
                name: name.to_string(),
                ..Default::default()
            },
        )
    }

    /// The counters of a notifier (created on first use).
    pub fn notifier(&self, name: &str) -> Arc<NotifierMetrics> {
        get_or_add(
            &self.notifiers,
            name,
            |m| &m.name,
            || NotifierMetrics {
                name: name.to_string(),
                ..Default::default()
            },
        )
    }

    /// The counters of a feed (created on first use).
    pub fn feed(&self, name: &str) -> Arc<FeedMetrics> {
        get_or_add(
            &self.feeds,
            name,
            |m| &m.name,
            || FeedMetrics {
                name: name.to_string(),
                ..Default::default()
            },
        )
    }

    /// All feed counters seen so far.
    pub fn feeds(&self) -> Vec<Arc<FeedMetrics>> {
        self.feeds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// All notifier counters seen so far.
    pub fn notifiers(&self) -> Vec<Arc<NotifierMetrics>> {
        self.notifiers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// All firewall counters seen so far.
    pub fn targets(&self) -> Vec<Arc<TargetMetrics>> {
        self.targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// All listener counters seen so far.
    pub fn listeners(&self) -> Vec<Arc<ListenerMetrics>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// All jail counters seen so far.
    pub fn jails(&self) -> Vec<Arc<JailMetrics>> {
        self.jails
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Registers a queue whose depth is read at scrape time.
    pub fn register_queue(&self, name: &str, depth: GaugeFn) {
        self.queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.to_string(), depth));
    }
}

#[cfg(test)]
mod tests;
