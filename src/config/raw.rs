//! The raw serde mirror of the TOML files: every key a user may write, nothing derived.
//!
//! Unknown keys are rejected here. Nothing in this file validates values beyond their TOML
//! type: turning raw values into runtime types (and naming the file and key of each error) is
//! `config::compile`'s job.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::duration::RawDuration;

/// Top-level sections of `syslog2ban.toml` merged with every `conf.d/*.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Directory of jail files, relative to the main file (default `conf.d`). Read on its
    /// own by `config_files` before the merge; declared here so it is not an unknown key.
    #[allow(dead_code)]
    pub conf_dir: Option<PathBuf>,
    /// `[[listen]]`: the sockets messages arrive on.
    #[serde(default)]
    pub listen: Vec<RawListener>,
    /// `[defaults]`: values every jail inherits.
    #[serde(default)]
    pub defaults: RawJailSettings,
    /// `[ban]`: where bans go.
    #[serde(default)]
    pub ban: RawBan,
    /// `[control]`: the control socket.
    #[serde(default)]
    pub control: RawControl,
    /// `[state]`: where state lives.
    #[serde(default)]
    pub state: RawState,
    /// `[metrics]`: the Prometheus endpoint.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// `[jail.NAME]` tables; kept as raw figment values so each jail is extracted (and its
    /// errors reported) on its own.
    #[serde(default)]
    pub jail: BTreeMap<String, figment::value::Value>,
}

/// One `[[listen]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// `"udp"`, `"tcp"` or `"unix"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `IP:PORT` for udp and tcp.
    pub address: Option<String>,
    /// Socket path for unix.
    pub path: Option<PathBuf>,
    /// Largest frame accepted, in bytes (default 65536).
    pub max_frame: Option<u64>,
    /// TCP only: most simultaneous connections (default 1024).
    pub max_connections: Option<u64>,
    /// TCP only: a connection silent this long is closed (default "5m").
    pub idle_timeout: Option<RawDuration>,
    /// unix only: file mode of the socket, as an octal string (default "0666", like /dev/log).
    pub mode: Option<String>,
}

/// Settings a jail may set and `[defaults]` may provide.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJailSettings {
    /// Failures within `findtime` that trigger a ban.
    pub maxretry: Option<i64>,
    /// The window failures are counted in.
    pub findtime: Option<RawDuration>,
    /// How long a ban lasts; -1 = permanent.
    pub bantime: Option<RawDuration>,
    /// Addresses and CIDR ranges never banned.
    pub ignoreip: Option<Vec<String>>,
}

/// One `[jail.NAME]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJail {
    /// Jails are off unless enabled.
    pub enabled: Option<bool>,
    /// Program names (syslog TAG / APP-NAME) this jail hears.
    pub programs: Option<Vec<String>>,
    /// Failure patterns with `<HOST>`.
    pub failregex: Option<Vec<String>>,
    /// Patterns that veto a failure match.
    pub ignoreregex: Option<Vec<String>>,
    /// Overrides `[defaults] maxretry`.
    pub maxretry: Option<i64>,
    /// Overrides `[defaults] findtime`.
    pub findtime: Option<RawDuration>,
    /// Overrides `[defaults] bantime`.
    pub bantime: Option<RawDuration>,
    /// Overrides `[defaults] ignoreip`.
    pub ignoreip: Option<Vec<String>>,
}

/// `[ban]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBan {
    /// `"nftables"` (default) or `"log"`.
    pub backend: Option<String>,
    /// nft table name, family inet (default `syslog2ban`).
    pub table: Option<String>,
    /// Leave the nft table (and its bans) in place when the daemon stops.
    pub keep_table: Option<bool>,
    /// Path of the `nft` binary (default `nft`, looked up in PATH).
    pub nft: Option<PathBuf>,
}

/// `[control]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// Unix socket path of the control interface.
    pub socket: Option<PathBuf>,
}

/// `[state]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// Directory for persistent state.
    pub dir: Option<PathBuf>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `IP:PORT` to serve `GET /metrics` on; unset = no endpoint.
    pub listen: Option<String>,
}
