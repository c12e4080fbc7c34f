//! The per-message loop: parse → route → jails, with offences sent on to the ban manager.
//!
//! Owns the jails' runtime state (their failure windows) and swaps jail configs on reload
//! while keeping the windows of jails that still exist. It calls the stages in order and adds
//! no logic of its own besides counting.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use regex::RegexSet;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::config::JailConfig;
use crate::input::{Payload, RawMessage};
use crate::jail::{Jail, Offence, Verdict};
use crate::metrics::{JailMetrics, Metrics};
use crate::parse;
use crate::route::Router;

/// How often stale failure windows are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A change pushed into the running pipeline.
#[derive(Debug)]
pub enum Update {
    /// The enabled jails after a reload; acknowledged once in effect.
    Jails(Vec<JailConfig>, oneshot::Sender<()>),
}

/// The jails with their routing index and counters.
struct Jails {
    router: Router,
    jails: Vec<Jail>,
    counters: Vec<Arc<JailMetrics>>,
    /// For programs heard by several jails: all their failregex in one multi-pattern set, so
    /// a message costs one pass however many jails hear it.
    shared: HashMap<String, SharedMatcher>,
}

/// One `RegexSet` over the failregex of every jail of a program; `ranges[i]` are the set
/// indexes of jail `i` (a jail index) in that set.
struct SharedMatcher {
    set: RegexSet,
    ranges: Vec<(usize, Range<usize>)>,
}

impl SharedMatcher {
    /// None when the combined set would exceed the regex size limit: jails then match one
    /// by one, which is correct, only slower.
    fn build(jail_indexes: &[usize], jails: &[Jail]) -> Option<Self> {
        let mut patterns = Vec::new();
        let mut ranges = Vec::new();
        for &index in jail_indexes {
            let start = patterns.len();
            patterns.extend(jails[index].filter().expanded_failregex());
            ranges.push((index, start..patterns.len()));
        }
        RegexSet::new(patterns)
            .ok()
            .map(|set| SharedMatcher { set, ranges })
    }
}

impl Jails {
    fn build(
        configs: &[JailConfig],
        mut previous: HashMap<String, Jail>,
        metrics: &Metrics,
    ) -> Self {
        let router = Router::new(
            configs
                .iter()
                .map(|j| j.programs.iter().map(String::as_str)),
        );
        let jails: Vec<Jail> = configs
            .iter()
            .map(|config| match previous.remove(config.name.as_str()) {
                Some(mut jail) => {
                    jail.reconfigure(config);
                    jail
                }
                None => Jail::new(config),
            })
            .collect();
        let counters = configs
            .iter()
            .map(|c| metrics.jail(c.name.as_str()))
            .collect();
        let mut by_program: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, config) in configs.iter().enumerate() {
            // Prefix patterns are routed one jail at a time, not through a shared set.
            for program in config.programs.iter().filter(|p| !p.ends_with('*')) {
                let list = by_program.entry(program.as_str()).or_default();
                if !list.contains(&index) {
                    list.push(index);
                }
            }
        }
        let shared = by_program
            .into_iter()
            .filter(|(_, indexes)| indexes.len() > 1)
            .filter_map(|(program, indexes)| {
                SharedMatcher::build(&indexes, &jails).map(|m| (program.to_string(), m))
            })
            .collect();
        Jails {
            router,
            jails,
            counters,
            shared,
        }
    }

    fn into_previous(self) -> HashMap<String, Jail> {
        self.jails
            .into_iter()
            .map(|j| (j.name().as_str().to_string(), j))
            .collect()
    }
}

/// Runs until `messages` closes (all listeners stopped).
pub async fn run(
    mut messages: mpsc::Receiver<RawMessage>,
    mut updates: mpsc::Receiver<Update>,
    configs: Vec<JailConfig>,
    offences: mpsc::Sender<Offence>,
    metrics: Arc<Metrics>,
) {
    let mut state = Jails::build(&configs, HashMap::new(), &metrics);
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    let mut updates_open = true;
    loop {
        let message = tokio::select! {
            m = messages.recv() => match m {
                Some(m) => m,
                None => break,
            },
            update = updates.recv(), if updates_open => {
                match update {
                    Some(Update::Jails(configs, applied)) => {
                        let previous = std::mem::replace(&mut state, Jails::build(&[], HashMap::new(), &metrics)).into_previous();
                        state = Jails::build(&configs, previous, &metrics);
                        // The reloader may have gone; the update is in effect either way.
                        let _ = applied.send(());
                    }
                    None => updates_open = false,
                }
                continue;
            }
            _ = sweep.tick() => {
                let now = Instant::now();
                for (jail, counters) in state.jails.iter_mut().zip(&state.counters) {
                    jail.sweep(now);
                    Metrics::set(&counters.tracked, jail.tracked_addresses() as u64);
                }
                continue;
            }
        };
        if !process(&mut state, message, &offences, &metrics).await {
            warn!("Ban manager stopped; offences are dropped");
            return;
        }
    }
}

/// One message through parse, route and its jails; false when the ban manager is gone.
async fn process(
    state: &mut Jails,
    message: RawMessage,
    offences: &mpsc::Sender<Offence>,
    metrics: &Metrics,
) -> bool {
    let now: DateTime<Utc> = message.received_at.into();
    let record = match message.payload {
        Payload::Frame(frame) => match parse::parse_syslog(&frame, now) {
            Ok(r) => r,
            Err(e) => {
                Metrics::inc(&metrics.unparsed);
                debug!(origin = %message.origin, error = %e, "Unparsed frame");
                return true;
            }
        },
        Payload::Record(record) => *record,
    };
    let targets = state.router.jails_for(&record.program);
    if targets.is_empty() {
        Metrics::inc(&metrics.unrouted);
        return true;
    }
    let shared = state
        .shared
        .get(&record.program)
        .map(|m| (m, m.set.matches(&record.message)));
    for &index in targets.iter() {
        let jail = &mut state.jails[index];
        let counters = &state.counters[index];
        // A jail routed here by a prefix is not in the program's shared set: it matches alone.
        let in_shared = shared.as_ref().and_then(|(matcher, hits)| {
            matcher
                .ranges
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, r)| (r.clone(), hits))
        });
        let verdict = match in_shared {
            Some((range, hits)) => {
                let local = range
                    .clone()
                    .filter(|&i| hits.matched(i))
                    .map(|i| i - range.start);
                jail.process_hits(&record, message.origin, message.received, local)
            }
            None => jail.process(&record, message.origin, message.received),
        };
        match verdict {
            Verdict::NoMatch => {}
            Verdict::Ignored => Metrics::inc(&counters.ignored),
            Verdict::Counted { address, failures } => {
                Metrics::inc(&counters.failures);
                debug!(jail = %jail.name(), %address, failures, "Failure");
            }
            Verdict::Offence(mut offence) => {
                Metrics::inc(&counters.failures);
                offence.origin_name = match (&message.identity, message.trust_hostname) {
                    (Some(identity), _) => Some(identity.clone()),
                    (None, true) => record.host.as_deref().map(Arc::from),
                    (None, false) => None,
                };
                if offences.send(offence).await.is_err() {
                    return false;
                }
            }
        }
        Metrics::set(&counters.tracked, jail.tracked_addresses() as u64);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BanTime, JailName};
    use crate::input::Origin;
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
            placement: crate::config::default_placement(),
        }
    }

    fn message(text: &str) -> RawMessage {
        RawMessage {
            origin: Origin::Local,
            identity: None,
            trust_hostname: false,
            payload: Payload::Frame(Bytes::from(format!(
                "<38>Nov 25 08:32:44 web1 sshd[1]: {text}"
            ))),
            received: Instant::now(),
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
        let mut state = Jails::build(&configs, HashMap::new(), &metrics);
        assert!(state.shared.contains_key("sshd"), "one set for both jails");
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

    #[tokio::test]
    async fn parsed_records_from_journal_input_skip_parsing() {
        let metrics = Metrics::default();
        let configs = vec![jail(
            "passwords",
            r"^Failed password for \S+ from <HOST> port \d+ ssh2$",
            1,
        )];
        let mut state = Jails::build(&configs, HashMap::new(), &metrics);
        let (tx, mut rx) = mpsc::channel(8);
        let record = crate::parse::LogRecord {
            priority: None,
            timestamp: None,
            host: Some("web1".into()),
            program: "sshd".into(),
            pid: None,
            message: "Failed password for root from 203.0.113.9 port 22 ssh2".into(),
        };
        let message = RawMessage {
            payload: Payload::Record(Box::new(record)),
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
             failregex = ^<F-NOFAIL>Connection from</F-NOFAIL> <HOST>\n\
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
        let mut state = Jails::build(&[config], HashMap::new(), &metrics);
        let (tx, mut rx) = mpsc::channel(8);
        let frame = |pid: u32, text: &str| RawMessage {
            payload: Payload::Frame(Bytes::from(format!(
                "<38>Nov 25 08:32:44 web1 sshd[{pid}]: {text}"
            ))),
            ..message("unused")
        };
        for (pid, text) in [
            (7, "Connection from 203.0.113.50 port 4000"),
            (8, "Connection from 203.0.113.99 port 4001"),
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
}
