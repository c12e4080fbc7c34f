//! The per-message path: parse → route → jails, with offences sent on to the ban manager.
//!
//! Matching is stateless for most jails, so it runs in parallel: one worker per core takes
//! batches of messages (each connection and each datagram sender always from the same worker,
//! so one sender's messages stay in order), parses and routes them and runs the jails'
//! filters; only failures go on, to the one task that owns every jail's failure window, on a
//! thread of its own (and the jails whose matching keeps state between messages, fail2ban
//! filters with multi-line buffers, which see their records there, in order). That task
//! turns failures into offences.
//!
//! Owns the jails' runtime state and swaps jail configs on reload while keeping the windows
//! of jails that still exist. It calls the stages in order and adds no logic of its own
//! besides counting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, warn};

use crate::config::JailConfig;
use crate::fault;
use crate::input::Batch;
use crate::jail::{BanFeedback, Offence};
use crate::metrics::Metrics;
use crate::throttle::{Decision, Throttle};

mod matching;
mod windows;

use matching::{match_message, Hits, Matchers, Tally};
pub use windows::Sharing;
use windows::Windows;

/// How often stale failure windows are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// At most one warning this often that failures did not fit the queue to the cluster.
const ENGINE_DROPS_LOG: Duration = Duration::from_secs(60);
/// Batches of failures (and of stateful jails' records) waiting for the window task: one
/// batch per input batch that had any, so at most `HIT_QUEUE` times `input::BATCH_MAX` hits.
const HIT_QUEUE: usize = 256;

/// A change pushed into the running pipeline.
#[derive(Debug)]
pub enum Update {
    /// The enabled jails after a reload; acknowledged once in effect.
    Jails(Vec<JailConfig>, oneshot::Sender<()>),
}

/// How many matching workers: one per core (at most 8).
pub fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8))
}

/// Runs until every `messages` channel closes (all listeners stopped). `messages` holds one
/// receiver per worker (see [`worker_count`]).
pub async fn run(
    messages: Vec<mpsc::Receiver<Batch>>,
    updates: mpsc::Receiver<Update>,
    configs: Vec<JailConfig>,
    offences: mpsc::Sender<Offence>,
    shared: Option<Sharing>,
    feedback: BanFeedback,
    metrics: Arc<Metrics>,
) {
    let generation = 0;
    let windows = Windows::build(
        &configs,
        generation,
        HashMap::new(),
        feedback.clone(),
        &metrics,
    );
    let (matchers_tx, matchers_rx) = watch::channel(Arc::new(
        Matchers::build(&configs, generation, &metrics).with_entry_keys(shared.is_some()),
    ));
    let (hits_tx, hits) = mpsc::channel(HIT_QUEUE);
    metrics.register_queue("failures", crate::metrics::depth(hits_tx.downgrade()));
    let mut workers = tokio::task::JoinSet::new();
    for rx in messages {
        workers.spawn(worker(
            rx,
            matchers_rx.clone(),
            hits_tx.clone(),
            metrics.clone(),
        ));
    }
    // The window task holds no sender: `hits` ends when the last worker does.
    drop(hits_tx);
    drop(matchers_rx);
    let task = WindowTask {
        engine_drops_log: Throttle::new(1, ENGINE_DROPS_LOG),
        hits,
        updates,
        windows,
        generation,
        matchers: matchers_tx,
        offences,
        shared,
        feedback,
        metrics,
    };
    // The one serial stage gets a thread of its own: on the runtime it would wait for a turn
    // among the matching workers and connections, which keep every runtime thread busy in a
    // ban storm, and its queue would push back into matching.
    let windows = crate::supervise::on_own_thread(
        "jail-windows",
        crate::supervise::Priority::Favoured,
        task.run(),
    );
    tokio::pin!(windows);
    loop {
        tokio::select! {
            () = &mut windows => return,
            Some(done) = workers.join_next(), if !workers.is_empty() => {
                // Workers end when their queue closes (shutdown); a panic past `fault::contain`
                // ends the pipeline, and the supervisor stops the daemon.
                if let Err(e) = done {
                    error!(error = %e, "A matching worker died; stopping the pipeline");
                    return;
                }
            }
        }
    }
}

/// The task that owns every jail's failure window: failures in, offences out, jail configs
/// swapped on reload.
struct WindowTask {
    hits: mpsc::Receiver<Hits>,
    updates: mpsc::Receiver<Update>,
    windows: Windows,
    generation: u64,
    matchers: watch::Sender<Arc<Matchers>>,
    offences: mpsc::Sender<Offence>,
    shared: Option<Sharing>,
    feedback: BanFeedback,
    metrics: Arc<Metrics>,
    /// Says, at most once per [`ENGINE_DROPS_LOG`], that failures did not reach the cluster.
    engine_drops_log: Throttle,
}

impl WindowTask {
    /// Runs until every worker has stopped (or the ban manager has).
    async fn run(mut self) {
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        let mut updates_open = true;
        loop {
            tokio::select! {
                batch = self.hits.recv() => {
                    let Some(batch) = batch else { break };
                    if self.record(batch).await.is_err() {
                        warn!("Ban manager stopped; offences are dropped");
                        return;
                    }
                }
                update = self.updates.recv(), if updates_open => match update {
                    Some(Update::Jails(configs, applied)) => {
                        self.reload(&configs);
                        // The reloader may have gone; the update is in effect either way.
                        let _ = applied.send(());
                    }
                    None => updates_open = false,
                },
                _ = sweep.tick() => self.windows.sweep(crate::clock::now()),
            }
        }
    }

    /// Counts a batch of failures; sends the offences they make. Err: the ban manager is gone.
    async fn record(&mut self, batch: Hits) -> Result<(), ()> {
        let mut counted = Vec::new();
        let (hits, text) = batch.into_parts();
        for hit in hits {
            // Stateful fail2ban filters match here: a bug they reach costs this hit only.
            let windows = &mut self.windows;
            let shared = self.shared.is_some().then_some(&mut counted);
            let offence =
                fault::contain(&self.metrics, || windows.record(hit, &text, shared)).flatten();
            if let Some(offence) = offence {
                if let Some(sharing) = &self.shared {
                    sharing.claim_first(&mut counted);
                }
                self.offences.send(offence).await.map_err(|_| ())?;
            }
        }
        if let (Some(sharing), false) = (&self.shared, counted.is_empty()) {
            // Never waiting: a full queue drops the batch, counted.
            let n = counted.len() as u64;
            if sharing.failures.try_send(counted).is_err() {
                sharing
                    .metrics
                    .cluster
                    .buffer_dropped
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                if let Decision::Write { held_back } = self.engine_drops_log.check() {
                    warn!(
                        dropped = n,
                        earlier_drops_not_logged = held_back,
                        "The queue to the cluster engine is full: these failures count on this collector only, not across collectors, until the counter catches up"
                    );
                }
            }
        }
        Ok(())
    }

    /// Swaps in the jails of a reload, keeping the windows of those that still exist.
    fn reload(&mut self, configs: &[JailConfig]) {
        self.generation += 1;
        let generation = self.generation;
        let empty = Windows::build(
            &[],
            generation,
            HashMap::new(),
            self.feedback.clone(),
            &self.metrics,
        );
        let previous = std::mem::replace(&mut self.windows, empty).into_previous();
        self.windows = Windows::build(
            configs,
            generation,
            previous,
            self.feedback.clone(),
            &self.metrics,
        );
        // Workers take the new matchers before their next message: every message that
        // arrives after the acknowledgement is matched with them.
        self.matchers.send_replace(Arc::new(
            Matchers::build(configs, generation, &self.metrics)
                .with_entry_keys(self.shared.is_some()),
        ));
    }
}

/// Parses, routes and matches one worker's messages; hands failures on, a batch of them per
/// batch of messages.
async fn worker(
    mut messages: mpsc::Receiver<Batch>,
    mut matchers: watch::Receiver<Arc<Matchers>>,
    hits: mpsc::Sender<Hits>,
    metrics: Arc<Metrics>,
) {
    let mut current = matchers.borrow_and_update().clone();
    let mut tally = Tally::default();
    while let Some(batch) = messages.recv().await {
        if matchers.has_changed().unwrap_or(false) {
            tally.flush(&current, &metrics);
            current = matchers.borrow_and_update().clone();
        }
        let mut batch_hits = Hits::default();
        for message in batch {
            // A bug reached by one message costs that message; its partial hits are dropped.
            let mark = batch_hits.mark();
            if fault::contain(&metrics, || {
                match_message(&current, message, &mut tally, &mut batch_hits)
            })
            .is_none()
            {
                batch_hits.truncate(mark);
            }
        }
        if !batch_hits.is_empty() && hits.send(batch_hits).await.is_err() {
            return;
        }
        // Counters shared by all workers are touched in batches (every worker bumping them
        // per message makes the cores fight over one cache line), and whenever the queue
        // runs dry, so they are exact once the input is processed.
        if tally.pending >= 1024 || messages.is_empty() {
            tally.flush(&current, &metrics);
        }
    }
    tally.flush(&current, &metrics);
}

#[cfg(test)]
mod tests {
    use super::matching::Hit;
    use super::*;
    use crate::config::{BanTime, JailName};
    use crate::input::{Origin, Payload, RawMessage};
    use crate::jail::filter::Filter;
    use bytes::Bytes;
    use std::time::SystemTime;

    fn jail(name: &str, failregex: &str, maxretry: u32) -> JailConfig {
        JailConfig {
            name: JailName::new(name).unwrap(),
            programs: vec!["sshd".into()],
            filter: Filter::compile(&[failregex.into()], &[]).unwrap(),
            fail2ban: None,
            maxretry,
            findtime: Duration::from_secs(600),
            bantime: BanTime::For(Duration::from_secs(60)),
            ignoreip: vec![],
            increment: None,
            max_tracked: 1000,
            prefix4: 32,
            prefix6: 128,
            count_per_origin: false,
            kill_connections: false,
            ports: None,
            notify: Vec::new(),
            placement: crate::config::default_placement(),
        }
    }

    /// Workers' and window task's state side by side, run in one task for the tests.
    struct Both {
        matchers: Matchers,
        windows: Windows,
    }

    impl Both {
        fn build(configs: &[JailConfig], metrics: &Metrics) -> Self {
            Both {
                matchers: Matchers::build(configs, 0, metrics),
                windows: Windows::build(
                    configs,
                    0,
                    HashMap::new(),
                    BanFeedback::default(),
                    metrics,
                ),
            }
        }
    }

    /// One message through a worker's matching and the window task's counting.
    async fn process(
        state: &mut Both,
        message: RawMessage,
        offences: &mpsc::Sender<Offence>,
        metrics: &Metrics,
    ) -> bool {
        let mut found = Hits::default();
        let mut tally = Tally::default();
        match_message(&state.matchers, message, &mut tally, &mut found);
        tally.flush(&state.matchers, metrics);
        let (hits, text) = found.into_parts();
        for hit in hits {
            if let Some(offence) = state.windows.record(hit, &text, None) {
                if offences.send(offence).await.is_err() {
                    return false;
                }
            }
        }
        true
    }

    fn message(text: &str) -> RawMessage {
        RawMessage {
            origin: Origin::Local,
            identity: None,
            trust_hostname: false,
            payload: Payload::Frame(Bytes::from(format!(
                "<38>Nov 25 08:32:44 web1 sshd[1]: {text}"
            ))),
            received: crate::clock::now(),
            received_at: SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn jails_sharing_a_program_match_in_one_pass_and_each_counts_its_own() {
        let metrics = Metrics::default();
        let configs = vec![
            jail(
                "passwords",
                r"^Failed password for \S+ from <HOST> port \d+ ssh2$",
                2,
            ),
            jail("users", r"^Invalid user \S+ from <HOST> port \d+$", 1),
        ];
        let mut state = Both::build(&configs, &metrics);
        assert!(
            state.matchers.shared.contains_key("sshd"),
            "one set for both jails"
        );
        let (tx, mut rx) = mpsc::channel(8);
        let password = "Failed password for root from 203.0.113.9 port 22 ssh2";
        assert!(process(&mut state, message(password), &tx, &metrics).await);
        assert!(
            rx.try_recv().is_err(),
            "1 of 2 password failures: no offence"
        );
        assert_eq!(Metrics::get(&metrics.jail("passwords").failures), 1);
        assert_eq!(Metrics::get(&metrics.jail("users").failures), 0);
        assert!(
            process(
                &mut state,
                message("Invalid user bob from 203.0.113.7 port 22"),
                &tx,
                &metrics
            )
            .await
        );
        let offence = rx.try_recv().expect("users bans at once");
        assert_eq!(offence.jail.as_str(), "users");
        assert!(process(&mut state, message(password), &tx, &metrics).await);
        assert_eq!(
            rx.try_recv()
                .expect("second password failure")
                .jail
                .as_str(),
            "passwords"
        );
    }

    #[test]
    fn every_jail_a_message_fails_in_gets_its_text() {
        let metrics = Metrics::default();
        let any = r"^Failed password for \S+ from <HOST> port \d+ ssh2$";
        let matchers = Matchers::build(&[jail("one", any, 5), jail("two", any, 5)], 0, &metrics);
        let (mut found, mut tally) = (Hits::default(), Tally::default());
        let text = "Failed password for root from 203.0.113.9 port 22 ssh2";
        let other = "Failed password for bob from 203.0.113.8 port 22 ssh2";
        match_message(&matchers, message(text), &mut tally, &mut found);
        match_message(
            &matchers,
            message("Accepted password"),
            &mut tally,
            &mut found,
        );
        match_message(&matchers, message(other), &mut tally, &mut found);
        let samples: Vec<&str> = found
            .hits
            .iter()
            .map(|hit| match hit {
                Hit::Failure { sample, .. } => found.sample(sample),
                Hit::Record { .. } => "",
            })
            .collect();
        assert_eq!(samples, [text, text, other, other]);
    }

    #[test]
    fn a_journal_failure_carries_its_entrys_key_only_with_a_cluster() {
        let metrics = Metrics::default();
        let any = r"^Failed password for \S+ from <HOST> port \d+ ssh2$";
        let journal = |cursor: &str| {
            let field = |name: &str, value: &str| crate::input::journal::export::Field {
                name: name.into(),
                value: value.into(),
            };
            let entry = crate::input::journal::export::Entry {
                fields: vec![
                    field("__CURSOR", cursor),
                    field("SYSLOG_IDENTIFIER", "sshd"),
                    field(
                        "MESSAGE",
                        "Failed password for root from 203.0.113.9 port 22 ssh2",
                    ),
                ],
            };
            RawMessage {
                payload: Payload::Journal(Box::new(entry)),
                ..message("unused")
            }
        };
        let keys = |matchers: &Matchers, messages: Vec<RawMessage>| {
            let (mut found, mut tally) = (Hits::default(), Tally::default());
            for m in messages {
                match_message(matchers, m, &mut tally, &mut found);
            }
            found
                .hits
                .iter()
                .map(|hit| match hit {
                    Hit::Failure { entry, .. } => *entry,
                    Hit::Record { .. } => None,
                })
                .collect::<Vec<_>>()
        };
        let two_jails = [jail("one", any, 5), jail("two", any, 5)];
        let plain = Matchers::build(&two_jails, 0, &metrics);
        assert_eq!(keys(&plain, vec![journal("s=1;i=1")]), [None, None]);
        let keyed = Matchers::build(&two_jails, 0, &metrics).with_entry_keys(true);
        let found = keys(
            &keyed,
            vec![
                journal("s=1;i=1"),
                journal("s=1;i=2"),
                message("Failed password for root from 203.0.113.9 port 22 ssh2"),
            ],
        );
        // Both jails' failures of one entry carry its key; another entry has another; a
        // syslog frame has none.
        assert!(found[0].is_some() && found[0] == found[1]);
        assert!(found[2].is_some() && found[2] != found[0] && found[2] == found[3]);
        assert_eq!(found[4..], [None, None]);
    }

    #[tokio::test]
    async fn journal_entries_are_read_into_records_and_matched() {
        let metrics = Metrics::default();
        let configs = vec![jail(
            "passwords",
            r"^Failed password for \S+ from <HOST> port \d+ ssh2$",
            1,
        )];
        let mut state = Both::build(&configs, &metrics);
        let (tx, mut rx) = mpsc::channel(8);
        let field = |name: &str, value: &str| crate::input::journal::export::Field {
            name: name.into(),
            value: value.into(),
        };
        let entry = crate::input::journal::export::Entry {
            fields: vec![
                field("_HOSTNAME", "web1"),
                field("SYSLOG_IDENTIFIER", "sshd"),
                field(
                    "MESSAGE",
                    "Failed password for root from 203.0.113.9 port 22 ssh2",
                ),
            ],
        };
        let message = RawMessage {
            payload: Payload::Journal(Box::new(entry)),
            ..message("unused")
        };
        assert!(process(&mut state, message, &tx, &metrics).await);
        assert_eq!(rx.try_recv().expect("offence").jail.as_str(), "passwords");
        assert_eq!(Metrics::get(&metrics.unparsed), 0);
    }

    /// A fail2ban-style filter file (written for this test) in a jail: syslog frames in,
    /// an offence out, with the address of a connection joined from an earlier line.
    #[tokio::test]
    async fn jail_with_a_fail2ban_filter_bans_from_syslog_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.conf");
        std::fs::write(
            &path,
            "[DEFAULT]\n_daemon = sshd\n[Definition]\n\
             prefregex = ^<F-MLFID>(?:\\S+ )?%(_daemon)s\\[\\d+\\]:</F-MLFID> <F-CONTENT>.+</F-CONTENT>$\n\
             failregex = ^<F-NOFAIL>session opened by</F-NOFAIL> <HOST>\n\
             \x20           ^Too many authentication failures\n\
             \x20           ^Failed password for <F-USER>\\S+</F-USER> from <HOST>\n",
        )
        .unwrap();
        let spec = crate::fail2ban::FilterSpec::parse(&path.display().to_string()).unwrap();
        let filter = Arc::new(crate::fail2ban::load(&spec).unwrap());
        assert_eq!(filter.programs(), Some(&["sshd".to_string()][..]));
        let mut config = jail("demo", r"^unused <HOST>$", 2);
        config.filter = Filter::ignore_only(&[r"for monitor ".into()]).unwrap();
        config.fail2ban = Some(crate::config::Fail2banSource {
            spec: path.display().to_string(),
            filter,
        });
        let metrics = Metrics::default();
        let mut state = Both::build(&[config], &metrics);
        let (tx, mut rx) = mpsc::channel(8);
        let frame = |pid: u32, text: &str| RawMessage {
            payload: Payload::Frame(Bytes::from(format!(
                "<38>Nov 25 08:32:44 web1 sshd[{pid}]: {text}"
            ))),
            ..message("unused")
        };
        for (pid, text) in [
            (7, "session opened by 203.0.113.50 port 4000"),
            (8, "session opened by 203.0.113.99 port 4001"),
            (7, "Too many authentication failures"),
            (
                8,
                "Failed password for monitor from 203.0.113.99 port 4001 ssh2",
            ),
        ] {
            assert!(process(&mut state, frame(pid, text), &tx, &metrics).await);
        }
        assert!(rx.try_recv().is_err(), "one failure so far, maxretry is 2");
        assert_eq!(Metrics::get(&metrics.jail("demo").failures), 1);
        assert_eq!(Metrics::get(&metrics.jail("demo").ignored), 1);
        let last = frame(
            7,
            "Failed password for root from 203.0.113.50 port 4000 ssh2",
        );
        assert!(process(&mut state, last, &tx, &metrics).await);
        let offence = rx.try_recv().expect("second failure of 203.0.113.50");
        assert_eq!(offence.jail.as_str(), "demo");
        assert_eq!(
            offence.target.addr(),
            "203.0.113.50".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(offence.failures, 2);
    }

    fn peer_message(text: &str, port: u16) -> RawMessage {
        RawMessage {
            origin: Origin::Peer(std::net::SocketAddr::from(([198, 51, 100, 10], port))),
            ..message(text)
        }
    }

    /// The running pipeline: two workers fed by origin, failures from several connections
    /// add up in one window, and a reload acknowledged is in effect for the next message.
    #[tokio::test]
    async fn workers_feed_one_window_and_reload_applies_to_later_messages() {
        let metrics = Arc::new(Metrics::default());
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..2).map(|_| mpsc::channel(64)).unzip();
        let fanout = crate::input::Fanout::new(txs);
        let (update_tx, update_rx) = mpsc::channel(1);
        let (offence_tx, mut offences) = mpsc::channel(8);
        let password = r"^Failed password for \S+ from <HOST> port \d+ ssh2$";
        let running = tokio::spawn(run(
            rxs,
            update_rx,
            vec![jail("passwords", password, 3)],
            offence_tx,
            None,
            BanFeedback::default(),
            metrics.clone(),
        ));
        let failure = "Failed password for root from 203.0.113.9 port 22 ssh2";
        for port in [40001, 40002, 40003] {
            let m = peer_message(failure, port);
            fanout.send(m).await.unwrap();
        }
        let offence = tokio::time::timeout(Duration::from_secs(5), offences.recv())
            .await
            .expect("offence in time")
            .expect("offence");
        assert_eq!(offence.failures, 3, "three connections, one count");

        // Reload: maxretry 1 in a renamed jail; the old jail's hits are gone with it.
        let (ack_tx, ack) = oneshot::channel();
        update_tx
            .send(Update::Jails(vec![jail("strict", password, 1)], ack_tx))
            .await
            .unwrap();
        ack.await.unwrap();
        let m = peer_message(
            "Failed password for root from 203.0.113.10 port 22 ssh2",
            40004,
        );
        fanout.send(m).await.unwrap();
        let offence = tokio::time::timeout(Duration::from_secs(5), offences.recv())
            .await
            .expect("offence in time")
            .expect("offence");
        assert_eq!(offence.jail.as_str(), "strict");
        drop(fanout);
        drop(update_tx);
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("pipeline ends when the inputs close")
            .unwrap();
    }

    /// After its offence an address's failures repeat nothing until a ban is lifted; then
    /// they count again from the next one.
    #[tokio::test]
    async fn a_reported_address_counts_again_once_a_ban_is_lifted() {
        let metrics = Metrics::default();
        let password = r"^Failed password for \S+ from <HOST> port \d+ ssh2$";
        let feedback = BanFeedback::default();
        let mut windows = Windows::build(
            &[jail("passwords", password, 2)],
            0,
            HashMap::new(),
            feedback.clone(),
            &metrics,
        );
        let matchers = Matchers::build(&[jail("passwords", password, 2)], 0, &metrics);
        let feed = |windows: &mut Windows, n: usize| {
            let mut offences = 0;
            for _ in 0..n {
                let mut found = Hits::default();
                let mut tally = Tally::default();
                match_message(
                    &matchers,
                    message("Failed password for root from 203.0.113.9 port 22 ssh2"),
                    &mut tally,
                    &mut found,
                );
                let (hits, text) = found.into_parts();
                for hit in hits {
                    offences += usize::from(windows.record(hit, &text, None).is_some());
                }
            }
            offences
        };
        assert_eq!(
            feed(&mut windows, 6),
            1,
            "one offence, then its failures repeat nothing"
        );
        let jail = crate::config::JailName::new("passwords").unwrap();
        feedback.lifted(&jail, "203.0.113.10".parse().unwrap());
        let other = crate::config::JailName::new("other").unwrap();
        feedback.lifted(&other, "203.0.113.9".parse().unwrap());
        assert_eq!(
            feed(&mut windows, 2),
            0,
            "another address's or jail's lift changes nothing"
        );
        feedback.lifted(&jail, "203.0.113.9".parse().unwrap());
        assert_eq!(
            feed(&mut windows, 2),
            1,
            "lifted: the next two failures are an offence again"
        );
        assert_eq!(
            metrics
                .jail("passwords")
                .failures
                .load(std::sync::atomic::Ordering::Relaxed),
            10
        );
    }

    /// A ban the windows did not decide (adopted from another collector, claimed by the
    /// cluster's count, by hand) stops its address's failures from counting until that ban
    /// is lifted; changes apply in order; news that overflowed forgets everything.
    #[tokio::test]
    async fn a_ban_made_elsewhere_stops_the_count_until_a_lift() {
        let metrics = Metrics::default();
        let password = r"^Failed password for \S+ from <HOST> port \d+ ssh2$";
        let configs = [jail("passwords", password, 2)];
        let feedback = BanFeedback::default();
        let mut windows = Windows::build(&configs, 0, HashMap::new(), feedback.clone(), &metrics);
        let matchers = Matchers::build(&configs, 0, &metrics);
        let attacker: std::net::IpAddr = "203.0.113.9".parse().unwrap();
        let feed = |windows: &mut Windows, n: usize| {
            let mut offences = 0;
            for _ in 0..n {
                let mut found = Hits::default();
                match_message(
                    &matchers,
                    message("Failed password for root from 203.0.113.9 port 22 ssh2"),
                    &mut Tally::default(),
                    &mut found,
                );
                let (hits, text) = found.into_parts();
                for hit in hits {
                    offences += usize::from(windows.record(hit, &text, None).is_some());
                }
            }
            offences
        };
        let passwords = crate::config::JailName::new("passwords").unwrap();
        feedback.banned(&passwords, attacker);
        assert_eq!(
            feed(&mut windows, 4),
            0,
            "banned elsewhere: nothing to report"
        );
        feedback.lifted(&passwords, attacker);
        assert_eq!(feed(&mut windows, 2), 1, "lifted: counted again");
        feedback.banned(&passwords, attacker);
        feedback.lifted(&passwords, attacker);
        assert_eq!(feed(&mut windows, 2), 1, "banned, then lifted: counted");
        for _ in 0..=crate::jail::NEWS_CAP {
            feedback.banned(&passwords, "203.0.113.77".parse().unwrap());
        }
        assert_eq!(
            feed(&mut windows, 2),
            1,
            "news that overflowed: every jail forgets what it reported"
        );
    }
}
