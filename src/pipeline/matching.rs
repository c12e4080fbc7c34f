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
use crate::input::{journal, Origin, Payload, RawMessage};
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
    /// Journal failures carry their entry's key for the cluster's shared count (a hash per
    /// failure: only with a cluster).
    pub(super) entry_keys: bool,
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
            entry_keys: false,
        }
    }

    /// With `on`, journal failures carry their entry's key (see [`Matchers::entry_keys`]).
    pub(super) fn with_entry_keys(mut self, on: bool) -> Self {
        self.entry_keys = on;
        self
    }
}

/// What a worker hands to the window task for one input batch: its hits, and the text of
/// the messages they failed in, side by side in one buffer. One allocation a batch, freed by
/// the window task at once: a string per failure, allocated by a worker and freed on the
/// window thread, cost a contended cross-thread free each in a ban storm.
#[derive(Debug, Default)]
pub(super) struct Hits {
    pub(super) hits: Vec<Hit>,
    text: String,
}

/// How far a batch's hits had got before one message: what a message that failed half-way
/// is cut back to.
pub(super) struct Mark {
    hits: usize,
    text: usize,
}

impl Hits {
    /// The text of a failure's message (empty if the range is not this batch's).
    #[cfg(test)]
    pub(super) fn sample(&self, range: &Range<usize>) -> &str {
        self.text.get(range.clone()).unwrap_or_default()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    pub(super) fn mark(&self) -> Mark {
        Mark {
            hits: self.hits.len(),
            text: self.text.len(),
        }
    }

    pub(super) fn truncate(&mut self, mark: Mark) {
        self.hits.truncate(mark.hits);
        self.text.truncate(mark.text);
    }

    /// Splits into the hits and the text their samples point into.
    pub(super) fn into_parts(self) -> (Vec<Hit>, String) {
        (self.hits, self.text)
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
        /// The message's text: a range of the batch's [`Hits`] text.
        sample: Range<usize>,
        /// A journal entry's identity, the same on every collector (its failure's id in
        /// the cluster's shared count).
        entry: Option<[u8; 16]>,
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
    found: &mut Hits,
) {
    let now: DateTime<Utc> = message.received_at.into();
    tally.pending += 1;
    let (record, entry) = match message.payload {
        Payload::Frame(frame) => match parse::parse_syslog(&frame, now) {
            Ok(r) => (r, None),
            Err(e) => {
                tally.unparsed += 1;
                debug!(origin = %message.origin, error = %e, "Unparsed frame");
                return;
            }
        },
        Payload::Journal(entry) => match parse::journal::to_record(&entry) {
            Some(r) => (r, Some(entry)),
            None => {
                // No MESSAGE: nothing a jail could match.
                tally.unparsed += 1;
                return;
            }
        },
    };
    // Only with a cluster, only for a failure, and once per message.
    let mut key_of_entry = None;
    let mut entry_key = || {
        *key_of_entry.get_or_insert_with(|| {
            entry
                .as_deref()
                .filter(|_| matchers.entry_keys)
                .and_then(journal::shared_key)
        })
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
    // Every failure of this message points at one copy of its text.
    let text_start = found.text.len();
    let sample = text_start..text_start + record.message.len();
    let mut failed = false;
    for &index in targets.iter() {
        let jail = &matchers.jails[index];
        if jail.stateful {
            found.hits.push(Hit::Record {
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
            Classified::Failure(target, attempts) => {
                failed = true;
                found.hits.push(Hit::Failure {
                    jail: index,
                    generation: matchers.generation,
                    target,
                    attempts,
                    origin: message.origin,
                    origin_name: origin_name(),
                    at: message.received,
                    sample: sample.clone(),
                    entry: entry_key(),
                });
            }
        }
    }
    if failed {
        found.text.push_str(&record.message);
    }
}
