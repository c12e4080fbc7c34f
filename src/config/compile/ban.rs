//! `[ban]`: backend, table, collector name, reconcile interval.

use std::path::PathBuf;

use super::Compiler;
use crate::config::raw::{self};
use crate::config::types::*;

impl Compiler<'_> {
    pub(in crate::config) fn ban(&mut self, raw: &raw::RawBan) -> Option<BanConfig> {
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
        let table = match TableName::new(raw.table.as_deref().unwrap_or("syslog2ban")) {
            Ok(table) => table,
            Err(e) => {
                self.error("ban.table", e);
                return None;
            }
        };
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
