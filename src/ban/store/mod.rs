//! The ban store: active bans and ban history in SQLite (WAL), written by one dedicated
//! thread, never from async workers.
//!
//! Owns the schema and every SQL statement. It stores what the ban manager decided and reads
//! it back at start-up; it decides nothing and never touches a firewall. Writes are grouped:
//! whatever arrives while one transaction commits goes into the next (group commit). The
//! manager hands the firewall commands to enforcement before their write reaches this thread,
//! so a ban never waits for a commit; the `Banned` line is logged once the write is durable.
//!
//! Active bans' rows are appended and found again through an in-memory index (`rows`), not a
//! key index on disk; the thread that commits is `writer`'s.
//!
//! The outbox: a ban's (and a ban end's) notifications are rows written in the same
//! transaction, so they are neither lost nor repeated across a restart; the notify stage reads
//! them on its own connection and deletes each once delivered.

mod outbox;
mod rows;
pub mod writer;

use crate::config::PlacementRule;
use crate::target::Target;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use thiserror::Error;

use super::event::{self, SharedRoutes};
pub use super::record::{BanRecord, StoreOp};
use rows::{Changes, RowIndex};

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

/// The active bans' columns, in the order every statement names them.
const BAN_COLUMNS: &str = "address, jail, origin, started, expires, failures, sample, decided_by, \
     more_origins, placement";

/// Creates the `bans` table, or brings an older store to this version's shape, in one
/// transaction that takes the write lock first (the notify stage opens the file too): the
/// bans' `decided_by` (before the cluster knew who decided a ban, all were decided here:
/// NULL), `more_origins` (NULL: one attacked host) and `placement` (NULL: the jail's), no key index on bans (rows are found
/// through [`RowIndex`]; a store from before it is copied into a table without one), and the outbox's `ban` (rows from before name no ban).
fn up_to_date(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing: Option<String> = tx
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'bans'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    let create = |name: &str| {
        format!(
            "CREATE TABLE {name} (
                 address  TEXT    NOT NULL,
                 jail     TEXT    NOT NULL,
                 origin   TEXT    NOT NULL,
                 started  INTEGER NOT NULL,
                 expires  INTEGER,
                 failures INTEGER NOT NULL,
                 sample   TEXT    NOT NULL,
                 decided_by TEXT,
                 more_origins TEXT,
                 placement TEXT
             );"
        )
    };
    match existing {
        None => tx.execute_batch(&create("bans"))?,
        Some(sql) => {
            if !sql.contains("decided_by") {
                tx.execute_batch("ALTER TABLE bans ADD COLUMN decided_by TEXT")?;
            }
            if !sql.contains("more_origins") {
                tx.execute_batch("ALTER TABLE bans ADD COLUMN more_origins TEXT")?;
            }
            if !sql.contains("placement") {
                tx.execute_batch("ALTER TABLE bans ADD COLUMN placement TEXT")?;
            }
            if sql.contains("PRIMARY KEY") {
                tx.execute_batch(&format!(
                    "{}
                     INSERT INTO bans_rows ({BAN_COLUMNS}) SELECT {BAN_COLUMNS} FROM bans;
                     DROP TABLE bans;
                     ALTER TABLE bans_rows RENAME TO bans;",
                    create("bans_rows")
                ))?;
            }
        }
    }
    let named: i64 = tx.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('outbox') WHERE name = 'ban'",
        [],
        |row| row.get(0),
    )?;
    if named == 0 {
        tx.execute_batch("ALTER TABLE outbox ADD COLUMN ban TEXT")?;
    }
    // A yield finds its ban's notifications without reading a long queue (a notifier down
    // for hours); only ban notifications are in it.
    tx.execute_batch(
        "CREATE INDEX IF NOT EXISTS outbox_ban ON outbox (ban) WHERE ban IS NOT NULL",
    )?;
    tx.commit()
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
        .query_row(params![rowid], |row| {
            Ok(BanRecord {
                address,
                jail: jail.to_string(),
                origin: row.get(0)?,
                started: from_millis(row.get(1)?),
                expires: row.get::<_, Option<i64>>(2)?.map(from_millis),
                failures: row.get(3)?,
                sample: row.get(4)?,
                lines: Vec::new(),
                decided_by: row.get(5)?,
                more_origins: origins_from_column(row.get(6)?),
                placement: placement_from_column(row.get(7)?),
            })
        })
        .optional()
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
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS history (
                 id       INTEGER PRIMARY KEY,
                 address  TEXT    NOT NULL,
                 jail     TEXT    NOT NULL,
                 origin   TEXT    NOT NULL,
                 started  INTEGER NOT NULL,
                 expires  INTEGER
             );
             -- History is read and purged only at start, whole: an index on `started` only
             -- made each ban's row dearer to write.
             DROP INDEX IF EXISTS history_started;
             CREATE TABLE IF NOT EXISTS outbox (
                 id       INTEGER PRIMARY KEY,
                 notifier TEXT    NOT NULL,
                 body     TEXT    NOT NULL,
                 created  INTEGER NOT NULL,
                 ban      TEXT
             );
             CREATE INDEX IF NOT EXISTS outbox_notifier ON outbox (notifier, id);
             CREATE TABLE IF NOT EXISTS reported (
                 notifier TEXT    NOT NULL,
                 address  TEXT    NOT NULL,
                 at       INTEGER NOT NULL,
                 PRIMARY KEY (notifier, address)
             );",
        )
        .map_err(sql)?;
        up_to_date(&mut conn).map_err(sql)?;
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
            self.index = Some(self.load_index()?);
        }
        let index = self.index.get_or_insert_with(RowIndex::default);
        let mut changes = Changes::default();
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let prepare = |statement: &str| tx.prepare_cached(statement).map_err(sql);
            let mut insert = prepare(&format!(
                "INSERT INTO bans ({BAN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ))?;
            let mut renew = prepare(
                "UPDATE bans SET origin = ?2, started = ?3, expires = ?4, failures = ?5, sample = ?6,
                     decided_by = ?7, more_origins = ?8, placement = ?9 WHERE rowid = ?1",
            )?;
            let mut history = prepare(
                "INSERT INTO history (address, jail, origin, started, expires)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut end = prepare("DELETE FROM bans WHERE rowid = ?1")?;
            let mut row_of = prepare(
                "SELECT origin, started, expires, failures, sample, decided_by, more_origins,
                     placement FROM bans WHERE rowid = ?1",
            )?;
            let mut outbox = prepare(
                "INSERT INTO outbox (notifier, body, created, ban) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut decided_by = prepare("UPDATE bans SET decided_by = ?2 WHERE rowid = ?1")?;
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
                        let address = r.address.to_string();
                        let expires = r.expires.map(millis);
                        let key = index.key(r.address, &r.jail);
                        match changes.row(index, key) {
                            // A renewal: the row is the ban's until it ends.
                            Some(rowid) => renew
                                .execute(params![
                                    rowid,
                                    r.origin,
                                    millis(r.started),
                                    expires,
                                    r.failures,
                                    r.sample,
                                    r.decided_by,
                                    origins_column(&r.more_origins),
                                    placement_column(r.placement.as_deref())
                                ])
                                .map(drop),
                            None => insert
                                .insert(params![
                                    address,
                                    r.jail,
                                    r.origin,
                                    millis(r.started),
                                    expires,
                                    r.failures,
                                    r.sample,
                                    r.decided_by,
                                    origins_column(&r.more_origins),
                                    placement_column(r.placement.as_deref())
                                ])
                                .map(|rowid| changes.set(key, Some(rowid))),
                        }
                        .map_err(sql)?;
                        history
                            .execute(params![
                                address,
                                r.jail,
                                r.origin,
                                millis(r.started),
                                expires
                            ])
                            .map_err(sql)?;
                    }
                    StoreOp::End { address, jail, .. } => {
                        let key = index.key(*address, jail);
                        let Some(rowid) = changes.row(index, key) else {
                            // Not stored (already ended): nothing to remove or announce.
                            continue;
                        };
                        if routes.as_ref().is_some_and(|r| r.contains_key(jail)) {
                            // The end's notification tells what the ban was.
                            let row = stored(&mut row_of, rowid, *address, jail).map_err(sql)?;
                            if let Some(record) = row {
                                notify("unban", &record).map_err(sql)?;
                            }
                        }
                        end.execute(params![rowid]).map_err(sql)?;
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

    /// Active bans at `now`; expired ones are deleted on the way.
    pub fn active(&mut self, now: SystemTime) -> Result<Vec<BanRecord>, StoreError> {
        let now_ms = millis(now);
        self.conn
            .execute(
                "DELETE FROM bans WHERE expires IS NOT NULL AND expires <= ?1",
                params![now_ms],
            )
            .map_err(|e| self.sql(e))?;
        self.index = Some(self.load_index()?);
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {BAN_COLUMNS} FROM bans"))
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, u32>(5)?,
                    row.get::<_, String>(6)?,
                    row.get::<_, Option<String>>(7)?,
                    origins_from_column(row.get(8)?),
                    placement_from_column(row.get(9)?),
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        let mut skipped = 0usize;
        for row in rows {
            let (
                address,
                jail,
                origin,
                started,
                expires,
                failures,
                sample,
                decided_by,
                more,
                rules,
            ) = row.map_err(|e| self.sql(e))?;
            // A row that does not parse was not written by us; skip it rather than fail start-up.
            let Ok(address) = address.parse() else {
                skipped += 1;
                continue;
            };
            out.push(BanRecord {
                address,
                jail,
                origin,
                started: from_millis(started),
                expires: expires.map(from_millis),
                failures,
                sample,
                lines: Vec::new(),
                decided_by,
                more_origins: more,
                placement: rules,
            });
        }
        if skipped > 0 {
            tracing::warn!(skipped, db = %self.path.display(), "Skipped stored bans whose address does not parse");
        }
        Ok(out)
    }

    /// Reads where every active ban's row is. Of two rows for one ban (this version writes
    /// none, but an older one or a hand's edit may have) the later is kept, the other deleted.
    fn load_index(&mut self) -> Result<RowIndex, StoreError> {
        let mut index = RowIndex::default();
        let mut duplicates = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT rowid, address, jail FROM bans ORDER BY rowid")
                .map_err(|e| self.sql(e))?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                    ))
                })
                .map_err(|e| self.sql(e))?;
            for row in rows {
                let (rowid, address, jail) = row.map_err(|e| self.sql(e))?;
                // A row whose address does not parse is skipped, as `active` skips it.
                if let Ok(address) = address.parse() {
                    let key = index.key(address, &jail);
                    duplicates.extend(index.found(key, rowid));
                }
            }
        }
        for rowid in duplicates {
            self.conn
                .execute("DELETE FROM bans WHERE rowid = ?1", params![rowid])
                .map_err(|e| self.sql(e))?;
        }
        Ok(index)
    }

    /// Ban history since `since`: (address, jail, started), in the order it was written.
    pub fn history_since(
        &self,
        since: SystemTime,
    ) -> Result<Vec<(Target, String, SystemTime)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT address, jail, started FROM history WHERE started >= ?1 ORDER BY id")
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

    /// Deletes history older than `before`; returns how many rows went.
    pub fn purge_history(&mut self, before: SystemTime) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM history WHERE started < ?1",
                params![millis(before)],
            )
            .map_err(|e| self.sql(e))
    }

    /// Number of active bans stored (for tests and status).
    pub fn active_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM bans", [], |r| r.get(0))
            .optional()
            .map(|n| n.unwrap_or(0))
            .map_err(|e| self.sql(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        address: &str,
        jail: &str,
        started: SystemTime,
        expires: Option<SystemTime>,
    ) -> BanRecord {
        BanRecord {
            address: address.parse().unwrap(),
            jail: jail.into(),
            origin: "198.51.100.10".into(),
            started,
            expires,
            failures: 3,
            sample: "Failed password".into(),
            lines: Vec::new(),
            decided_by: None,
            more_origins: Vec::new(),
            placement: None,
        }
    }

    #[test]
    fn a_widened_ban_keeps_its_other_hosts_and_placement_through_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let first = record(
            "203.0.113.1",
            "sshd",
            t0,
            Some(t0 + Duration::from_secs(60)),
        );
        let widened = BanRecord {
            origin: "198.51.100.20".into(),
            more_origins: vec!["198.51.100.10".into(), "web \"7\"".into()],
            placement: Some(vec![
                PlacementRule::Origin,
                PlacementRule::Group("web".into()),
                PlacementRule::Target(crate::config::TargetName::new("b").unwrap()),
            ]),
            expires: Some(t0 + Duration::from_secs(90)),
            ..first.clone()
        };
        {
            let mut store = Store::open(dir.path()).unwrap();
            store
                .write(&[StoreOp::Ban(first.clone(), Vec::new())])
                .unwrap();
            let active = store.active(t0).unwrap();
            assert!(active[0].more_origins.is_empty());
            store
                .write(&[StoreOp::Ban(widened.clone(), Vec::new())])
                .unwrap();
        }
        let mut store = Store::open(dir.path()).unwrap();
        let active = store.active(t0).unwrap();
        assert_eq!(active.len(), 1, "a widening renews the one row");
        assert_eq!(active[0].origin, widened.origin);
        assert_eq!(active[0].more_origins, widened.more_origins);
        assert_eq!(active[0].placement, widened.placement);
        assert_eq!(active[0].expires, widened.expires);
        // A value we did not write reads as no other hosts.
        store
            .conn
            .execute_batch("UPDATE bans SET more_origins = 'web2', placement = 'all'")
            .unwrap();
        let read = &store.active(t0).unwrap()[0];
        assert!(read.more_origins.is_empty());
        assert_eq!(read.placement, None, "the jail's placement");
    }

    #[test]
    fn bans_survive_reopen_and_expired_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        {
            let mut store = Store::open(dir.path()).unwrap();
            store
                .write(&[
                    StoreOp::Ban(
                        record(
                            "203.0.113.1",
                            "sshd",
                            t0,
                            Some(t0 + Duration::from_secs(60)),
                        ),
                        Vec::new(),
                    ),
                    StoreOp::Ban(
                        record(
                            "203.0.113.2",
                            "sshd",
                            t0,
                            Some(t0 + Duration::from_secs(600)),
                        ),
                        Vec::new(),
                    ),
                    StoreOp::Ban(record("2001:db8::3", "postfix", t0, None), Vec::new()),
                    StoreOp::Ban(
                        record(
                            "203.0.113.4",
                            "sshd",
                            t0,
                            Some(t0 + Duration::from_secs(600)),
                        ),
                        Vec::new(),
                    ),
                    StoreOp::End {
                        address: "203.0.113.4".parse().unwrap(),
                        jail: "sshd".into(),
                        commands: Vec::new(),
                    },
                ])
                .unwrap();
        }
        let mut store = Store::open(dir.path()).unwrap();
        let mut active = store.active(t0 + Duration::from_secs(120)).unwrap();
        active.sort_by_key(|r| r.address);
        let addresses: Vec<String> = active.iter().map(|r| r.address.to_string()).collect();
        assert_eq!(addresses, vec!["203.0.113.2", "2001:db8::3"]);
        assert_eq!(active[0].expires, Some(t0 + Duration::from_secs(600)));
        assert_eq!(active[1].expires, None);
        assert_eq!(
            store.active_count().unwrap(),
            2,
            "the expired row was deleted"
        );
        // History keeps all four bans, including the expired and the ended one.
        assert_eq!(store.history_since(t0).unwrap().len(), 4);
        assert_eq!(store.purge_history(t0 + Duration::from_secs(1)).unwrap(), 4);
        assert!(store.history_since(t0).unwrap().is_empty());
    }

    #[test]
    fn history_is_read_and_purged_without_an_index_and_an_old_one_goes() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        {
            let mut store = Store::open(dir.path()).unwrap();
            // As an earlier version left it.
            store
                .conn
                .execute_batch("CREATE INDEX history_started ON history (started)")
                .unwrap();
            // Written out of time order (an adopted ban carries its decider's start).
            let ops: Vec<StoreOp> = [(1, 300), (2, 100), (3, 200)]
                .into_iter()
                .map(|(n, at)| {
                    let started = t0 + Duration::from_secs(at);
                    let address = format!("203.0.113.{n}");
                    StoreOp::Ban(record(&address, "sshd", started, None), Vec::new())
                })
                .collect();
            store.write(&ops).unwrap();
        }
        let mut store = Store::open(dir.path()).unwrap();
        let indexes: u32 = store
            .conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'history_started'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0, "the old index is dropped on open");
        let since = |store: &Store, at| {
            let mut rows: Vec<String> = store
                .history_since(t0 + Duration::from_secs(at))
                .unwrap()
                .into_iter()
                .map(|(address, _, _)| address.to_string())
                .collect();
            rows.sort();
            rows
        };
        assert_eq!(since(&store, 150), ["203.0.113.1", "203.0.113.3"]);
        assert_eq!(
            store.purge_history(t0 + Duration::from_secs(250)).unwrap(),
            2
        );
        assert_eq!(since(&store, 0), ["203.0.113.1"]);
    }

    /// `store` with sshd's bans and unbans queued for notifier `ops`.
    fn notifying_sshd(store: Store) -> Store {
        let mut routes = event::Routes::new();
        routes.insert(
            "sshd".into(),
            vec![event::Route {
                notifier: "ops".into(),
                ban: true,
                unban: true,
            }],
        );
        let wake = Arc::new(tokio::sync::Notify::new());
        store.with_notifications(Arc::new(std::sync::RwLock::new(routes)), wake)
    }

    #[test]
    fn a_ban_and_its_end_queue_notifications_in_their_own_transactions() {
        let mut store = notifying_sshd(Store::in_memory().unwrap());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ban = record(
            "198.51.100.9",
            "sshd",
            t0,
            Some(t0 + Duration::from_secs(60)),
        );
        let other = record("198.51.100.10", "postfix", t0, None);
        store
            .write(&[StoreOp::Ban(ban, vec![]), StoreOp::Ban(other, vec![])])
            .unwrap();
        let queued = store.outbox("ops", 10).unwrap();
        assert_eq!(queued.len(), 1, "postfix has no notifier: {queued:?}");
        assert!(
            queued[0].body.contains("\"event\":\"ban\""),
            "{}",
            queued[0].body
        );
        store
            .write(&[StoreOp::End {
                address: "198.51.100.9".parse().unwrap(),
                jail: "sshd".into(),
                commands: vec![],
            }])
            .unwrap();
        let queued = store.outbox("ops", 10).unwrap();
        assert_eq!(queued.len(), 2);
        let end: serde_json::Value = serde_json::from_str(&queued[1].body).unwrap();
        // The end tells what the ended ban was, read from its row before it went.
        assert_eq!(
            (end["event"].as_str(), end["bantime"].as_u64()),
            (Some("unban"), Some(60))
        );
        store.outbox_done(&[queued[0].id]).unwrap();
        assert_eq!(store.outbox_counts().unwrap(), vec![("ops".to_string(), 1)]);
    }

    /// A store as written before `decided_by` and before the key index went, with `rows`
    /// (SQL inserts into `bans`).
    fn older_store(dir: &Path, rows: &str) {
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        conn.execute_batch(&format!(
            "CREATE TABLE bans (address TEXT NOT NULL, jail TEXT NOT NULL, origin TEXT NOT NULL,
                 started INTEGER NOT NULL, expires INTEGER, failures INTEGER NOT NULL,
                 sample TEXT NOT NULL, PRIMARY KEY (address, jail));
             {rows}"
        ))
        .unwrap();
    }

    #[test]
    fn a_ban_another_collector_decided_is_announced_there_not_here() {
        let dir = tempfile::tempdir().unwrap();
        // A store from before `decided_by`: its bans were all decided here.
        older_store(
            dir.path(),
            "INSERT INTO bans VALUES ('198.51.100.1', 'sshd', 'web1', 1, NULL, 5, 'x');",
        );
        let mut store = notifying_sshd(Store::open(dir.path()).unwrap());
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let adopted = BanRecord {
            decided_by: Some("b".into()),
            ..record("198.51.100.2", "sshd", t0, None)
        };
        store.write(&[StoreOp::Ban(adopted, vec![])]).unwrap();
        assert!(store.outbox("ops", 10).unwrap().is_empty());
        let mut active = store.active(t0).unwrap();
        active.sort_by_key(|r| r.address);
        let deciders: Vec<Option<&str>> = active.iter().map(|r| r.decided_by.as_deref()).collect();
        assert_eq!(deciders, vec![None, Some("b")]);
        let end = |address: &str| StoreOp::End {
            address: address.parse().unwrap(),
            jail: "sshd".into(),
            commands: vec![],
        };
        store.write(&[end("198.51.100.2")]).unwrap();
        assert!(store.outbox("ops", 10).unwrap().is_empty());
        // The old row's end is this collector's to announce.
        store.write(&[end("198.51.100.1")]).unwrap();
        assert_eq!(store.outbox("ops", 10).unwrap().len(), 1);
    }

    /// The bodies waiting for notifier `ops`.
    fn bodies(store: &Store) -> Vec<String> {
        store
            .outbox("ops", 10)
            .unwrap()
            .into_iter()
            .map(|row| row.body)
            .collect()
    }

    fn ban_indexes(store: &Store) -> i64 {
        store
            .conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'bans'",
                [],
                |row| row.get(0),
            )
            .unwrap()
    }

    #[test]
    fn a_renewal_rewrites_the_bans_row_and_an_end_removes_it_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ban = |expires: u64| {
            StoreOp::Ban(
                record(
                    "198.51.100.5",
                    "sshd",
                    t0,
                    Some(t0 + Duration::from_secs(expires)),
                ),
                Vec::new(),
            )
        };
        let end = || StoreOp::End {
            address: "198.51.100.5".parse().unwrap(),
            jail: "sshd".into(),
            commands: Vec::new(),
        };
        {
            let mut store = Store::open(dir.path()).unwrap();
            assert_eq!(ban_indexes(&store), 0, "no key index on disk");
            // Renewed in the same transaction and in the next one.
            store.write(&[ban(60), ban(600)]).unwrap();
            store.write(&[ban(6000)]).unwrap();
            assert_eq!(store.active_count().unwrap(), 1);
            store
                .write(&[StoreOp::Ban(
                    record("198.51.100.5", "postfix", t0, None),
                    Vec::new(),
                )])
                .unwrap();
        }
        let mut store = Store::open(dir.path()).unwrap();
        // An end first, before anything else read the table: the row is found again.
        store.write(&[end()]).unwrap();
        let active = store.active(t0).unwrap();
        assert_eq!(active.len(), 1, "{active:?}");
        assert_eq!(active[0].jail, "postfix");
        store.write(&[end(), ban(60), end()]).unwrap();
        assert_eq!(
            store.active_count().unwrap(),
            1,
            "ended within one transaction"
        );
        assert_eq!(store.history_since(t0).unwrap().len(), 5);
    }

    #[test]
    fn an_older_store_loses_its_key_index_and_keeps_its_bans_and_duplicates_go() {
        let dir = tempfile::tempdir().unwrap();
        older_store(
            dir.path(),
            "INSERT INTO bans VALUES ('198.51.100.1', 'sshd', 'web1', 1, NULL, 5, 'x');
             INSERT INTO bans VALUES ('198.51.100.2', 'sshd', 'web1', 1, NULL, 5, 'x');
             CREATE TABLE outbox (id INTEGER PRIMARY KEY, notifier TEXT NOT NULL,
                 body TEXT NOT NULL, created INTEGER NOT NULL);
             INSERT INTO outbox (notifier, body, created) VALUES ('ops', 'waiting', 1);",
        );
        let store = Store::open(dir.path()).unwrap();
        // The outbox from before names no ban; what waited there still does.
        let waiting = bodies(&store);
        assert_eq!(waiting, ["waiting"]);
        store
            .conn
            .execute("INSERT INTO outbox (notifier, body, created, ban) VALUES ('ops', 'new', 2, 'sshd x')", [])
            .unwrap();
        store
            .conn
            .execute_batch("UPDATE bans SET decided_by = 'b' WHERE address = '198.51.100.2'")
            .unwrap();
        assert_eq!(ban_indexes(&store), 0);
        // A second opener (the notify stage) finds it done.
        drop(Store::open(dir.path()).unwrap());
        // Two rows for one ban (a hand's edit): the later is the ban.
        store
            .conn
            .execute_batch(
                "INSERT INTO bans VALUES ('198.51.100.1', 'sshd', 'web2', 2, NULL, 6, 'y', NULL, NULL, NULL);",
            )
            .unwrap();
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        let mut active = store.active(UNIX_EPOCH).unwrap();
        active.sort_by_key(|r| r.address);
        let got: Vec<(String, &str, Option<&str>)> = active
            .iter()
            .map(|r| {
                (
                    r.address.to_string(),
                    r.origin.as_str(),
                    r.decided_by.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("198.51.100.1".to_string(), "web2", None),
                ("198.51.100.2".to_string(), "web1", Some("b"))
            ]
        );
        assert_eq!(
            store.active_count().unwrap(),
            2,
            "the duplicate row was deleted"
        );
    }

    #[test]
    fn a_yielded_ban_is_the_others_to_announce_and_its_waiting_notifications_go() {
        let mut store = notifying_sshd(Store::in_memory().unwrap());
        let t0 = SystemTime::now() - Duration::from_secs(1);
        let (yielded, kept) = ("198.51.100.9", "198.51.100.10");
        // An earlier ban of the same address, its notification still waiting (its notifier
        // down): not this ban's to withdraw.
        store
            .conn
            .execute(
                "INSERT INTO outbox (notifier, body, created, ban) VALUES ('ops', 'earlier', ?1, ?2)",
                params![millis(t0 - Duration::from_secs(60)), format!("sshd {yielded}")],
            )
            .unwrap();
        store
            .write(&[
                StoreOp::Ban(record(yielded, "sshd", t0, None), vec![]),
                StoreOp::Ban(record(kept, "sshd", t0, None), vec![]),
            ])
            .unwrap();
        assert_eq!(store.outbox("ops", 10).unwrap().len(), 3);
        store
            .write(&[StoreOp::Yield {
                address: yielded.parse().unwrap(),
                jail: "sshd".into(),
                to: "b".into(),
            }])
            .unwrap();
        let waiting = bodies(&store);
        assert_eq!(waiting.len(), 2, "{waiting:?}");
        assert_eq!(waiting[0], "earlier");
        assert!(waiting[1].contains(kept), "{waiting:?}");
        let deciders: Vec<(String, Option<String>)> = store
            .active(t0)
            .unwrap()
            .into_iter()
            .map(|r| (r.address.to_string(), r.decided_by))
            .collect();
        assert!(deciders.contains(&(yielded.to_string(), Some("b".to_string()))));
        assert!(deciders.contains(&(kept.to_string(), None)));
        // Its end is b's to announce too.
        let end = |address: &str| StoreOp::End {
            address: address.parse().unwrap(),
            jail: "sshd".into(),
            commands: vec![],
        };
        store.write(&[end(yielded), end(kept)]).unwrap();
        let events: Vec<String> = bodies(&store)
            .into_iter()
            .filter(|body| body.contains("unban"))
            .collect();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].contains(kept));
        // Notifications not yet old enough wait.
        assert!(store.outbox_before("ops", 10, t0).unwrap().len() == 1);
        assert!(store.outbox_first_after("ops", t0).unwrap().is_some());
        assert_eq!(
            store.outbox_first_after("ops", SystemTime::now()).unwrap(),
            None
        );
    }

    #[test]
    fn a_ban_taken_over_from_a_claim_holder_is_announced_here_and_its_end_too() {
        let mut store = notifying_sshd(Store::in_memory().unwrap());
        let t0 = SystemTime::now() - Duration::from_secs(1);
        let address = "198.51.100.11";
        let mut held_back = record(address, "sshd", t0, None);
        held_back.decided_by = Some("ghost".into());
        store.write(&[StoreOp::Ban(held_back, vec![])]).unwrap();
        assert!(bodies(&store).is_empty(), "the holder's to announce");
        let take_over = StoreOp::TakeOver {
            address: address.parse().unwrap(),
            jail: "sshd".into(),
        };
        store.write(std::slice::from_ref(&take_over)).unwrap();
        let waiting = bodies(&store);
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        assert!(waiting[0].contains(address) && !waiting[0].contains("unban"));
        let deciders: Vec<Option<String>> = store
            .active(t0)
            .unwrap()
            .into_iter()
            .map(|r| r.decided_by)
            .collect();
        assert_eq!(deciders, vec![None]);
        // Taken over once only: a repeat finds it this collector's and queues nothing more.
        store.write(&[take_over]).unwrap();
        store
            .write(&[StoreOp::End {
                address: address.parse().unwrap(),
                jail: "sshd".into(),
                commands: vec![],
            }])
            .unwrap();
        let events = bodies(&store);
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events[1].contains("unban"));
    }
}
