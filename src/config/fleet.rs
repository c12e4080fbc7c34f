//! `[target.NAME]` (remote firewalls reached over SSH) and jail `placement` (which firewalls a
//! jail's bans go to): their compiled types and the checks that turn raw values into them.
//!
//! Owns the validation of target and placement keys, with errors naming file and key. It
//! resolves nothing at run time: which target an origin belongs to is the ban manager's call.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::raw::RawTarget;
use super::{compile::Compiler, parse_net};

const DEFAULT_SSH_PORT: u16 = 22;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// Pending changes one target may queue while it is down; beyond this the queue is dropped
/// and the next reconcile (which works from the full desired state) puts everything back.
const DEFAULT_QUEUE_LIMIT: usize = 100_000;

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
fn ip_canonical(ip: IpAddr) -> IpAddr {
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
    pub table: Option<super::TableName>,
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

/// The default placement: this host only, as fail2ban does.
pub fn default_placement() -> Vec<PlacementRule> {
    vec![PlacementRule::Local]
}

/// 1 to `max` of A-Z a-z 0-9 - _ . (target, group and host names).
fn is_name(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Compiler<'_> {
    /// Compiles every `[target.NAME]`.
    pub(super) fn targets(&mut self, raw: &BTreeMap<String, RawTarget>) -> Vec<TargetConfig> {
        raw.iter()
            .filter_map(|(name, t)| self.target(name, t))
            .collect()
    }

    fn target(&mut self, name: &str, raw: &RawTarget) -> Option<TargetConfig> {
        let prefix = format!("target.{name}");
        let key = |field: &str| format!("{prefix}.{field}");
        let name = match TargetName::new(name) {
            Ok(n) => n,
            Err(e) => {
                self.error(&prefix, e);
                return None;
            }
        };
        let mut ok = true;
        let address = match raw.address.as_deref().map(str::trim) {
            Some(a) if !a.is_empty() && !a.starts_with('-') && !a.contains(char::is_whitespace) => {
                a.to_string()
            }
            Some(a) => {
                self.error(
                    &key("address"),
                    format!("\"{a}\" is not a host name or address"),
                );
                ok = false;
                String::new()
            }
            None => {
                self.error(&key("address"), "required: the host ssh connects to");
                ok = false;
                String::new()
            }
        };
        let port = match raw.port {
            None => DEFAULT_SSH_PORT,
            Some(p) => match u16::try_from(p) {
                Ok(p) if p > 0 => p,
                _ => {
                    self.error(&key("port"), format!("{p} is not a TCP port (1-65535)"));
                    ok = false;
                    0
                }
            },
        };
        let user = raw.user.clone().unwrap_or_else(|| "root".into());
        if user.is_empty() || user.starts_with('-') || user.contains(['@', ' ', '\t']) {
            self.error(&key("user"), format!("\"{user}\" is not a user name"));
            ok = false;
        }
        for (field, path) in [
            ("identity", &raw.identity),
            ("known_hosts", &raw.known_hosts),
            ("ssh_config", &raw.ssh_config),
        ] {
            if let Some(p) = path {
                if !p.is_file() {
                    self.error(
                        &key(field),
                        format!("{} is not a readable file", p.display()),
                    );
                    ok = false;
                }
            }
        }
        let nft = raw.nft.clone().unwrap_or_else(|| "nft".into());
        if nft.is_empty() || nft.contains(char::is_whitespace) {
            self.error(&key("nft"), format!("\"{nft}\" is not a program path"));
            ok = false;
        }
        let mut origins = Vec::new();
        for (i, text) in raw.origins.iter().flatten().enumerate() {
            if let Some(net) = parse_net(text) {
                origins.push(OriginPattern::Net(net));
            } else if is_name(text, 253) {
                origins.push(OriginPattern::Name(text.to_ascii_lowercase()));
            } else {
                self.error(
                    &format!("{prefix}.origins[{i}]"),
                    format!("\"{text}\" is neither an address/CIDR nor a host name"),
                );
                ok = false;
            }
        }
        let mut groups = Vec::new();
        for (i, g) in raw.groups.iter().flatten().enumerate() {
            if is_name(g, 64) {
                groups.push(g.clone());
            } else {
                self.error(
                    &format!("{prefix}.groups[{i}]"),
                    format!("\"{g}\" is not a group name (A-Z a-z 0-9 - _ .)"),
                );
                ok = false;
            }
        }
        let duration = |this: &mut Self, field: &str, raw: &Option<super::RawDuration>, default| {
            raw.as_ref()
                .map_or(Some(default), |d| this.positive(&key(field), d))
        };
        let connect_timeout = duration(
            self,
            "connect_timeout",
            &raw.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        );
        let command_timeout = duration(
            self,
            "command_timeout",
            &raw.command_timeout,
            DEFAULT_COMMAND_TIMEOUT,
        );
        let reconcile_interval = duration(
            self,
            "reconcile_interval",
            &raw.reconcile_interval,
            DEFAULT_RECONCILE_INTERVAL,
        );
        let queue_limit = match raw.queue_limit {
            None => DEFAULT_QUEUE_LIMIT,
            Some(n) => match usize::try_from(n) {
                Ok(n) if n >= 1 => n,
                _ => {
                    self.error(&key("queue_limit"), format!("{n} must be at least 1"));
                    ok = false;
                    0
                }
            },
        };
        let table = match raw.table.as_deref().map(super::TableName::new).transpose() {
            Ok(table) => table,
            Err(e) => {
                self.error(&key("table"), e);
                ok = false;
                None
            }
        };
        let (Some(connect_timeout), Some(command_timeout), Some(reconcile_interval)) =
            (connect_timeout, command_timeout, reconcile_interval)
        else {
            return None;
        };
        ok.then(|| TargetConfig {
            name,
            address,
            port,
            user,
            identity: raw.identity.clone(),
            known_hosts: raw.known_hosts.clone(),
            ssh_config: raw.ssh_config.clone(),
            sudo: raw.sudo.unwrap_or(false),
            nft,
            origins,
            groups,
            connect_timeout,
            command_timeout,
            reconcile_interval,
            queue_limit,
            table,
        })
    }

    /// Compiles a `placement` list; `key` is where it was written (`jail.sshd.placement`).
    pub(super) fn placement(&mut self, key: &str, raw: &[String]) -> Option<Vec<PlacementRule>> {
        let targets = std::mem::take(&mut self.targets);
        let rules = self.placement_in(key, raw, &targets);
        self.targets = targets;
        rules
    }

    fn placement_in(
        &mut self,
        key: &str,
        raw: &[String],
        targets: &[TargetConfig],
    ) -> Option<Vec<PlacementRule>> {
        if raw.is_empty() {
            self.error(
                key,
                "an empty placement bans nowhere; use [\"local\"], [\"origin\"], [\"all\"], \"group:NAME\" or \"target:NAME\"",
            );
            return None;
        }
        let mut rules = Vec::new();
        for (i, text) in raw.iter().enumerate() {
            let rule = match text.as_str() {
                "local" => Some(PlacementRule::Local),
                "origin" => Some(PlacementRule::Origin),
                "all" => Some(PlacementRule::All),
                other => match other.split_once(':') {
                    Some(("group", g))
                        if targets.iter().any(|t| t.groups.iter().any(|x| x == g)) =>
                    {
                        Some(PlacementRule::Group(g.to_string()))
                    }
                    Some(("group", g)) => {
                        self.error(
                            &format!("{key}[{i}]"),
                            format!("no [target.*] is in group \"{g}\""),
                        );
                        None
                    }
                    Some(("target", t)) if targets.iter().any(|x| x.name.as_str() == t) => {
                        TargetName::new(t).ok().map(PlacementRule::Target)
                    }
                    Some(("target", t)) => {
                        self.error(&format!("{key}[{i}]"), format!("there is no [target.{t}]"));
                        None
                    }
                    _ => {
                        self.error(
                            &format!("{key}[{i}]"),
                            format!("\"{other}\" is not a placement; use \"local\", \"origin\", \"all\", \"group:NAME\" or \"target:NAME\""),
                        );
                        None
                    }
                },
            };
            if let Some(rule) = rule {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
        (!rules.is_empty()).then_some(rules)
    }
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
