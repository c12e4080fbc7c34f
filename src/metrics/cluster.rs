//! The cluster's counters (`syslog2ban_cluster_*`) and the view `status` shows: whether the
//! engine is reachable, what waits for it, and every collector with its lag.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::histogram::Histogram;
use super::last_error::LastError;

/// One collector as the engine last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Its `node` name.
    pub node: String,
    /// Milliseconds since its last heartbeat.
    pub seen_ms_ago: u64,
    /// How far behind the newest shared ban its reading is, in milliseconds.
    pub lag_ms: u64,
    /// It counts alone (the engine was unreachable for it).
    pub degraded: bool,
    /// The forms of ban entries it reads (`cluster::entry::READS`; 1: an earlier version,
    /// whose heartbeat does not say, which reads only a field per value).
    #[serde(default = "one")]
    pub reads: u64,
    /// How far its clock runs ahead of the engine's, in milliseconds (negative: behind), as
    /// its last heartbeat measured it; None for an earlier version, which does not say.
    #[serde(default)]
    pub clock_ahead_ms: Option<i64>,
}

fn one() -> u64 {
    1
}

/// The cluster's counters.
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    /// A `[cluster]` is configured (nothing is rendered otherwise).
    pub enabled: AtomicBool,
    /// The engine is unreachable: this collector counts and bans alone (gauge 0/1).
    pub degraded: AtomicBool,
    /// Another running collector writes heartbeats under this collector's `node`: neither
    /// adopts the other's bans (gauge 0/1).
    pub name_clash: AtomicBool,
    /// Unix milliseconds when the current degraded spell began (0: none).
    pub degraded_since_ms: AtomicU64,
    /// Milliseconds spent degraded, all spells ended so far.
    pub degraded_ms_total: AtomicU64,
    /// Engine calls made.
    pub calls: AtomicU64,
    /// Round trips to the engine that carried them (a storm's calls go in batches).
    pub round_trips: AtomicU64,
    /// Engine calls that failed or timed out.
    pub call_errors: AtomicU64,
    /// Failures waiting for the engine (gauge).
    pub buffered_failures: AtomicU64,
    /// Bans waiting to be published (gauge).
    pub buffered_bans: AtomicU64,
    /// Failures or bans dropped because the buffer was full.
    pub buffer_dropped: AtomicU64,
    /// Bans the shared count decided here.
    pub shared_offences: AtomicU64,
    /// Bans decided here that another collector decided too, before either knew of the
    /// other's (its ban arrived for an attacker this collector had banned): announced by
    /// both. Each of the two collectors counts it.
    pub double_decisions: AtomicU64,
    /// Bans published.
    pub published: AtomicU64,
    /// Bans decided here and held back for the collector holding their claim, published
    /// here because that collector's ban did not arrive in time.
    pub holder_overdue: AtomicU64,
    /// Bans of other collectors adopted.
    pub adopted: AtomicU64,
    /// Ban stream entries that could not be read (another version's, or not a collector's):
    /// skipped.
    pub unreadable_entries: AtomicU64,
    /// Times this collector republished its active bans (an engine that lost its data).
    pub republished: AtomicU64,
    /// From the failure that made a ban decided here to its publication on the engine: how
    /// late the other collectors can learn of it.
    pub publish_delay: Histogram,
    /// The last engine error, while failing.
    pub last_error: LastError,
    /// Every collector of the cluster, as of the last heartbeat.
    pub peers: Mutex<Vec<Peer>>,
}

fn get(v: &AtomicU64) -> u64 {
    v.load(Ordering::Relaxed)
}

impl ClusterMetrics {
    /// Replaces the peers' view.
    pub fn set_peers(&self, peers: Vec<Peer>) {
        *self.peers.lock().unwrap_or_else(PoisonError::into_inner) = peers;
    }

    /// The peers' view.
    pub fn peers(&self) -> Vec<Peer> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Milliseconds degraded, the current spell included, as of `now_ms`.
    pub fn degraded_ms(&self, now_ms: u64) -> u64 {
        let since = get(&self.degraded_since_ms);
        let current = if since > 0 {
            now_ms.saturating_sub(since)
        } else {
            0
        };
        get(&self.degraded_ms_total) + current
    }

    /// The Prometheus families, when a cluster is configured.
    pub fn render(&self, now_ms: u64) -> String {
        let mut out = String::new();
        if !self.enabled.load(Ordering::Relaxed) {
            return out;
        }
        let rows: [(&str, &str, &str, u64); 17] = [
            (
                "degraded",
                "1 while the engine is unreachable and this collector counts alone",
                "gauge",
                u64::from(self.degraded.load(Ordering::Relaxed)),
            ),
            (
                "node_name_clash",
                "1 while another running collector uses this collector's node name (neither adopts the other's bans)",
                "gauge",
                u64::from(self.name_clash.load(Ordering::Relaxed)),
            ),
            (
                "degraded_seconds_total",
                "Seconds spent counting alone",
                "counter",
                self.degraded_ms(now_ms) / 1000,
            ),
            (
                "calls_total",
                "Engine calls made",
                "counter",
                get(&self.calls),
            ),
            (
                "round_trips_total",
                "Round trips to the engine (calls go in batches of up to 2048)",
                "counter",
                get(&self.round_trips),
            ),
            (
                "call_errors_total",
                "Engine calls that failed or timed out",
                "counter",
                get(&self.call_errors),
            ),
            (
                "buffered_failures",
                "Failures waiting for the engine",
                "gauge",
                get(&self.buffered_failures),
            ),
            (
                "buffered_bans",
                "Bans waiting to be published",
                "gauge",
                get(&self.buffered_bans),
            ),
            (
                "buffer_dropped_total",
                "Failures or bans dropped from a full buffer",
                "counter",
                get(&self.buffer_dropped),
            ),
            (
                "shared_offences_total",
                "Bans decided here by the shared count",
                "counter",
                get(&self.shared_offences),
            ),
            (
                "double_decisions_total",
                "Bans decided here that another collector decided too and announces (counted by the one that yields: once per double)",
                "counter",
                get(&self.double_decisions),
            ),
            (
                "published_total",
                "Bans published to the other collectors",
                "counter",
                get(&self.published),
            ),
            (
                "holder_overdue_total",
                "Bans held back for the collector holding their claim and published here because its ban did not arrive within 10 s",
                "counter",
                get(&self.holder_overdue),
            ),
            (
                "adopted_total",
                "Bans of other collectors adopted",
                "counter",
                get(&self.adopted),
            ),
            (
                "unreadable_entries_total",
                "Ban stream entries that could not be read (another version's, or not a collector's), skipped",
                "counter",
                get(&self.unreadable_entries),
            ),
            (
                "republished_total",
                "Times the active bans were republished to an emptied engine",
                "counter",
                get(&self.republished),
            ),
            (
                "peers",
                "Collectors seen by the engine",
                "gauge",
                self.peers().len() as u64,
            ),
        ];
        for (name, help, kind, value) in rows {
            let _ = writeln!(
                out,
                "# HELP syslog2ban_cluster_{name} {help}\n# TYPE syslog2ban_cluster_{name} {kind}\nsyslog2ban_cluster_{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP syslog2ban_cluster_peer_lag_seconds How far behind the newest shared ban each collector reads\n# TYPE syslog2ban_cluster_peer_lag_seconds gauge"
        );
        for peer in self.peers() {
            let _ = writeln!(
                out,
                "syslog2ban_cluster_peer_lag_seconds{{node=\"{}\"}} {}",
                peer.node,
                peer.lag_ms as f64 / 1000.0
            );
        }
        let _ = writeln!(
            out,
            "# HELP syslog2ban_cluster_peer_clock_ahead_seconds How far each collector's clock runs ahead of the engine's (negative: behind)\n# TYPE syslog2ban_cluster_peer_clock_ahead_seconds gauge"
        );
        for peer in self.peers() {
            if let Some(ahead) = peer.clock_ahead_ms {
                let _ = writeln!(
                    out,
                    "syslog2ban_cluster_peer_clock_ahead_seconds{{node=\"{}\"}} {}",
                    peer.node,
                    ahead as f64 / 1000.0
                );
            }
        }
        let name = "syslog2ban_cluster_publish_delay_seconds";
        let _ = writeln!(out, "# HELP {name} From the failure that made a ban decided here to its publication on the engine.\n# TYPE {name} histogram");
        self.publish_delay.render_into(&mut out, name, "");
        out
    }
}
