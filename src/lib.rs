//! syslog2ban: a central syslog sink that bans attackers.
//!
//! The pipeline runs forward only: `input` (sockets, framing) → `parse` (syslog headers) →
//! `route` (program name → jails) → `jail` (filters, failure windows) → `ban` (the manager that
//! owns ban state) → `enforce` (nftables). `config` and `metrics` sit at the side; `daemon`
//! wires the stages together.

#![deny(missing_docs)]

pub mod ban;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod control;
pub mod daemon;
pub mod enforce;
pub mod fail2ban;
pub mod fault;
pub mod fd_limit;
pub mod feed;
pub mod http_client;
pub mod input;
pub mod jail;
pub mod log_output;
pub mod metrics;
pub mod notify;
pub mod ownership;
pub mod parse;
pub mod pipeline;
pub mod regex_check;
pub mod route;
pub mod supervise;
pub mod systemd;
pub mod target;
pub mod throttle;
pub mod tls_client;

/// Helpers shared by the unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// A raw capture from `tests/fixtures/captures/`.
    pub fn capture(name: &str) -> Vec<u8> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/captures")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}
