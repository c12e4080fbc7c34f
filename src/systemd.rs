//! systemd integration: `sd_notify` (READY, RELOADING, STOPPING, WATCHDOG, STATUS) over
//! `$NOTIFY_SOCKET`, done by hand to avoid a dependency for one datagram. Without systemd
//! (no `NOTIFY_SOCKET`) every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one notification; failures are ignored (systemd may not be listening).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket (systemd's default): the name without the leading '@'.
        use std::os::linux::net::SocketAddrExt;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name) {
            let _ = socket.send_to_addr(state.as_bytes(), &addr);
        }
    } else {
        let _ = socket.send_to(state.as_bytes(), &path);
    }
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when the unit sets
/// `WatchdogSec=` and the watchdog is meant for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail API, not ours
    fn notify_reaches_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        figment::Jail::expect_with(|jail| {
            jail.set_env("NOTIFY_SOCKET", path.display());
            notify("READY=1");
            let mut buf = [0u8; 64];
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"READY=1");
            jail.set_env("WATCHDOG_USEC", "2000000");
            jail.set_env("WATCHDOG_PID", std::process::id());
            assert_eq!(watchdog_interval(), Some(Duration::from_secs(1)));
            jail.set_env("WATCHDOG_PID", "1");
            assert_eq!(watchdog_interval(), None);
            Ok(())
        });
    }
}
