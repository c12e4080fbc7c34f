//! The follower: reads the ban stream from where it stopped (its position is kept in the
//! state directory, so a restarted collector catches up) and hands the other collectors' bans
//! to the ban manager to adopt.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::engine::{id_millis, millis};
use super::entry::{from_node, read_entry, stream_entries, Published, SharedBan};
use super::messages::{ClaimedElsewhere, ToBan};
use super::resp::Frame;
use super::shared::{Shared, CURSOR_FILE, FOLLOW_BATCH, FOLLOW_BLOCK, HEARTBEAT};
use crate::metrics::Metrics;
use crate::target::Target;
use crate::throttle::{Decision, Throttle};

/// How often an unreadable stream entry is logged (every one is counted).
const UNREADABLE_LOG: Duration = Duration::from_secs(60);

/// Longest the saved position lags the one read.
const CURSOR_SAVE: Duration = Duration::from_secs(1);

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

/// Adoptions read from the stream and not yet with the ban manager, and the id of the last
/// entry read.
#[derive(Default)]
struct Batch<'a> {
    bans: Vec<SharedBan>,
    /// As in the reply: made text once per read, not per entry.
    read_to: Option<&'a [u8]>,
}

impl Batch<'_> {
    /// Sends the adoptions (if any) to the ban manager, then moves `cursor` past what was
    /// read; false when the manager is gone (the cursor then stays before them).
    async fn hand_over(&mut self, to_ban: &mpsc::Sender<ToBan>, cursor: &mut String) -> bool {
        if !self.bans.is_empty()
            && to_ban
                .send(ToBan::Adopt(std::mem::take(&mut self.bans)))
                .await
                .is_err()
        {
            return false;
        }
        if let Some(id) = self.read_to.take() {
            *cursor = String::from_utf8_lossy(id).into_owned();
        }
        true
    }
}

/// Hands what one read of the stream found to the ban manager: the other collectors' bans
/// together (counted in `adopted`), an unban in between after the adoptions before it, so
/// the stream's order is kept; the entries of `skip` (this collector, unless it is catching
/// up without a state of its own) need nothing. A ban's times are on the engine's clock:
/// with this collector's running `clock_ahead` ms ahead of it, they move by as much. The
/// position moves past an entry only once the manager has it. False when the manager is
/// gone.
async fn hand_entries(
    entries: Frame<'_>,
    skip: Option<&str>,
    clock_ahead: Option<i64>,
    follower: &Follower,
    cursor: &mut String,
) -> bool {
    let to_ban = &follower.to_ban;
    let entries = entries.items();
    // Sized once: a storm's read brings hundreds of bans, and each regrowth copies them all.
    let mut adopt = Batch {
        bans: Vec::with_capacity(entries.len()),
        read_to: None,
    };
    let mut fields = Vec::with_capacity(16);
    for entry in entries {
        let Some(id) = read_entry(entry, &mut fields) else {
            continue;
        };
        let needs_nothing = skip.is_some_and(|node| from_node(&fields, node));
        match (!needs_nothing).then(|| Published::from_fields(&fields)) {
            Some(Ok(Published::Ban(mut ban))) => {
                if let Some(ahead) = clock_ahead {
                    ban.shift_clock(ahead);
                }
                Metrics::inc(&follower.metrics.cluster.adopted);
                adopt.bans.push(ban);
            }
            Some(Ok(Published::Unban { address, .. })) => {
                // Lifted by hand: whoever claimed it no longer does (the collector that
                // lifted it lifted the claim on the engine too).
                follower.claims.forget_address(address);
                let _ = follower.lifted.try_send(address);
                follower.claims.arrived(&adopt.bans);
                let handed = adopt.hand_over(to_ban, cursor).await
                    && to_ban.send(ToBan::Unban(address)).await.is_ok();
                if !handed {
                    return false;
                }
            }
            None => {}
            Some(Err(e)) => {
                Metrics::inc(&follower.metrics.cluster.unreadable_entries);
                // A collector of another version writes every entry so: one line a minute.
                if let Decision::Write { held_back } = follower.unreadable_log.check() {
                    warn!(id = %String::from_utf8_lossy(id), error = %e, earlier_not_logged = held_back, "A shared ban entry is unreadable; skipped (a collector of another version? upgrade every collector together)");
                }
            }
        }
        adopt.read_to = Some(id);
    }
    // Bans held back here for these collectors need not be published by this one.
    follower.claims.arrived(&adopt.bans);
    adopt.hand_over(to_ban, cursor).await
}

/// Where the follower hands what it reads, and what it counts.
pub(super) struct Follower {
    /// The ban manager: adoptions and lifts.
    pub to_ban: mpsc::Sender<ToBan>,
    /// Claims held elsewhere, which a lift by hand ends.
    pub claims: Arc<ClaimedElsewhere>,
    /// The counter, told of lifts by hand (their attackers' failures count on the engine
    /// again).
    pub lifted: mpsc::Sender<Target>,
    /// The daemon's counters (the cluster's adoptions and unreadable entries).
    pub metrics: Arc<Metrics>,
    /// Unreadable entries are logged at most once per [`UNREADABLE_LOG`].
    unreadable_log: Throttle,
}

impl Follower {
    /// A follower handing to `to_ban`, telling `lifted` of lifts by hand, counting in
    /// `metrics`; its unreadable entries logged at most once a minute.
    pub(super) fn new(
        to_ban: mpsc::Sender<ToBan>,
        claims: Arc<ClaimedElsewhere>,
        lifted: mpsc::Sender<Target>,
        metrics: Arc<Metrics>,
    ) -> Follower {
        Follower {
            to_ban,
            claims,
            lifted,
            metrics,
            unreadable_log: Throttle::new(1, UNREADABLE_LOG),
        }
    }
}

/// Reads the ban stream and hands the other collectors' bans to the ban manager.
pub(super) async fn follow(
    shared: Shared,
    state_dir: PathBuf,
    follower: Follower,
    stop: CancellationToken,
) {
    let path = state_dir.join(CURSOR_FILE);
    // No position kept: a new collector, or one whose state directory was lost. Its own
    // earlier bans (still held by the others, and in its table on its targets) are in the
    // stream under its name: read back with the rest until the end, they are held again.
    let fresh = !path.exists();
    if fresh {
        info!("No cluster position in the state directory: reading the whole ban stream, this collector's own earlier bans included");
    }
    let mut cursor = read_cursor(&path);
    read_stream(&shared, &path, &mut cursor, &follower, fresh, &stop).await;
    write_cursor(&path, &cursor);
}

/// Follows the stream from `cursor` until `stop` (or the ban manager is gone). The position
/// is saved at most every [`CURSOR_SAVE`] while bans flow (a file write per read cost a
/// storm's follower more than the reading) and at the end; after a crash, up to that much
/// is read again, which adopts nothing twice.
async fn read_stream(
    shared: &Shared,
    path: &Path,
    cursor: &mut String,
    follower: &Follower,
    mut catching_up: bool,
    stop: &CancellationToken,
) {
    let mut saved = Instant::now();
    shared.cursor_ms.store(id_millis(cursor), Ordering::Relaxed);
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
            Ok((conn, _)) => conn,
            Err(e) => {
                debug!(error = %e, "The cluster follower cannot reach the engine");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(HEARTBEAT) => continue,
                }
            }
        };
        loop {
            let mut request: Vec<&[u8]> = vec![b"XREAD", b"COUNT", count.as_bytes()];
            // Catching up reads what is there without waiting: its end is the stream's end
            // at start, and what this collector publishes from then on is not read back.
            if !catching_up {
                request.extend([b"BLOCK".as_slice(), block.as_bytes()]);
            }
            request.extend([b"STREAMS".as_slice(), key.as_bytes(), cursor.as_bytes()]);
            let cm = shared.cm();
            Metrics::inc(&cm.calls);
            Metrics::inc(&cm.round_trips);
            let read = tokio::select! {
                () = stop.cancelled() => return,
                r = conn.call_in_place(&request) => r,
            };
            let reply = match read {
                Ok(reply) => reply,
                Err(e) => {
                    debug!(error = %e, "The cluster follower lost the engine");
                    break;
                }
            };
            let caught_up = |catching_up: &mut bool, cursor: &str| {
                // Nothing more to read: everything published until now (on the engine's
                // clock, as the stream's ids are) is read.
                let ahead = shared.clock_ahead_ms.load(Ordering::Relaxed);
                let now = millis(SystemTime::now()).saturating_add_signed(-ahead);
                shared.cursor_ms.store(now, Ordering::Relaxed);
                if std::mem::take(catching_up) {
                    // Kept at once: a restart (even after kill -9) is no longer a new one.
                    write_cursor(path, cursor);
                }
            };
            let Some(entries) = stream_entries(reply) else {
                caught_up(&mut catching_up, cursor);
                continue;
            };
            let skip = (!catching_up).then_some(node.as_str());
            let clock_ahead = shared.clock_out_of_step();
            if !hand_entries(entries, skip, clock_ahead, follower, cursor).await {
                return;
            }
            if entries.items().len() < FOLLOW_BATCH {
                caught_up(&mut catching_up, cursor);
            } else {
                shared.cursor_ms.store(id_millis(cursor), Ordering::Relaxed);
            }
            if saved.elapsed() >= CURSOR_SAVE {
                write_cursor(path, cursor);
                saved = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::resp::{self, OwnedReply};
    use super::*;

    type Entry = (String, Vec<(&'static str, String)>);

    /// Stream entries as XREAD sends them: `[id, [name, value, ...]]` each.
    fn xread_entries(list: &[Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        resp::array_header(&mut out, list.len());
        for (id, fields) in list {
            resp::array_header(&mut out, 2);
            resp::bulk(&mut out, id.as_bytes());
            resp::array_header(&mut out, fields.len() * 2);
            for (name, value) in fields {
                resp::bulk(&mut out, name.as_bytes());
                resp::bulk(&mut out, value.as_bytes());
            }
        }
        out
    }

    fn ban(id: &str, node: &str, address: &str) -> Entry {
        let ban = SharedBan {
            node: node.into(),
            jail: "sshd".into(),
            address: address.parse().unwrap(),
            failures: 5,
            origin: "web1".into(),
            started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            expires: None,
            sample: "Failed password".into(),
            republished: false,
            decided_by: None,
            more_origins: Vec::new(),
            placement: None,
        };
        (
            id.to_string(),
            Published::Ban(ban).fields(crate::cluster::entry::Form::OneField),
        )
    }

    #[tokio::test]
    async fn a_read_reaches_the_manager_as_one_adoption_in_stream_order() {
        let (to_ban, mut from_follower) = mpsc::channel(8);
        let unban = Published::Unban {
            node: "b".into(),
            address: "198.51.100.9".parse().unwrap(),
        };
        let entries = [
            ban("1-0", "b", "198.51.100.1"),
            ban("2-0", "a", "198.51.100.2"),
            ban("3-0", "b", "198.51.100.3"),
            (
                "4-0".to_string(),
                unban.fields(crate::cluster::entry::Form::OneField),
            ),
            ban("5-0", "c", "198.51.100.5"),
        ];
        let mut cursor = "0".to_string();
        let bytes = xread_entries(&entries);
        let read = OwnedReply::read(bytes).unwrap();
        let (lifted, mut counter) = mpsc::channel(8);
        let follower = Follower::new(to_ban, Arc::default(), lifted, Arc::default());
        let claims = &follower.claims;
        let sshd = crate::config::JailName::new("sshd").unwrap();
        let far = std::time::Instant::now() + Duration::from_secs(60);
        claims.note(&sshd, "198.51.100.9".parse().unwrap(), "b", far);
        claims.note(&sshd, "198.51.100.1".parse().unwrap(), "b", far);
        assert!(hand_entries(read.frame(), Some("a"), None, &follower, &mut cursor).await);
        // The address lifted by hand is claimed by nobody any more, and the counter is told;
        // the others still are.
        assert_eq!(counter.try_recv().ok(), "198.51.100.9".parse().ok());
        assert!(claims
            .holder(&sshd, "198.51.100.9".parse().unwrap())
            .is_none());
        assert!(claims
            .holder(&sshd, "198.51.100.1".parse().unwrap())
            .is_some());
        let addresses = |message: ToBan| match message {
            ToBan::Adopt(bans) => bans.iter().map(|b| b.address.to_string()).collect(),
            ToBan::Unban(address) => vec![format!("unban {address}")],
            ToBan::Republish => vec!["republish".to_string()],
            ToBan::Yield(_) => vec!["yield".to_string()],
            ToBan::TakeOver(_) => vec!["take over".to_string()],
        };
        let mut got = Vec::new();
        while let Ok(message) = from_follower.try_recv() {
            got.push(addresses(message));
        }
        // Three messages for five entries: this collector's own ban needs nothing, the unban
        // comes after the adoptions before it and before the one after it.
        assert_eq!(
            got,
            [
                vec!["198.51.100.1".to_string(), "198.51.100.3".to_string()],
                vec!["unban 198.51.100.9".to_string()],
                vec!["198.51.100.5".to_string()],
            ]
        );
        assert_eq!(follower.metrics.cluster.adopted.load(Ordering::Relaxed), 3);
        assert_eq!(cursor, "5-0", "the position is past the last entry read");
    }

    #[tokio::test]
    async fn a_collector_whose_clock_is_behind_the_engines_reads_bans_on_its_own_clock() {
        let (to_ban, mut from_follower) = mpsc::channel(8);
        let mut cursor = "0".to_string();
        let read = OwnedReply::read(xread_entries(&[ban("1-0", "b", "198.51.100.2")])).unwrap();
        let follower = Follower::new(to_ban, Arc::default(), mpsc::channel(1).0, Arc::default());
        let behind = Some(-90_000);
        assert!(hand_entries(read.frame(), Some("a"), behind, &follower, &mut cursor).await);
        let Ok(ToBan::Adopt(bans)) = from_follower.try_recv() else {
            panic!("no adoption");
        };
        let published = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(bans[0].started, published - Duration::from_secs(90));
    }

    #[tokio::test]
    async fn catching_up_without_a_state_this_collectors_own_bans_are_adopted_too() {
        let (to_ban, mut from_follower) = mpsc::channel(8);
        let mut cursor = "0".to_string();
        let entries = [
            ban("1-0", "a", "198.51.100.2"),
            ban("2-0", "b", "198.51.100.3"),
        ];
        let read = OwnedReply::read(xread_entries(&entries)).unwrap();
        let follower = Follower::new(to_ban, Arc::default(), mpsc::channel(1).0, Arc::default());
        assert!(hand_entries(read.frame(), None, None, &follower, &mut cursor).await);
        let Ok(ToBan::Adopt(bans)) = from_follower.try_recv() else {
            panic!("no adoption");
        };
        let nodes: Vec<&str> = bans.iter().map(|b| b.node.as_str()).collect();
        assert_eq!(nodes, ["a", "b"]);
        assert_eq!(follower.metrics.cluster.adopted.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn without_a_manager_the_position_stays_before_what_it_did_not_take() {
        let (to_ban, from_follower) = mpsc::channel(8);
        drop(from_follower);
        let mut cursor = "0".to_string();
        let entries = [
            ban("1-0", "a", "198.51.100.2"),
            ban("2-0", "b", "198.51.100.3"),
        ];
        let bytes = xread_entries(&entries);
        let read = OwnedReply::read(bytes).unwrap();
        let follower = Follower::new(to_ban, Arc::default(), mpsc::channel(1).0, Arc::default());
        assert!(!hand_entries(read.frame(), Some("a"), None, &follower, &mut cursor).await);
        assert_eq!(
            cursor, "0",
            "an adoption the manager did not take is read again"
        );
        let own = xread_entries(&[ban("1-0", "a", "198.51.100.2")]);
        let read = OwnedReply::read(own).unwrap();
        assert!(hand_entries(read.frame(), Some("a"), None, &follower, &mut cursor).await);
        assert_eq!(cursor, "1-0", "an entry that needs nothing is passed");
    }
    #[tokio::test]
    async fn an_unreadable_entry_is_counted_and_passed_and_the_others_adopted() {
        let (to_ban, mut from_follower) = mpsc::channel(8);
        let follower = Follower::new(to_ban, Arc::default(), mpsc::channel(1).0, Arc::default());
        let mut cursor = "0".to_string();
        // What a collector of another version might write: a ban field this one cannot read.
        let odd = ("2-0".to_string(), vec![("ban", "b\tsshd".to_string())]);
        let entries = [
            ban("1-0", "b", "198.51.100.1"),
            odd.clone(),
            ban("3-0", "b", "198.51.100.3"),
        ];
        let read = OwnedReply::read(xread_entries(&entries)).unwrap();
        assert!(hand_entries(read.frame(), Some("a"), None, &follower, &mut cursor).await);
        let Ok(ToBan::Adopt(bans)) = from_follower.try_recv() else {
            panic!("no adoption");
        };
        let adopted: Vec<String> = bans.iter().map(|b| b.address.to_string()).collect();
        assert_eq!(adopted, ["198.51.100.1", "198.51.100.3"]);
        assert_eq!(cursor, "3-0", "the unreadable entry is passed");
        let unreadable = || {
            follower
                .metrics
                .cluster
                .unreadable_entries
                .load(Ordering::Relaxed)
        };
        assert_eq!(unreadable(), 1);
        let read = OwnedReply::read(xread_entries(&[("4-0".to_string(), odd.1)])).unwrap();
        assert!(hand_entries(read.frame(), Some("a"), None, &follower, &mut cursor).await);
        assert_eq!(unreadable(), 2, "counted even when its line is held back");
    }
}
