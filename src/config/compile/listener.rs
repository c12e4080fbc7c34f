//! `[[listen]]` entries: which keys each type takes, addresses, limits, TLS settings.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::Compiler;
use crate::config::raw::RawListener;
use crate::config::types::*;
use crate::input::tls::TlsSettings;

impl Compiler<'_> {
    /// `max_connections`, `max_connections_per_peer`, `idle_timeout`, `handshake_timeout` of
    /// a stream listener.
    pub(in crate::config) fn connection_limits(
        &mut self,
        index: usize,
        raw: &RawListener,
    ) -> Option<ConnectionLimits> {
        let key = |field: &str| format!("listen[{index}].{field}");
        let count = |this: &mut Self, field: &str, value: Option<u64>, default: usize| match value {
            None => Some(default),
            Some(n) if n >= 1 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Some(_) => {
                this.error(&key(field), "must be at least 1");
                None
            }
        };
        let max_connections = count(
            self,
            "max_connections",
            raw.max_connections,
            DEFAULT_MAX_CONNECTIONS,
        )?;
        let max_connections_per_peer = count(
            self,
            "max_connections_per_peer",
            raw.max_connections_per_peer,
            DEFAULT_MAX_CONNECTIONS_PER_PEER.min(max_connections),
        )?;
        let idle_timeout = match &raw.idle_timeout {
            None => DEFAULT_IDLE_TIMEOUT,
            Some(d) => self.positive(&key("idle_timeout"), d)?,
        };
        let handshake_timeout = match &raw.handshake_timeout {
            None => DEFAULT_HANDSHAKE_TIMEOUT,
            Some(d) => self.positive(&key("handshake_timeout"), d)?,
        };
        Some(ConnectionLimits {
            max_connections,
            max_connections_per_peer,
            idle_timeout,
            handshake_timeout,
        })
    }

    pub(in crate::config) fn listener(
        &mut self,
        index: usize,
        raw: &RawListener,
    ) -> Option<ListenerConfig> {
        let key = |field: &str| format!("listen[{index}].{field}");
        let max_frame = match raw.max_frame {
            None => DEFAULT_MAX_FRAME,
            Some(n) if (512..=16 * 1024 * 1024).contains(&n) => n as usize,
            Some(n) => {
                self.error(
                    &key("max_frame"),
                    format!("{n} is outside 512..=16777216 bytes"),
                );
                return None;
            }
        };
        // Which keys a type takes is one table: any other key is an unknown key there.
        let Some(takes) = LISTENER_KEYS
            .iter()
            .find(|(kind, _)| *kind == raw.kind)
            .map(|(_, groups)| groups.concat())
        else {
            self.error(
                &key("type"),
                format!(
                    "\"{}\" is not a listener type; use {}",
                    raw.kind,
                    listener_types()
                ),
            );
            return None;
        };
        let unknown: Vec<&str> = raw
            .keys_set()
            .into_iter()
            .filter(|k| !takes.contains(k))
            .collect();
        for field in &unknown {
            self.error(
                &key(field),
                format!(
                    "unknown key for type \"{}\" (it takes: type, {})",
                    raw.kind,
                    takes.join(", ")
                ),
            );
        }
        if !unknown.is_empty() {
            return None;
        }
        let mut allow = Vec::new();
        for (i, text) in raw.allow.iter().flatten().enumerate() {
            match parse_net(text) {
                Some(net) => allow.push(net),
                None => self.error(
                    &format!("listen[{index}].allow[{i}]"),
                    format!("\"{text}\" is not an IP address or CIDR range"),
                ),
            }
        }
        if raw.allow.as_ref().is_some_and(|a| a.is_empty()) {
            self.error(
                &key("allow"),
                "an empty allow-list would refuse every sender; remove the key to allow all",
            );
        }
        let address = |this: &mut Self| -> Option<SocketAddr> {
            match &raw.address {
                None => {
                    this.error(
                        &key("address"),
                        format!("required for type \"{}\"", raw.kind),
                    );
                    None
                }
                Some(text) => {
                    match text.parse::<SocketAddr>() {
                        Ok(addr) => Some(addr),
                        Err(_) => {
                            this.error(
                            &key("address"),
                            format!("\"{text}\" is not IP:PORT (e.g. \"0.0.0.0:514\" or \"[::]:514\")"),
                        );
                            None
                        }
                    }
                }
            }
        };
        let kind = match raw.kind.as_str() {
            "udp" | "tcp" | "tls" | "journal-upload" | "journal-stream" => {
                let address = address(self)?;
                if raw.kind == "udp" {
                    let recv_buffer = match raw.recv_buffer {
                        None => None,
                        Some(n) if (4096..=1 << 30).contains(&n) => Some(n as usize),
                        Some(n) => {
                            self.error(
                                &key("recv_buffer"),
                                format!("{n} is outside 4096..=1073741824 bytes"),
                            );
                            return None;
                        }
                    };
                    ListenerKind::Udp {
                        address,
                        recv_buffer,
                    }
                } else {
                    let limits = self.connection_limits(index, raw)?;
                    if raw.kind == "tcp" || raw.kind == "tls" {
                        let tls = if raw.kind == "tls" {
                            Some(self.tls(index, raw)?)
                        } else {
                            None
                        };
                        ListenerKind::Tcp {
                            address,
                            limits,
                            tls,
                        }
                    } else {
                        let max_entry = match raw.max_entry {
                            None => DEFAULT_MAX_ENTRY.max(max_frame),
                            Some(n) if n >= max_frame as u64 && n <= MAX_MAX_ENTRY as u64 => {
                                n as usize
                            }
                            Some(n) => {
                                self.error(
                                    &key("max_entry"),
                                    format!(
                                        "{n} is outside max_frame ({max_frame})..={MAX_MAX_ENTRY} bytes"
                                    ),
                                );
                                return None;
                            }
                        };
                        let tls = if raw.kind == "journal-upload"
                            && (raw.cert.is_some() || raw.key.is_some())
                        {
                            Some(self.tls(index, raw)?)
                        } else {
                            None
                        };
                        let journal = JournalListener {
                            address,
                            limits,
                            max_entry,
                            tls,
                        };
                        if raw.kind == "journal-upload" {
                            ListenerKind::JournalUpload(journal)
                        } else {
                            ListenerKind::JournalStream(journal)
                        }
                    }
                }
            }
            "unix" => {
                let Some(path) = raw.path.clone() else {
                    self.error(
                        &key("path"),
                        "required for type \"unix\" (e.g. \"/dev/log\")",
                    );
                    return None;
                };
                let mode = match raw.mode.as_deref() {
                    None => 0o666,
                    Some(text) => match u32::from_str_radix(text, 8) {
                        Ok(m) if m <= 0o777 => m,
                        _ => {
                            self.error(
                                &key("mode"),
                                format!("\"{text}\" is not an octal file mode like \"0660\""),
                            );
                            return None;
                        }
                    },
                };
                ListenerKind::Unix { path, mode }
            }
            // LISTENER_KEYS names every type handled above.
            _ => return None,
        };
        let label = match &kind {
            ListenerKind::Udp { address, .. } => format!("udp:{address}"),
            ListenerKind::Tcp {
                address,
                tls: Some(_),
                ..
            } => format!("tls:{address}"),
            ListenerKind::Tcp { address, .. } => format!("tcp:{address}"),
            ListenerKind::Unix { path, .. } => format!("unix:{}", path.display()),
            ListenerKind::JournalUpload(j) => format!("journal-upload:{}", j.address),
            ListenerKind::JournalStream(j) => format!("journal-stream:{}", j.address),
        };
        Some(ListenerConfig {
            label,
            allow,
            trust_hostname: raw.trust_hostname.unwrap_or(false),
            kind,
            max_frame,
        })
    }

    /// The TLS keys of a `type = "tls"` listener; the files must exist and be readable.
    pub(in crate::config) fn tls(
        &mut self,
        index: usize,
        raw: &RawListener,
    ) -> Option<TlsSettings> {
        let key = |field: &str| format!("listen[{index}].{field}");
        let file = |this: &mut Self,
                    field: &str,
                    path: &Option<PathBuf>,
                    required: bool|
         -> Option<Option<PathBuf>> {
            match path {
                None if required => {
                    this.error(&key(field), "required for type \"tls\" (a PEM file)");
                    None
                }
                None => Some(None),
                Some(p) if std::fs::File::open(p).is_err() => {
                    this.error(&key(field), format!("cannot read {}", p.display()));
                    None
                }
                Some(p) => Some(Some(p.clone())),
            }
        };
        let cert = file(self, "cert", &raw.cert, true);
        let tls_key = file(self, "key", &raw.key, true);
        let client_ca = file(self, "client_ca", &raw.client_ca, false);
        let mut allowed_fingerprints = Vec::new();
        for (i, text) in raw.allowed_fingerprints.iter().flatten().enumerate() {
            match crate::input::tls::normalize_fingerprint(text) {
                Some(f) => allowed_fingerprints.push(f),
                None => self.error(
                    &format!("listen[{index}].allowed_fingerprints[{i}]"),
                    format!(
                        "\"{text}\" is not a SHA-256 fingerprint (SHA256:AB:CD:... with 32 bytes)"
                    ),
                ),
            }
        }
        let allowed_names = raw
            .allowed_names
            .iter()
            .flatten()
            .map(|n| n.to_lowercase())
            .collect();
        Some(TlsSettings {
            cert: cert??,
            key: tls_key??,
            client_ca: client_ca?,
            allowed_fingerprints,
            allowed_names,
        })
    }
}

/// Keys every network listener takes.
const NETWORK: &[&str] = &["address", "max_frame", "allow", "trust_hostname"];
/// Keys of listeners that accept connections.
const STREAM: &[&str] = &[
    "max_connections",
    "max_connections_per_peer",
    "idle_timeout",
    "handshake_timeout",
];
/// Keys of listeners that speak TLS.
const TLS: &[&str] = &[
    "cert",
    "key",
    "client_ca",
    "allowed_fingerprints",
    "allowed_names",
];

/// The keys each listener type takes, besides `type`, as groups (`allow` needs a sender
/// address, the limits a connection, the TLS keys a handshake; a unix socket has a path).
/// One table instead of a serde enum per type: serde's `deny_unknown_fields` does not combine
/// with `flatten`, so an enum would repeat the shared keys in six structs.
const LISTENER_KEYS: &[(&str, &[&[&str]])] = &[
    ("udp", &[NETWORK, &["recv_buffer"]]),
    ("unix", &[&["path", "mode", "max_frame", "trust_hostname"]]),
    ("tcp", &[NETWORK, STREAM]),
    ("tls", &[NETWORK, STREAM, TLS]),
    ("journal-upload", &[NETWORK, STREAM, &["max_entry"], TLS]),
    ("journal-stream", &[NETWORK, STREAM, &["max_entry"]]),
];

/// `"udp", "tcp", ...` for error messages.
fn listener_types() -> String {
    let names: Vec<String> = LISTENER_KEYS
        .iter()
        .map(|(t, _)| format!("\"{t}\""))
        .collect();
    names.join(", ")
}
