//! What the counter and the follower share: the config, the engine's keys, the counters,
//! the connection to the engine, the follower's position for the heartbeat, and how far
//! this collector's clock is from the engine's (the heartbeat measures it, both use it).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::engine::Keys;
use super::resp::{Connection, EngineError, Reply};
use crate::config::{ClusterConfig, EngineUrl, SentinelConfig};
use crate::metrics::{ClusterMetrics, Metrics};

/// How often the heartbeat is written, the peers read and a lost engine tried again.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long the follower's read blocks waiting for new bans.
pub(super) const FOLLOW_BLOCK: Duration = Duration::from_millis(1000);
/// Bans read per follower call (a storm's bans come at thousands a second, and a
/// CPU-limited collector's round trips are long: 500 left 4x as many).
pub(super) const FOLLOW_BATCH: usize = 2000;
/// Most failures counted in one round trip. The counter waits on the engine, not on the CPU:
/// with 256, a CPU-limited collector in a storm dropped 40-50% of its failures from the full
/// queue to the counter; with 2048, 8-15% (and no slower ingest).
pub(super) const COUNT_BATCH: usize = 2048;
/// Most bans published in one round trip (as many as failures counted in one).
pub(super) const PUBLISH_BATCH: usize = 2048;
/// Entries the ban stream keeps (approximately).
pub(super) const STREAM_CAP: usize = 100_000;
/// A collector's clock within this of the engine's is taken as in step: a ban's times are
/// not moved between the two for less (the offset is measured to a round trip), and no
/// warning is due.
pub const CLOCK_IN_STEP_MS: i64 = 1000;
/// The follower's position, in the state directory.
pub(super) const CURSOR_FILE: &str = "cluster-cursor";

/// `[cluster] ca_file` could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the cluster's CA file {} cannot be read: {source}", path.display())]
pub struct CaFileError {
    /// The file.
    pub path: std::path::PathBuf,
    /// Why.
    pub source: std::io::Error,
}

#[derive(Clone)]
pub(super) struct Shared {
    pub(super) config: Arc<ClusterConfig>,
    pub(super) ca: Arc<Option<Vec<u8>>>,
    pub(super) keys: Keys,
    pub(super) metrics: Arc<Metrics>,
    /// The follower's position (stream id milliseconds), for the heartbeat.
    pub(super) cursor_ms: Arc<AtomicU64>,
    /// How far this collector's clock runs ahead of the engine's (ms; negative: behind), as
    /// the last heartbeat measured it; 0 before the first.
    pub(super) clock_ahead_ms: Arc<AtomicI64>,
}

impl Shared {
    /// For `config`, its CA certificates (`ca_file`) read, with the daemon's counters.
    pub(super) fn new(config: ClusterConfig, metrics: Arc<Metrics>) -> Result<Shared, CaFileError> {
        let ca = match &config.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| CaFileError {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        Ok(Shared {
            keys: Keys::new(&config.prefix),
            config: Arc::new(config),
            ca: Arc::new(ca),
            metrics,
            cursor_ms: Arc::new(AtomicU64::new(0)),
            clock_ahead_ms: Arc::new(AtomicI64::new(0)),
        })
    }

    /// How far this collector's clock runs ahead of the engine's, when it is out of step
    /// (see [`CLOCK_IN_STEP_MS`]): the times of bans published are moved back by as much
    /// (they go out on the engine's clock), those of bans read forward.
    pub(super) fn clock_out_of_step(&self) -> Option<i64> {
        let ahead = self.clock_ahead_ms.load(Ordering::Relaxed);
        (ahead.abs() >= CLOCK_IN_STEP_MS).then_some(ahead)
    }

    pub(super) fn cm(&self) -> &ClusterMetrics {
        &self.metrics.cluster
    }

    /// Connects to the primary the sentinels name, if any are configured, else (or when
    /// that fails) to the first server of `urls` that answers and takes writes, with
    /// `timeout` per call; with the primary's replication id when it tells it. A replica is
    /// passed over: after a failover the old primary comes back as one, and a collector that
    /// kept to it would be refused every write (`READONLY`) and stay degraded.
    pub(super) async fn connect(
        &self,
        timeout: Duration,
    ) -> Result<(Connection, Option<String>), EngineError> {
        let mut why = Vec::new();
        let named = match &self.config.sentinel {
            Some(sentinel) => match self.ask_sentinels(sentinel, timeout).await {
                Ok(url) => Some(url),
                Err(e) => {
                    why.push(e);
                    None
                }
            },
            None => None,
        };
        // The primary the sentinels name first; a server of `urls` only once.
        let listed = self
            .config
            .urls
            .iter()
            .filter(|u| Some(*u) != named.as_ref());
        for url in named.iter().chain(listed) {
            match self.primary_at(url, timeout).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => why.push(format!("{url}: a replica (read-only)")),
                Err(e) => why.push(format!("{url}: {e}")),
            }
        }
        Err(EngineError::NoPrimary(why.join("; ")))
    }

    /// A connection to `url` and its replication id, or None when it is a replica.
    async fn primary_at(
        &self,
        url: &EngineUrl,
        timeout: Duration,
    ) -> Result<Option<(Connection, Option<String>)>, EngineError> {
        let mut conn = Connection::connect(url, self.ca.as_deref(), timeout).await?;
        let role = match conn.call(&[b"INFO", b"replication"]).await {
            Ok(reply) => Role::of(&reply.text().unwrap_or_default()),
            // Not allowed (an ACL without INFO): taken as it answers.
            Err(EngineError::Server(_)) => Role::Primary(None),
            Err(e) => return Err(e),
        };
        let Role::Primary(id) = role else {
            return Ok(None);
        };
        // A Redis Cluster node answers only for its own slots: every count and ban of an
        // attacker hashed elsewhere would fail, so it is refused as a whole, with the reason
        // in `status` (a server without INFO is taken as it answers).
        match conn.call(&[b"INFO", b"cluster"]).await {
            Ok(reply) if is_cluster_node(&reply.text().unwrap_or_default()) => {
                return Err(EngineError::ClusterMode)
            }
            Ok(_) | Err(EngineError::Server(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(Some((conn, id)))
    }

    /// The primary the first sentinel that knows it names, reached with the scheme,
    /// credentials and database of the first of `urls`; why not, per sentinel.
    async fn ask_sentinels(
        &self,
        sentinel: &SentinelConfig,
        timeout: Duration,
    ) -> Result<EngineUrl, String> {
        let Some(template) = self.config.urls.first() else {
            return Err("no urls to reach the primary with".into());
        };
        let mut why = Vec::new();
        for url in &sentinel.urls {
            let asked = async {
                let mut conn = Connection::connect(url, self.ca.as_deref(), timeout).await?;
                conn.call(&[
                    b"SENTINEL",
                    b"get-master-addr-by-name",
                    sentinel.master.as_bytes(),
                ])
                .await
            }
            .await;
            let reply = match asked {
                Ok(reply) => reply,
                Err(e) => {
                    why.push(format!("sentinel {url}: {e}"));
                    continue;
                }
            };
            let items = reply.items();
            let host = items.first().and_then(Reply::text);
            let port = items
                .get(1)
                .and_then(Reply::text)
                .and_then(|p| p.parse().ok());
            match (host, port) {
                (Some(host), Some(port)) => {
                    return Ok(EngineUrl {
                        host,
                        port,
                        ..template.clone()
                    })
                }
                _ => why.push(format!(
                    "sentinel {url}: knows no primary named \"{}\"",
                    sentinel.master
                )),
            }
        }
        Err(why.join("; "))
    }
}

/// What `INFO replication` says of a server.
#[derive(Debug, PartialEq, Eq)]
enum Role {
    /// It takes writes; its replication id, which a failover or a restart changes.
    Primary(Option<String>),
    /// A replica: read-only.
    Replica,
}

impl Role {
    fn of(info: &str) -> Role {
        match info_field(info, "role") {
            Some("slave" | "replica") => Role::Replica,
            _ => Role::Primary(info_field(info, "master_replid").map(str::to_string)),
        }
    }
}

/// The value of `name:value` in an `INFO` reply.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Whether `INFO cluster` comes from a node of a Redis Cluster.
fn is_cluster_node(info: &str) -> bool {
    info_field(info, "cluster_enabled") == Some("1")
}

#[cfg(test)]
mod tests {
    use super::{is_cluster_node, Role};

    #[test]
    fn a_redis_cluster_node_is_told_from_a_standalone_server() {
        assert!(is_cluster_node("# Cluster\r\ncluster_enabled:1\r\n"));
        assert!(!is_cluster_node("# Cluster\r\ncluster_enabled:0\r\n"));
        assert!(!is_cluster_node(""), "an older server says nothing");
    }

    #[test]
    fn a_replica_is_told_from_a_primary_and_a_primary_by_its_replication_id() {
        let primary = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
                       master_replid:8f1e\r\nmaster_replid2:0000\r\n";
        assert_eq!(Role::of(primary), Role::Primary(Some("8f1e".into())));
        let replica = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n\
                       master_replid:8f1e\r\n";
        assert_eq!(Role::of(replica), Role::Replica);
        assert_eq!(
            Role::of(""),
            Role::Primary(None),
            "says nothing: as it answers"
        );
    }
}
