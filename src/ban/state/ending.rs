//! Ending bans: by hand (`unban`, `unban_all`), at their deadline (`expire`: the kernel times
//! the element out itself, only the store is told), or one jail's hold only (`lift`, a feed
//! no longer listing an address), each with the store write and the firewall commands still
//! needed (where another jail's hold covers the place, the narrower ban it makes).

use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{debug, info};

use super::{all_places, deadline_at, ports_at, reason_at, BanState};
use crate::ban::messages::BanCommand;
use crate::ban::placement::Place;
use crate::ban::record::StoreOp;
use crate::config::JailName;
use crate::metrics::Metrics;
use crate::target::Ports;
use crate::target::Target;

impl BanState {
    /// Lifts every ban of `address`: the jails that held it, and the writes.
    pub fn unban(&mut self, address: Target) -> (Vec<JailName>, Vec<StoreOp>) {
        let Some(holds) = self.holds.remove(&address) else {
            return (Vec::new(), Vec::new());
        };
        let mut jails = Vec::new();
        let mut ops = Vec::new();
        let last = holds.len() - 1;
        let mut places = Some(all_places(&holds));
        for (i, hold) in holds.into_iter().enumerate() {
            if let Some(deadline) = hold.expires {
                self.deadlines
                    .remove(&(deadline, address, hold.jail.clone()));
            }
            self.released(&hold.jail, address);
            self.told.remove(&(address, hold.jail.clone()));
            debug!(jail = %hold.jail, %address, "Unban decided");
            // One removal per address and firewall, after its last row is gone.
            let commands = match (i == last).then(|| places.take()).flatten() {
                Some(places) => places
                    .into_iter()
                    .map(|place| BanCommand::Unban { place, address })
                    .collect(),
                None => Vec::new(),
            };
            ops.push(StoreOp::End {
                address,
                jail: hold.jail.to_string(),
                commands,
            });
            jails.push(hold.jail);
        }
        self.update_gauge();
        (jails, ops)
    }

    /// Lifts every ban: the number of addresses freed, and the writes.
    pub fn unban_all(&mut self) -> (usize, Vec<StoreOp>) {
        let addresses: Vec<Target> = self.holds.keys().copied().collect();
        let mut ops = Vec::new();
        for address in &addresses {
            ops.extend(self.unban(*address).1);
        }
        (addresses.len(), ops)
    }

    fn released(&self, jail: &JailName, address: Target) {
        self.feedback.lifted(jail, address.addr());
        let m = self.metrics.jail(jail.as_str());
        Metrics::inc(&m.unbans);
        let _ = m
            .banned
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }

    /// Ends every hold whose deadline has passed. The kernel expires the set element on its
    /// own (it was given the same timeout), so only the store is told.
    pub fn expire(&mut self, now: Instant) -> Vec<StoreOp> {
        let mut ops = Vec::new();
        while let Some((deadline, address, jail)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            ops.extend(self.end_hold(address, &jail, now, "expired"));
        }
        self.update_gauge();
        ops
    }

    /// Ends `jail`'s hold on `address` only (a feed no longer listing it); other jails'
    /// holds stay.
    pub fn lift(&mut self, address: Target, jail: &JailName, now: Instant) -> Vec<StoreOp> {
        let deadline = self
            .holds
            .get(&address)
            .and_then(|holds| holds.iter().find(|h| &h.jail == jail))
            .map(|h| h.expires);
        let Some(deadline) = deadline else {
            return Vec::new();
        };
        if let Some(deadline) = deadline {
            self.deadlines.remove(&(deadline, address, jail.clone()));
        }
        let ops = self
            .end_hold(address, jail, now, "lifted")
            .into_iter()
            .collect();
        self.update_gauge();
        ops
    }

    /// Removes one hold; the firewall commands it takes: an unban where no other hold covers
    /// the place, or the narrower ban (fewer ports, an earlier end) the other holds make.
    fn end_hold(
        &mut self,
        address: Target,
        jail: &JailName,
        now: Instant,
        reason: &'static str,
    ) -> Option<StoreOp> {
        let holds = self.holds.get_mut(&address)?;
        let mut ended: Vec<(Place, Option<Ports>, Option<Option<Instant>>)> = holds
            .iter()
            .filter(|h| &h.jail == jail)
            .flat_map(|h| h.places.clone())
            .map(|place| {
                let ports = ports_at(holds, &place);
                let deadline = deadline_at(holds, &place);
                (place, ports, deadline)
            })
            .collect();
        ended.dedup();
        holds.retain(|h| &h.jail != jail);
        // Kernel timeouts end most elements by themselves; the unban also ends them where
        // the firewall has no timeout (hosts.deny, a command) or could not hold it. Where
        // other holds remain but cover less, the place gets the narrower ban.
        let still = all_places(holds);
        let commands: Vec<BanCommand> = ended
            .into_iter()
            .filter_map(|(place, ports_before, deadline_before)| {
                if !still.contains(&place) {
                    return Some(BanCommand::Unban { place, address });
                }
                let ports = ports_at(holds, &place);
                let deadline = deadline_at(holds, &place);
                if ports == ports_before && deadline == deadline_before {
                    return None;
                }
                Some(BanCommand::Ban {
                    expires: deadline.flatten(),
                    reason: reason_at(holds, &place)?,
                    ports,
                    place,
                    address,
                    decided: now,
                })
            })
            .collect();
        let empty = holds.is_empty();
        self.released(jail, address);
        self.told.remove(&(address, jail.clone()));
        info!(%jail, %address, reason, target = %"local", "Unbanned");
        if empty {
            self.holds.remove(&address);
        }
        Some(StoreOp::End {
            address,
            jail: jail.to_string(),
            commands,
        })
    }
}
