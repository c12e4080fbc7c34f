//! nftables scripts: the table syslog2ban owns, and batches of element changes, rendered as
//! text for one `nft -f -` run. Rendering is pure; `apply` runs nft with the script on stdin
//! (never through a shell, and addresses are typed `Target`s, so no log text reaches nft).

use crate::config::Hooks;
use crate::target::Element;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Set names inside the table.
pub const SET_V4: &str = "banned4";
/// IPv6 set name.
pub const SET_V6: &str = "banned6";
/// IPv4 prefixes (interval set: a separate set, so prefixes never clash with single
/// addresses of the same network, which an interval set would reject as overlapping).
pub const SET_NET4: &str = "banned4net";
/// IPv6 prefixes.
pub const SET_NET6: &str = "banned6net";
/// Per-service bans of IPv4 addresses and prefixes: address . protocol . port.
pub const SET_PORT4: &str = "banned4port";
/// Per-service bans of IPv6 addresses and prefixes.
pub const SET_PORT6: &str = "banned6port";

/// The sets: (name, IPv6, single addresses, per port).
pub const SETS: [(&str, bool, bool, bool); 6] = [
    (SET_V4, false, true, false),
    (SET_V6, true, true, false),
    (SET_NET4, false, false, false),
    (SET_NET6, true, false, false),
    (SET_PORT4, false, false, true),
    (SET_PORT6, true, false, true),
];

/// The set an element belongs in.
pub fn set_of(element: &Element) -> &'static str {
    let t = &element.target;
    SETS.iter()
        .find(|(_, v6, host, port)| {
            *v6 == t.is_ipv6() && *port == element.port.is_some() && (*port || *host == t.is_host())
        })
        .map(|(name, ..)| *name)
        .expect("every element has a set")
}

/// Running nft failed.
#[derive(Debug, Error)]
pub enum NftError {
    /// The binary could not be started.
    #[error("cannot run {nft}: {source}")]
    Spawn {
        /// nft path.
        nft: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// nft rejected the script.
    #[error("nft failed ({status}): {stderr}")]
    Rejected {
        /// Exit status.
        status: String,
        /// What nft printed.
        stderr: String,
    },
}

/// One element change in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementChange {
    /// Put the element in its set with this timeout (None: no timeout).
    Add(Element, Option<Duration>),
    /// Take it out.
    Remove(Element),
}

impl ElementChange {
    /// The element changed.
    pub fn element(&self) -> &Element {
        match self {
            ElementChange::Add(e, _) | ElementChange::Remove(e) => e,
        }
    }
}

/// The table, its six sets and the drop rules in a chain per hook (`input`, `forward`,
/// named after their hook). Re-running it keeps existing elements (the sets are only created
/// when missing), so a restarted daemon keeps the kernel's bans; a chain of a hook no longer
/// wanted is removed (added first, so the delete cannot fail and abort the batch).
pub fn setup_script(table: &str, hooks: Hooks) -> String {
    let mut script = format!(
        "add table inet {table}\n\
         add set inet {table} {SET_V4} {{ type ipv4_addr; flags timeout; }}\n\
         add set inet {table} {SET_V6} {{ type ipv6_addr; flags timeout; }}\n\
         add set inet {table} {SET_NET4} {{ type ipv4_addr; flags interval, timeout; }}\n\
         add set inet {table} {SET_NET6} {{ type ipv6_addr; flags interval, timeout; }}\n\
         add set inet {table} {SET_PORT4} {{ type ipv4_addr . inet_proto . inet_service; flags interval, timeout; }}\n\
         add set inet {table} {SET_PORT6} {{ type ipv6_addr . inet_proto . inet_service; flags interval, timeout; }}\n"
    );
    for (hook, wanted) in [("input", hooks.input), ("forward", hooks.forward)] {
        // Before the distribution's own filter chains (priority filter), so Docker's or
        // firewalld's accept rules cannot let a banned address through first.
        script.push_str(&format!(
            "add chain inet {table} {hook} {{ type filter hook {hook} priority filter - 10; policy accept; }}\n"
        ));
        if !wanted {
            script.push_str(&format!("delete chain inet {table} {hook}\n"));
            continue;
        }
        script.push_str(&format!("flush chain inet {table} {hook}\n"));
        for (family, set) in [
            ("ip", SET_V4),
            ("ip6", SET_V6),
            ("ip", SET_NET4),
            ("ip6", SET_NET6),
        ] {
            script.push_str(&format!(
                "add rule inet {table} {hook} {family} saddr @{set} drop\n"
            ));
        }
        for (family, set) in [("ip", SET_PORT4), ("ip6", SET_PORT6)] {
            script.push_str(&format!(
                "add rule inet {table} {hook} {family} saddr . meta l4proto . th dport @{set} drop\n"
            ));
        }
    }
    script
}

/// Counter objects named `owner_COLLECTOR` mark who manages a table on a target.
pub const OWNER_PREFIX: &str = "owner_";

/// Marks `table` as managed by `collector` (a counter object that counts nothing).
pub fn owner_script(table: &str, collector: &str) -> String {
    format!("add counter inet {table} {OWNER_PREFIX}{collector}\n")
}

/// Removes the table and everything in it.
pub fn teardown_script(table: &str) -> String {
    format!("delete table inet {table}\n")
}

/// Renders a batch. Every touched element is first added (so the delete cannot fail on a
/// missing element, which would abort the whole atomic batch), then deleted, then — for
/// additions — added again with its exact timeout. This is idempotent and does not rely on
/// re-adding refreshing a timeout, which older kernels do not do.
pub fn batch_script(table: &str, changes: &[ElementChange]) -> String {
    let mut out = String::new();
    for (set, ..) in SETS {
        let mine: Vec<&ElementChange> = changes
            .iter()
            .filter(|c| set_of(c.element()) == set)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut touch = String::new();
        let mut all = String::new();
        let mut adds = String::new();
        for change in &mine {
            let sep = |s: &String| if s.is_empty() { "" } else { ", " };
            match change {
                ElementChange::Add(e, timeout) => {
                    let element = element(e, *timeout);
                    let key = key(e);
                    let _ = write!(adds, "{}{element}", sep(&adds));
                    let _ = write!(touch, "{}{element}", sep(&touch));
                    let _ = write!(all, "{}{key}", sep(&all));
                }
                ElementChange::Remove(e) => {
                    let key = key(e);
                    let _ = write!(touch, "{}{key} timeout 1s", sep(&touch));
                    let _ = write!(all, "{}{key}", sep(&all));
                }
            }
        }
        let _ = writeln!(out, "add element inet {table} {set} {{ {touch} }}");
        let _ = writeln!(out, "delete element inet {table} {set} {{ {all} }}");
        if !adds.is_empty() {
            let _ = writeln!(out, "add element inet {table} {set} {{ {adds} }}");
        }
    }
    out
}

/// An element's key in nft's syntax: `ADDRESS` or `ADDRESS . tcp . 2222`.
fn key(e: &Element) -> String {
    match e.port {
        None => e.target.to_string(),
        Some(port) => format!(
            "{} . {} . {}",
            e.target,
            port.protocol.as_str(),
            port.number
        ),
    }
}

fn element(e: &Element, timeout: Option<Duration>) -> String {
    match timeout {
        // nft takes milliseconds; round up so the kernel never frees an address early.
        Some(t) => format!("{} timeout {}ms", key(e), t.as_millis().max(1)),
        None => key(e),
    }
}

/// Whether `nft -e -i` cannot take this batch: nft 1.0.6 crashes echoing a transaction that
/// touches a concatenated interval set (the per-port sets), after applying it. Such batches
/// go to a one-shot `nft -f -`, which does not echo.
pub fn crashes_echo(changes: &[ElementChange]) -> bool {
    changes.iter().any(|c| c.element().port.is_some())
}

/// Time left until `expires`, or None when it already passed.
pub fn remaining(expires: Instant, now: Instant) -> Option<Duration> {
    let left = expires.checked_duration_since(now)?;
    (!left.is_zero()).then_some(left)
}

/// `nft -j list table inet TABLE`: the table as JSON (see `reconcile::parse_listing`).
pub async fn list(nft: &Path, table: &str) -> Result<String, NftError> {
    let spawn_err = |source| NftError::Spawn {
        nft: nft.to_path_buf(),
        source,
    };
    let output = Command::new(nft)
        .args(["-j", "list", "table", "inet", table])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(spawn_err)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(NftError::Rejected {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Runs `nft -f -` with `script` on stdin.
pub async fn apply(nft: &Path, script: &str) -> Result<(), NftError> {
    let spawn_err = |source| NftError::Spawn {
        nft: nft.to_path_buf(),
        source,
    };
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(spawn_err)?;
    }
    let output = child.wait_with_output().await.map_err(spawn_err)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NftError::Rejected {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_port_elements_go_to_the_concatenated_sets() {
        let script = batch_script(
            "t",
            &[
                ElementChange::Add(
                    "198.51.100.0/24 tcp:2222".parse().unwrap(),
                    Some(Duration::from_secs(5)),
                ),
                ElementChange::Remove("2001:db8::1 udp:53".parse().unwrap()),
            ],
        );
        assert!(
            script.contains(
                "add element inet t banned4port { 198.51.100.0/24 . tcp . 2222 timeout 5000ms }"
            ),
            "{script}"
        );
        assert!(
            script.contains("delete element inet t banned6port { 2001:db8::1 . udp . 53 }"),
            "{script}"
        );
        let setup = setup_script("t", Hooks::default());
        assert!(
            setup.contains("ip saddr . meta l4proto . th dport @banned4port drop"),
            "{setup}"
        );
    }

    #[test]
    fn batch_groups_by_family_and_is_idempotent_shape() {
        let script = batch_script(
            "s2b",
            &[
                ElementChange::Add(
                    "198.51.100.66".parse().unwrap(),
                    Some(Duration::from_millis(600_000)),
                ),
                ElementChange::Add("2001:db8::66".parse().unwrap(), None),
                ElementChange::Remove("198.51.100.67".parse().unwrap()),
            ],
        );
        assert_eq!(
            script,
            "add element inet s2b banned4 { 198.51.100.66 timeout 600000ms, 198.51.100.67 timeout 1s }\n\
             delete element inet s2b banned4 { 198.51.100.66, 198.51.100.67 }\n\
             add element inet s2b banned4 { 198.51.100.66 timeout 600000ms }\n\
             add element inet s2b banned6 { 2001:db8::66 }\n\
             delete element inet s2b banned6 { 2001:db8::66 }\n\
             add element inet s2b banned6 { 2001:db8::66 }\n"
        );
    }

    #[test]
    fn prefixes_go_to_the_interval_sets() {
        let script = batch_script(
            "t",
            &[ElementChange::Add(
                "2001:db8:1:2::/64".parse().unwrap(),
                Some(Duration::from_secs(60)),
            )],
        );
        assert_eq!(
            script,
            "add element inet t banned6net { 2001:db8:1:2::/64 timeout 60000ms }\n\
             delete element inet t banned6net { 2001:db8:1:2::/64 }\n\
             add element inet t banned6net { 2001:db8:1:2::/64 timeout 60000ms }\n"
        );
    }

    #[test]
    fn removal_only_batch_has_no_final_add() {
        let script = batch_script(
            "t",
            &[ElementChange::Remove("2001:db8::1".parse().unwrap())],
        );
        assert_eq!(
            script,
            "add element inet t banned6 { 2001:db8::1 timeout 1s }\ndelete element inet t banned6 { 2001:db8::1 }\n"
        );
    }

    #[test]
    fn setup_creates_sets_with_timeouts_and_drop_rules() {
        let s = setup_script("syslog2ban", Hooks::default());
        assert!(s.contains("add set inet syslog2ban banned4 { type ipv4_addr; flags timeout; }"));
        assert!(s.contains("add rule inet syslog2ban input ip6 saddr @banned6 drop"));
        // The forward chain of an earlier `hook = "both"` is removed.
        assert!(s.ends_with(
            "add chain inet syslog2ban forward { type filter hook forward priority filter - 10; policy accept; }\n\
             delete chain inet syslog2ban forward\n"
        ));
        let both = setup_script("t", Hooks::parse("both").unwrap());
        assert!(both.contains("add rule inet t forward ip saddr @banned4 drop"));
        assert!(both.contains("add rule inet t input ip saddr @banned4 drop"));
        assert!(!both.contains("delete chain"));
        let forward = setup_script("t", Hooks::parse("forward").unwrap());
        assert!(forward.contains("delete chain inet t input\n"));
        assert!(forward.contains("add rule inet t forward ip6 saddr @banned6net drop"));
        assert_eq!(teardown_script("x"), "delete table inet x\n");
    }

    #[test]
    fn remaining_rounds_and_expires() {
        let t = Instant::now();
        assert_eq!(remaining(t, t), None);
        assert_eq!(
            remaining(t + Duration::from_secs(5), t),
            Some(Duration::from_secs(5))
        );
        assert_eq!(remaining(t, t + Duration::from_secs(1)), None);
    }
}
