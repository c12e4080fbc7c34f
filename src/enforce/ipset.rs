//! The `ipset` backend, for hosts that run iptables: eight ipset sets (single addresses and
//! prefixes, per family, whole or per port, with kernel timeouts) and one DROP rule per set in
//! each wanted hook's chain (`INPUT`, `FORWARD`). Element changes go to the kernel as one `ipset restore` batch on
//! stdin, never one process per ban.
//!
//! Owns the sets and rules it creates and nothing else in iptables: it checks its rules with
//! `-C` and inserts only what is missing, and removes only its own on a clean stop.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use super::nft::ElementChange;
use super::reconcile::Actual;
use super::tool::{Local, Runner, ToolError};
use crate::config::{Hooks, IpsetConfig};
use crate::target::{Element, Port, Target};

/// ipset's longest timeout (seconds). A longer ban is held without a kernel timeout and
/// removed by the daemon's unban when it ends.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(2_147_483);
/// How long one ipset or iptables run may take.
const TOOL_LIMIT: Duration = Duration::from_secs(30);
/// Elements per set (ipset's default of 65536 is too few for a botnet).
const MAX_ELEMENTS: u32 = 1 << 20;
/// Marks our rules, so an operator reading `iptables -S` knows whose they are.
const COMMENT: &str = "syslog2ban";

/// One of the eight sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SetKind {
    suffix: &'static str,
    v6: bool,
    host: bool,
    /// Address and port (a per-service ban), matched as `src,dst`.
    port: bool,
}

const fn kind(suffix: &'static str, v6: bool, host: bool, port: bool) -> SetKind {
    SetKind {
        suffix,
        v6,
        host,
        port,
    }
}

const SETS: [SetKind; 8] = [
    kind("4", false, true, false),
    kind("6", true, true, false),
    kind("net4", false, false, false),
    kind("net6", true, false, false),
    kind("p4", false, true, true),
    kind("p6", true, true, true),
    kind("netp4", false, false, true),
    kind("netp6", true, false, true),
];

/// The longest table name whose set names fit ipset's 31 bytes.
pub const MAX_TABLE_NAME: usize = 26;

/// The sets and rules of one table name, on this host or a target.
#[derive(Debug, Clone)]
pub struct Ipset {
    tools: IpsetConfig,
    /// Set names start with it (`<prefix>4`, `<prefix>net6`, ...).
    prefix: String,
    hooks: Hooks,
    /// Where ipset and iptables run.
    runner: Arc<dyn Runner>,
}

impl Ipset {
    /// The backend for `table` on this host (set names `table4`, `table6`, `tablenet4`,
    /// `tablep4`...).
    pub fn new(tools: IpsetConfig, table: &str, hooks: Hooks) -> Self {
        Ipset::on(Arc::new(Local { limit: TOOL_LIMIT }), tools, table, hooks)
    }

    /// The same, with its tools run by `runner` (a target over SSH).
    pub fn on(runner: Arc<dyn Runner>, tools: IpsetConfig, table: &str, hooks: Hooks) -> Self {
        Ipset {
            tools,
            prefix: table.to_string(),
            hooks,
            runner,
        }
    }

    async fn tool(
        &self,
        program: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, ToolError> {
        let args = args.iter().map(|a| (*a).to_string()).collect();
        self.runner
            .run(program, args, stdin.map(|s| s.as_bytes().to_vec()))
            .await
    }

    async fn rule_present(
        &self,
        binary: &Path,
        chain: &str,
        set: &str,
        direction: &str,
    ) -> Result<bool, ToolError> {
        match self
            .tool(binary, &rule_args("-C", chain, set, direction), None)
            .await
        {
            Ok(_) => Ok(true),
            // -C exits 1 for "no such rule" (and 2 for a missing set, which setup creates first).
            Err(e) if e.exited_with(1) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn set_name(&self, kind: &SetKind) -> String {
        format!("{}{}", self.prefix, kind.suffix)
    }

    fn set_of(&self, element: &Element) -> String {
        let t = &element.target;
        let kind = SETS
            .iter()
            .find(|k| {
                k.v6 == t.is_ipv6() && k.host == t.is_host() && k.port == element.port.is_some()
            })
            .expect("every element has a set");
        self.set_name(kind)
    }

    /// The `ipset restore` lines that create the sets (kept when they exist).
    fn create_script(&self) -> String {
        let mut script = String::new();
        for kind in &SETS {
            let _ = writeln!(
                script,
                "create {} {}{} family {} timeout 0 maxelem {MAX_ELEMENTS}",
                self.set_name(kind),
                if kind.host { "hash:ip" } else { "hash:net" },
                if kind.port { ",port" } else { "" },
                if kind.v6 { "inet6" } else { "inet" },
            );
        }
        script
    }

    /// The DROP rules: (binary, chain, set, match) for each wanted hook and set.
    fn rules(&self) -> Vec<(&Path, &'static str, String, &'static str)> {
        let mut rules = Vec::new();
        for (chain, wanted) in [("INPUT", self.hooks.input), ("FORWARD", self.hooks.forward)] {
            if !wanted {
                continue;
            }
            for kind in &SETS {
                let binary = if kind.v6 {
                    &self.tools.ip6tables
                } else {
                    &self.tools.iptables
                };
                let direction = if kind.port { "src,dst" } else { "src" };
                rules.push((binary.as_path(), chain, self.set_name(kind), direction));
            }
        }
        rules
    }

    /// Creates the sets and rules that are missing; existing elements are kept. Returns how
    /// many parts had to be created.
    pub async fn setup(&self) -> Result<usize, ToolError> {
        let missing_sets = self.missing_sets().await?;
        if missing_sets > 0 {
            self.restore(&self.create_script()).await?;
        }
        let mut added = 0;
        for (binary, chain, set, direction) in self.rules() {
            if !self.rule_present(binary, chain, &set, direction).await? {
                let args = rule_args("-I", chain, &set, direction);
                self.tool(binary, &args, None).await?;
                added += 1;
            }
        }
        if missing_sets + added > 0 {
            info!(sets = %self.prefix, rules = added, hooks = ?self.hooks.names(), "ipset sets and iptables rules ready");
        }
        Ok(missing_sets + added)
    }

    /// Removes our rules, then our sets.
    pub async fn teardown(&self) -> Result<(), ToolError> {
        for (binary, chain, set, direction) in self.rules() {
            while self.rule_present(binary, chain, &set, direction).await? {
                let args = rule_args("-D", chain, &set, direction);
                self.tool(binary, &args, None).await?;
            }
        }
        let mut script = String::new();
        for kind in &SETS {
            let _ = writeln!(script, "destroy {}", self.set_name(kind));
        }
        self.restore(&script).await
    }

    /// Applies element changes as one `ipset restore` batch.
    pub async fn apply(&self, changes: &[ElementChange]) -> Result<(), ToolError> {
        self.restore(&self.batch_script(changes)).await
    }

    fn batch_script(&self, changes: &[ElementChange]) -> String {
        let mut script = String::new();
        for change in changes {
            match change {
                ElementChange::Add(element, timeout) => {
                    // 0: no kernel timeout (permanent, or longer than ipset can hold).
                    let seconds = timeout
                        .filter(|t| *t <= MAX_TIMEOUT)
                        .map_or(0, |t| t.as_secs().max(1));
                    let _ = writeln!(
                        script,
                        "add {} {} timeout {seconds}",
                        self.set_of(element),
                        entry(element)
                    );
                }
                ElementChange::Remove(element) => {
                    let _ = writeln!(script, "del {} {}", self.set_of(element), entry(element));
                }
            }
        }
        script
    }

    /// Every element of our sets, with the kernel's remaining timeout (None: no timeout).
    pub async fn list(&self) -> Result<Actual, ToolError> {
        let mut actual = HashMap::new();
        for kind in &SETS {
            let listing = self
                .tool(&self.tools.ipset, &["save", &self.set_name(kind)], None)
                .await?;
            parse_save(&listing, &mut actual);
        }
        Ok(actual)
    }

    async fn missing_sets(&self) -> Result<usize, ToolError> {
        let mut missing = 0;
        for kind in &SETS {
            let name = self.set_name(kind);
            match self
                .tool(&self.tools.ipset, &["list", "-n", &name], None)
                .await
            {
                Ok(_) => {}
                Err(e @ ToolError::Spawn { .. }) | Err(e @ ToolError::TimedOut { .. }) => {
                    return Err(e)
                }
                Err(ToolError::Failed { .. }) => missing += 1,
            }
        }
        Ok(missing)
    }

    async fn restore(&self, script: &str) -> Result<(), ToolError> {
        if script.is_empty() {
            return Ok(());
        }
        // -exist: adding a present element refreshes its timeout, deleting an absent one
        // is no error, creating an existing set keeps it: every batch is idempotent.
        self.tool(&self.tools.ipset, &["-exist", "restore"], Some(script))
            .await
            .map(drop)
    }
}

/// An element in ipset's syntax: `ADDRESS[/LEN]` or `ADDRESS[/LEN],tcp:2222`.
fn entry(element: &Element) -> String {
    match element.port {
        None => element.target.to_string(),
        Some(port) => format!("{},{port}", element.target),
    }
}

fn rule_args<'a>(
    action: &'a str,
    chain: &'a str,
    set: &'a str,
    direction: &'a str,
) -> [&'a str; 14] {
    [
        "-w",
        action,
        chain,
        "-m",
        "set",
        "--match-set",
        set,
        direction,
        "-m",
        "comment",
        "--comment",
        COMMENT,
        "-j",
        "DROP",
    ]
}

/// Reads `ipset save` lines: `add SET ADDRESS[/LEN] [timeout N] ...`.
fn parse_save(listing: &str, into: &mut Actual) {
    for line in listing.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("add") {
            continue;
        }
        let (Some(_set), Some(address)) = (words.next(), words.next()) else {
            continue;
        };
        let (address, port) = match address.split_once(',') {
            Some((address, port)) => (address, Some(port)),
            None => (address, None),
        };
        let Ok(target) = address.parse::<Target>() else {
            continue;
        };
        let port = match port.map(parse_port) {
            None => None,
            Some(Some(port)) => Some(port),
            Some(None) => continue,
        };
        let mut timeout = None;
        while let Some(word) = words.next() {
            if word == "timeout" {
                timeout = words
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .filter(|n| *n > 0)
                    .map(Duration::from_secs);
            }
        }
        into.insert(Element { target, port }, timeout);
    }
}

/// `tcp:2222` as ipset lists it.
fn parse_port(text: &str) -> Option<Port> {
    let (protocol, number) = text.split_once(':')?;
    Some(Port {
        protocol: protocol.parse().ok()?,
        number: number.parse().ok()?,
    })
}

/// The reconcile's changes for ipset: an element held without a kernel timeout because its
/// ban outlasts ipset's limit is as wanted, not re-added every round.
pub fn settle(changes: Vec<ElementChange>, actual: &Actual) -> Vec<ElementChange> {
    changes
        .into_iter()
        .filter(|change| match change {
            ElementChange::Add(target, Some(left)) if *left > MAX_TIMEOUT => {
                actual.get(target) != Some(&None)
            }
            _ => true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn backend(hooks: Hooks) -> Ipset {
        Ipset::new(
            IpsetConfig {
                ipset: PathBuf::from("ipset"),
                iptables: PathBuf::from("iptables"),
                ip6tables: PathBuf::from("ip6tables"),
            },
            "s2b",
            hooks,
        )
    }

    fn t(s: &str) -> Target {
        s.parse().unwrap()
    }

    #[test]
    fn each_change_goes_to_its_family_and_kind_of_set() {
        let script = backend(Hooks::default()).batch_script(&[
            ElementChange::Add(
                t("198.51.100.7").into(),
                Some(Duration::from_millis(600_400)),
            ),
            ElementChange::Add(t("2001:db8::/64").into(), None),
            ElementChange::Add(
                t("198.51.100.0/24").into(),
                Some(Duration::from_secs(3 << 30)),
            ),
            ElementChange::Remove(t("2001:db8::9").into()),
        ]);
        assert_eq!(
            script,
            "add s2b4 198.51.100.7 timeout 600\n\
             add s2bnet6 2001:db8::/64 timeout 0\n\
             add s2bnet4 198.51.100.0/24 timeout 0\n\
             del s2b6 2001:db8::9\n"
        );
    }

    #[test]
    fn rules_cover_each_wanted_hook_and_both_families() {
        let both = Hooks {
            input: true,
            forward: true,
        };
        let backend_both = backend(both);
        let rules = backend_both.rules();
        assert_eq!(rules.len(), 16);
        assert!(rules
            .iter()
            .any(|(bin, chain, set, _)| bin.ends_with("ip6tables")
                && *chain == "FORWARD"
                && set == "s2bnet6"));
        assert!(rules
            .iter()
            .any(|(_, _, set, direction)| set == "s2bnetp4" && *direction == "src,dst"));
        let input_only = backend(Hooks::default());
        assert!(input_only
            .rules()
            .iter()
            .all(|(_, chain, _, _)| *chain == "INPUT"));
    }

    #[test]
    fn a_save_listing_reads_back_as_elements_with_timeouts() {
        let mut actual = Actual::new();
        parse_save(
            "create s2b4 hash:ip family inet hashsize 1024 maxelem 1048576 timeout 0\n\
             add s2b4 198.51.100.3 timeout 29\n\
             add s2b4 198.51.100.4 timeout 0\n\
             add s2bnet4 198.51.100.0/24 timeout 5\n\
             garbage line\n",
            &mut actual,
        );
        assert_eq!(actual.len(), 3);
        assert_eq!(
            actual[&t("198.51.100.3").into()],
            Some(Duration::from_secs(29))
        );
        assert_eq!(actual[&t("198.51.100.4").into()], None);
        assert_eq!(
            actual[&t("198.51.100.0/24").into()],
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn a_ban_longer_than_ipset_can_time_is_not_re_added_every_round() {
        let mut actual = Actual::new();
        actual.insert(t("198.51.100.3").into(), None);
        let long = ElementChange::Add(t("198.51.100.3").into(), Some(MAX_TIMEOUT * 2));
        let missing = ElementChange::Add(t("198.51.100.4").into(), Some(MAX_TIMEOUT * 2));
        assert_eq!(settle(vec![long, missing], &actual), vec![missing]);
    }
}
