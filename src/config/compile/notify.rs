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
            Some(kind @ ("mail" | "abuseipdb" | "blocklist-de")) => {
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
                    format!("\"{other}\" is not a notifier type; use \"webhook\""),
                );
                return None;
            }
            None => {
                self.error(&key("type"), "required: \"webhook\"");
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
