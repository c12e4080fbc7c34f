//! The notifiers' counters (`syslog2ban_notify_*`, rendered by `Metrics::render`): deliveries
//! made, failed, and waiting.

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
