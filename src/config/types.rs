//! The compiled configuration: what the daemon runs on (listeners, jails, bans, targets and
//! placement), with the defaults of every key and the validated names (`JailName`,
//! `TableName`, `TargetName`). Plain data: nothing here reads files or reports errors; `compile`
//! builds these from the raw values and says what was wrong where.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

pub use super::backend::Backend;

use crate::fail2ban::Fail2banFilter;
use crate::input::tls::TlsSettings;
use crate::jail::filter::Filter;
pub use crate::target::{Port, Ports, Protocol};

/// Default largest frame: 64 KiB, as rsyslog's maxMessageSize tops out in common setups.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;
pub(in crate::config) const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Small, so that one host (an attacker, or a sender stuck reconnecting) never holds more
/// than a sliver of `max_connections`; a relay needs one or two.
pub(in crate::config) const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 64;
pub(in crate::config) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub(in crate::config) const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reading a table of 100,000 bans takes nft about a second of CPU: once a minute is cheap,
/// and drift the kernel reports is repaired at once anyway.
pub(in crate::config) const DEFAULT_LOCAL_RECONCILE: Duration = Duration::from_secs(60);
/// Journal listeners: largest entry by default (a typical entry is 1-4 KiB).
pub(in crate::config) const DEFAULT_MAX_ENTRY: usize = 1024 * 1024;
/// Journal listeners: the largest `max_entry` allowed.
pub(in crate::config) const MAX_MAX_ENTRY: usize = 256 * 1024 * 1024;
pub(in crate::config) const DEFAULT_MAXRETRY: u32 = 5;
pub(in crate::config) const DEFAULT_FINDTIME: Duration = Duration::from_secs(600);
pub(in crate::config) const DEFAULT_BANTIME: Duration = Duration::from_secs(3600);
pub(in crate::config) const DEFAULT_IGNOREIP: &[&str] = &["127.0.0.0/8", "::1"];
pub(in crate::config) const ENV_PREFIX: &str = "SYSLOG2BAN_";
/// 100,000 tracked addresses per jail: about 17 MB at the measured ~167 bytes each.
pub(in crate::config) const DEFAULT_MAX_TRACKED: usize = 100_000;
pub(in crate::config) const DEFAULT_DBPURGEAGE: Duration = Duration::from_secs(7 * 86400);
pub(in crate::config) const DEFAULT_MAXTIME: Duration = Duration::from_secs(7 * 86400);
/// Where the control socket is unless `[control] socket` says otherwise (the unit's
/// `RuntimeDirectory`); the CLI's control commands look there too.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/syslog2ban/syslog2ban.sock";

/// The name recidive bans carry; a user jail may not take it.
pub const RECIDIVE_JAIL: &str = "recidive";

/// The start of a feed's jail name (`feed-NAME`).
pub const FEED_JAIL_PREFIX: &str = "feed-";

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
    /// `[notify.NAME]`: who is told about bans.
    pub notifiers: Vec<super::notify::NotifierConfig>,
    /// `[feed.NAME]`: blocklists applied as bans.
    pub feeds: Vec<FeedConfig>,
    /// `[cluster]`: the shared engine, when several collectors count as one.
    pub cluster: Option<super::cluster::ClusterConfig>,
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
        if table_name_ok(name) {
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

/// Maps keyed by jail find a jail by its text (hashes and compares as the text does).
impl std::borrow::Borrow<str> for JailName {
    fn borrow(&self) -> &str {
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
    /// Cut the banned address's established connections once the ban is applied.
    pub kill_connections: bool,
    /// The ports its bans cover (None: every port).
    pub ports: Option<Ports>,
    /// Notifiers told about its bans.
    pub notify: Vec<super::notify::NotifierName>,
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
    /// The notifiers told about recidive bans.
    pub notify: Vec<super::notify::NotifierName>,
}

/// `[ban]`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct BanConfig {
    /// Enforcement backend.
    pub backend: Backend,
    /// nft table (family inet).
    pub table: TableName,
    /// The hooks whose traffic the drop rules see.
    pub hooks: Hooks,
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

/// Which netfilter hooks the table's drop rules sit in: `input` (traffic to this host, the
/// default), `forward` (traffic routed through it: containers behind Docker's published ports,
/// VMs, a router), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hooks {
    /// Traffic to this host.
    pub input: bool,
    /// Traffic routed through this host.
    pub forward: bool,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            input: true,
            forward: false,
        }
    }
}

impl Hooks {
    /// `"input"`, `"forward"` or `"both"`.
    pub fn parse(text: &str) -> Result<Hooks, String> {
        match text {
            "input" => Ok(Hooks::default()),
            "forward" => Ok(Hooks {
                input: false,
                forward: true,
            }),
            "both" => Ok(Hooks {
                input: true,
                forward: true,
            }),
            other => Err(format!(
                "\"{other}\" is not a hook choice; use \"input\", \"forward\" or \"both\""
            )),
        }
    }

    /// The chains, by hook name.
    pub fn names(&self) -> Vec<&'static str> {
        [("input", self.input), ("forward", self.forward)]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect()
    }
}

/// An nft table name syslog2ban accepts: a letter, then letters, digits and `_` (64 at most).
pub(in crate::config) fn table_name_ok(table: &str) -> bool {
    table.len() <= 64
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && table
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
}

/// An address (`203.0.113.9`) or a range (`203.0.113.0/24`).
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .map(|n| n.trunc())
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

// Remote targets and placement.

pub(in crate::config) const DEFAULT_SSH_PORT: u16 = 22;
pub(in crate::config) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub(in crate::config) const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
pub(in crate::config) const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// Pending changes one target may queue while it is down; beyond this the queue is dropped
/// and the next reconcile (which works from the full desired state) puts everything back.
pub(in crate::config) const DEFAULT_QUEUE_LIMIT: usize = 100_000;

/// A remote firewall's name: letters, digits, `-`, `_`, `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetName(Arc<str>);

impl TargetName {
    /// Validates a target name.
    pub fn new(name: &str) -> Result<Self, String> {
        if is_name(name, 64) && name != "local" && name != "all" && name != "origin" {
            Ok(TargetName(name.into()))
        } else {
            Err(format!(
                "\"{name}\" is not a target name (1-64 of A-Z a-z 0-9 - _ ., and not local/all/origin)"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TargetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an origin (peer address, certificate name, trusted hostname) is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// An address or a network of senders.
    Net(IpNet),
    /// A name, compared case-insensitively.
    Name(String),
}

impl OriginPattern {
    /// Whether the origin string of a ban belongs here.
    pub fn matches(&self, origin: &str) -> bool {
        match self {
            OriginPattern::Net(net) => origin
                .parse::<IpAddr>()
                .is_ok_and(|ip| net.contains(&ip_canonical(ip))),
            OriginPattern::Name(name) => name.eq_ignore_ascii_case(origin),
        }
    }
}

/// IPv4-mapped IPv6 senders (dual-stack sockets) compare as IPv4.
pub(in crate::config) fn ip_canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A remote host whose nftables syslog2ban manages over SSH.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetConfig {
    /// Its name in config, logs, metrics and `status`.
    pub name: TargetName,
    /// Host name or address ssh connects to.
    pub address: String,
    /// SSH port.
    pub port: u16,
    /// Remote user.
    pub user: String,
    /// Private key (none: ssh's defaults and agent).
    pub identity: Option<PathBuf>,
    /// known_hosts file (none: ssh's default); host keys are always checked strictly.
    pub known_hosts: Option<PathBuf>,
    /// ssh client config file (none: ssh's default).
    pub ssh_config: Option<PathBuf>,
    /// Run nft through `sudo -n`.
    pub sudo: bool,
    /// nft on the remote host.
    pub nft: String,
    /// Origins whose failures are this host's.
    pub origins: Vec<OriginPattern>,
    /// Groups it belongs to.
    pub groups: Vec<String>,
    /// TCP connect + SSH handshake limit.
    pub connect_timeout: Duration,
    /// Limit for one remote nft run.
    pub command_timeout: Duration,
    /// How often the remote sets are compared with what they should hold.
    pub reconcile_interval: Duration,
    /// Most pending changes kept while the host is unreachable.
    pub queue_limit: usize,
    /// The nft table managed on this host, when not `[ban] table`.
    pub table: Option<TableName>,
    /// The hooks of its table's drop rules (default: `[ban] hook`).
    pub hooks: Option<Hooks>,
    /// nftables or ipset on the host.
    pub backend: super::backend::TargetBackend,
}

impl TargetConfig {
    /// A target for tests: `origins` are addresses/CIDRs or names, short timeouts.
    #[cfg(test)]
    pub(crate) fn for_test(name: &str, origins: &[&str], groups: &[&str]) -> Self {
        TargetConfig {
            name: TargetName::new(name).expect("test target name"),
            address: "198.51.100.10".into(),
            port: 22,
            user: "root".into(),
            identity: None,
            hooks: None,
            known_hosts: None,
            ssh_config: None,
            sudo: false,
            nft: "nft".into(),
            origins: origins
                .iter()
                .map(|o| match parse_net(o) {
                    Some(net) => OriginPattern::Net(net),
                    None => OriginPattern::Name((*o).into()),
                })
                .collect(),
            groups: groups.iter().map(|g| (*g).into()).collect(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            reconcile_interval: Duration::from_secs(1),
            table: None,
            queue_limit: 10,
            backend: super::backend::TargetBackend::Nftables,
        }
    }
}

/// One entry of a jail's `placement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementRule {
    /// This host's own nftables (or the log backend).
    Local,
    /// The target(s) whose `origins` include the origin of the failures.
    Origin,
    /// Every target.
    All,
    /// Every target in a group.
    Group(String),
    /// One target by name.
    Target(TargetName),
}

impl fmt::Display for PlacementRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementRule::Local => f.write_str("local"),
            PlacementRule::Origin => f.write_str("origin"),
            PlacementRule::All => f.write_str("all"),
            PlacementRule::Group(g) => write!(f, "group:{g}"),
            PlacementRule::Target(t) => write!(f, "target:{t}"),
        }
    }
}

impl PlacementRule {
    /// One placement as written (`"local"`, `"origin"`, `"all"`, `"group:NAME"`,
    /// `"target:NAME"`), checked against the configured targets; the error says what is
    /// accepted. Used for jails' `placement` and for a manual ban's `--place`.
    pub fn parse(text: &str, targets: &[TargetConfig]) -> Result<PlacementRule, String> {
        match text {
            "local" => Ok(PlacementRule::Local),
            "origin" => Ok(PlacementRule::Origin),
            "all" => Ok(PlacementRule::All),
            other => match other.split_once(':') {
                Some(("group", g)) if targets.iter().any(|t| t.groups.iter().any(|x| x == g)) => {
                    Ok(PlacementRule::Group(g.to_string()))
                }
                Some(("group", g)) => Err(format!("no [target.*] is in group \"{g}\"")),
                Some(("target", t)) => match targets.iter().find(|x| x.name.as_str() == t) {
                    Some(target) => Ok(PlacementRule::Target(target.name.clone())),
                    None => Err(format!("there is no [target.{t}]")),
                },
                _ => Err(format!(
                    "\"{other}\" is not a placement; use \"local\", \"origin\", \"all\", \"group:NAME\" or \"target:NAME\""
                )),
            },
        }
    }
}

impl PlacementRule {
    /// A placement as [`fmt::Display`] wrote it, read back without the configured targets
    /// (a stored ban's: a target or group no longer configured resolves to none of them).
    pub fn from_stored(text: &str) -> Option<PlacementRule> {
        Some(match text {
            "local" => PlacementRule::Local,
            "origin" => PlacementRule::Origin,
            "all" => PlacementRule::All,
            other => match other.split_once(':')? {
                ("group", g) => PlacementRule::Group(g.to_string()),
                ("target", t) => PlacementRule::Target(TargetName::new(t).ok()?),
                _ => return None,
            },
        })
    }
}

/// The default placement: this host only, as fail2ban does.
pub fn default_placement() -> Vec<PlacementRule> {
    vec![PlacementRule::Local]
}

/// 1 to `max` of A-Z a-z 0-9 - _ . (target, group and host names).
pub(in crate::config) fn is_name(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_patterns_match_addresses_networks_and_names() {
        let net = OriginPattern::Net("198.51.100.0/28".parse().unwrap());
        assert!(net.matches("198.51.100.10"));
        assert!(net.matches("::ffff:198.51.100.10"));
        assert!(!net.matches("198.51.100.20"));
        assert!(!net.matches("web3.example"));
        let name = OriginPattern::Name("web3.example".into());
        assert!(name.matches("WEB3.example"));
        assert!(!name.matches("web4.example"));
    }

    #[test]
    fn target_names_exclude_placement_keywords() {
        assert!(TargetName::new("web-3.dc1").is_ok());
        for bad in ["", "local", "all", "origin", "a b", "x;y"] {
            assert!(TargetName::new(bad).is_err(), "{bad}");
        }
    }
}

/// Where a feed's list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSource {
    /// `http://` or `https://`, fetched with a conditional GET.
    Http(super::notify::HttpUrl),
    /// `file:///path`, read again every interval.
    File(PathBuf),
}

/// A feed.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedConfig {
    /// Its name.
    pub name: String,
    /// The jail its bans are held under (`feed-NAME`), so they are listed, stored and lifted
    /// apart from the jails' own.
    pub jail: JailName,
    /// The list.
    pub source: FeedSource,
    /// How often it is fetched.
    pub interval: Duration,
    /// How long a listed address is banned (`Permanent`: while listed).
    pub bantime: BanTime,
    /// Where its bans go.
    pub placement: Vec<PlacementRule>,
    /// Most entries taken from one list (the rest is refused, and reported).
    pub max_entries: usize,
    /// Longest one fetch may take.
    pub timeout: Duration,
    /// Addresses never banned (`[defaults] ignoreip`).
    pub ignoreip: Vec<IpNet>,
}
