//! Cutting a banned address's live connections (`kill_connections`): a drop rule stops new
//! packets, but an attacker already logged in keeps a socket the service still serves. Once
//! the ban is in the firewall, `ss -K` destroys this host's TCP sockets with the address
//! (the kernel sends a reset) and `conntrack -D` forgets its tracked flows, so NAT and
//! forwarded connections do not outlive the ban either.
//!
//! Owns nothing but those two runs; both are argv with the address as one element. A missing
//! tool or a kernel without socket destruction is logged, never fatal: the ban itself holds.

use std::path::Path;
use std::time::Duration;

use tracing::{info, warn};

use super::tool::{self, ToolError};
use crate::target::Target;

const LIMIT: Duration = Duration::from_secs(10);

/// Destroys the TCP sockets and conntrack entries of `target`.
pub async fn connections_of(target: Target) {
    let net = target.net().to_string();
    let address = target.addr().to_string();
    let sockets = match tool::run(Path::new("ss"), ["-K", "-t", "dst", &net], None, LIMIT).await {
        // ss prints a header and then each socket it destroyed.
        Ok(out) => out.lines().skip(1).filter(|l| !l.trim().is_empty()).count(),
        Err(e) => {
            warn!(%target, error = %e, "Could not cut the banned address's TCP connections (ss -K)");
            0
        }
    };
    let flows = if target.is_host() {
        match tool::run(Path::new("conntrack"), ["-D", "-s", &address], None, LIMIT).await {
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
