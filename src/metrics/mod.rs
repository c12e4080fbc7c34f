//! Counters every stage increments and the Prometheus text they render to.
//!
//! Owns the metric names and labels (never an address as a label). Stages hold `Arc`s to
//! their own counters and bump atomics; nothing here blocks the hot path. Counters are kept
//! by listener label and jail name, so a reload keeps the counts of what still exists.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

mod cluster;
mod last_error;
mod notifiers;
pub use cluster::{ClusterMetrics, Peer};
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

/// The kernel's receive-queue drops of the UDP socket with this inode (/proc/net/udp{,6}).
fn udp_drops(inode: u64) -> Option<u64> {
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).ok()?;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // ... uid timeout inode ref pointer drops
            if fields.len() >= 13 && fields[9].parse::<u64>().ok() == Some(inode) {
                return fields[12].parse().ok();
            }
        }
    }
    None
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

/// Upper bounds of the enforcement latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(value.as_micros() as u64, Ordering::Relaxed);
    }
}

/// `{name="value"}` with the value escaped as the text format requires (a unix socket path
/// may hold `"` or `\`).
fn label(name: &str, value: &str) -> String {
    let mut out = format!("{{{name}=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\"}");
    out
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

    /// The notifier families in Prometheus text.
    fn render_notifiers(&self) -> String {
        let notifiers = self.notifiers();
        let mut out = String::new();
        let feeds = self.feeds();
        for (name, help, kind, value) in [
            (
                "syslog2ban_feed_fetches_total",
                "Fetches of each blocklist feed.",
                "counter",
                (|f: &FeedMetrics| &f.fetches) as fn(&FeedMetrics) -> &AtomicU64,
            ),
            (
                "syslog2ban_feed_errors_total",
                "Fetches that failed or brought nothing usable (the previous list stayed).",
                "counter",
                |f| &f.errors,
            ),
            (
                "syslog2ban_feed_entries",
                "Entries of each feed's applied list.",
                "gauge",
                |f| &f.entries,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for f in &feeds {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    label("feed", &f.name),
                    Self::get(value(f))
                );
            }
        }
        for (name, help, kind, value) in [
            (
                "syslog2ban_notify_sent_total",
                "Notifications delivered per notifier.",
                "counter",
                (|n: &NotifierMetrics| &n.sent) as fn(&NotifierMetrics) -> &AtomicU64,
            ),
            (
                "syslog2ban_notify_failures_total",
                "Failed delivery attempts per notifier (each is retried).",
                "counter",
                |n| &n.failed,
            ),
            (
                "syslog2ban_notify_dropped_total",
                "Notifications not sent on purpose per notifier (already reported this period).",
                "counter",
                |n| &n.dropped,
            ),
            (
                "syslog2ban_notify_queued",
                "Notifications waiting in the outbox per notifier.",
                "gauge",
                |n| &n.queued,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for n in &notifiers {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    label("notifier", &n.name),
                    Self::get(value(n))
                );
            }
        }
        out
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

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, help: &str, kind: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let listeners = self.listeners();
        let by_listener = |f: fn(&ListenerMetrics) -> &AtomicU64| {
            listeners
                .iter()
                .map(|l| (label("listener", &l.label), Self::get(f(l))))
                .collect()
        };
        family(
            "syslog2ban_messages_received_total",
            "Frames received per listener.",
            "counter",
            by_listener(|l| &l.messages),
        );
        family(
            "syslog2ban_frames_oversize_total",
            "Frames skipped for exceeding max_frame.",
            "counter",
            by_listener(|l| &l.oversize),
        );
        family(
            "syslog2ban_connections_refused_total",
            "Connections refused at max_connections or max_connections_per_peer.",
            "counter",
            by_listener(|l| &l.refused_connections),
        );
        family(
            "syslog2ban_handshake_timeouts_total",
            "Connections closed for not finishing the TLS handshake or sending a first byte within handshake_timeout.",
            "counter",
            by_listener(|l| &l.handshake_timeouts),
        );
        family(
            "syslog2ban_accept_errors_total",
            "Failed accepts per listener (EMFILE: out of file descriptors).",
            "counter",
            by_listener(|l| &l.accept_errors),
        );
        family(
            "syslog2ban_senders_refused_total",
            "Datagrams and connections from senders outside allow.",
            "counter",
            by_listener(|l| &l.refused_senders),
        );
        family(
            "syslog2ban_udp_kernel_drops_total",
            "Datagrams the kernel dropped because the receive buffer was full (UDP listeners).",
            "counter",
            listeners
                .iter()
                .filter_map(|l| {
                    let inode = Self::get(&l.udp_inode);
                    (inode != 0)
                        .then(|| (label("listener", &l.label), udp_drops(inode).unwrap_or(0)))
                })
                .collect(),
        );
        family(
            "syslog2ban_journal_duplicates_total",
            "Journal entries skipped as resends of entries already received.",
            "counter",
            by_listener(|l| &l.duplicates),
        );
        family(
            "syslog2ban_journal_rejected_total",
            "Journal uploads or streams refused as malformed or too large.",
            "counter",
            by_listener(|l| &l.rejected),
        );
        family(
            "syslog2ban_frames_unparsed_total",
            "Frames no parser could read.",
            "counter",
            vec![(String::new(), Self::get(&self.unparsed))],
        );
        family(
            "syslog2ban_messages_unrouted_total",
            "Messages for programs no jail hears.",
            "counter",
            vec![(String::new(), Self::get(&self.unrouted))],
        );
        family(
            "syslog2ban_message_faults_total",
            "Messages skipped because processing them hit a bug (a caught panic; see the log).",
            "counter",
            vec![(String::new(), Self::get(&self.message_faults))],
        );
        let jails = self.jails();
        let by_jail = |f: fn(&JailMetrics) -> &AtomicU64| {
            jails
                .iter()
                .map(|j| (label("jail", &j.name), Self::get(f(j))))
                .collect()
        };
        family(
            "syslog2ban_failures_total",
            "Failures counted per jail.",
            "counter",
            by_jail(|j| &j.failures),
        );
        family(
            "syslog2ban_failures_ignored_total",
            "Matches ignored (ignoreip, ignoreregex) per jail.",
            "counter",
            by_jail(|j| &j.ignored),
        );
        family(
            "syslog2ban_bans_total",
            "Bans decided per jail.",
            "counter",
            by_jail(|j| &j.bans),
        );
        family(
            "syslog2ban_unbans_total",
            "Bans ended (expired or unbanned) per jail.",
            "counter",
            by_jail(|j| &j.unbans),
        );
        family(
            "syslog2ban_jail_failing_addresses",
            "Addresses with failures in the window per jail.",
            "gauge",
            by_jail(|j| &j.tracked),
        );
        family(
            "syslog2ban_jail_tracker_evictions_total",
            "Addresses evicted at max_tracked while their failures still counted (least progress first).",
            "counter",
            by_jail(|j| &j.evicted),
        );
        family(
            "syslog2ban_jail_banned_addresses",
            "Addresses banned per jail.",
            "gauge",
            by_jail(|j| &j.banned),
        );
        family(
            "syslog2ban_store_failing",
            "1 while ban store commits fail (bans are enforced; writes are kept for retry).",
            "gauge",
            vec![(String::new(), Self::get(&self.store.failing))],
        );
        family(
            "syslog2ban_store_pending_writes",
            "Ban store writes waiting for a commit that works.",
            "gauge",
            vec![(String::new(), Self::get(&self.store.pending))],
        );
        family(
            "syslog2ban_store_errors_total",
            "Failed ban store commits.",
            "counter",
            vec![(String::new(), Self::get(&self.store.errors))],
        );
        family(
            "syslog2ban_store_lost_writes_total",
            "Ban store writes dropped because the retry backlog was full.",
            "counter",
            vec![(String::new(), Self::get(&self.store.lost))],
        );
        family(
            "syslog2ban_active_bans",
            "Addresses currently banned.",
            "gauge",
            vec![(String::new(), Self::get(&self.active_bans))],
        );
        let targets = self.targets();
        let by_target = |f: fn(&TargetMetrics) -> &AtomicU64| {
            targets
                .iter()
                .map(|t| (label("target", &t.name), Self::get(f(t))))
                .collect()
        };
        family(
            "syslog2ban_enforce_batches_total",
            "Firewall batches applied per target.",
            "counter",
            by_target(|t| &t.batches),
        );
        family(
            "syslog2ban_enforce_netlink_batches_total",
            "Of the applied batches, those sent straight to the kernel over netlink.",
            "counter",
            by_target(|t| &t.netlink_batches),
        );
        family(
            "syslog2ban_enforce_unheard_batches_total",
            "Of the netlink batches, a storm's applied with the drift monitor away.",
            "counter",
            by_target(|t| &t.unheard_batches),
        );
        family(
            "syslog2ban_enforce_unheard_unsound_total",
            "Unheard batches after which another transaction may have gone unheard (each cost a reconcile).",
            "counter",
            by_target(|t| &t.unheard_unsound),
        );
        family(
            "syslog2ban_enforce_errors_total",
            "Firewall batches (or SSH connections) that failed per target.",
            "counter",
            by_target(|t| &t.errors),
        );
        let remote: Vec<&Arc<TargetMetrics>> =
            targets.iter().filter(|t| t.name != "local").collect();
        let by_remote = |f: fn(&TargetMetrics) -> &AtomicU64| {
            remote
                .iter()
                .map(|t| (label("target", &t.name), Self::get(f(t))))
                .collect()
        };
        family(
            "syslog2ban_target_connected",
            "1 while the SSH session to a remote target is up.",
            "gauge",
            by_remote(|t| &t.connected),
        );
        family(
            "syslog2ban_target_queue_length",
            "Changes waiting for a remote target.",
            "gauge",
            by_remote(|t| &t.queued),
        );
        family(
            "syslog2ban_target_queue_overflows_total",
            "Changes dropped from a full target queue (restored by the next reconcile).",
            "counter",
            by_remote(|t| &t.queue_overflows),
        );
        family(
            "syslog2ban_target_reconciles_total",
            "Completed comparisons of a firewall's sets with the bans.",
            "counter",
            by_target(|t| &t.reconciles),
        );
        family(
            "syslog2ban_target_reconcile_fixes_total",
            "Missing elements added, stray elements removed and missing table parts re-created by reconciles.",
            "counter",
            by_target(|t| &t.reconcile_fixes),
        );
        family(
            "syslog2ban_target_last_reconcile_timestamp_seconds",
            "Unix time of the last completed reconcile.",
            "gauge",
            by_target(|t| &t.last_reconcile_unix),
        );
        let local: Vec<&Arc<TargetMetrics>> =
            targets.iter().filter(|t| t.name == "local").collect();
        let by_local = |f: fn(&TargetMetrics) -> &AtomicU64| {
            local
                .iter()
                .map(|t| (label("target", &t.name), Self::get(f(t))))
                .collect()
        };
        family(
            "syslog2ban_target_desired_bans",
            "Addresses the local table should hold, as of the last reconcile.",
            "gauge",
            by_local(|t| &t.desired),
        );
        family(
            "syslog2ban_target_present_bans",
            "Addresses the local table held after the last reconcile.",
            "gauge",
            by_local(|t| &t.present),
        );
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        family(
            "syslog2ban_queue_depth",
            "Items waiting in each internal queue.",
            "gauge",
            queues
                .iter()
                .map(|(name, depth)| (label("queue", name), depth()))
                .collect(),
        );
        drop(queues);
        let name = "syslog2ban_enforce_latency_seconds";
        let _ = writeln!(out, "# HELP {name} From the offending message's arrival (or the decision, for bans by hand or adopted) to the firewall holding it, per target.\n# TYPE {name} histogram");
        for t in &targets {
            let (h, target) = (&t.latency, &t.name);
            for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&h.buckets) {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{target=\"{target}\",le=\"{bound}\"}} {}",
                    Self::get(bucket)
                );
            }
            let count = Self::get(&h.count);
            let _ = writeln!(
                out,
                "{name}_bucket{{target=\"{target}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "{name}_sum{{target=\"{target}\"}} {}",
                Self::get(&h.sum_micros) as f64 / 1e6
            );
            let _ = writeln!(out, "{name}_count{{target=\"{target}\"}} {count}");
        }
        out.push_str(&self.render_notifiers());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        out.push_str(&self.cluster.render(now_ms));
        out
    }
}

#[cfg(test)]
mod tests;
