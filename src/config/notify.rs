//! `[notify.NAME]`, compiled: who is told about bans, and how. Plain data; the delivery is
//! the `notify` stage's.

use std::path::PathBuf;
use std::time::Duration;

pub use super::template::{Field, Template};

/// A notifier's name: `[A-Za-z0-9_-]{1,32}`, as jails' (it appears in logs and metrics).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NotifierName(String);

impl NotifierName {
    /// Checks `name`.
    pub fn new(name: &str) -> Result<Self, String> {
        let ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(NotifierName(name.to_string()))
        } else {
            Err(format!("\"{name}\" must be 1-32 of A-Z a-z 0-9 _ -"))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NotifierName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which events a notifier hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    /// A new ban.
    pub ban: bool,
    /// A ban's end (expiry or unban).
    pub unban: bool,
}

/// At most `count` deliveries in any `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Deliveries.
    pub count: u32,
    /// In this long.
    pub per: Duration,
}

impl Rate {
    /// Parses `N/DURATION`, e.g. `30/1h`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let bad = || format!("\"{text}\" is not N/DURATION, e.g. \"30/1h\"");
        let (count, per) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = humantime::parse_duration(per.trim()).map_err(|_| bad())?;
        if count == 0 || per.is_zero() {
            return Err(format!(
                "\"{text}\": both the count and the duration must be positive"
            ));
        }
        Ok(Rate { count, per })
    }
}

/// A notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierConfig {
    /// Its name.
    pub name: NotifierName,
    /// What it hears.
    pub events: Events,
    /// Some: the events are gathered and sent as one digest this often, instead of one
    /// message each.
    pub digest: Option<Duration>,
    /// At most this many deliveries; the rest wait in the outbox.
    pub rate: Option<Rate>,
    /// How it tells.
    pub kind: NotifierKind,
}

/// How a notifier tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifierKind {
    /// A JSON POST.
    Webhook(WebhookConfig),
    /// An AbuseIPDB v2 report per banned address.
    AbuseIpdb(AbuseIpdbConfig),
    /// A mail over SMTP.
    Mail(MailConfig),
    /// A blocklist.de report per banned address.
    BlocklistDe(BlocklistDeConfig),
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// STARTTLS, required (the default).
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// None: only for a relay on the same host or a trusted network.
    None,
}

/// `type = "mail"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailConfig {
    /// The SMTP server's host name (also the name its certificate must carry).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the connection is protected.
    pub tls: SmtpTls,
    /// PEM file of an extra CA the server's certificate may chain to (a private CA).
    pub ca_file: Option<PathBuf>,
    /// User name and password for SMTP AUTH.
    pub credentials: Option<(String, String)>,
    /// The sender mailbox (`Name <addr>` or `addr`).
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// Subject template.
    pub subject: Template,
    /// Body template.
    pub body: Template,
    /// Some: the address's RDAP summary fills `<whois>`.
    pub whois: Option<RdapConfig>,
    /// Longest one delivery may take.
    pub timeout: Duration,
}

/// RDAP (the JSON successor of WHOIS) lookups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdapConfig {
    /// The address is appended to this URL (a bootstrap service that redirects to the
    /// registry, or a registry's `/ip/`).
    pub base: HttpUrl,
    /// Longest one lookup may take.
    pub timeout: Duration,
}

/// The RDAP bootstrap service used by default.
pub const RDAP_DEFAULT_URL: &str = "https://rdap.org/ip/";

/// The subject of a mail unless `subject` says otherwise.
pub const DEFAULT_SUBJECT: &str = "[syslog2ban] <event> <ip> in <jail> (<failures> failures)";

/// The body of a mail unless `body` says otherwise.
pub const DEFAULT_BODY: &str = "syslog2ban: <event> <ip>

jail:     <jail>
origin:   <origin>
failures: <failures>
bantime:  <bantime>
started:  <started>
expires:  <expires>

Matched lines:
<lines>

<whois>
";

/// `type = "blocklist-de"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlocklistDeConfig {
    /// The report endpoint (blocklist.de's, or a stand-in).
    pub url: HttpUrl,
    /// The reporting server's e-mail address or id, as registered at blocklist.de.
    pub server: String,
    /// That server's API key.
    pub key: String,
    /// The service name reported (None: the jail's name).
    pub service: Option<String>,
    /// An address is reported at most once in this long.
    pub period: Duration,
    /// More redaction patterns for the logs sent.
    pub redact: Vec<String>,
    /// Longest one report may take.
    pub timeout: Duration,
}

/// blocklist.de's HTTP report endpoint.
pub const BLOCKLIST_DE_REPORT_URL: &str = "https://www.blocklist.de/en/httpreports.html";

/// How a webhook's body is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The documented JSON event.
    Json,
    /// `{"text": ...}`, for Slack's and Mattermost's incoming webhooks.
    Slack,
    /// A plain-text message with a `Title` header, for ntfy topics.
    Ntfy,
}

/// `type = "abuseipdb"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbuseIpdbConfig {
    /// The report endpoint (AbuseIPDB's, or a stand-in).
    pub url: HttpUrl,
    /// The API key (`Key` header).
    pub key: String,
    /// AbuseIPDB category ids.
    pub categories: Vec<u8>,
    /// An address is reported at most once in this long.
    pub period: Duration,
    /// More patterns whose matches are replaced in the comment (user names and addresses
    /// other than the reported one always are); each a valid regex.
    pub redact: Vec<String>,
    /// Longest one report may take.
    pub timeout: Duration,
}

/// AbuseIPDB's v2 report endpoint.
pub const ABUSEIPDB_REPORT_URL: &str = "https://api.abuseipdb.com/api/v2/report";

/// `type = "webhook"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: HttpUrl,
    /// HMAC-SHA256 key of the signature header (None: unsigned).
    pub secret: Option<String>,
    /// The body's shape.
    pub format: WebhookFormat,
    /// Longest one delivery may take.
    pub timeout: Duration,
}

/// An `http://` or `https://` URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// https.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http[s]://host[:port][/path]`; user info, fragments and other schemes are
    /// refused.
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("\"{text}\" is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let bad = |why: &str| Err(format!("\"{text}\": {why}"));
        if authority.contains('@') {
            return bad("user info in the URL is not supported; use `secret` for signing");
        }
        if path.contains('#') || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("no fragments, spaces or control characters");
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((host, after)) = v6.split_once(']') else {
                return bad("unclosed [ in the host");
            };
            match after.strip_prefix(':') {
                Some(port) => (
                    host,
                    port.parse().map_err(|_| format!("\"{text}\": bad port"))?,
                ),
                None if after.is_empty() => (host, default_port),
                None => return bad("text after the host"),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (
                    host,
                    port.parse().map_err(|_| format!("\"{text}\": bad port"))?,
                ),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return bad("no host");
        }
        Ok(HttpUrl {
            tls,
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_count_per_duration() {
        assert_eq!(
            Rate::parse("30/1h").unwrap(),
            Rate {
                count: 30,
                per: Duration::from_secs(3600)
            }
        );
        for bad in ["30", "0/1h", "x/1h", "5/", "5/0s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_taken_apart_and_odd_ones_refused() {
        let u = HttpUrl::parse("https://hooks.example.com/services/T0/B1?x=1").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "hooks.example.com", 443, "/services/T0/B1?x=1")
        );
        let u = HttpUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8080, "/")
        );
        let u = HttpUrl::parse("http://127.0.0.1:9/hook").unwrap();
        assert_eq!((u.tls, u.port), (false, 9));
        for bad in [
            "ftp://x/",
            "http://user:pw@x/",
            "http://x:notaport/",
            "http:///path",
            "http://x/a b",
            "http://x/#frag",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
