//! The workers' side of the pipeline: the read-only matchers (router, filters, one regex
//! set per program heard by several jails), one message through parse, route and match, and
//! the per-worker counts. Stateless per message; what it finds goes to the window task as
//! `Hit`s.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use regex::RegexSet;
use tracing::debug;

use crate::config::JailConfig;
use crate::input::{Origin, Payload, RawMessage};
use crate::jail::filter::{Filter, FilterMatch};
use crate::jail::{Classified, Classifier};
use crate::metrics::{JailMetrics, Metrics};
use crate::parse::{self, LogRecord};
use crate::route::Router;
use crate::target::Target;

/// What the workers need of one jail.
pub(super) struct JailMatcher {
    filter: Filter,
    classifier: Classifier,
    /// Matched by the window task instead (fail2ban filters keep per-stream state).
    stateful: bool,
    counters: Arc<JailMetrics>,
}

/// The workers' read-only view of the jails, replaced as a whole on reload.
pub(super) struct Matchers {
    /// Changes with every reload; hits carry it so the window task knows their jail indexes.
    pub(super) generation: u64,
    pub(super) router: Router,
    pub(super) jails: Vec<JailMatcher>,
    /// For programs heard by several jails: all their failregex in one multi-pattern set, so
    /// a message costs one pass however many jails hear it.
    pub(super) shared: HashMap<String, SharedMatcher>,
}

/// One `RegexSet` over the failregex of every jail of a program; `ranges[i]` are the set
/// indexes of jail `i` (a jail index) in that set.
pub(super) struct SharedMatcher {
    set: RegexSet,
    ranges: Vec<(usize, Range<usize>)>,
}

impl SharedMatcher {
    /// None when the combined set would exceed the regex size limit: jails then match one
    /// by one, which is correct, only slower.
    pub(super) fn build(jail_indexes: &[usize], jails: &[JailMatcher]) -> Option<Self> {
        let mut patterns = Vec::new();
        let mut ranges = Vec::new();
        for &index in jail_indexes {
            let start = patterns.len();
            patterns.extend(jails[index].filter.expanded_failregex());
            ranges.push((index, start..patterns.len()));
        }
        RegexSet::new(patterns)
            .ok()
            .map(|set| SharedMatcher { set, ranges })
    }
}

impl Matchers {
    pub(super) fn build(configs: &[JailConfig], generation: u64, metrics: &Metrics) -> Self {
        let router = Router::new(
            configs
                .iter()
                .map(|j| j.programs.iter().map(String::as_str)),
        );
        let jails: Vec<JailMatcher> = configs
            .iter()
            .map(|c| JailMatcher {
                filter: c.filter.clone(),
                classifier: Classifier::new(c),
                stateful: c.fail2ban.is_some(),
                counters: metrics.jail(c.name.as_str()),
            })
            .collect();
        let mut by_program: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, config) in configs.iter().enumerate() {
            if jails[index].stateful {
                continue;
            }
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
        Matchers {
            generation,
            router,
            jails,
            shared,
        }
    }
}

/// What a worker hands to the window task.
#[derive(Debug)]
pub(super) enum Hit {
    /// A failure matched and classified.
    Failure {
        jail: usize,
        generation: u64,
        target: Target,
        attempts: crate::jail::Attempts,
        origin: Origin,
        origin_name: Option<Arc<str>>,
        at: Instant,
        sample: String,
    },
    /// A record for a jail that matches where its state lives.
    Record {
        jail: usize,
        generation: u64,
        record: Box<LogRecord>,
        origin: Origin,
        origin_name: Option<Arc<str>>,
        at: Instant,
    },
}

/// A worker's counts not yet added to the shared counters.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) pending: u32,
    unparsed: u64,
    unrouted: u64,
    /// Ignored matches per jail index of the current matchers.
    ignored: Vec<u64>,
}

impl Tally {
    pub(super) fn flush(&mut self, matchers: &Matchers, metrics: &Metrics) {
        if self.pending == 0 {
            return;
        }
        for (counter, n) in [
            (&metrics.unparsed, &mut self.unparsed),
            (&metrics.unrouted, &mut self.unrouted),
        ] {
            if *n > 0 {
                counter.fetch_add(*n, std::sync::atomic::Ordering::Relaxed);
                *n = 0;
            }
        }
        for (index, n) in self.ignored.iter_mut().enumerate() {
            if *n > 0 {
                if let Some(jail) = matchers.jails.get(index) {
                    jail.counters
                        .ignored
                        .fetch_add(*n, std::sync::atomic::Ordering::Relaxed);
                }
                *n = 0;
            }
        }
        self.pending = 0;
    }
}

/// One message through parse, route and the jails' filters; pushes its hits onto `found`.
pub(super) fn match_message(
    matchers: &Matchers,
    message: RawMessage,
    tally: &mut Tally,
    found: &mut Vec<Hit>,
) {
    let now: DateTime<Utc> = message.received_at.into();
    tally.pending += 1;
    let mut record = match message.payload {
        Payload::Frame(frame) => match parse::parse_syslog(&frame, now) {
            Ok(r) => r,
            Err(e) => {
                tally.unparsed += 1;
                debug!(origin = %message.origin, error = %e, "Unparsed frame");
                return;
            }
        },
        Payload::Journal(entry) => match parse::journal::to_record(&entry) {
            Some(r) => r,
            None => {
                // No MESSAGE: nothing a jail could match.
                tally.unparsed += 1;
                return;
            }
        },
    };
    let targets = matchers.router.jails_for(&record.program);
    if targets.is_empty() {
        tally.unrouted += 1;
        return;
    }
    // Only computed when the message is a hit somewhere.
    let origin_name = || match (&message.identity, message.trust_hostname) {
        (Some(identity), _) => Some(identity.clone()),
        (None, true) => record.host.as_deref().map(Arc::from),
        (None, false) => None,
    };
    let shared = matchers
        .shared
        .get(&record.program)
        .map(|m| (m, m.set.matches(&record.message)));
    // Failures found here, whose samples are filled in after the loop: the last one takes
    // the message text, the others a copy.
    let first_failure = found.len();
    for &index in targets.iter() {
        let jail = &matchers.jails[index];
        if jail.stateful {
            found.push(Hit::Record {
                jail: index,
                generation: matchers.generation,
                record: Box::new(record.clone()),
                origin: message.origin,
                origin_name: origin_name(),
                at: message.received,
            });
            continue;
        }
        // A jail routed here by a prefix is not in the program's shared set: it matches alone.
        let in_shared = shared.as_ref().and_then(|(matcher, hits)| {
            matcher
                .ranges
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, r)| (r.clone(), hits))
        });
        let matched: FilterMatch = match in_shared {
            Some((range, hits)) => {
                let local = range
                    .clone()
                    .filter(|&i| hits.matched(i))
                    .map(|i| i - range.start);
                jail.filter.check_hits(&record.message, local)
            }
            None => jail.filter.check(&record.message),
        };
        match jail.classifier.classify(matched) {
            Classified::NoMatch => {}
            Classified::Ignored => {
                if tally.ignored.len() <= index {
                    tally.ignored.resize(matchers.jails.len(), 0);
                }
                tally.ignored[index] += 1;
            }
            Classified::Failure(target, attempts) => found.push(Hit::Failure {
                jail: index,
                generation: matchers.generation,
                target,
                attempts,
                origin: message.origin,
                origin_name: origin_name(),
                at: message.received,
                sample: String::new(),
            }),
        }
    }
    let mut failures = found[first_failure..]
        .iter_mut()
        .filter_map(|hit| match hit {
            Hit::Failure { sample, .. } => Some(sample),
            Hit::Record { .. } => None,
        })
        .peekable();
    while let Some(sample) = failures.next() {
        *sample = if failures.peek().is_some() {
            record.message.clone()
        } else {
            std::mem::take(&mut record.message)
        };
    }
}
