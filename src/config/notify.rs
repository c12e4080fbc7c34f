//! `[notify.NAME]`, compiled: who is told about bans, and how. Plain data; the delivery is
//! the `notify` stage's.

use std::time::Duration;

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

/// A notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierConfig {
    /// Its name.
    pub name: NotifierName,
    /// What it hears.
    pub events: Events,
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
