//! The counter's heartbeat: this collector's beat and reading position written to the
//! engine every second, every collector's read back for `status` (who is there, how far
//! behind it reads, how far its clock is from the engine's), and the engine's epoch checked
//! (an engine that lost its data gets the active bans published again); and, on each
//! reconnection, whether the primary changed (a failover may have lost what the old one
//! took last: the same). Also where this collector's clock is measured against the
//! engine's (`TIME`), for the times that cross between collectors, and where another
//! running collector with this one's `node` is noticed (its beats replace this one's).
//!
//! Owns only that exchange; counting and publishing are the counter's.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use super::super::engine::{id_millis, millis};
use super::super::entry::{Form, READS};
use super::super::messages::ToBan;
use super::super::resp::{EngineError, Reply};
use super::super::shared::CLOCK_IN_STEP_MS;
use super::Counter;
use crate::metrics::{Metrics, Peer};

/// A name clash holds this long after the last beat that showed it: with two collectors
/// beating each second, a beat now and then falls where the other's write was overwritten.
const CLASH_HOLDS: Duration = Duration::from_secs(10);

/// What the heartbeat keeps between beats.
#[derive(Debug)]
pub(super) struct BeatState {
    /// This run's mark in its beats (random): a beat under this `node` with another mark was
    /// written by another process.
    run: u64,
    /// A beat of this run is on the engine.
    wrote: bool,
    /// The last beat found this collector's clock out of step with the engine's (warned
    /// once per spell).
    clock_warned: bool,
    /// When a beat last found another run's beat under this collector's `node`.
    clash_seen: Option<Instant>,
}

impl BeatState {
    pub(super) fn new() -> BeatState {
        BeatState {
            run: rand::random(),
            wrote: false,
            clock_warned: false,
            clash_seen: None,
        }
    }
}

impl Counter {
    /// Writes this collector's heartbeat, reads every collector's, and checks the epoch.
    pub(super) async fn heartbeat(&mut self) {
        let Some((conn, _)) = self.conn.as_mut() else {
            return;
        };
        let keys = self.shared.keys.clone();
        let node = self.shared.config.node.to_string();
        let cursor = self.shared.cursor_ms.load(Ordering::Relaxed);
        let degraded = u8::from(!self.failures.is_empty() || !self.bans.is_empty());
        let result = async {
            let before = millis(SystemTime::now());
            let time = conn.call(&[b"TIME"]).await?;
            let after = millis(SystemTime::now());
            let engine_ms = engine_time(&time)
                .ok_or_else(|| EngineError::Protocol(format!("TIME answered {time:?}")))?;
            // Read halfway through the round trip, as near as it can be told.
            let ahead = i64::try_from(before / 2 + after / 2).unwrap_or(i64::MAX)
                - i64::try_from(engine_ms).unwrap_or(i64::MAX);
            // The beat's time is the engine's, which every reader compares it with; how far
            // this clock is from it comes last (earlier versions read the first three numbers,
            // the forms read fourth).
            let beat = format!(
                "{engine_ms} {cursor} {degraded} {READS} {ahead} {}",
                self.beat.run
            );
            // What is under this collector's name since its last beat: another run's beat
            // means another collector uses the name.
            let under_my_name = conn
                .call(&[b"HGET", keys.nodes().as_bytes(), node.as_bytes()])
                .await?;
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
            Ok::<_, EngineError>((all, newest, epoch, engine_ms, ahead, under_my_name))
        }
        .await;
        let (all, newest, epoch, now, ahead, under_my_name) = match result {
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
                let mut parts = beat.split(' ');
                let mut number = || parts.next().map(|p| p.parse::<u64>().unwrap_or(0));
                let (seen, cursor, degraded) = (number()?, number()?, number()?);
                let reads = number().unwrap_or(1);
                Some(Peer {
                    node,
                    seen_ms_ago: now.saturating_sub(seen),
                    lag_ms: lag(newest_ms, cursor, seen),
                    degraded: degraded == 1,
                    reads,
                    clock_ahead_ms: parts.next().and_then(|p| p.parse().ok()),
                })
            })
            .collect();
        self.note_clock(ahead);
        self.note_name_clash(under_my_name.text().as_deref());
        self.choose_form(&peers);
        self.shared.cm().set_peers(peers);
        self.check_epoch(epoch.text()).await;
    }

    /// Keeps how far this collector's clock runs ahead of the engine's, and warns once when
    /// it is out of step (and says when it is back): the shared count runs on the engine's
    /// clock whatever this one says, and the times of shared bans are moved by as much, but
    /// this collector's own windows and log lines are on its clock.
    fn note_clock(&mut self, ahead: i64) {
        self.shared.clock_ahead_ms.store(ahead, Ordering::Relaxed);
        let out = ahead.abs() >= CLOCK_IN_STEP_MS;
        if out == self.beat.clock_warned {
            return;
        }
        self.beat.clock_warned = out;
        let seconds = ahead as f64 / 1000.0;
        if out {
            warn!(ahead_seconds = seconds, "This collector's clock is out of step with the cluster engine's (negative: behind): check its time sync; the shared count keeps to the engine's clock, and the times of shared bans are moved by as much");
        } else {
            info!(
                ahead_seconds = seconds,
                "This collector's clock is in step with the cluster engine's again"
            );
        }
    }

    /// Notices another running collector with this one's `node`, from what was under the
    /// name before this beat wrote there (`found`): after a beat of this run, a beat of
    /// another run (or of an earlier version, which marks none). Each skips the stream's
    /// entries under its own name, so neither adopts the other's bans: said loudly, in the
    /// log, `status` and a metric, while it lasts.
    fn note_name_clash(&mut self, found: Option<&str>) {
        let other =
            self.beat.wrote && found.is_some_and(|beat| beat_run(beat) != Some(self.beat.run));
        self.beat.wrote = true;
        let now = Instant::now();
        if other {
            self.beat.clash_seen = Some(now);
        }
        let clash = self
            .beat
            .clash_seen
            .is_some_and(|seen| now.duration_since(seen) < CLASH_HOLDS);
        let was = self.shared.cm().name_clash.swap(clash, Ordering::Relaxed);
        let node = &self.shared.config.node;
        if clash && !was {
            error!(%node, "Another running collector uses this collector's [cluster] node name: neither adopts the other's bans (each skips the entries under its own name); give each collector its own node");
        } else if was && !clash {
            info!(%node, "No other collector has written under this node name for 10 s");
        }
    }

    /// Bans go out in one field once every collector that ever beat on this engine reads
    /// it, and a field per value while one does not (an earlier version during an upgrade:
    /// it could not read them, and would not hold them). A collector gone for good keeps its
    /// heartbeat until it is deleted (README, Several collectors).
    fn choose_form(&mut self, peers: &[Peer]) {
        let form = Form::readable_by(peers.iter().map(|p| p.reads));
        let was = self.form.replace(form);
        if was == Some(form) {
            return;
        }
        match form {
            // The first beat's choice needs no line; a change back after an upgrade does.
            Form::OneField if was.is_none() => {}
            Form::OneField => {
                info!("Every collector of the cluster reads bans in one field now: published so")
            }
            Form::FieldPerValue => {
                let older: Vec<&str> = peers
                    .iter()
                    .filter(|p| p.reads < READS)
                    .map(|p| p.node.as_str())
                    .collect();
                warn!(collectors = %older.join(","), "Collectors of an earlier version in the cluster read bans only a field per value: published so until they are upgraded (more work for every reader)");
            }
        }
    }

    /// An engine without our epoch lost its data (or is new): the bans are published again.
    async fn check_epoch(&mut self, epoch: Option<String>) {
        // Bans published again since the last beat (for a new primary) cover an epoch lost
        // with the old one.
        let republished = std::mem::take(&mut self.republished_since_beat);
        let mut created = false;
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
                    // OK: ours; nil: another collector set one first.
                    Ok(reply) => created = reply.text().is_some(),
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
        if republished {
            self.epoch = Some(current);
            return;
        }
        // An epoch this node made in an earlier run is no loss: its bans are in the stream.
        if self.epoch.as_ref().is_some_and(|seen| *seen != current) {
            warn!(
                "The cluster engine lost its data (a new epoch): publishing the active bans again"
            );
        } else if self.epoch.is_none() && created {
            info!(
                "The cluster engine is new or was emptied: publishing this collector's active bans"
            );
        } else {
            self.epoch = Some(current);
            return;
        }
        self.republish().await;
        self.epoch = Some(current);
    }

    /// A primary other than the last one (a failover promoted a replica, or the server
    /// restarted): what the old one took last may never have reached it (replication is
    /// asynchronous, a restart loads its last save), and the epoch, copied or saved with
    /// the rest, does not say so. The active bans are published again; the other
    /// collectors already holding them change nothing.
    pub(super) async fn check_primary(&mut self, primary: Option<String>) {
        let Some(primary) = primary else { return };
        let changed = self.primary.as_ref().is_some_and(|was| *was != primary);
        self.primary = Some(primary);
        if changed {
            warn!("The cluster engine's primary changed (a failover or a restart): publishing the active bans again");
            self.republish().await;
            // The next beat's epoch check need not ask a second time.
            self.republished_since_beat = true;
        }
    }

    /// Asks the ban manager to publish every active ban again (counted).
    async fn republish(&mut self) {
        Metrics::inc(&self.shared.cm().republished);
        let _ = self.to_ban.send(ToBan::Republish).await;
    }
}

/// The run mark of a beat (its sixth number), when it has one.
fn beat_run(beat: &str) -> Option<u64> {
    beat.split(' ').nth(5)?.parse().ok()
}

/// Unix milliseconds of a `TIME` reply (seconds and microseconds, as two strings).
fn engine_time(reply: &Reply) -> Option<u64> {
    let number = |i: usize| reply.items().get(i)?.text()?.parse::<u64>().ok();
    Some(number(0)?.checked_mul(1000)? + number(1)? / 1000)
}

/// How far behind the newest shared ban (published at `newest_ms`) a collector reads, from
/// its heartbeat: the time of the last entry it read (`cursor_ms`), or, before its first read
/// (0), the time it was last seen, so that a collector that stopped before it read anything
/// shows the bans published since, not the age of the Unix epoch.
fn lag(newest_ms: u64, cursor_ms: u64, seen_ms: u64) -> u64 {
    let read_up_to = if cursor_ms == 0 { seen_ms } else { cursor_ms };
    newest_ms.saturating_sub(read_up_to)
}

#[cfg(test)]
mod tests {
    use super::{beat_run, engine_time, lag, Reply};

    #[test]
    fn a_beat_names_its_run_sixth() {
        assert_eq!(
            beat_run("1796483281466 1796483281000 0 2 -3 12345"),
            Some(12345)
        );
        assert_eq!(
            beat_run("1796483281466 1796483281000 0 2"),
            None,
            "an earlier version's"
        );
        assert_eq!(beat_run("garbage"), None);
    }

    #[test]
    fn the_engines_time_is_read_in_milliseconds() {
        let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
        let time = Reply::Array(Some(vec![bulk("1796483281"), bulk("466901")]));
        assert_eq!(engine_time(&time), Some(1_796_483_281_466));
        assert_eq!(engine_time(&Reply::Array(Some(vec![bulk("x")]))), None);
        assert_eq!(engine_time(&Reply::Int(5)), None);
    }

    #[test]
    fn a_collector_that_never_read_lags_by_what_was_published_since_it_was_seen() {
        let t = 1_796_483_281_466;
        assert_eq!(lag(t, t - 250, t - 1000), 250, "by its cursor");
        assert_eq!(lag(t, 0, t - 1000), 1000, "never read: since last seen");
        assert_eq!(lag(0, 0, t), 0, "nothing published");
        assert_eq!(lag(t - 5, t, t), 0, "read past the newest: none");
    }
}
