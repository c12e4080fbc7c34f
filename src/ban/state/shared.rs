//! The cluster's side of ban state: adopting another collector's ban, and listing the active
//! bans for an engine that lost them. The cluster stage never touches ban state itself; the
//! ban manager calls these with what it received.

use tracing::warn;

use super::{BanState, Decided, Hold, Moment, NewBan};
use crate::ban::record::StoreOp;
use crate::cluster::SharedBan;
use crate::config::{JailName, FEED_JAIL_PREFIX};
use crate::metrics::Metrics;
use crate::target::Target;

impl BanState {
    /// Another collector's ban: held here with the same end, under the same jail (a jail
    /// this collector does not have is ignored). `node` is this collector. Taken whole: a
    /// storm adopts tens of thousands, and its strings move into the record.
    pub fn adopt(&mut self, ban: SharedBan, node: &str, now: Moment) -> Option<StoreOp> {
        // The name this collector's jail already has (no new one per adopted ban).
        let Some(jail) = self.jail_named(&ban.jail) else {
            // Once per jail: a storm of such bans must not flood the log.
            if let Ok(jail) = JailName::new(&ban.jail) {
                if self.unknown_adopted.insert(jail.clone()) {
                    warn!(jail = %jail, node = %ban.node, "Another collector bans in a jail this one does not have; its bans are not held here (the collectors' jails should be the same)");
                }
            }
            return None;
        };
        // This collector's own earlier decision, read back by a follower without a state of
        // its own (a new or lost state directory): held again, unless it is; recorded as
        // decided under this name, so not announced again (it was, when it was decided).
        if ban.node == node && self.holds(jail.as_str(), ban.address) {
            return None;
        }
        // Decided here too, and published by both (usually the collector that lost the
        // attacker's claim does not publish, see `yield_to`; both do when the claim could
        // not be taken in time, the engine away, or each holds a claim of its own: two
        // senders reaching maxretry in a jail counting per origin). One of
        // the two announces it, by a rule both apply alike: the collector whose name sorts
        // first. The other's notifications wait long enough to be withdrawn
        // (`[cluster] announce_delay`). A republished ban may be one this collector decided.
        // A ban widened where it was decided to another attacked host widens it here too,
        // whoever decided it first.
        let widens = self.would_widen(&jail, ban.address, &ban.origin, &ban.more_origins);
        let doubled = !ban.republished
            && !widens
            && self
                .hold_mut(&jail, ban.address)
                .is_some_and(|h| h.decided == Decided::Here);
        if doubled {
            let (decided, yields) = if ban.node.as_str() < node {
                (self.decided(Some(&ban.node)), true)
            } else {
                (Decided::HereAndElsewhere, false)
            };
            if let Some(hold) = self.hold_mut(&jail, ban.address) {
                hold.decided = decided;
            }
            if yields {
                // Counted by the collector that yields: once per double in the cluster.
                Metrics::inc(&self.metrics.cluster.double_decisions);
                return Some(StoreOp::Yield {
                    address: ban.address,
                    jail: ban.jail,
                    to: ban.node,
                });
            }
        }
        let new = NewBan {
            jail: &jail,
            address: ban.address,
            origin: ban.origin,
            placement: ban.placement,
            failures: ban.failures,
            sample: ban.sample,
            // Lines are for notifications, and another collector's ban is announced there.
            lines: Vec::new(),
            until: Some(ban.expires),
            // A republished ban names the collector that decided it, when that was not
            // the one that published it again.
            decided_by: Some(ban.decided_by.unwrap_or(ban.node)),
            more_origins: ban.more_origins,
        };
        self.ban(new, now)
    }

    /// A ban decided here whose claim collector `to` took first, so that collector
    /// publishes and announces it (this one did not publish it): recorded as its decision
    /// here, and the notifications of it that wait here withdrawn. This overrides the rule
    /// by name in `adopt` for a ban whose other decision arrived first: that collector never
    /// receives this one's.
    pub fn yield_to(&mut self, jail: &JailName, address: Target, to: &str) -> Option<StoreOp> {
        let decided = self.decided(Some(to));
        let hold = self
            .hold_mut(jail, address)
            .filter(|h| !matches!(h.decided, Decided::Elsewhere(_)))?;
        hold.decided = decided;
        Metrics::inc(&self.metrics.cluster.double_decisions);
        Some(StoreOp::Yield {
            address,
            jail: jail.to_string(),
            to: to.to_string(),
        })
    }

    /// A ban decided here and held back for the collector holding its claim, which never
    /// published it: this collector published it after all, so it announces it (and its
    /// end). Nothing when the ban ended meanwhile or is no longer recorded as another's.
    pub fn take_over(&mut self, jail: &JailName, address: Target) -> Option<StoreOp> {
        let hold = self
            .hold_mut(jail, address)
            .filter(|h| matches!(h.decided, Decided::Elsewhere(_)))?;
        hold.decided = Decided::Here;
        Some(StoreOp::TakeOver {
            address,
            jail: jail.to_string(),
        })
    }

    /// `jail`'s hold on `address`.
    fn hold_mut(&mut self, jail: &JailName, address: Target) -> Option<&mut Hold> {
        self.holds
            .get_mut(&address)?
            .iter_mut()
            .find(|h| &h.jail == jail)
    }

    /// Every active ban, as the cluster shares it (an engine that lost its data gets them
    /// again); bans of feeds are left out (each collector fetches its own).
    pub fn shared_bans(&self, node: &str, now: Moment) -> Vec<SharedBan> {
        let mut out = Vec::new();
        for (address, holds) in &self.holds {
            for hold in holds {
                if hold.jail.as_str().starts_with(FEED_JAIL_PREFIX) {
                    continue;
                }
                let expires = hold
                    .expires
                    .map(|at| now.wall + at.saturating_duration_since(now.instant));
                out.push(SharedBan {
                    node: node.to_string(),
                    jail: hold.jail.to_string(),
                    address: *address,
                    failures: hold.reason.failures,
                    origin: hold.reason.origin.clone(),
                    started: now.wall,
                    expires,
                    sample: String::new(),
                    republished: true,
                    decided_by: match hold.decided {
                        Decided::Elsewhere(by) if self.node_name(by) != node => {
                            Some(self.node_name(by).to_string())
                        }
                        _ => None,
                    },
                    more_origins: hold.more_origins.clone(),
                    placement: self.told.get(&(*address, hold.jail.clone())).cloned(),
                });
            }
        }
        out
    }
}
