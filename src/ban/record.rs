//! What the ban manager hands the store, and the `Banned` / `Unbanned` lines written once a
//! write is durable.
//!
//! Owns the record types and their log report; the SQL is `store`'s, the decisions `state`'s.

use std::fmt;
use std::time::{Duration, SystemTime};

use tracing::info;

use super::messages::BanCommand;
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
    /// Record a new ban (one row: the active ban, its history once over), with the firewall
    /// commands it sent (none when the firewalls already hold the address at least as long).
    Ban(BanRecord, Vec<BanCommand>),
    /// A ban ended (expired, unbanned): its row ends (nothing to write when it ran out).
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
    /// The rows of bans that are over and began before `before` (older than `dbpurgeage`):
    /// deleted, as at start-up, so that a daemon running for months keeps only that much.
    Purge {
        /// The earliest start kept.
        before: SystemTime,
    },
}

impl StoreOp {
    /// The firewall commands that go with this write.
    pub fn commands(&self) -> &[BanCommand] {
        match self {
            StoreOp::Ban(_, commands) | StoreOp::End { commands, .. } => commands,
            StoreOp::Yield { .. } | StoreOp::TakeOver { .. } | StoreOp::Purge { .. } => &[],
        }
    }
}

/// The one log line per ban and unban, written once the change is durable.
pub(super) fn report(op: &StoreOp) {
    match op {
        StoreOp::Ban(r, commands) => {
            let target = Places(commands);
            let bantime = Lasting(r.expires.and_then(|e| e.duration_since(r.started).ok()));
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
            let target = Places(commands);
            info!(%jail, %address, reason = "unban", %target, "Unbanned")
        }
        StoreOp::Yield { address, jail, to } => {
            // One per double decision: a storm's thousands stay out of the info log.
            tracing::debug!(%jail, %address, announced_by = %to, "Banned here and by another collector; that one announces it");
        }
        StoreOp::TakeOver { address, jail } => {
            info!(%jail, %address, "Announced here: the collector holding its claim did not publish it in time")
        }
        StoreOp::End { .. } | StoreOp::Purge { .. } => {}
    }
}

/// The firewalls a write's commands go to (`local,web3`), or `unchanged` when another ban
/// already holds the address as long everywhere. Written into the line as it is formatted:
/// a storm logs tens of thousands, and a string per line cost its allocations.
struct Places<'a>(&'a [BanCommand]);

impl fmt::Display for Places<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("unchanged");
        }
        for (i, command) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            fmt::Display::fmt(command.place(), f)?;
        }
        Ok(())
    }
}

/// A ban's length in its line: as a bantime is written, or `permanent`.
struct Lasting(Option<Duration>);

impl fmt::Display for Lasting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => fmt::Display::fmt(&BanTime::For(d), f),
            None => f.write_str("permanent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::placement::Place;
    use crate::config::TargetName;

    fn ban(place: Place) -> BanCommand {
        BanCommand::Unban {
            place,
            address: "198.51.100.7".parse().unwrap(),
        }
    }

    #[test]
    fn a_line_names_each_firewall_or_says_unchanged() {
        assert_eq!(Places(&[]).to_string(), "unchanged");
        assert_eq!(Places(&[ban(Place::Local)]).to_string(), "local");
        let web3 = Place::Remote(TargetName::new("web3").unwrap());
        assert_eq!(
            Places(&[ban(Place::Local), ban(web3)]).to_string(),
            "local,web3"
        );
    }

    #[test]
    fn a_length_is_written_as_a_bantime_or_permanent() {
        assert_eq!(Lasting(None).to_string(), "permanent");
        assert_eq!(
            Lasting(Some(Duration::from_secs(600))).to_string(),
            BanTime::For(Duration::from_secs(600)).to_string()
        );
    }
}
