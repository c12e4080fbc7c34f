//! What the counter and the follower share: the config, the engine's keys, the counters,
//! the connection to the engine, and the follower's position for the heartbeat.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use super::engine::Keys;
use super::resp::{Connection, EngineError};
use crate::config::ClusterConfig;
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
/// The follower's position, in the state directory.
pub(super) const CURSOR_FILE: &str = "cluster-cursor";

#[derive(Clone)]
pub(super) struct Shared {
    pub(super) config: Arc<ClusterConfig>,
    pub(super) ca: Arc<Option<Vec<u8>>>,
    pub(super) keys: Keys,
    pub(super) metrics: Arc<Metrics>,
    /// The follower's position (stream id milliseconds), for the heartbeat.
    pub(super) cursor_ms: Arc<AtomicU64>,
}

impl Shared {
    pub(super) fn cm(&self) -> &ClusterMetrics {
        &self.metrics.cluster
    }

    /// Connects to the first server that answers, with `timeout` per call.
    pub(super) async fn connect(&self, timeout: Duration) -> Result<Connection, EngineError> {
        let mut last = None;
        for url in &self.config.urls {
            match Connection::connect(url, self.ca.as_deref(), timeout).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last = Some(format!("{url}: {e}")),
            }
        }
        Err(EngineError::Protocol(last.unwrap_or_default()))
    }
}
