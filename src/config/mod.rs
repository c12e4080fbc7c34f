//! Configuration: loads `syslog2ban.toml` and `conf.d/*.toml` (merged in name order, later
//! files overriding single keys), applies `SYSLOG2BAN_` environment overrides, and compiles the
//! raw values into runtime types.
//!
//! Owns the raw → compiled conversion and its error reporting (file, key and, where it can be
//! found, line). It must not open sockets or run anything: it only reads files.

// Reads network or config input: a byte index inside a UTF-8 character would panic.
#![deny(clippy::string_slice)]

mod duration;
mod fleet;
mod raw;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::{Figment, Source};
use ipnet::IpNet;

pub use duration::{ParsedDuration, RawDuration};
pub use fleet::{default_placement, OriginPattern, PlacementRule, TargetConfig, TargetName};
use raw::{RawConfig, RawIncrement, RawJail, RawJailSettings, RawListener};

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
    pub table: String,
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

/// One configuration error, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file that holds the key, when known.
    pub file: Option<PathBuf>,
    /// The 1-based line of the key in that file, when it can be found.
    pub line: Option<usize>,
    /// Dotted key, e.g. `jail.sshd.maxretry`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, _) => {}
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every error found while loading, so a user can fix them all in one go.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
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

/// Walks the merged figment, collecting every error instead of stopping at the first.
struct Compiler<'a> {
    figment: &'a Figment,
    errors: Vec<ConfigError>,
    /// Compiled before the jails, whose `placement` names them.
    targets: Vec<TargetConfig>,
}

impl<'a> Compiler<'a> {
    fn new(figment: &'a Figment) -> Self {
        Compiler {
            figment,
            errors: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// Records an error at `key`, finding the file that provided it.
    fn error(&mut self, key: &str, message: impl Into<String>) {
        let file = self.file_of(key);
        let line = file.as_deref().and_then(|f| find_line(f, key));
        self.errors.push(ConfigError {
            file,
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn file_of(&self, key: &str) -> Option<PathBuf> {
        // Walk up the key until some provider is known for it (unknown keys have no metadata).
        // figment paths have no `[n]` indices: an array element is found through its array.
        let mut probe: String = key.split('[').next().unwrap_or(key).to_string();
        loop {
            if let Some(meta) = self.figment.find_metadata(&probe) {
                if let Some(Source::File(path)) = &meta.source {
                    return Some(path.clone());
                }
                return None;
            }
            match probe.rfind('.') {
                Some(i) => probe.truncate(i),
                None => return None,
            }
        }
    }

    fn figment_error(&mut self, prefix: &str, err: figment::Error) {
        for e in err {
            // figment's extract_inner puts the prefix *after* the field
            // (["maxretry", "jail", "sshd"]); move it back to the front.
            let mut parts: Vec<&str> = e.path.iter().map(String::as_str).collect();
            let prefix_parts: Vec<&str> = prefix.split('.').filter(|p| !p.is_empty()).collect();
            if !prefix_parts.is_empty() && parts.ends_with(&prefix_parts) {
                parts.truncate(parts.len() - prefix_parts.len());
                let mut full = prefix_parts.clone();
                full.extend(parts);
                parts = full;
            }
            let joined = dotted(&parts);
            let key = if prefix.is_empty() || joined.starts_with(prefix) {
                joined
            } else if joined.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{joined}")
            };
            if let figment::error::Kind::UnknownField(field, _) = &e.kind {
                // figment puts the unknown field first in the path; the rest is its table.
                let mut table: Vec<&str> = e.path.iter().map(String::as_str).collect();
                if let Some(i) = table.iter().position(|p| p == field) {
                    table.remove(i);
                }
                let table = if prefix.is_empty() {
                    dotted(&table)
                } else {
                    prefix.to_string()
                };
                let key = if table.is_empty() {
                    field.clone()
                } else {
                    format!("{table}.{field}")
                };
                self.error(&key, "unknown key".to_string());
                continue;
            }
            let file = match &e.metadata {
                Some(meta) => match &meta.source {
                    Some(Source::File(p)) => Some(p.clone()),
                    _ => None,
                },
                None => self.file_of(&key),
            };
            let line = file.as_deref().and_then(|f| find_line(f, &key));
            self.errors.push(ConfigError {
                file,
                line,
                key: if key.is_empty() { "-".into() } else { key },
                message: e.kind.to_string(),
            });
        }
    }

    fn compile(mut self) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = match self.figment.extract() {
            Ok(raw) => raw,
            Err(err) => {
                self.figment_error("", err);
                // Still report what can be found jail by jail.
                if let Ok(jails) = self
                    .figment
                    .extract_inner::<std::collections::BTreeMap<String, figment::value::Value>>(
                        "jail",
                    )
                {
                    let defaults = self.defaults(&RawJailSettings::default());
                    for name in jails.keys() {
                        self.jail(name, &defaults);
                    }
                }
                return Err(ConfigErrors(self.errors));
            }
        };

        let listeners: Vec<ListenerConfig> = raw
            .listen
            .iter()
            .enumerate()
            .filter_map(|(i, l)| self.listener(i, l))
            .collect();
        if raw.listen.is_empty() {
            self.error(
                "listen",
                "no [[listen]] entry: the daemon would receive nothing",
            );
        }
        self.targets = self.targets(&raw.target);
        let defaults = self.defaults(&raw.defaults);
        let mut jails = Vec::new();
        let mut disabled_jails = Vec::new();
        for name in raw.jail.keys() {
            match self.jail(name, &defaults) {
                Some((jail, true)) => jails.push(jail),
                Some((jail, false)) => disabled_jails.push(jail.name),
                None => {}
            }
        }
        let ban = self.ban(&raw.ban);
        let control_socket = raw
            .control
            .socket
            .unwrap_or_else(|| PathBuf::from("/run/syslog2ban.sock"));
        let state_dir = raw
            .state
            .dir
            .unwrap_or_else(|| PathBuf::from("/var/lib/syslog2ban"));
        let recidive = self.recidive(&raw.recidive, &defaults);
        let mut dbpurgeage = match &raw.state.dbpurgeage {
            None => DEFAULT_DBPURGEAGE,
            Some(d) => match d.parse() {
                Ok(ParsedDuration::Finite(d)) if !d.is_zero() => d,
                Ok(_) => {
                    self.error("state.dbpurgeage", "must be a positive duration");
                    DEFAULT_DBPURGEAGE
                }
                Err(e) => {
                    self.error("state.dbpurgeage", e);
                    DEFAULT_DBPURGEAGE
                }
            },
        };
        // Recidive reads the history: keep at least its window.
        if let Some(r) = &recidive {
            dbpurgeage = dbpurgeage.max(r.findtime);
        }
        let metrics_listen =
            raw.metrics
                .listen
                .as_deref()
                .and_then(|text| match text.parse::<SocketAddr>() {
                    Ok(addr) => Some(addr),
                    Err(_) => {
                        self.error(
                            "metrics.listen",
                            format!("\"{text}\" is not IP:PORT (e.g. \"127.0.0.1:9617\")"),
                        );
                        None
                    }
                });

        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        Ok(Config {
            listeners,
            jails,
            disabled_jails,
            ban: ban.expect("no errors means ban compiled"),
            control_socket,
            state_dir,
            dbpurgeage,
            recidive,
            metrics_listen,
            targets: std::mem::take(&mut self.targets),
            files: Vec::new(),
        })
    }

    /// `max_connections`, `max_connections_per_peer`, `idle_timeout`, `handshake_timeout` of
    /// a stream listener.
    fn connection_limits(&mut self, index: usize, raw: &RawListener) -> Option<ConnectionLimits> {
        let key = |field: &str| format!("listen[{index}].{field}");
        let count = |this: &mut Self, field: &str, value: Option<u64>, default: usize| match value {
            None => Some(default),
            Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Some(_) => {
                this.error(&key(field), "must be at least 1");
                None
            }
        };
        let max_connections = count(
            self,
            "max_connections",
            raw.max_connections,
            DEFAULT_MAX_CONNECTIONS,
        )?;
        let max_connections_per_peer = count(
            self,
            "max_connections_per_peer",
            raw.max_connections_per_peer,
            DEFAULT_MAX_CONNECTIONS_PER_PEER.min(max_connections),
        )?;
        let idle_timeout = match &raw.idle_timeout {
            None => DEFAULT_IDLE_TIMEOUT,
            Some(d) => self.positive(&key("idle_timeout"), d)?,
        };
        let handshake_timeout = match &raw.handshake_timeout {
            None => DEFAULT_HANDSHAKE_TIMEOUT,
            Some(d) => self.positive(&key("handshake_timeout"), d)?,
        };
        Some(ConnectionLimits {
            max_connections,
            max_connections_per_peer,
            idle_timeout,
            handshake_timeout,
        })
    }

    fn listener(&mut self, index: usize, raw: &RawListener) -> Option<ListenerConfig> {
        let key = |field: &str| format!("listen[{index}].{field}");
        let max_frame = match raw.max_frame {
            None => DEFAULT_MAX_FRAME,
            Some(n) if (512..=16 * 1024 * 1024).contains(&n) => n as usize,
            Some(n) => {
                self.error(
                    &key("max_frame"),
                    format!("{n} is outside 512..=16777216 bytes"),
                );
                return None;
            }
        };
        // Which keys a type takes is one table: any other key is an unknown key there.
        let Some((_, takes)) = LISTENER_KEYS.iter().find(|(kind, _)| *kind == raw.kind) else {
            self.error(
                &key("type"),
                format!(
                    "\"{}\" is not a listener type; use {}",
                    raw.kind,
                    listener_types()
                ),
            );
            return None;
        };
        let unknown: Vec<&str> = raw
            .keys_set()
            .into_iter()
            .filter(|k| !takes.contains(k))
            .collect();
        for field in &unknown {
            self.error(
                &key(field),
                format!(
                    "unknown key for type \"{}\" (it takes: type, {})",
                    raw.kind,
                    takes.join(", ")
                ),
            );
        }
        if !unknown.is_empty() {
            return None;
        }
        let mut allow = Vec::new();
        for (i, text) in raw.allow.iter().flatten().enumerate() {
            match parse_net(text) {
                Some(net) => allow.push(net),
                None => self.error(
                    &format!("listen[{index}].allow[{i}]"),
                    format!("\"{text}\" is not an IP address or CIDR range"),
                ),
            }
        }
        if raw.allow.as_ref().is_some_and(|a| a.is_empty()) {
            self.error(
                &key("allow"),
                "an empty allow-list would refuse every sender; remove the key to allow all",
            );
        }
        let address = |this: &mut Self| -> Option<SocketAddr> {
            match &raw.address {
                None => {
                    this.error(
                        &key("address"),
                        format!("required for type \"{}\"", raw.kind),
                    );
                    None
                }
                Some(text) => {
                    match text.parse::<SocketAddr>() {
                        Ok(addr) => Some(addr),
                        Err(_) => {
                            this.error(
                            &key("address"),
                            format!("\"{text}\" is not IP:PORT (e.g. \"0.0.0.0:514\" or \"[::]:514\")"),
                        );
                            None
                        }
                    }
                }
            }
        };
        let kind = match raw.kind.as_str() {
            "udp" | "tcp" | "tls" | "journal-upload" | "journal-stream" => {
                let address = address(self)?;
                if raw.kind == "udp" {
                    let recv_buffer = match raw.recv_buffer {
                        None => None,
                        Some(n) if (4096..=1 << 30).contains(&n) => Some(n as usize),
                        Some(n) => {
                            self.error(
                                &key("recv_buffer"),
                                format!("{n} is outside 4096..=1073741824 bytes"),
                            );
                            return None;
                        }
                    };
                    ListenerKind::Udp {
                        address,
                        recv_buffer,
                    }
                } else {
                    let limits = self.connection_limits(index, raw)?;
                    if raw.kind == "tcp" || raw.kind == "tls" {
                        let tls = if raw.kind == "tls" {
                            Some(self.tls(index, raw)?)
                        } else {
                            None
                        };
                        ListenerKind::Tcp {
                            address,
                            limits,
                            tls,
                        }
                    } else {
                        let max_entry = match raw.max_entry {
                            None => DEFAULT_MAX_ENTRY.max(max_frame),
                            Some(n) if n >= max_frame as u64 && n <= MAX_MAX_ENTRY as u64 => {
                                n as usize
                            }
                            Some(n) => {
                                self.error(
                                    &key("max_entry"),
                                    format!(
                                        "{n} is outside max_frame ({max_frame})..={MAX_MAX_ENTRY} bytes"
                                    ),
                                );
                                return None;
                            }
                        };
                        let tls = if raw.kind == "journal-upload"
                            && (raw.cert.is_some() || raw.key.is_some())
                        {
                            Some(self.tls(index, raw)?)
                        } else {
                            None
                        };
                        let journal = JournalListener {
                            address,
                            limits,
                            max_entry,
                            tls,
                        };
                        if raw.kind == "journal-upload" {
                            ListenerKind::JournalUpload(journal)
                        } else {
                            ListenerKind::JournalStream(journal)
                        }
                    }
                }
            }
            "unix" => {
                let Some(path) = raw.path.clone() else {
                    self.error(
                        &key("path"),
                        "required for type \"unix\" (e.g. \"/dev/log\")",
                    );
                    return None;
                };
                let mode = match raw.mode.as_deref() {
                    None => 0o666,
                    Some(text) => match u32::from_str_radix(text, 8) {
                        Ok(m) if m <= 0o777 => m,
                        _ => {
                            self.error(
                                &key("mode"),
                                format!("\"{text}\" is not an octal file mode like \"0660\""),
                            );
                            return None;
                        }
                    },
                };
                ListenerKind::Unix { path, mode }
            }
            // LISTENER_KEYS names every type handled above.
            _ => return None,
        };
        let label = match &kind {
            ListenerKind::Udp { address, .. } => format!("udp:{address}"),
            ListenerKind::Tcp {
                address,
                tls: Some(_),
                ..
            } => format!("tls:{address}"),
            ListenerKind::Tcp { address, .. } => format!("tcp:{address}"),
            ListenerKind::Unix { path, .. } => format!("unix:{}", path.display()),
            ListenerKind::JournalUpload(j) => format!("journal-upload:{}", j.address),
            ListenerKind::JournalStream(j) => format!("journal-stream:{}", j.address),
        };
        Some(ListenerConfig {
            label,
            allow,
            trust_hostname: raw.trust_hostname.unwrap_or(false),
            kind,
            max_frame,
        })
    }

    /// The TLS keys of a `type = "tls"` listener; the files must exist and be readable.
    fn tls(&mut self, index: usize, raw: &RawListener) -> Option<TlsSettings> {
        let key = |field: &str| format!("listen[{index}].{field}");
        let file = |this: &mut Self,
                    field: &str,
                    path: &Option<PathBuf>,
                    required: bool|
         -> Option<Option<PathBuf>> {
            match path {
                None if required => {
                    this.error(&key(field), "required for type \"tls\" (a PEM file)");
                    None
                }
                None => Some(None),
                Some(p) if std::fs::File::open(p).is_err() => {
                    this.error(&key(field), format!("cannot read {}", p.display()));
                    None
                }
                Some(p) => Some(Some(p.clone())),
            }
        };
        let cert = file(self, "cert", &raw.cert, true);
        let tls_key = file(self, "key", &raw.key, true);
        let client_ca = file(self, "client_ca", &raw.client_ca, false);
        let mut allowed_fingerprints = Vec::new();
        for (i, text) in raw.allowed_fingerprints.iter().flatten().enumerate() {
            match crate::input::tls::normalize_fingerprint(text) {
                Some(f) => allowed_fingerprints.push(f),
                None => self.error(
                    &format!("listen[{index}].allowed_fingerprints[{i}]"),
                    format!(
                        "\"{text}\" is not a SHA-256 fingerprint (SHA256:AB:CD:... with 32 bytes)"
                    ),
                ),
            }
        }
        let allowed_names = raw
            .allowed_names
            .iter()
            .flatten()
            .map(|n| n.to_lowercase())
            .collect();
        Some(TlsSettings {
            cert: cert??,
            key: tls_key??,
            client_ca: client_ca?,
            allowed_fingerprints,
            allowed_names,
        })
    }

    fn defaults(&mut self, raw: &RawJailSettings) -> Settings {
        let base = Settings {
            maxretry: DEFAULT_MAXRETRY,
            findtime: DEFAULT_FINDTIME,
            bantime: BanTime::For(DEFAULT_BANTIME),
            ignoreip: DEFAULT_IGNOREIP
                .iter()
                .map(|s| s.parse::<IpAddr>().map(IpNet::from).or_else(|_| s.parse()))
                .collect::<Result<_, _>>()
                .expect("built-in ignoreip parses"),
            increment: RawIncrement::default(),
            max_tracked: DEFAULT_MAX_TRACKED,
            prefix4: 32,
            prefix6: 128,
            count_per_origin: false,
            placement: default_placement(),
        };
        self.settings("defaults", &base, raw)
    }

    fn settings(&mut self, prefix: &str, base: &Settings, raw: &RawJailSettings) -> Settings {
        let mut out = base.clone();
        if let Some(n) = raw.maxretry {
            match u32::try_from(n) {
                Ok(n) if n >= 1 => out.maxretry = n,
                _ => self.error(
                    &format!("{prefix}.maxretry"),
                    format!("{n} must be at least 1"),
                ),
            }
        }
        if let Some(d) = &raw.findtime {
            if let Some(d) = self.positive(&format!("{prefix}.findtime"), d) {
                out.findtime = d;
            }
        }
        if let Some(raw) = &raw.bantime {
            if let Some(b) = self.bantime(&format!("{prefix}.bantime"), raw) {
                out.bantime = b;
            }
        }
        if let Some(list) = &raw.ignoreip {
            let mut nets = Vec::new();
            for (i, text) in list.iter().enumerate() {
                match parse_net(text) {
                    Some(net) => nets.push(net),
                    None => self.error(
                        &format!("{prefix}.ignoreip[{i}]"),
                        format!("\"{text}\" is not an IP address or CIDR range"),
                    ),
                }
            }
            out.ignoreip = nets;
        }
        if let Some(n) = raw.max_tracked {
            match usize::try_from(n) {
                Ok(n) if n >= 1 => out.max_tracked = n,
                _ => self.error(
                    &format!("{prefix}.max_tracked"),
                    format!("{n} must be at least 1"),
                ),
            }
        }
        for (key, value, width, slot) in [
            ("prefix4", raw.prefix4, 32u8, &mut out.prefix4),
            ("prefix6", raw.prefix6, 128u8, &mut out.prefix6),
        ] {
            if let Some(n) = value {
                match u8::try_from(n) {
                    Ok(n) if (8..=width).contains(&n) => *slot = n,
                    _ => self.error(
                        &format!("{prefix}.{key}"),
                        format!("{n} must be a prefix length between 8 and {width}"),
                    ),
                }
            }
        }
        if let Some(per_origin) = raw.count_per_origin {
            out.count_per_origin = per_origin;
        }
        if let Some(list) = &raw.placement {
            if let Some(rules) = self.placement(&format!("{prefix}.placement"), list) {
                out.placement = rules;
            }
        }
        if let Some(inc) = &raw.increment {
            out.increment = inc.over(&base.increment);
        }
        out
    }

    fn positive(&mut self, key: &str, raw: &RawDuration) -> Option<Duration> {
        match raw.parse() {
            Ok(ParsedDuration::Finite(d)) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.error(key, "must be a positive duration");
                None
            }
            Err(e) => {
                self.error(key, e);
                None
            }
        }
    }

    fn bantime(&mut self, key: &str, raw: &RawDuration) -> Option<BanTime> {
        match raw.parse() {
            Ok(ParsedDuration::Finite(d)) if !d.is_zero() => Some(BanTime::For(d)),
            Ok(ParsedDuration::Forever) => Some(BanTime::Permanent),
            Ok(_) => {
                self.error(key, "must be a positive duration or -1 (permanent)");
                None
            }
            Err(e) => {
                self.error(key, e);
                None
            }
        }
    }

    /// The merged increment settings of `prefix`, compiled; None when not enabled.
    fn increment(&mut self, prefix: &str, raw: &RawIncrement) -> Option<Increment> {
        if raw.enabled != Some(true) {
            return None;
        }
        let key = |k: &str| format!("{prefix}.increment.{k}");
        let factor = raw.factor.unwrap_or(1.0);
        if !(factor > 0.0 && factor.is_finite()) {
            self.error(
                &key("factor"),
                format!("{factor} must be a positive number"),
            );
        }
        let multipliers = raw.multipliers.clone().unwrap_or_default();
        if let Some(bad) = multipliers
            .iter()
            .position(|m| !(*m > 0.0 && m.is_finite()))
        {
            self.error(
                &format!("{}[{bad}]", key("multipliers")),
                "must be a positive number",
            );
        }
        let maxtime = match &raw.maxtime {
            None => DEFAULT_MAXTIME,
            Some(d) => self.positive(&key("maxtime"), d).unwrap_or(DEFAULT_MAXTIME),
        };
        let rndtime = match raw.rndtime.as_ref().map(RawDuration::parse) {
            None => Duration::ZERO,
            Some(Ok(ParsedDuration::Finite(d))) => d,
            Some(Ok(ParsedDuration::Forever)) => {
                self.error(&key("rndtime"), "must be a duration");
                Duration::ZERO
            }
            Some(Err(e)) => {
                self.error(&key("rndtime"), e);
                Duration::ZERO
            }
        };
        Some(Increment {
            factor,
            multipliers,
            maxtime,
            rndtime,
            overalljails: raw.overalljails.unwrap_or(false),
        })
    }

    fn recidive(&mut self, raw: &raw::RawRecidive, defaults: &Settings) -> Option<RecidiveConfig> {
        if raw.enabled != Some(true) {
            return None;
        }
        let maxretry = match raw.maxretry {
            None => 5,
            Some(n) => match u32::try_from(n) {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.error("recidive.maxretry", format!("{n} must be at least 1"));
                    5
                }
            },
        };
        let findtime = match &raw.findtime {
            None => Duration::from_secs(86400),
            Some(d) => self
                .positive("recidive.findtime", d)
                .unwrap_or(Duration::from_secs(86400)),
        };
        let bantime = match &raw.bantime {
            None => BanTime::For(Duration::from_secs(7 * 86400)),
            Some(b) => self
                .bantime("recidive.bantime", b)
                .unwrap_or(BanTime::For(Duration::from_secs(7 * 86400))),
        };
        let placement = match &raw.placement {
            None => defaults.placement.clone(),
            Some(list) => self
                .placement("recidive.placement", list)
                .unwrap_or_else(default_placement),
        };
        Some(RecidiveConfig {
            maxretry,
            findtime,
            bantime,
            placement,
        })
    }

    /// Compiles one jail; returns it with its `enabled` flag.
    fn jail(&mut self, name: &str, defaults: &Settings) -> Option<(JailConfig, bool)> {
        let prefix = format!("jail.{name}");
        let jail_name = match JailName::new(name) {
            Ok(n) => n,
            Err(e) => {
                self.error(&prefix, e);
                return None;
            }
        };
        let raw: RawJail = match self.figment.extract_inner(&prefix) {
            Ok(raw) => raw,
            Err(err) => {
                self.figment_error(&prefix, err);
                return None;
            }
        };
        let enabled = raw.enabled.unwrap_or(false);
        let settings = self.settings(&prefix, defaults, &raw.settings());
        let increment = self.increment(&prefix, &settings.increment);
        if name == RECIDIVE_JAIL {
            self.error(
                &prefix,
                "'recidive' is the built-in jail over the ban history; configure it in [recidive]",
            );
        }
        let fail2ban = match &raw.fail2ban_filter {
            Some(spec) => {
                if raw.failregex.is_some() {
                    self.error(
                        &format!("{prefix}.fail2ban_filter"),
                        "use either failregex or fail2ban_filter, not both",
                    );
                    return None;
                }
                let key = format!("{prefix}.fail2ban_filter");
                match self.fail2ban_filter(&key, spec) {
                    Some(source) => Some(source),
                    None => return None,
                }
            }
            None => None,
        };
        // A fail2ban filter names its programs in `_daemon`; `programs` overrides that.
        let programs = match (&raw.programs, &fail2ban) {
            (Some(p), _) => p.clone(),
            (None, Some(source)) => match source.filter.programs() {
                Some(p) => p.to_vec(),
                // A disabled jail hears nothing; only an enabled one needs program names.
                None if !enabled => Vec::new(),
                None => {
                    self.error(
                        &format!("{prefix}.programs"),
                        format!(
                            "the fail2ban filter's _daemon ({}) names no fixed program; set programs",
                            source.filter.daemon().unwrap_or("unset")
                        ),
                    );
                    return None;
                }
            },
            (None, None) => Vec::new(),
        };
        if enabled && programs.is_empty() {
            self.error(
                &format!("{prefix}.programs"),
                "an enabled jail needs at least one program name to hear",
            );
        }
        for (i, program) in programs.iter().enumerate() {
            let star_inside = program.strip_suffix('*').unwrap_or(program).contains('*');
            if program.is_empty() || program.contains(char::is_whitespace) || star_inside {
                self.error(
                    &format!("{prefix}.programs[{i}]"),
                    format!(
                        "\"{program}\" is not a program name (a trailing * matches by prefix, e.g. \"postfix*\")"
                    ),
                );
            }
        }
        let failregex = raw.failregex.clone().unwrap_or_default();
        let ignoreregex = raw.ignoreregex.clone().unwrap_or_default();
        let compiled = if fail2ban.is_some() {
            Filter::ignore_only(&ignoreregex)
        } else {
            Filter::compile(&failregex, &ignoreregex)
        };
        let filter = match compiled {
            Ok(f) => f,
            Err(e) => {
                let msg = e.to_string();
                let (field, rest) = msg.split_once(": ").unwrap_or(("failregex", &msg));
                self.error(&format!("{prefix}.{field}"), rest.to_string());
                return None;
            }
        };
        Some((
            JailConfig {
                name: jail_name,
                programs,
                filter,
                fail2ban,
                maxretry: settings.maxretry,
                findtime: settings.findtime,
                bantime: settings.bantime,
                ignoreip: settings.ignoreip,
                increment,
                max_tracked: settings.max_tracked,
                prefix4: settings.prefix4,
                prefix6: settings.prefix6,
                count_per_origin: settings.count_per_origin,
                placement: settings.placement,
            },
            enabled,
        ))
    }

    /// Loads a jail's fail2ban filter; a relative path is relative to the jail's file.
    fn fail2ban_filter(&mut self, key: &str, spec: &str) -> Option<Fail2banSource> {
        let mut parsed = match FilterSpec::parse(spec) {
            Ok(p) => p,
            Err(e) => {
                self.error(key, e.to_string());
                return None;
            }
        };
        if parsed.path.is_relative() {
            if let Some(dir) = self.file_of(key).as_deref().and_then(Path::parent) {
                parsed.path = dir.join(&parsed.path);
            }
        }
        match fail2ban::load(&parsed) {
            Ok(filter) => Some(Fail2banSource {
                spec: spec.to_string(),
                filter: Arc::new(filter),
            }),
            Err(e) => {
                self.error(key, e.to_string());
                None
            }
        }
    }

    fn ban(&mut self, raw: &raw::RawBan) -> Option<BanConfig> {
        let backend = match raw.backend.as_deref() {
            None | Some("nftables") => Backend::Nftables,
            Some("log") => Backend::Log,
            Some(other) => {
                self.error(
                    "ban.backend",
                    format!("\"{other}\" is not a backend; use \"nftables\" or \"log\""),
                );
                return None;
            }
        };
        let table = raw.table.clone().unwrap_or_else(|| "syslog2ban".into());
        if !table_name_ok(&table) {
            self.error(
                "ban.table",
                format!("\"{table}\" must start with a letter and use only A-Z a-z 0-9 _"),
            );
            return None;
        }
        let collector = match &raw.collector {
            None => default_collector(),
            Some(name)
                if (1..=64).contains(&name.len())
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
            {
                name.clone()
            }
            Some(name) => {
                self.error(
                    "ban.collector",
                    format!("\"{name}\" must be 1-64 of A-Z a-z 0-9 _"),
                );
                return None;
            }
        };
        let reconcile_interval = match &raw.reconcile_interval {
            None => DEFAULT_LOCAL_RECONCILE,
            Some(d) => self.positive("ban.reconcile_interval", d)?,
        };
        Some(BanConfig {
            backend,
            table,
            // Kernel timeouts expire kept bans on time even if the daemon never returns.
            keep_table: raw.keep_table.unwrap_or(true),
            reconcile_interval,
            collector,
            nft: raw.nft.clone().unwrap_or_else(|| PathBuf::from("nft")),
        })
    }
}

/// The keys each listener type takes, besides `type` (`allow` needs a sender address, the
/// limits a connection, TLS keys a handshake; a unix socket has a path instead of an address).
/// One table instead of a serde enum per type: serde's `deny_unknown_fields` does not combine
/// with `flatten`, so an enum would repeat the shared keys in six structs.
const LISTENER_KEYS: &[(&str, &[&str])] = &[
    (
        "udp",
        &[
            "address",
            "max_frame",
            "allow",
            "trust_hostname",
            "recv_buffer",
        ],
    ),
    ("unix", &["path", "mode", "max_frame", "trust_hostname"]),
    (
        "tcp",
        &[
            "address",
            "max_frame",
            "allow",
            "trust_hostname",
            "max_connections",
            "max_connections_per_peer",
            "idle_timeout",
            "handshake_timeout",
        ],
    ),
    (
        "tls",
        &[
            "address",
            "max_frame",
            "allow",
            "trust_hostname",
            "max_connections",
            "max_connections_per_peer",
            "idle_timeout",
            "handshake_timeout",
            "cert",
            "key",
            "client_ca",
            "allowed_fingerprints",
            "allowed_names",
        ],
    ),
    (
        "journal-upload",
        &[
            "address",
            "max_frame",
            "allow",
            "trust_hostname",
            "max_connections",
            "max_connections_per_peer",
            "idle_timeout",
            "handshake_timeout",
            "max_entry",
            "cert",
            "key",
            "client_ca",
            "allowed_fingerprints",
            "allowed_names",
        ],
    ),
    (
        "journal-stream",
        &[
            "address",
            "max_frame",
            "allow",
            "trust_hostname",
            "max_connections",
            "max_connections_per_peer",
            "idle_timeout",
            "handshake_timeout",
            "max_entry",
        ],
    ),
];

/// `"udp", "tcp", ...` for error messages.
fn listener_types() -> String {
    let names: Vec<String> = LISTENER_KEYS
        .iter()
        .map(|(t, _)| format!("\"{t}\""))
        .collect();
    names.join(", ")
}

/// An nft table name syslog2ban accepts: a letter, then letters, digits and `_` (64 at most).
fn table_name_ok(table: &str) -> bool {
    table.len() <= 64
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && table
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
}

/// The host name, with anything but letters, digits and `_` as `_`.
fn default_collector() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = host
        .trim()
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.is_empty() {
        "collector".into()
    } else {
        name
    }
}

#[derive(Debug, Clone)]
struct Settings {
    maxretry: u32,
    findtime: Duration,
    bantime: BanTime,
    ignoreip: Vec<IpNet>,
    /// Merged raw keys; compiled per jail, since only jails use them.
    increment: RawIncrement,
    max_tracked: usize,
    prefix4: u8,
    prefix6: u8,
    count_per_origin: bool,
    placement: Vec<PlacementRule>,
}

/// `["listen", "0", "address"]` → `listen[0].address`, the form every error uses.
fn dotted(parts: &[&str]) -> String {
    let mut out = String::new();
    for part in parts {
        if part.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// An address (`203.0.113.9`) or a range (`203.0.113.0/24`).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// Best-effort line of `key` in `file`: tracks `[table]` and `[[array]]` headers (counting
/// array entries, so `listen[1].type` finds the second `[[listen]]`) and matches `name =`.
fn find_line(file: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(file).ok()?;
    // `jail.sshd.ignoreip[2]` → table `jail.sshd`, field `ignoreip`.
    let (table, field) = match key.rsplit_once('.') {
        Some((t, f)) => (t, f),
        None => ("", key),
    };
    let field = field.split('[').next().unwrap_or(field);
    let mut current = String::new();
    let mut array_counts: std::collections::HashMap<String, usize> =
        std::collections::HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix("[[") {
            let name = header.split("]]").next().unwrap_or("").trim().to_string();
            let count = array_counts.entry(name.clone()).or_insert(0);
            current = format!("{name}[{count}]");
            *count += 1;
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            current = header.split(']').next().unwrap_or("").trim().to_string();
            continue;
        }
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        if current == table && name.trim().trim_matches('"') == field {
            return Some(n + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const MAIN: &str = r#"
[[listen]]
type = "udp"
address = "127.0.0.1:5514"

[[listen]]
type = "tcp"
address = "127.0.0.1:5514"

[defaults]
maxretry = 5
findtime = "10m"
bantime = "1h"

[ban]
backend = "log"
"#;

    const SSHD: &str = r#"
[jail.sshd]
enabled = true
programs = ["sshd", "sshd-session"]
failregex = ['^Failed password for \S+ from <HOST> port \d+ ssh2$']
"#;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("conf.d")).expect("mkdir");
        for (name, text) in files {
            fs::write(dir.path().join(name), text).expect("write");
        }
        dir
    }

    fn load_no_env(path: &Path) -> Result<Config, ConfigErrors> {
        load_with_env(
            path,
            Env::prefixed("SYSLOG2BAN_TEST_NEVER_SET_").split("__"),
        )
    }

    #[test]
    fn loads_main_and_conf_d_with_defaults() {
        let dir = dir_with(&[("syslog2ban.toml", MAIN), ("conf.d/sshd.toml", SSHD)]);
        let config = load_no_env(dir.path()).expect("valid");
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.jails.len(), 1);
        let sshd = &config.jails[0];
        assert_eq!(sshd.name.as_str(), "sshd");
        assert_eq!(sshd.maxretry, 5);
        assert_eq!(sshd.findtime, Duration::from_secs(600));
        assert_eq!(sshd.bantime, BanTime::For(Duration::from_secs(3600)));
        assert_eq!(sshd.ignoreip.len(), 2);
        assert_eq!(config.ban.backend, Backend::Log);
    }

    #[test]
    fn later_conf_d_file_overrides_one_key() {
        let dir = dir_with(&[
            ("syslog2ban.toml", MAIN),
            ("conf.d/sshd.toml", SSHD),
            (
                "conf.d/zz-local.toml",
                "[jail.sshd]\nmaxretry = 3\nbantime = -1\n",
            ),
        ]);
        let config = load_no_env(dir.path()).expect("valid");
        let sshd = &config.jails[0];
        assert_eq!(sshd.maxretry, 3);
        assert_eq!(sshd.bantime, BanTime::Permanent);
        assert_eq!(sshd.programs, vec!["sshd", "sshd-session"]);
        assert_eq!(sshd.findtime, Duration::from_secs(600));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail API, not ours
    fn environment_overrides_a_key() {
        let dir = dir_with(&[("syslog2ban.toml", MAIN), ("conf.d/sshd.toml", SSHD)]);
        figment::Jail::expect_with(|jail| {
            jail.set_env("SYSLOG2BAN_JAIL__SSHD__MAXRETRY", "2");
            let config = load(dir.path()).expect("valid");
            assert_eq!(config.jails[0].maxretry, 2);
            Ok(())
        });
    }

    #[test]
    fn errors_name_file_key_and_line() {
        let dir = dir_with(&[
            ("syslog2ban.toml", MAIN),
            ("conf.d/sshd.toml", SSHD),
            (
                "conf.d/zz-local.toml",
                "[jail.sshd]\nmaxretry = 0\nfindtime = \"soon\"\nignoreip = [\"10.0.0.0/8\", \"nope\"]\n",
            ),
        ]);
        let errors = load_no_env(dir.path()).unwrap_err().0;
        let local = dir.path().join("conf.d/zz-local.toml");
        let find = |key: &str| {
            errors
                .iter()
                .find(|e| e.key == key)
                .unwrap_or_else(|| panic!("no error for {key}: {errors:?}"))
        };
        assert_eq!(find("jail.sshd.maxretry").file.as_ref(), Some(&local));
        assert_eq!(find("jail.sshd.maxretry").line, Some(2));
        assert!(find("jail.sshd.findtime").message.contains("soon"));
        assert_eq!(find("jail.sshd.ignoreip[1]").line, Some(4));
    }

    #[test]
    fn a_key_of_another_listener_type_is_an_unknown_key() {
        for (listener, key) in [
            (
                "type = \"udp\"\naddress = \"127.0.0.1:514\"\nidle_timeout = \"1m\"\n",
                "idle_timeout",
            ),
            (
                "type = \"unix\"\npath = \"/dev/log\"\nallow = [\"127.0.0.1\"]\n",
                "allow",
            ),
            (
                "type = \"tcp\"\naddress = \"127.0.0.1:514\"\ncert = \"/c.pem\"\n",
                "cert",
            ),
            (
                "type = \"journal-stream\"\naddress = \"127.0.0.1:514\"\nrecv_buffer = 4096\n",
                "recv_buffer",
            ),
        ] {
            let dir = dir_with(&[("syslog2ban.toml", &format!("[[listen]]\n{listener}"))]);
            let errors = load_no_env(dir.path()).unwrap_err().0;
            let key = format!("listen[0].{key}");
            let e = errors
                .iter()
                .find(|e| e.key == key)
                .unwrap_or_else(|| panic!("no error for {key}: {errors:?}"));
            assert!(e.message.starts_with("unknown key for type"), "{e:?}");
            assert_eq!(
                e.file.as_deref(),
                Some(dir.path().join("syslog2ban.toml").as_path())
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_file() {
        let dir = dir_with(&[
            ("syslog2ban.toml", MAIN),
            ("conf.d/sshd.toml", &format!("{SSHD}maxretyr = 3\n")),
        ]);
        let errors = load_no_env(dir.path()).unwrap_err().0;
        let e = errors
            .iter()
            .find(|e| e.key == "jail.sshd.maxretyr")
            .unwrap_or_else(|| panic!("{errors:?}"));
        assert_eq!(e.message, "unknown key");
        assert_eq!(e.file.as_ref(), Some(&dir.path().join("conf.d/sshd.toml")));

        let dir = dir_with(&[(
            "syslog2ban.toml",
            &format!("{MAIN}\n[bogus]\nx = 1\n")
                .replace("backend = \"log\"", "backend = \"log\"\nfoo = 1"),
        )]);
        let errors = load_no_env(dir.path()).unwrap_err().0;
        assert!(
            errors
                .iter()
                .any(|e| e.key == "bogus" || e.key == "ban.foo"),
            "{errors:?}"
        );
    }

    #[test]
    fn type_errors_inside_a_jail_name_the_key_and_line() {
        let dir = dir_with(&[
            ("syslog2ban.toml", MAIN),
            ("conf.d/sshd.toml", SSHD),
            ("conf.d/zz-local.toml", "[jail.sshd]\nmaxretry = \"lots\"\n"),
        ]);
        let errors = load_no_env(dir.path()).unwrap_err().0;
        let e = errors
            .iter()
            .find(|e| e.key == "jail.sshd.maxretry")
            .unwrap_or_else(|| panic!("{errors:?}"));
        assert_eq!(
            e.file.as_ref(),
            Some(&dir.path().join("conf.d/zz-local.toml"))
        );
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn bad_listener_and_regex_are_reported() {
        let main = MAIN.replace(
            "127.0.0.1:5514\"\n\n[[listen]]",
            "localhost\"\n\n[[listen]]",
        );
        let dir = dir_with(&[
            ("syslog2ban.toml", &main),
            (
                "conf.d/sshd.toml",
                "[jail.sshd]\nenabled = true\nprograms = [\"sshd\"]\nfailregex = ['from <HOST>']\n",
            ),
        ]);
        let errors = load_no_env(dir.path()).unwrap_err().0;
        assert!(
            errors.iter().any(|e| e.key == "listen[0].address"),
            "{errors:?}"
        );
        let regex = errors
            .iter()
            .find(|e| e.key == "jail.sshd.failregex[0]")
            .unwrap_or_else(|| panic!("{errors:?}"));
        assert!(regex.message.contains("must start with '^'"));
    }

    #[test]
    fn jail_names_are_restricted() {
        assert!(JailName::new("sshd-2_a").is_ok());
        assert!(JailName::new("ssh d").is_err());
        assert!(JailName::new("").is_err());
    }

    /// A fail2ban-style filter written for these tests.
    const DEMO_FILTER: &str = "[DEFAULT]\n_daemon = demo(?:-auth)?\n[Definition]\nfailregex = ^(?:\\S+ )?%(_daemon)s(?:\\[\\d+\\])?: bad <what> from <HOST>$\n[Init]\nwhat = login\n";

    #[test]
    fn jail_with_a_fail2ban_filter() {
        let dir = dir_with(&[
            ("syslog2ban.toml", MAIN),
            (
                "conf.d/demo.toml",
                "[jail.demo]\nenabled = true\nfail2ban_filter = \"filters/demo.conf[what=attempt]\"\nignoreregex = ['from 10\\.']\n",
            ),
        ]);
        fs::create_dir(dir.path().join("conf.d/filters")).expect("mkdir");
        fs::write(dir.path().join("conf.d/filters/demo.conf"), DEMO_FILTER).expect("write");
        let config = load_no_env(dir.path()).expect("loads");
        let demo = config
            .jails
            .iter()
            .find(|j| j.name.as_str() == "demo")
            .expect("demo jail");
        assert_eq!(demo.programs, vec!["demo", "demo-auth"]);
        let source = demo.fail2ban.as_ref().expect("fail2ban filter");
        assert_eq!(source.spec, "filters/demo.conf[what=attempt]");
        assert!(source
            .filter
            .failregex_source(0)
            .is_some_and(|r| r.contains("bad attempt from")));
        assert!(demo.filter.is_ignored("bad attempt from 10.0.0.1"));
    }

    #[test]
    fn fail2ban_filter_errors_name_file_and_key() {
        let cases = [
            (
                "fail2ban_filter = \"filters/demo.conf\"\nfailregex = ['^x <HOST>$']\n",
                "jail.demo.fail2ban_filter",
                "not both",
            ),
            (
                "fail2ban_filter = \"filters/missing.conf\"\n",
                "jail.demo.fail2ban_filter",
                "missing.conf: cannot read",
            ),
            (
                "fail2ban_filter = \"filters/open.conf\"\n",
                "jail.demo.programs",
                "names no fixed program",
            ),
            (
                "fail2ban_filter = \"filters/demo.conf[what\"\n",
                "jail.demo.fail2ban_filter",
                "bad filter options",
            ),
        ];
        for (jail, key, message) in cases {
            let dir = dir_with(&[
                ("syslog2ban.toml", MAIN),
                (
                    "conf.d/demo.toml",
                    &format!("[jail.demo]\nenabled = true\n{jail}"),
                ),
            ]);
            fs::create_dir(dir.path().join("conf.d/filters")).expect("mkdir");
            fs::write(dir.path().join("conf.d/filters/demo.conf"), DEMO_FILTER).expect("write");
            fs::write(
                dir.path().join("conf.d/filters/open.conf"),
                "[Definition]\nfailregex = ^<HOST>$\n",
            )
            .expect("write");
            let errors = load_no_env(dir.path()).expect_err(key).0;
            let error = errors
                .iter()
                .find(|e| e.key == key)
                .unwrap_or_else(|| panic!("no error for {key}: {errors:?}"));
            assert!(error.message.contains(message), "{error:?}");
            assert_eq!(
                error.file.as_deref(),
                Some(dir.path().join("conf.d/demo.toml").as_path())
            );
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail API, not ours
    fn test_knobs_are_not_config_keys_but_unknown_prefixed_ones_are_errors() {
        let dir = dir_with(&[("syslog2ban.toml", MAIN), ("conf.d/sshd.toml", SSHD)]);
        let path = dir.path().to_path_buf();
        figment::Jail::expect_with(move |jail| {
            jail.set_env("S2B_F2B_CORPUS", "/somewhere/corpus");
            load(&path).map_err(|e| e.to_string())?;
            jail.set_env("SYSLOG2BAN_NOT_A_KEY", "1");
            let err = load(&path).expect_err("unknown key");
            assert!(err.to_string().contains("not_a_key"), "{err}");
            Ok(())
        });
    }
}
