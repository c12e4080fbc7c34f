//! The control protocol: one JSON `Request` line in, one JSON `Response` line out. These are
//! also the `--json` outputs of the CLI, so their field names are a contract.

use serde::{Deserialize, Serialize};

use crate::ban::BanInfo;

/// What the CLI asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    /// Listeners, jails, targets.
    Status,
    /// One jail in detail.
    JailStatus {
        /// Jail name.
        jail: String,
    },
    /// Every active ban.
    Banned,
    /// Ban by hand in a jail.
    Ban {
        /// Jail name.
        jail: String,
        /// Address as typed.
        address: String,
        /// Ban even an address in the jail's `ignoreip`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
        /// Where to apply it, as placement rules (`local`, `origin`, `all`, `group:NAME`,
        /// `target:NAME`); empty: the jail's placement.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        place: Vec<String>,
        /// The attacked host, for an `origin` placement.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<String>,
    },
    /// Lift every ban of an address.
    Unban {
        /// Address as typed.
        address: String,
    },
    /// Lift every ban.
    UnbanAll,
    /// One setting of a jail: maxretry, findtime or bantime.
    Get {
        /// Jail name.
        jail: String,
        /// The key.
        key: String,
    },
    /// Change one setting of a jail now (until the next reload or restart, unless persisted).
    Set {
        /// Jail name.
        jail: String,
        /// The key.
        key: String,
        /// The value, as the config file would have it (`3`, `"10m"`, `-1`).
        value: String,
        /// Also write it to conf.d/zz-set.toml, so reloads and restarts keep it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        persist: bool,
    },
    /// Re-read the configuration.
    Reload,
    /// Where each active ban (or those of one address) is enforced, and where not.
    Verify {
        /// Only this address (as typed); all bans when None.
        address: Option<String>,
    },
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Answer to `Status`.
    Status(StatusReport),
    /// Answer to `JailStatus`.
    Jail(JailReport),
    /// Answer to `Banned`.
    Banned {
        /// Active bans.
        bans: Vec<BanInfo>,
    },
    /// Answer to `Verify`.
    Verified {
        /// One entry per active ban checked.
        bans: Vec<VerifyReport>,
    },
    /// A jail's setting (the answer to `get` and `set`).
    Setting {
        /// Jail name.
        jail: String,
        /// The key.
        key: String,
        /// Its value now, in the config's syntax.
        value: String,
    },
    /// A command succeeded.
    Done {
        /// What was done.
        message: String,
    },
    /// A command failed; nothing changed.
    Error {
        /// Why.
        message: String,
    },
}

/// The daemon at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Daemon version.
    pub version: String,
    /// Listeners and their traffic.
    pub listeners: Vec<ListenerReport>,
    /// Enabled jails.
    pub jails: Vec<JailReport>,
    /// Where bans go.
    pub targets: Vec<TargetReport>,
    /// The ban store's health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreReport>,
    /// Stages busy with one piece of work for too long (the watchdog is not fed meanwhile).
    #[serde(default)]
    pub stuck: Vec<StuckStage>,
    /// The notifiers and their deliveries.
    #[serde(default)]
    pub notifiers: Vec<NotifierReport>,
    /// The blocklist feeds.
    #[serde(default)]
    pub feeds: Vec<FeedReport>,
    /// The cluster, when configured (boxed: most daemons have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Box<ClusterReport>>,
}

/// This collector's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterReport {
    /// This collector's name.
    pub node: String,
    /// The engine's sentinels and servers, in the order they are tried (without passwords).
    pub engine: Vec<String>,
    /// The engine is unreachable: this collector counts and bans alone.
    pub degraded: bool,
    /// Seconds spent degraded so far.
    pub degraded_secs: u64,
    /// Failures waiting for the engine.
    pub buffered_failures: u64,
    /// Bans waiting to be published.
    pub buffered_bans: u64,
    /// Failures or bans dropped from a full buffer.
    pub buffer_dropped: u64,
    /// Bans the shared count decided here.
    pub shared_offences: u64,
    /// Bans published.
    pub published: u64,
    /// Bans of other collectors adopted.
    pub adopted: u64,
    /// Ban stream entries that could not be read (another version's), skipped.
    #[serde(default)]
    pub unreadable_entries: u64,
    /// The last engine error, while failing.
    pub last_error: Option<String>,
    /// Another running collector uses this collector's node name.
    #[serde(default)]
    pub name_clash: bool,
    /// Every collector, as of the last heartbeat.
    pub peers: Vec<crate::metrics::Peer>,
}

/// One blocklist feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedReport {
    /// Its name.
    pub name: String,
    /// Entries of the list applied.
    pub entries: u64,
    /// Fetches tried.
    pub fetches: u64,
    /// Fetches that failed or brought nothing usable.
    pub errors: u64,
    /// Unix time of the last fetch that worked.
    pub last_ok_unix: Option<u64>,
    /// Why the last fetch failed, while failing (the previous list is kept).
    pub last_error: Option<String>,
}

/// One notifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifierReport {
    /// Its name.
    pub name: String,
    /// Notifications delivered.
    pub sent: u64,
    /// Failed delivery attempts (each is retried).
    pub failed: u64,
    /// Not sent on purpose (already reported this period).
    #[serde(default)]
    pub dropped: u64,
    /// Notifications waiting.
    pub queued: u64,
    /// Why the last attempt failed, while failing.
    pub last_error: Option<String>,
}

/// Where one ban is enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The banned address or prefix.
    pub address: String,
    /// The jail holding it.
    pub jail: String,
    /// Each firewall the ban was sent to.
    pub places: Vec<PlaceCheck>,
}

/// One firewall's answer for one ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceCheck {
    /// `local` or a target name.
    pub place: String,
    /// true: seen in the kernel's set now; false: missing; None: not checked live (a remote
    /// target, whose state is its last reconcile, or a dry run).
    pub enforced: Option<bool>,
    /// What was found.
    pub detail: String,
}

/// The ban store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreReport {
    /// The last commit failed: bans are enforced, their writes kept for retry.
    pub failing: bool,
    /// Writes waiting for a commit that works.
    pub pending_writes: u64,
    /// Writes dropped because the retry backlog was full.
    pub lost_writes: u64,
    /// Why the last commit failed.
    pub last_error: Option<String>,
}

/// A stage stuck on one piece of work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StuckStage {
    /// The stage.
    pub stage: String,
    /// Seconds on the current piece of work.
    pub busy_secs: u64,
}

/// One listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerReport {
    /// `tcp:0.0.0.0:514` style label.
    pub listener: String,
    /// Frames received.
    pub messages: u64,
    /// Oversize frames skipped.
    pub oversize: u64,
    /// Connections refused at max_connections or max_connections_per_peer.
    pub refused_connections: u64,
    /// Datagrams and connections from senders outside the allow-list.
    #[serde(default)]
    pub refused_senders: u64,
    /// The address it is bound to (the port the kernel chose for a configured `:0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<String>,
}

/// One jail's counts (fail2ban-client status JAIL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailReport {
    /// Jail name.
    pub jail: String,
    /// Program names it hears.
    pub programs: Vec<String>,
    /// Addresses with failures in the window now.
    pub currently_failed: u64,
    /// Failures counted since start.
    pub total_failed: u64,
    /// Addresses banned by this jail now.
    pub currently_banned: u64,
    /// Bans since start.
    pub total_banned: u64,
    /// The banned addresses.
    pub banned: Vec<String>,
}

/// One enforcement target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetReport {
    /// `local`.
    pub target: String,
    /// `nftables` or `log`.
    pub backend: String,
    /// nft table, when nftables.
    pub table: Option<String>,
    /// Batches applied.
    pub batches: u64,
    /// Of those, the batches sent straight to the kernel over netlink (local single-address
    /// batches); the rest ran through nft.
    #[serde(default)]
    pub netlink_batches: u64,
    /// Batches failed.
    pub errors: u64,
    /// Remote targets only: the SSH side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteReport>,
    /// The local table: whether the kernel holds what `banned` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested: Option<AttestReport>,
}

/// The local table as its last reconcile found and left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestReport {
    /// Addresses the table should hold.
    pub desired: u64,
    /// Addresses it held after the reconcile.
    pub present: u64,
    /// Reconciles completed.
    pub reconciles: u64,
    /// Elements added or removed and table parts re-created, in all.
    pub fixes: u64,
    /// Unix time of the last completed reconcile.
    pub last_reconcile_unix: Option<u64>,
    /// The last error, if the last batch or reconcile failed.
    pub last_error: Option<String>,
    /// A storm's batches applied with the drift monitor away.
    #[serde(default)]
    pub unheard_batches: u64,
    /// Of those, the ones after which another transaction may have gone unheard (each
    /// cost a reconcile).
    #[serde(default)]
    pub unheard_unsound: u64,
}

/// The state of a remote target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteReport {
    /// `user@address:port`.
    pub host: String,
    /// The SSH session is up.
    pub connected: bool,
    /// Changes waiting to be applied.
    pub queued: u64,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Unix time of the last completed reconcile.
    pub last_reconcile_unix: Option<u64>,
    /// Reconciles completed.
    pub reconciles: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_is_stable() {
        let r = Request::Ban {
            jail: "sshd".into(),
            address: "203.0.113.9".into(),
            force: false,
            place: Vec::new(),
            origin: None,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"command":"ban","jail":"sshd","address":"203.0.113.9"}"#
        );
        let done = Response::Done {
            message: "ok".into(),
        };
        assert_eq!(
            serde_json::to_string(&done).unwrap(),
            r#"{"result":"done","message":"ok"}"#
        );
        let back: Response = serde_json::from_str(r#"{"result":"error","message":"x"}"#).unwrap();
        assert_eq!(
            back,
            Response::Error {
                message: "x".into()
            }
        );
    }
}
