//! Control: the unix socket operators and the CLI talk to (`status`, `banned`, `ban`,
//! `unban`, `reload`), and the Prometheus endpoint.
//!
//! Owns the wire protocol (one JSON request line, one JSON response line), the socket's
//! permissions and peer check, and HTTP for `/metrics`. It decides nothing: every request is
//! handed to the daemon, which asks the stage that owns the answer.

pub mod http;
pub mod protocol;
pub mod text;

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::input::AcceptBackoff;
use crate::throttle::Throttle;
use crate::warn_throttled;
use protocol::{Request, Response};

/// Largest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;
/// Connections served at once; more are closed at accept, so a stuck or hostile client cannot
/// use up the daemon's file descriptors.
const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A request with the channel its answer goes back on.
pub type Envelope = (Request, oneshot::Sender<Response>);

/// Control socket failures.
#[derive(Debug, Error)]
pub enum ControlError {
    /// The socket could not be created.
    #[error("control socket {path}: {source}")]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// The daemon is not reachable.
    #[error("cannot reach the daemon at {path}: {source} (is it running? see --socket)")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// The exchange failed midway.
    #[error("control socket {path}: {message}")]
    Protocol {
        /// Socket path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The effective uid of this process (the owner of `/proc/self`), without libc.
fn own_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Binds the control socket (mode 0600) and serves it until `shutdown`.
pub fn serve(
    path: &Path,
    requests: mpsc::Sender<Envelope>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ControlError> {
    let bind_err = |source| ControlError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            std::fs::create_dir_all(parent).map_err(bind_err)?;
        }
    }
    // A socket left by a crashed daemon; anything that is not a socket is left alone.
    if std::fs::symlink_metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    info!(socket = %path.display(), "Control socket ready");
    let path = path.to_path_buf();
    let allowed_uid = own_uid();
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let warnings = Throttle::new(5, Duration::from_secs(60));
    Ok(tokio::spawn(async move {
        let mut backoff = AcceptBackoff::default();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _)) => {
                    backoff.succeeded();
                    stream
                }
                Err(e) => {
                    warn_throttled!(warnings, error = %e, "Control accept failed");
                    backoff.failed(&shutdown).await;
                    continue;
                }
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                continue;
            };
            // Mode 0600 already restricts who can connect; the credential check also covers
            // a socket made reachable by a permissive parent directory or a later chmod.
            let uid = stream.peer_cred().ok().map(|c| c.uid());
            let permitted = matches!(uid, Some(0)) || (uid.is_some() && uid == allowed_uid);
            let requests = requests.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(stream, permitted, requests).await {
                    debug!(error = %e, "Control connection failed");
                }
                drop(permit);
            });
        }
        let _ = std::fs::remove_file(&path);
    }))
}

async fn handle(
    stream: UnixStream,
    permitted: bool,
    requests: mpsc::Sender<Envelope>,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request line"))??;
    let response = if !permitted {
        Response::Error {
            message: "permission denied: only root or the daemon's user may use the control socket"
                .into(),
        }
    } else {
        match serde_json::from_slice::<Request>(&line) {
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
            Ok(request) => {
                let (tx, rx) = oneshot::channel();
                if requests.send((request, tx)).await.is_err() {
                    Response::Error {
                        message: "the daemon is stopping".into(),
                    }
                } else {
                    rx.await.unwrap_or(Response::Error {
                        message: "the daemon dropped the request".into(),
                    })
                }
            }
        }
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_default();
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// Sends one request to the daemon at `path` and waits for its answer (blocking; for the CLI).
pub fn call(path: &Path, request: &Request) -> Result<Response, ControlError> {
    use std::io::{BufRead, Write};
    let protocol = |message: String| ControlError::Protocol {
        path: path.to_path_buf(),
        message,
    };
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| ControlError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    let mut line = serde_json::to_vec(request).map_err(|e| protocol(e.to_string()))?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|e| protocol(e.to_string()))?;
    let mut answer = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| protocol(e.to_string()))?;
    serde_json::from_str(&answer).map_err(|e| protocol(format!("bad answer from the daemon: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_and_answer_over_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl.sock");
        let (tx, mut rx) = mpsc::channel::<Envelope>(4);
        let stop = CancellationToken::new();
        let server = serve(&path, tx, stop.clone()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let message = format!("{request:?}");
                let _ = reply.send(Response::Done { message });
            }
        });
        let client_path = path.clone();
        let answer = tokio::task::spawn_blocking(move || call(&client_path, &Request::UnbanAll))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            answer,
            Response::Done {
                message: "UnbanAll".into()
            }
        );

        // Garbage gets an error answer, not a hang or a crash.
        let raw_path = path.clone();
        let raw = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::os::unix::net::UnixStream::connect(raw_path).unwrap();
            s.write_all(b"{not json\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert!(
            raw.contains("\"result\":\"error\"") && raw.contains("bad request"),
            "{raw}"
        );

        stop.cancel();
        server.await.unwrap();
        assert!(!path.exists(), "socket removed on stop");
    }

    #[test]
    fn a_missing_daemon_is_a_clear_error() {
        let err = call(Path::new("/nonexistent/syslog2ban.sock"), &Request::Status).unwrap_err();
        assert!(err.to_string().contains("cannot reach the daemon"), "{err}");
    }
}
