//! `[target.NAME]` (remote firewalls reached over SSH) and jail `placement` (which firewalls a
//! jail's bans go to): the checks that turn their raw values into `TargetConfig` and
//! `PlacementRule`, with errors naming file and key. Resolves nothing at run time: which
//! target an origin belongs to is the ban manager's call.

use std::collections::BTreeMap;

use super::Compiler;
use crate::config::backend::{daemon_list_ok, HostsDenyConfig, IpsetConfig, TargetBackend};
use crate::config::raw::RawTarget;
use crate::config::types::*;

impl Compiler<'_> {
    /// Compiles every `[target.NAME]`.
    pub(super) fn targets(&mut self, raw: &BTreeMap<String, RawTarget>) -> Vec<TargetConfig> {
        raw.iter()
            .filter_map(|(name, t)| self.target(name, t))
            .collect()
    }

    /// Two targets managing the same thing on the same host (the nft table, the ipset sets
    /// named after it, the hosts.deny file) would each reconcile away the other's bans: an
    /// error on the second, naming the first. Hosts are compared as written (`web1` and its
    /// address are not known to be one); `command` targets run their own programs.
    pub(super) fn distinct_targets(&mut self, targets: &[TargetConfig], ban_table: &TableName) {
        let mut managed: BTreeMap<(String, u16, &str, String), &TargetName> = BTreeMap::new();
        for target in targets {
            let table = target.table.as_ref().unwrap_or(ban_table).to_string();
            let thing = match &target.backend {
                TargetBackend::Nftables => ("nftables table", table),
                TargetBackend::Ipset(_) => ("ipset sets of table", table),
                TargetBackend::HostsDeny(file) => ("file", file.path.display().to_string()),
                TargetBackend::Command(_) => continue,
            };
            let key = (
                target.address.to_ascii_lowercase(),
                target.port,
                thing.0,
                thing.1,
            );
            if let Some(first) = managed.get(&key) {
                let (what, which) = (key.2, &key.3);
                self.error(
                    &format!("target.{}.address", target.name),
                    format!(
                        "{}:{} is target.{first}'s host, with the same {what} ({which}): the two would take out each other's bans; give this one its own `table` (or `hosts_deny` file), or merge them",
                        target.address, target.port
                    ),
                );
            } else {
                managed.insert(key, &target.name);
            }
        }
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
        let duration = |this: &mut Self,
                        field: &str,
                        raw: &Option<crate::config::duration::RawDuration>,
                        default| {
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
        let table = match raw.table.as_deref().map(TableName::new).transpose() {
            Ok(table) => table,
            Err(e) => {
                self.error(&key("table"), e);
                ok = false;
                None
            }
        };
        let hooks = match raw.hook.as_deref().map(Hooks::parse).transpose() {
            Ok(hooks) => hooks,
            Err(e) => {
                self.error(&key("hook"), e);
                ok = false;
                None
            }
        };
        let backend_name = raw.backend.as_deref().unwrap_or("nftables");
        for (field, present, owner) in [
            ("ipset", raw.ipset.is_some(), "ipset"),
            ("iptables", raw.iptables.is_some(), "ipset"),
            ("ip6tables", raw.ip6tables.is_some(), "ipset"),
            ("hosts_deny", raw.hosts_deny.is_some(), "hosts-deny"),
            (
                "hosts_deny_daemons",
                raw.hosts_deny_daemons.is_some(),
                "hosts-deny",
            ),
            ("ban", raw.ban.is_some(), "command"),
            ("unban", raw.unban.is_some(), "command"),
            ("start", raw.start.is_some(), "command"),
            ("stop", raw.stop.is_some(), "command"),
            (
                "command_concurrency",
                raw.command_concurrency.is_some(),
                "command",
            ),
        ] {
            if present && owner != backend_name {
                self.error(
                    &key(field),
                    format!("is a key of backend \"{owner}\", but backend is \"{backend_name}\""),
                );
                ok = false;
            }
        }
        if let Some(daemons) = raw
            .hosts_deny_daemons
            .as_deref()
            .filter(|d| !daemon_list_ok(d))
        {
            self.error(
                &key("hosts_deny_daemons"),
                format!("\"{daemons}\" must be a daemon list such as \"ALL\" or \"sshd, vsftpd\""),
            );
            ok = false;
        }
        let backend = match backend_name {
            "nftables" => TargetBackend::Nftables,
            "hosts-deny" => TargetBackend::HostsDeny(HostsDenyConfig {
                path: raw
                    .hosts_deny
                    .clone()
                    .unwrap_or_else(|| "/etc/hosts.deny".into()),
                daemons: raw
                    .hosts_deny_daemons
                    .clone()
                    .unwrap_or_else(|| "ALL".into()),
            }),
            "ipset" => TargetBackend::Ipset(IpsetConfig {
                ipset: raw.ipset.clone().unwrap_or_else(|| "ipset".into()),
                iptables: raw.iptables.clone().unwrap_or_else(|| "iptables".into()),
                ip6tables: raw.ip6tables.clone().unwrap_or_else(|| "ip6tables".into()),
            }),
            "command" => {
                let keys = super::ban::CommandKeys {
                    ban: &raw.ban,
                    unban: &raw.unban,
                    start: &raw.start,
                    stop: &raw.stop,
                    concurrency: raw.command_concurrency,
                };
                // A run on the host is limited like any remote command.
                let timeout = command_timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT);
                match self.command_config(&prefix, keys, timeout) {
                    Some(command) => TargetBackend::Command(command),
                    None => {
                        ok = false;
                        TargetBackend::Nftables
                    }
                }
            }
            other => {
                self.error(
                    &key("backend"),
                    format!("\"{other}\" is not a target backend; targets take \"nftables\", \"ipset\", \"hosts-deny\" or \"command\""),
                );
                ok = false;
                TargetBackend::Nftables
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
            hooks,
            backend,
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
            let rule = match PlacementRule::parse(text, targets) {
                Ok(rule) => Some(rule),
                Err(message) => {
                    self.error(&format!("{key}[{i}]"), message);
                    None
                }
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
