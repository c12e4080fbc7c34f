//! `[defaults]`, `[jail.NAME]` and `[recidive]`: settings merged per jail, filters (native
//! or fail2ban's), growing bantimes.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

use super::Compiler;
use crate::config::duration::{ParsedDuration, RawDuration};
use crate::config::raw::{self, RawIncrement, RawJail, RawJailSettings, RawMode};
use crate::config::types::*;
use crate::fail2ban::{self, FilterSpec};
use crate::jail::filter::Filter;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Compiler<'_> {
    pub(in crate::config) fn defaults(&mut self, raw: &RawJailSettings) -> Settings {
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
            kill_connections: false,
            notify: Vec::new(),
            ports: None,
            protocol: Protocol::Tcp,
            placement: default_placement(),
        };
        self.settings("defaults", &base, raw)
    }

    pub(in crate::config) fn settings(
        &mut self,
        prefix: &str,
        base: &Settings,
        raw: &RawJailSettings,
    ) -> Settings {
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
        if let Some(kill) = raw.kill_connections {
            out.kill_connections = kill;
        }
        if let Some(list) = &raw.notify {
            out.notify = self.notify_list(&format!("{prefix}.notify"), list);
        }
        if let Some(list) = &raw.ports {
            let ports: Vec<u16> = list
                .iter()
                .filter_map(|n| match u16::try_from(*n) {
                    Ok(port) if port > 0 => Some(port),
                    _ => {
                        self.error(
                            &format!("{prefix}.ports"),
                            format!("{n} is not a port (1-65535)"),
                        );
                        None
                    }
                })
                .collect();
            if list.is_empty() {
                self.error(
                    &format!("{prefix}.ports"),
                    "is empty; leave it out to ban every port",
                );
            }
            out.ports = Some(ports);
        }
        if let Some(text) = &raw.protocol {
            match text.parse::<Protocol>() {
                Ok(protocol) => out.protocol = protocol,
                Err(e) => self.error(&format!("{prefix}.protocol"), e),
            }
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

    /// The merged increment settings of `prefix`, compiled; None when not enabled.
    pub(in crate::config) fn increment(
        &mut self,
        prefix: &str,
        raw: &RawIncrement,
    ) -> Option<Increment> {
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

    pub(in crate::config) fn recidive(
        &mut self,
        raw: &raw::RawRecidive,
        defaults: &Settings,
    ) -> Option<RecidiveConfig> {
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
        let notify = match &raw.notify {
            None => defaults.notify.clone(),
            Some(list) => self.notify_list("recidive.notify", list),
        };
        Some(RecidiveConfig {
            maxretry,
            findtime,
            bantime,
            placement,
            notify,
        })
    }

    /// Compiles one jail; returns it with its `enabled` flag.
    /// The patterns `mode` adds to a jail's failregex: its own and those of the modes it
    /// includes (each once). `normal` adds nothing unless the jail defines it.
    fn mode_patterns(
        &mut self,
        prefix: &str,
        mode: &str,
        modes: &BTreeMap<String, RawMode>,
    ) -> Option<Vec<String>> {
        if mode == "normal" && !modes.contains_key("normal") {
            return Some(Vec::new());
        }
        if !modes.contains_key(mode) {
            let mut known: Vec<&str> = modes.keys().map(String::as_str).collect();
            if !known.contains(&"normal") {
                known.insert(0, "normal");
            }
            self.error(
                &format!("{prefix}.mode"),
                format!(
                    "\"{mode}\" is not a mode of this jail (it has: {})",
                    known.join(", ")
                ),
            );
            return None;
        }
        let mut order = Vec::new();
        let mut todo = vec![mode.to_string()];
        while let Some(next) = todo.pop() {
            if order.contains(&next) {
                continue;
            }
            let Some(this) = modes.get(&next) else {
                self.error(
                    &format!("{prefix}.modes.{mode}.includes"),
                    format!("includes \"{next}\", which is not a mode of this jail"),
                );
                return None;
            };
            todo.extend(this.includes.iter().flatten().rev().cloned());
            order.push(next);
        }
        Some(
            order
                .iter()
                .flat_map(|m| modes[m].failregex.iter().flatten().cloned())
                .collect(),
        )
    }

    pub(in crate::config) fn jail(
        &mut self,
        name: &str,
        defaults: &Settings,
    ) -> Option<(JailConfig, bool)> {
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
        if name.starts_with(crate::config::types::FEED_JAIL_PREFIX) {
            self.error(
                &prefix,
                "names starting with 'feed-' are the jails of blocklist feeds ([feed.NAME] holds its bans in jail feed-NAME)",
            );
        }
        let fail2ban = match &raw.fail2ban_filter {
            Some(spec) => {
                // `failregex = []` is how a file overrides a native jail of the same name
                // from an earlier file (what import-fail2ban writes).
                if raw.failregex.as_ref().is_some_and(|f| !f.is_empty()) {
                    self.error(
                        &format!("{prefix}.fail2ban_filter"),
                        "use either failregex or fail2ban_filter, not both (a later file sets \
                         failregex = [] to replace a native jail's patterns)",
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
        let mut failregex = raw.failregex.clone().unwrap_or_default();
        match (&raw.fail2ban_filter, raw.mode.as_deref()) {
            (Some(_), Some(_)) => {
                self.error(
                    &format!("{prefix}.mode"),
                    "a jail with fail2ban_filter takes its mode in the filter's options: \
                     fail2ban_filter = \"…/sshd.conf[mode=aggressive]\"",
                );
                return None;
            }
            (None, mode) => {
                let modes = raw.modes.clone().unwrap_or_default();
                let extra = self.mode_patterns(&prefix, mode.unwrap_or("normal"), &modes)?;
                failregex.extend(extra);
            }
            (Some(_), None) => {}
        }
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
                kill_connections: settings.kill_connections,
                notify: settings.notify,
                ports: settings.ports.as_ref().map(|ports| {
                    Arc::new(
                        ports
                            .iter()
                            .map(|&number| Port {
                                protocol: settings.protocol,
                                number,
                            })
                            .collect(),
                    )
                }),
                placement: settings.placement,
            },
            enabled,
        ))
    }

    /// Loads a jail's fail2ban filter; a relative path is relative to the jail's file.
    pub(in crate::config) fn fail2ban_filter(
        &mut self,
        key: &str,
        spec: &str,
    ) -> Option<Fail2banSource> {
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
}

impl Settings {
    /// Where bans go by default.
    pub(in crate::config) fn placement(&self) -> &[PlacementRule] {
        &self.placement
    }

    /// Addresses never banned.
    pub(in crate::config) fn ignoreip(&self) -> &[IpNet] {
        &self.ignoreip
    }
}

#[derive(Debug, Clone)]
pub(in crate::config) struct Settings {
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
    kill_connections: bool,
    notify: Vec<crate::config::notify::NotifierName>,
    ports: Option<Vec<u16>>,
    protocol: Protocol,
    placement: Vec<PlacementRule>,
}
