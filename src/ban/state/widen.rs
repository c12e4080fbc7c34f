//! Widening a ban to another attacked host: a jail that bans where the attack happened
//! (`placement = ["origin"]`) holds an attacker on the firewalls of the hosts it attacked.
//! When the attacker goes on to the next server and offends there, the jail's hold on it
//! spreads to that server's firewalls instead of being dropped as "already banned", which
//! would leave that server open for the rest of the bantime.
//!
//! Owns only that change to a hold; deciding, ending and adopting are `state`'s.

use std::sync::Arc;

use tracing::debug;

use super::{before_at, changed_commands, BanState, Moment, NewBan};
use crate::ban::messages::{BanReason, JailPolicy};
use crate::ban::placement::Place;
use crate::ban::record::StoreOp;
use crate::config::{BanTime, JailName};
use crate::target::Target;

impl BanState {
    /// `new` for an address its jail holds already, resolved to `places`: nothing when the
    /// hold covers them all (failures already in flight, another origin of a host it
    /// covers). Otherwise the hold takes the new places, runs until the later of its end
    /// and a fresh bantime, and records the new host among its origins; the write is a ban
    /// from that host (its line, notifications and history row say so).
    pub(super) fn widen(
        &mut self,
        mut new: NewBan<'_>,
        places: Vec<Place>,
        policy: &JailPolicy,
        now: Moment,
    ) -> Option<StoreOp> {
        let covered = self
            .holds
            .get(&new.address)?
            .iter()
            .find(|h| &h.jail == new.jail)?
            .places
            .clone();
        let missing: Vec<Place> = places
            .into_iter()
            .filter(|p| !covered.contains(p))
            .collect();
        if missing.is_empty() {
            // Messages already in flight when the ban was decided; nothing new to do.
            debug!(jail = %new.jail, address = %new.address, "Already banned");
            return None;
        }
        let bantime = self.bantime_of(&new, policy, now)?;
        let fresh = match bantime {
            BanTime::Permanent => None,
            BanTime::For(d) => Some(now.instant + d),
        };
        let holds = self.holds.get_mut(&new.address)?;
        let mut all = covered;
        all.extend(missing);
        all.sort();
        all.dedup();
        let before = before_at(holds, &all);
        let hold = holds.iter_mut().find(|h| &h.jail == new.jail)?;
        let expires = match (hold.expires, fresh) {
            (None, _) | (_, None) => None,
            (Some(held), Some(fresh)) => Some(held.max(fresh)),
        };
        if expires != hold.expires {
            if let Some(old) = hold.expires {
                self.deadlines.remove(&(old, new.address, new.jail.clone()));
            }
            if let Some(deadline) = expires {
                self.deadlines
                    .insert((deadline, new.address, new.jail.clone()));
            }
            hold.expires = expires;
        }
        hold.places = all;
        let previous = hold.reason.origin.clone();
        let mut origins = std::mem::take(&mut hold.more_origins);
        origins.push(previous);
        origins.extend(new.more_origins.iter().cloned());
        origins.retain(|o| *o != new.origin);
        origins.sort();
        origins.dedup();
        hold.more_origins = origins.clone();
        let left = expires.map(|at| at.saturating_duration_since(now.instant));
        hold.reason = Arc::new(BanReason {
            jail: new.jail.clone(),
            failures: new.failures,
            origin: new.origin.clone(),
            bantime: left,
            kill_connections: policy.kill_connections,
        });
        let _ = self.banned_now(new.jail, new.address, now);
        debug!(jail = %new.jail, address = %new.address, origin = %new.origin, "Ban widened to another attacked host");
        let commands =
            changed_commands(&self.holds[&new.address], new.address, before, now.instant);
        // A hold told where to go (by this ban or an earlier one) keeps the jail's placement
        // for the hosts an offence adds and every rule it was told: restored and
        // republished as all of them.
        let key = (new.address, new.jail.clone());
        let told = match (self.told.remove(&key), new.placement.take()) {
            (None, None) => None,
            (earlier, now_told) => {
                let mut rules = policy.placement.clone();
                for rule in earlier.into_iter().chain(now_told).flatten() {
                    if !rules.contains(&rule) {
                        rules.push(rule);
                    }
                }
                Some(rules)
            }
        };
        if let Some(rules) = &told {
            self.told.insert(key, rules.clone());
        }
        let record = NewBan {
            more_origins: origins,
            placement: told,
            ..new
        };
        Some(StoreOp::Ban(
            record.into_record(left.map(|d| now.wall + d), now.wall),
            commands,
        ))
    }

    /// Whether a ban from `origin` (and `more`) in `jail` would widen the hold this
    /// collector has on `address` there (it holds one, and those hosts' places are not all
    /// covered by it).
    pub(super) fn would_widen(
        &self,
        jail: &JailName,
        address: Target,
        origin: &str,
        more: &[String],
    ) -> bool {
        let Some(policy) = self.policy(jail) else {
            return false;
        };
        let Some(hold) = self
            .holds
            .get(&address)
            .and_then(|holds| holds.iter().find(|h| &h.jail == jail))
        else {
            return false;
        };
        self.resolve(&policy.placement, origin, more)
            .iter()
            .any(|p| !hold.places.contains(p))
    }
}
