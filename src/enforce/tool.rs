//! Running a firewall tool (ipset, iptables, a user's ban command, ss, conntrack): argv only,
//! input on stdin, a time limit, and a bounded capture of what it printed. `Runner` is where
//! a tool runs: this host (`Local`), or a target over SSH (`remote.rs`).
//!
//! Owns process spawning for the non-nft backends. It never builds a command line from text:
//! callers pass each argument as one element, so nothing a log carried is ever parsed by a
//! local shell (over SSH, each argument is quoted for the remote one).

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Most bytes of stdout kept (a listing of a million-element set fits).
const STDOUT_CAP: u64 = 256 << 20;
/// Most bytes of stderr kept for the error message.
const STDERR_CAP: u64 = 4096;

/// A tool run that did not succeed.
#[derive(Debug, Error)]
pub enum ToolError {
    /// The program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// It exited with a failure.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: PathBuf,
        /// Exit status.
        status: String,
        /// What it printed on stderr (capped).
        stderr: String,
    },
    /// It ran past its time limit and was killed.
    #[error("{program} did not finish within {after:?}; killed")]
    TimedOut {
        /// The program.
        program: PathBuf,
        /// The limit.
        after: Duration,
    },
}

impl ToolError {
    /// Whether the program exited with exactly this status code.
    pub fn exited_with(&self, code: i32) -> bool {
        matches!(self, ToolError::Failed { status, .. } if status == &format!("exit status: {code}"))
    }
}

/// A tool run's result, boxed so that backends can hold any runner.
pub type Running<'a> = Pin<Box<dyn Future<Output = Result<String, ToolError>> + Send + 'a>>;

/// Where a backend's tools run.
pub trait Runner: Send + Sync + std::fmt::Debug {
    /// Runs `program` with `args` and `stdin`; its stdout, or why it failed.
    fn run<'a>(
        &'a self,
        program: &'a Path,
        args: Vec<String>,
        stdin: Option<Vec<u8>>,
    ) -> Running<'a>;
}

/// This host, each run limited to `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Local {
    /// The time limit of one run.
    pub limit: Duration,
}

impl Runner for Local {
    fn run<'a>(
        &'a self,
        program: &'a Path,
        args: Vec<String>,
        stdin: Option<Vec<u8>>,
    ) -> Running<'a> {
        Box::pin(async move { run(program, &args, stdin.as_deref(), self.limit).await })
    }
}

/// Runs `program` with `args`, writes `stdin` (if any), and returns its stdout.
pub async fn run<I, S>(
    program: &Path,
    args: I,
    stdin: Option<&[u8]>,
    limit: Duration,
) -> Result<String, ToolError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let spawn_err = |source| ToolError::Spawn {
        program: program.to_path_buf(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let (mut out, mut err) = (String::new(), Vec::new());
    let mut stdout = child.stdout.take().expect("piped").take(STDOUT_CAP);
    let mut stderr = child.stderr.take().expect("piped").take(STDERR_CAP);
    let input = child.stdin.take();
    let work = async {
        let feed = async {
            if let (Some(mut pipe), Some(bytes)) = (input, stdin) {
                // A tool that exits early closes its end: its status says why.
                let _ = pipe.write_all(bytes).await;
            }
        };
        let (_, read_out, read_err) = tokio::join!(
            feed,
            stdout.read_to_string(&mut out),
            stderr.read_to_end(&mut err)
        );
        read_out.and(read_err).map_err(spawn_err)?;
        child.wait().await.map_err(spawn_err)
    };
    let status = match tokio::time::timeout(limit, work).await {
        Ok(status) => status?,
        Err(_) => {
            return Err(ToolError::TimedOut {
                program: program.to_path_buf(),
                after: limit,
            })
        }
    };
    if status.success() {
        Ok(out)
    } else {
        Err(ToolError::Failed {
            program: program.to_path_buf(),
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&err).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn arguments_stay_single_elements_and_stdin_reaches_the_program() {
        let out = run(
            Path::new("/bin/sh"),
            [
                "-c",
                "printf '%s|' \"$@\"; cat",
                "sh",
                "a b",
                "$(id)",
                ";ls",
            ],
            Some(b"in".as_slice()),
            LIMIT,
        )
        .await
        .unwrap();
        assert_eq!(out, "a b|$(id)|;ls|in");
    }

    #[tokio::test]
    async fn failure_timeout_and_missing_program_are_told_apart() {
        let failed = run(
            Path::new("/bin/sh"),
            ["-c", "echo no >&2; exit 3"],
            None,
            LIMIT,
        )
        .await
        .unwrap_err();
        assert!(failed.exited_with(3), "{failed}");
        assert!(failed.to_string().contains("no"), "{failed}");
        let slow = run(
            Path::new("/bin/sleep"),
            ["5"],
            None,
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
        assert!(matches!(slow, ToolError::TimedOut { .. }), "{slow}");
        let missing = run(Path::new("/nonexistent/tool"), ["x"], None, LIMIT)
            .await
            .unwrap_err();
        assert!(matches!(missing, ToolError::Spawn { .. }), "{missing}");
    }
}
