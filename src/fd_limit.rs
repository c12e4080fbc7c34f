//! The open-file budget: the daemon raises its soft `RLIMIT_NOFILE` to the hard limit at start
//! and keeps the listeners' `max_connections` under it, so idle connections meet
//! `max_connections` (accepted and closed, counted) before they meet EMFILE (which would stop
//! every accept, the control socket and `/metrics` at once).
//!
//! Owns only that arithmetic and the two system calls; the listeners enforce the numbers.

use rustix::process::{getrlimit, setrlimit, Resource};
use tracing::warn;

use crate::config::{ListenerConfig, ListenerKind};

/// Descriptors kept for everything but listener connections: the store, netlink and nft,
/// SSH sessions, the control socket (64) and `/metrics` (32), logs, listening sockets.
const RESERVED: usize = 256;

/// Sets the soft limit to the hard one; returns the soft limit now in force (None when the
/// kernel reports none: unlimited).
pub fn raise_soft_limit() -> Option<u64> {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            warn!(error = %e, "Cannot raise the open-file limit");
        }
    }
    current()
}

/// The soft limit in force (None: unlimited).
pub fn current() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// Scales the stream listeners' `max_connections` down (in proportion) when together they
/// would need more descriptors than `open_files` leaves beside [`RESERVED`]; each listener
/// keeps at least one. Logs and returns what was changed: (label, configured, now).
pub fn fit_connections(
    listeners: &mut [ListenerConfig],
    open_files: Option<u64>,
) -> Vec<(String, usize, usize)> {
    let Some(open_files) = open_files else {
        return Vec::new();
    };
    let budget = usize::try_from(open_files)
        .unwrap_or(usize::MAX)
        .saturating_sub(RESERVED)
        .max(1);
    let wanted: usize = listeners
        .iter_mut()
        .filter_map(|l| limits(&mut l.kind))
        .map(|(max, _)| *max)
        .sum();
    if wanted <= budget {
        return Vec::new();
    }
    let mut changed = Vec::new();
    for listener in listeners.iter_mut() {
        let Some((max, per_peer)) = limits(&mut listener.kind) else {
            continue;
        };
        let fitted = (*max as u128 * budget as u128 / wanted as u128).max(1) as usize;
        warn!(
            listener = %listener.label,
            configured = *max,
            now = fitted,
            open_file_limit = open_files,
            "max_connections lowered to fit the open-file limit (raise LimitNOFILE)"
        );
        changed.push((listener.label.clone(), *max, fitted));
        *max = fitted;
        *per_peer = (*per_peer).min(fitted);
    }
    changed
}

/// `max_connections` and `max_connections_per_peer` of a stream listener.
fn limits(kind: &mut ListenerKind) -> Option<(&mut usize, &mut usize)> {
    let limits = match kind {
        ListenerKind::Tcp { limits, .. } => limits,
        ListenerKind::JournalUpload(j) | ListenerKind::JournalStream(j) => &mut j.limits,
        ListenerKind::Udp { .. } | ListenerKind::Unix { .. } => return None,
    };
    Some((
        &mut limits.max_connections,
        &mut limits.max_connections_per_peer,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConnectionLimits;
    use std::time::Duration;

    fn tcp(port: u16, max: usize) -> ListenerConfig {
        ListenerConfig {
            label: format!("tcp:127.0.0.1:{port}"),
            allow: Vec::new(),
            trust_hostname: false,
            kind: ListenerKind::Tcp {
                address: ([127, 0, 0, 1], port).into(),
                limits: ConnectionLimits {
                    max_connections: max,
                    max_connections_per_peer: 64,
                    idle_timeout: Duration::from_secs(300),
                    handshake_timeout: Duration::from_secs(10),
                },
                tls: None,
            },
            max_frame: 65536,
        }
    }

    fn max(listener: &ListenerConfig) -> (usize, usize) {
        match &listener.kind {
            ListenerKind::Tcp { limits, .. } => {
                (limits.max_connections, limits.max_connections_per_peer)
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn listeners_that_fit_are_left_alone() {
        let mut listeners = vec![tcp(1, 1024), tcp(2, 1024)];
        assert!(fit_connections(&mut listeners, Some(65536)).is_empty());
        assert!(fit_connections(&mut listeners, None).is_empty());
        assert_eq!(max(&listeners[0]), (1024, 64));
    }

    #[test]
    fn the_default_limit_of_1024_shrinks_listeners_in_proportion() {
        // Debian's default soft and hard limit outside systemd units is 1024 / 1048576, but a
        // container may give 1024 / 1024: 768 descriptors are left for connections.
        let mut listeners = vec![tcp(1, 1024), tcp(2, 512)];
        let changed = fit_connections(&mut listeners, Some(1024));
        assert_eq!(changed.len(), 2);
        assert_eq!(max(&listeners[0]), (512, 64));
        assert_eq!(max(&listeners[1]), (256, 64));
        let mut tiny = vec![tcp(1, 1024)];
        fit_connections(&mut tiny, Some(100));
        assert_eq!(max(&tiny[0]), (1, 1));
    }
}
