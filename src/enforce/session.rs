//! A long-running `nft -e -i`: applies batches without starting a process for each one.
//!
//! Owns the nft child process and the protocol over its pipes. Each batch is one input line
//! (commands joined by `;`, so the line is one atomic transaction), followed by a `list chain`
//! of the table's own chain as an end marker. With `-e` nft prints `# new generation N` after a
//! committed transaction, so the batch succeeded iff that line comes before the listing; a
//! rejected batch prints its error on stderr instead. Batches too large for one line go
//! through a one-shot `nft -f -`, as do setup and teardown. Knows nothing about bans.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use super::nft::{self, NftError};

/// Larger scripts (a restore of many bans) take the one-shot path: one line of this size is
/// well within what nft's line reader takes, and the process start is noise next to it.
const MAX_LINE: usize = 256 * 1024;
/// A batch that takes longer than this means nft is stuck: it is killed and restarted.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Stderr lines kept per batch; an error is a few lines.
const STDERR_LINES: usize = 64;

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: mpsc::Receiver<String>,
}

/// The session; one batch at a time (the caller holds it mutably).
pub struct NftSession {
    nft: PathBuf,
    table: String,
    running: Option<Running>,
}

impl std::fmt::Debug for NftSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NftSession")
            .field("nft", &self.nft)
            .field("table", &self.table)
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl NftSession {
    /// A session for `table`; the process starts with the first batch.
    pub fn new(nft: &Path, table: &str) -> Self {
        NftSession {
            nft: nft.to_path_buf(),
            table: table.to_string(),
            running: None,
        }
    }

    /// Applies `script` (as rendered by `nft::batch_script`) atomically.
    pub async fn apply(&mut self, script: &str) -> Result<(), NftError> {
        if script.len() > MAX_LINE {
            return nft::apply(&self.nft, script).await;
        }
        let result = match tokio::time::timeout(BATCH_TIMEOUT, self.batch(script)).await {
            Ok(result) => result,
            Err(_) => Err(NftError::Rejected {
                status: "nft -i".into(),
                stderr: format!("no answer within {BATCH_TIMEOUT:?}"),
            }),
        };
        // A batch nft rejected leaves the process in a clean state; anything else (a broken
        // pipe, a timeout cut short mid-exchange) restarts it with the next batch.
        let clean = match &result {
            Ok(()) => true,
            Err(NftError::Rejected { status, .. }) => status == "nft",
            Err(NftError::Spawn { .. }) => false,
        };
        if !clean {
            self.stop();
        }
        result
    }

    fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.start_kill();
        }
    }

    fn spawn(&mut self) -> Result<&mut Running, NftError> {
        if self.running.is_none() {
            let spawn_err = |source| NftError::Spawn {
                nft: self.nft.clone(),
                source,
            };
            let mut child = Command::new(&self.nft)
                .args(["-e", "-i"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(spawn_err)?;
            let missing = || {
                spawn_err(std::io::Error::other(
                    "nft started without the requested pipes",
                ))
            };
            let stdin = child.stdin.take().ok_or_else(missing)?;
            let stdout = child.stdout.take().ok_or_else(missing)?;
            let stderr = child.stderr.take().ok_or_else(missing)?;
            let (tx, rx) = mpsc::channel(STDERR_LINES);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    // A full channel means nobody asked yet; older lines are enough.
                    let _ = tx.try_send(line);
                }
            });
            self.running = Some(Running {
                child,
                stdin,
                stdout: BufReader::new(stdout).lines(),
                stderr: rx,
            });
        }
        Ok(self.running.as_mut().expect("just started"))
    }

    async fn batch(&mut self, script: &str) -> Result<(), NftError> {
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
        let nft = self.nft.clone();
        let running = self.spawn()?;
        // Lines left from an earlier batch that was cut short are not this batch's errors.
        while running.stderr.try_recv().is_ok() {}
        let io_err = |source| NftError::Spawn {
            nft: nft.clone(),
            source,
        };
        running
            .stdin
            .write_all(input.as_bytes())
            .await
            .map_err(io_err)?;
        running.stdin.flush().await.map_err(io_err)?;
        let mut committed = false;
        loop {
            let Some(out) = running.stdout.next_line().await.map_err(io_err)? else {
                return Err(io_err(std::io::Error::other("nft -i exited")));
            };
            if out.starts_with("# new generation") {
                committed = true;
            } else if out == marker {
                break;
            }
        }
        // The rest of the listing, up to its closing brace.
        loop {
            match running.stdout.next_line().await.map_err(io_err)? {
                Some(out) if out == "}" => break,
                Some(_) => continue,
                None => return Err(io_err(std::io::Error::other("nft -i exited"))),
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
        Err(NftError::Rejected {
            status: "nft".into(),
            stderr: stderr.join("\n"),
        })
    }
}
