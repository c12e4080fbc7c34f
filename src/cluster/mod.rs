//! The cluster: several collectors that count and ban as one, on a shared Valkey/Redis engine.
//! Optional: without `[cluster]` none of this runs.
//!
//! Two tasks. The counter takes every failure the jails counted (after matching and ignoreip),
//! adds it to the attacker's shared count with one script call, and when that call is the one
//! that reached maxretry, hands the ban manager an offence; it also publishes the bans this
//! collector decided to a Stream, and keeps a heartbeat. The follower reads the Stream from
//! where it stopped (its position is kept in the state directory) and hands the ban manager
//! the bans of the other collectors to adopt. When the engine is unreachable or slow, the
//! counter keeps failures and bans in a bounded buffer, the jails go on banning alone (the
//! local count never waits for the engine), and the buffer is replayed when it is back.
//!
//! Owns the engine connection and what is kept there. It decides no ban by itself: offences
//! and adoptions go to the ban manager, the one owner of ban state; it never touches a
//! firewall or the store.

pub mod engine;
pub mod resp;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{ClusterConfig, JailName};
use crate::input::Origin;
use crate::jail::Offence;
use crate::metrics::{ClusterMetrics, Metrics, Peer};
use crate::target::Target;
use engine::{id_millis, millis, CountArgs, Keys};
use resp::{Connection, EngineError, Reply};

/// How often the heartbeat is written, the peers read and a lost engine tried again.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long the follower's read blocks waiting for new bans.
const FOLLOW_BLOCK: Duration = Duration::from_millis(1000);
/// Bans read per follower call.
const FOLLOW_BATCH: usize = 500;
/// Most failures counted in one round trip.
const COUNT_BATCH: usize = 256;
/// Entries the ban stream keeps (approximately).
const STREAM_CAP: usize = 100_000;
/// The follower's position, in the state directory.
const CURSOR_FILE: &str = "cluster-cursor";

/// A failure a jail counted, for the shared count.
#[derive(Debug, Clone)]
pub struct SharedFailure {
    /// The jail.
    pub jail: JailName,
    /// The attacker.
    pub target: Target,
    /// Attempts the line counted.
    pub weight: u32,
    /// The jail's maxretry and findtime.
    pub maxretry: u32,
    /// The jail's findtime.
    pub findtime: Duration,
    /// When it happened.
    pub at: SystemTime,
    /// Where the message came from.
    pub origin: Origin,
    /// The origin's proven or trusted name.
    pub origin_name: Option<Arc<str>>,
    /// The line.
    pub sample: String,
}

/// A ban as the collectors share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedBan {
    /// The collector that decided it.
    pub node: String,
    /// The jail.
    pub jail: String,
    /// The banned address or prefix.
    pub address: Target,
    /// Failures that led to it.
    pub failures: u32,
    /// The attacked host.
    pub origin: String,
    /// When it started.
    pub started: SystemTime,
    /// When it ends; None = permanent.
    pub expires: Option<SystemTime>,
    /// The line that crossed maxretry.
    pub sample: String,
}

impl SharedBan {
    /// The stream entry's fields.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("node", self.node.clone()),
            ("jail", self.jail.clone()),
            ("address", self.address.to_string()),
            ("failures", self.failures.to_string()),
            ("origin", self.origin.clone()),
            ("started", millis(self.started).to_string()),
            ("expires", self.expires.map_or(0, millis).to_string()),
            ("sample", self.sample.clone()),
        ]
    }

    /// Reads a stream entry's fields (`[name, value, ...]`).
    pub fn from_fields(items: &[Reply]) -> Result<SharedBan, String> {
        let get = |name: &str| -> Result<String, String> {
            items
                .chunks(2)
                .find(|pair| pair.first().and_then(Reply::text).as_deref() == Some(name))
                .and_then(|pair| pair.get(1).and_then(Reply::text))
                .ok_or_else(|| format!("no {name} field"))
        };
        let number = |text: String, name: &str| -> Result<u64, String> {
            text.parse().map_err(|_| format!("{name} is not a number"))
        };
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        let expires = number(get("expires")?, "expires")?;
        Ok(SharedBan {
            node: get("node")?,
            jail: get("jail")?,
            address: get("address")?
                .parse()
                .map_err(|_| "the address is not one".to_string())?,
            failures: u32::try_from(number(get("failures")?, "failures")?).unwrap_or(u32::MAX),
            origin: get("origin")?,
            started: at(number(get("started")?, "started")?),
            expires: (expires != 0).then(|| at(expires)),
            sample: get("sample").unwrap_or_default(),
        })
    }
}

/// What the cluster asks of the ban manager.
#[derive(Debug, Clone)]
pub enum ToBan {
    /// Another collector's ban: hold it here too, until it ends there.
    Adopt(SharedBan),
    /// The engine lost its data: publish every active ban again.
    Republish,
}

/// The cluster's channels.
#[derive(Debug)]
pub struct Links {
    /// Failures from the jails.
    pub failures: mpsc::Receiver<SharedFailure>,
    /// Bans this collector decided, to publish.
    pub decided: mpsc::Receiver<SharedBan>,
    /// Offences the shared count decided, to the ban manager.
    pub offences: mpsc::Sender<Offence>,
    /// Adoptions and requests, to the ban manager.
    pub to_ban: mpsc::Sender<ToBan>,
}

/// Runs the counter and the follower until `stop`.
pub async fn run(
    config: ClusterConfig,
    state_dir: PathBuf,
    links: Links,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let ca = match &config.ca_file {
        Some(path) => match std::fs::read(path) {
            Ok(pem) => Some(pem),
            Err(e) => {
                // The stage ends: the supervisor stops the daemon, saying why.
                tracing::error!(file = %path.display(), error = %e, "The cluster's CA file cannot be read");
                return;
            }
        },
        None => None,
    };
    metrics.cluster.enabled.store(true, Ordering::Relaxed);
    info!(node = %config.node, engine = ?config.urls, "Cluster: counting and banning with the other collectors");
    let shared = Shared {
        keys: Keys::new(&config.prefix),
        config: Arc::new(config),
        ca: Arc::new(ca),
        metrics,
        cursor_ms: Arc::new(AtomicU64::new(0)),
    };
    let Links {
        failures,
        decided,
        offences,
        to_ban,
    } = links;
    let counter = Counter {
        shared: shared.clone(),
        conn: None,
        failures: VecDeque::new(),
        bans: VecDeque::new(),
        epoch: None,
        sequence: 0,
        started_ms: millis(SystemTime::now()),
        offences,
        to_ban: to_ban.clone(),
    };
    tokio::join!(
        counter.run(failures, decided, stop.clone()),
        follow(shared, state_dir, to_ban, stop)
    );
}

#[derive(Clone)]
struct Shared {
    config: Arc<ClusterConfig>,
    ca: Arc<Option<Vec<u8>>>,
    keys: Keys,
    metrics: Arc<Metrics>,
    /// The follower's position (stream id milliseconds), for the heartbeat.
    cursor_ms: Arc<AtomicU64>,
}

impl Shared {
    fn cm(&self) -> &ClusterMetrics {
        &self.metrics.cluster
    }

    /// Connects to the first server that answers, with `timeout` per call.
    async fn connect(&self, timeout: Duration) -> Result<Connection, EngineError> {
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

/// A failure with its id in the cluster (kept when it is sent again).
struct Pending {
    id: String,
    failure: SharedFailure,
}

/// The counting side's state.
struct Counter {
    shared: Shared,
    /// The connection and the count script's SHA1; None: degraded.
    conn: Option<(Connection, String)>,
    /// Failures waiting for the engine, oldest first.
    failures: VecDeque<Pending>,
    /// Bans waiting to be published, oldest first.
    bans: VecDeque<SharedBan>,
    /// The engine's epoch as last read.
    epoch: Option<String>,
    /// The last failure id given out, and when this run started (ids stay unique across
    /// restarts).
    sequence: u64,
    started_ms: u64,
    offences: mpsc::Sender<Offence>,
    to_ban: mpsc::Sender<ToBan>,
}

impl Counter {
    async fn run(
        mut self,
        mut failures: mpsc::Receiver<SharedFailure>,
        mut decided: mpsc::Receiver<SharedBan>,
        stop: CancellationToken,
    ) {
        self.reconnect().await;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                failure = failures.recv() => match failure {
                    Some(first) => {
                        // What queued meanwhile goes in the same round trip.
                        let mut batch = vec![self.pending(first)];
                        while batch.len() < COUNT_BATCH {
                            let Ok(next) = failures.try_recv() else { break };
                            batch.push(self.pending(next));
                        }
                        self.count(batch).await;
                    }
                    None => return,
                },
                ban = decided.recv() => match ban {
                    Some(b) => self.publish(b).await,
                    None => return,
                },
                _ = heartbeat.tick() => {
                    if self.conn.is_none() {
                        self.reconnect().await;
                    }
                    self.heartbeat().await;
                }
            }
        }
    }

    fn pending(&mut self, failure: SharedFailure) -> Pending {
        self.sequence += 1;
        Pending {
            id: format!(
                "{}:{}:{}",
                self.shared.config.node, self.started_ms, self.sequence
            ),
            failure,
        }
    }

    fn degrade(&mut self, error: &EngineError) {
        let cm = self.shared.cm();
        Metrics::inc(&cm.call_errors);
        self.conn = None;
        if !cm.degraded.swap(true, Ordering::Relaxed) {
            cm.degraded_since_ms
                .store(millis(SystemTime::now()), Ordering::Relaxed);
            warn!(error = %error, "Cluster engine unreachable: counting and banning alone, buffering for it");
        }
        cm.last_error.set(Some(error.to_string()));
    }

    async fn reconnect(&mut self) {
        let shared = self.shared.clone();
        let connected = async {
            let mut conn = shared.connect(shared.config.timeout).await?;
            let sha = shared.keys.load_script(&mut conn).await?;
            Ok::<_, EngineError>((conn, sha))
        }
        .await;
        match connected {
            Ok(conn) => {
                self.conn = Some(conn);
                let cm = self.shared.cm();
                if cm.degraded.swap(false, Ordering::Relaxed) {
                    let since = cm.degraded_since_ms.swap(0, Ordering::Relaxed);
                    let spent = millis(SystemTime::now()).saturating_sub(since);
                    cm.degraded_ms_total.fetch_add(spent, Ordering::Relaxed);
                    info!(
                        degraded_for = ?Duration::from_millis(spent),
                        failures = self.failures.len(),
                        bans = self.bans.len(),
                        "Cluster engine back: replaying what waited"
                    );
                }
                cm.last_error.set(None);
                self.replay().await;
            }
            Err(e) => self.degrade(&e),
        }
    }

    /// Sends what waited, bans first (the other collectors need them most).
    async fn replay(&mut self) {
        while let Some(ban) = self.bans.pop_front() {
            if !self.try_publish(&ban).await {
                self.bans.push_front(ban);
                break;
            }
        }
        while self.conn.is_some() && !self.failures.is_empty() {
            let n = self.failures.len().min(COUNT_BATCH);
            let batch: Vec<Pending> = self.failures.drain(..n).collect();
            if !self.try_count(&batch).await {
                for failure in batch.into_iter().rev() {
                    self.failures.push_front(failure);
                }
            }
        }
        self.gauges();
    }

    fn gauges(&self) {
        let cm = self.shared.cm();
        Metrics::set(&cm.buffered_failures, self.failures.len() as u64);
        Metrics::set(&cm.buffered_bans, self.bans.len() as u64);
    }

    fn buffer<T>(list: &mut VecDeque<T>, item: T, cap: usize, cm: &ClusterMetrics) {
        if list.len() >= cap {
            list.pop_front();
            Metrics::inc(&cm.buffer_dropped);
        }
        list.push_back(item);
    }

    /// Counts `batch` (failures that queued up together), or buffers it.
    async fn count(&mut self, batch: Vec<Pending>) {
        if self.conn.is_none() || !self.try_count(&batch).await {
            let cap = self.shared.config.buffer;
            for failure in batch {
                Self::buffer(
                    &mut self.failures,
                    failure,
                    cap,
                    &self.shared.metrics.cluster,
                );
            }
            self.gauges();
        }
    }

    async fn publish(&mut self, ban: SharedBan) {
        if self.conn.is_none() || !self.try_publish(&ban).await {
            let cap = self.shared.config.buffer;
            Self::buffer(&mut self.bans, ban, cap, &self.shared.metrics.cluster);
            self.gauges();
        }
    }

    /// Counts `failures` on the engine in one round trip; false when the engine did not
    /// answer (none of them is then known to be counted).
    async fn try_count(&mut self, failures: &[Pending]) -> bool {
        let Some((conn, sha)) = self.conn.as_mut() else {
            return false;
        };
        let jails: Vec<String> = failures
            .iter()
            .map(|f| f.failure.jail.to_string())
            .collect();
        let args: Vec<CountArgs> = failures
            .iter()
            .zip(&jails)
            .map(|(pending, jail)| CountArgs {
                jail,
                target: pending.failure.target,
                at_ms: millis(pending.failure.at),
                findtime_ms: pending.failure.findtime.as_millis() as u64,
                maxretry: pending.failure.maxretry,
                weight: pending.failure.weight.max(1),
                member: &pending.id,
            })
            .collect();
        self.shared
            .cm()
            .calls
            .fetch_add(failures.len() as u64, Ordering::Relaxed);
        let counted = match self.shared.keys.count_all(conn, sha, &args).await {
            Ok(counted) => counted,
            Err(e) => {
                self.degrade(&e);
                return false;
            }
        };
        for (pending, counted) in failures.iter().zip(counted) {
            if !counted.claimed {
                continue;
            }
            let failure = &pending.failure;
            Metrics::inc(&self.shared.cm().shared_offences);
            debug!(jail = %failure.jail, address = %failure.target, failures = counted.count, "The shared count reached maxretry here");
            let offence = Offence {
                jail: failure.jail.clone(),
                target: failure.target,
                origin: failure.origin,
                origin_name: failure.origin_name.clone(),
                failures: counted.count,
                at: crate::clock::now(),
                sample: failure.sample.clone(),
                lines: vec![failure.sample.clone()],
            };
            if self.offences.send(offence).await.is_err() {
                debug!("Ban manager stopped; a shared offence is dropped");
            }
        }
        true
    }

    /// Publishes `ban`; false when the engine did not answer.
    async fn try_publish(&mut self, ban: &SharedBan) -> bool {
        let Some((conn, _)) = self.conn.as_mut() else {
            return false;
        };
        Metrics::inc(&self.shared.cm().calls);
        match self.shared.keys.publish(conn, ban, STREAM_CAP).await {
            Ok(_) => {
                Metrics::inc(&self.shared.cm().published);
                true
            }
            Err(e) => {
                self.degrade(&e);
                false
            }
        }
    }

    /// Writes this collector's heartbeat, reads every collector's, and checks the epoch.
    async fn heartbeat(&mut self) {
        let Some((conn, _)) = self.conn.as_mut() else {
            return;
        };
        let keys = self.shared.keys.clone();
        let node = self.shared.config.node.to_string();
        let now = millis(SystemTime::now());
        let cursor = self.shared.cursor_ms.load(Ordering::Relaxed);
        let degraded = u8::from(!self.failures.is_empty() || !self.bans.is_empty());
        let beat = format!("{now} {cursor} {degraded}");
        let result = async {
            conn.call(&[
                b"HSET",
                keys.nodes().as_bytes(),
                node.as_bytes(),
                beat.as_bytes(),
            ])
            .await?;
            let all = conn.call(&[b"HGETALL", keys.nodes().as_bytes()]).await?;
            let newest = conn
                .call(&[
                    b"XREVRANGE",
                    keys.bans().as_bytes(),
                    b"+",
                    b"-",
                    b"COUNT",
                    b"1",
                ])
                .await?;
            let epoch = conn.call(&[b"GET", keys.epoch().as_bytes()]).await?;
            Ok::<_, EngineError>((all, newest, epoch))
        }
        .await;
        let (all, newest, epoch) = match result {
            Ok(r) => r,
            Err(e) => {
                self.degrade(&e);
                return;
            }
        };
        let newest_ms = newest
            .items()
            .first()
            .and_then(|entry| entry.items().first().and_then(Reply::text))
            .map_or(0, |id| id_millis(&id));
        let peers: Vec<Peer> = all
            .items()
            .chunks(2)
            .filter_map(|pair| {
                let node = pair.first()?.text()?;
                let beat = pair.get(1)?.text()?;
                let mut parts = beat.split(' ').map(|p| p.parse::<u64>().unwrap_or(0));
                let (seen, cursor, degraded) = (parts.next()?, parts.next()?, parts.next()?);
                Some(Peer {
                    node,
                    seen_ms_ago: now.saturating_sub(seen),
                    lag_ms: newest_ms.saturating_sub(cursor),
                    degraded: degraded == 1,
                })
            })
            .collect();
        self.shared.cm().set_peers(peers);
        self.check_epoch(epoch.text()).await;
    }

    /// An engine without our epoch lost its data (or is new): the bans are published again.
    async fn check_epoch(&mut self, epoch: Option<String>) {
        let current = match epoch {
            Some(e) => e,
            None => {
                let Some((conn, _)) = self.conn.as_mut() else {
                    return;
                };
                let mine = format!("{}-{}", self.shared.config.node, rand::random::<u64>());
                let key = self.shared.keys.epoch();
                match conn
                    .call(&[b"SET", key.as_bytes(), mine.as_bytes(), b"NX"])
                    .await
                {
                    Ok(_) => {}
                    Err(e) => {
                        self.degrade(&e);
                        return;
                    }
                }
                match conn.call(&[b"GET", key.as_bytes()]).await {
                    Ok(reply) => reply.text().unwrap_or(mine),
                    Err(e) => {
                        self.degrade(&e);
                        return;
                    }
                }
            }
        };
        let lost = self.epoch.as_ref().is_some_and(|seen| *seen != current)
            || (self.epoch.is_none()
                && current.starts_with(&format!("{}-", self.shared.config.node)));
        if lost {
            warn!(
                "The cluster engine lost its data (a new epoch): publishing the active bans again"
            );
            Metrics::inc(&self.shared.cm().republished);
            let _ = self.to_ban.send(ToBan::Republish).await;
        }
        self.epoch = Some(current);
    }
}

fn read_cursor(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
        .unwrap_or_else(|| "0".to_string())
}

fn write_cursor(path: &Path, id: &str) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, id)
        .and_then(|()| std::fs::rename(&tmp, path))
        .is_err()
    {
        debug!("The cluster cursor could not be saved");
    }
}

/// Reads the ban stream and hands the other collectors' bans to the ban manager.
async fn follow(
    shared: Shared,
    state_dir: PathBuf,
    to_ban: mpsc::Sender<ToBan>,
    stop: CancellationToken,
) {
    let path = state_dir.join(CURSOR_FILE);
    let mut cursor = read_cursor(&path);
    shared
        .cursor_ms
        .store(id_millis(&cursor), Ordering::Relaxed);
    let key = shared.keys.bans();
    let node = shared.config.node.to_string();
    let block = FOLLOW_BLOCK.as_millis().to_string();
    let count = FOLLOW_BATCH.to_string();
    loop {
        let connected = tokio::select! {
            () = stop.cancelled() => return,
            c = shared.connect(shared.config.timeout + FOLLOW_BLOCK) => c,
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                debug!(error = %e, "The cluster follower cannot reach the engine");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(HEARTBEAT) => continue,
                }
            }
        };
        loop {
            let request: [&[u8]; 8] = [
                b"XREAD",
                b"COUNT",
                count.as_bytes(),
                b"BLOCK",
                block.as_bytes(),
                b"STREAMS",
                key.as_bytes(),
                cursor.as_bytes(),
            ];
            let read = tokio::select! {
                () = stop.cancelled() => return,
                r = conn.call(&request) => r,
            };
            let reply = match read {
                Ok(reply) => reply,
                Err(e) => {
                    debug!(error = %e, "The cluster follower lost the engine");
                    break;
                }
            };
            let caught_up = || {
                // Nothing more to read: everything published until now is read.
                shared
                    .cursor_ms
                    .store(millis(SystemTime::now()), Ordering::Relaxed);
            };
            let Some(entries) = reply.items().first().and_then(|s| s.items().get(1)) else {
                caught_up();
                continue;
            };
            for entry in entries.items() {
                let Some(id) = entry.items().first().and_then(Reply::text) else {
                    continue;
                };
                match entry
                    .items()
                    .get(1)
                    .map(|f| SharedBan::from_fields(f.items()))
                {
                    Some(Ok(ban)) if ban.node != node => {
                        Metrics::inc(&shared.cm().adopted);
                        if to_ban.send(ToBan::Adopt(ban)).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        warn!(id, error = %e, "A shared ban entry is unreadable; skipped")
                    }
                    None => {}
                }
                cursor = id;
            }
            if entries.items().len() < FOLLOW_BATCH {
                caught_up();
            } else {
                shared
                    .cursor_ms
                    .store(id_millis(&cursor), Ordering::Relaxed);
            }
            write_cursor(&path, &cursor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_ban_survives_its_stream_fields() {
        let ban = SharedBan {
            node: "a".into(),
            jail: "sshd".into(),
            address: "198.51.100.7".parse().unwrap(),
            failures: 5,
            origin: "web1".into(),
            started: SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000),
            expires: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_600_000)),
            sample: "Failed password".into(),
        };
        let items: Vec<Reply> = ban
            .fields()
            .into_iter()
            .flat_map(|(k, v)| {
                [
                    Reply::Bulk(Some(k.as_bytes().to_vec())),
                    Reply::Bulk(Some(v.into_bytes())),
                ]
            })
            .collect();
        assert_eq!(SharedBan::from_fields(&items).unwrap(), ban);
        let permanent = SharedBan {
            expires: None,
            ..ban
        };
        let items: Vec<Reply> = permanent
            .fields()
            .into_iter()
            .flat_map(|(k, v)| [Reply::Status(k.into()), Reply::Status(v)])
            .collect();
        assert_eq!(SharedBan::from_fields(&items).unwrap(), permanent);
        assert!(SharedBan::from_fields(&items[2..]).is_err());
    }
}
