//! Counters every stage increments and the Prometheus text they render to.
//!
//! Owns the metric names and labels (never an address as a label). Stages hold an
//! `Arc<Metrics>` and bump atomics; nothing here blocks or allocates on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Per-listener counters.
#[derive(Debug, Default)]
pub struct ListenerMetrics {
    /// `udp:0.0.0.0:514` style label.
    pub label: String,
    /// Frames handed on to parsing.
    pub messages: AtomicU64,
    /// Frames larger than max_frame, skipped.
    pub oversize: AtomicU64,
    /// Connections refused because max_connections was reached.
    pub refused_connections: AtomicU64,
}

/// Per-jail counters.
#[derive(Debug, Default)]
pub struct JailMetrics {
    /// Jail name.
    pub name: String,
    /// Failures counted.
    pub failures: AtomicU64,
    /// Failures from ignoreip addresses or vetoed by ignoreregex.
    pub ignored: AtomicU64,
    /// Bans decided.
    pub bans: AtomicU64,
    /// Bans ended (expired or unbanned).
    pub unbans: AtomicU64,
}

/// All counters of one daemon.
#[derive(Debug, Default)]
pub struct Metrics {
    /// One per listener, in config order.
    pub listeners: Vec<ListenerMetrics>,
    /// One per enabled jail, in config order.
    pub jails: Vec<JailMetrics>,
    /// Frames no parser could read.
    pub unparsed: AtomicU64,
    /// Messages for programs no jail hears.
    pub unrouted: AtomicU64,
    /// Bans currently active.
    pub active_bans: AtomicU64,
    /// nft batches applied.
    pub enforce_batches: AtomicU64,
    /// nft batches that failed.
    pub enforce_errors: AtomicU64,
}

impl Metrics {
    /// Counters for these listeners and jails.
    pub fn new<'a>(
        listeners: impl IntoIterator<Item = &'a str>,
        jails: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        Metrics {
            listeners: listeners
                .into_iter()
                .map(|label| ListenerMetrics {
                    label: label.to_string(),
                    ..Default::default()
                })
                .collect(),
            jails: jails
                .into_iter()
                .map(|name| JailMetrics {
                    name: name.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Increments a counter by one.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut family = |name: &str, help: &str, kind: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let by_listener = |f: fn(&ListenerMetrics) -> &AtomicU64| {
            self.listeners
                .iter()
                .map(|l| (format!("{{listener=\"{}\"}}", l.label), get(f(l))))
                .collect()
        };
        family(
            "syslog2ban_messages_received_total",
            "Frames received per listener.",
            "counter",
            by_listener(|l| &l.messages),
        );
        family(
            "syslog2ban_frames_oversize_total",
            "Frames skipped for exceeding max_frame.",
            "counter",
            by_listener(|l| &l.oversize),
        );
        family(
            "syslog2ban_connections_refused_total",
            "TCP connections refused at max_connections.",
            "counter",
            by_listener(|l| &l.refused_connections),
        );
        family(
            "syslog2ban_frames_unparsed_total",
            "Frames no parser could read.",
            "counter",
            vec![(String::new(), get(&self.unparsed))],
        );
        family(
            "syslog2ban_messages_unrouted_total",
            "Messages for programs no jail hears.",
            "counter",
            vec![(String::new(), get(&self.unrouted))],
        );
        let by_jail = |f: fn(&JailMetrics) -> &AtomicU64| {
            self.jails
                .iter()
                .map(|j| (format!("{{jail=\"{}\"}}", j.name), get(f(j))))
                .collect()
        };
        family(
            "syslog2ban_failures_total",
            "Failures counted per jail.",
            "counter",
            by_jail(|j| &j.failures),
        );
        family(
            "syslog2ban_failures_ignored_total",
            "Matches ignored (ignoreip, ignoreregex) per jail.",
            "counter",
            by_jail(|j| &j.ignored),
        );
        family(
            "syslog2ban_bans_total",
            "Bans decided per jail.",
            "counter",
            by_jail(|j| &j.bans),
        );
        family(
            "syslog2ban_unbans_total",
            "Bans ended per jail.",
            "counter",
            by_jail(|j| &j.unbans),
        );
        family(
            "syslog2ban_active_bans",
            "Bans currently active.",
            "gauge",
            vec![(String::new(), get(&self.active_bans))],
        );
        family(
            "syslog2ban_enforce_batches_total",
            "Firewall batches applied.",
            "counter",
            vec![(String::new(), get(&self.enforce_batches))],
        );
        family(
            "syslog2ban_enforce_errors_total",
            "Firewall batches that failed.",
            "counter",
            vec![(String::new(), get(&self.enforce_errors))],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_counters() {
        let m = Metrics::new(["udp:127.0.0.1:514"], ["sshd"]);
        Metrics::inc(&m.listeners[0].messages);
        Metrics::inc(&m.jails[0].bans);
        let text = m.render();
        assert!(
            text.contains("syslog2ban_messages_received_total{listener=\"udp:127.0.0.1:514\"} 1\n")
        );
        assert!(text.contains("syslog2ban_bans_total{jail=\"sshd\"} 1\n"));
        assert!(text.contains("syslog2ban_active_bans 0\n"));
    }
}
