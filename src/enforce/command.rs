//! The `command` backend: the operator's own program per ban and unban (page someone, update
//! a load balancer, a firewall syslog2ban has no backend for), from argv templates.
//!
//! Owns the runs: at most `concurrency` at once, each killed after `timeout`, one at a time
//! per address (a ban and its unban never race), and its exit status and stderr counted in the
//! place's metrics and `status`. A run that could not start (the program is missing, or a
//! target's SSH session is down) is retried with a growing pause; one that ran and failed is
//! reported, not retried. Runs happen on this host or, for a target, over its SSH session
//! (`Runner`). Each placeholder fills exactly one argv element and no shell
//! is involved, so an origin name or anything else from a log can never become a command. A
//! command that has not started yet is replaced by a newer one for its address, so a slow
//! program under a ban storm holds at most one waiting run per address.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::cut;
use super::tool::{Runner, ToolError};
use crate::ban::{BanCommand, BanReason};
use crate::config::{ArgvTemplate, CommandConfig, Placeholder};
use crate::metrics::{Metrics, TargetMetrics};
use crate::target::{Ports, Target};

/// One run waiting for a slot.
#[derive(Debug, Clone)]
struct Job {
    ban: bool,
    reason: Option<Arc<BanReason>>,
    ports: Option<Ports>,
    decided: Instant,
    /// A retried run waits until then.
    not_before: Option<Instant>,
}

/// First pause before retrying a run that could not start; doubles up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Runs the command backend until the channel closes: `start`, a `ban` for every restored
/// ban (a restart re-applies them, as a wiped firewall needs), then each command as it comes;
/// on a clean stop, the last runs finish and `stop` runs.
/// `runner` runs the programs, and a ban's `kill_connections` cuts, on the host they are for
/// (this one, or a target over SSH).
pub async fn run(
    config: Arc<CommandConfig>,
    restored: Vec<BanCommand>,
    mut commands: mpsc::Receiver<BanCommand>,
    metrics: Arc<TargetMetrics>,
    runner: Arc<dyn Runner>,
) {
    if let Some(start) = &config.start {
        once(runner.as_ref(), start, "start", &metrics).await;
    }
    let mut retry = FIRST_RETRY;
    let mut queue = Queue::default();
    for command in restored {
        queue.push(command);
    }
    let mut running: JoinSet<(Target, Result<(), ToolError>, Job)> = JoinSet::new();
    let mut cuts = JoinSet::new();
    let mut open = true;
    loop {
        while cuts.try_join_next().is_some() {}
        let now = crate::clock::now();
        while running.len() < config.concurrency {
            let Some((target, job)) = queue.next_free(now) else {
                break;
            };
            let (config, runner) = (config.clone(), runner.clone());
            running.spawn(async move {
                let template = if job.ban { &config.ban } else { &config.unban };
                let args = arguments(template, &target, job.reason.as_deref(), job.ports.as_ref());
                let result = runner.run(&template.program, args, None).await.map(drop);
                (target, result, job)
            });
        }
        // A clean stop does not wait for retries of runs that cannot start.
        if !open && running.is_empty() && (queue.is_empty() || queue.only_retries()) {
            break;
        }
        let wake = queue.next_retry();
        tokio::select! {
            command = commands.recv(), if open => match command {
                Some(command) => queue.push(command),
                None => open = false,
            },
            _ = sleep_until(wake), if wake.is_some() && running.len() < config.concurrency => {}
            Some(done) = running.join_next() => {
                let Ok((target, result, job)) = done else { continue };
                queue.busy.remove(&target);
                let ban = job.ban;
                let action = if ban { "ban" } else { "unban" };
                match result {
                    Ok(()) => {
                        retry = FIRST_RETRY;
                        metrics.succeeded();
                        Metrics::inc(&metrics.batches);
                        if ban {
                            metrics.latency.observe(job.decided.elapsed());
                            queue.applied.insert(target);
                            let kill = job.reason.as_ref().is_some_and(|r| r.kill_connections);
                            if kill {
                                cuts.spawn(cut::connections_of(runner.clone(), target));
                            }
                        } else {
                            queue.applied.remove(&target);
                        }
                        debug!(%target, action, "Ban command ran");
                    }
                    Err(e @ ToolError::Spawn { .. }) => {
                        metrics.failed(format!("{action} {target}: {e}"));
                        warn!(%target, action, error = %e, retry_in = ?retry, "Ban command could not start; retrying");
                        queue.retry(target, job, crate::clock::now() + retry);
                        retry = (retry * 2).min(MAX_RETRY);
                    }
                    Err(e) => {
                        metrics.failed(format!("{action} {target}: {e}"));
                        error!(%target, action, error = %e, "Ban command failed: the address may not be enforced");
                    }
                }
            }
        }
    }
    while cuts.join_next().await.is_some() {}
    if !queue.is_empty() {
        warn!(waiting = queue.order.len(), "Stopping with ban commands that could not start; the bans are restored and run again on the next start");
    }
    if let Some(stop) = &config.stop {
        once(runner.as_ref(), stop, "stop", &metrics).await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Runs `start` or `stop` (no placeholders have values there: they are filled empty).
async fn once(runner: &dyn Runner, template: &ArgvTemplate, what: &str, metrics: &TargetMetrics) {
    let args = template.fill(|_| String::new());
    match runner.run(&template.program, args, None).await {
        Ok(_) => info!(program = %template.program.display(), "Ban command's {what} ran"),
        Err(e) => {
            metrics.failed(format!("{what}: {e}"));
            error!(error = %e, "Ban command's {what} failed");
        }
    }
}

/// The argv of one run: each placeholder is exactly one value inside its element.
fn arguments(
    template: &ArgvTemplate,
    target: &Target,
    reason: Option<&BanReason>,
    ports: Option<&Ports>,
) -> Vec<String> {
    template.fill(|placeholder| match placeholder {
        Placeholder::Ports => ports.map_or_else(String::new, |ports| {
            ports
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }),
        Placeholder::Ip => target.to_string(),
        Placeholder::Jail => reason.map_or_else(String::new, |r| r.jail.to_string()),
        Placeholder::Failures => reason.map_or(0, |r| r.failures).to_string(),
        Placeholder::Bantime => reason
            .and_then(|r| r.bantime)
            .map_or_else(|| "-1".to_string(), |d| d.as_secs().to_string()),
        Placeholder::Origin => reason.map_or_else(String::new, |r| r.origin.clone()),
    })
}

/// Runs waiting for a slot, at most one per address, in arrival order.
#[derive(Debug, Default)]
struct Queue {
    order: VecDeque<Target>,
    waiting: HashMap<Target, Job>,
    /// The last reason and ports per banned address (an unban's placeholders name its ban).
    reasons: HashMap<Target, (Arc<BanReason>, Option<Ports>)>,
    /// Addresses whose ban command succeeded and has not been undone.
    applied: HashSet<Target>,
    /// Addresses with a run in progress.
    busy: HashSet<Target>,
}

impl Queue {
    fn push(&mut self, command: BanCommand) {
        let (target, job) = match command {
            BanCommand::Ban {
                address,
                decided,
                reason,
                ports,
                ..
            } => {
                self.reasons
                    .insert(address, (reason.clone(), ports.clone()));
                let job = Job {
                    ban: true,
                    reason: Some(reason),
                    ports,
                    decided,
                    not_before: None,
                };
                (address, job)
            }
            BanCommand::Unban { address, .. } => {
                let (reason, ports) = self.reasons.remove(&address).unzip();
                let never_ran = !self.applied.contains(&address) && !self.busy.contains(&address);
                if never_ran && self.waiting.remove(&address).is_some() {
                    // Its ban never ran: both are done.
                    self.order.retain(|t| *t != address);
                    return;
                }
                let job = Job {
                    ban: false,
                    reason,
                    ports: ports.flatten(),
                    decided: crate::clock::now(),
                    not_before: None,
                };
                (address, job)
            }
        };
        if self.waiting.insert(target, job).is_none() {
            self.order.push_back(target);
        }
    }

    /// The oldest waiting run that is due and whose address has none running; it is marked
    /// running.
    fn next_free(&mut self, now: Instant) -> Option<(Target, Job)> {
        let index = self.order.iter().position(|t| {
            !self.busy.contains(t)
                && self
                    .waiting
                    .get(t)
                    .is_some_and(|j| j.not_before.is_none_or(|at| at <= now))
        })?;
        let target = self.order.remove(index)?;
        let job = self.waiting.remove(&target)?;
        self.busy.insert(target);
        Some((target, job))
    }

    /// Puts back a run that could not start, due at `at`, unless a newer one replaced it.
    fn retry(&mut self, target: Target, mut job: Job, at: Instant) {
        if self.waiting.contains_key(&target) {
            return;
        }
        job.not_before = Some(at);
        self.waiting.insert(target, job);
        self.order.push_back(target);
    }

    /// When the earliest retry is due.
    fn next_retry(&self) -> Option<Instant> {
        self.waiting.values().filter_map(|j| j.not_before).min()
    }

    /// Whether everything waiting is a retry.
    fn only_retries(&self) -> bool {
        self.waiting.values().all(|j| j.not_before.is_some())
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::Place;
    use crate::config::JailName;
    use std::time::Duration;

    fn t(s: &str) -> Target {
        s.parse().unwrap()
    }

    fn reason(origin: &str) -> Arc<BanReason> {
        Arc::new(BanReason {
            jail: JailName::new("sshd").unwrap(),
            failures: 5,
            origin: origin.into(),
            bantime: Some(Duration::from_secs(600)),
            kill_connections: false,
        })
    }

    fn ban(address: &str) -> BanCommand {
        BanCommand::Ban {
            place: Place::Local,
            address: t(address),
            expires: None,
            decided: crate::clock::now(),
            reason: reason("web1"),
            ports: None,
        }
    }

    fn unban(address: &str) -> BanCommand {
        BanCommand::Unban {
            place: Place::Local,
            address: t(address),
        }
    }

    #[test]
    fn each_placeholder_fills_one_element_whatever_it_holds() {
        let template = ArgvTemplate::parse(&[
            "/usr/local/sbin/block".into(),
            "--ip=<ip>".into(),
            "<jail>".into(),
            "<failures>/<bantime>".into(),
            "<origin>".into(),
        ])
        .unwrap();
        let hostile = reason("web1; rm -rf / $(id) `id` \"'\n");
        let args = arguments(&template, &t("2001:db8::/64"), Some(&hostile), None);
        assert_eq!(
            args,
            vec![
                "--ip=2001:db8::/64".to_string(),
                "sshd".into(),
                "5/600".into(),
                "web1; rm -rf / $(id) `id` \"'\n".into(),
            ]
        );
        let permanent = BanReason {
            bantime: None,
            ..(*hostile).clone()
        };
        assert_eq!(
            arguments(&template, &t("198.51.100.1"), Some(&permanent), None)[2],
            "5/-1"
        );
    }

    #[test]
    fn templates_reject_unknown_placeholders_and_a_placeholder_as_program() {
        let err = ArgvTemplate::parse(&["/bin/x".into(), "<address>".into()]).unwrap_err();
        assert!(err.contains("<address>") && err.contains("<ip>"), "{err}");
        assert!(ArgvTemplate::parse(&["<ip>".into()]).is_err());
        assert!(ArgvTemplate::parse(&[]).is_err());
        // Not placeholder-shaped: kept as text.
        let t = ArgvTemplate::parse(&["/bin/x".into(), "a<b c>d <".into()]).unwrap();
        assert_eq!(t.fill(|_| String::new()), vec!["a<b c>d <".to_string()]);
    }

    #[test]
    fn a_waiting_run_is_replaced_and_an_unban_of_an_unrun_ban_cancels_both() {
        let mut queue = Queue::default();
        queue.push(ban("198.51.100.1"));
        queue.push(ban("198.51.100.2"));
        queue.push(ban("198.51.100.1"));
        assert_eq!(queue.order.len(), 2);
        queue.push(unban("198.51.100.2"));
        assert_eq!(queue.order.len(), 1);
        let (first, job) = queue.next_free(crate::clock::now()).unwrap();
        assert_eq!((first, job.ban), (t("198.51.100.1"), true));
        assert!(queue.next_free(crate::clock::now()).is_none());
        // While its ban runs, an unban waits (it must undo what the run does)...
        queue.push(ban("198.51.100.1"));
        queue.push(unban("198.51.100.1"));
        assert!(queue.next_free(crate::clock::now()).is_none());
        // ...and runs once the ban has, with the ban's reason for its placeholders.
        queue.busy.remove(&first);
        queue.applied.insert(first);
        let (_, job) = queue.next_free(crate::clock::now()).unwrap();
        assert!(!job.ban);
        assert_eq!(job.reason.unwrap().origin, "web1");
    }

    #[test]
    fn an_address_with_a_run_in_progress_waits() {
        let mut queue = Queue::default();
        queue.push(ban("198.51.100.1"));
        queue.push(ban("198.51.100.2"));
        queue.busy.insert(t("198.51.100.1"));
        assert_eq!(
            queue.next_free(crate::clock::now()).unwrap().0,
            t("198.51.100.2")
        );
        assert!(queue.next_free(crate::clock::now()).is_none());
        assert!(!queue.is_empty());
    }

    #[test]
    fn a_run_that_could_not_start_waits_its_turn_unless_a_newer_one_replaced_it() {
        let now = crate::clock::now();
        let later = now + Duration::from_secs(5);
        let mut queue = Queue::default();
        queue.push(ban("198.51.100.1"));
        let (target, job) = queue.next_free(now).unwrap();
        queue.busy.remove(&target);
        queue.retry(target, job, later);
        assert!(queue.next_free(now).is_none(), "not due yet");
        assert_eq!(queue.next_retry(), Some(later));
        assert!(queue.only_retries());
        let (again, job) = queue.next_free(later).unwrap();
        assert_eq!((again, job.ban), (target, true));
        // A newer command for the address replaces the retry.
        queue.busy.remove(&again);
        queue.push(unban("198.51.100.2"));
        queue.push(ban("198.51.100.3"));
        queue.retry(t("198.51.100.3"), job, later);
        assert!(!queue.only_retries());
        assert_eq!(queue.next_free(now).unwrap().0, t("198.51.100.2"));
    }
}
