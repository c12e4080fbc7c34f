//! Notifications: delivers what the store's outbox holds to each notifier (a webhook POST, an
//! AbuseIPDB report), in order per notifier, beside the ban path: a ban never waits for a delivery, and
//! a notifier that is down delays only its own queue.
//!
//! Owns delivery: the HTTP exchange, signatures, retries with backoff, and the per-notifier
//! counters. It decides nothing about bans and never touches a firewall. It reads the outbox
//! on its own connection to the store's database and deletes each row once delivered, so a
//! restart neither loses nor repeats one; only a crash between a delivery and its deletion
//! sends it again, with the same `X-Syslog2ban-Delivery` id for the receiver to drop.

pub mod abuseipdb;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ban::store::{Outgoing, Store, StoreError};
use crate::config::{NotifierConfig, NotifierKind, WebhookConfig};
use crate::metrics::{Metrics, NotifierMetrics};
use crate::throttle::Throttle;
use crate::warn_throttled;

/// Rows read from the outbox per round.
const BATCH: usize = 500;
/// First pause after a failed delivery; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Even without a wake-up, the outbox is read this often (a notifier that came back).
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// The header carrying `sha256=HEX` of the body, keyed with the notifier's `secret`.
pub const SIGNATURE_HEADER: &str = "X-Syslog2ban-Signature";
/// The header carrying the outbox row id (the same on a repeat).
pub const DELIVERY_HEADER: &str = "X-Syslog2ban-Delivery";

/// One notifier's delivery state.
struct Notifier {
    config: NotifierConfig,
    metrics: Arc<NotifierMetrics>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

/// Delivers the outbox of the database in `state_dir` until `stop`; `wake` is rung by the
/// store after a commit that queued notifications.
pub async fn run(
    state_dir: PathBuf,
    notifiers: Vec<NotifierConfig>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut by_name: HashMap<String, Notifier> = notifiers
        .into_iter()
        .map(|config| {
            let metrics = metrics.notifier(config.name.as_str());
            (
                config.name.to_string(),
                Notifier {
                    config,
                    metrics,
                    backoff: FIRST_BACKOFF,
                    retry_at: None,
                },
            )
        })
        .collect();
    let store = match open(state_dir).await {
        Ok(store) => Arc::new(std::sync::Mutex::new(store)),
        Err(e) => {
            // The stage ends: the supervisor stops the daemon, saying why.
            tracing::error!(error = %e, "Notifications cannot read the outbox");
            return;
        }
    };
    let unknown_log = Throttle::new(3, Duration::from_secs(3600));
    loop {
        let rows = match blocking(&store, |s| s.outbox(BATCH)).await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %e, "Reading the notification outbox failed; retrying");
                Vec::new()
            }
        };
        let now = Instant::now();
        let mut delivered = Vec::new();
        // Per notifier in row order; a failure holds back the rest of that notifier's rows.
        let mut held: HashSet<String> = HashSet::new();
        for row in &rows {
            let Some(notifier) = by_name.get_mut(&row.notifier) else {
                warn_throttled!(unknown_log, notifier = %row.notifier, "Queued notifications for a notifier no longer configured are kept until it is back");
                continue;
            };
            if held.contains(&row.notifier) || notifier.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                result = deliver(&notifier.config, row, &store) => match result {
                    Ok(Delivery::Dropped(why)) => {
                        Metrics::inc(&notifier.metrics.dropped);
                        delivered.push(row.id);
                        debug!(notifier = %row.notifier, id = row.id, why, "Notification not sent");
                    }
                    Ok(Delivery::Sent) => {
                        Metrics::inc(&notifier.metrics.sent);
                        notifier.metrics.last_error.set(None);
                        notifier.backoff = FIRST_BACKOFF;
                        notifier.retry_at = None;
                        delivered.push(row.id);
                        debug!(notifier = %row.notifier, id = row.id, "Notification delivered");
                    }
                    Err(why) => {
                        Metrics::inc(&notifier.metrics.failed);
                        if notifier.metrics.last_error.get().as_deref() != Some(why.as_str()) {
                            warn!(notifier = %row.notifier, error = %why, retry_in = ?notifier.backoff, "Notification not delivered; it stays queued");
                        }
                        notifier.metrics.last_error.set(Some(why));
                        notifier.retry_at = Some(Instant::now() + notifier.backoff);
                        notifier.backoff = (notifier.backoff * 2).min(MAX_BACKOFF);
                        held.insert(row.notifier.clone());
                    }
                },
            }
        }
        if !delivered.is_empty() {
            let ids = delivered.clone();
            if let Err(e) = blocking(&store, move |s| s.outbox_done(&ids)).await {
                warn!(error = %e, "Delivered notifications could not be taken off the outbox; they may be sent again");
            }
        }
        if let Ok(counts) = blocking(&store, |s| s.outbox_counts()).await {
            for notifier in by_name.values() {
                let queued = counts
                    .iter()
                    .find(|(name, _)| name == notifier.config.name.as_str())
                    .map_or(0, |(_, n)| *n);
                Metrics::set(&notifier.metrics.queued, queued);
            }
        }
        if rows.len() == BATCH && !delivered.is_empty() {
            continue;
        }
        let next_retry = by_name.values().filter_map(|n| n.retry_at).min();
        let wait = next_retry
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(IDLE_CHECK)
            .min(IDLE_CHECK);
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

async fn open(state_dir: PathBuf) -> Result<Store, StoreError> {
    tokio::task::spawn_blocking(move || Store::open(&state_dir))
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Dir {
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            })
        })
}

async fn blocking<T: Send + 'static>(
    store: &Arc<std::sync::Mutex<Store>>,
    work: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
        work(&mut store)
    })
    .await
    .unwrap_or_else(|e| {
        Err(StoreError::Dir {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })
    })
}

/// What became of a queued notification.
enum Delivery {
    /// Delivered.
    Sent,
    /// Not to be sent (an address reported within the period, a report refused as invalid).
    Dropped(String),
}

/// One delivery; Err: why not, and the row stays queued for a retry.
async fn deliver(
    config: &NotifierConfig,
    row: &Outgoing,
    store: &Arc<std::sync::Mutex<Store>>,
) -> Result<Delivery, String> {
    match &config.kind {
        NotifierKind::Webhook(webhook) => post(webhook, row).await.map(|()| Delivery::Sent),
        NotifierKind::AbuseIpdb(abuse) => {
            let address = serde_json::from_str::<serde_json::Value>(&row.body)
                .ok()
                .and_then(|v| v["address"].as_str().map(str::to_string))
                .unwrap_or_default();
            let (name, key) = (row.notifier.clone(), address.clone());
            let last = blocking(store, move |s| s.reported_at(&name, &key))
                .await
                .map_err(|e| e.to_string())?;
            let now = std::time::SystemTime::now();
            if let Some(at) =
                last.filter(|at| now.duration_since(*at).is_ok_and(|d| d < abuse.period))
            {
                let ago = now.duration_since(at).unwrap_or_default().as_secs();
                return Ok(Delivery::Dropped(format!(
                    "{address} was reported {ago} s ago (once per period)"
                )));
            }
            match abuseipdb::report(abuse, &row.body).await? {
                abuseipdb::Reported::Sent => {
                    let name = row.notifier.clone();
                    blocking(store, move |s| s.mark_reported(&name, &address, now))
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(Delivery::Sent)
                }
                abuseipdb::Reported::Dropped(why) => Ok(Delivery::Dropped(why)),
            }
        }
    }
}

async fn post(webhook: &WebhookConfig, row: &Outgoing) -> Result<(), String> {
    let mut headers = vec![
        ("Content-Type", "application/json".to_string()),
        (DELIVERY_HEADER, row.id.to_string()),
    ];
    if let Some(secret) = &webhook.secret {
        headers.push((SIGNATURE_HEADER, signature(secret, row.body.as_bytes())));
    }
    match crate::http_client::post(&webhook.url, &headers, row.body.as_bytes(), webhook.timeout)
        .await
    {
        Ok(code) if (200..300).contains(&code) => Ok(()),
        Ok(code) => Err(format!("{} answered {code}", webhook.url.host)),
        Err(e) => Err(format!("{}:{}: {e}", webhook.url.host, webhook.url.port)),
    }
}

/// `sha256=HEX` of HMAC-SHA256(`secret`, `body`).
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Logs the notifiers at start.
pub fn announce(notifiers: &[NotifierConfig]) {
    for n in notifiers {
        match &n.kind {
            NotifierKind::Webhook(w) => info!(
                notifier = %n.name,
                host = %w.url.host,
                signed = w.secret.is_some(),
                ban = n.events.ban,
                unban = n.events.unban,
                "Webhook notifier"
            ),
            NotifierKind::AbuseIpdb(a) => info!(
                notifier = %n.name,
                host = %a.url.host,
                categories = ?a.categories,
                period = %humantime::format_duration(a.period),
                "AbuseIPDB reporter"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
