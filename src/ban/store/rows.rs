//! Where each active ban's row is: (address, jail) → rowid, kept in memory by the store.
//!
//! The `bans` table has no key index on disk. A storm's bans arrive in an order that is random
//! by address, and a b-tree keyed by address dirtied one page per ban in every commit (8.9 µs
//! of store CPU per ban at 40 bans per commit, 3.2 µs without it). Rows are appended instead,
//! and this map finds them again for a renewal or an end. Owns the map only; the SQL is the
//! store's.

use crate::target::{ByAttacker, Target};

/// A ban's identity in the map: its address and its jail (as a number, not a string per row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Key {
    address: Target,
    jail: u32,
}

/// The rowid of every active ban's row.
#[derive(Debug, Default)]
pub(super) struct RowIndex {
    /// Jail names by number: a few dozen at most, found faster by comparing than by hashing.
    jails: Vec<String>,
    rows: ByAttacker<Key, i64>,
}

impl RowIndex {
    /// The key of `address` in `jail`.
    pub(super) fn key(&mut self, address: Target, jail: &str) -> Key {
        let number = match self.jails.iter().position(|known| known == jail) {
            Some(number) => number,
            None => {
                self.jails.push(jail.to_string());
                self.jails.len() - 1
            }
        };
        Key {
            address,
            jail: number as u32,
        }
    }

    /// Records a row found in the table; returns the rowid it replaces as the key's row (a
    /// duplicate the caller deletes), if any. Rows are found in rowid order: the later wins.
    pub(super) fn found(&mut self, key: Key, rowid: i64) -> Option<i64> {
        self.rows.insert(key, rowid)
    }

    /// Takes the changes of a committed transaction.
    pub(super) fn apply(&mut self, changes: Changes) {
        for (key, row) in changes.rows {
            match row {
                Some(rowid) => self.rows.insert(key, rowid),
                None => self.rows.remove(&key),
            };
        }
    }

    /// Active bans in the map.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }
}

/// A transaction's row changes, seen before the map's and applied to it only once the
/// transaction commits (a failed commit is retried from the same map).
#[derive(Debug, Default)]
pub(super) struct Changes {
    rows: ByAttacker<Key, Option<i64>>,
}

impl Changes {
    /// The row of `key` as the transaction sees it.
    pub(super) fn row(&self, index: &RowIndex, key: Key) -> Option<i64> {
        match self.rows.get(&key) {
            Some(row) => *row,
            None => index.rows.get(&key).copied(),
        }
    }

    /// `key`'s row is now `row` (None: deleted).
    pub(super) fn set(&mut self, key: Key, row: Option<i64>) {
        self.rows.insert(key, row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        s.parse().unwrap()
    }

    #[test]
    fn a_transaction_sees_its_own_changes_and_the_map_only_after_commit() {
        let mut index = RowIndex::default();
        let sshd = index.key(t("198.51.100.1"), "sshd");
        let postfix = index.key(t("198.51.100.1"), "postfix");
        assert_ne!(sshd, postfix, "one address, two jails, two rows");
        assert_eq!(sshd, index.key(t("198.51.100.1"), "sshd"));
        assert_eq!(index.found(sshd, 1), None);
        assert_eq!(index.found(sshd, 4), Some(1), "a later duplicate wins");

        let mut changes = Changes::default();
        assert_eq!(changes.row(&index, sshd), Some(4));
        changes.set(sshd, None);
        changes.set(postfix, Some(7));
        assert_eq!(changes.row(&index, sshd), None);
        assert_eq!(changes.row(&index, postfix), Some(7));
        assert_eq!(
            Changes::default().row(&index, postfix),
            None,
            "not yet committed"
        );
        index.apply(changes);
        assert_eq!(Changes::default().row(&index, sshd), None);
        assert_eq!(Changes::default().row(&index, postfix), Some(7));
        assert_eq!(index.len(), 1);
    }
}
