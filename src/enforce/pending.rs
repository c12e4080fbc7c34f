//! What a firewall worker holds between the manager's commands and its batches: the desired
//! state (every address the firewall should hold, with its deadline), from which reconciles
//! work, and the changes waiting for the next batch. Shared by the local and remote workers.
//!
//! Pure bookkeeping: no I/O, no policy. A newer command for an address replaces a pending
//! older one, so a batch holds at most one change per address.

use std::collections::HashMap;
use std::time::Instant;

use super::nft::{self, ElementChange};
use crate::ban::BanCommand;
use crate::target::Target;

/// The deadline of each address a firewall should hold (None: permanent).
pub type Desired = HashMap<Target, Option<Instant>>;

/// One change waiting for the next batch.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    /// None: remove. Some(None): add without timeout. Some(Some(t)): add until t.
    pub until: Option<Option<Instant>>,
    /// When the manager decided it (latency is measured from here).
    pub decided: Instant,
    /// Cut the address's established connections once the ban is applied.
    pub cut: bool,
}

/// Changes per address for the next batch.
pub type Batch = HashMap<Target, Pending>;

/// Records a command in the desired state and the next batch.
pub fn record(desired: &mut Desired, pending: &mut Batch, command: BanCommand) {
    match command {
        BanCommand::Ban {
            address,
            expires,
            decided,
            reason,
            ..
        } => {
            desired.insert(address, expires);
            pending.insert(
                address,
                Pending {
                    until: Some(expires),
                    decided,
                    cut: reason.kill_connections,
                },
            );
        }
        BanCommand::Unban { address, .. } => {
            desired.remove(&address);
            pending.insert(
                address,
                Pending {
                    until: None,
                    decided: crate::clock::now(),
                    cut: false,
                },
            );
        }
    }
}

/// The element changes of a batch, with timeouts as of `now` (ended bans are skipped).
pub fn changes(batch: &Batch, now: Instant) -> Vec<ElementChange> {
    batch
        .iter()
        .filter_map(|(address, p)| match p.until {
            None => Some(ElementChange::Remove(*address)),
            Some(None) => Some(ElementChange::Add(*address, None)),
            Some(Some(until)) => {
                nft::remaining(until, now).map(|left| ElementChange::Add(*address, Some(left)))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::Place;
    use std::time::Duration;

    fn t(s: &str) -> Target {
        s.parse().unwrap()
    }

    #[test]
    fn the_latest_command_per_address_and_the_desired_state_are_kept() {
        let now = crate::clock::now();
        let (mut desired, mut pending) = (Desired::new(), Batch::new());
        let until = now + Duration::from_secs(60);
        let ban = |address: &str, expires| BanCommand::Ban {
            place: Place::Local,
            address: t(address),
            expires,
            decided: now,
            reason: std::sync::Arc::new(crate::ban::BanReason {
                jail: crate::config::JailName::new("sshd").unwrap(),
                failures: 3,
                origin: "web1".into(),
                bantime: None,
                kill_connections: true,
            }),
        };
        record(
            &mut desired,
            &mut pending,
            ban("198.51.100.66", Some(until)),
        );
        record(&mut desired, &mut pending, ban("198.51.100.67", None));
        record(
            &mut desired,
            &mut pending,
            BanCommand::Unban {
                place: Place::Local,
                address: t("198.51.100.67"),
            },
        );
        assert_eq!(desired.len(), 1);
        assert_eq!(desired[&t("198.51.100.66")], Some(until));
        // The ban's reason asks for its connections to be cut; the unban does not.
        assert!(pending[&t("198.51.100.66")].cut);
        assert!(!pending[&t("198.51.100.67")].cut);
        let mut changes = changes(&pending, now);
        changes.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            changes,
            vec![
                ElementChange::Add(t("198.51.100.66"), Some(Duration::from_secs(60))),
                ElementChange::Remove(t("198.51.100.67")),
            ]
        );
    }

    #[test]
    fn ended_bans_are_not_sent() {
        let now = crate::clock::now();
        let mut pending = Batch::new();
        pending.insert(
            t("198.51.100.66"),
            Pending {
                until: Some(Some(now)),
                decided: now,
                cut: false,
            },
        );
        assert!(changes(&pending, now).is_empty());
    }
}
