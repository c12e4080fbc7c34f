//! Remote enforcement: one worker per `[target.NAME]`, keeping that host's nftables sets (or
//! ipset sets, `backend = "ipset"`) equal to the bans placed on it, over one long-lived
//! multiplexed SSH session.
//!
//! Owns the SSH session (system `ssh` with a control master, strict host-key checking), the
//! queue of changes not yet applied, the desired state of the host's sets, and periodic
//! reconciles. It holds no policy: it only applies the commands it receives. A host that is
//! down or slow never blocks the caller: commands are drained into the queue at once, and
//! what could not be applied is put back by the reconcile after the next connect.
//!
//! No shell sees log-derived text: the remote commands are the fixed argv `[sudo -n] nft -e -i`
//! (a long-running session that applies each batch, see `session.rs`), `nft -f -` (setup,
//! reconcile, batches too long for one line) and `nft -j list table inet T`, or the ipset
//! backend's fixed `ipset`/`iptables` argv (`SshRunner`); element changes travel on stdin.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::hosts_deny::{HostsDeny, HostsDenyError};
use super::ipset::Ipset;
use super::nft::{self, ElementChange};
use super::pending::{self, Batch};
use super::reconcile;
use super::session::{NftPipes, NftSession, SessionError, Spawner, MAX_LINE};
use super::tool::{Runner, Running, ToolError};
use crate::ban::BanCommand;
use crate::config::{CommandConfig, Hooks, TableName, TargetBackend, TargetConfig, TargetName};
use crate::metrics::{Metrics, TargetMetrics};

/// First retry after a failed connect or command; doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// ssh keep-alive probes, so a dead link is noticed between bans.
const SERVER_ALIVE: Duration = Duration::from_secs(15);

/// A remote target as enforcement runs it.
#[derive(Debug, Clone)]
pub struct RemoteTarget {
    config: TargetConfig,
    table: TableName,
    /// The hooks of the host's drop rules (`[target.NAME] hook`, else `[ban] hook`).
    hooks: Hooks,
    /// This collector's name: the table on the host is marked with it, and a table marked
    /// by another collector is never touched.
    collector: String,
    /// Where ssh control sockets live (short path: unix socket paths are limited).
    control_dir: PathBuf,
}

impl RemoteTarget {
    /// A target managing nft table `table` (family inet; `[target.NAME] table` overrides it)
    /// on the host, as collector `collector`.
    pub fn new(
        config: TargetConfig,
        table: &TableName,
        hooks: Hooks,
        collector: &str,
        control_dir: PathBuf,
    ) -> Self {
        RemoteTarget {
            table: config.table.clone().unwrap_or_else(|| table.clone()),
            hooks: config.hooks.unwrap_or(hooks),
            config,
            collector: collector.to_string(),
            control_dir,
        }
    }

    /// Refuses a table marked by another collector (and none by this one).
    fn check_owner(&self, listing: &str) -> Result<(), RemoteError> {
        let owners = reconcile::owners(listing);
        match owners.iter().find(|o| **o != self.collector) {
            Some(other) if !owners.contains(&self.collector) => Err(RemoteError::Owned {
                target: self.config.name.clone(),
                table: self.table.clone(),
                owner: other.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Its name.
    pub fn name(&self) -> &TargetName {
        &self.config.name
    }

    /// Runs tools on the host over `session`.
    fn runner(&self, session: &Arc<Session>) -> Arc<dyn Runner> {
        Arc::new(SshRunner {
            session: session.clone(),
            sudo: self.config.sudo,
            limit: self.config.command_timeout,
        })
    }

    /// The ipset backend on the host, run over `session` (None: another backend).
    fn ipset(&self, session: &Arc<Session>) -> Option<Ipset> {
        let TargetBackend::Ipset(tools) = &self.config.backend else {
            return None;
        };
        Some(Ipset::on(
            self.runner(session),
            tools.clone(),
            &self.table,
            self.hooks,
        ))
    }

    /// The hosts-deny backend on the host, over `session` (None: another backend).
    fn hosts_deny(&self, session: &Arc<Session>) -> Option<HostsDeny> {
        let TargetBackend::HostsDeny(file) = &self.config.backend else {
            return None;
        };
        Some(HostsDeny::on(
            self.runner(session),
            file.path.clone(),
            file.daemons.clone(),
        ))
    }

    /// The hosts.deny file could not be read or replaced.
    fn file_error(&self, what: &'static str, e: HostsDenyError) -> RemoteError {
        RemoteError::Session {
            target: self.config.name.clone(),
            what,
            detail: e.to_string(),
        }
    }

    /// A tool's failure on the host, as the target's error.
    fn tool_error(&self, what: &'static str, e: ToolError) -> RemoteError {
        let target = self.config.name.clone();
        match e {
            ToolError::Spawn { source, .. } => RemoteError::Session {
                target,
                what,
                detail: source.to_string(),
            },
            ToolError::TimedOut { after, .. } => RemoteError::Timeout {
                target,
                what,
                after,
            },
            ToolError::Failed {
                program,
                status,
                stderr,
            } => RemoteError::Rejected {
                target,
                status: format!("{} {status}", program.display()),
                stderr,
            },
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}@{}:{}",
            self.config.user, self.config.address, self.config.port
        )
    }
}

/// Why a remote operation failed.
#[derive(Debug, Error)]
pub enum RemoteError {
    /// The host key is not in known_hosts or differs from it.
    #[error("target {target}: host key of {host} is unknown or has changed; refusing to connect (known_hosts: {known_hosts}). ssh said: {detail}")]
    HostKey {
        /// Target name.
        target: TargetName,
        /// user@address:port.
        host: String,
        /// The known_hosts file used.
        known_hosts: String,
        /// ssh's message.
        detail: String,
    },
    /// Connecting failed otherwise.
    #[error("target {target}: cannot connect to {host}: {detail}")]
    Connect {
        /// Target name.
        target: TargetName,
        /// user@address:port.
        host: String,
        /// ssh's message.
        detail: String,
    },
    /// The remote command could not run or the session broke.
    #[error("target {target}: {what}: {detail}")]
    Session {
        /// Target name.
        target: TargetName,
        /// Which command.
        what: &'static str,
        /// What happened.
        detail: String,
    },
    /// nft on the host rejected the script or listing.
    #[error("target {target}: remote nft failed ({status}): {stderr}")]
    Rejected {
        /// Target name.
        target: TargetName,
        /// Exit status.
        status: String,
        /// nft's message.
        stderr: String,
    },
    /// The operation ran out of time.
    #[error("target {target}: {what} timed out after {after:?}")]
    Timeout {
        /// Target name.
        target: TargetName,
        /// Which operation.
        what: &'static str,
        /// The limit.
        after: Duration,
    },
    /// Another collector manages the table there.
    #[error(
        "target {target}: table inet {table} there is managed by collector {owner}; it is left alone (give this collector its own table there with [target.{target}] table, or a distinct [ban] collector name if both are this one)"
    )]
    Owned {
        /// Target name.
        target: TargetName,
        /// The table.
        table: TableName,
        /// The other collector.
        owner: String,
    },
    /// The host's sets could not be read.
    #[error("target {target}: {source}")]
    Listing {
        /// Target name.
        target: TargetName,
        /// Parse error.
        source: reconcile::ListError,
    },
}

/// An error with its sources, for logs (openssh keeps ssh's own message in the source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(s.to_string().trim());
        source = s.source();
    }
    out
}

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
    let mut desired = pending::Desired::new();
    let mut pending: Batch = HashMap::new();
    let mut link = Link::new(target.config.reconcile_interval);
    let mut inflight: JoinSet<Outcome> = JoinSet::new();
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

async fn close(session: Arc<Session>) {
    if let Ok(session) = Arc::try_unwrap(session) {
        let _ = session.close().await;
    }
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

/// Opens the SSH control master to the host (strict host keys).
async fn open_session(target: &RemoteTarget) -> Result<Arc<Session>, RemoteError> {
    let c = &target.config;
    let control_dir = target.control_dir.join(c.name.as_str());
    std::fs::create_dir_all(&control_dir).map_err(|e| RemoteError::Connect {
        target: c.name.clone(),
        host: target.describe(),
        detail: format!("cannot create {}: {e}", control_dir.display()),
    })?;
    let mut builder = SessionBuilder::default();
    builder
        .user(c.user.clone())
        .port(c.port)
        .known_hosts_check(KnownHosts::Strict)
        .connect_timeout(c.connect_timeout)
        .server_alive_interval(SERVER_ALIVE)
        .control_directory(&control_dir)
        // Removes control dirs a killed daemon left behind; per target, so it never touches
        // another target's live master.
        .clean_history_control_directory(true);
    // A master left behind by a killed daemon exits on its own once idle.
    let idle = (c.reconcile_interval * 2).max(Duration::from_secs(120));
    if let Some(secs) = NonZeroUsize::new(idle.as_secs() as usize) {
        builder.control_persist(ControlPersist::IdleFor(secs));
    }
    if let Some(identity) = &c.identity {
        builder.keyfile(identity);
    }
    if let Some(known_hosts) = &c.known_hosts {
        builder.user_known_hosts_file(known_hosts);
    }
    if let Some(config) = &c.ssh_config {
        builder.config_file(config);
    }
    let limit = c.connect_timeout + Duration::from_secs(5);
    match tokio::time::timeout(limit, builder.connect_mux(&c.address)).await {
        Err(_) => Err(RemoteError::Timeout {
            target: c.name.clone(),
            what: "connect",
            after: limit,
        }),
        Ok(Err(e)) => {
            // ssh's banner lines (`@@@@`, `IT IS POSSIBLE...`) say nothing the error doesn't.
            let detail = chain(&e)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('@'))
                .collect::<Vec<_>>()
                .join(" ");
            let host_key = [
                "Host key verification failed",
                "REMOTE HOST IDENTIFICATION HAS CHANGED",
                "host key is known",
                "No matching host key",
            ]
            .iter()
            .any(|m| detail.contains(m));
            Err(if host_key {
                RemoteError::HostKey {
                    target: c.name.clone(),
                    host: target.describe(),
                    known_hosts: c
                        .known_hosts
                        .as_ref()
                        .map_or_else(|| "ssh's default".into(), |p| p.display().to_string()),
                    detail,
                }
            } else {
                RemoteError::Connect {
                    target: c.name.clone(),
                    host: target.describe(),
                    detail,
                }
            })
        }
        Ok(Ok(session)) => Ok(Arc::new(session)),
    }
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

/// Runs a backend's tools on a target: `[sudo -n] PROGRAM ARGS` over the SSH session, each
/// argument quoted for the remote shell, input on stdin.
#[derive(Debug)]
struct SshRunner {
    session: Arc<Session>,
    sudo: bool,
    limit: Duration,
}

impl Runner for SshRunner {
    fn run<'a>(
        &'a self,
        program: &'a std::path::Path,
        args: Vec<String>,
        stdin: Option<Vec<u8>>,
    ) -> Running<'a> {
        Box::pin(async move {
            let spawn_error = |detail: String| ToolError::Spawn {
                program: program.to_path_buf(),
                source: std::io::Error::other(detail),
            };
            let run = async {
                let mut command = if self.sudo {
                    let mut c = self.session.clone().arc_command("sudo");
                    c.arg("-n").arg(program.to_string_lossy().as_ref());
                    c
                } else {
                    self.session
                        .clone()
                        .arc_command(program.to_string_lossy().as_ref())
                };
                command
                    .args(&args)
                    .stdin(if stdin.is_some() {
                        Stdio::piped()
                    } else {
                        Stdio::null()
                    })
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut child = command.spawn().await.map_err(|e| spawn_error(chain(&e)))?;
                if let (Some(bytes), Some(mut input)) = (stdin, child.stdin().take()) {
                    input
                        .write_all(&bytes)
                        .await
                        .map_err(|e| spawn_error(format!("writing its input: {e}")))?;
                    input
                        .shutdown()
                        .await
                        .map_err(|e| spawn_error(format!("closing its input: {e}")))?;
                }
                let output = child
                    .wait_with_output()
                    .await
                    .map_err(|e| spawn_error(chain(&e)))?;
                if output.status.success() {
                    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
                } else {
                    Err(ToolError::Failed {
                        program: program.to_path_buf(),
                        status: output.status.to_string(),
                        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                    })
                }
            };
            tokio::time::timeout(self.limit, run)
                .await
                .unwrap_or(Err(ToolError::TimedOut {
                    program: program.to_path_buf(),
                    after: self.limit,
                }))
        })
    }
}

/// A command target's runner: opens the SSH session on first use and again after it broke
/// (a run that could not start is retried by the command worker).
#[derive(Debug)]
pub struct CommandRunner {
    target: Arc<RemoteTarget>,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    metrics: Arc<TargetMetrics>,
}

impl CommandRunner {
    /// The runner of a target whose backend is `command`; None for other backends.
    pub fn of(
        target: RemoteTarget,
        metrics: Arc<TargetMetrics>,
    ) -> Option<(Arc<CommandConfig>, Arc<dyn Runner>)> {
        let TargetBackend::Command(config) = &target.config.backend else {
            return None;
        };
        let config = Arc::new(config.clone());
        let runner = CommandRunner {
            target: Arc::new(target),
            session: tokio::sync::Mutex::new(None),
            metrics,
        };
        Some((config, Arc::new(runner)))
    }
}

impl Runner for CommandRunner {
    fn run<'a>(
        &'a self,
        program: &'a std::path::Path,
        args: Vec<String>,
        stdin: Option<Vec<u8>>,
    ) -> Running<'a> {
        Box::pin(async move {
            let session = {
                let mut slot = self.session.lock().await;
                match slot.as_ref() {
                    Some(session) => session.clone(),
                    None => {
                        let session = open_session(&self.target).await.map_err(|e| {
                            Metrics::set(&self.metrics.connected, 0);
                            ToolError::Spawn {
                                program: program.to_path_buf(),
                                source: std::io::Error::other(e.to_string()),
                            }
                        })?;
                        info!(target = %self.target.name(), host = %self.target.describe(), "Connected to target");
                        Metrics::set(&self.metrics.connected, 1);
                        *slot = Some(session.clone());
                        session
                    }
                }
            };
            let runner = SshRunner {
                session,
                sudo: self.target.config.sudo,
                limit: self.target.config.command_timeout,
            };
            let result = runner.run(program, args, stdin).await;
            if matches!(result, Err(ToolError::Spawn { .. })) {
                // The session broke: the next run reconnects.
                Metrics::set(&self.metrics.connected, 0);
                if let Some(s) = self.session.lock().await.take() {
                    tokio::spawn(close(s));
                }
            }
            result
        })
    }
}

/// Runs `[sudo -n] nft ARGS` on the host with `stdin`, returning its stdout.
async fn run_nft(
    session: &Arc<Session>,
    target: &RemoteTarget,
    args: &[&str],
    stdin: Option<String>,
    what: &'static str,
) -> Result<String, RemoteError> {
    let c = &target.config;
    let session_error = |detail: String| RemoteError::Session {
        target: c.name.clone(),
        what,
        detail,
    };
    let run = async {
        let mut command = nft_command(session, c);
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .await
            .map_err(|e| session_error(chain(&e)))?;
        if let Some(text) = stdin {
            if let Some(mut input) = child.stdin().take() {
                input
                    .write_all(text.as_bytes())
                    .await
                    .map_err(|e| session_error(format!("writing the script: {e}")))?;
                input
                    .shutdown()
                    .await
                    .map_err(|e| session_error(format!("closing the script: {e}")))?;
            }
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| session_error(chain(&e)))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(RemoteError::Rejected {
                target: c.name.clone(),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    };
    tokio::time::timeout(c.command_timeout, run)
        .await
        .unwrap_or(Err(RemoteError::Timeout {
            target: c.name.clone(),
            what,
            after: c.command_timeout,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_keep_the_ssh_message() {
        let e = openssh::Error::Connect(std::io::Error::other("Host key verification failed."));
        assert!(chain(&e).contains("Host key verification failed"));
    }
}
