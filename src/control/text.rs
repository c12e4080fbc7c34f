//! The control answers as people read them: what `syslog2ban status`, `banned`, `verify` and
//! the others print without `--json`.
//!
//! Owns only formatting; it never talks to the daemon.

use std::fmt::Write as _;

use super::protocol::Response;

/// A collector of the cluster not heard from for this long gets the hint to forget it, if
/// it is gone for good.
const SILENT_PEER_MS: u64 = 60_000;

/// What `status`, `banned`, `verify`, a jail's status and the other answers look like on a
/// terminal (`--json` prints the answer itself). An error is the caller's to print.
pub fn render(response: &Response) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    macro_rules! say {
        ($($arg:tt)*) => {{
            let _ = writeln!(out, $($arg)*);
        }};
    }
    match response {
        Response::Status(status) => {
            say!("syslog2ban {}", status.version);
            say!("Listeners:");
            for l in &status.listeners {
                say!(
                    "  {:<28} {:>10} messages  {:>6} oversize  {:>6} refused connections",
                    l.listener,
                    l.messages,
                    l.oversize,
                    l.refused_connections
                );
            }
            say!("Jails:");
            for j in &status.jails {
                say!(
                    "  {:<16} failing now {:>6}  failures {:>8}  banned now {:>6}  bans {:>6}",
                    j.jail,
                    j.currently_failed,
                    j.total_failed,
                    j.currently_banned,
                    j.total_banned
                );
            }
            if let Some(store) = status.store.as_ref().filter(|s| s.failing) {
                say!(
                    "Store: FAILING, {} writes kept for retry ({} lost): {}",
                    store.pending_writes,
                    store.lost_writes,
                    store.last_error.as_deref().unwrap_or("")
                );
            }
            for stuck in &status.stuck {
                say!(
                    "Stage {} STUCK for {} s (the watchdog is not fed)",
                    stuck.stage,
                    stuck.busy_secs
                );
            }
            for n in &status.notifiers {
                say!(
                    "Notifier {}: sent {}, queued {}, not sent on purpose {}, failed attempts {}{}",
                    n.name,
                    n.sent,
                    n.queued,
                    n.dropped,
                    n.failed,
                    n.last_error
                        .as_deref()
                        .map(|e| format!(", FAILING: {e}"))
                        .unwrap_or_default()
                );
            }
            for f in &status.feeds {
                say!(
                    "Feed {}: {} entries, {} fetches{}",
                    f.name,
                    f.entries,
                    f.fetches,
                    f.last_error
                        .as_deref()
                        .map(|e| format!(", FAILING: {e}"))
                        .unwrap_or_default()
                );
            }
            if let Some(c) = &status.cluster {
                let state = if c.degraded {
                    format!(
                        "DEGRADED (counting alone; {} failures and {} bans wait for the engine): {}",
                        c.buffered_failures,
                        c.buffered_bans,
                        c.last_error.as_deref().unwrap_or("")
                    )
                } else {
                    "connected".to_string()
                };
                let dropped = if c.buffer_dropped > 0 {
                    format!(
                        "; NOT SHARED: {} failures or bans dropped from full queues to the engine (counted and banned here only)",
                        c.buffer_dropped
                    )
                } else {
                    String::new()
                };
                let unreadable = if c.unreadable_entries > 0 {
                    format!(
                        "; NOT ADOPTED: {} ban stream entries unreadable (a collector of another version?)",
                        c.unreadable_entries
                    )
                } else {
                    String::new()
                };
                let clash = if c.name_clash {
                    format!(
                        "; NAME CLASH: another running collector uses node {}: neither adopts the other's bans; give each collector its own [cluster] node",
                        c.node
                    )
                } else {
                    String::new()
                };
                say!(
                    "Cluster {} on {}: {state}; {} s degraded so far; decided here {}, published {}, adopted {}{dropped}{unreadable}{clash}",
                    c.node,
                    c.engine.join(", "),
                    c.degraded_secs,
                    c.shared_offences,
                    c.published,
                    c.adopted
                );
                for p in &c.peers {
                    // A collector that stopped beating a minute ago may be gone for good.
                    let silent = if p.seen_ms_ago > SILENT_PEER_MS {
                        format!(
                            "; taken out for good? syslog2ban forget-collector {}",
                            p.node
                        )
                    } else {
                        String::new()
                    };
                    let clock = match p.clock_ahead_ms {
                        // Out of step as the cluster itself takes it (it moves shared bans' times then).
                        Some(ms) if ms.abs() >= crate::cluster::CLOCK_IN_STEP_MS => format!(
                            ", clock {:.1} s {} the engine's: check its time sync",
                            ms.unsigned_abs() as f64 / 1000.0,
                            if ms > 0 { "ahead of" } else { "behind" }
                        ),
                        _ => String::new(),
                    };
                    say!(
                        "  collector {:<16} seen {} ms ago, lag {} ms{}{clock}{}{silent}",
                        p.node,
                        p.seen_ms_ago,
                        p.lag_ms,
                        if p.degraded { ", replaying" } else { "" },
                        if p.reads < crate::cluster::READS {
                            ", an earlier version: bans are published a field per value for it"
                        } else {
                            ""
                        }
                    );
                }
            }
            say!("Targets:");
            for t in &status.targets {
                let netlink = if t.netlink_batches > 0 {
                    format!(" ({} over netlink)", t.netlink_batches)
                } else {
                    String::new()
                };
                say!(
                    "  {:<8} {} {}  batches {}{netlink}  errors {}",
                    t.target,
                    t.backend,
                    t.table.as_deref().unwrap_or(""),
                    t.batches,
                    t.errors
                );
                if let Some(a) = &t.attested {
                    say!(
                        "           enforced {} of {} bans  fixes {}  last reconcile {}",
                        a.present,
                        a.desired,
                        a.fixes,
                        ago(a.last_reconcile_unix)
                    );
                    if a.unheard_batches > 0 {
                        say!(
                            "           storm batches unheard {}, judged unsound {}",
                            a.unheard_batches,
                            a.unheard_unsound
                        );
                    }
                    if let Some(e) = &a.last_error {
                        say!("           last error: {e}");
                    }
                }
                if let Some(r) = &t.remote {
                    let reconciled = ago(r.last_reconcile_unix);
                    say!(
                        "           {}  {}  queued {}  last reconcile {}",
                        r.host,
                        if r.connected {
                            "connected"
                        } else {
                            "disconnected"
                        },
                        r.queued,
                        reconciled
                    );
                    if let Some(e) = &r.last_error {
                        say!("           last error: {e}");
                    }
                }
            }
        }
        Response::Jail(j) => {
            say!("Status for the jail: {}", j.jail);
            say!("|- Filter");
            say!("|  |- Programs:\t{}", j.programs.join(" "));
            say!("|  |- Currently failed:\t{}", j.currently_failed);
            say!("|  `- Total failed:\t{}", j.total_failed);
            say!("`- Actions");
            say!("   |- Currently banned:\t{}", j.currently_banned);
            say!("   |- Total banned:\t{}", j.total_banned);
            say!("   `- Banned IP list:\t{}", j.banned.join(" "));
        }
        Response::Verified { bans } => {
            if bans.is_empty() {
                say!("No active bans");
            }
            for b in bans {
                for p in &b.places {
                    let mark = match p.enforced {
                        Some(true) => "enforced",
                        Some(false) => "MISSING",
                        None => "unchecked",
                    };
                    say!(
                        "{:<40} {:<16} {:<12} {:<10} {}",
                        b.address,
                        b.jail,
                        p.place,
                        mark,
                        p.detail
                    );
                }
            }
        }
        Response::Banned { bans } => {
            if bans.is_empty() {
                say!("No active bans");
            }
            for b in bans {
                let left = b
                    .remaining_secs
                    .map(|s| {
                        humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
                    })
                    .unwrap_or_else(|| "permanent".into());
                say!("{:<40} {:<16} {:<16} {}", b.address, b.jail, left, b.origin);
            }
        }
        Response::Done { message } => say!("{message}"),
        Response::Setting { value, .. } => say!("{value}"),
        Response::Error { .. } => {}
    }
    out
}

/// "12s ago", or "never".
pub fn ago(unix: Option<u64>) -> String {
    unix.map_or_else(
        || "never".to_string(),
        |at| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("{}s ago", now.saturating_sub(at))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::{ClusterReport, StatusReport};

    fn status_with_cluster(buffer_dropped: u64, unreadable_entries: u64) -> String {
        status_with_peers(buffer_dropped, unreadable_entries, Vec::new())
    }

    fn status_with_peers(
        buffer_dropped: u64,
        unreadable_entries: u64,
        peers: Vec<crate::metrics::Peer>,
    ) -> String {
        status_with(buffer_dropped, unreadable_entries, peers, false)
    }

    fn status_with(
        buffer_dropped: u64,
        unreadable_entries: u64,
        peers: Vec<crate::metrics::Peer>,
        name_clash: bool,
    ) -> String {
        let cluster = ClusterReport {
            node: "one".into(),
            engine: vec!["redis://127.0.0.1:6379".into()],
            degraded: false,
            degraded_secs: 0,
            buffered_failures: 0,
            buffered_bans: 0,
            buffer_dropped,
            shared_offences: 2,
            published: 2,
            adopted: 3,
            unreadable_entries,
            last_error: None,
            name_clash,
            peers,
        };
        render(&Response::Status(StatusReport {
            version: "test".into(),
            listeners: Vec::new(),
            jails: Vec::new(),
            targets: Vec::new(),
            store: None,
            stuck: Vec::new(),
            notifiers: Vec::new(),
            feeds: Vec::new(),
            cluster: Some(Box::new(cluster)),
        }))
    }

    #[test]
    fn status_says_when_failures_were_not_shared_with_the_cluster() {
        let fine = status_with_cluster(0, 0);
        assert!(
            fine.contains("Cluster one on redis://127.0.0.1:6379: connected"),
            "{fine}"
        );
        assert!(
            !fine.contains("NOT SHARED") && !fine.contains("NOT ADOPTED"),
            "{fine}"
        );
        let dropping = status_with_cluster(7, 0);
        assert!(
            dropping.contains("NOT SHARED: 7 failures or bans dropped"),
            "{dropping}"
        );
        let unreadable = status_with_cluster(0, 4);
        assert!(
            unreadable.contains("NOT ADOPTED: 4 ban stream entries unreadable"),
            "{unreadable}"
        );
        assert!(!fine.contains("CLASH"), "{fine}");
        let clash = status_with(0, 0, Vec::new(), true);
        assert!(
            clash.contains("; NAME CLASH: another running collector uses node one: neither adopts the other's bans"),
            "{clash}"
        );
    }

    #[test]
    fn status_marks_a_collector_of_an_earlier_version_and_one_long_silent() {
        let peer = |node: &str, reads: u64| crate::metrics::Peer {
            node: node.into(),
            seen_ms_ago: 300,
            lag_ms: 0,
            degraded: false,
            reads,
            clock_ahead_ms: (reads > 1).then_some(12),
        };
        let mut gone = peer("gone", 2);
        gone.seen_ms_ago = 3_600_000;
        let mut skewed = peer("skewed", 2);
        skewed.clock_ahead_ms = Some(-1_200_400);
        let text = status_with_peers(0, 0, vec![peer("one", 2), peer("old", 1), gone, skewed]);
        let line = |node: &str| {
            text.lines()
                .find(|l| l.contains(&format!("collector {node} ")))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            !line("one").is_empty() && !line("one").contains("earlier"),
            "{text}"
        );
        assert!(
            line("old")
                .ends_with("an earlier version: bans are published a field per value for it"),
            "{text}"
        );
        assert!(
            line("gone").ends_with("; taken out for good? syslog2ban forget-collector gone"),
            "{text}"
        );
        assert!(!line("old").contains("forget"), "{text}");
        assert!(
            line("skewed").ends_with(", clock 1200.4 s behind the engine's: check its time sync"),
            "{text}"
        );
        assert!(!line("one").contains("clock"), "{text}");
    }
}
