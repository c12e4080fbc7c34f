//! Blocklist feeds: a list of addresses and prefixes (one per line, `#` comments, as
//! blocklist.de and most others publish them) fetched every `interval`, and applied as bans
//! of the feed's own jail (`feed-NAME`) through the ban manager: addresses new to the list are
//! banned, addresses gone from it are lifted (only the feed's hold: a jail's own ban stays).
//!
//! Owns fetching (conditional GET with ETag / Last-Modified, or a file) and the list's
//! parsing and diff. It decides no ban length or placement (the feed jail's policy does) and
//! touches no firewall. A fetch that fails, a 404, or a list with nothing usable keeps the
//! previous list and is reported (`status`, metrics, log); `ignoreip` is respected, and
//! prefixes wider than /8 (IPv4) or /32 (IPv6) are refused, so a broken list cannot ban the
//! world.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ban::Request;
use crate::config::{FeedConfig, FeedSource};
use crate::http_client;
use crate::metrics::{FeedMetrics, Metrics};
use crate::target::Target;

/// The largest list read (bytes).
const MAX_LIST_BYTES: usize = 64 << 20;

/// A list, read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct List {
    /// Its entries.
    pub entries: BTreeSet<Target>,
    /// Lines that are neither entries nor comments.
    pub invalid: usize,
    /// Entries left out: in `ignoreip`, too wide, or past `max_entries`.
    pub refused: usize,
}

/// Reads a list: one address or CIDR prefix per line; `#` starts a comment; a line may hold
/// more after the address (blocklist.de's do not, others add a reason).
pub fn parse(text: &str, feed: &FeedConfig) -> List {
    let mut list = List::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default().trim();
        let Some(first) = line.split_whitespace().next() else {
            continue;
        };
        let Ok(target) = first.parse::<Target>() else {
            list.invalid += 1;
            continue;
        };
        let net = target.net();
        let too_wide = net.prefix_len() < if target.is_ipv6() { 32 } else { 8 };
        let ignored = feed.ignoreip.iter().any(|n| n.contains(&net.addr()));
        if too_wide || ignored || list.entries.len() >= feed.max_entries {
            list.refused += 1;
            continue;
        }
        list.entries.insert(target);
    }
    list
}

/// What a fetch brought.
enum Fetched {
    /// A list (and its validators for the next conditional GET).
    List(String, Option<String>, Option<String>),
    /// 304: unchanged.
    Unchanged,
}

/// Runs one feed until `stop`: fetch, diff, ban and lift, wait `interval`.
pub async fn run(
    feed: FeedConfig,
    manager: mpsc::Sender<Request>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let counters = metrics.feed(&feed.name);
    // The feed's bans restored from the store are the list as last applied.
    let mut current: BTreeSet<Target> = match feed_holds(&manager).await {
        Some(holds) => holds
            .into_iter()
            .filter(|(jail, _)| *jail == feed.jail)
            .map(|(_, address)| address)
            .collect(),
        None => return,
    };
    Metrics::set(&counters.entries, current.len() as u64);
    let mut validators = Validators::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            applied = round(&feed, &manager, &counters, &mut current, &mut validators) => {
                if applied.is_none() {
                    return;
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(feed.interval) => {}
        }
    }
}

/// Runs every feed of `feeds` until `stop`, each on a task of its own: a reload that sends new
/// feeds stops those removed or changed (a changed one starts again from the bans its jail
/// holds, as after a restart) and starts the new; an unchanged feed goes on undisturbed. The
/// bans of a feed no longer configured (removed by a reload, or while the daemon was down)
/// are lifted: a listed address is banned for as long as it is listed, by default forever.
pub async fn run_all(
    mut feeds: watch::Receiver<Vec<FeedConfig>>,
    manager: mpsc::Sender<Request>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut running: Vec<(FeedConfig, CancellationToken)> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let wanted = feeds.borrow_and_update().clone();
        running.retain(|(feed, token)| {
            let kept = wanted.contains(feed);
            if !kept {
                token.cancel();
            }
            kept
        });
        if lift_unlisted(&wanted, &manager).await.is_none() {
            break;
        }
        for feed in wanted {
            if running.iter().any(|(f, _)| *f == feed) {
                continue;
            }
            let token = stop.child_token();
            tasks.spawn(run(
                feed.clone(),
                manager.clone(),
                metrics.clone(),
                token.clone(),
            ));
            running.push((feed, token));
        }
        tokio::select! {
            () = stop.cancelled() => break,
            changed = feeds.changed() => if changed.is_err() {
                break;
            },
            // A feed that ended (the ban manager stopping) is not started again.
            Some(_) = tasks.join_next() => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Every hold of a feed's jail (jail, address); None when the ban manager is gone.
async fn feed_holds(
    manager: &mpsc::Sender<Request>,
) -> Option<Vec<(crate::config::JailName, Target)>> {
    ask(manager, |reply| Request::HeldBy {
        prefix: crate::config::FEED_JAIL_PREFIX,
        reply,
    })
    .await
}

/// Lifts the bans held by the jails of feeds that are not in `wanted`; None when the ban
/// manager is gone.
async fn lift_unlisted(wanted: &[FeedConfig], manager: &mpsc::Sender<Request>) -> Option<()> {
    let mut lifted = std::collections::BTreeMap::<String, usize>::new();
    for (jail, address) in feed_holds(manager).await? {
        if wanted.iter().any(|f| f.jail == jail) {
            continue;
        }
        let name = jail.to_string();
        let lift = |reply| Request::Lift {
            jail,
            address,
            reply,
        };
        if ask(manager, lift).await? {
            *lifted.entry(name).or_default() += 1;
        }
    }
    for (jail, n) in lifted {
        info!(%jail, lifted = n, "A feed no longer configured: its bans are lifted");
    }
    Some(())
}

/// The previous answer's ETag and Last-Modified, for a conditional GET.
#[derive(Debug, Default)]
struct Validators {
    etag: Option<String>,
    modified: Option<String>,
}

/// One fetch and its application; None when the ban manager is gone (stopping).
async fn round(
    feed: &FeedConfig,
    manager: &mpsc::Sender<Request>,
    counters: &FeedMetrics,
    current: &mut BTreeSet<Target>,
    validators: &mut Validators,
) -> Option<()> {
    Metrics::inc(&counters.fetches);
    match fetch(
        feed,
        validators.etag.as_deref(),
        validators.modified.as_deref(),
    )
    .await
    {
        Ok(Fetched::Unchanged) => ok(counters),
        Ok(Fetched::List(text, etag, modified)) => {
            let list = parse(&text, feed);
            if list.entries.is_empty() && !text.trim().is_empty() {
                failed(
                    feed,
                    counters,
                    format!(
                        "the list holds no usable entry ({} lines not addresses); the previous list is kept",
                        list.invalid
                    ),
                );
                return Some(());
            }
            *validators = Validators { etag, modified };
            if list.refused > 0 || list.invalid > 0 {
                warn!(feed = %feed.name, refused = list.refused, invalid = list.invalid, "Feed entries left out (ignoreip, wider than /8 or /32, over max_entries, or not addresses)");
            }
            let (banned, lifted) = apply(feed, manager, current, &list.entries).await?;
            if banned + lifted > 0 {
                info!(feed = %feed.name, banned, lifted, entries = list.entries.len(), "Feed applied");
            }
            *current = list.entries;
            Metrics::set(&counters.entries, current.len() as u64);
            ok(counters);
        }
        Err(e) => failed(feed, counters, format!("{e}; the previous list is kept")),
    }
    Some(())
}

fn ok(counters: &FeedMetrics) {
    counters.last_error.set(None);
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Metrics::set(&counters.last_ok_unix, unix);
}

fn failed(feed: &FeedConfig, counters: &FeedMetrics, why: String) {
    Metrics::inc(&counters.errors);
    if counters.last_error.get().as_deref() != Some(why.as_str()) {
        warn!(feed = %feed.name, error = %why, "Feed not applied");
    }
    counters.last_error.set(Some(why));
}

/// Bans what is new and lifts what is gone; (banned, lifted), or None when the manager is
/// gone (stopping).
async fn apply(
    feed: &FeedConfig,
    manager: &mpsc::Sender<Request>,
    current: &BTreeSet<Target>,
    wanted: &BTreeSet<Target>,
) -> Option<(usize, usize)> {
    let (mut banned, mut lifted) = (0, 0);
    for address in wanted.difference(current) {
        let answer = ask(manager, |reply| Request::Ban {
            jail: feed.jail.clone(),
            address: *address,
            placement: None,
            origin: Some(format!("feed:{}", feed.name)),
            reply,
        })
        .await?;
        if answer.is_ok_and(|new| new) {
            banned += 1;
        }
    }
    for address in current.difference(wanted) {
        if ask(manager, |reply| Request::Lift {
            jail: feed.jail.clone(),
            address: *address,
            reply,
        })
        .await?
        {
            lifted += 1;
        }
    }
    Some((banned, lifted))
}

async fn ask<T>(
    manager: &mpsc::Sender<Request>,
    request: impl FnOnce(oneshot::Sender<T>) -> Request,
) -> Option<T> {
    let (reply, answer) = oneshot::channel();
    manager.send(request(reply)).await.ok()?;
    answer.await.ok()
}

async fn fetch(
    feed: &FeedConfig,
    etag: Option<&str>,
    modified: Option<&str>,
) -> Result<Fetched, String> {
    match &feed.source {
        FeedSource::File(path) => {
            let path = path.clone();
            let text = tokio::task::spawn_blocking(move || std::fs::read(&path))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{}: {e}", feed_source(feed)))?;
            if text.len() > MAX_LIST_BYTES {
                return Err(format!(
                    "{}: larger than {MAX_LIST_BYTES} bytes",
                    feed_source(feed)
                ));
            }
            Ok(Fetched::List(
                String::from_utf8_lossy(&text).into_owned(),
                None,
                None,
            ))
        }
        FeedSource::Http(url) => {
            let mut headers = Vec::new();
            if let Some(etag) = etag {
                headers.push(("If-None-Match", etag.to_string()));
            }
            if let Some(modified) = modified {
                headers.push(("If-Modified-Since", modified.to_string()));
            }
            let answer = http_client::get(url, &headers, feed.timeout, MAX_LIST_BYTES)
                .await
                .map_err(|e| format!("{}: {e}", feed_source(feed)))?;
            match answer.status {
                304 => Ok(Fetched::Unchanged),
                200 => Ok(Fetched::List(
                    String::from_utf8_lossy(&answer.body).into_owned(),
                    answer.header("etag").map(str::to_string),
                    answer.header("last-modified").map(str::to_string),
                )),
                code => Err(format!("{} answered {code}", feed_source(feed))),
            }
        }
    }
}

fn feed_source(feed: &FeedConfig) -> String {
    match &feed.source {
        FeedSource::File(path) => path.display().to_string(),
        FeedSource::Http(url) => format!("{}:{}{}", url.host, url.port, url.path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BanTime, JailName};
    use std::time::Duration;

    fn feed(max_entries: usize) -> FeedConfig {
        FeedConfig {
            name: "bl".into(),
            jail: JailName::new("feed-bl").unwrap(),
            source: FeedSource::File("/dev/null".into()),
            interval: Duration::from_secs(60),
            bantime: BanTime::Permanent,
            placement: crate::config::default_placement(),
            max_entries,
            timeout: Duration::from_secs(5),
            ignoreip: vec!["198.51.100.0/30".parse().unwrap()],
        }
    }

    #[test]
    fn lists_take_addresses_and_prefixes_and_refuse_what_would_hurt() {
        let text = "# blocklist\n198.51.100.10\n2001:db8::7 ; scanner\n\n198.51.100.64/26\n\
                    198.51.100.1\n0.0.0.0/0\n2001::/16\n<html>\n198.51.100.11 extra words\n";
        let list = parse(text, &feed(100));
        let got: Vec<String> = list.entries.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            vec![
                "198.51.100.10",
                "198.51.100.11",
                "198.51.100.64/26",
                "2001:db8::7"
            ]
        );
        // 198.51.100.1 is in ignoreip; /0 and /16 (IPv6) are too wide.
        assert_eq!((list.refused, list.invalid), (3, 1));
        assert_eq!(parse(text, &feed(2)).entries.len(), 2);
    }
}
