//! Supervision: every long-lived stage is watched, and a stage that ends or panics while the
//! daemon runs stops the daemon with an error naming it (systemd then restarts it; the kept
//! nft table holds the bans meanwhile). Each stage also reports when it is busy, so a stage
//! stuck on one piece of work (a frozen disk under the store) stops the watchdog pings after
//! a bound and shows in `status`.
//!
//! Owns the watch list, the busy clocks and the fault-injection hook the tests use to kill a
//! stage (`S2B_TEST_KILL_STAGE=NAME` or `NAME:MILLISECONDS`). It knows nothing of what the
//! stages do.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::fault::panic_text;

/// The stages the daemon supervises, by the names its log and errors use.
pub mod stage {
    /// Parse, route, match, count (`pipeline`).
    pub const PIPELINE: &str = "pipeline";
    /// The ban manager.
    pub const BAN_MANAGER: &str = "ban-manager";
    /// The firewall workers.
    pub const ENFORCER: &str = "enforcer";
    /// The SQLite store thread.
    pub const STORE: &str = "store";
    /// The control socket.
    pub const CONTROL: &str = "control";
    /// The `/metrics` endpoint.
    pub const METRICS: &str = "metrics";
    /// Notification delivery (only when a `[notify.*]` is configured).
    pub const NOTIFY: &str = "notify";
    /// Blocklist feeds (only when a `[feed.*]` is configured).
    pub const FEEDS: &str = "feeds";
    /// The cluster's counter and follower.
    pub const CLUSTER: &str = "cluster";
    /// All of them (the last two only when configured).
    pub const ALL: [&str; 6] = [PIPELINE, BAN_MANAGER, ENFORCER, STORE, CONTROL, METRICS];
}

/// Names one stage to kill (tests only): `NAME` (after 200 ms) or `NAME:MILLISECONDS`.
pub const KILL_HOOK: &str = "S2B_TEST_KILL_STAGE";

/// A stage that stopped while it should have run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// The stage's name.
    pub stage: &'static str,
    /// "ended", "panicked: ...", or "was cancelled".
    pub reason: String,
}

/// The stage [`KILL_HOOK`] names, if set: `NAME` (after 200 ms) or `NAME:MILLISECONDS`.
pub fn kill_hook_from_env() -> Option<(String, Duration)> {
    let value = std::env::var(KILL_HOOK).ok()?;
    let (name, ms) = value.split_once(':').unwrap_or((&value, "200"));
    Some((
        name.to_string(),
        Duration::from_millis(ms.parse().unwrap_or(200)),
    ))
}

/// A stage's end ends its neighbours too (their channels close), so deaths come in bursts:
/// this collects the burst that follows `first` (50 ms) and names the first that did not just
/// end (it panicked, was cancelled or killed), or else the first. The others are logged.
pub async fn root_cause(first: Death, deaths: &mut mpsc::Receiver<Death>) -> Death {
    let mut all = vec![first];
    let settle = tokio::time::sleep(Duration::from_millis(50));
    tokio::pin!(settle);
    loop {
        tokio::select! {
            () = &mut settle => break,
            next = deaths.recv() => match next {
                Some(death) => all.push(death),
                None => break,
            },
        }
    }
    let root = all.iter().position(|d| d.reason != "ended").unwrap_or(0);
    let root = all.swap_remove(root);
    for other in all {
        tracing::warn!(stage = other.stage, reason = %other.reason, cause = root.stage, "Stage stopped after another");
    }
    root
}

/// Watches stages; clones share the watch list.
#[derive(Clone)]
pub struct Supervisor {
    deaths: mpsc::Sender<Death>,
    stopping: Arc<AtomicBool>,
    clocks: Arc<Mutex<Vec<Arc<BusyClock>>>>,
    hook: Option<(String, Duration)>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

impl Supervisor {
    /// A supervisor and the queue its deaths arrive on. `hook`: a stage to kill after a
    /// while (tests only).
    pub fn new(hook: Option<(String, Duration)>) -> (Self, mpsc::Receiver<Death>) {
        let (deaths, rx) = mpsc::channel(16);
        let supervisor = Supervisor {
            deaths,
            stopping: Arc::default(),
            clocks: Arc::default(),
            hook,
        };
        (supervisor, rx)
    }

    /// From now on stages are expected to end (the daemon is stopping).
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// A busy clock for `stage`, listed in [`Supervisor::stuck`].
    pub fn clock(&self, stage: &'static str) -> Arc<BusyClock> {
        let clock = Arc::new(BusyClock::new(stage));
        self.clocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(clock.clone());
        clock
    }

    /// Stages busy with one piece of work for longer than `bound`, with how long.
    pub fn stuck(&self, bound: Duration) -> Vec<(&'static str, Duration)> {
        self.clocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|clock| clock.busy_for().map(|d| (clock.stage, d)))
            .filter(|(_, busy)| *busy > bound)
            .collect()
    }

    /// Runs `stage` as a task; its end before [`Supervisor::stopping`] is a death. Returns
    /// the handle the daemon awaits on shutdown.
    pub fn spawn<F>(&self, stage: &'static str, work: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let kill = self.kill_after(stage);
        let task = tokio::spawn(async move {
            match kill {
                Some(after) => {
                    tokio::select! {
                        () = work => {}
                        () = tokio::time::sleep(after) => panic!("test hook {KILL_HOOK} killed stage {stage}"),
                    }
                }
                None => work.await,
            }
        });
        // The hook fired inside the task; the watcher must not also abort it.
        self.without_hook().watch(stage, task)
    }

    fn without_hook(&self) -> Supervisor {
        Supervisor {
            hook: None,
            ..self.clone()
        }
    }

    /// Watches a task spawned elsewhere (a server's accept loop) the same way.
    pub fn watch(&self, stage: &'static str, task: JoinHandle<()>) -> JoinHandle<()> {
        let this = self.clone();
        if let Some(after) = self.kill_after(stage) {
            let abort = task.abort_handle();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                abort.abort();
            });
        }
        tokio::spawn(async move {
            let reason = match task.await {
                Ok(()) => "ended".to_string(),
                Err(e) if e.is_panic() => format!("panicked: {}", panic_text(&*e.into_panic())),
                Err(_) => "was cancelled".to_string(),
            };
            if !this.stopping.load(Ordering::SeqCst) {
                let _ = this.deaths.send(Death { stage, reason }).await;
            } else if reason != "ended" {
                // While stopping nobody waits for deaths, but a panic is still a bug to see.
                tracing::error!(stage, %reason, "A stage failed while stopping");
            }
        })
    }

    /// Watches a thread: `join` runs on the blocking pool. (A thread cannot be killed from
    /// outside: the test hook reports its death without ending it.)
    pub fn watch_thread(
        &self,
        stage: &'static str,
        thread: std::thread::JoinHandle<()>,
    ) -> JoinHandle<()> {
        if let Some(after) = self.kill_after(stage) {
            let deaths = self.deaths.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let reason = format!("killed by test hook {KILL_HOOK}");
                let _ = deaths.send(Death { stage, reason }).await;
            });
        }
        let joined = tokio::task::spawn_blocking(move || {
            if let Err(payload) = thread.join() {
                std::panic::resume_unwind(payload);
            }
        });
        self.without_hook().watch(stage, joined)
    }

    fn kill_after(&self, stage: &str) -> Option<Duration> {
        self.hook
            .as_ref()
            .filter(|(name, _)| name == stage)
            .map(|(_, after)| *after)
    }
}

/// Runs `work` on a thread of its own, in a current-thread runtime (timers and I/O on): for a
/// serial stage that must not wait for a turn among the tasks that keep the shared runtime's
/// threads busy (a ban storm's connections and matching workers). Resolves when `work` ends;
/// a panic in it is raised again here, so a supervised task awaiting this dies of it and the
/// daemon stops, as if `work` had been a task. On a current-thread runtime (tests that move
/// tokio's clock) it runs in place: there is no pool to wait in, and the stage must keep that
/// runtime's clock.
pub async fn on_own_thread<F>(name: &str, priority: Priority, work: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::CurrentThread
    {
        return work.await;
    }
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if priority == Priority::Favoured {
                favour_this_thread();
            }
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|runtime| runtime.block_on(work))
            }));
            let _ = done_tx.send(outcome);
        });
    if let Err(e) = spawned {
        panic!("cannot start thread {name}: {e}");
    }
    match done.await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => panic!("thread {name} cannot start its runtime: {e}"),
        Ok(Err(payload)) => std::panic::resume_unwind(payload),
        Err(_) => panic!("thread {name} ended without a word"),
    }
}

/// How a stage's own thread is scheduled against the rest of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// On the path from a failure to its ban, and never backlogged for long: run first (see
    /// [`SERIAL_STAGE_FAVOUR`]).
    Favoured,
    /// Side work that may fall behind and drop (the cluster's count): never ahead of ingest.
    AsIs,
}

/// How far a serial stage's thread is favoured over the rest of the daemon (the matching
/// workers, the connections): this much below the process's nice value.
const SERIAL_STAGE_FAVOUR: i32 = 5;

/// Lowers this thread's nice value by [`SERIAL_STAGE_FAVOUR`]. When the cores are short (a ban
/// storm), a failure crosses three serial stages on their own threads before its ban is in the
/// kernel, and each wake-up waited for a running matching worker's time slice: milliseconds
/// at the tail. Favoured, the stage's thread runs first; the threads it starts (the firewall's
/// netlink thread) inherit it, except side work that gives it back ([`unfavour_this_thread`]).
/// Needs root, CAP_SYS_NICE or an RLIMIT_NICE
/// that allows it (the shipped unit's `LimitNICE=-5`); without, the thread stays as it is,
/// said at debug level.
fn favour_this_thread() {
    let tid = rustix::thread::gettid();
    let favoured = rustix::process::getpriority_process(Some(tid)).and_then(|nice| {
        rustix::process::setpriority_process(Some(tid), (nice - SERIAL_STAGE_FAVOUR).max(-20))
    });
    if let Err(e) = favoured {
        tracing::debug!(error = %e, "A serial stage's thread keeps its priority");
    }
}

/// Gives this thread the process's own nice value again: for side work started from a
/// favoured stage (the drift monitor reading a storm's notifications), which must not run
/// ahead of ingest. Raising one's nice value needs no privilege.
pub fn unfavour_this_thread() {
    let process = rustix::process::getpid();
    let tid = rustix::thread::gettid();
    let restored = rustix::process::getpriority_process(Some(process))
        .and_then(|nice| rustix::process::setpriority_process(Some(tid), nice));
    if let Err(e) = restored {
        tracing::debug!(error = %e, "A side thread keeps the priority it inherited");
    }
}

/// When a stage started the piece of work it is on (none: waiting for work).
#[derive(Debug)]
pub struct BusyClock {
    stage: &'static str,
    origin: Instant,
    /// Milliseconds after `origin` plus one; 0 while idle.
    since: AtomicU64,
}

impl BusyClock {
    fn new(stage: &'static str) -> Self {
        BusyClock {
            stage,
            origin: Instant::now(),
            since: AtomicU64::new(0),
        }
    }

    /// Marks the stage busy until the guard is dropped.
    pub fn busy(&self) -> Busy<'_> {
        let ms = self.origin.elapsed().as_millis() as u64 + 1;
        self.since.store(ms, Ordering::Relaxed);
        Busy(self)
    }

    /// How long the current piece of work has taken (None: idle).
    pub fn busy_for(&self) -> Option<Duration> {
        match self.since.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                self.origin
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            ),
        }
    }
}

/// A stage at work; idle again when dropped.
#[derive(Debug)]
pub struct Busy<'a>(&'a BusyClock);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.since.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stage_that_ends_or_panics_is_a_death_unless_the_daemon_stops() {
        let (supervisor, mut deaths) = Supervisor::new(None);
        supervisor.spawn("ends", async {});
        let death = deaths.recv().await.unwrap();
        assert_eq!((death.stage, death.reason.as_str()), ("ends", "ended"));
        supervisor.spawn("panics", async { panic!("the store is broken") });
        let death = deaths.recv().await.unwrap();
        assert_eq!(death.stage, "panics");
        assert!(death.reason.contains("the store is broken"), "{death:?}");
        let thread = std::thread::spawn(|| panic!("thread down"));
        supervisor.watch_thread("thread", thread);
        assert!(deaths.recv().await.unwrap().reason.contains("thread down"));
        supervisor.stopping();
        let done = supervisor.spawn("stops", async {});
        done.await.unwrap();
        assert!(deaths.try_recv().is_err(), "an expected end is no death");
    }

    #[test]
    fn a_busy_clock_shows_only_work_in_progress() {
        let (supervisor, _deaths) = Supervisor::new(None);
        let clock = supervisor.clock("store");
        assert!(supervisor.stuck(Duration::ZERO).is_empty());
        let busy = clock.busy();
        std::thread::sleep(Duration::from_millis(20));
        let stuck = supervisor.stuck(Duration::from_millis(10));
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].0, "store");
        assert!(supervisor.stuck(Duration::from_secs(10)).is_empty());
        drop(busy);
        assert!(supervisor.stuck(Duration::ZERO).is_empty());
    }

    /// A stage on its own thread ends like a task: its result comes back, and its panic is
    /// the awaiting task's panic (which the supervisor reports as the stage's death).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stage_on_its_own_thread_ends_and_panics_like_a_task() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        on_own_thread("test-ok", Priority::AsIs, async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = tx.send(std::thread::current().name().map(str::to_string));
        })
        .await;
        assert_eq!(rx.await.unwrap().as_deref(), Some("test-ok"));
        let died = tokio::spawn(on_own_thread("test-panic", Priority::AsIs, async {
            panic!("stage bug");
        }))
        .await
        .expect_err("the panic reaches the awaiting task");
        assert!(died.is_panic());
        assert_eq!(panic_text(&*died.into_panic()), "stage bug");
    }

    /// As root (CI), a stage's thread runs ahead of the runtime's threads.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stage_on_its_own_thread_is_favoured_when_allowed() {
        let nice = || rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        let here = nice().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        on_own_thread("test-nice", Priority::Favoured, async move {
            let _ = tx.send(nice().unwrap());
        })
        .await;
        let stage = rx.await.unwrap();
        if rustix::process::geteuid().is_root() {
            assert_eq!(stage, (here - SERIAL_STAGE_FAVOUR).max(-20));
        } else {
            assert!(stage <= here, "never less favoured than the caller");
        }
        assert_eq!(nice().unwrap(), here, "the caller's thread is unchanged");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn side_work_started_from_a_favoured_stage_gives_the_favour_back() {
        let nice_of = |id| rustix::process::getpriority_process(Some(id)).unwrap();
        let process = nice_of(rustix::process::getpid());
        let (tx, rx) = tokio::sync::oneshot::channel();
        on_own_thread("test-unfavour", Priority::Favoured, async move {
            let side = std::thread::spawn(move || {
                unfavour_this_thread();
                nice_of(rustix::thread::gettid())
            });
            let _ = tx.send(side.join().unwrap());
        })
        .await;
        assert_eq!(rx.await.unwrap(), process);
    }
}
