//! `[cluster]`, compiled: the Valkey/Redis engine several collectors share. Plain data; the
//! connection and the protocol are the `cluster` stage's.

use std::path::PathBuf;
use std::time::Duration;

/// One engine server: `redis://[user:password@]host[:port][/db]` or `rediss://` (TLS).
#[derive(Clone, PartialEq, Eq)]
pub struct EngineUrl {
    /// TLS (`rediss://`).
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (default 6379).
    pub port: u16,
    /// ACL user name (None: the default user).
    pub username: Option<String>,
    /// Password (None: no AUTH).
    pub password: Option<String>,
    /// Database number (default 0).
    pub db: u32,
}

impl std::fmt::Debug for EngineUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: this ends up in logs.
        write!(f, "{self}")
    }
}

impl std::fmt::Display for EngineUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{host}:{}/{}", self.port, self.db)
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a % not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_string())
}

impl EngineUrl {
    /// Parses a `redis://` or `rediss://` URL.
    pub fn parse(text: &str) -> Result<EngineUrl, String> {
        let bad = |why: &str| format!("\"{}\": {why}", redact(text));
        let (tls, rest) = if let Some(rest) = text.strip_prefix("rediss://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("redis://") {
            (false, rest)
        } else {
            return Err(bad("not a redis:// or rediss:// URL"));
        };
        let (authority, db) = match rest.split_once('/') {
            Some((a, "")) => (a, 0),
            Some((a, db)) => (
                a,
                db.parse()
                    .map_err(|_| bad("the database is not a number"))?,
            ),
            None => (rest, 0),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((user, pass)) => (user, Some(pass)),
                    None => (u, None),
                };
                let user = percent_decode(user).map_err(|e| bad(&e))?;
                let pass = pass.map(percent_decode).transpose().map_err(|e| bad(&e))?;
                match pass {
                    // `redis://:password@host`: the default user.
                    Some(p) => ((!user.is_empty()).then_some(user), Some(p)),
                    // `redis://password@host`, as redis-cli reads it.
                    None => (None, Some(user)),
                }
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => 6379,
                None => return Err(bad("text after the host")),
            };
            (host.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad("bad port"))?),
                None => (hostport.to_string(), 6379),
            }
        };
        if host.is_empty() || host.contains(['/', ' ', '?', '#']) {
            return Err(bad("no host"));
        }
        Ok(EngineUrl {
            tls,
            host,
            port,
            username,
            password,
            db,
        })
    }
}

/// `text` with the password of a URL replaced, for error messages.
fn redact(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let (head, tail) = text.split_at(at);
            let (scheme, _) = head.split_at(s + 3);
            format!("{scheme}***{tail}")
        }
        _ => text.to_string(),
    }
}

/// A collector's name in the cluster: `[A-Za-z0-9_.-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeName(String);

impl NodeName {
    /// Checks `name`.
    pub fn new(name: &str) -> Result<NodeName, String> {
        let ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(NodeName(name.to_string()))
        } else {
            Err(format!("\"{name}\" must be 1-64 of A-Z a-z 0-9 _ - ."))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `sentinels` and `sentinel_master`: where to ask which server is the primary. The
/// primary they name is reached with the scheme, user, password and database of the first
/// of `urls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelConfig {
    /// The sentinels, asked in order.
    pub urls: Vec<EngineUrl>,
    /// The name they monitor the primary by.
    pub master: String,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The engine's servers, tried in order (a primary and its replicas after a failover).
    pub urls: Vec<EngineUrl>,
    /// Sentinels that name the primary, asked before `urls` are tried.
    pub sentinel: Option<SentinelConfig>,
    /// This collector's name.
    pub node: NodeName,
    /// Prefix of every key (several clusters on one engine).
    pub prefix: String,
    /// Longest one engine call may take before the collector counts alone.
    pub timeout: Duration,
    /// PEM CA for `rediss://` servers, besides the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// Most failures and bans held for the engine while it is away.
    pub buffer: usize,
    /// How long a ban's notifications wait before they go out: a ban two collectors decided
    /// at once is announced by one, and the other's notifications must still be waiting
    /// when it learns so.
    pub announce_delay: Duration,
}

impl ClusterConfig {
    /// One line for `check`: this collector's name, the servers it reaches and how (TLS,
    /// credentials given or not; never the password itself).
    pub fn summary(&self) -> String {
        let list = |urls: &[EngineUrl]| {
            urls.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let first = self.urls.first();
        let credentials = match first.map(|u| (u.username.as_deref(), u.password.is_some())) {
            Some((Some(user), true)) => format!("user {user} with a password"),
            Some((None, true)) => "a password".to_string(),
            _ => "no password".to_string(),
        };
        let tls = if first.is_some_and(|u| u.tls) {
            match &self.ca_file {
                Some(ca) => format!("TLS (CA file {})", ca.display()),
                None => "TLS".to_string(),
            }
        } else {
            "no TLS".to_string()
        };
        let sentinel = self.sentinel.as_ref().map_or(String::new(), |s| {
            format!(
                ", primary {:?} named by sentinels {}",
                s.master,
                list(&s.urls)
            )
        });
        format!(
            "cluster: node {} on {} ({tls}, {credentials}){sentinel}, keys under {}:",
            self.node,
            list(&self.urls),
            self.prefix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_servers_and_credentials_but_never_the_password() {
        let config = ClusterConfig {
            urls: vec![
                EngineUrl::parse("rediss://s2b:hunter2@cache-a:6380").unwrap(),
                EngineUrl::parse("rediss://s2b:hunter2@cache-b:6380").unwrap(),
            ],
            sentinel: Some(SentinelConfig {
                urls: vec![EngineUrl::parse("redis://:hunter2@sentinel-a:26379").unwrap()],
                master: "s2b".to_string(),
            }),
            node: NodeName::new("collector-a").unwrap(),
            prefix: "fleet".to_string(),
            timeout: Duration::from_millis(250),
            ca_file: Some(PathBuf::from("/etc/syslog2ban/engine-ca.pem")),
            buffer: 100_000,
            announce_delay: Duration::from_secs(3),
        };
        let line = config.summary();
        assert_eq!(
            line,
            "cluster: node collector-a on rediss://cache-a:6380/0, rediss://cache-b:6380/0 (TLS (CA file /etc/syslog2ban/engine-ca.pem), user s2b with a password), primary \"s2b\" named by sentinels redis://sentinel-a:26379/0, keys under fleet:"
        );
        assert!(!line.contains("hunter2"));
        let plain = ClusterConfig {
            urls: vec![EngineUrl::parse("redis://127.0.0.1").unwrap()],
            sentinel: None,
            ca_file: None,
            ..config
        };
        assert_eq!(
            plain.summary(),
            "cluster: node collector-a on redis://127.0.0.1:6379/0 (no TLS, no password), keys under fleet:"
        );
    }

    #[test]
    fn engine_urls_are_taken_apart_and_never_print_the_password() {
        let u = EngineUrl::parse("rediss://s2b:p%40ss@cache.example.org:6380/2").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.db),
            (true, "cache.example.org", 6380, 2)
        );
        assert_eq!(
            (u.username.as_deref(), u.password.as_deref()),
            (Some("s2b"), Some("p@ss"))
        );
        assert_eq!(format!("{u:?}"), "rediss://cache.example.org:6380/2");
        let u = EngineUrl::parse("redis://:secret@[::1]").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.username), ("::1", 6379, None));
        assert_eq!(u.password.as_deref(), Some("secret"));
        let e = EngineUrl::parse("http://user:secret@x").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        for bad in ["redis://", "redis://x:port", "redis://x/db", "redis://[::1"] {
            assert!(EngineUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
