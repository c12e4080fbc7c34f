//! Compiling: the raw values of the merged files become the runtime configuration, with every
//! error collected (file, key and, where found, line) instead of stopping at the first.
//!
//! `Compiler` walks the figment; one file per concern adds its part: `listener`, `jail`, `ban`
//! and `target` (remote targets and placement).

mod ban;
mod cluster;
mod feed;
mod jail;
mod listener;
mod notify;
mod target;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::{Figment, Source};

use super::duration::{ParsedDuration, RawDuration};
use super::error::{ConfigError, ConfigErrors};
use super::raw::{RawConfig, RawJailSettings};
use super::types::*;
use crate::config::error::{dotted, find_line};

/// Walks the merged figment, collecting every error instead of stopping at the first.
pub(in crate::config) struct Compiler<'a> {
    pub(in crate::config) figment: &'a Figment,
    pub(in crate::config) errors: Vec<ConfigError>,
    /// Compiled before the jails, whose `placement` names them.
    pub(in crate::config) targets: Vec<TargetConfig>,
    /// Compiled before the jails, whose `notify` names them.
    pub(in crate::config) notifier_names: Vec<crate::config::notify::NotifierName>,
}

impl<'a> Compiler<'a> {
    pub(in crate::config) fn new(figment: &'a Figment) -> Self {
        Compiler {
            figment,
            errors: Vec::new(),
            targets: Vec::new(),
            notifier_names: Vec::new(),
        }
    }

    /// Records an error at `key`, finding the file that provided it.
    pub(in crate::config) fn error(&mut self, key: &str, message: impl Into<String>) {
        let file = self.file_of(key);
        let line = file.as_deref().and_then(|f| find_line(f, key));
        self.errors.push(ConfigError {
            file,
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub(in crate::config) fn file_of(&self, key: &str) -> Option<PathBuf> {
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

    pub(in crate::config) fn figment_error(&mut self, prefix: &str, err: figment::Error) {
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

    /// The errors of each top-level section on its own, and top-level keys that are no section
    /// (so one `check` run reports every broken section, not only the first).
    fn section_errors(&mut self) {
        use super::raw::{RawBan, RawControl, RawMetrics, RawRecidive, RawState, RawTarget};
        use std::collections::BTreeMap;
        const SECTIONS: &[&str] = &[
            "listen", "defaults", "ban", "control", "state", "recidive", "metrics", "target",
            "notify", "feed", "cluster", "jail",
        ];
        if let Ok(top) = self
            .figment
            .extract::<BTreeMap<String, figment::value::Value>>()
        {
            let unknown: Vec<String> = top
                .keys()
                .filter(|k| !SECTIONS.contains(&k.as_str()))
                .filter(|k| !self.errors.iter().any(|e| &e.key == *k))
                .cloned()
                .collect();
            for key in &unknown {
                self.error(
                    key,
                    format!("unknown key (the sections are: {})", SECTIONS.join(", ")),
                );
            }
        }
        fn check<T: serde::de::DeserializeOwned>(this: &mut Compiler<'_>, key: &str) {
            match this.figment.extract_inner::<T>(key) {
                Err(e) if !e.missing() => this.figment_error(key, e),
                _ => {}
            }
        }
        // `listen` is left to the whole-file error: figment's path of an array element has
        // no index, and `listen[1].port` is what the user needs.
        check::<RawJailSettings>(self, "defaults");
        check::<RawBan>(self, "ban");
        check::<RawControl>(self, "control");
        check::<RawState>(self, "state");
        check::<RawRecidive>(self, "recidive");
        check::<RawMetrics>(self, "metrics");
        check::<BTreeMap<String, RawTarget>>(self, "target");
        check::<BTreeMap<String, crate::config::raw::RawNotify>>(self, "notify");
        check::<BTreeMap<String, crate::config::raw::RawFeed>>(self, "feed");
        check::<crate::config::raw::RawCluster>(self, "cluster");
    }

    pub(in crate::config) fn compile(mut self) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = match self.figment.extract() {
            Ok(raw) => raw,
            Err(err) => {
                // serde stops at the first error; section by section finds the others.
                self.figment_error("", err);
                self.section_errors();
                let mut seen = std::collections::HashSet::new();
                self.errors
                    .retain(|e| seen.insert((e.key.clone(), e.message.clone())));
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
        let notifiers = self.notifiers(&raw.notify);
        let cluster = raw.cluster.as_ref().and_then(|c| self.cluster(c));
        self.notifier_names = notifiers.iter().map(|n| n.name.clone()).collect();
        let defaults = self.defaults(&raw.defaults);
        let feeds = self.feeds(&raw.feed, &defaults);
        let mut jails = Vec::new();
        let mut disabled_jails = Vec::new();
        for name in raw.jail.keys() {
            match self.jail(name, &defaults) {
                Some((jail, true)) => jails.push(jail),
                Some((jail, false)) => disabled_jails.push(jail.name),
                None => {}
            }
        }
        for feed in &feeds {
            if jails.iter().any(|j: &JailConfig| j.name == feed.jail) {
                self.error(
                    &format!("feed.{}", feed.name),
                    format!(
                        "a jail is named {}, which holds this feed's bans; rename one",
                        feed.jail
                    ),
                );
            }
        }
        let ban = self.ban(&raw.ban);
        if let Some(ban) = &ban {
            let targets = std::mem::take(&mut self.targets);
            self.distinct_targets(&targets, &ban.table);
            self.targets = targets;
        }
        let control_socket = raw
            .control
            .socket
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET));
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
            notifiers,
            feeds,
            cluster,
            files: Vec::new(),
        })
    }

    pub(in crate::config) fn positive(&mut self, key: &str, raw: &RawDuration) -> Option<Duration> {
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

    pub(in crate::config) fn bantime(&mut self, key: &str, raw: &RawDuration) -> Option<BanTime> {
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
}
