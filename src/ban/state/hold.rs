//! A jail's hold on an address, and what the holds of an address put on each firewall: the
//! latest deadline, the reason and the ports at each place, and the commands a change to the
//! holds sends (a place is told only when its deadline moves later, it is new, or it bans
//! more ports).
//!
//! Owns the hold's shape and these derivations; which holds exist is `state`'s.

use std::sync::Arc;
use std::time::Instant;

use crate::ban::messages::{BanCommand, BanReason};
use crate::ban::placement::Place;
use crate::config::JailName;
use crate::target::{Ports, Target};

/// One jail's hold on an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hold {
    pub(super) jail: JailName,
    pub(super) expires: Option<Instant>,
    /// The firewalls this hold is applied to.
    pub(super) places: Vec<Place>,
    /// What the firewall commands carry about it.
    pub(super) reason: Arc<BanReason>,
    /// The ports it covers (None: every port).
    pub(super) ports: Option<Ports>,
    /// Whose decision it is: the collector that announces it.
    pub(super) decided: Decided,
    /// The attacked hosts besides `reason.origin` whose firewalls it was widened to (see
    /// `widen`).
    pub(super) more_origins: Vec<String>,
}

/// Which collector's decision a hold is, as far as this one knows (a ban two collectors
/// decided at once is announced by one of them: see `adopt` and `yield_to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decided {
    /// This collector's.
    Here,
    /// This collector's, and another decided it too: this one announces it.
    HereAndElsewhere,
    /// Another collector's: adopted, recorded as its decision, or yielded to it. Named, so
    /// that a republished ban still names it.
    Elsewhere(Node),
}

/// Another collector, by the number `BanState` gave its name (a cluster has a handful, and
/// a storm's holds share them: a number costs a hold nothing to copy or drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Node(pub(super) u32);

/// The latest deadline of the holds applied at `place`: None when no hold is, Some(None)
/// when one of them is permanent.
pub(super) fn deadline_at(holds: &[Hold], place: &Place) -> Option<Option<Instant>> {
    let mut covering = holds.iter().filter(|h| h.places.contains(place)).peekable();
    covering.peek()?;
    Some(
        covering
            .map(|h| h.expires)
            .try_fold(None::<Instant>, |acc, e| {
                e.map(|e| Some(acc.map_or(e, |a| a.max(e))))
            })
            .flatten(),
    )
}

/// The reason behind the command for `place`: the covering hold that lasts longest
/// (a permanent one first), and among equals the newest.
pub(super) fn reason_at(holds: &[Hold], place: &Place) -> Option<Arc<BanReason>> {
    holds
        .iter()
        .filter(|h| h.places.contains(place))
        .max_by_key(|h| (h.expires.is_none(), h.expires))
        .map(|h| h.reason.clone())
}

/// The ports the holds covering `place` ban together: every port if any of them does.
pub(super) fn ports_at(holds: &[Hold], place: &Place) -> Option<Ports> {
    let mut union = std::collections::BTreeSet::new();
    for hold in holds.iter().filter(|h| h.places.contains(place)) {
        union.extend(hold.ports.as_ref()?.iter().copied());
    }
    Some(Arc::new(union))
}

/// Each of `places`, with its deadline and ports across `holds` before a change.
pub(super) type Before = Vec<(Place, Option<Option<Instant>>, Option<Ports>)>;

pub(super) fn before_at(holds: &[Hold], places: &[Place]) -> Before {
    places
        .iter()
        .map(|p| (p.clone(), deadline_at(holds, p), ports_at(holds, p)))
        .collect()
}

/// The commands a change to `holds` sends: a place is told only when the address's
/// deadline there moves later (or it is new there) or its ban there covers more ports.
pub(super) fn changed_commands(
    holds: &[Hold],
    address: Target,
    before: Before,
    decided: Instant,
) -> Vec<BanCommand> {
    before
        .into_iter()
        .filter_map(|(place, before, ports_before)| {
            let after = deadline_at(holds, &place).flatten();
            let ports = ports_at(holds, &place);
            let extends = match before {
                None => true,
                Some(None) => false,
                Some(Some(b)) => after.is_none_or(|a| a > b),
            };
            let more_ports = before.is_some() && ports != ports_before;
            let reason = reason_at(holds, &place)?;
            (extends || more_ports).then_some(BanCommand::Ban {
                place,
                address,
                expires: after,
                decided,
                reason,
                ports,
            })
        })
        .collect()
}

/// Every place any of the holds is applied to, sorted.
pub(super) fn all_places(holds: &[Hold]) -> Vec<Place> {
    let mut places: Vec<Place> = holds.iter().flat_map(|h| h.places.clone()).collect();
    places.sort();
    places.dedup();
    places
}
