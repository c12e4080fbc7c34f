//! `[notify.NAME]`: notifiers, and jails' `notify` lists naming them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Compiler;
use crate::config::notify::*;
use crate::config::raw::RawNotify;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_DIGEST_INTERVAL: Duration = Duration::from_secs(3600);

/// The notifier types.
const TYPES: [&str; 4] = ["webhook", "mail", "abuseipdb", "blocklist-de"];

/// Each type-specific key and whether `raw` has it.
fn raw_keys(raw: &RawNotify) -> [(&'static str, bool); 20] {
    [
        ("url", raw.url.is_some()),
        ("secret", raw.secret.is_some()),
        ("format", raw.format.is_some()),
        ("key", raw.key.is_some()),
        ("categories", raw.categories.is_some()),
        ("period", raw.period.is_some()),
        ("redact", raw.redact.is_some()),
        ("smtp", raw.smtp.is_some()),
        ("tls", raw.tls.is_some()),
        ("ca_file", raw.ca_file.is_some()),
        ("username", raw.username.is_some()),
        ("password", raw.password.is_some()),
        ("from", raw.from.is_some()),
        ("to", raw.to.is_some()),
        ("subject", raw.subject.is_some()),
        ("body", raw.body.is_some()),
        ("whois", raw.whois.is_some()),
        ("rdap_url", raw.rdap_url.is_some()),
        ("server", raw.server.is_some()),
        ("service", raw.service.is_some()),
    ]
}

/// The types a key belongs to.
fn owners(field: &str) -> &'static [&'static str] {
    match field {
        "url" => &["webhook", "abuseipdb", "blocklist-de"],
        "secret" | "format" => &["webhook"],
        "key" | "period" | "redact" => &["abuseipdb", "blocklist-de"],
        "categories" => &["abuseipdb"],
        "server" | "service" => &["blocklist-de"],
        _ => &["mail"],
    }
}

fn quoted(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    quoted.join(" or ")
}

/// `HOST`, `HOST:PORT` or `[V6]:PORT`.
fn split_host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad = || format!("\"{text}\" is not HOST or HOST:PORT");
    if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| bad())?),
        None => (text, default_port),
    };
    if host.is_empty() || host.contains([':', '/', ' ']) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Checks a mailbox as the mail notifier will read it.
fn mailbox(text: &str) -> Result<(), String> {
    text.parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|e| format!("\"{text}\" is not a mail address: {e}"))
}

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
        let kind_name = raw.kind.as_deref().unwrap_or("");
        if !TYPES.contains(&kind_name) {
            let why = if kind_name.is_empty() {
                "required".to_string()
            } else {
                format!("\"{kind_name}\" is not a notifier type")
            };
            self.error(&key("type"), format!("{why}; use {}", quoted(&TYPES)));
            return None;
        }
        for (field, present) in raw_keys(raw) {
            let owners = owners(field);
            if present && !owners.contains(&kind_name) {
                self.error(
                    &key(field),
                    format!(
                        "is a key of type {}, not of \"{kind_name}\"",
                        quoted(owners)
                    ),
                );
                return None;
            }
        }
        let mut events = Events {
            ban: false,
            unban: false,
        };
        let mut digest = false;
        for event in raw.events.clone().unwrap_or_else(|| vec!["ban".into()]) {
            match event.as_str() {
                "ban" => events.ban = true,
                "unban" => events.unban = true,
                "digest" => digest = true,
                other => self.error(
                    &key("events"),
                    format!(
                        "\"{other}\" is not an event; use \"ban\", \"unban\" and/or \"digest\""
                    ),
                ),
            }
        }
        if digest && !events.ban && !events.unban {
            // A digest of what, unless said: of bans.
            events.ban = true;
        }
        let reporter = matches!(kind_name, "abuseipdb" | "blocklist-de");
        if reporter && (events.unban || digest) {
            self.error(
                &key("events"),
                format!("{kind_name} reports bans one by one: use [\"ban\"]"),
            );
            return None;
        }
        let digest = match (&raw.digest_interval, digest) {
            (Some(_), false) => {
                self.error(
                    &key("digest_interval"),
                    "is only read with \"digest\" in events",
                );
                return None;
            }
            (None, true) => Some(DEFAULT_DIGEST_INTERVAL),
            (Some(d), true) => Some(self.positive(&key("digest_interval"), d)?),
            (None, false) => None,
        };
        let rate = match raw.rate.as_deref().map(Rate::parse) {
            None => None,
            Some(Ok(rate)) => Some(rate),
            Some(Err(e)) => {
                self.error(&key("rate"), e);
                return None;
            }
        };
        let timeout = match &raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(d) => self.positive(&key("timeout"), d)?,
        };
        let kind = match kind_name {
            "webhook" => NotifierKind::Webhook(self.webhook(&key, raw, timeout)?),
            "abuseipdb" => NotifierKind::AbuseIpdb(self.abuseipdb(&key, raw, timeout)?),
            "mail" => NotifierKind::Mail(self.mail(&key, raw, timeout)?),
            _ => NotifierKind::BlocklistDe(self.blocklist_de(&key, raw, timeout)?),
        };
        Some(NotifierConfig {
            name,
            events,
            digest,
            rate,
            kind,
        })
    }

    fn url(&mut self, key: &str, raw: Option<&str>, default: Option<&str>) -> Option<HttpUrl> {
        match raw.or(default).map(HttpUrl::parse) {
            Some(Ok(url)) => Some(url),
            Some(Err(e)) => {
                self.error(key, e);
                None
            }
            None => {
                self.error(key, "required: where to send");
                None
            }
        }
    }

    fn webhook(
        &mut self,
        key: &dyn Fn(&str) -> String,
        raw: &RawNotify,
        timeout: Duration,
    ) -> Option<WebhookConfig> {
        let url = self.url(&key("url"), raw.url.as_deref(), None)?;
        if raw.secret.as_deref() == Some("") {
            self.error(&key("secret"), "is empty; leave it out for unsigned posts");
            return None;
        }
        let format = match raw.format.as_deref() {
            None | Some("json") => WebhookFormat::Json,
            Some("slack") => WebhookFormat::Slack,
            Some("ntfy") => WebhookFormat::Ntfy,
            Some(other) => {
                self.error(
                    &key("format"),
                    format!("\"{other}\" is not a format; use \"json\", \"slack\" or \"ntfy\""),
                );
                return None;
            }
        };
        Some(WebhookConfig {
            url,
            secret: raw.secret.clone(),
            format,
            timeout,
        })
    }

    /// `redact` and `period`, shared by the reporters.
    fn reporting(
        &mut self,
        key: &dyn Fn(&str) -> String,
        raw: &RawNotify,
    ) -> Option<(Vec<String>, Duration)> {
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
        Some((redact, period))
    }

    fn abuseipdb(
        &mut self,
        key: &dyn Fn(&str) -> String,
        raw: &RawNotify,
        timeout: Duration,
    ) -> Option<AbuseIpdbConfig> {
        let url = self.url(&key("url"), raw.url.as_deref(), Some(ABUSEIPDB_REPORT_URL))?;
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
        let (redact, period) = self.reporting(key, raw)?;
        Some(AbuseIpdbConfig {
            url,
            key: api_key,
            categories,
            period,
            redact,
            timeout,
        })
    }

    fn blocklist_de(
        &mut self,
        key: &dyn Fn(&str) -> String,
        raw: &RawNotify,
        timeout: Duration,
    ) -> Option<BlocklistDeConfig> {
        let url = self.url(
            &key("url"),
            raw.url.as_deref(),
            Some(BLOCKLIST_DE_REPORT_URL),
        )?;
        let Some(server) = raw.server.clone().filter(|s| !s.is_empty()) else {
            self.error(
                &key("server"),
                "required: the e-mail address or id the reporting server is registered under",
            );
            return None;
        };
        let Some(api_key) = raw.key.clone().filter(|k| !k.is_empty()) else {
            self.error(&key("key"), "required: the server's blocklist.de API key");
            return None;
        };
        let (redact, period) = self.reporting(key, raw)?;
        Some(BlocklistDeConfig {
            url,
            server,
            key: api_key,
            service: raw.service.clone().filter(|s| !s.is_empty()),
            period,
            redact,
            timeout,
        })
    }

    fn mail(
        &mut self,
        key: &dyn Fn(&str) -> String,
        raw: &RawNotify,
        timeout: Duration,
    ) -> Option<MailConfig> {
        let tls = match raw.tls.as_deref() {
            None | Some("starttls") => SmtpTls::Starttls,
            Some("tls") => SmtpTls::Tls,
            Some("none") => SmtpTls::None,
            Some(other) => {
                self.error(
                    &key("tls"),
                    format!("\"{other}\" is not a mode; use \"starttls\", \"tls\" or \"none\""),
                );
                return None;
            }
        };
        let Some(smtp) = raw.smtp.as_deref().filter(|s| !s.is_empty()) else {
            self.error(&key("smtp"), "required: the SMTP server, HOST or HOST:PORT");
            return None;
        };
        let default_port = if tls == SmtpTls::Tls { 465 } else { 587 };
        let (host, port) = match split_host_port(smtp, default_port) {
            Ok(hp) => hp,
            Err(e) => {
                self.error(&key("smtp"), e);
                return None;
            }
        };
        if let Some(path) = &raw.ca_file {
            if let Err(e) = crate::tls_client::check_ca_file(path) {
                self.error(&key("ca_file"), e);
                return None;
            }
        }
        let credentials = match (&raw.username, &raw.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            (Some(_), None) => {
                self.error(&key("password"), "required with username");
                return None;
            }
            (None, Some(_)) => {
                self.error(&key("username"), "required with password");
                return None;
            }
        };
        if credentials.is_some() && tls == SmtpTls::None {
            self.error(
                &key("tls"),
                "is \"none\" with a password: the password would cross the network in clear",
            );
            return None;
        }
        let Some(from) = raw.from.clone() else {
            self.error(
                &key("from"),
                "required: the sender, e.g. \"syslog2ban@example.org\"",
            );
            return None;
        };
        if let Err(e) = mailbox(&from) {
            self.error(&key("from"), e);
            return None;
        }
        let to = raw.to.clone().unwrap_or_default();
        if to.is_empty() {
            self.error(&key("to"), "required: one or more recipients");
            return None;
        }
        for (i, address) in to.iter().enumerate() {
            if let Err(e) = mailbox(address) {
                self.error(&format!("{}[{i}]", key("to")), e);
                return None;
            }
        }
        let mut template = |field: &str, raw: Option<&str>, default: &str| match Template::parse(
            raw.unwrap_or(default),
        ) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(&key(field), e);
                None
            }
        };
        let subject = template("subject", raw.subject.as_deref(), DEFAULT_SUBJECT)?;
        let body = template("body", raw.body.as_deref(), DEFAULT_BODY)?;
        let whois = if raw.whois.unwrap_or(false) {
            let base = self.url(
                &key("rdap_url"),
                raw.rdap_url.as_deref(),
                Some(RDAP_DEFAULT_URL),
            )?;
            Some(RdapConfig { base, timeout })
        } else {
            if raw.rdap_url.is_some() {
                self.error(&key("rdap_url"), "is only read with whois = true");
                return None;
            }
            None
        };
        Some(MailConfig {
            host,
            port,
            tls,
            ca_file: raw.ca_file.clone(),
            credentials,
            from,
            to,
            subject,
            body,
            whois,
            timeout,
        })
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
