//! The window task's side of the pipeline: every jail's failure windows (and the stateful
//! fail2ban matchers), which turn hits into offences, kept across reloads for the jails that
//! still exist.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use tokio::sync::mpsc;

use crate::cluster::SharedFailure;
use crate::config::JailConfig;
use crate::jail::{BanChange, BanFeedback, BanNews, Jail, Offence, Verdict};
use crate::metrics::{JailMetrics, Metrics};
use crate::target::Target;

use super::matching::Hit;

/// Where counted failures go for the cluster's shared count.
pub struct Sharing {
    /// The cluster's queue: the failures of one batch of hits per entry.
    pub failures: mpsc::Sender<Vec<SharedFailure>>,
    /// The cluster's queue for the failure that made a local count reach maxretry: it takes
    /// the attacker's claim before the ban is published.
    pub reached: mpsc::Sender<SharedFailure>,
    /// Where a failure the queue could not take is counted.
    pub metrics: Arc<Metrics>,
}

impl Sharing {
    /// Sends the failure that just made a local count reach maxretry (the last of
    /// `counted`, if it is one) to the cluster's claim queue, ahead of the offence it made:
    /// the claim is then taken before the ban is published. When that queue is full it
    /// stays in `counted`, for the failures' queue.
    pub(super) fn claim_first(&self, counted: &mut Vec<SharedFailure>) {
        if !counted.last().is_some_and(|f| f.reached) {
            return;
        }
        let Some(failure) = counted.pop() else { return };
        if let Err(mpsc::error::TrySendError::Full(failure)) = self.reached.try_send(failure) {
            counted.push(failure);
        }
    }
}

/// The jails' failure windows (and stateful matchers), owned by the window task.
pub(super) struct Windows {
    generation: u64,
    jails: Vec<Jail>,
    counters: Vec<Arc<JailMetrics>>,
    /// What the ban manager tells the jails (bans made, bans ended).
    feedback: BanFeedback,
}

impl Windows {
    pub(super) fn build(
        configs: &[JailConfig],
        generation: u64,
        mut previous: HashMap<String, Jail>,
        feedback: BanFeedback,
        metrics: &Metrics,
    ) -> Self {
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
        Windows {
            generation,
            counters: configs
                .iter()
                .map(|c| metrics.jail(c.name.as_str()))
                .collect(),
            jails,
            feedback,
        }
    }

    pub(super) fn into_previous(self) -> HashMap<String, Jail> {
        self.jails
            .into_iter()
            .map(|j| (j.name().as_str().to_string(), j))
            .collect()
    }

    /// Counts a hit; the offence when it reached maxretry. A hit matched with the jails of
    /// before a reload is dropped: it was decided by filters that are no longer in force
    /// (only hits already in flight during the swap). With a cluster, each counted failure
    /// is also added to `shared`, for the cluster's queue.
    pub(super) fn record(
        &mut self,
        hit: Hit,
        text: &str,
        shared: Option<&mut Vec<SharedFailure>>,
    ) -> Option<Offence> {
        let (index, generation, origin_name) = match &hit {
            Hit::Failure {
                jail,
                generation,
                origin_name,
                ..
            }
            | Hit::Record {
                jail,
                generation,
                origin_name,
                ..
            } => (*jail, *generation, origin_name.clone()),
        };
        if let Some(news) = self.feedback.take() {
            self.apply(news);
        }
        if generation != self.generation || index >= self.jails.len() {
            debug!("Failure matched before a reload dropped");
            return None;
        }
        let jail = &mut self.jails[index];
        let counters = &self.counters[index];
        let (verdict, weight, origin, sample, entry) = match hit {
            Hit::Failure {
                target,
                attempts,
                origin,
                at,
                sample,
                entry,
                ..
            } => {
                // Never panics on a range from another batch: an empty sample instead.
                let sample = text.get(sample).unwrap_or_default();
                let verdict =
                    jail.record(target, attempts, origin, origin_name.as_ref(), at, sample);
                (
                    verdict,
                    attempts.count,
                    origin,
                    Cow::Borrowed(sample),
                    entry,
                )
            }
            Hit::Record {
                record, origin, at, ..
            } => {
                let verdict = jail.process_from(&record, origin, origin_name.as_ref(), at);
                (verdict, 1, origin, Cow::Owned(record.message), None)
            }
        };
        if let Some(sharing) = shared {
            let target = match &verdict {
                Verdict::Counted { address, .. } => Some(Target::from(*address)),
                Verdict::Offence(o) => Some(o.target),
                Verdict::NoMatch | Verdict::Ignored | Verdict::Reported { .. } => None,
            };
            if let Some(target) = target {
                let failure = SharedFailure {
                    jail: jail.name().clone(),
                    target,
                    weight,
                    maxretry: jail.maxretry(),
                    findtime: jail.findtime(),
                    claim_for: jail.claim_for(),
                    at: std::time::SystemTime::now(),
                    origin,
                    origin_name: origin_name.clone(),
                    sample: sample.into_owned(),
                    entry,
                    reached: matches!(verdict, Verdict::Offence(_)),
                    per_origin: jail.counts_per_origin(),
                };
                sharing.push(failure);
            }
        }
        let offence = match verdict {
            Verdict::NoMatch => None,
            Verdict::Ignored => {
                Metrics::inc(&counters.ignored);
                None
            }
            Verdict::Reported { address } => {
                Metrics::inc(&counters.failures);
                debug!(jail = %jail.name(), %address, "Failure of an address already reported");
                None
            }
            Verdict::Counted { address, failures } => {
                Metrics::inc(&counters.failures);
                debug!(jail = %jail.name(), %address, failures, "Failure");
                None
            }
            Verdict::Offence(mut offence) => {
                Metrics::inc(&counters.failures);
                offence.origin_name = origin_name;
                Some(offence)
            }
        };
        Metrics::set(&counters.tracked, jail.tracked_addresses() as u64);
        let evicted = jail.take_new_evictions();
        if evicted > 0 {
            counters
                .evicted
                .fetch_add(evicted, std::sync::atomic::Ordering::Relaxed);
        }
        offence
    }

    /// Takes in the ban manager's news: bans made are reported addresses in their jail, bans
    /// ended are forgotten there; news that overflowed makes every jail forget everything.
    fn apply(&mut self, news: BanNews) {
        if news.overflowed {
            self.jails.iter_mut().for_each(Jail::forget_reported);
            return;
        }
        let now = crate::clock::now();
        for change in news.changes {
            match change {
                BanChange::Banned { jail, address } => {
                    if let Some(jail) = self.jail_named(&jail) {
                        jail.mark_reported(address, now);
                    }
                }
                BanChange::Lifted { jail, address } => {
                    if let Some(jail) = self.jail_named(&jail) {
                        jail.forget(address);
                    }
                }
            }
        }
    }

    /// The running jail called `name` (a ban of a jail gone since a reload, or of a feed, has
    /// none).
    fn jail_named(&mut self, name: &crate::config::JailName) -> Option<&mut Jail> {
        self.jails.iter_mut().find(|j| j.name() == name)
    }

    pub(super) fn sweep(&mut self, now: Instant) {
        for (jail, counters) in self.jails.iter_mut().zip(&self.counters) {
            jail.sweep(now);
            Metrics::set(&counters.tracked, jail.tracked_addresses() as u64);
        }
    }
}
