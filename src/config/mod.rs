//! Configuration: loads `syslog2ban.toml` and `conf.d/*.toml` (merged in name order, later
//! files overriding single keys), applies `SYSLOG2BAN_` environment overrides, and compiles the
//! raw values into runtime types.
//!
//! Owns the raw → compiled conversion and its error reporting (file, key and, where it can be
//! found, line). It must not open sockets or run anything: it only reads files. Here: the
//! runtime types and loading; `raw` mirrors the TOML, `compile/` turns it into these types
//! (one file per concern), `error` says what is wrong where, `fleet` holds targets and
//! placement.

// Reads network or config input: a byte index inside a UTF-8 character would panic.
#![deny(clippy::string_slice)]

mod compile;
mod duration;
mod error;
mod fleet;
mod raw;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use ipnet::IpNet;

use compile::Compiler;
pub use duration::{ParsedDuration, RawDuration};
pub use error::{ConfigError, ConfigErrors};
pub use fleet::{default_placement, OriginPattern, PlacementRule, TargetConfig, TargetName};
use raw::RawJailSettings;

use crate::fail2ban::{self, Fail2banFilter, FilterSpec};
use crate::input::tls::TlsSettings;
use crate::jail::filter::Filter;

/// Default largest frame: 64 KiB, as rsyslog's maxMessageSize tops out in common setups.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;
const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Small, so that one host (an attacker, or a sender stuck reconnecting) never holds more
/// than a sliver of `max_connections`; a relay needs one or two.
const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 64;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reading a table of 100,000 bans takes nft about a second of CPU: once a minute is cheap,
/// and drift the kernel reports is repaired at once anyway.
const DEFAULT_LOCAL_RECONCILE: Duration = Duration::from_secs(60);
/// Journal listeners: largest entry by default (a typical entry is 1-4 KiB).
const DEFAULT_MAX_ENTRY: usize = 1024 * 1024;
/// Journal listeners: the largest `max_entry` allowed.
const MAX_MAX_ENTRY: usize = 256 * 1024 * 1024;
const DEFAULT_MAXRETRY: u32 = 5;
const DEFAULT_FINDTIME: Duration = Duration::from_secs(600);
const DEFAULT_BANTIME: Duration = Duration::from_secs(3600);
const DEFAULT_IGNOREIP: &[&str] = &["127.0.0.0/8", "::1"];
const ENV_PREFIX: &str = "SYSLOG2BAN_";
/// 100,000 tracked addresses per jail: about 17 MB at the measured ~167 bytes each.
const DEFAULT_MAX_TRACKED: usize = 100_000;
const DEFAULT_DBPURGEAGE: Duration = Duration::from_secs(7 * 86400);
const DEFAULT_MAXTIME: Duration = Duration::from_secs(7 * 86400);
/// The name recidive bans carry; a user jail may not take it.
pub const RECIDIVE_JAIL: &str = "recidive";

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The sockets to listen on.
    pub listeners: Vec<ListenerConfig>,
    /// Enabled jails, in name order.
    pub jails: Vec<JailConfig>,
    /// Names of jails present but not enabled (for `status` and diagnostics).
    pub disabled_jails: Vec<JailName>,
    /// Ban enforcement.
    pub ban: BanConfig,
    /// Control socket path.
    pub control_socket: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
    /// How long ban history is kept (at least recidive's findtime).
    pub dbpurgeage: Duration,
    /// The recidive jail, when enabled.
    pub recidive: Option<RecidiveConfig>,
    /// Address of the Prometheus endpoint, when enabled.
    pub metrics_listen: Option<SocketAddr>,
    /// Remote firewalls (`[target.NAME]`), in name order.
    pub targets: Vec<TargetConfig>,
    /// Files that were read, in merge order.
    pub files: Vec<PathBuf>,
}

/// One listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// `udp:0.0.0.0:514`-style label used in logs and metrics.
    pub label: String,
    /// Senders allowed (empty: everyone); others are dropped before parsing.
    pub allow: Vec<IpNet>,
    /// Use the HOSTNAME messages claim as their origin (only behind a trusted relay).
    pub trust_hostname: bool,
    /// The transport and its address.
    pub kind: ListenerKind,
    /// Largest frame (bytes).
    pub max_frame: usize,
}

/// Transport of a listener.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenerKind {
    /// One message per datagram.
    Udp {
        /// Bind address.
        address: SocketAddr,
        /// SO_RCVBUF, when set.
        recv_buffer: Option<usize>,
    },
    /// RFC 6587 framing, detected per frame.
    Tcp {
        /// Bind address.
        address: SocketAddr,
        /// Connection limits and timeouts.
        limits: ConnectionLimits,
        /// TLS (RFC 5425) on this listener, when `type = "tls"`.
        tls: Option<TlsSettings>,
    },
    /// Unix datagram socket (`/dev/log` style).
    Unix {
        /// Socket path.
        path: PathBuf,
        /// File mode of the socket.
        mode: u32,
    },
    /// systemd-journal-upload's HTTP protocol: `POST /upload` with a Journal Export Format
    /// body. `max_frame` is the largest field value.
    JournalUpload(JournalListener),
    /// The Journal Export Format over plain TCP (journald's `ForwardToSocket=`). `max_frame`
    /// is the largest field value.
    JournalStream(JournalListener),
}

/// What one stream listener (tcp, tls, journal) lets connections hold, so that no peer can
/// take every slot or keep one without talking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Most simultaneous connections from one peer (an IPv4 address or an IPv6 /64).
    pub max_connections_per_peer: usize,
    /// Silence after which a connection is closed.
    pub idle_timeout: Duration,
    /// Time a new connection has to finish its TLS handshake, or (without TLS) to send its
    /// first byte.
    pub handshake_timeout: Duration,
}

/// Settings of the two journal listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalListener {
    /// Bind address.
    pub address: SocketAddr,
    /// Connection limits and timeouts.
    pub limits: ConnectionLimits,
    /// Largest journal entry (sum of field names and values), bytes.
    pub max_entry: usize,
    /// journal-upload over HTTPS, with the TLS listener's client checks.
    pub tls: Option<TlsSettings>,
}

/// An nft table name: a letter, then letters, digits and `_` (64 at most), so it can be put
/// on an nft command line or in a netlink message as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName(String);

impl TableName {
    /// Checks `name`.
    pub fn new(name: &str) -> Result<Self, String> {
        if compile::table_name_ok(name) {
            Ok(TableName(name.to_string()))
        } else {
            Err(format!(
                "\"{name}\" must start with a letter and use only A-Z a-z 0-9 _"
            ))
        }
    }
}

impl std::ops::Deref for TableName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A jail's name: `[A-Za-z0-9_-]{1,32}`, because it appears in logs, metrics and nft comments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JailName(Arc<str>);

impl JailName {
    /// Validates a jail name.
    pub fn new(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(JailName(Arc::from(name)))
        } else {
            Err(format!(
                "jail name '{name}' must be 1-32 characters of A-Z a-z 0-9 _ -"
            ))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JailName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long a ban lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanTime {
    /// Until unbanned by hand (`bantime = -1`).
    Permanent,
    /// A fixed length.
    For(Duration),
}

impl fmt::Display for BanTime {
    /// `1h`, `10m 30s`, or `permanent`, as logs and `status` show bantimes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTime::Permanent => f.write_str("permanent"),
            BanTime::For(d) => write!(
                f,
                "{}",
                humantime::format_duration(Duration::from_secs(d.as_secs().max(1)))
            ),
        }
    }
}

/// A compiled, enabled jail.
#[derive(Debug, Clone)]
pub struct JailConfig {
    /// The jail's name.
    pub name: JailName,
    /// Program names routed to this jail.
    pub programs: Vec<String>,
    /// Compiled failregex / ignoreregex (only ignoreregex when a fail2ban filter is used).
    pub filter: Filter,
    /// The fail2ban filter file the jail's failures come from, if it uses one.
    pub fail2ban: Option<Fail2banSource>,
    /// Failures within `findtime` that trigger a ban (>= 1).
    pub maxretry: u32,
    /// The counting window.
    pub findtime: Duration,
    /// Ban length.
    pub bantime: BanTime,
    /// Addresses never counted or banned.
    pub ignoreip: Vec<IpNet>,
    /// Growing bantimes, when enabled.
    pub increment: Option<Increment>,
    /// Most addresses its failure tracker holds.
    pub max_tracked: usize,
    /// IPv4 failures are counted and banned per this prefix (32: per address).
    pub prefix4: u8,
    /// IPv6 failures are counted and banned per this prefix (128: per address).
    pub prefix6: u8,
    /// Count per origin host instead of across origins.
    pub count_per_origin: bool,
    /// Where its bans go.
    pub placement: Vec<PlacementRule>,
}

/// A jail's `fail2ban_filter`: the reference as written and the loaded filter.
#[derive(Debug, Clone)]
pub struct Fail2banSource {
    /// `PATH[options]` as written in the jail.
    pub spec: String,
    /// The compiled filter (shared by the jail's matcher).
    pub filter: Arc<Fail2banFilter>,
}

/// fail2ban's `bantime.increment`: see `ban::grown_bantime` for the formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Increment {
    /// Multiplier of the doubling formula.
    pub factor: f64,
    /// Explicit multipliers by number of earlier bans (replaces doubling when not empty).
    pub multipliers: Vec<f64>,
    /// Upper bound.
    pub maxtime: Duration,
    /// Random extra time up to this.
    pub rndtime: Duration,
    /// Count earlier bans in every jail.
    pub overalljails: bool,
}

/// `[recidive]`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct RecidiveConfig {
    /// Bans within findtime that trigger it.
    pub maxretry: u32,
    /// The window.
    pub findtime: Duration,
    /// The long ban.
    pub bantime: BanTime,
    /// Where recidive bans go.
    pub placement: Vec<PlacementRule>,
}

/// Where bans go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Local nftables.
    Nftables,
    /// Only log decisions.
    Log,
}

/// `[ban]`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct BanConfig {
    /// Enforcement backend.
    pub backend: Backend,
    /// nft table (family inet).
    pub table: TableName,
    /// Keep the table when stopping (the next start adopts it: no window without bans).
    pub keep_table: bool,
    /// How often the local table is read and made to hold exactly the active bans.
    pub reconcile_interval: Duration,
    /// This collector's name, marked in every table it manages on a target, so that two
    /// collectors never manage (and reconcile away) each other's bans.
    pub collector: String,
    /// The nft binary.
    pub nft: PathBuf,
}

/// Finds the main file and the jail directory for `--config PATH` (file or directory).
pub fn locate(path: &Path) -> (PathBuf, PathBuf) {
    if path.is_dir() {
        (path.join("syslog2ban.toml"), path.join("conf.d"))
    } else {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        (path.to_path_buf(), dir.join("conf.d"))
    }
}

/// Loads and compiles the configuration at `path` with environment overrides.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, Env::prefixed(ENV_PREFIX).split("__"))
}

fn load_with_env(path: &Path, env: Env) -> Result<Config, ConfigErrors> {
    let (main, _) = locate(path);
    if !main.is_file() {
        return Err(ConfigErrors(vec![ConfigError {
            file: Some(main),
            line: None,
            key: "-".into(),
            message: "configuration file not found".into(),
        }]));
    }
    let files = config_files(path);
    let mut figment = Figment::new();
    for file in &files {
        figment = figment.merge(Toml::file_exact(file));
    }
    let figment = figment.merge(env);
    let mut config = Compiler::new(&figment).compile()?;
    config.files = files;
    Ok(config)
}

/// Compiles only the `[jail.*]` tables of `files` (enabled or not; only the one named `only`
/// when given), for `syslog2ban regex` and filter tests, which need no listeners.
pub fn load_jails(files: &[PathBuf], only: Option<&str>) -> Result<Vec<JailConfig>, ConfigErrors> {
    let mut figment = Figment::new();
    for file in files {
        figment = figment.merge(Toml::file_exact(file));
    }
    let mut compiler = Compiler::new(&figment);
    let names = match figment
        .extract_inner::<std::collections::BTreeMap<String, figment::value::Value>>("jail")
    {
        // Compiling a jail's regexes is the expensive part: skip the ones not asked for.
        Ok(jails) => jails
            .into_keys()
            .filter(|n| only.is_none_or(|o| o == n))
            .collect::<Vec<_>>(),
        Err(_) => Vec::new(),
    };
    let defaults = compiler.defaults(&RawJailSettings::default());
    let jails: Vec<JailConfig> = names
        .iter()
        .filter_map(|name| compiler.jail(name, &defaults).map(|(j, _)| j))
        .collect();
    if compiler.errors.is_empty() {
        Ok(jails)
    } else {
        Err(ConfigErrors(compiler.errors))
    }
}

/// The main file and the `conf.d/*.toml` files of `--config PATH`, in merge order.
pub fn config_files(path: &Path) -> Vec<PathBuf> {
    let (main, conf_dir) = locate(path);
    let conf_dir = match Figment::from(Toml::file(&main)).extract_inner::<PathBuf>("conf_dir") {
        Ok(dir) => main.parent().unwrap_or(Path::new(".")).join(dir),
        Err(_) => conf_dir,
    };
    let mut files = Vec::new();
    if main.is_file() {
        files.push(main);
    }
    if let Ok(entries) = std::fs::read_dir(&conf_dir) {
        let mut jail_files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        jail_files.sort();
        files.extend(jail_files);
    }
    files
}

/// An address (`203.0.113.9`) or a range (`203.0.113.0/24`).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests;
