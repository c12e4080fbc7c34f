//! The ban store: active bans and ban history in SQLite (WAL), written by one dedicated
//! thread, never from async workers.
//!
//! Owns every SQL statement (the tables and their migrations are `schema`'s). It stores what
//! the ban manager decided and reads it back at start-up; it decides nothing and never
//! touches a firewall. Writes are grouped:
//! whatever arrives while one transaction commits goes into the next (group commit). The
//! manager hands the firewall commands to enforcement before their write reaches this thread,
//! so a ban never waits for a commit; the `Banned` line is logged once the write is durable.
//!
//! A ban is one row, written once: it is the active ban until it ends and its history after.
//! Rows are appended and an active ban's found again through an in-memory index (`rows`), not
//! a key index on disk; the thread that commits is `writer`'s.
//!
//! The outbox: a ban's (and a ban end's) notifications are rows written in the same
//! transaction, so they are neither lost nor repeated across a restart; the notify stage reads
//! them on its own connection and deletes each once delivered.

mod outbox;
mod rows;
mod schema;
pub mod writer;

use crate::config::PlacementRule;
use crate::target::Target;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use thiserror::Error;

use super::event::{self, SharedRoutes};
pub use super::record::{BanRecord, StoreOp};
use rows::{Changes, RowIndex};
use schema::{in_force, BAN_COLUMNS};

/// The database file inside `[state] dir`.
pub const DB_FILE: &str = "syslog2ban.sqlite3";

/// Store failures.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The state directory could not be created.
    #[error("state dir {path}: {source}")]
    Dir {
        /// Directory.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// SQLite said no.
    #[error("ban store {path}: {source}")]
    Sql {
        /// Database file.
        path: PathBuf,
        /// SQLite error.
        source: rusqlite::Error,
    },
}

/// Deletes the rows of bans begun before `?1` and over at `?2` (ms).
fn purge_statement() -> String {
    format!(
        "DELETE FROM bans WHERE started < ?1 AND NOT ({})",
        in_force("?2")
    )
}

/// How a ban's notifications name it in the outbox.
fn outbox_ban(jail: &str, address: Target) -> String {
    format!("{jail} {address}")
}

/// The stored ban in row `rowid` (read with `statement`: `SELECT origin, started, expires,
/// failures, sample, decided_by, more_origins, placement FROM bans WHERE rowid = ?1`), for a
/// notification.
fn stored(
    statement: &mut rusqlite::CachedStatement<'_>,
    rowid: i64,
    address: Target,
    jail: &str,
) -> rusqlite::Result<Option<BanRecord>> {
    statement
        .query_row(params![rowid], |row| StoredBan::read(row, 0))
        .optional()
        .map(|ban| ban.map(|ban| ban.record(address, jail.to_string())))
}

/// `more_origins` as stored: NULL for none, else a JSON array of the names.
fn origins_column(origins: &[String]) -> Option<String> {
    (!origins.is_empty()).then(|| serde_json::Value::from(origins).to_string())
}

/// `placement` as stored: NULL for the jail's, else a JSON array of the rules as written.
fn placement_column(rules: Option<&[PlacementRule]>) -> Option<String> {
    rules.map(|rules| {
        let written: Vec<String> = rules.iter().map(ToString::to_string).collect();
        serde_json::Value::from(written).to_string()
    })
}

/// The `placement` column read back (a value we did not write counts as the jail's; a rule
/// that does not read is left out).
fn placement_from_column(column: Option<String>) -> Option<Vec<PlacementRule>> {
    let written: Vec<String> = serde_json::from_str(&column?).ok()?;
    Some(
        written
            .iter()
            .filter_map(|r| PlacementRule::from_stored(r))
            .collect(),
    )
}

/// The `more_origins` column read back (a value we did not write counts as none: the ban
/// then covers its `origin`'s hosts, as before the column existed).
fn origins_from_column(column: Option<String>) -> Vec<String> {
    column
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// An open database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Which notifiers hear which jail (none: the outbox stays empty).
    routes: Option<SharedRoutes>,
    /// Rung after a commit that queued notifications.
    wake: Option<Arc<tokio::sync::Notify>>,
    /// Where each active ban's row is, read from the table at the first write or `active`.
    index: Option<RowIndex>,
}

/// A notification waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Its row (deliveries are in this order, per notifier).
    pub id: i64,
    /// The notifier.
    pub notifier: String,
    /// The JSON body.
    pub body: String,
    /// When it was queued.
    pub created: SystemTime,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sql)?;
        Store::init(conn, path)
    }

    /// A store in memory, gone when the daemon stops: what `--dry-run` records in, so that
    /// nothing decided in a dry run is restored and enforced by a later real run.
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sql {
            path: path.clone(),
            source,
        })?;
        Store::init(conn, path)
    }

    fn init(mut conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        // WAL + NORMAL: a commit survives a killed process (the acceptance's kill -9); only
        // a power loss can take back the last commits.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 5000;",
        )
        .map_err(sql)?;
        schema::up_to_date(&mut conn, millis(SystemTime::now())).map_err(sql)?;
        Ok(Store {
            conn,
            path,
            routes: None,
            wake: None,
            index: None,
        })
    }

    /// Queues notifications by `routes` from now on, ringing `wake` after each commit that
    /// queued some.
    pub fn with_notifications(
        mut self,
        routes: SharedRoutes,
        wake: Arc<tokio::sync::Notify>,
    ) -> Self {
        self.routes = Some(routes);
        self.wake = Some(wake);
        self
    }

    pub(super) fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// Applies a group of writes (and the notifications they queue) in one transaction.
    pub fn write(&mut self, ops: &[StoreOp]) -> Result<(), StoreError> {
        let mut queued = 0usize;
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        if self.index.is_none() {
            // Where each ban in force has its row (the daemon's start-up read found it).
            self.active(SystemTime::now())?;
        }
        let index = self.index.get_or_insert_with(RowIndex::default);
        let mut changes = Changes::default();
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let prepare = |statement: &str| tx.prepare_cached(statement).map_err(sql);
            let mut insert = prepare(&format!(
                "INSERT INTO bans ({BAN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?;
            // A renewal's row, or a lift: kept as history from now on. A row past its
            // deadline has ended by itself: nothing to write.
            let mut end = prepare(
                "UPDATE bans SET ended = ?2 WHERE rowid = ?1 AND (expires IS NULL OR expires > ?2)",
            )?;
            let mut row_of = prepare(
                "SELECT origin, started, expires, failures, sample, decided_by, more_origins,
                     placement FROM bans WHERE rowid = ?1",
            )?;
            let mut outbox = prepare(
                "INSERT INTO outbox (notifier, body, created, ban) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut decided_by = prepare("UPDATE bans SET decided_by = ?2 WHERE rowid = ?1")?;
            let mut purge = prepare(&purge_statement())?;
            // This ban's, not an earlier one's still waiting for its notifier.
            let mut withdraw = prepare(
                "DELETE FROM outbox WHERE ban = ?1
                     AND created >= (SELECT started FROM bans WHERE rowid = ?2)",
            )?;
            // Read in place for the transaction: a reload's write waits, no copy per commit.
            let routes = self
                .routes
                .as_ref()
                .map(|r| r.read().unwrap_or_else(|poisoned| poisoned.into_inner()));
            let now = millis(SystemTime::now());
            let mut notify = |event: &str, record: &BanRecord| -> Result<(), rusqlite::Error> {
                if record.decided_by.is_some() {
                    // Announced by the collector that decided it.
                    return Ok(());
                }
                let Some(routes) = routes.as_ref().and_then(|r| r.get(&record.jail)) else {
                    return Ok(());
                };
                let wanted: Vec<&str> = routes
                    .iter()
                    .filter(|r| if event == "ban" { r.ban } else { r.unban })
                    .map(|r| r.notifier.as_str())
                    .collect();
                if wanted.is_empty() {
                    return Ok(());
                }
                let body = event::body(event, record);
                // A ban's notifications name it, so that a yield can withdraw them.
                let ban = (event == "ban").then(|| outbox_ban(&record.jail, record.address));
                for notifier in wanted {
                    outbox.execute(params![notifier, body, now, ban])?;
                    queued += 1;
                }
                Ok(())
            };
            for op in ops {
                match op {
                    StoreOp::Ban(r, _) => {
                        notify("ban", r).map_err(sql)?;
                        let key = index.key(r.address, &r.jail);
                        // A renewal: the ban's earlier row stays as its history.
                        if let Some(rowid) = changes.row(index, key) {
                            end.execute(params![rowid, now]).map_err(sql)?;
                        }
                        let rowid = insert
                            .insert(params![
                                r.address.to_string(),
                                r.jail,
                                r.origin,
                                millis(r.started),
                                r.expires.map(millis),
                                r.failures,
                                r.sample,
                                r.decided_by,
                                origins_column(&r.more_origins),
                                placement_column(r.placement.as_deref())
                            ])
                            .map_err(sql)?;
                        changes.set(key, Some(rowid));
                    }
                    StoreOp::End { address, jail, .. } => {
                        let key = index.key(*address, jail);
                        let Some(rowid) = changes.row(index, key) else {
                            // Not in force (already ended): nothing to end or announce.
                            continue;
                        };
                        if routes.as_ref().is_some_and(|r| r.contains_key(jail)) {
                            // The end's notification tells what the ban was.
                            let row = stored(&mut row_of, rowid, *address, jail).map_err(sql)?;
                            if let Some(record) = row {
                                notify("unban", &record).map_err(sql)?;
                            }
                        }
                        end.execute(params![rowid, now]).map_err(sql)?;
                        changes.set(key, None);
                    }
                    StoreOp::Yield { address, jail, to } => {
                        let key = index.key(*address, jail);
                        if let Some(rowid) = changes.row(index, key) {
                            decided_by.execute(params![rowid, to]).map_err(sql)?;
                            // Nothing was queued for a jail nobody hears.
                            if routes.as_ref().is_some_and(|r| r.contains_key(jail)) {
                                withdraw
                                    .execute(params![outbox_ban(jail, *address), rowid])
                                    .map_err(sql)?;
                            }
                        }
                    }
                    StoreOp::Purge { before } => {
                        let purged = purge.execute(params![millis(*before), now]).map_err(sql)?;
                        tracing::debug!(purged, "Ban history purged (dbpurgeage)");
                    }
                    StoreOp::TakeOver { address, jail } => {
                        let key = index.key(*address, jail);
                        let Some(rowid) = changes.row(index, key) else {
                            continue;
                        };
                        let row = stored(&mut row_of, rowid, *address, jail).map_err(sql)?;
                        // Already this collector's: announced once.
                        let Some(mut record) = row.filter(|r| r.decided_by.is_some()) else {
                            continue;
                        };
                        decided_by
                            .execute(params![rowid, None::<String>])
                            .map_err(sql)?;
                        record.decided_by = None;
                        notify("ban", &record).map_err(sql)?;
                    }
                }
            }
        }
        tx.commit().map_err(sql)?;
        index.apply(changes);
        if queued > 0 {
            if let Some(wake) = &self.wake {
                wake.notify_one();
            }
        }
        Ok(())
    }

    /// Bans in force at `now`, in one read of the table (rows of ended bans stay there as
    /// history). Remembers where each one's row is, for the writes that follow; a row whose
    /// address does not parse is skipped (and not found by them).
    pub fn active(&mut self, now: SystemTime) -> Result<Vec<BanRecord>, StoreError> {
        let mut index = RowIndex::default();
        let mut found: Vec<(i64, BanRecord)> = Vec::new();
        let mut duplicates = Vec::new();
        let mut skipped = 0usize;
        {
            let mut stmt = self
                .conn
                .prepare(&format!(
                    "SELECT rowid, {BAN_COLUMNS} FROM bans WHERE {} ORDER BY rowid",
                    in_force("?1")
                ))
                .map_err(|e| self.sql(e))?;
            let rows = stmt
                .query_map(params![millis(now)], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        StoredBan::read(row, 3)?,
                    ))
                })
                .map_err(|e| self.sql(e))?;
            for row in rows {
                let (rowid, address, jail, ban) = row.map_err(|e| self.sql(e))?;
                // A row that does not parse was not written by us; skip it rather than fail
                // start-up.
                let Ok(address) = address.parse() else {
                    skipped += 1;
                    continue;
                };
                let key = index.key(address, &jail);
                duplicates.extend(index.found(key, rowid));
                found.push((rowid, ban.record(address, jail)));
            }
        }
        if skipped > 0 {
            tracing::warn!(skipped, db = %self.path.display(), "Skipped stored bans whose address does not parse");
        }
        self.end_duplicates(&duplicates)?;
        self.index = Some(index);
        if !duplicates.is_empty() {
            found.retain(|(rowid, _)| !duplicates.contains(rowid));
        }
        Ok(found.into_iter().map(|(_, record)| record).collect())
    }

    /// Of two rows in force for one ban (this version writes none, but an older one or a
    /// hand's edit may have) the later is the ban: the others are ended.
    fn end_duplicates(&mut self, rowids: &[i64]) -> Result<(), StoreError> {
        let now = millis(SystemTime::now());
        for rowid in rowids {
            self.conn
                .execute(
                    "UPDATE bans SET ended = ?2 WHERE rowid = ?1",
                    params![rowid, now],
                )
                .map_err(|e| self.sql(e))?;
        }
        Ok(())
    }

    /// Bans made since `since`, in force or not: (address, jail, started), in the order
    /// written.
    pub fn history_since(
        &self,
        since: SystemTime,
    ) -> Result<Vec<(Target, String, SystemTime)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT address, jail, started FROM bans WHERE started >= ?1 ORDER BY rowid")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![millis(since)], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (address, jail, started) = row.map_err(|e| self.sql(e))?;
            if let Ok(address) = address.parse() {
                out.push((address, jail, from_millis(started)));
            }
        }
        Ok(out)
    }

    /// Deletes the rows of bans made before `before` that are no longer in force at `now`;
    /// returns how many went. A ban in force keeps its row, however old.
    pub fn purge_history(
        &mut self,
        before: SystemTime,
        now: SystemTime,
    ) -> Result<usize, StoreError> {
        self.conn
            .execute(&purge_statement(), params![millis(before), millis(now)])
            .map_err(|e| self.sql(e))
    }

    /// Number of bans in force at `now` (for tests).
    #[cfg(test)]
    pub fn active_count(&self, now: SystemTime) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT COUNT(*) FROM bans WHERE {}", in_force("?1")),
                params![millis(now)],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))
    }
}

/// A row of `bans` as read, without its address and jail.
struct StoredBan {
    origin: String,
    started: i64,
    expires: Option<i64>,
    failures: u32,
    sample: String,
    decided_by: Option<String>,
    more_origins: Vec<String>,
    placement: Option<Vec<PlacementRule>>,
}

impl StoredBan {
    /// The columns from `origin` to `placement` as [`BAN_COLUMNS`] orders them, the first at
    /// `first`.
    fn read(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<StoredBan> {
        Ok(StoredBan {
            origin: row.get(first)?,
            started: row.get(first + 1)?,
            expires: row.get(first + 2)?,
            failures: row.get(first + 3)?,
            sample: row.get(first + 4)?,
            decided_by: row.get(first + 5)?,
            more_origins: origins_from_column(row.get(first + 6)?),
            placement: placement_from_column(row.get(first + 7)?),
        })
    }

    fn record(self, address: Target, jail: String) -> BanRecord {
        BanRecord {
            address,
            jail,
            origin: self.origin,
            started: from_millis(self.started),
            expires: self.expires.map(from_millis),
            failures: self.failures,
            sample: self.sample,
            lines: Vec::new(),
            decided_by: self.decided_by,
            more_origins: self.more_origins,
            placement: self.placement,
        }
    }
}

#[cfg(test)]
mod tests;
