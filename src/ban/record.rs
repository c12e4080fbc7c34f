//! What the ban manager hands the store, and the `Banned` / `Unbanned` lines written once a
//! write is durable.
//!
//! Owns the record types and their log report; the SQL is `store`'s, the decisions `state`'s.

use std::time::SystemTime;

use tracing::info;

use super::messages::BanCommand;
use super::placement::Place;
use crate::config::BanTime;
use crate::target::Target;

/// One ban as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRecord {
    /// The banned address.
    pub address: Target,
    /// The jail that banned it.
    pub jail: String,
    /// Where the failures came from (for a ban widened to another attacked host, that
    /// host: see `more_origins`).
    pub origin: String,
    /// The other attacked hosts the ban covers: a jail that bans where the attack happened
    /// (`placement = ["origin"]`) widens its ban to each host the banned attacker goes on to
    /// attack. Their places are resolved again on restore, as `origin`'s are.
    pub more_origins: Vec<String>,
    /// Where a manual ban was told to go (`ban --place`), instead of the jail's placement;
    /// restored with it.
    pub placement: Option<Vec<crate::config::PlacementRule>>,
    /// When the ban started.
    pub started: SystemTime,
    /// When it ends; None = permanent.
    pub expires: Option<SystemTime>,
    /// Failures that led to it (0 for manual bans).
    pub failures: u32,
    /// The message that crossed the threshold.
    pub sample: String,
    /// The collector that decided it, when another one did (None: this one). Only the
    /// deciding collector announces a ban and its end: a fleet's notifiers hear it once.
    pub decided_by: Option<String>,
    /// The matched lines that led to the ban, `sample` last, for notifications (not stored:
    /// a restored ban is not announced again).
    pub lines: Vec<String>,
}

/// A write for the store thread.
#[derive(Debug)]
pub enum StoreOp {
    /// Record a new ban (active + history), with the firewall commands it sent (none when the
    /// firewalls already hold the address at least as long).
    Ban(BanRecord, Vec<BanCommand>),
    /// A ban ended (expired, unbanned): remove it from the active table.
    End {
        /// Address.
        address: Target,
        /// Jail.
        jail: String,
        /// The firewall commands it sent (none: the kernel times it out).
        commands: Vec<BanCommand>,
    },
    /// A ban decided here was decided by collector `to` too, which announces it (the two
    /// agree by name, see `BanState::adopt`): it stays, recorded as `to`'s, and its
    /// notifications not yet sent are withdrawn.
    Yield {
        /// Address.
        address: Target,
        /// Jail.
        jail: String,
        /// The collector that announces it.
        to: String,
    },
    /// A ban decided here and recorded as the claim holder's, which never published it:
    /// this collector published it and announces it (and its end) after all.
    TakeOver {
        /// Address.
        address: Target,
        /// Jail.
        jail: String,
    },
}

impl StoreOp {
    /// The firewall commands that go with this write.
    pub fn commands(&self) -> &[BanCommand] {
        match self {
            StoreOp::Ban(_, commands) | StoreOp::End { commands, .. } => commands,
            StoreOp::Yield { .. } | StoreOp::TakeOver { .. } => &[],
        }
    }
}

/// The one log line per ban and unban, written once the change is durable.
pub(super) fn report(op: &StoreOp) {
    match op {
        StoreOp::Ban(r, commands) => {
            let target = places(commands);
            let bantime = match r.expires.and_then(|e| e.duration_since(r.started).ok()) {
                Some(d) => BanTime::For(d).to_string(),
                None => "permanent".into(),
            };
            // Another collector's decision (adopted) says whose it is.
            match &r.decided_by {
                None => {
                    info!(jail = %r.jail, address = %r.address, origin = %r.origin, failures = r.failures, %bantime, %target, "Banned")
                }
                Some(node) => {
                    info!(jail = %r.jail, address = %r.address, origin = %r.origin, failures = r.failures, %bantime, %target, decided_by = %node, "Banned")
                }
            }
        }
        StoreOp::End {
            address,
            jail,
            commands,
        } if !commands.is_empty() => {
            let target = places(commands);
            info!(%jail, %address, reason = "unban", %target, "Unbanned")
        }
        StoreOp::Yield { address, jail, to } => {
            // One per double decision: a storm's thousands stay out of the info log.
            tracing::debug!(%jail, %address, announced_by = %to, "Banned here and by another collector; that one announces it");
        }
        StoreOp::TakeOver { address, jail } => {
            info!(%jail, %address, "Announced here: the collector holding its claim did not publish it in time")
        }
        StoreOp::End { .. } => {}
    }
}

/// The firewalls a write's commands go to (`local,web3`), or `unchanged` when another ban
/// already holds the address as long everywhere.
fn places(commands: &[BanCommand]) -> String {
    if commands.is_empty() {
        return "unchanged".into();
    }
    let places: Vec<Place> = commands
        .iter()
        .map(|c| match c {
            BanCommand::Ban { place, .. } | BanCommand::Unban { place, .. } => place.clone(),
        })
        .collect();
    super::placement::join(&places)
}
