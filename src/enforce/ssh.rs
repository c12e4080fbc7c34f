//! SSH to a target: opening its multiplexed session (system `ssh` with a control master,
//! strict host-key checking), the target as enforcement runs it, the errors of remote work, and
//! running a backend's tools on the host (`SshRunner`, and `CommandRunner` for a command
//! target, which reconnects by itself).
//!
//! Owns sessions and remote processes; what they apply is `remote.rs`'s (the worker) and the
//! backends'. Every remote command is a fixed program with its arguments, each quoted for the
//! remote shell; data travels on stdin.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tracing::info;

use super::hosts_deny::{HostsDeny, HostsDenyError};
use super::ipset::Ipset;
use super::reconcile;
use super::tool::{Runner, Running, ToolError};
use crate::config::{CommandConfig, Hooks, TableName, TargetBackend, TargetConfig, TargetName};
use crate::metrics::{Metrics, TargetMetrics};

/// ssh keep-alive probes, so a dead link is noticed between bans.
const SERVER_ALIVE: Duration = Duration::from_secs(15);

/// A remote target as enforcement runs it.
#[derive(Debug, Clone)]
pub struct RemoteTarget {
    pub(super) config: TargetConfig,
    pub(super) table: TableName,
    /// The hooks of the host's drop rules (`[target.NAME] hook`, else `[ban] hook`).
    pub(super) hooks: Hooks,
    /// This collector's name: the table on the host is marked with it, and a table marked
    /// by another collector is never touched.
    pub(super) collector: String,
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
    pub(super) fn check_owner(&self, listing: &str) -> Result<(), RemoteError> {
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
    pub(super) fn runner(&self, session: &Arc<Session>) -> Arc<dyn Runner> {
        Arc::new(SshRunner {
            session: session.clone(),
            sudo: self.config.sudo,
            limit: self.config.command_timeout,
        })
    }

    /// The ipset backend on the host, run over `session` (None: another backend).
    pub(super) fn ipset(&self, session: &Arc<Session>) -> Option<Ipset> {
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
    pub(super) fn hosts_deny(&self, session: &Arc<Session>) -> Option<HostsDeny> {
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
    pub(super) fn file_error(&self, what: &'static str, e: HostsDenyError) -> RemoteError {
        RemoteError::Session {
            target: self.config.name.clone(),
            what,
            detail: e.to_string(),
        }
    }

    /// A tool's failure on the host, as the target's error.
    pub(super) fn tool_error(&self, what: &'static str, e: ToolError) -> RemoteError {
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

    pub(super) fn describe(&self) -> String {
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
    /// A tool on the host (nft, ipset, the ban command...) exited with a failure.
    #[error("target {target}: remote command failed ({status}): {stderr}")]
    Rejected {
        /// Target name.
        target: TargetName,
        /// The program and its exit status.
        status: String,
        /// What it printed on stderr.
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
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(s.to_string().trim());
        source = s.source();
    }
    out
}

pub(super) async fn close(session: Arc<Session>) {
    if let Ok(session) = Arc::try_unwrap(session) {
        let _ = session.close().await;
    }
}

/// Opens the SSH control master to the host (strict host keys).
pub(super) async fn open_session(target: &RemoteTarget) -> Result<Arc<Session>, RemoteError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_keep_the_ssh_message() {
        let e = openssh::Error::Connect(std::io::Error::other("Host key verification failed."));
        assert!(chain(&e).contains("Host key verification failed"));
    }
}
