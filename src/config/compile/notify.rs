//! `[notify.NAME]`: notifiers, and jails' `notify` lists naming them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Compiler;
use crate::config::notify::*;
use crate::config::raw::RawNotify;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Compiler<'_> {
    /// Compiles every `[notify.NAME]`.
    pub(super) fn notifiers(&mut self, raw: &BTreeMap<String, RawNotify>) -> Vec<NotifierConfig> {
        raw.iter()
            .filter_map(|(name, n)| self.notifier(name, n))
            .collect()
    }

    fn notifier(&mut self, name: &str, raw: &RawNotify) -> Option<NotifierConfig> {
        let prefix = format!("notify.{name}");
        let key = |field: &str| format!("{prefix}.{field}");
        let name = match NotifierName::new(name) {
            Ok(n) => n,
            Err(e) => {
                self.error(&prefix, e);
                return None;
            }
        };
        let mut events = Events {
            ban: false,
            unban: false,
        };
        for event in raw.events.clone().unwrap_or_else(|| vec!["ban".into()]) {
            match event.as_str() {
                "ban" => events.ban = true,
                "unban" => events.unban = true,
                other => self.error(
                    &key("events"),
                    format!("\"{other}\" is not an event; use \"ban\" and/or \"unban\""),
                ),
            }
        }
        let timeout = match &raw.timeout {
            None => Some(DEFAULT_TIMEOUT),
            Some(d) => self.positive(&key("timeout"), d),
        };
        let kind_name = raw.kind.as_deref().unwrap_or("");
        for (field, present, owner) in [
            ("secret", raw.secret.is_some(), "webhook"),
            ("key", raw.key.is_some(), "abuseipdb"),
            ("categories", raw.categories.is_some(), "abuseipdb"),
            ("period", raw.period.is_some(), "abuseipdb"),
            ("redact", raw.redact.is_some(), "abuseipdb"),
        ] {
            if present && kind_name != owner && !kind_name.is_empty() {
                self.error(
                    &key(field),
                    format!("is a key of type \"{owner}\", not of \"{kind_name}\""),
                );
                return None;
            }
        }
        let kind = match raw.kind.as_deref() {
            Some("webhook") => {
                let url = match raw.url.as_deref().map(HttpUrl::parse) {
                    Some(Ok(url)) => url,
                    Some(Err(e)) => {
                        self.error(&key("url"), e);
                        return None;
                    }
                    None => {
                        self.error(&key("url"), "required: where the webhook POSTs");
                        return None;
                    }
                };
                if raw.secret.as_deref() == Some("") {
                    self.error(&key("secret"), "is empty; leave it out for unsigned posts");
                    return None;
                }
                NotifierKind::Webhook(WebhookConfig {
                    url,
                    secret: raw.secret.clone(),
                    timeout: timeout?,
                })
            }
            Some("abuseipdb") => {
                let url = match raw.url.as_deref().map(HttpUrl::parse) {
                    None => HttpUrl::parse(ABUSEIPDB_REPORT_URL).expect("the built-in URL parses"),
                    Some(Ok(url)) => url,
                    Some(Err(e)) => {
                        self.error(&key("url"), e);
                        return None;
                    }
                };
                let Some(api_key) = raw.key.clone().filter(|k| !k.is_empty()) else {
                    self.error(&key("key"), "required: the AbuseIPDB API key");
                    return None;
                };
                let categories: Vec<u8> = match &raw.categories {
                    Some(list) if !list.is_empty() => {
                        let mut out = Vec::new();
                        for n in list {
                            match u8::try_from(*n) {
                                Ok(c) if (1..=30).contains(&c) => out.push(c),
                                _ => {
                                    self.error(
                                        &key("categories"),
                                        format!("{n} is not an AbuseIPDB category id (1-30)"),
                                    );
                                    return None;
                                }
                            }
                        }
                        out
                    }
                    _ => {
                        self.error(
                            &key("categories"),
                            "required: AbuseIPDB category ids, e.g. [18, 22] for SSH brute force",
                        );
                        return None;
                    }
                };
                let redact = raw.redact.clone().unwrap_or_default();
                for (i, pattern) in redact.iter().enumerate() {
                    if let Err(e) = regex::Regex::new(pattern) {
                        self.error(&format!("{}[{i}]", key("redact")), e.to_string());
                        return None;
                    }
                }
                let period = match &raw.period {
                    None => Duration::from_secs(86_400),
                    Some(d) => self.positive(&key("period"), d)?,
                };
                if events.unban {
                    self.error(&key("events"), "abuseipdb reports bans only: use [\"ban\"]");
                    return None;
                }
                NotifierKind::AbuseIpdb(AbuseIpdbConfig {
                    url,
                    key: api_key,
                    categories,
                    period,
                    redact,
                    timeout: timeout?,
                })
            }
            Some(kind @ ("mail" | "blocklist-de")) => {
                self.error(
                    &key("type"),
                    format!(
                        "\"{kind}\" is not built yet; \"webhook\" is (see README, Notifications)"
                    ),
                );
                return None;
            }
            Some(other) => {
                self.error(
                    &key("type"),
                    format!("\"{other}\" is not a notifier type; use \"webhook\" or \"abuseipdb\""),
                );
                return None;
            }
            None => {
                self.error(&key("type"), "required: \"webhook\" or \"abuseipdb\"");
                return None;
            }
        };
        Some(NotifierConfig { name, events, kind })
    }

    /// A `notify` list at `key`, each name a defined notifier.
    pub(super) fn notify_list(&mut self, key: &str, raw: &[String]) -> Vec<NotifierName> {
        let mut out = Vec::new();
        for (i, name) in raw.iter().enumerate() {
            match self.notifier_names.iter().find(|n| n.as_str() == name) {
                Some(n) => out.push(n.clone()),
                None => self.error(
                    &format!("{key}[{i}]"),
                    format!("no [notify.{name}] is defined"),
                ),
            }
        }
        out
    }
}
