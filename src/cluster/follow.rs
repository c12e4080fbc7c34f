//! The follower: reads the ban stream from where it stopped (its position is kept in the
//! state directory, so a restarted collector catches up) and hands the other collectors' bans
//! to the ban manager to adopt.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::engine::{id_millis, millis};
use super::messages::{from_node, Published, ToBan};
use super::resp::Reply;
use super::shared::{Shared, CURSOR_FILE, FOLLOW_BATCH, FOLLOW_BLOCK, HEARTBEAT};
use crate::metrics::Metrics;

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

/// Reads the ban stream and hands the other collectors' bans to the ban manager.
pub(super) async fn follow(
    shared: Shared,
    state_dir: PathBuf,
    to_ban: mpsc::Sender<ToBan>,
    stop: CancellationToken,
) {
    let path = state_dir.join(CURSOR_FILE);
    let mut cursor = read_cursor(&path);
    read_stream(&shared, &path, &mut cursor, &to_ban, &stop).await;
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
    to_ban: &mpsc::Sender<ToBan>,
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
                let fields = entry.items().get(1).map(Reply::items).unwrap_or_default();
                let request =
                    match (!from_node(fields, &node)).then(|| Published::from_fields(fields)) {
                        Some(Ok(published)) => match published {
                            Published::Ban(ban) => {
                                Metrics::inc(&shared.cm().adopted);
                                Some(ToBan::Adopt(ban))
                            }
                            Published::Unban { address, .. } => Some(ToBan::Unban(address)),
                        },
                        None => None,
                        Some(Err(e)) => {
                            warn!(id, error = %e, "A shared ban entry is unreadable; skipped");
                            None
                        }
                    };
                if let Some(request) = request {
                    if to_ban.send(request).await.is_err() {
                        return;
                    }
                }
                *cursor = id;
            }
            if entries.items().len() < FOLLOW_BATCH {
                caught_up();
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
