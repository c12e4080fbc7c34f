//! Cutting a banned address's live connections (`kill_connections`): a drop rule stops new
//! packets, but an attacker already logged in keeps a socket the service still serves. Once
//! the ban is in the firewall, `ss -K` destroys this host's TCP sockets with the address
//! (the kernel sends a reset) and `conntrack -D` forgets its tracked flows, so NAT and
//! forwarded connections do not outlive the ban either.
//!
//! Owns nothing but those two runs; both are argv with the address as one element, on the
//! host that holds the ban (this one, or a target over its SSH session). A missing tool or a
//! kernel without socket destruction is logged, never fatal: the ban itself holds.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::tool::{Local, Runner, ToolError};
use crate::target::Target;

/// This host, each run limited to 10 s.
pub fn here() -> Arc<dyn Runner> {
    Arc::new(Local {
        limit: Duration::from_secs(10),
    })
}

/// Destroys the TCP sockets and conntrack entries of `target` where `runner` runs.
pub async fn connections_of(runner: Arc<dyn Runner>, target: Target) {
    let net = target.net().to_string();
    let address = target.addr().to_string();
    let args = |list: &[&str]| list.iter().map(|a| (*a).to_string()).collect::<Vec<_>>();
    let ss = runner
        .run(Path::new("ss"), args(&["-K", "-t", "dst", &net]), None)
        .await;
    let sockets = match ss {
        // ss prints a header and then each socket it destroyed.
        Ok(out) => out.lines().skip(1).filter(|l| !l.trim().is_empty()).count(),
        Err(e) => {
            warn!(%target, error = %e, "Could not cut the banned address's TCP connections (ss -K)");
            0
        }
    };
    let flows = if target.is_host() {
        let conntrack = runner
            .run(Path::new("conntrack"), args(&["-D", "-s", &address]), None)
            .await;
        match conntrack {
            Ok(_) => true,
            // 1: no flow matched (or no conntrack table in this namespace): nothing to cut.
            Err(e) if e.exited_with(1) => false,
            Err(ToolError::Spawn { .. }) => false,
            Err(e) => {
                warn!(%target, error = %e, "Could not delete the banned address's conntrack entries");
                false
            }
        }
    } else {
        false
    };
    if sockets > 0 || flows {
        info!(%target, sockets, conntrack_flows_deleted = flows, "Cut the banned address's live connections");
    }
}
