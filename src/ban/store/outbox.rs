//! The outbox's reading side, for the notify stage (on its own connection): the
//! notifications waiting per notifier, their removal once delivered, and when an address was
//! last reported to an abuse service. Rows are queued by `Store::write`, with their ban.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, OptionalExtension};

use super::{from_millis, millis, Outgoing, Store, StoreError};

impl Store {
    /// The oldest `limit` notifications waiting for `notifier`.
    pub fn outbox(&self, notifier: &str, limit: usize) -> Result<Vec<Outgoing>, StoreError> {
        self.outbox_before(
            notifier,
            limit,
            UNIX_EPOCH + Duration::from_secs(u32::MAX.into()),
        )
    }

    /// As [`Store::outbox`], of the notifications queued by `before` only.
    pub fn outbox_before(
        &self,
        notifier: &str,
        limit: usize,
        before: SystemTime,
    ) -> Result<Vec<Outgoing>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, notifier, body, created FROM outbox WHERE notifier = ?1 AND created <= ?3
                 ORDER BY id LIMIT ?2",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![notifier, limit as i64, millis(before)], |row| {
                Ok(Outgoing {
                    id: row.get(0)?,
                    notifier: row.get(1)?,
                    body: row.get(2)?,
                    created: from_millis(row.get(3)?),
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// When the first notification for `notifier` queued after `after` was queued.
    pub fn outbox_first_after(
        &self,
        notifier: &str,
        after: SystemTime,
    ) -> Result<Option<SystemTime>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(created) FROM outbox WHERE notifier = ?1 AND created > ?2",
                params![notifier, millis(after)],
                |row| row.get::<_, Option<i64>>(0),
            )
            .map(|at| at.map(from_millis))
            .map_err(|e| self.sql(e))
    }

    /// Removes delivered notifications.
    pub fn outbox_done(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM outbox WHERE id = ?1")
                .map_err(sql)?;
            for id in ids {
                delete.execute(params![id]).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// When `notifier` last reported `address` (abuse reports: once per period).
    pub fn reported_at(
        &self,
        notifier: &str,
        address: &str,
    ) -> Result<Option<SystemTime>, StoreError> {
        self.conn
            .query_row(
                "SELECT at FROM reported WHERE notifier = ?1 AND address = ?2",
                params![notifier, address],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|at| at.map(from_millis))
            .map_err(|e| self.sql(e))
    }

    /// Records that `notifier` reported `address` at `at`.
    pub fn mark_reported(
        &mut self,
        notifier: &str,
        address: &str,
        at: SystemTime,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO reported (notifier, address, at) VALUES (?1, ?2, ?3)",
                params![notifier, address, millis(at)],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Notifications waiting, per notifier.
    pub fn outbox_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT notifier, COUNT(*) FROM outbox GROUP BY notifier")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }
}
