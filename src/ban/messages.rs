//! What goes in and out of the ban manager: `BanCommand` (to a firewall's worker), `Request`
//! and its answers (from control), `JailPolicy` (from config, on start and reload). Plain
//! types, so the manager, its state and its records share them without importing each other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::oneshot;

use super::placement::Place;
use crate::config::{BanTime, Increment, JailName, PlacementRule, RecidiveConfig};
use crate::target::{Ports, Target};

/// What one firewall should do, as decided by the manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanCommand {
    /// Hold `address` until `expires` (None: until removed).
    Ban {
        /// Which firewall.
        place: Place,
        /// The address.
        address: Target,
        /// Deadline; the element's kernel timeout is the time left until it.
        expires: Option<Instant>,
        /// When the message that made the offence arrived, or when a ban by hand or from
        /// another collector was decided: where the latency histogram starts.
        decided: Instant,
        /// The hold behind it: what a command backend passes on and what follows a ban.
        reason: Arc<BanReason>,
        /// The ports covered, the union of the holds there (None: every port).
        ports: Option<Ports>,
    },
    /// Remove `address` now.
    Unban {
        /// Which firewall.
        place: Place,
        /// The address.
        address: Target,
    },
}

impl BanCommand {
    /// The firewall it is for.
    pub fn place(&self) -> &Place {
        match self {
            BanCommand::Ban { place, .. } | BanCommand::Unban { place, .. } => place,
        }
    }
}

/// Why an address is banned at a place: the jail hold with the latest deadline there. Text
/// from logs (the origin name) stays data: backends pass it as one argv element at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanReason {
    /// The jail.
    pub jail: JailName,
    /// Failures that earned the ban (0 when restored from an older store or set by hand).
    pub failures: u32,
    /// The attacked host, as the failures named it (`manual` for a ban by hand).
    pub origin: String,
    /// The ban's length (None: permanent).
    pub bantime: Option<Duration>,
    /// Established connections of the address are cut once the ban is applied.
    pub kill_connections: bool,
}

/// The ban policy of one jail.
#[derive(Debug, Clone)]
pub struct JailPolicy {
    /// Jail name.
    pub name: JailName,
    /// How long its bans last (before growth).
    pub bantime: BanTime,
    /// Growing bantimes, when enabled.
    pub increment: Option<Increment>,
    /// Where its bans go.
    pub placement: Vec<PlacementRule>,
    /// Cut the address's established connections once a ban is applied.
    pub kill_connections: bool,
    /// The ports its bans cover (None: every port).
    pub ports: Option<Ports>,
}

/// A request to the manager, answered on its `reply` channel.
#[derive(Debug)]
pub enum Request {
    /// Every active ban.
    List {
        /// Answer.
        reply: oneshot::Sender<Vec<BanInfo>>,
    },
    /// The addresses held by the jails whose names start with `prefix` (the feeds' own
    /// jails), without listing every ban.
    HeldBy {
        /// The start of the jails' names.
        prefix: &'static str,
        /// Answer: (jail, address) per hold, in no order.
        reply: oneshot::Sender<Vec<(JailName, Target)>>,
    },
    /// Ban by hand, as if `jail` had reached maxretry.
    Ban {
        /// Jail whose bantime applies.
        jail: JailName,
        /// The address.
        address: Target,
        /// Where to apply it instead of the jail's placement.
        placement: Option<Vec<PlacementRule>>,
        /// The attacked host (what an `origin` placement resolves); None: `manual`.
        origin: Option<String>,
        /// Answer: whether the address was newly banned in that jail.
        reply: oneshot::Sender<Result<bool, BanError>>,
    },
    /// Lift every ban of an address; answers the jails it was banned in.
    Unban {
        /// The address.
        address: Target,
        /// Answer.
        reply: oneshot::Sender<Vec<JailName>>,
    },
    /// End one jail's hold on an address (a feed no longer listing it).
    Lift {
        /// The jail.
        jail: JailName,
        /// The address.
        address: Target,
        /// Answer: whether the jail held it.
        reply: oneshot::Sender<bool>,
    },
    /// Lift every ban; answers how many addresses were freed.
    UnbanAll {
        /// Answer.
        reply: oneshot::Sender<usize>,
    },
    /// New jail policies after a reload. Bans of jails that disappeared run out as decided.
    Reconfigure {
        /// The jails now configured.
        policies: Vec<JailPolicy>,
        /// The recidive jail, if enabled.
        recidive: Option<RecidiveConfig>,
        /// Answered once in effect.
        reply: oneshot::Sender<()>,
    },
}

/// A request the manager refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BanError {
    /// No such jail.
    #[error("unknown jail '{0}'")]
    UnknownJail(String),
}

/// One active ban, for `banned` and `status JAIL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanInfo {
    /// The address.
    pub address: Target,
    /// The jail holding it.
    pub jail: String,
    /// Seconds left; None for permanent bans.
    pub remaining_secs: Option<u64>,
    /// Where the failures came from (`local`, a peer address, or `manual`).
    pub origin: String,
    /// The firewalls the ban was sent to (`local`, target names).
    #[serde(default)]
    pub places: Vec<String>,
}
