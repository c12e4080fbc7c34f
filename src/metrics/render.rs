//! The Prometheus text exposition of every counter: metric names, help texts, label escaping,
//! and the kernel's UDP drop counters read at scrape time (from /proc: the scrape runs on a
//! blocking thread).

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;

use std::sync::{Arc, PoisonError};

use super::{FeedMetrics, JailMetrics, ListenerMetrics, Metrics, NotifierMetrics, TargetMetrics};

/// The kernel's receive-queue drops of the UDP socket with this inode (/proc/net/udp{,6}).
fn udp_drops(inode: u64) -> Option<u64> {
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = std::fs::read_to_string(table).ok()?;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // ... uid timeout inode ref pointer drops
            if fields.len() >= 13 && fields[9].parse::<u64>().ok() == Some(inode) {
                return fields[12].parse().ok();
            }
        }
    }
    None
}

/// `{name="value"}` with the value escaped as the text format requires (a unix socket path
/// may hold `"` or `\`).
pub(super) fn label(name: &str, value: &str) -> String {
    let mut out = format!("{{{name}=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push_str("\"}");
    out
}

impl Metrics {
    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut family = |name: &str, help: &str, kind: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let listeners = self.listeners();
        let by_listener = |f: fn(&ListenerMetrics) -> &AtomicU64| {
            listeners
                .iter()
                .map(|l| (label("listener", &l.label), Self::get(f(l))))
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
            "Connections refused at max_connections or max_connections_per_peer.",
            "counter",
            by_listener(|l| &l.refused_connections),
        );
        family(
            "syslog2ban_handshake_timeouts_total",
            "Connections closed for not finishing the TLS handshake or sending a first byte within handshake_timeout.",
            "counter",
            by_listener(|l| &l.handshake_timeouts),
        );
        family(
            "syslog2ban_accept_errors_total",
            "Failed accepts per listener (EMFILE: out of file descriptors).",
            "counter",
            by_listener(|l| &l.accept_errors),
        );
        family(
            "syslog2ban_senders_refused_total",
            "Datagrams and connections from senders outside allow.",
            "counter",
            by_listener(|l| &l.refused_senders),
        );
        family(
            "syslog2ban_udp_kernel_drops_total",
            "Datagrams the kernel dropped because the receive buffer was full (UDP listeners).",
            "counter",
            listeners
                .iter()
                .filter_map(|l| {
                    let inode = Self::get(&l.udp_inode);
                    (inode != 0)
                        .then(|| (label("listener", &l.label), udp_drops(inode).unwrap_or(0)))
                })
                .collect(),
        );
        family(
            "syslog2ban_journal_duplicates_total",
            "Journal entries skipped as resends of entries already received.",
            "counter",
            by_listener(|l| &l.duplicates),
        );
        family(
            "syslog2ban_journal_rejected_total",
            "Journal uploads or streams refused as malformed or too large.",
            "counter",
            by_listener(|l| &l.rejected),
        );
        family(
            "syslog2ban_frames_unparsed_total",
            "Frames no parser could read.",
            "counter",
            vec![(String::new(), Self::get(&self.unparsed))],
        );
        family(
            "syslog2ban_messages_unrouted_total",
            "Messages for programs no jail hears.",
            "counter",
            vec![(String::new(), Self::get(&self.unrouted))],
        );
        family(
            "syslog2ban_message_faults_total",
            "Messages skipped because processing them hit a bug (a caught panic; see the log).",
            "counter",
            vec![(String::new(), Self::get(&self.message_faults))],
        );
        let jails = self.jails();
        let by_jail = |f: fn(&JailMetrics) -> &AtomicU64| {
            jails
                .iter()
                .map(|j| (label("jail", &j.name), Self::get(f(j))))
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
            "Bans ended (expired or unbanned) per jail.",
            "counter",
            by_jail(|j| &j.unbans),
        );
        family(
            "syslog2ban_jail_failing_addresses",
            "Addresses with failures in the window per jail.",
            "gauge",
            by_jail(|j| &j.tracked),
        );
        family(
            "syslog2ban_jail_tracker_evictions_total",
            "Addresses evicted at max_tracked while their failures still counted (least progress first).",
            "counter",
            by_jail(|j| &j.evicted),
        );
        family(
            "syslog2ban_jail_banned_addresses",
            "Addresses banned per jail.",
            "gauge",
            by_jail(|j| &j.banned),
        );
        family(
            "syslog2ban_store_failing",
            "1 while ban store commits fail (bans are enforced; writes are kept for retry).",
            "gauge",
            vec![(String::new(), Self::get(&self.store.failing))],
        );
        family(
            "syslog2ban_store_pending_writes",
            "Ban store writes waiting for a commit that works.",
            "gauge",
            vec![(String::new(), Self::get(&self.store.pending))],
        );
        family(
            "syslog2ban_store_errors_total",
            "Failed ban store commits.",
            "counter",
            vec![(String::new(), Self::get(&self.store.errors))],
        );
        family(
            "syslog2ban_store_lost_writes_total",
            "Ban store writes dropped because the retry backlog was full.",
            "counter",
            vec![(String::new(), Self::get(&self.store.lost))],
        );
        family(
            "syslog2ban_active_bans",
            "Addresses currently banned.",
            "gauge",
            vec![(String::new(), Self::get(&self.active_bans))],
        );
        let targets = self.targets();
        let by_target = |f: fn(&TargetMetrics) -> &AtomicU64| {
            targets
                .iter()
                .map(|t| (label("target", &t.name), Self::get(f(t))))
                .collect()
        };
        family(
            "syslog2ban_enforce_batches_total",
            "Firewall batches applied per target.",
            "counter",
            by_target(|t| &t.batches),
        );
        family(
            "syslog2ban_enforce_netlink_batches_total",
            "Of the applied batches, those sent straight to the kernel over netlink.",
            "counter",
            by_target(|t| &t.netlink_batches),
        );
        family(
            "syslog2ban_enforce_unheard_batches_total",
            "Of the netlink batches, a storm's applied with the drift monitor away.",
            "counter",
            by_target(|t| &t.unheard_batches),
        );
        family(
            "syslog2ban_enforce_unheard_unsound_total",
            "Unheard batches after which another transaction may have gone unheard (each cost a reconcile).",
            "counter",
            by_target(|t| &t.unheard_unsound),
        );
        family(
            "syslog2ban_enforce_errors_total",
            "Firewall batches (or SSH connections) that failed per target.",
            "counter",
            by_target(|t| &t.errors),
        );
        let remote: Vec<&Arc<TargetMetrics>> =
            targets.iter().filter(|t| t.name != "local").collect();
        let by_remote = |f: fn(&TargetMetrics) -> &AtomicU64| {
            remote
                .iter()
                .map(|t| (label("target", &t.name), Self::get(f(t))))
                .collect()
        };
        family(
            "syslog2ban_target_connected",
            "1 while the SSH session to a remote target is up.",
            "gauge",
            by_remote(|t| &t.connected),
        );
        family(
            "syslog2ban_target_queue_length",
            "Changes waiting for a remote target.",
            "gauge",
            by_remote(|t| &t.queued),
        );
        family(
            "syslog2ban_target_queue_overflows_total",
            "Changes dropped from a full target queue (restored by the next reconcile).",
            "counter",
            by_remote(|t| &t.queue_overflows),
        );
        family(
            "syslog2ban_target_reconciles_total",
            "Completed comparisons of a firewall's sets with the bans.",
            "counter",
            by_target(|t| &t.reconciles),
        );
        family(
            "syslog2ban_target_reconcile_fixes_total",
            "Missing elements added, stray elements removed and missing table parts re-created by reconciles.",
            "counter",
            by_target(|t| &t.reconcile_fixes),
        );
        family(
            "syslog2ban_target_last_reconcile_timestamp_seconds",
            "Unix time of the last completed reconcile.",
            "gauge",
            by_target(|t| &t.last_reconcile_unix),
        );
        let local: Vec<&Arc<TargetMetrics>> =
            targets.iter().filter(|t| t.name == "local").collect();
        let by_local = |f: fn(&TargetMetrics) -> &AtomicU64| {
            local
                .iter()
                .map(|t| (label("target", &t.name), Self::get(f(t))))
                .collect()
        };
        family(
            "syslog2ban_target_desired_bans",
            "Addresses the local table should hold, as of the last reconcile.",
            "gauge",
            by_local(|t| &t.desired),
        );
        family(
            "syslog2ban_target_present_bans",
            "Addresses the local table held after the last reconcile.",
            "gauge",
            by_local(|t| &t.present),
        );
        let queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        family(
            "syslog2ban_queue_depth",
            "Items waiting in each internal queue.",
            "gauge",
            queues
                .iter()
                .map(|(name, depth)| (label("queue", name), depth()))
                .collect(),
        );
        drop(queues);
        let name = "syslog2ban_enforce_latency_seconds";
        let _ = writeln!(out, "# HELP {name} From the offending message's arrival (or the decision, for bans by hand or adopted) to the firewall holding it, per target.\n# TYPE {name} histogram");
        for t in &targets {
            t.latency
                .render_into(&mut out, name, &format!("target=\"{}\"", t.name));
        }
        out.push_str(&self.render_notifiers());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        out.push_str(&self.cluster.render(now_ms));
        out
    }

    /// The notifier families in Prometheus text.
    fn render_notifiers(&self) -> String {
        let notifiers = self.notifiers();
        let mut out = String::new();
        let feeds = self.feeds();
        for (name, help, kind, value) in [
            (
                "syslog2ban_feed_fetches_total",
                "Fetches of each blocklist feed.",
                "counter",
                (|f: &FeedMetrics| &f.fetches) as fn(&FeedMetrics) -> &AtomicU64,
            ),
            (
                "syslog2ban_feed_errors_total",
                "Fetches that failed or brought nothing usable (the previous list stayed).",
                "counter",
                |f| &f.errors,
            ),
            (
                "syslog2ban_feed_entries",
                "Entries of each feed's applied list.",
                "gauge",
                |f| &f.entries,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for f in &feeds {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    label("feed", &f.name),
                    Self::get(value(f))
                );
            }
        }
        for (name, help, kind, value) in [
            (
                "syslog2ban_notify_sent_total",
                "Notifications delivered per notifier.",
                "counter",
                (|n: &NotifierMetrics| &n.sent) as fn(&NotifierMetrics) -> &AtomicU64,
            ),
            (
                "syslog2ban_notify_failures_total",
                "Failed delivery attempts per notifier (each is retried).",
                "counter",
                |n| &n.failed,
            ),
            (
                "syslog2ban_notify_dropped_total",
                "Notifications not sent on purpose per notifier (already reported this period).",
                "counter",
                |n| &n.dropped,
            ),
            (
                "syslog2ban_notify_queued",
                "Notifications waiting in the outbox per notifier.",
                "gauge",
                |n| &n.queued,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for n in &notifiers {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    label("notifier", &n.name),
                    Self::get(value(n))
                );
            }
        }
        out
    }
}
