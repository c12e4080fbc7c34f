//! Remote enforcement: one worker per `[target.NAME]`, keeping that host's nftables sets (or
//! ipset sets, or hosts.deny entries, by `backend`) equal to the bans placed on it, over one
//! long-lived SSH session (`ssh.rs`). A command target has no such worker: its bans run the
//! command worker with an SSH runner.
//!
//! Owns the link to the host (when to connect and retry), the queue of changes not yet
//! applied, the desired state of the host, and periodic reconciles. It holds no policy: it
//! only applies the commands it receives. A host that is down or slow never blocks the
//! caller: commands are drained into the queue at once, and what could not be applied is put
//! back by the reconcile after the next connect.
//!
//! No shell sees log-derived text: the remote commands are the fixed argv `[sudo -n] nft -e -i`
//! (a long-running session that applies each batch, see `session.rs`), `nft -f -` (setup,
//! reconcile, batches too long for one line or touching the per-port sets) and
//! `nft -j list table inet T`, or the ipset and hosts-deny backends' fixed argv; element
//! changes travel on stdin.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use openssh::{Session, Stdio};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::nft::{self, ElementChange};
use super::pending::{self, Batch};
use super::reconcile;
use super::session::{NftPipes, NftSession, SessionError, Spawner, MAX_LINE};
use super::ssh::{chain, close, open_session, RemoteError, RemoteTarget};
use crate::ban::BanCommand;
use crate::config::{TargetBackend, TargetConfig, TargetName};
use crate::metrics::{Metrics, TargetMetrics};

/// First retry after a failed connect or command; doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

enum Outcome {
    Connected(Result<Arc<Session>, RemoteError>),
    Applied(Result<(), RemoteError>, Batch),
    Reconciled(Result<usize, RemoteError>),
}

/// Runs one target until the channel closes. Pending changes that cannot be applied by then
/// are not lost: every ban is in the store and is reconciled onto the host after a restart.
pub async fn run(
    target: RemoteTarget,
    mut commands: mpsc::Receiver<BanCommand>,
    metrics: Arc<TargetMetrics>,
) {
    let target = Arc::new(target);
    let name = target.name().clone();
    // What the host's sets should hold: the latest deadline per address.
    let mut desired = pending::Desired::default();
    let mut pending = Batch::default();
    let mut link = Link::new(target.config.reconcile_interval);
    let mut inflight: JoinSet<Outcome> = JoinSet::new();
    // Connection cuts on the host (`kill_connections`), beside the batches.
    let mut cuts: JoinSet<()> = JoinSet::new();
    let mut reconcile_at = crate::clock::now();
    let mut must_reconcile = true;
    let mut open = true;
    loop {
        if inflight.is_empty() {
            let now = crate::clock::now();
            match &link.session {
                None if now >= link.retry_at && (open || !pending.is_empty()) => {
                    let t = target.clone();
                    inflight.spawn(async move { Outcome::Connected(connect(&t).await) });
                }
                Some(s) if must_reconcile || now >= reconcile_at => {
                    desired.retain(|_, wanted| wanted.live(now));
                    // The snapshot covers every queued change: they are all in `desired`.
                    pending.clear();
                    let (s, t, snapshot) = (s.clone(), target.clone(), desired.clone());
                    inflight.spawn(async move {
                        Outcome::Reconciled(reconcile_host(&s, &t, &snapshot).await)
                    });
                    must_reconcile = false;
                }
                Some(s) if !pending.is_empty() => {
                    let batch = std::mem::take(&mut pending);
                    let changes = pending::changes(&batch, now);
                    let (s, t, ns) = (s.clone(), target.clone(), link.nft.clone());
                    inflight.spawn(async move {
                        let result = if changes.is_empty() {
                            Ok(())
                        } else if let Some(ipset) = t.ipset(&s) {
                            ipset
                                .apply(&changes)
                                .await
                                .map_err(|e| t.tool_error("apply bans", e))
                        } else if let Some(file) = t.hosts_deny(&s) {
                            file.apply(&changes)
                                .await
                                .map_err(|e| t.file_error("apply bans", e))
                        } else {
                            let script = nft::batch_script(&t.table, &changes);
                            match ns {
                                Some(ns)
                                    if script.len() <= MAX_LINE && !nft::crashes_echo(&changes) =>
                                {
                                    ns.lock().await.apply(&script).await.map_err(|e| match e {
                                        SessionError::Rejected(stderr) => RemoteError::Rejected {
                                            target: t.name().clone(),
                                            status: "nft -i".into(),
                                            stderr,
                                        },
                                        SessionError::Broken(detail) => RemoteError::Session {
                                            target: t.name().clone(),
                                            what: "apply bans",
                                            detail,
                                        },
                                    })
                                }
                                _ => run_nft(&s, &t, &["-f", "-"], Some(script), "apply bans")
                                    .await
                                    .map(drop),
                            }
                        };
                        Outcome::Applied(result, batch)
                    });
                }
                _ => {}
            }
        }
        Metrics::set(&metrics.queued, pending.len() as u64);
        while cuts.try_join_next().is_some() {}
        if !open && inflight.is_empty() && (pending.is_empty() || link.session.is_none()) {
            break;
        }
        let wake = match &link.session {
            None => link.retry_at,
            Some(_) => reconcile_at,
        };
        tokio::select! {
            command = commands.recv(), if open => match command {
                Some(command) => {
                    pending::record(&mut desired, &mut pending, command);
                    if pending.len() > target.config.queue_limit {
                        // `desired` is complete, so the reconcile after reconnecting restores
                        // everything dropped here.
                        metrics.queue_overflows.fetch_add(pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        warn!(target = %name, dropped = pending.len(), "Target queue full; dropping queued changes until the next reconcile");
                        pending.clear();
                        must_reconcile = true;
                    }
                }
                None => open = false,
            },
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                let Ok(outcome) = done else { continue };
                match outcome {
                    Outcome::Connected(Ok(s)) => {
                        info!(target = %name, host = %target.describe(), "Connected to target");
                        link.up(s, &target);
                        Metrics::set(&metrics.connected, 1);
                        metrics.succeeded();
                        must_reconcile = true;
                    }
                    Outcome::Connected(Err(e)) => {
                        link.down(e, &name, &metrics);
                    }
                    Outcome::Applied(Ok(()), batch) => {
                        Metrics::inc(&metrics.batches);
                        metrics.succeeded();
                        let applied = crate::clock::now();
                        for p in batch.values() {
                            metrics.latency.observe(applied.saturating_duration_since(p.decided));
                        }
                        if let Some(session) = &link.session {
                            for (address, _) in batch.iter().filter(|(_, p)| p.cut && p.until.is_some()) {
                                cuts.spawn(super::cut::connections_of(target.runner(session), *address));
                            }
                        }
                        debug!(target = %name, elements = batch.len(), "Remote batch applied");
                    }
                    Outcome::Applied(Err(e), batch) => {
                        for (address, p) in batch {
                            pending.entry(address).or_insert(p);
                        }
                        link.down(e, &name, &metrics);
                    }
                    Outcome::Reconciled(Ok(fixes)) => {
                        metrics.succeeded();
                        Metrics::inc(&metrics.reconciles);
                        metrics.reconcile_fixes.fetch_add(fixes as u64, std::sync::atomic::Ordering::Relaxed);
                        let unix = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                        Metrics::set(&metrics.last_reconcile_unix, unix);
                        reconcile_at = crate::clock::now() + target.config.reconcile_interval;
                        if fixes > 0 {
                            info!(target = %name, fixes, "Reconciled target: missing bans added, stray elements removed");
                        } else {
                            debug!(target = %name, "Reconciled target: in sync");
                        }
                    }
                    Outcome::Reconciled(Err(e)) => {
                        must_reconcile = true;
                        link.down(e, &name, &metrics);
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()), if inflight.is_empty() => {}
        }
    }
    if !pending.is_empty() {
        warn!(target = %name, queued = pending.len(), "Stopping with changes not applied to target; they are reconciled after the next start");
    }
    while cuts.join_next().await.is_some() {}
    link.nft = None;
    if let Some(s) = link.session {
        close(s).await;
    }
}

/// The connection to a target: the SSH session, the remote nft on it, and when to retry.
struct Link {
    session: Option<Arc<Session>>,
    /// The long-running remote nft that applies batches, on `session`.
    nft: Option<Arc<tokio::sync::Mutex<NftSession>>>,
    backoff: Duration,
    max_backoff: Duration,
    retry_at: Instant,
}

impl Link {
    fn new(reconcile_interval: Duration) -> Self {
        Link {
            session: None,
            nft: None,
            backoff: MIN_BACKOFF,
            // Reconnect at least as often as a reconcile would run, so a host that comes back
            // is repaired within about one interval.
            max_backoff: MAX_BACKOFF.min(reconcile_interval).max(MIN_BACKOFF),
            retry_at: crate::clock::now(),
        }
    }

    fn up(&mut self, session: Arc<Session>, target: &Arc<RemoteTarget>) {
        self.nft = matches!(target.config.backend, TargetBackend::Nftables).then(|| {
            Arc::new(tokio::sync::Mutex::new(NftSession::new(
                &target.table,
                remote_spawner(session.clone(), target.clone()),
            )))
        });
        self.session = Some(session);
        self.backoff = MIN_BACKOFF;
    }

    /// After a failure: reports it (once while it repeats), drops the session, schedules the
    /// next attempt.
    fn down(&mut self, e: RemoteError, name: &TargetName, metrics: &TargetMetrics) {
        let text = e.to_string();
        // The same failure again (a host that stays down) is logged once.
        if metrics.last_error().as_deref() == Some(text.as_str()) {
            debug!(target = %name, error = %text, "Remote target still failing");
        } else {
            error!(target = %name, error = %text, "Remote target failed; will reconnect and reconcile");
        }
        metrics.failed(text);
        Metrics::set(&metrics.connected, 0);
        self.nft = None;
        if let Some(s) = self.session.take() {
            tokio::spawn(close(s));
        }
        self.retry_at = crate::clock::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.max_backoff);
    }
}

/// `[sudo -n] nft` on the target: the fixed start of every remote command.
fn nft_command(session: &Arc<Session>, c: &TargetConfig) -> openssh::OwningCommand<Arc<Session>> {
    if c.sudo {
        let mut cmd = session.clone().arc_command("sudo");
        cmd.arg("-n").arg(&c.nft);
        cmd
    } else {
        session.clone().arc_command(&c.nft)
    }
}

/// Starts `[sudo -n] nft -e -i` on the target over `session`.
fn remote_spawner(session: Arc<Session>, target: Arc<RemoteTarget>) -> Spawner {
    Box::new(move || {
        let (session, target) = (session.clone(), target.clone());
        Box::pin(async move {
            let mut command = nft_command(&session, &target.config);
            command
                .args(["-e", "-i"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = command.spawn().await.map_err(|e| chain(&e))?;
            let missing = || "remote nft started without the requested pipes".to_string();
            let stdin = child.stdin().take().ok_or_else(missing)?;
            let stdout = child.stdout().take().ok_or_else(missing)?;
            let stderr = child.stderr().take().ok_or_else(missing)?;
            Ok(NftPipes {
                stdin: Box::new(stdin),
                stdout: Box::new(stdout),
                stderr: Box::new(stderr),
                process: Box::new(child),
            })
        })
    })
}

/// Opens the control master, then makes sure the table, sets and rules exist on the host.
async fn connect(target: &RemoteTarget) -> Result<Arc<Session>, RemoteError> {
    let session = open_session(target).await?;
    if let Some(ipset) = target.ipset(&session) {
        // ipset sets carry no owner mark: each collector names its own (`table`).
        ipset
            .setup()
            .await
            .map_err(|e| target.tool_error("set up ipset sets and iptables rules", e))?;
        return Ok(session);
    }
    if target.hosts_deny(&session).is_some() {
        // Nothing to create: the first reconcile writes the entries.
        return Ok(session);
    }
    // Whose table is it? A missing table is created and marked as ours.
    if let Ok(listing) = run_nft(
        &session,
        target,
        &["-j", "list", "table", "inet", &target.table],
        None,
        "list table",
    )
    .await
    {
        target.check_owner(&listing)?;
    }
    let setup = nft::setup_script(&target.table, target.hooks)
        + &nft::owner_script(&target.table, &target.collector);
    run_nft(&session, target, &["-f", "-"], Some(setup), "set up table").await?;
    Ok(session)
}

/// Reads the host's sets, applies the difference to `desired`; returns the number of fixes.
async fn reconcile_host(
    session: &Arc<Session>,
    target: &RemoteTarget,
    desired: &pending::Desired,
) -> Result<usize, RemoteError> {
    if let Some(ipset) = target.ipset(session) {
        let fail = |e| target.tool_error("reconcile", e);
        let repaired = ipset.setup().await.map_err(fail)?;
        let actual = ipset.list().await.map_err(fail)?;
        let changes: Vec<ElementChange> = super::ipset::settle(
            reconcile::diff(desired, &actual, crate::clock::now()),
            &actual,
        );
        if !changes.is_empty() {
            ipset.apply(&changes).await.map_err(fail)?;
        }
        return Ok(changes.len() + repaired);
    }
    if let Some(file) = target.hosts_deny(session) {
        let now = crate::clock::now();
        let wanted = desired
            .iter()
            .filter(|(_, wanted)| wanted.live(now))
            .map(|(target, _)| *target)
            .collect();
        let (_, fixes) = file
            .reconcile(wanted)
            .await
            .map_err(|e| target.file_error("reconcile", e))?;
        return Ok(fixes);
    }
    let listing = run_nft(
        session,
        target,
        &["-j", "list", "table", "inet", &target.table],
        None,
        "list table",
    )
    .await?;
    // Another collector may have marked it since we connected: never reconcile its bans away.
    target.check_owner(&listing)?;
    let actual = reconcile::parse_listing(&listing).map_err(|source| RemoteError::Listing {
        target: target.name().clone(),
        source,
    })?;
    let changes = reconcile::diff(desired, &actual, crate::clock::now());
    if !changes.is_empty() {
        let script = nft::batch_script(&target.table, &changes);
        run_nft(session, target, &["-f", "-"], Some(script), "reconcile").await?;
    }
    Ok(changes.len())
}

/// Runs `[sudo -n] nft ARGS` on the host with `stdin`, returning its stdout.
async fn run_nft(
    session: &Arc<Session>,
    target: &RemoteTarget,
    args: &[&str],
    stdin: Option<String>,
    what: &'static str,
) -> Result<String, RemoteError> {
    let args = args.iter().map(|a| (*a).to_string()).collect();
    target
        .runner(session)
        .run(
            std::path::Path::new(&target.config.nft),
            args,
            stdin.map(String::into_bytes),
        )
        .await
        .map_err(|e| target.tool_error(what, e))
}
