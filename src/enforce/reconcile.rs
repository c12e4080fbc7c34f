//! Reconcile: what a firewall's sets actually hold (read from `nft -j list table`) against
//! what they should hold, and the element changes that make them agree.
//!
//! Pure: parsing and diffing only. Running nft, locally or over SSH, is the caller's job.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use thiserror::Error;

use super::nft::{self, ElementChange};
use super::pending::{self, Desired};
use crate::target::{Element, Port, Target};

/// An element present now lasts this much less than it should before it is re-added: nft
/// reports whole seconds, and a ban extended while the host was unreachable must be renewed.
const TIMEOUT_SLACK: Duration = Duration::from_secs(5);

/// `nft -j list table` output that cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ListError {
    /// Not JSON, or not nft's shape.
    #[error("nft -j output is not understood: {0}")]
    Shape(String),
}

/// The elements found in a firewall, with their remaining time (None: no timeout).
pub type Actual = HashMap<Element, Option<Duration>>;

/// The elements of the table's six ban sets, from `nft -j list table inet TABLE`. Other
/// sets of the table (none are created by syslog2ban) are ignored.
pub fn parse_listing(json: &str) -> Result<Actual, ListError> {
    let root: Value =
        serde_json::from_str(json).map_err(|e| ListError::Shape(format!("not JSON: {e}")))?;
    let items = root
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| ListError::Shape("no \"nftables\" array".into()))?;
    let mut actual = Actual::new();
    for item in items {
        let Some(set) = item.get("set") else { continue };
        let name = set.get("name").and_then(Value::as_str).unwrap_or_default();
        if !nft::SETS.iter().any(|(set, ..)| *set == name) {
            continue;
        }
        for elem in set
            .get("elem")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (value, remaining) = match elem.get("elem") {
                // {"elem": {"val": ..., "timeout": 600, "expires": 590}}
                Some(inner) => {
                    let expires = inner.get("expires").and_then(Value::as_u64);
                    let timeout = inner.get("timeout").and_then(Value::as_u64);
                    let left = expires.or(timeout).map(Duration::from_secs);
                    (inner.get("val").unwrap_or(&Value::Null), left)
                }
                None => (elem, None),
            };
            let element = element_of(value).ok_or_else(|| {
                ListError::Shape(format!("element {value} of set {name} is not an address"))
            })?;
            actual.insert(element, remaining);
        }
    }
    Ok(actual)
}

/// Whether a listing holds everything `nft::setup_script` creates for `hooks`: the four sets
/// and a chain per hook with its four drop rules, and no chain of a hook not wanted. When not,
/// the setup runs again (it keeps elements).
pub fn is_complete(json: &str, hooks: crate::config::Hooks) -> bool {
    let Ok(root) = serde_json::from_str::<Value>(json) else {
        return false;
    };
    let Some(items) = root.get("nftables").and_then(Value::as_array) else {
        return false;
    };
    let name = |kind: &str, item: &Value| {
        item.get(kind)
            .and_then(|o| o.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let sets: Vec<String> = items.iter().filter_map(|i| name("set", i)).collect();
    let chain_ok = |hook: &str, wanted: bool| {
        let chain = items
            .iter()
            .any(|i| name("chain", i).as_deref() == Some(hook));
        let rules = items
            .iter()
            .filter(|i| {
                i.get("rule")
                    .and_then(|r| r.get("chain"))
                    .and_then(Value::as_str)
                    == Some(hook)
            })
            .count();
        if wanted {
            chain && rules >= nft::SETS.len()
        } else {
            !chain
        }
    };
    nft::SETS
        .iter()
        .all(|(s, ..)| sets.iter().any(|have| have == s))
        && chain_ok("input", hooks.input)
        && chain_ok("forward", hooks.forward)
}

/// The collectors marked as managing a table (`nft::owner_script`), from its listing.
pub fn owners(json: &str) -> Vec<String> {
    let Ok(root) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    root.get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| item.get("counter")?.get("name")?.as_str())
        .filter_map(|name| name.strip_prefix(nft::OWNER_PREFIX))
        .map(str::to_string)
        .collect()
}

/// An address element, or `{"concat": [ADDRESS, "tcp", 2222]}` of a per-port set.
fn element_of(value: &Value) -> Option<Element> {
    if let Some(parts) = value.get("concat").and_then(Value::as_array) {
        let [address, protocol, port] = parts.as_slice() else {
            return None;
        };
        return Some(Element {
            target: element_target(address)?,
            port: Some(Port {
                protocol: protocol.as_str()?.parse().ok()?,
                number: u16::try_from(port.as_u64()?).ok()?,
            }),
        });
    }
    element_target(value).map(Element::all)
}

/// `"198.51.100.66"` or `{"prefix": {"addr": "2001:db8::", "len": 64}}`.
fn element_target(value: &Value) -> Option<Target> {
    match value {
        Value::String(text) => text.parse().ok(),
        Value::Object(map) => {
            let prefix = map.get("prefix")?;
            let addr = prefix.get("addr")?.as_str()?;
            let len = prefix.get("len")?.as_u64()?;
            format!("{addr}/{len}").parse().ok()
        }
        _ => None,
    }
}

/// The changes that make `actual` hold exactly `desired` (per target: its deadline, None =
/// permanent, and its ports), as of `now`. Desired entries past their deadline are ignored.
pub fn diff(desired: &Desired, actual: &Actual, now: Instant) -> Vec<ElementChange> {
    let mut changes = Vec::new();
    for (target, wanted) in desired {
        let want = match wanted.until {
            None => None,
            Some(deadline) => match nft::remaining(deadline, now) {
                Some(left) => Some(left),
                None => continue,
            },
        };
        for element in pending::elements(*target, wanted) {
            let ok = match (actual.get(&element), want) {
                (None, _) => false,
                // A permanent element where a timeout is wanted is stricter, but not what was
                // decided; a timed one where permanence is wanted would expire.
                (Some(None), want) => want.is_none(),
                (Some(Some(_)), None) => false,
                (Some(Some(have)), Some(want)) => *have + TIMEOUT_SLACK >= want,
            };
            if !ok {
                changes.push(ElementChange::Add(element, want));
            }
        }
    }
    for element in actual.keys() {
        let wanted = desired.get(&element.target).is_some_and(|w| {
            w.live(now)
                && match (&w.ports, element.port) {
                    (None, None) => true,
                    (Some(ports), Some(port)) => ports.contains(&port),
                    _ => false,
                }
        });
        if !wanted {
            changes.push(ElementChange::Remove(*element));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::pending::Wanted;

    // Shapes printed by nft 1.0.6 for the four sets of `nft::setup_script`.
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
      {"table": {"family": "inet", "name": "syslog2ban", "handle": 1}},
      {"set": {"family": "inet", "name": "banned4", "table": "syslog2ban", "type": "ipv4_addr", "handle": 1, "flags": ["timeout"],
               "elem": [{"elem": {"val": "198.51.100.66", "timeout": 600, "expires": 590}}, "198.51.100.70"]}},
      {"set": {"family": "inet", "name": "banned6", "table": "syslog2ban", "type": "ipv6_addr", "handle": 2, "flags": ["timeout"]}},
      {"set": {"family": "inet", "name": "banned4net", "table": "syslog2ban", "type": "ipv4_addr", "handle": 3, "flags": ["interval", "timeout"]}},
      {"set": {"family": "inet", "name": "banned6net", "table": "syslog2ban", "type": "ipv6_addr", "handle": 4, "flags": ["interval", "timeout"],
               "elem": [{"elem": {"val": {"prefix": {"addr": "2001:db8:5100::", "len": 64}}, "timeout": 60, "expires": 30}}]}},
      {"set": {"family": "inet", "name": "banned4port", "table": "syslog2ban", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 6, "flags": ["interval", "timeout"],
               "elem": [{"elem": {"val": {"concat": ["198.51.100.5", "tcp", 2222]}, "timeout": 30, "expires": 29}},
                        {"concat": [{"prefix": {"addr": "198.51.100.0", "len": 24}}, "udp", 53]}]}},
      {"set": {"family": "inet", "name": "banned6port", "table": "syslog2ban", "type": ["ipv6_addr", "inet_proto", "inet_service"], "handle": 7, "flags": ["interval", "timeout"]}},
      {"chain": {"family": "inet", "table": "syslog2ban", "name": "input", "handle": 5}}]}"#;

    fn t(s: &str) -> Target {
        s.parse().unwrap()
    }

    #[test]
    fn reads_addresses_prefixes_and_remaining_time() {
        let actual = parse_listing(LISTING).unwrap();
        assert_eq!(actual.len(), 5);
        // Per-service elements: address or prefix, protocol, port.
        let port = |s: &str| s.parse::<Element>().unwrap();
        assert_eq!(
            actual[&port("198.51.100.5 tcp:2222")],
            Some(Duration::from_secs(29))
        );
        assert_eq!(actual[&port("198.51.100.0/24 udp:53")], None);
        assert_eq!(
            actual[&t("198.51.100.66").into()],
            Some(Duration::from_secs(590))
        );
        assert_eq!(actual[&t("198.51.100.70").into()], None);
        assert_eq!(
            actual[&t("2001:db8:5100::/64").into()],
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn a_listing_without_the_chain_rules_or_a_set_is_incomplete() {
        // LISTING has the sets and the chain but no rules (as after `nft flush chain`).
        let input = crate::config::Hooks::default();
        assert!(!is_complete(LISTING, input));
        let rule = r#"{"rule": {"family": "inet", "table": "syslog2ban", "chain": "input", "handle": 6, "expr": []}}"#;
        let full = LISTING.replace(
            r#""handle": 5}}]}"#,
            &format!(r#""handle": 5}}}}, {rule}, {rule}, {rule}, {rule}, {rule}, {rule}]}}"#),
        );
        assert!(is_complete(&full, input), "{full}");
        assert!(!is_complete(&full.replace("banned6net", "other"), input));
        assert!(!is_complete("Error: No such file or directory", input));
        // A table set up for the input hook lacks what `hook = "both"` wants.
        let both = crate::config::Hooks::parse("both").unwrap();
        assert!(!is_complete(&full, both));
        let forward = crate::config::Hooks::parse("forward").unwrap();
        assert!(
            !is_complete(&full, forward),
            "an input chain left over is not complete"
        );
    }

    #[test]
    fn owners_are_read_from_their_marker_counters() {
        assert!(owners(LISTING).is_empty());
        let marked = LISTING.replace(
            r#"{"chain""#,
            r#"{"counter": {"family": "inet", "name": "owner_one", "table": "syslog2ban", "handle": 9, "packets": 0, "bytes": 0}}, {"counter": {"family": "inet", "name": "hits", "table": "syslog2ban", "handle": 10, "packets": 0, "bytes": 0}}, {"chain""#,
        );
        assert_eq!(owners(&marked), vec!["one".to_string()]);
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_set() {
        assert!(parse_listing("Error: No such file or directory").is_err());
        assert!(parse_listing("{}").is_err());
        let bad = r#"{"nftables": [{"set": {"name": "banned4", "elem": [{"elem": {"val": 7}}]}}]}"#;
        assert!(parse_listing(bad).is_err());
    }

    #[test]
    fn diff_adds_missing_renews_short_and_removes_stray() {
        let now = Instant::now();
        let actual = parse_listing(LISTING).unwrap();
        let mut desired = Desired::default();
        // Present with 590 s left of 600: fine.
        desired.insert(
            t("198.51.100.66"),
            Wanted {
                until: Some(now + Duration::from_secs(592)),
                ports: None,
            },
        );
        // Present with 30 s left but 3600 s wanted (extended while unreachable): renew.
        desired.insert(
            t("2001:db8:5100::/64"),
            Wanted {
                until: Some(now + Duration::from_secs(3600)),
                ports: None,
            },
        );
        // Missing: add with its remaining time.
        desired.insert(
            t("198.51.100.80"),
            Wanted {
                until: Some(now + Duration::from_secs(100)),
                ports: None,
            },
        );
        // Already over: not added.
        desired.insert(
            t("198.51.100.81"),
            Wanted {
                until: Some(now - Duration::from_secs(1)),
                ports: None,
            },
        );
        // A per-service ban on two ports: one present, one missing.
        let tcp = |number| Port {
            protocol: crate::target::Protocol::Tcp,
            number,
        };
        desired.insert(
            t("198.51.100.5"),
            Wanted {
                until: Some(now + Duration::from_secs(20)),
                ports: Some(std::sync::Arc::new([tcp(2222), tcp(2223)].into())),
            },
        );
        let mut changes = diff(&desired, &actual, now);
        changes.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            changes,
            vec![
                ElementChange::Add(
                    "198.51.100.5 tcp:2223".parse().unwrap(),
                    Some(Duration::from_secs(20))
                ),
                ElementChange::Add(t("198.51.100.80").into(), Some(Duration::from_secs(100))),
                ElementChange::Add(
                    t("2001:db8:5100::/64").into(),
                    Some(Duration::from_secs(3600))
                ),
                // Present, but no ban holds them.
                ElementChange::Remove("198.51.100.0/24 udp:53".parse().unwrap()),
                ElementChange::Remove(t("198.51.100.70").into()),
            ]
        );
    }

    #[test]
    fn in_sync_gives_no_changes() {
        let now = Instant::now();
        let mut actual = Actual::new();
        actual.insert(t("198.51.100.66").into(), None);
        let mut desired = Desired::default();
        desired.insert(
            t("198.51.100.66"),
            Wanted {
                until: None,
                ports: None,
            },
        );
        assert!(diff(&desired, &actual, now).is_empty());
        assert!(diff(&Desired::default(), &Actual::new(), now).is_empty());
    }
}
