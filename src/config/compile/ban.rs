//! `[ban]`: backend (and each backend's keys), table, collector name, reconcile interval.

use std::path::PathBuf;
use std::time::Duration;

use super::Compiler;
use crate::config::backend::*;
use crate::config::raw::{self};
use crate::config::types::*;

impl Compiler<'_> {
    pub(in crate::config) fn ban(&mut self, raw: &raw::RawBan) -> Option<BanConfig> {
        let backend = self.backend(raw)?;
        let table = match TableName::new(raw.table.as_deref().unwrap_or("syslog2ban")) {
            Ok(table) => table,
            Err(e) => {
                self.error("ban.table", e);
                return None;
            }
        };
        // ipset names its sets `<table>4` ... `<table>netp6`, and takes at most 31 bytes.
        if matches!(backend, Backend::Ipset(_)) && table.len() > 26 {
            self.error(
                "ban.table",
                format!("\"{table}\" is too long for the ipset backend's set names (at most 26 characters)"),
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
        let hooks = match raw.hook.as_deref().map(Hooks::parse) {
            None => Hooks::default(),
            Some(Ok(hooks)) => hooks,
            Some(Err(e)) => {
                self.error("ban.hook", e);
                return None;
            }
        };
        Some(BanConfig {
            backend,
            table,
            hooks,
            // Kernel timeouts expire kept bans on time even if the daemon never returns.
            keep_table: raw.keep_table.unwrap_or(true),
            reconcile_interval,
            collector,
            nft: raw.nft.clone().unwrap_or_else(|| PathBuf::from("nft")),
        })
    }
}

/// The keys only one backend takes, for the error when another backend is selected.
const BACKEND_KEYS: &[(&str, &str)] = &[
    ("ipset", "ipset"),
    ("iptables", "ipset"),
    ("ip6tables", "ipset"),
    ("hosts_deny", "hosts-deny"),
    ("hosts_deny_daemons", "hosts-deny"),
    ("ban", "command"),
    ("unban", "command"),
    ("start", "command"),
    ("stop", "command"),
    ("command_timeout", "command"),
    ("command_concurrency", "command"),
];

const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_COMMAND_CONCURRENCY: usize = 4;

impl Compiler<'_> {
    fn backend(&mut self, raw: &raw::RawBan) -> Option<Backend> {
        let name = raw.backend.as_deref().unwrap_or("nftables");
        let set: Vec<&str> = [
            ("ipset", raw.ipset.is_some()),
            ("iptables", raw.iptables.is_some()),
            ("ip6tables", raw.ip6tables.is_some()),
            ("hosts_deny", raw.hosts_deny.is_some()),
            ("hosts_deny_daemons", raw.hosts_deny_daemons.is_some()),
            ("ban", raw.ban.is_some()),
            ("unban", raw.unban.is_some()),
            ("start", raw.start.is_some()),
            ("stop", raw.stop.is_some()),
            ("command_timeout", raw.command_timeout.is_some()),
            ("command_concurrency", raw.command_concurrency.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, present)| present.then_some(key))
        .collect();
        let mut misplaced = false;
        for key in set {
            let owner = BACKEND_KEYS
                .iter()
                .find(|(k, _)| *k == key)
                .map_or("", |(_, b)| *b);
            if owner != name {
                self.error(
                    &format!("ban.{key}"),
                    format!("is a key of backend \"{owner}\", but backend is \"{name}\""),
                );
                misplaced = true;
            }
        }
        let backend = match name {
            "nftables" => Backend::Nftables,
            "log" => Backend::Log,
            "ipset" => Backend::Ipset(IpsetConfig {
                ipset: raw.ipset.clone().unwrap_or_else(|| "ipset".into()),
                iptables: raw.iptables.clone().unwrap_or_else(|| "iptables".into()),
                ip6tables: raw.ip6tables.clone().unwrap_or_else(|| "ip6tables".into()),
            }),
            "hosts-deny" => {
                let daemons = raw.hosts_deny_daemons.as_deref().unwrap_or("ALL");
                if !daemon_list_ok(daemons) {
                    self.error(
                        "ban.hosts_deny_daemons",
                        format!("\"{daemons}\" must be a daemon list such as \"ALL\" or \"sshd, vsftpd\""),
                    );
                    return None;
                }
                Backend::HostsDeny(HostsDenyConfig {
                    path: raw
                        .hosts_deny
                        .clone()
                        .unwrap_or_else(|| "/etc/hosts.deny".into()),
                    daemons: daemons.to_string(),
                })
            }
            "command" => self.command_backend(raw)?,
            other => {
                self.error(
                    "ban.backend",
                    format!("\"{other}\" is not a backend; use \"nftables\", \"ipset\", \"hosts-deny\", \"command\" or \"log\""),
                );
                return None;
            }
        };
        (!misplaced).then_some(backend)
    }

    fn command_backend(&mut self, raw: &raw::RawBan) -> Option<Backend> {
        let timeout = match &raw.command_timeout {
            None => DEFAULT_COMMAND_TIMEOUT,
            Some(d) => self.positive("ban.command_timeout", d)?,
        };
        let keys = CommandKeys {
            ban: &raw.ban,
            unban: &raw.unban,
            start: &raw.start,
            stop: &raw.stop,
            concurrency: raw.command_concurrency,
        };
        self.command_config("ban", keys, timeout)
            .map(Backend::Command)
    }

    /// The command backend's keys under `prefix` (`ban`, `target.NAME`), compiled.
    pub(super) fn command_config(
        &mut self,
        prefix: &str,
        keys: CommandKeys<'_>,
        timeout: Duration,
    ) -> Option<CommandConfig> {
        let mut template = |key: &str, argv: &Option<Vec<String>>, required: bool| match argv {
            None if required => {
                self.error(
                    &format!("{prefix}.{key}"),
                    "the command backend needs it: an argv list such as [\"/usr/local/sbin/block\", \"<ip>\"]",
                );
                Err(())
            }
            None => Ok(None),
            Some(argv) => match ArgvTemplate::parse(argv) {
                Ok(t) => Ok(Some(t)),
                Err(e) => {
                    self.error(&format!("{prefix}.{key}"), e);
                    Err(())
                }
            },
        };
        let ban = template("ban", keys.ban, true);
        let unban = template("unban", keys.unban, true);
        let start = template("start", keys.start, false);
        let stop = template("stop", keys.stop, false);
        let concurrency = match keys.concurrency {
            None => Some(DEFAULT_COMMAND_CONCURRENCY),
            Some(n) => match usize::try_from(n) {
                Ok(n) if (1..=256).contains(&n) => Some(n),
                _ => {
                    self.error(
                        &format!("{prefix}.command_concurrency"),
                        format!("{n} must be 1 to 256"),
                    );
                    None
                }
            },
        };
        Some(CommandConfig {
            ban: ban.ok()?.expect("required"),
            unban: unban.ok()?.expect("required"),
            start: start.ok()?,
            stop: stop.ok()?,
            timeout,
            concurrency: concurrency?,
        })
    }
}

/// The command backend's raw keys, wherever they are written.
pub(super) struct CommandKeys<'a> {
    pub ban: &'a Option<Vec<String>>,
    pub unban: &'a Option<Vec<String>>,
    pub start: &'a Option<Vec<String>>,
    pub stop: &'a Option<Vec<String>>,
    pub concurrency: Option<i64>,
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
