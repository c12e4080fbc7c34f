//! The cluster: several collectors that count and ban as one, on a shared Valkey/Redis engine.
//! Optional: without `[cluster]` none of this runs.
//!
//! Two tasks, on a thread of their own (in a storm they must not wait for a turn among the
//! matching workers). The counter takes every failure the jails counted (after matching and ignoreip),
//! adds it to the attacker's shared count with one script call, and when that call is the one
//! that reached maxretry, hands the ban manager an offence; it also publishes the bans this
//! collector decided to a Stream, and keeps a heartbeat. A ban this collector's own count
//! decided takes the attacker's claim first (its failure comes on a queue of its own, ahead
//! of the counted failures); when another collector holds the claim, that one publishes and
//! announces it, and this one's is not published. The follower reads the Stream from
//! where it stopped (its position is kept in the state directory) and hands the ban manager
//! the bans of the other collectors to adopt. When the engine is unreachable or slow, the
//! counter keeps failures and bans in a bounded buffer, the jails go on banning alone (the
//! local count never waits for the engine), and the buffer is replayed when it is back.
//!
//! Owns the engine connection and what is kept there. It decides no ban by itself: offences
//! and adoptions go to the ban manager, the one owner of ban state; it never touches a
//! firewall or the store.

mod counter;
pub mod engine;
mod entry;
mod follow;
mod messages;
pub mod resp;
mod shared;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::ClusterConfig;
use crate::metrics::Metrics;
pub use entry::{from_node, read_entry, stream_entries, Published, SharedBan, READS};
pub use messages::{ClaimedElsewhere, Links, SharedFailure, ToBan, Yielded};
use shared::Shared;
pub use shared::{CaFileError, CLOCK_IN_STEP_MS};

/// Most lifts by hand waiting for the counter (past it one is missed there: that attacker's
/// failures skip the engine until its old claim lapses; they count locally all the same).
const LIFTED_QUEUE: usize = 1024;

/// Why a collector's heartbeat could not be removed ([`forget`]).
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// `[cluster] ca_file` could not be read.
    #[error(transparent)]
    Ca(#[from] CaFileError),
    /// The engine could not be reached or refused.
    #[error(transparent)]
    Engine(#[from] resp::EngineError),
}

/// Removes collector `node`'s heartbeat from the engine, for a collector taken out of the
/// cluster for good: it leaves every collector's `status`, and, if it was of an earlier
/// version, bans go out in one field again (see `entry::Form`). Ok(false): it had none. A
/// collector still running writes its heartbeat again within a second.
pub async fn forget(config: ClusterConfig, node: &str) -> Result<bool, ForgetError> {
    let timeout = config.timeout;
    let shared = Shared::new(config, Arc::new(Metrics::default()))?;
    let (mut conn, _) = shared.connect(timeout).await?;
    let nodes = shared.keys.nodes();
    let removed = conn
        .call(&[b"HDEL", nodes.as_bytes(), node.as_bytes()])
        .await?;
    Ok(removed.int().is_some_and(|n| n > 0))
}

/// Runs the counter and the follower until `stop`.
pub async fn run(
    config: ClusterConfig,
    state_dir: PathBuf,
    links: Links,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let shared = match Shared::new(config, metrics) {
        Ok(shared) => shared,
        Err(e) => {
            // The stage ends: the supervisor stops the daemon, saying why.
            tracing::error!(file = %e.path.display(), error = %e.source, "The cluster's CA file cannot be read");
            return;
        }
    };
    shared
        .metrics
        .cluster
        .enabled
        .store(true, Ordering::Relaxed);
    info!(node = %shared.config.node, engine = ?shared.config.urls, "Cluster: counting and banning with the other collectors");
    let Links {
        failures,
        reached,
        decided,
        offences,
        to_ban,
        claims,
        jails,
    } = links;
    // Addresses another collector lifted by hand, from the follower to the counter.
    let (lifted_tx, lifted) = tokio::sync::mpsc::channel(LIFTED_QUEUE);
    let counter = counter::Counter::new(
        shared.clone(),
        offences,
        to_ban.clone(),
        claims.clone(),
        jails,
        lifted,
    );
    let follower = follow::Follower::new(to_ban, claims, lifted_tx, shared.metrics.clone());
    tokio::join!(
        counter.run(failures, reached, decided, stop.clone()),
        follow::follow(shared, state_dir, follower, stop)
    );
}
