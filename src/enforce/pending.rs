//! What a firewall worker holds between the manager's commands and its batches: the desired
//! state (every address the firewall should hold, with its deadline), from which reconciles
//! work, and the changes waiting for the next batch. Shared by the local and remote workers.
//!
//! Pure bookkeeping: no I/O, no policy. A newer command for an address replaces a pending
//! older one, so a batch holds at most one change per address.

use std::time::Instant;

use super::nft::{self, ElementChange};
use crate::ban::BanCommand;
use crate::target::{ByAttacker, Element, Ports, Target};

/// What a firewall should hold for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Its deadline (None: permanent).
    pub until: Option<Instant>,
    /// The ports covered (None: every port).
    pub ports: Option<Ports>,
}

impl Wanted {
    /// Whether it still holds at `now`.
    pub fn live(&self, now: Instant) -> bool {
        self.until.is_none_or(|d| d > now)
    }
}

/// What each banned target should be held as.
pub type Desired = ByAttacker<Target, Wanted>;

/// One target's change waiting for the next batch.
#[derive(Debug, Clone)]
pub struct Pending {
    /// None: unbanned. Some(None): held without timeout. Some(Some(t)): held until t.
    pub until: Option<Option<Instant>>,
    /// When the manager decided it (latency is measured from here).
    pub decided: Instant,
    /// Cut the address's established connections once the ban is applied.
    pub cut: bool,
    /// The elements the ban consists of now.
    pub add: Vec<Element>,
    /// Elements to take out: an unban's, or those a narrower ban no longer covers.
    pub remove: Vec<Element>,
}

/// Changes per target for the next batch.
pub type Batch = ByAttacker<Target, Pending>;

/// The elements `wanted` holds for `target`.
pub fn elements(target: Target, wanted: &Wanted) -> Vec<Element> {
    Element::of(target, wanted.ports.as_ref())
}

/// Records a command in the desired state and the next batch.
pub fn record(desired: &mut Desired, pending: &mut Batch, command: BanCommand) {
    let (target, until, decided, cut, add, before) = match command {
        BanCommand::Ban {
            address,
            expires,
            decided,
            reason,
            ports,
            ..
        } => {
            let add = Element::of(address, ports.as_ref());
            let was = desired.insert(
                address,
                Wanted {
                    until: expires,
                    ports,
                },
            );
            // What the target held before (applied, or queued in this batch).
            let before = was.map(|w| elements(address, &w)).unwrap_or_default();
            (
                address,
                Some(expires),
                decided,
                reason.kill_connections,
                add,
                before,
            )
        }
        BanCommand::Unban { address, .. } => {
            let was = desired.remove(&address);
            let remove = was.map_or_else(
                || vec![Element::all(address)],
                |wanted| elements(address, &wanted),
            );
            let mut entry = Pending {
                until: None,
                decided: crate::clock::now(),
                cut: false,
                add: Vec::new(),
                remove,
            };
            if let Some(earlier) = pending.remove(&address) {
                merge_removals(&mut entry, earlier.remove);
            }
            pending.insert(address, entry);
            return;
        }
    };
    let mut entry = Pending {
        until,
        decided,
        cut,
        remove: Vec::new(),
        add,
    };
    let earlier_removals = pending
        .remove(&target)
        .map(|p| p.remove)
        .unwrap_or_default();
    merge_removals(&mut entry, earlier_removals);
    merge_removals(&mut entry, before);
    pending.insert(target, entry);
}

/// Adds `removals` to the entry's, except what it adds again.
fn merge_removals(entry: &mut Pending, removals: Vec<Element>) {
    for element in removals {
        if !entry.add.contains(&element) && !entry.remove.contains(&element) {
            entry.remove.push(element);
        }
    }
}

/// Takes out of `pending` a batch of at most `max` element changes (or one target, whatever
/// its size), the oldest decisions first; the rest waits for the next batch. A storm queues
/// more than one transaction carries while a batch is in the kernel, and the map's order
/// would let some addresses wait batch after batch while newer ones went first.
pub fn take(pending: &mut Batch, max: usize) -> Batch {
    let size = |p: &Pending| p.add.len() + p.remove.len();
    if pending.values().map(size).sum::<usize>() <= max {
        return std::mem::take(pending);
    }
    let mut by_age: Vec<(Instant, Target, usize)> = pending
        .iter()
        .map(|(target, p)| (p.decided, *target, size(p)))
        .collect();
    by_age.sort_unstable_by_key(|(decided, _, _)| *decided);
    let mut room = max;
    let chosen: Vec<Target> = by_age
        .into_iter()
        .take_while(|(_, _, size)| {
            let fits = *size <= room || room == max;
            room = room.saturating_sub(*size);
            fits
        })
        .map(|(_, target, _)| target)
        .collect();
    chosen
        .into_iter()
        .filter_map(|target| Some((target, pending.remove(&target)?)))
        .collect()
}

/// The element changes of a batch, with timeouts as of `now` (ended bans add nothing).
pub fn changes(batch: &Batch, now: Instant) -> Vec<ElementChange> {
    let mut out = Vec::new();
    for p in batch.values() {
        out.extend(p.remove.iter().map(|e| ElementChange::Remove(*e)));
        let timeout = match p.until {
            None => continue,
            Some(None) => None,
            Some(Some(until)) => match nft::remaining(until, now) {
                Some(left) => Some(left),
                None => continue,
            },
        };
        out.extend(p.add.iter().map(|e| ElementChange::Add(*e, timeout)));
    }
    out
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
    fn a_batch_takes_what_one_transaction_carries_and_leaves_the_rest() {
        let now = crate::clock::now();
        let mut pending = Batch::default();
        for i in 0..10u8 {
            pending.insert(
                t(&format!("198.51.100.{i}")),
                Pending {
                    until: Some(None),
                    decided: now,
                    cut: false,
                    add: vec![Element::all(t(&format!("198.51.100.{i}")))],
                    remove: Vec::new(),
                },
            );
        }
        let first = take(&mut pending, 4);
        assert_eq!((first.len(), pending.len()), (4, 6));
        assert!(first.keys().all(|k| !pending.contains_key(k)));
        let rest = take(&mut pending, 100);
        assert_eq!((rest.len(), pending.len()), (6, 0));
    }

    #[test]
    fn a_batch_that_cannot_take_everything_takes_the_oldest_decisions_first() {
        let now = crate::clock::now();
        let mut pending = Batch::default();
        // Decided in the reverse of their addresses' order, a millisecond apart.
        for i in 0..50u8 {
            let target = t(&format!("198.51.100.{i}"));
            pending.insert(
                target,
                Pending {
                    until: Some(None),
                    decided: now - Duration::from_millis(u64::from(i)),
                    cut: false,
                    add: vec![Element::all(target)],
                    remove: Vec::new(),
                },
            );
        }
        let mut order = Vec::new();
        while !pending.is_empty() {
            let batch = take(&mut pending, 10);
            assert_eq!(batch.len(), 10);
            let mut ages: Vec<u8> = batch
                .keys()
                .map(|k| k.to_string().rsplit('.').next().unwrap().parse().unwrap())
                .collect();
            ages.sort_unstable_by(|a, b| b.cmp(a));
            order.push(ages);
        }
        let expected: Vec<Vec<u8>> = (0..5u8)
            .map(|b| (0..10u8).map(|i| 49 - 10 * b - i).collect())
            .collect();
        assert_eq!(order, expected, "oldest (highest address) first");
    }

    #[test]
    fn the_latest_command_per_address_and_the_desired_state_are_kept() {
        let now = crate::clock::now();
        let (mut desired, mut pending) = (Desired::default(), Batch::default());
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
            ports: None,
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
        assert_eq!(desired[&t("198.51.100.66")].until, Some(until));
        // The ban's reason asks for its connections to be cut; the unban does not.
        assert!(pending[&t("198.51.100.66")].cut);
        assert!(!pending[&t("198.51.100.67")].cut);
        let mut changes = changes(&pending, now);
        changes.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            changes,
            vec![
                ElementChange::Add(t("198.51.100.66").into(), Some(Duration::from_secs(60))),
                ElementChange::Remove(t("198.51.100.67").into()),
            ]
        );
    }

    #[test]
    fn ended_bans_are_not_sent() {
        let now = crate::clock::now();
        let mut pending = Batch::default();
        pending.insert(
            t("198.51.100.66"),
            Pending {
                until: Some(Some(now)),
                decided: now,
                cut: false,
                add: vec![t("198.51.100.66").into()],
                remove: Vec::new(),
            },
        );
        assert!(changes(&pending, now).is_empty());
    }

    #[test]
    fn a_ban_that_narrows_to_ports_takes_the_whole_address_out() {
        let now = crate::clock::now();
        let (mut desired, mut pending) = (Desired::default(), Batch::default());
        let ban = |ports: Option<Ports>| BanCommand::Ban {
            place: Place::Local,
            address: t("198.51.100.66"),
            expires: None,
            decided: now,
            reason: std::sync::Arc::new(crate::ban::BanReason {
                jail: crate::config::JailName::new("ftp").unwrap(),
                failures: 3,
                origin: "web1".into(),
                bantime: None,
                kill_connections: false,
            }),
            ports,
        };
        record(&mut desired, &mut pending, ban(None));
        pending.clear();
        let port = crate::target::Port {
            protocol: crate::target::Protocol::Tcp,
            number: 21,
        };
        record(
            &mut desired,
            &mut pending,
            ban(Some(std::sync::Arc::new([port].into()))),
        );
        let mut got = changes(&pending, now);
        got.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            got,
            vec![
                ElementChange::Add("198.51.100.66 tcp:21".parse().unwrap(), None),
                ElementChange::Remove(t("198.51.100.66").into()),
            ]
        );
        // The unban takes out what the ban holds now: the port element.
        record(
            &mut desired,
            &mut pending,
            BanCommand::Unban {
                place: Place::Local,
                address: t("198.51.100.66"),
            },
        );
        let mut got = changes(&pending, now);
        got.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            got,
            vec![
                ElementChange::Remove(t("198.51.100.66").into()),
                ElementChange::Remove("198.51.100.66 tcp:21".parse().unwrap()),
            ]
        );
    }
}
