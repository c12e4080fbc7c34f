//! Notifications: delivers what the store's outbox holds to each notifier (a webhook POST, a
//! mail, an AbuseIPDB or blocklist.de report), in order per notifier, beside the ban path: a
//! ban never waits for a delivery, and a notifier that is down delays only its own queue.
//!
//! Owns delivery: when each notifier may send (retries with backoff, its rate limit, its
//! digest period), the once-per-period rule of reports, and the per-notifier counters; each
//! kind's message is its own module's. It decides nothing about bans and never touches a firewall. It reads the outbox
//! on its own connection to the store's database and deletes each row once delivered, so a
//! restart neither loses nor repeats one; only a crash between a delivery and its deletion
//! sends it again, with the same `X-Syslog2ban-Delivery` id for the receiver to drop.

pub mod abuseipdb;
pub mod blocklist_de;
pub mod event;
pub mod mail;
pub mod rdap;
pub mod webhook;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ban::store::{Outgoing, Store, StoreError};
use crate::config::{NotifierConfig, NotifierKind};
use crate::metrics::{Metrics, NotifierMetrics};
use event::Event;
pub use webhook::{signature, DELIVERY_HEADER, SIGNATURE_HEADER};

/// Rows read from the outbox per notifier and round (and most events in one digest).
const BATCH: usize = 500;
/// First pause after a failed delivery; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Even without a wake-up, the outbox is read this often (a notifier that came back).
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// One notifier's delivery state.
struct Notifier {
    config: NotifierConfig,
    metrics: Arc<NotifierMetrics>,
    backoff: Duration,
    /// Not before this, after a failure or at its rate limit.
    not_before: Option<Instant>,
    /// When its last deliveries went, for its rate limit.
    sent: VecDeque<Instant>,
    /// The SMTP client of a mail notifier.
    mailer: Option<mail::Mailer>,
    rdap: rdap::Rdap,
}

impl Notifier {
    /// When the rate limit lets the next delivery go (None: now).
    fn rate_wait(&mut self, now: Instant) -> Option<Instant> {
        let rate = self.config.rate?;
        while self
            .sent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= rate.per)
        {
            self.sent.pop_front();
        }
        (self.sent.len() >= rate.count as usize).then(|| self.sent[0] + rate.per)
    }

    fn succeeded(&mut self) {
        Metrics::inc(&self.metrics.sent);
        self.metrics.last_error.set(None);
        self.backoff = FIRST_BACKOFF;
        self.not_before = None;
        if self.config.rate.is_some() {
            self.sent.push_back(Instant::now());
        }
    }

    fn failed(&mut self, why: String) {
        Metrics::inc(&self.metrics.failed);
        if self.metrics.last_error.get().as_deref() != Some(why.as_str()) {
            warn!(notifier = %self.config.name, error = %why, retry_in = ?self.backoff, "Notification not delivered; it stays queued");
        }
        self.metrics.last_error.set(Some(why));
        self.not_before = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// The id a receiver sees for row `row` (the same when it is sent again).
fn delivery_id(row: &Outgoing) -> String {
    let created = row
        .created
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{}.{created}", row.id)
}

/// Delivers the outbox of the database in `state_dir` until `stop`, each notification once it
/// has waited `delay` (a cluster's `announce_delay`); `wake` is rung by the store after a
/// commit that queued notifications. The notifiers are `notifiers`' latest: a reload hands
/// new ones over (see [`set_up`]).
pub async fn run(
    state_dir: PathBuf,
    mut notifiers: watch::Receiver<Vec<NotifierConfig>>,
    delay: Duration,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let first = notifiers.borrow_and_update().clone();
    let mut all = match set_up(&first, &mut Vec::new(), &metrics) {
        Ok(all) => all,
        Err(e) => {
            // The stage ends: the supervisor stops the daemon, saying why.
            tracing::error!(error = %e, "A notifier cannot be set up");
            return;
        }
    };
    let mut watching = true;
    let store = match open(state_dir).await {
        Ok(store) => Arc::new(std::sync::Mutex::new(store)),
        Err(e) => {
            tracing::error!(error = %e, "Notifications cannot read the outbox");
            return;
        }
    };
    loop {
        let mut next: Option<Instant> = None;
        let mut more = false;
        for notifier in &mut all {
            let now = Instant::now();
            if notifier.not_before.is_some_and(|at| at > now) {
                next = earliest(next, notifier.not_before);
                continue;
            }
            let name = notifier.config.name.to_string();
            let before = SystemTime::now().checked_sub(delay).unwrap_or(UNIX_EPOCH);
            let rows = match blocking(&store, move |s| {
                if delay.is_zero() {
                    return Ok((s.outbox(&name, BATCH)?, None));
                }
                // The first of those not ready yet is when to look again.
                let rows = s.outbox_before(&name, BATCH, before)?;
                Ok((rows, s.outbox_first_after(&name, before)?))
            })
            .await
            {
                Ok((rows, waiting)) => {
                    if let Some(queued) = waiting {
                        let wait = (queued + delay)
                            .duration_since(SystemTime::now())
                            .unwrap_or_default();
                        next = earliest(next, Some(now + wait));
                    }
                    rows
                }
                Err(e) => {
                    warn!(error = %e, "Reading the notification outbox failed; retrying");
                    next = earliest(next, Some(now + FIRST_BACKOFF));
                    continue;
                }
            };
            if rows.is_empty() {
                continue;
            }
            let round = tokio::select! {
                () = stop.cancelled() => return,
                round = deliver_rows(notifier, &rows, &store) => round,
            };
            next = earliest(next, round.wait_until);
            more |= rows.len() == BATCH && round.progressed;
        }
        if let Ok(counts) = blocking(&store, |s| s.outbox_counts()).await {
            for notifier in &all {
                let queued = counts
                    .iter()
                    .find(|(name, _)| name == notifier.config.name.as_str())
                    .map_or(0, |(_, n)| *n);
                Metrics::set(&notifier.metrics.queued, queued);
            }
            for (name, n) in &counts {
                if !all.iter().any(|x| x.config.name.as_str() == name) {
                    debug!(notifier = %name, queued = n, "Queued notifications for a notifier no longer configured are kept until it is back");
                }
            }
        }
        if more {
            continue;
        }
        let wait = next
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(IDLE_CHECK)
            .min(IDLE_CHECK);
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
            changed = notifiers.changed(), if watching => match changed {
                Ok(()) => {
                    let configs = notifiers.borrow_and_update().clone();
                    match set_up(&configs, &mut all, &metrics) {
                        Ok(new) => {
                            all = new;
                            info!(notifiers = all.len(), "Notifiers reloaded");
                        }
                        // Checked before the reload was accepted; a file changed since.
                        Err(e) => warn!(error = %e, "Reloaded notifiers not taken; the earlier ones go on"),
                    }
                }
                // The daemon is stopping: no more reloads.
                Err(_) => watching = false,
            },
        }
    }
}

/// The notifiers `configs` describe. One whose configuration did not change is taken from
/// `old` with its state (backoff, rate-limit history, SMTP client); the others start afresh.
/// Err, naming the notifier: a mail notifier's client cannot be set up (a CA file that does
/// not read); `old` is then left as it was.
fn set_up(
    configs: &[NotifierConfig],
    old: &mut Vec<Notifier>,
    metrics: &Metrics,
) -> Result<Vec<Notifier>, String> {
    // Every new client first, so that an error changes nothing.
    let mut mailers = Vec::with_capacity(configs.len());
    for config in configs {
        let kept = old.iter().any(|n| n.config == *config);
        mailers.push(match &config.kind {
            NotifierKind::Mail(m) if !kept => {
                Some(mail::Mailer::new(m).map_err(|e| format!("notifier {}: {e}", config.name))?)
            }
            _ => None,
        });
    }
    Ok(configs
        .iter()
        .zip(mailers)
        .map(
            |(config, mailer)| match old.iter().position(|n| n.config == *config) {
                Some(i) => old.swap_remove(i),
                None => Notifier {
                    metrics: metrics.notifier(config.name.as_str()),
                    config: config.clone(),
                    backoff: FIRST_BACKOFF,
                    not_before: None,
                    sent: VecDeque::new(),
                    mailer,
                    rdap: rdap::Rdap::default(),
                },
            },
        )
        .collect())
}

/// Whether every notifier of `configs` can be set up (a reload checks before it is
/// accepted): Err names the first that cannot. Reads CA files: call off the async workers.
pub fn check(configs: &[NotifierConfig]) -> Result<(), String> {
    configs.iter().try_for_each(|config| match &config.kind {
        NotifierKind::Mail(m) => mail::Mailer::new(m)
            .map(drop)
            .map_err(|e| format!("notifier {}: {e}", config.name)),
        _ => Ok(()),
    })
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What one notifier's round did.
struct Round {
    /// Some rows were delivered or dropped.
    progressed: bool,
    /// It has rows it must not send before this.
    wait_until: Option<Instant>,
}

/// Delivers `rows` (one notifier's, oldest first) as far as its state allows, and takes
/// what went off the outbox.
async fn deliver_rows(
    notifier: &mut Notifier,
    rows: &[Outgoing],
    store: &Arc<std::sync::Mutex<Store>>,
) -> Round {
    let mut done = Vec::new();
    let mut wait_until = None;
    if let Some(period) = notifier.config.digest {
        let due = rows[0].created + period;
        match due.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => wait_until = Some(Instant::now() + left),
            _ => {
                if let Some(at) = notifier.rate_wait(Instant::now()) {
                    wait_until = Some(at);
                } else {
                    match deliver_digest(notifier, rows).await {
                        Ok(()) => {
                            notifier.succeeded();
                            done.extend(rows.iter().map(|r| r.id));
                            debug!(notifier = %notifier.config.name, events = rows.len(), "Digest delivered");
                        }
                        Err(why) => {
                            notifier.failed(why);
                            wait_until = notifier.not_before;
                        }
                    }
                }
            }
        }
    } else {
        for row in rows {
            if let Some(at) = notifier.rate_wait(Instant::now()) {
                wait_until = Some(at);
                break;
            }
            match deliver(notifier, row, store).await {
                Ok(Delivery::Dropped(why)) => {
                    Metrics::inc(&notifier.metrics.dropped);
                    done.push(row.id);
                    debug!(notifier = %row.notifier, id = row.id, why, "Notification not sent");
                }
                Ok(Delivery::Sent) => {
                    notifier.succeeded();
                    done.push(row.id);
                    debug!(notifier = %row.notifier, id = row.id, "Notification delivered");
                }
                Err(why) => {
                    // The rest of this notifier's rows wait behind this one, in order.
                    notifier.failed(why);
                    wait_until = notifier.not_before;
                    break;
                }
            }
        }
    }
    let progressed = !done.is_empty();
    if progressed {
        if let Err(e) = blocking(store, move |s| s.outbox_done(&done)).await {
            warn!(error = %e, "Delivered notifications could not be taken off the outbox; they may be sent again");
        }
    }
    Round {
        progressed,
        wait_until,
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
    notifier: &mut Notifier,
    row: &Outgoing,
    store: &Arc<std::sync::Mutex<Store>>,
) -> Result<Delivery, String> {
    let event = match Event::parse(&row.body) {
        Ok(event) => event,
        Err(why) => return Ok(Delivery::Dropped(why)),
    };
    match &notifier.config.kind {
        NotifierKind::Webhook(webhook) => {
            webhook::post_event(webhook, &delivery_id(row), &row.body, &event).await?;
            Ok(Delivery::Sent)
        }
        NotifierKind::Mail(_) => {
            let mailer = notifier.mailer.as_ref().ok_or("no SMTP client")?;
            let whois = match mailer.whois().filter(|_| mailer.wants_whois()) {
                Some(config) => notifier.rdap.summary(config, &event.address).await,
                None => String::new(),
            };
            mailer.send_event(&delivery_id(row), &event, &whois).await?;
            Ok(Delivery::Sent)
        }
        NotifierKind::AbuseIpdb(abuse) => {
            once_per_period(row, &event, abuse.period, store, async {
                abuseipdb::report(abuse, &event).await
            })
            .await
        }
        NotifierKind::BlocklistDe(config) => {
            once_per_period(row, &event, config.period, store, async {
                blocklist_de::report(config, &event).await
            })
            .await
        }
    }
}

/// Runs `report` unless `row`'s notifier reported the address within `period`, and
/// remembers when it did.
async fn once_per_period(
    row: &Outgoing,
    event: &Event,
    period: Duration,
    store: &Arc<std::sync::Mutex<Store>>,
    report: impl std::future::Future<Output = Result<abuseipdb::Reported, String>>,
) -> Result<Delivery, String> {
    let address = event.address.clone();
    let (name, key) = (row.notifier.clone(), address.clone());
    let last = blocking(store, move |s| s.reported_at(&name, &key))
        .await
        .map_err(|e| e.to_string())?;
    let now = SystemTime::now();
    if let Some(at) = last.filter(|at| now.duration_since(*at).is_ok_and(|d| d < period)) {
        let ago = now.duration_since(at).unwrap_or_default().as_secs();
        return Ok(Delivery::Dropped(format!(
            "{address} was reported {ago} s ago (once per period)"
        )));
    }
    match report.await? {
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

/// One message for all of `rows`.
async fn deliver_digest(notifier: &Notifier, rows: &[Outgoing]) -> Result<(), String> {
    let (raws, events): (Vec<&str>, Vec<Event>) = rows
        .iter()
        .filter_map(|r| Event::parse(&r.body).ok().map(|e| (r.body.as_str(), e)))
        .unzip();
    let last = rows.last().map(delivery_id).unwrap_or_default();
    let id = format!("digest.{last}");
    match &notifier.config.kind {
        NotifierKind::Webhook(webhook) => webhook::post_digest(webhook, &id, &raws, &events).await,
        NotifierKind::Mail(_) => {
            let mailer = notifier.mailer.as_ref().ok_or("no SMTP client")?;
            mailer.send_digest(&id, &events).await
        }
        // Config allows digests only for mail and webhooks.
        NotifierKind::AbuseIpdb(_) | NotifierKind::BlocklistDe(_) => Ok(()),
    }
}

/// Logs the notifiers at start.
pub fn announce(notifiers: &[NotifierConfig]) {
    for n in notifiers {
        let digest = n.digest.map(|d| humantime::format_duration(d).to_string());
        let rate = n
            .rate
            .map(|r| format!("{}/{}", r.count, humantime::format_duration(r.per)));
        match &n.kind {
            NotifierKind::Webhook(w) => info!(
                notifier = %n.name,
                host = %w.url.host,
                format = ?w.format,
                signed = w.secret.is_some(),
                ban = n.events.ban,
                unban = n.events.unban,
                digest,
                rate,
                "Webhook notifier"
            ),
            NotifierKind::Mail(m) => info!(
                notifier = %n.name,
                smtp = %format!("{}:{}", m.host, m.port),
                tls = ?m.tls,
                to = m.to.len(),
                whois = m.whois.is_some(),
                ban = n.events.ban,
                unban = n.events.unban,
                digest,
                rate,
                "Mail notifier"
            ),
            NotifierKind::AbuseIpdb(a) => info!(
                notifier = %n.name,
                host = %a.url.host,
                categories = ?a.categories,
                period = %humantime::format_duration(a.period),
                rate,
                "AbuseIPDB reporter"
            ),
            NotifierKind::BlocklistDe(b) => info!(
                notifier = %n.name,
                host = %b.url.host,
                period = %humantime::format_duration(b.period),
                rate,
                "blocklist.de reporter"
            ),
        }
    }
}
