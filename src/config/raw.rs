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
    /// `[recidive]`: repeat offenders.
    #[serde(default)]
    pub recidive: RawRecidive,
    /// `[metrics]`: the Prometheus endpoint.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// `[target.NAME]`: remote firewalls reached over SSH.
    #[serde(default)]
    pub target: BTreeMap<String, RawTarget>,
    /// `[notify.NAME]`: who is told about bans.
    #[serde(default)]
    pub notify: BTreeMap<String, RawNotify>,
    /// `[feed.NAME]`: blocklists applied as bans.
    #[serde(default)]
    pub feed: BTreeMap<String, RawFeed>,
    /// `[cluster]`: several collectors counting and banning as one.
    pub cluster: Option<RawCluster>,
    /// `[jail.NAME]` tables; kept as raw figment values so each jail is extracted (and its
    /// errors reported) on its own.
    #[serde(default)]
    pub jail: BTreeMap<String, figment::value::Value>,
}

/// One `[[listen]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// `"udp"`, `"tcp"`, `"unix"`, `"journal-upload"` or `"journal-stream"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `IP:PORT` for udp and tcp.
    pub address: Option<String>,
    /// Socket path for unix.
    pub path: Option<PathBuf>,
    /// Largest frame accepted, in bytes (default 65536).
    pub max_frame: Option<u64>,
    /// Stream listeners: most simultaneous connections (default 1024).
    pub max_connections: Option<u64>,
    /// Stream listeners: a connection silent this long is closed (default "5m").
    pub idle_timeout: Option<RawDuration>,
    /// Stream listeners: time to finish the TLS handshake or send the first byte (default
    /// "10s").
    pub handshake_timeout: Option<RawDuration>,
    /// unix only: file mode of the socket, as an octal string (default "0666", like /dev/log).
    pub mode: Option<String>,
    /// udp/tcp: only these senders (addresses or CIDR); others are dropped and counted.
    pub allow: Option<Vec<String>>,
    /// Stream listeners: most simultaneous connections from one peer (default 64).
    pub max_connections_per_peer: Option<u64>,
    /// UDP only: kernel receive buffer (SO_RCVBUF) in bytes.
    pub recv_buffer: Option<u64>,
    /// Use the HOSTNAME messages claim as their origin (a relay in front of this listener).
    pub trust_hostname: Option<bool>,
    /// TLS only: server certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// TLS only: server private key (PEM).
    pub key: Option<PathBuf>,
    /// TLS only: CA bundle client certificates must chain to (requires a client certificate).
    pub client_ca: Option<PathBuf>,
    /// TLS only: allowed client certificate fingerprints (`SHA256:..`).
    pub allowed_fingerprints: Option<Vec<String>>,
    /// TLS only: allowed client names (subject CN or SAN DNS names).
    pub allowed_names: Option<Vec<String>>,
    /// journal-upload and journal-stream only: largest entry in bytes (default 1 MiB).
    pub max_entry: Option<u64>,
}

impl RawListener {
    /// The keys this entry sets, besides `type`.
    pub fn keys_set(&self) -> Vec<&'static str> {
        [
            ("address", self.address.is_some()),
            ("path", self.path.is_some()),
            ("max_frame", self.max_frame.is_some()),
            ("max_connections", self.max_connections.is_some()),
            ("idle_timeout", self.idle_timeout.is_some()),
            ("handshake_timeout", self.handshake_timeout.is_some()),
            ("mode", self.mode.is_some()),
            ("allow", self.allow.is_some()),
            (
                "max_connections_per_peer",
                self.max_connections_per_peer.is_some(),
            ),
            ("recv_buffer", self.recv_buffer.is_some()),
            ("trust_hostname", self.trust_hostname.is_some()),
            ("cert", self.cert.is_some()),
            ("key", self.key.is_some()),
            ("client_ca", self.client_ca.is_some()),
            ("allowed_fingerprints", self.allowed_fingerprints.is_some()),
            ("allowed_names", self.allowed_names.is_some()),
            ("max_entry", self.max_entry.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
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
    /// Growing bantimes (fail2ban's bantime.increment).
    pub increment: Option<RawIncrement>,
    /// Most addresses the failure tracker holds per jail.
    pub max_tracked: Option<i64>,
    /// Count and ban IPv4 failures by this prefix length (32 = single addresses).
    pub prefix4: Option<i64>,
    /// Count and ban IPv6 failures by this prefix length (128 = single addresses).
    pub prefix6: Option<i64>,
    /// Count failures per origin host instead of across all origins.
    pub count_per_origin: Option<bool>,
    /// Cut the banned address's established connections once the ban is applied.
    pub kill_connections: Option<bool>,
    /// Notifiers told about this jail's bans (`[notify.NAME]` names).
    pub notify: Option<Vec<String>>,
    /// Ban only these ports (default: every port).
    pub ports: Option<Vec<i64>>,
    /// The protocol of `ports`: "tcp" (default) or "udp".
    pub protocol: Option<String>,
    /// Where bans go: "local", "origin", "all", "group:NAME", "target:NAME".
    pub placement: Option<Vec<String>>,
}

/// `[defaults.increment]` / `[jail.NAME.increment]`: fail2ban's `bantime.*` settings.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncrement {
    /// Turn growing bantimes on.
    pub enabled: Option<bool>,
    /// Multiplier of the doubling formula (default 1).
    pub factor: Option<f64>,
    /// Explicit multipliers by number of earlier bans; replaces the doubling formula.
    pub multipliers: Option<Vec<f64>>,
    /// Upper bound of a grown bantime.
    pub maxtime: Option<RawDuration>,
    /// Random extra time, up to this much.
    pub rndtime: Option<RawDuration>,
    /// Count earlier bans in every jail, not just this one.
    pub overalljails: Option<bool>,
}

impl RawIncrement {
    /// Each key of `self`, else of `base`.
    pub fn over(&self, base: &RawIncrement) -> RawIncrement {
        RawIncrement {
            enabled: self.enabled.or(base.enabled),
            factor: self.factor.or(base.factor),
            multipliers: self
                .multipliers
                .clone()
                .or_else(|| base.multipliers.clone()),
            maxtime: self.maxtime.clone().or_else(|| base.maxtime.clone()),
            rndtime: self.rndtime.clone().or_else(|| base.rndtime.clone()),
            overalljails: self.overalljails.or(base.overalljails),
        }
    }
}

/// `[recidive]`: the built-in jail over the ban history.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecidive {
    /// Off unless enabled.
    pub enabled: Option<bool>,
    /// Bans (in any jail) within findtime that trigger the long ban.
    pub maxretry: Option<i64>,
    /// The window bans are counted in.
    pub findtime: Option<RawDuration>,
    /// The long ban; -1 = permanent.
    pub bantime: Option<RawDuration>,
    /// Where recidive bans go (default: like `[defaults] placement`).
    pub placement: Option<Vec<String>>,
    /// The notifiers told about recidive bans (default: like `[defaults] notify`).
    pub notify: Option<Vec<String>>,
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
    /// A fail2ban filter file instead of failregex: `PATH` or `PATH[key=value, ...]`
    /// (relative paths are relative to this file's directory).
    pub fail2ban_filter: Option<String>,
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
    /// Overrides keys of `[defaults.increment]`.
    pub increment: Option<RawIncrement>,
    /// Overrides `[defaults] max_tracked`.
    pub max_tracked: Option<i64>,
    /// Overrides `[defaults] prefix4`.
    pub prefix4: Option<i64>,
    /// Overrides `[defaults] prefix6`.
    pub prefix6: Option<i64>,
    /// Overrides `[defaults] count_per_origin`.
    pub count_per_origin: Option<bool>,
    /// Overrides `[defaults] kill_connections`.
    pub kill_connections: Option<bool>,
    /// Overrides `[defaults] notify`.
    pub notify: Option<Vec<String>>,
    /// Overrides `[defaults] ports`.
    pub ports: Option<Vec<i64>>,
    /// Overrides `[defaults] protocol`.
    pub protocol: Option<String>,
    /// Overrides `[defaults] placement`.
    pub placement: Option<Vec<String>>,
    /// Which of the jail's modes is in force (default `normal`: `failregex` alone).
    pub mode: Option<String>,
    /// `[jail.NAME.modes.MODE]`: the patterns each mode adds to `failregex`.
    pub modes: Option<BTreeMap<String, RawMode>>,
}

/// One mode of a jail (fail2ban's `mode=` names: normal, ddos, extra, aggressive).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMode {
    /// Patterns this mode adds to the jail's `failregex`.
    pub failregex: Option<Vec<String>>,
    /// Other modes whose patterns this one adds too (aggressive = ["ddos", "extra"]).
    pub includes: Option<Vec<String>>,
}

impl RawJail {
    /// The jail's own settings (None where it sets none).
    // serde's `flatten` cannot be combined with `deny_unknown_fields`, hence the copy.
    pub fn settings(&self) -> RawJailSettings {
        RawJailSettings {
            maxretry: self.maxretry,
            findtime: self.findtime.clone(),
            bantime: self.bantime.clone(),
            ignoreip: self.ignoreip.clone(),
            increment: self.increment.clone(),
            max_tracked: self.max_tracked,
            prefix4: self.prefix4,
            prefix6: self.prefix6,
            count_per_origin: self.count_per_origin,
            kill_connections: self.kill_connections,
            notify: self.notify.clone(),
            ports: self.ports.clone(),
            protocol: self.protocol.clone(),
            placement: self.placement.clone(),
        }
    }
}

/// `[ban]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBan {
    /// `"nftables"` (default), `"ipset"`, `"hosts-deny"`, `"command"` or `"log"`.
    pub backend: Option<String>,
    /// ipset backend: the ipset binary (default `ipset`).
    pub ipset: Option<PathBuf>,
    /// ipset backend: the iptables binary (default `iptables`).
    pub iptables: Option<PathBuf>,
    /// ipset backend: the ip6tables binary (default `ip6tables`).
    pub ip6tables: Option<PathBuf>,
    /// hosts-deny backend: the tcp-wrappers file (default `/etc/hosts.deny`).
    pub hosts_deny: Option<PathBuf>,
    /// hosts-deny backend: the daemon list of each entry (default `ALL`).
    pub hosts_deny_daemons: Option<String>,
    /// command backend: argv run per ban.
    pub ban: Option<Vec<String>>,
    /// command backend: argv run per unban.
    pub unban: Option<Vec<String>>,
    /// command backend: argv run once at start.
    pub start: Option<Vec<String>>,
    /// command backend: argv run once on a clean stop.
    pub stop: Option<Vec<String>>,
    /// command backend: longest run (default "10s").
    pub command_timeout: Option<RawDuration>,
    /// command backend: most runs at once (default 4).
    pub command_concurrency: Option<i64>,
    /// nft table name, family inet (default `syslog2ban`).
    pub table: Option<String>,
    /// Hooks of the drop rules: "input" (default), "forward" or "both".
    pub hook: Option<String>,
    /// Leave the nft table (and its bans) in place when the daemon stops (default true).
    pub keep_table: Option<bool>,
    /// How often the local table is compared with the active bans (default "60s").
    pub reconcile_interval: Option<RawDuration>,
    /// This collector's name in the tables it manages on targets (default: the host name).
    pub collector: Option<String>,
    /// Path of the `nft` binary (default `nft`, looked up in PATH).
    pub nft: Option<PathBuf>,
}

/// `[notify.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    /// `"webhook"`, `"mail"`, `"abuseipdb"` or `"blocklist-de"`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// webhook: where to POST.
    pub url: Option<String>,
    /// webhook: HMAC-SHA256 key of the signature header.
    pub secret: Option<String>,
    /// Which events: `"ban"`, `"unban"` (default `["ban"]`).
    pub events: Option<Vec<String>>,
    /// Longest one delivery may take (default "10s").
    pub timeout: Option<RawDuration>,
    /// abuseipdb: the API key.
    pub key: Option<String>,
    /// abuseipdb: category ids.
    pub categories: Option<Vec<i64>>,
    /// abuseipdb: report an address at most once in this long (default "1d").
    pub period: Option<RawDuration>,
    /// abuseipdb, blocklist-de: more redaction patterns for the lines sent.
    pub redact: Option<Vec<String>>,
    /// webhook: `"json"` (default), `"slack"` or `"ntfy"`.
    pub format: Option<String>,
    /// With `"digest"` in `events`: how often a digest is sent (default "1h").
    pub digest_interval: Option<RawDuration>,
    /// At most this many deliveries per duration, e.g. `"30/1h"`.
    pub rate: Option<String>,
    /// mail: the SMTP server, `HOST:PORT` (port default 587, 465 with `tls = "tls"`).
    pub smtp: Option<String>,
    /// mail: `"starttls"` (default), `"tls"` or `"none"`.
    pub tls: Option<String>,
    /// mail: PEM file of an extra CA for the SMTP server's certificate.
    pub ca_file: Option<PathBuf>,
    /// mail: SMTP AUTH user name.
    pub username: Option<String>,
    /// mail: SMTP AUTH password.
    pub password: Option<String>,
    /// mail: the sender.
    pub from: Option<String>,
    /// mail: the recipients.
    pub to: Option<Vec<String>>,
    /// mail: subject template.
    pub subject: Option<String>,
    /// mail: body template.
    pub body: Option<String>,
    /// mail: look up the address over RDAP for `<whois>` (default false).
    pub whois: Option<bool>,
    /// mail: the RDAP URL the address is appended to (default "https://rdap.org/ip/").
    pub rdap_url: Option<String>,
    /// blocklist-de: the reporting server's registered e-mail address or id.
    pub server: Option<String>,
    /// blocklist-de: the service name reported (default: the jail's name).
    pub service: Option<String>,
}

/// `[cluster]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// `"redis"` (Valkey and Redis speak the same protocol).
    pub engine: Option<String>,
    /// `redis://` / `rediss://` URLs, tried in order.
    pub urls: Option<Vec<String>>,
    /// Redis Sentinels to ask for the primary, tried in order.
    pub sentinels: Option<Vec<String>>,
    /// The name the sentinels monitor the primary by.
    pub sentinel_master: Option<String>,
    /// This collector's name (default: the host name).
    pub node: Option<String>,
    /// Key prefix (default "syslog2ban").
    pub prefix: Option<String>,
    /// Longest one engine call may take (default "250ms").
    pub timeout: Option<RawDuration>,
    /// PEM CA for `rediss://`.
    pub ca_file: Option<PathBuf>,
    /// Most failures and bans held while the engine is away (default 100000).
    pub buffer: Option<i64>,
    /// How long a ban's notifications wait before they go out (default "3s").
    pub announce_delay: Option<RawDuration>,
}

/// `[feed.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFeed {
    /// `http://`, `https://` or `file:///` URL of the list.
    pub url: Option<String>,
    /// How often it is fetched (default "1h").
    pub interval: Option<RawDuration>,
    /// How long a listed address is banned (default -1: while listed).
    pub bantime: Option<RawDuration>,
    /// Where its bans go (default `[defaults] placement`).
    pub placement: Option<Vec<String>>,
    /// Most entries taken from one list (default 100000).
    pub max_entries: Option<i64>,
    /// Longest one fetch may take (default "30s").
    pub timeout: Option<RawDuration>,
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
    /// How long ban history is kept.
    pub dbpurgeage: Option<RawDuration>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `IP:PORT` to serve `GET /metrics` on; unset = no endpoint.
    pub listen: Option<String>,
}

/// One `[target.NAME]`: a remote host whose nftables is managed over SSH.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Host name or address ssh connects to.
    pub address: Option<String>,
    /// SSH port (default 22).
    pub port: Option<i64>,
    /// Remote user (default root).
    pub user: Option<String>,
    /// Private key file.
    pub identity: Option<PathBuf>,
    /// known_hosts file holding the host's key.
    pub known_hosts: Option<PathBuf>,
    /// ssh client config file (`ssh -F`).
    pub ssh_config: Option<PathBuf>,
    /// Run nft through `sudo -n`.
    pub sudo: Option<bool>,
    /// nft on the remote host (default `nft`).
    pub nft: Option<String>,
    /// Origins (sender addresses/CIDRs, certificate or host names) that are this host.
    pub origins: Option<Vec<String>>,
    /// Groups for `placement = ["group:NAME"]`.
    pub groups: Option<Vec<String>>,
    /// Connect + handshake limit (default 10s).
    pub connect_timeout: Option<RawDuration>,
    /// Limit for one remote nft run (default 20s).
    pub command_timeout: Option<RawDuration>,
    /// How often to compare the remote sets with the bans (default 60s).
    pub reconcile_interval: Option<RawDuration>,
    /// Most pending changes while the host is down (default 100000).
    pub queue_limit: Option<i64>,
    /// nft table on this host (default: `[ban] table`).
    pub table: Option<String>,
    /// Hooks of its drop rules (default: `[ban] hook`).
    pub hook: Option<String>,
    /// `"nftables"` (default) or `"ipset"`.
    pub backend: Option<String>,
    /// ipset backend: ipset on the host (default `ipset`).
    pub ipset: Option<PathBuf>,
    /// ipset backend: iptables on the host (default `iptables`).
    pub iptables: Option<PathBuf>,
    /// ipset backend: ip6tables on the host (default `ip6tables`).
    pub ip6tables: Option<PathBuf>,
    /// hosts-deny backend: the file on the host (default `/etc/hosts.deny`).
    pub hosts_deny: Option<PathBuf>,
    /// hosts-deny backend: the daemon list of each entry (default `ALL`).
    pub hosts_deny_daemons: Option<String>,
    /// command backend: argv run on the host per ban.
    pub ban: Option<Vec<String>>,
    /// command backend: argv run on the host per unban.
    pub unban: Option<Vec<String>>,
    /// command backend: argv run on the host once at start.
    pub start: Option<Vec<String>>,
    /// command backend: argv run on the host once on a clean stop.
    pub stop: Option<Vec<String>>,
    /// command backend: most runs at once on the host (default 4).
    pub command_concurrency: Option<i64>,
}
