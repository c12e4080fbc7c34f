//! The store's tables, and bringing a store written by an earlier version to them.
//!
//! Owns the DDL and the migrations only; every statement that reads or writes a ban is the
//! store's. One table, `bans`, holds every ban with one row per ban decided (or renewed): a row
//! is active while its `ended` is NULL and its `expires` is ahead (or NULL: permanent), and
//! stays as history afterwards until purged by age. So a ban costs one row write, not a row
//! plus a history row plus the row's delete at its deadline. The views `history` (the shape the
//! separate table had) and `active_bans` are for operators' scripts; the daemon reads `bans`.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// The bans' columns as written, in the order every statement names them (`ended` apart).
pub(super) const BAN_COLUMNS: &str = "address, jail, origin, started, expires, failures, sample, \
     decided_by, more_origins, placement";

/// A row that is a ban in force at `?N` (ms): not ended early, its deadline ahead.
pub(super) fn in_force(now: &str) -> String {
    format!("ended IS NULL AND (expires IS NULL OR expires > {now})")
}

/// `bans` (or its copy during a rebuild) as this version creates it.
fn create_bans(name: &str) -> String {
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
             placement TEXT,
             ended    INTEGER
         );"
    )
}

/// The views over `bans`, for scripts: `history` as the table of that name was (one row per
/// ban decided or renewed, `id` in the order written) and `active_bans` (in force now).
fn create_views() -> String {
    format!(
        "CREATE VIEW IF NOT EXISTS history AS
             SELECT rowid AS id, address, jail, origin, started, expires, ended FROM bans;
         CREATE VIEW IF NOT EXISTS active_bans AS
             SELECT {BAN_COLUMNS} FROM bans
             WHERE {};",
        in_force("CAST(strftime('%s', 'now') AS INTEGER) * 1000")
    )
}

/// Creates the tables, or brings an older store to this version's shape, in one transaction
/// that takes the write lock first (the notify stage opens the file too). `now` (ms) is when
/// a migrated history row counts as ended at the latest.
///
/// What earlier versions left: a `bans` table with a key index (copied into one without:
/// rows are found through the store's in-memory index), without `decided_by` (before the
/// cluster knew who decided a ban, all were decided here: NULL), `more_origins` (NULL: one
/// attacked host), `placement` (NULL: the jail's) or `ended` (NULL: its rows were all in
/// force or due to be deleted); a separate `history` table (its rows not already in `bans`
/// join it as ended bans); an outbox without `ban` (rows from before name no ban).
pub(super) fn up_to_date(conn: &mut Connection, now: i64) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let sql_of = |kind: &str, name: &str| {
        tx.query_row(
            "SELECT sql FROM sqlite_master WHERE type = ?1 AND name = ?2",
            params![kind, name],
            |row| row.get::<_, String>(0),
        )
        .optional()
    };
    let bans = sql_of("table", "bans")?;
    let history_table = sql_of("table", "history")?.is_some();
    if bans.as_ref().is_some_and(|sql| sql.contains("PRIMARY KEY")) {
        // A rebuild renames a table the views name: they are made again below.
        tx.execute_batch("DROP VIEW IF EXISTS history; DROP VIEW IF EXISTS active_bans;")?;
    }
    match bans {
        None => tx.execute_batch(&create_bans("bans"))?,
        Some(sql) => {
            for column in ["decided_by", "more_origins", "placement"] {
                if !sql.contains(column) {
                    tx.execute_batch(&format!("ALTER TABLE bans ADD COLUMN {column} TEXT"))?;
                }
            }
            if !sql.contains("ended") {
                tx.execute_batch("ALTER TABLE bans ADD COLUMN ended INTEGER")?;
            }
            if sql.contains("PRIMARY KEY") {
                tx.execute_batch(&format!(
                    "{}
                     INSERT INTO bans_rows ({BAN_COLUMNS}, ended)
                         SELECT {BAN_COLUMNS}, ended FROM bans;
                     DROP TABLE bans;
                     ALTER TABLE bans_rows RENAME TO bans;",
                    create_bans("bans_rows")
                ))?;
            }
        }
    }
    if history_table {
        merge_history(&tx, now)?;
    }
    tx.execute_batch(&format!(
        "{}
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
        create_views()
    ))?;
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

/// Moves a separate `history` table's rows into `bans` as ended bans, except the rows of
/// bans already there (an active ban's own history row, or a widening's repeat of it), and
/// drops the table. An ended row's end is its deadline if that passed, else `now`: the row
/// was renewed or lifted by then.
fn merge_history(tx: &rusqlite::Transaction<'_>, now: i64) -> rusqlite::Result<()> {
    // Found by the index, not by reading `bans` once per history row; gone again at the end.
    tx.execute_batch(
        "CREATE INDEX bans_merging ON bans (address, jail, started);
         DROP INDEX IF EXISTS history_started;",
    )?;
    tx.execute(
        "INSERT INTO bans (address, jail, origin, started, expires, failures, sample, ended)
             SELECT h.address, h.jail, h.origin, h.started, h.expires, 0, '',
                 CASE WHEN h.expires IS NOT NULL AND h.expires <= ?1 THEN h.expires ELSE ?1 END
             FROM history h
             WHERE NOT EXISTS (SELECT 1 FROM bans b
                 WHERE b.address = h.address AND b.jail = h.jail AND b.started = h.started)
             ORDER BY h.id",
        params![now],
    )?;
    tx.execute_batch("DROP TABLE history; DROP INDEX bans_merging;")
}
