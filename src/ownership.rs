//! One owner per state and per firewall: before a daemon touches a firewall, a socket or the
//! store, it claims its state directory and its nft table, and a second daemon that would
//! share either refuses to start, naming the running one's PID.
//!
//! Owns the two claims: an exclusive `flock` on `STATE_DIR/lock` (which holds the owner's
//! PID), and a listening abstract unix socket named after the table. Abstract sockets live in
//! the network namespace, as nft tables do, so two daemons in two namespaces may use the same
//! table name, and the kernel frees both claims when the process ends, however it ends.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use thiserror::Error;

/// Another daemon holds what this one needs.
#[derive(Debug, Error)]
pub enum OwnershipError {
    /// The state directory is locked by another process.
    #[error(
        "state directory {dir} is in use by another syslog2ban (PID {pid}); stop it first, or give this one its own [state] dir and [ban] table"
    )]
    StateBusy {
        /// The directory.
        dir: PathBuf,
        /// The owner, as its lock file says ("unknown" if unreadable).
        pid: String,
    },
    /// The nft table is claimed by another process in this network namespace.
    #[error(
        "nft table inet {table} is in use by another syslog2ban (PID {pid}); stop it first, or give this one its own [ban] table"
    )]
    TableBusy {
        /// The table.
        table: String,
        /// The owner ("unknown" if it could not be asked).
        pid: String,
    },
    /// The lock file or socket could not be made.
    #[error("cannot claim {what}: {source}")]
    Io {
        /// What was being claimed.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The claims; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct Ownership {
    _state: File,
    _table: Option<UnixListener>,
}

/// Claims `state_dir` and, when the daemon will manage one, nft table `table`.
pub fn claim(state_dir: &Path, table: Option<&str>) -> Result<Ownership, OwnershipError> {
    let state = claim_state(state_dir)?;
    let table = table.map(claim_table).transpose()?;
    Ok(Ownership {
        _state: state,
        _table: table,
    })
}

fn claim_state(dir: &Path) -> Result<File, OwnershipError> {
    let io = |source| OwnershipError::Io {
        what: format!("state directory {}", dir.display()),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = dir.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
        if e == rustix::io::Errno::WOULDBLOCK {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(OwnershipError::StateBusy {
                dir: dir.to_path_buf(),
                pid: if pid.is_empty() { "unknown" } else { pid }.to_string(),
            });
        }
        return Err(io(e.into()));
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

fn table_address(table: &str) -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("syslog2ban/nft/inet/{table}"))
}

fn claim_table(table: &str) -> Result<UnixListener, OwnershipError> {
    let io = |source| OwnershipError::Io {
        what: format!("nft table inet {table}"),
        source,
    };
    let address = table_address(table).map_err(io)?;
    match UnixListener::bind_addr(&address) {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(OwnershipError::TableBusy {
            table: table.to_string(),
            pid: owner_pid(&address).unwrap_or_else(|| "unknown".into()),
        }),
        Err(e) => Err(io(e)),
    }
}

/// The PID of the process listening on `address` (the kernel records it at `listen`).
fn owner_pid(address: &SocketAddr) -> Option<String> {
    let stream = UnixStream::connect_addr(address).ok()?;
    let credentials = rustix::net::sockopt::socket_peercred(&stream).ok()?;
    Some(credentials.pid.as_raw_nonzero().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_on_the_state_directory_names_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let first = claim_state(dir.path()).unwrap();
        match claim_state(dir.path()) {
            Err(OwnershipError::StateBusy { pid, .. }) => {
                assert_eq!(pid, std::process::id().to_string())
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        assert!(claim_state(dir.path()).is_ok(), "released on drop");
    }

    #[test]
    fn a_second_claim_on_the_table_names_the_owner() {
        let table = format!("s2btest{}", std::process::id());
        let first = claim_table(&table).unwrap();
        match claim_table(&table) {
            Err(e @ OwnershipError::TableBusy { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&std::process::id().to_string()), "{text}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            claim_table(&format!("{table}x")).is_ok(),
            "another table is free"
        );
        drop(first);
        assert!(claim_table(&table).is_ok(), "released on drop");
    }
}
