//! `[cluster]`: the shared engine.

use std::time::Duration;

use super::Compiler;
use crate::config::cluster::{ClusterConfig, EngineUrl, NodeName, SentinelConfig};
use crate::config::duration::{ParsedDuration, RawDuration};
use crate::config::raw::RawCluster;

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
const DEFAULT_BUFFER: usize = 100_000;
const DEFAULT_PREFIX: &str = "syslog2ban";
const DEFAULT_ANNOUNCE_DELAY: Duration = Duration::from_secs(3);
/// Longest `announce_delay`: notifications are for people, and an hour late is no longer news.
const MAX_ANNOUNCE_DELAY: Duration = Duration::from_secs(3600);

impl Compiler<'_> {
    /// Compiles `[cluster]`.
    pub(super) fn cluster(&mut self, raw: &RawCluster) -> Option<ClusterConfig> {
        match raw.engine.as_deref() {
            Some("redis" | "valkey") => {}
            Some(other) => {
                self.error(
                    "cluster.engine",
                    format!("\"{other}\" is not an engine; use \"redis\" (Valkey or Redis)"),
                );
                return None;
            }
            None => {
                self.error("cluster.engine", "required: \"redis\" (Valkey or Redis)");
                return None;
            }
        }
        let urls = raw.urls.clone().unwrap_or_default();
        if urls.is_empty() {
            self.error(
                "cluster.urls",
                "required: the engine's servers, e.g. [\"redis://10.0.0.5:6379\"]",
            );
            return None;
        }
        let servers = self.engine_urls("cluster.urls", &urls)?;
        let sentinel = self.sentinel(raw)?;
        let node = match raw.node.clone().or_else(host_name) {
            Some(name) => match NodeName::new(&name) {
                Ok(n) => n,
                Err(e) => {
                    self.error("cluster.node", e);
                    return None;
                }
            },
            None => {
                self.error("cluster.node", "required: this collector's name");
                return None;
            }
        };
        let prefix = raw.prefix.clone().unwrap_or_else(|| DEFAULT_PREFIX.into());
        if prefix.is_empty() || prefix.contains(['{', '}', ' ']) {
            self.error(
                "cluster.prefix",
                format!("\"{prefix}\" must be non-empty, without braces or spaces"),
            );
            return None;
        }
        let timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(d) => self.positive("cluster.timeout", d)?,
        };
        if let Some(path) = &raw.ca_file {
            if let Err(e) = crate::tls_client::check_ca_file(path) {
                self.error("cluster.ca_file", e);
                return None;
            }
        }
        let buffer = match raw.buffer {
            None => DEFAULT_BUFFER,
            Some(n) if n >= 1 => n as usize,
            Some(n) => {
                self.error("cluster.buffer", format!("{n} must be at least 1"));
                return None;
            }
        };
        let announce_delay = match raw.announce_delay.as_ref().map(RawDuration::parse) {
            None => DEFAULT_ANNOUNCE_DELAY,
            Some(Ok(ParsedDuration::Finite(d))) if d <= MAX_ANNOUNCE_DELAY => d,
            Some(Ok(_)) => {
                self.error(
                    "cluster.announce_delay",
                    "must be a duration from 0s to 1h (how long notifications wait)",
                );
                return None;
            }
            Some(Err(e)) => {
                self.error("cluster.announce_delay", e);
                return None;
            }
        };
        Some(ClusterConfig {
            urls: servers,
            sentinel,
            node,
            prefix,
            timeout,
            ca_file: raw.ca_file.clone(),
            buffer,
            announce_delay,
        })
    }
}

impl Compiler<'_> {
    /// Each of `urls` parsed; None (reported at `key[i]`) when one does not.
    fn engine_urls(&mut self, key: &str, urls: &[String]) -> Option<Vec<EngineUrl>> {
        let mut servers = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            match EngineUrl::parse(url) {
                Ok(u) => servers.push(u),
                Err(e) => {
                    self.error(&format!("{key}[{i}]"), e);
                    return None;
                }
            }
        }
        Some(servers)
    }

    /// `sentinels` with `sentinel_master`: both or neither. Some(None): no sentinels.
    fn sentinel(&mut self, raw: &RawCluster) -> Option<Option<SentinelConfig>> {
        let sentinels = raw.sentinels.clone().unwrap_or_default();
        match (sentinels.is_empty(), raw.sentinel_master.as_deref()) {
            (true, None) => Some(None),
            (true, Some(_)) => {
                self.error(
                    "cluster.sentinel_master",
                    "set without sentinels: list them in cluster.sentinels, e.g. [\"redis://10.0.0.7:26379\"]",
                );
                None
            }
            (false, None | Some("")) => {
                self.error(
                    "cluster.sentinel_master",
                    "required with cluster.sentinels: the name they monitor the primary by (`sentinel monitor NAME ...`)",
                );
                None
            }
            (false, Some(master)) => {
                let urls = self.engine_urls("cluster.sentinels", &sentinels)?;
                Some(Some(SentinelConfig {
                    urls,
                    master: master.to_string(),
                }))
            }
        }
    }
}

/// The kernel's host name.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
