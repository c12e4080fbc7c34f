//! The notifiers' counters (`syslog2ban_notify_*`, rendered by `Metrics::render`): deliveries
//! made, failed, and waiting; and the feeds' (`syslog2ban_feed_*`): fetches, failures, entries.

use std::sync::atomic::AtomicU64;

use super::last_error::LastError;

/// One notifier's counters.
#[derive(Debug, Default)]
pub struct NotifierMetrics {
    /// Its name.
    pub name: String,
    /// Notifications delivered.
    pub sent: AtomicU64,
    /// Delivery attempts that failed (each is retried).
    pub failed: AtomicU64,
    /// Notifications not sent on purpose (an address already reported this period).
    pub dropped: AtomicU64,
    /// Notifications waiting in the outbox (gauge).
    pub queued: AtomicU64,
    /// Why the last attempt failed, while failing.
    pub last_error: LastError,
}

/// One feed's counters.
#[derive(Debug, Default)]
pub struct FeedMetrics {
    /// Its name.
    pub name: String,
    /// Fetches tried.
    pub fetches: AtomicU64,
    /// Fetches that failed or brought nothing usable (the previous list stayed).
    pub errors: AtomicU64,
    /// Entries of the list applied (gauge).
    pub entries: AtomicU64,
    /// Unix time of the last fetch that worked (0: none yet).
    pub last_ok_unix: AtomicU64,
    /// Why the last fetch failed, while failing.
    pub last_error: LastError,
}
