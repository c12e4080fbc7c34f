//! systemd socket activation: the sockets a service manager passed in (`LISTEN_PID`,
//! `LISTEN_FDS`, fds from 3 on), matched to configured listeners by socket type and local
//! address (or path), so `/dev/log` and journald's `/run/systemd/journal/syslog` can be
//! handed over the way rsyslog gets them.
//!
//! Owns the inherited descriptors until a listener claims one. Knows nothing of what arrives
//! on them.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};

use socket2::{Socket, Type};

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: i32 = 3;

static INHERITED: OnceLock<Mutex<Vec<Socket>>> = OnceLock::new();

/// Takes ownership of the passed descriptors, once, if they are meant for this process.
#[allow(unsafe_code)]
fn inherited() -> &'static Mutex<Vec<Socket>> {
    INHERITED.get_or_init(|| {
        let for_us = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|pid| pid == std::process::id());
        let count: i32 = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut sockets = Vec::new();
        if for_us {
            for fd in FIRST_FD..FIRST_FD + count.clamp(0, 1024) {
                // SAFETY: systemd's protocol: when LISTEN_PID is our pid, fds 3..3+LISTEN_FDS
                // are open sockets handed to this process and owned by nobody else in it; each
                // is wrapped exactly once (this runs once, under OnceLock).
                let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                sockets.push(Socket::from(owned));
            }
        }
        // Children (nft, ssh) must not think the sockets are theirs.
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(var);
        }
        Mutex::new(sockets)
    })
}

/// Reads the environment now (call early, before other threads start).
pub fn init() -> usize {
    inherited()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len()
}

fn take(matches: impl Fn(&Socket) -> bool) -> Option<Socket> {
    let mut sockets = inherited().lock().unwrap_or_else(PoisonError::into_inner);
    let index = sockets.iter().position(matches)?;
    Some(sockets.remove(index))
}

/// An inherited socket of `kind` bound to `address`.
pub fn take_inet(kind: Type, address: SocketAddr) -> Option<Socket> {
    take(|s| {
        s.r#type().ok() == Some(kind)
            && s.local_addr().ok().and_then(|a| a.as_socket()) == Some(address)
    })
}

/// An inherited unix datagram socket bound to `path`.
pub fn take_unix(path: &Path) -> Option<Socket> {
    take(|s| {
        s.r#type().ok() == Some(Type::DGRAM)
            && s.local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_path_buf))
                .as_deref()
                == Some(path)
    })
}
