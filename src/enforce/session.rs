//! A long-running `nft -e -i`: applies batches without starting a process for each one, on
//! this host or on a remote one over its SSH session.
//!
//! Owns the protocol over the process's pipes. Each batch is one input line (commands joined
//! by `;`, so the line is one atomic transaction), followed by a `list chain` of the table's
//! own chain as an end marker. With `-e` nft prints `# new generation N` after a committed
//! transaction, so the batch succeeded iff that line comes before the listing; a rejected
//! batch prints its error on stderr instead. Batches longer than [`MAX_LINE`] are for the
//! caller's one-shot `nft -f -`, as are setup and teardown. Starting the process is the
//! caller's (a local child, or a command on an SSH session). Knows nothing about bans.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, Lines};
use tokio::sync::mpsc;

/// Larger scripts (a restore of many bans) take the one-shot path: one line of this size is
/// well within what nft's line reader takes, and a process start is noise next to it.
pub const MAX_LINE: usize = 256 * 1024;
/// A batch that takes longer than this means nft is stuck: it is stopped and restarted.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Stderr lines kept per batch; an error is a few lines.
const STDERR_LINES: usize = 64;

/// The pipes of a started `nft -e -i`.
pub struct NftPipes {
    /// Its input.
    pub stdin: Box<dyn AsyncWrite + Send + Unpin>,
    /// Its output.
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    /// Its errors.
    pub stderr: Box<dyn AsyncRead + Send + Unpin>,
    /// The process handle; dropping it (and the closed stdin) ends the process.
    pub process: Box<dyn Send>,
}

/// How the session starts its process when it needs one.
pub type Spawner =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<NftPipes, String>> + Send>> + Send + Sync>;

/// Why a batch was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// nft refused the batch (the process is fine and is kept).
    Rejected(String),
    /// The process could not start, broke or hung; it is restarted for the next batch.
    Broken(String),
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionError::Rejected(stderr) => write!(f, "nft rejected the batch: {stderr}"),
            SessionError::Broken(why) => write!(f, "nft -i session: {why}"),
        }
    }
}

struct Running {
    stdin: Box<dyn AsyncWrite + Send + Unpin>,
    stdout: Lines<BufReader<Box<dyn AsyncRead + Send + Unpin>>>,
    stderr: mpsc::Receiver<String>,
    _process: Box<dyn Send>,
}

/// The session; one batch at a time (the caller holds it mutably).
pub struct NftSession {
    table: String,
    spawn: Spawner,
    running: Option<Running>,
}

impl std::fmt::Debug for NftSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftSession")
            .field("table", &self.table)
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl NftSession {
    /// A session for `table` (family inet); the process starts with the first batch.
    pub fn new(table: &str, spawn: Spawner) -> Self {
        NftSession {
            table: table.to_string(),
            spawn,
            running: None,
        }
    }

    /// Applies `script` (as rendered by `nft::batch_script`, at most [`MAX_LINE`] long)
    /// atomically.
    pub async fn apply(&mut self, script: &str) -> Result<(), SessionError> {
        let result = match tokio::time::timeout(BATCH_TIMEOUT, self.batch(script)).await {
            Ok(result) => result,
            Err(_) => Err(SessionError::Broken(format!(
                "no answer within {BATCH_TIMEOUT:?}"
            ))),
        };
        // A batch nft rejected leaves the process in a clean state; anything else (a broken
        // pipe, a timeout cut short mid-exchange) restarts it with the next batch.
        if let Err(SessionError::Broken(_)) = &result {
            self.stop();
        }
        result
    }

    /// Ends the process (the next batch starts a new one): after its transport went away.
    pub fn stop(&mut self) {
        self.running = None;
    }

    async fn start(&mut self) -> Result<&mut Running, SessionError> {
        if self.running.is_none() {
            let pipes = (self.spawn)().await.map_err(SessionError::Broken)?;
            let (tx, rx) = mpsc::channel(STDERR_LINES);
            let stderr = pipes.stderr;
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    // A full channel means nobody asked yet; older lines are enough.
                    let _ = tx.try_send(line);
                }
            });
            self.running = Some(Running {
                stdin: pipes.stdin,
                stdout: BufReader::new(pipes.stdout).lines(),
                stderr: rx,
                _process: pipes.process,
            });
        }
        Ok(self.running.as_mut().expect("just started"))
    }

    async fn batch(&mut self, script: &str) -> Result<(), SessionError> {
        let line: Vec<&str> = script
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if line.is_empty() {
            return Ok(());
        }
        let marker = format!("table inet {} {{", self.table);
        let input = format!(
            "{}\nlist chain inet {} input\n",
            line.join("; "),
            self.table
        );
        let running = self.start().await?;
        // Lines left from an earlier batch that was cut short are not this batch's errors.
        while running.stderr.try_recv().is_ok() {}
        let broken = |e: std::io::Error| SessionError::Broken(e.to_string());
        running
            .stdin
            .write_all(input.as_bytes())
            .await
            .map_err(broken)?;
        running.stdin.flush().await.map_err(broken)?;
        let mut committed = false;
        loop {
            let Some(out) = running.stdout.next_line().await.map_err(broken)? else {
                return Err(SessionError::Broken("nft -i exited".into()));
            };
            if out.starts_with("# new generation") {
                committed = true;
            } else if out == marker {
                break;
            }
        }
        // The rest of the listing, up to its closing brace.
        loop {
            match running.stdout.next_line().await.map_err(broken)? {
                Some(out) if out == "}" => break,
                Some(_) => continue,
                None => return Err(SessionError::Broken("nft -i exited".into())),
            }
        }
        if committed {
            return Ok(());
        }
        // nft wrote its error before the listing; give the reader task a moment to pass it on.
        let mut stderr = Vec::new();
        if let Ok(Some(first)) =
            tokio::time::timeout(Duration::from_millis(200), running.stderr.recv()).await
        {
            stderr.push(first);
            while let Ok(more) = running.stderr.try_recv() {
                stderr.push(more);
            }
        }
        Err(SessionError::Rejected(stderr.join("\n")))
    }
}

/// Starts `nft -e -i` on this host.
pub fn local_spawner(nft: std::path::PathBuf) -> Spawner {
    Box::new(move || {
        let nft = nft.clone();
        Box::pin(async move {
            let mut child = tokio::process::Command::new(&nft)
                .args(["-e", "-i"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", nft.display()))?;
            let missing = || "nft started without the requested pipes".to_string();
            Ok(NftPipes {
                stdin: Box::new(child.stdin.take().ok_or_else(missing)?),
                stdout: Box::new(child.stdout.take().ok_or_else(missing)?),
                stderr: Box::new(child.stderr.take().ok_or_else(missing)?),
                process: Box::new(child),
            })
        })
    })
}
