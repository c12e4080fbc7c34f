//! Durable ban state end to end: a real daemon, real nft in SERVER, the real SQLite file in
//! `[state] dir`, and daemon restarts (clean SIGTERM and `kill -9`) in between.
//!
//! - `kill -9` in the middle of a ban storm loses no ban the log reported (`Banned` is logged
//!   only after the commit), and a restart on a deleted nft table puts every stored ban back
//!   with its remaining time, dropping the ones that expired while the daemon was down.
//! - `bantime = -1` is an element without timeout, before and after a clean restart.
//! - recidive counts bans across jails and across a restart.
//! - growing bantimes count earlier bans across restarts.
//!
//! No sshd or rsyslog: a python3 client inside SERVER sends octet-counted RFC 5424 frames to
//! the daemon's TCP listener; the store is read with python3's sqlite3 module (read-only URI),
//! so no sqlite3 binary is needed. Everything is polled with a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::{self, DaemonOptions, Lab, Listener, Out, NFT_TABLE, SYSLOG_TCP_PORT};

const TOOLS: &[&str] = &["ip", "nft", "ss", "python3", "kill"];

const SETTLE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(25);

/// Runs inside SERVER. argv: port, number of IPv6 addresses. One TCP connection, as fast as
/// possible: sshd failures for 2001:db8:1::1, ::2, ... with one IPv4 address (203.0.113.1-254,
/// then 198.51.100.20-254) after every 8 IPv6 ones until those run out. Prints `sent N` when
/// everything is written, or `aborted after N: ERROR` if the daemon goes away first.
const STORM_PY: &str = r#"
import socket, sys
port, n6 = int(sys.argv[1]), int(sys.argv[2])
v4 = ["203.0.113.%d" % i for i in range(1, 255)] + ["198.51.100.%d" % i for i in range(20, 255)]
def addrs():
    k = 0
    for i in range(1, n6 + 1):
        yield "2001:db8:1::%x" % i
        if i % 8 == 0 and k < len(v4):
            yield v4[k]
            k += 1
def frame(a):
    m = ("<38>1 2026-11-25T08:32:44.640342+00:00 web1 sshd 16313 - - Failed password for root from %s port 4242 ssh2" % a).encode()
    return str(len(m)).encode() + b" " + m
s = socket.create_connection(("127.0.0.1", port), timeout=10)
sent, chunk = 0, []
try:
    for a in addrs():
        chunk.append(frame(a))
        if len(chunk) == 64:
            s.sendall(b"".join(chunk))
            sent += len(chunk)
            chunk = []
    if chunk:
        s.sendall(b"".join(chunk))
        sent += len(chunk)
    print("sent", sent, flush=True)
except OSError as e:
    print("aborted after", sent, ":", e, flush=True)
"#;

/// Runs anywhere. argv: database path. Prints the store as JSON: `{"now_ms", "bans": [the
/// rows in force at now_ms], "history": [every ban's row]}`, opened read-only (URI mode=ro) so it neither checkpoints nor writes.
const READ_DB_PY: &str = r#"
import json, sqlite3, sys, time
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=5)
now = int(time.time() * 1000)
bans = [dict(address=a, jail=j, origin=o, started=s, expires=e, failures=f)
        for a, j, o, s, e, f in c.execute(
            "SELECT address, jail, origin, started, expires, failures FROM bans"
            " WHERE ended IS NULL AND (expires IS NULL OR expires > ?)", (now,))]
hist = [dict(address=a, jail=j, started=s, expires=e)
        for a, j, s, e in c.execute("SELECT address, jail, started, expires FROM history ORDER BY id")]
print(json.dumps({"now_ms": now, "bans": bans, "history": hist}))
"#;

/// The `[jail.sshd]` override of a test: maxretry, bantime (TOML value) and extra lines.
fn sshd_override(maxretry: u32, bantime: &str, extra: &str) -> String {
    format!("[jail.sshd]\nmaxretry = {maxretry}\nbantime = {bantime}\nfindtime = \"10m\"\n{extra}")
}

/// A jail file for a made-up program `name` with `auth failure from <HOST>`.
fn fake_jail(name: &str, maxretry: u32, bantime: &str) -> String {
    format!(
        "[jail.{name}]\nenabled = true\nprograms = [\"{name}\"]\nfailregex = ['^auth failure from <HOST>$']\n\
         maxretry = {maxretry}\nbantime = {bantime}\nfindtime = \"10m\"\n"
    )
}

/// An RFC 5424 sshd "Failed password" line for `addr`.
fn sshd_failure(addr: &str) -> String {
    format!(
        "<38>1 2026-11-25T08:32:44.640342+00:00 web1 sshd 16313 - - Failed password for root from {addr} port 4242 ssh2"
    )
}

/// An RFC 5424 line of program `program` that its fake jail counts.
fn fake_failure(program: &str, addr: &str) -> String {
    format!(
        "<38>1 2026-11-25T08:32:44.640342+00:00 web1 {program} 999 - - auth failure from {addr}"
    )
}

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// Writes the default test config, then `sshd` as conf.d/zz-test.toml, the `jails` files and
/// `main_extra` appended to syslog2ban.toml.
fn configure(lab: &mut Lab, sshd: &str, jails: &[(&str, String)], main_extra: &str) {
    lab.write_daemon_config(Listener::Tcp, &DaemonOptions::default());
    lab.write_jail_override(sshd);
    for (file, toml) in jails {
        let path = lab.conf_d().join(file);
        std::fs::write(&path, toml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    if !main_extra.is_empty() {
        let path = lab.config_dir().join("syslog2ban.toml");
        let mut main = std::fs::read_to_string(&path).expect("read syslog2ban.toml");
        main.push('\n');
        main.push_str(main_extra);
        std::fs::write(&path, main).expect("write syslog2ban.toml");
    }
}

/// Starts the daemon as process `label` on the config in place; waits for the control socket.
fn launch(lab: &mut Lab, label: &str) -> u32 {
    let pid = lab.launch_daemon(label, Listener::Tcp, &DaemonOptions::default());
    if lab::wait_until(SETTLE, POLL, || lab.ctl(&["status", "--json"]).success()).is_none() {
        panic!(
            "{label}: control socket not answering within {SETTLE:?}\n{}",
            lab.ctl(&["status", "--json"]).describe()
        );
    }
    pid
}

/// Sends `sig` to the daemon process `label` and waits until it has exited; returns its status.
fn stop(lab: &mut Lab, label: &str, sig: &str) -> std::process::ExitStatus {
    let pid = lab
        .pid_of(label)
        .unwrap_or_else(|| panic!("{label} is not running"));
    assert!(lab::kill_pid(pid, sig), "kill -{sig} {pid} failed");
    let mut status = None;
    if lab::wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
        status = lab.exited(label);
        status.is_some()
    })
    .is_none()
    {
        panic!("{label} (pid {pid}) still running 10 s after SIG{sig}");
    }
    let status = status.expect("exited");
    lab.note(&format!(
        "{label} (pid {pid}) stopped by SIG{sig}: {status}"
    ));
    status
}

/// Clean stop: SIGTERM, exit 0, and the nft table is kept (`keep_table` defaults to true:
/// the bans stay enforced until the next start adopts them).
fn stop_clean(lab: &mut Lab, label: &str) {
    let status = stop(lab, label, "TERM");
    assert!(
        status.success(),
        "{label} should exit 0 on SIGTERM, got {status}\n{}",
        lab.log_of(label)
    );
    assert!(
        lab.table_exists(),
        "a clean stop should keep table inet {NFT_TABLE}"
    );
}

/// Runs a CLI command with `--json`, asserting exit 0; returns the parsed answer.
fn ctl_ok(lab: &Lab, args: &[&str]) -> Value {
    let mut argv = args.to_vec();
    argv.push("--json");
    let out: Out = lab.ctl(&argv);
    assert!(
        out.success(),
        "`{}` failed\n{}",
        argv.join(" "),
        out.describe()
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "`{}`: stdout is not JSON ({e})\n{}",
            argv.join(" "),
            out.describe()
        )
    });
    assert_ne!(v["result"], "error", "{}", out.describe());
    v
}

/// One active ban as `banned --json` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    address: String,
    jail: String,
    remaining: Option<u64>,
    origin: String,
}

fn banned(lab: &Lab) -> Vec<Listed> {
    let v = ctl_ok(lab, &["banned"]);
    assert_eq!(v["result"], "banned", "{v}");
    v["bans"]
        .as_array()
        .unwrap_or_else(|| panic!("bans is not an array: {v}"))
        .iter()
        .map(|b| Listed {
            address: b["address"].as_str().unwrap_or_default().to_owned(),
            jail: b["jail"].as_str().unwrap_or_default().to_owned(),
            remaining: b["remaining_secs"].as_u64(),
            origin: b["origin"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

fn bans_of(lab: &Lab, addr: &str) -> Vec<Listed> {
    banned(lab)
        .into_iter()
        .filter(|b| b.address == addr)
        .collect()
}

/// One nft set element: address, and for elements with a timeout the timeout and the time
/// left (`nft -j` prints both in whole seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    address: String,
    timeout: Option<u64>,
    expires: Option<u64>,
}

fn set_of(addr: &str) -> &'static str {
    match (addr.contains(':'), addr.contains('/')) {
        (true, false) => "banned6",
        (false, false) => "banned4",
        (true, true) => "banned6net",
        (false, true) => "banned4net",
    }
}

/// An element value as text: `203.0.113.9`, or `2001:db8::/64` for a prefix
/// (`{"prefix": {"addr": ..., "len": ...}}` in nft's JSON).
fn element_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("prefix") => {
            format!(
                "{}/{}",
                o["prefix"]["addr"].as_str().unwrap_or("?"),
                o["prefix"]["len"]
            )
        }
        other => other.to_string(),
    }
}

/// The elements of an nft set in SERVER; an empty list when the table does not exist.
fn elements(lab: &Lab, set: &str) -> Vec<Element> {
    let out = lab.list_set(set);
    if !out.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("nft -j output is not JSON ({e})\n{}", out.describe()));
    let mut elems = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        for e in item["set"]["elem"].as_array().into_iter().flatten() {
            let elem = match e {
                Value::String(_) | Value::Object(_) if e.get("elem").is_none() => Element {
                    address: element_value(e),
                    timeout: None,
                    expires: None,
                },
                Value::Object(o) if o.contains_key("elem") => {
                    let inner = &o["elem"];
                    Element {
                        address: element_value(&inner["val"]),
                        timeout: inner["timeout"].as_u64(),
                        expires: inner["expires"].as_u64(),
                    }
                }
                other => panic!("unexpected nft element {other} in\n{}", out.describe()),
            };
            elems.push(elem);
        }
    }
    elems
}

/// Both sets, by address.
fn all_elements(lab: &Lab) -> BTreeMap<String, Element> {
    let mut m = BTreeMap::new();
    for set in ["banned4", "banned6"] {
        for e in elements(lab, set) {
            m.insert(e.address.clone(), e);
        }
    }
    m
}

fn element(lab: &Lab, addr: &str) -> Option<Element> {
    elements(lab, set_of(addr))
        .into_iter()
        .find(|e| e.address == addr)
}

/// Polls until `addr` is in its nft set; returns the element.
fn wait_element(lab: &Lab, addr: &str, why: &str) -> Element {
    let mut found = None;
    if lab::wait_until(SETTLE, POLL, || {
        found = element(lab, addr);
        found.is_some()
    })
    .is_none()
    {
        panic!(
            "{why}: {addr} not in nft {} within {SETTLE:?}\n{}",
            set_of(addr),
            lab.list_set(set_of(addr)).describe()
        );
    }
    found.expect("found")
}

/// Polls until `jail` holds `addr` in `banned --json`.
fn wait_listed(lab: &Lab, addr: &str, jail: &str, why: &str) -> Listed {
    let mut found = None;
    if lab::wait_until(SETTLE, POLL, || {
        found = bans_of(lab, addr).into_iter().find(|b| b.jail == jail);
        found.is_some()
    })
    .is_none()
    {
        panic!(
            "{why}: `banned --json` has no ban of {addr} in jail {jail} within {SETTLE:?}: {:?}",
            banned(lab)
        );
    }
    found.expect("found")
}

/// The store as READ_DB_PY prints it.
struct Db {
    now_ms: i64,
    bans: Vec<Value>,
    history: Vec<Value>,
}

impl Db {
    fn ban_addresses(&self) -> BTreeSet<String> {
        self.bans
            .iter()
            .map(|b| b["address"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
    fn bans_of(&self, addr: &str) -> Vec<&Value> {
        self.bans.iter().filter(|b| b["address"] == addr).collect()
    }
    fn history_of(&self, addr: &str) -> Vec<&Value> {
        self.history
            .iter()
            .filter(|b| b["address"] == addr)
            .collect()
    }
}

fn db_path(lab: &Lab) -> PathBuf {
    lab.dir.join("state").join("syslog2ban.sqlite3")
}

fn read_db(lab: &Lab) -> Db {
    let path = db_path(lab);
    assert!(path.exists(), "no ban store at {}", path.display());
    let python = lab::tool("python3");
    let out = lab::run(
        lab::command(python).arg("-c").arg(READ_DB_PY).arg(&path),
        Duration::from_secs(30),
    );
    assert!(
        out.success(),
        "reading {}\n{}",
        path.display(),
        out.describe()
    );
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("store dump is not JSON ({e})\n{}", out.describe()));
    Db {
        now_ms: v["now_ms"].as_i64().expect("now_ms"),
        bans: v["bans"].as_array().cloned().unwrap_or_default(),
        history: v["history"].as_array().cloned().unwrap_or_default(),
    }
}

/// Addresses of every `Banned` line in a daemon log (text format:
/// `... Banned jail=J address=A origin=O ...`), with their jail.
fn banned_lines(log: &str) -> Vec<(String, String)> {
    log.lines()
        .filter(|l| l.contains(" Banned "))
        .filter_map(|l| {
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(k))
                    .map(str::to_owned)
            };
            Some((field("jail=")?, field("address=")?))
        })
        .collect()
}

/// `restored=N` of the `Ban store read` line.
fn restored_count(log: &str) -> Option<usize> {
    log.lines()
        .find(|l| l.contains("Ban store read"))?
        .split_whitespace()
        .find_map(|w| w.strip_prefix("restored="))?
        .parse()
        .ok()
}

fn wait_log(lab: &Lab, label: &str, needle: &str, why: &str) {
    if lab::wait_until(SETTLE, POLL, || lab.log_of(label).contains(needle)).is_none() {
        panic!(
            "{why}: no {needle:?} in the {label} log within {SETTLE:?}\n{}",
            lab.log_of(label)
        );
    }
}

/// Waits until no `nft` process is left in SERVER (a killed daemon's batches may still run).
fn wait_no_nft_children(lab: &Lab) {
    let nft_pids = || -> Vec<u32> {
        lab.pids_in(&lab.srv)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .map(|c| c.trim() == "nft")
                    .unwrap_or(false)
            })
            .collect()
    };
    if lab::wait_until(Duration::from_secs(10), POLL, || nft_pids().is_empty()).is_none() {
        panic!(
            "nft processes of the killed daemon still running after 10 s: {:?}",
            nft_pids()
        );
    }
}

fn nft_in_server(lab: &Lab, args: &[&str]) -> Out {
    let nft = lab::tool("nft").display().to_string();
    let mut argv = vec![nft.as_str()];
    argv.extend_from_slice(args);
    lab.exec(&lab.srv, &argv, Duration::from_secs(20))
}

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

/// Storm of bans, `kill -9` in the middle, restart on a deleted table: every ban the log
/// reported is in the store and back in nft with at most its original bantime left, and a ban
/// that expired while the daemon was dead is in neither.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn kill_9_during_a_ban_storm_loses_no_reported_ban() {
    let test = "kill_9_during_a_ban_storm_loses_no_reported_ban";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    const BANTIME_S: u64 = 600;
    const SHORT_S: u64 = 3;
    // Not among the storm's addresses (its 198.51.100.x start at .20): a storm that got that
    // far before the kill would ban it in sshd for 600 s, and its element would outlive the
    // short ban.
    const SHORT_ADDR: &str = "198.51.100.7";
    const STORM_V6: usize = 30_000;
    const KILL_AFTER: usize = 1500;
    let t0 = Instant::now();
    let mut lab = Lab::new(test);
    configure(
        &mut lab,
        &sshd_override(1, "\"10m\"", ""),
        &[(
            "short.toml",
            fake_jail("short", 1, &format!("\"{SHORT_S}s\"")),
        )],
        "",
    );
    let pid = launch(&mut lab, "syslog2ban");

    // The short ban, just before the storm, so the kill comes before it expires. It starts
    // between `before_short` and `short_banned`.
    let before_short = Instant::now();
    let v = ctl_ok(&lab, &["ban", "short", SHORT_ADDR]);
    let short_banned = Instant::now();
    assert_eq!(v["result"], "done", "{v}");
    wait_log(
        &lab,
        "syslog2ban",
        &format!("Banned jail=short address={SHORT_ADDR} "),
        "manual ban short",
    );

    let python = lab::tool("python3").display().to_string();
    let port = SYSLOG_TCP_PORT.to_string();
    let n6 = STORM_V6.to_string();
    let srv = lab.srv.clone();
    lab.spawn(
        "storm",
        &srv,
        &[python.as_str(), "-c", STORM_PY, port.as_str(), n6.as_str()],
        &[],
    );
    let storm_started = Instant::now();
    let mut seen = 0;
    let reached = lab::wait_until(Duration::from_secs(30), Duration::from_millis(5), || {
        seen = lab
            .log_of("syslog2ban")
            .matches("Banned jail=sshd ")
            .count();
        seen >= KILL_AFTER
    });
    if reached.is_none() {
        panic!("only {seen} `Banned jail=sshd` lines 30 s into the storm (want {KILL_AFTER} before the kill)");
    }
    assert!(lab::kill_pid(pid, "KILL"), "kill -9 {pid} failed");
    let killed_at = Instant::now();
    lab.note(&format!(
        "kill -9 {pid} {:.3?} into the storm, after {seen} sshd `Banned` lines were seen",
        storm_started.elapsed()
    ));
    if lab::wait_until(Duration::from_secs(5), Duration::from_millis(5), || {
        lab.exited("syslog2ban").is_some()
    })
    .is_none()
    {
        panic!("daemon pid {pid} still running 5 s after SIGKILL");
    }
    // At most this old at the kill.
    let short_age_at_kill = killed_at - before_short;
    // kill -9 runs no teardown: the table stays, with whatever the kernel already held.
    assert!(
        lab.table_exists(),
        "table inet {NFT_TABLE} gone after kill -9: only a clean stop deletes it"
    );

    // What the log reported before the kill (the file is complete: the process is dead).
    let log = lab.log_of("syslog2ban");
    let reported: BTreeSet<String> = banned_lines(&log)
        .into_iter()
        .filter(|(jail, _)| jail == "sshd")
        .map(|(_, a)| a)
        .collect();
    let reported4 = reported.iter().filter(|a| !a.contains(':')).count();
    lab.note(&format!(
        "reported before the kill: {} sshd bans ({} IPv4, {} IPv6)",
        reported.len(),
        reported4,
        reported.len() - reported4
    ));
    assert!(reported.len() >= KILL_AFTER, "{} reported", reported.len());

    // The storm client must be done (it sees the connection reset) before the restart.
    if lab::wait_until(Duration::from_secs(20), POLL, || {
        lab.exited("storm").is_some()
    })
    .is_none()
    {
        panic!("storm client still running 20 s after the daemon was killed");
    }
    let storm = lab.log_of("storm");
    lab.note(&format!("storm client: {}", storm.trim()));
    let storm_total = STORM_V6 + (254 + 235).min(STORM_V6 / 8);
    assert!(
        reported.len() < storm_total,
        "the kill came after the whole storm was banned ({} of {storm_total}): not a kill mid-storm",
        reported.len()
    );
    wait_no_nft_children(&lab);
    let kernel_at_kill = all_elements(&lab).len();

    // The crash state on disk.
    let crashed = read_db(&lab);
    let short_in_db = !crashed.bans_of(SHORT_ADDR).is_empty();
    lab.note(&format!(
        "after kill -9: {kernel_at_kill} elements in the kernel's sets; store: {} active rows, {} history rows; \
         short ban ({SHORT_S}s, at most {:.2?} old at the kill) {}",
        crashed.bans.len(),
        crashed.history.len(),
        short_age_at_kill,
        if short_in_db { "still stored" } else { "already gone" }
    ));
    if short_age_at_kill + Duration::from_millis(100) < Duration::from_secs(SHORT_S) {
        assert!(
            short_in_db,
            "the short ban was killed {short_age_at_kill:.2?} into its {SHORT_S}s: its row should still be in the store"
        );
    }
    let crashed_set = crashed.ban_addresses();
    let lost: Vec<&String> = reported.difference(&crashed_set).collect();
    assert!(
        lost.is_empty(),
        "{} address(es) logged `Banned` before kill -9 are not in the store's bans table, e.g. {:?}",
        lost.len(),
        lost.iter().take(10).collect::<Vec<_>>()
    );

    // Until the short ban is over: the kernel drops it by its timeout (the table is still
    // there after kill -9), and its stored deadline is then past too.
    if lab::wait_until(Duration::from_secs(SHORT_S + 5), POLL, || {
        element(&lab, SHORT_ADDR).is_none()
            && short_banned.elapsed() > Duration::from_secs(SHORT_S) + Duration::from_millis(200)
    })
    .is_none()
    {
        panic!(
            "{SHORT_ADDR} still in banned4 {:.2?} after its {SHORT_S}s ban\n{}",
            short_banned.elapsed(),
            lab.list_set("banned4").describe()
        );
    }

    // Restart on an empty firewall: everything in nft afterwards came from the store.
    let del = nft_in_server(&lab, &["delete", "table", "inet", NFT_TABLE]);
    assert!(del.success(), "{}", del.describe());
    assert!(!lab.table_exists());
    let restart = Instant::now();
    launch(&mut lab, "syslog2ban-2");
    let ready = restart.elapsed();
    let log2 = lab.log_of("syslog2ban-2");
    let restored = restored_count(&log2).unwrap_or_else(|| {
        panic!("no `Ban store read restored=N` in the restarted daemon's log\n{log2}")
    });

    let store = read_db(&lab);
    let stored = store.ban_addresses();
    let mut in_nft = BTreeMap::new();
    let took = lab::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
        in_nft = all_elements(&lab);
        stored.iter().all(|a| in_nft.contains_key(a))
    });
    let took = took.map(|_| restart.elapsed()).unwrap_or_else(|| {
        let missing: Vec<&String> = stored.iter().filter(|a| !in_nft.contains_key(*a)).take(10).collect();
        panic!(
            "not every stored ban back in nft 30 s after the restart: {} of {} present, missing e.g. {missing:?}",
            stored.iter().filter(|a| in_nft.contains_key(*a)).count(),
            stored.len()
        )
    });

    let extra: BTreeSet<&String> = stored.difference(&reported).collect();
    lab.note(&format!(
        "restart: ready (table + listener + control) after {ready:.2?}, all {} stored bans in nft after {took:.2?}; \
         reported {} / restored {restored} / stored {} / extra (stored, not reported) {} / nft elements {}",
        stored.len(),
        reported.len(),
        stored.len(),
        extra.len(),
        in_nft.len()
    ));

    // Store: every reported ban; the short one gone; nothing expired left.
    let missing: Vec<&String> = reported.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} reported ban(s) missing from the store after the restart, e.g. {:?}",
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    );
    assert!(
        store.bans_of(SHORT_ADDR).is_empty(),
        "the expired short ban is still in the store after the restart: {:?}",
        store.bans_of(SHORT_ADDR)
    );
    for b in &store.bans {
        let expires = b["expires"]
            .as_i64()
            .unwrap_or_else(|| panic!("sshd ban without expiry: {b}"));
        let started = b["started"].as_i64().expect("started");
        assert_eq!(
            expires - started,
            (BANTIME_S * 1000) as i64,
            "stored bantime: {b}"
        );
        assert!(expires > store.now_ms, "expired row kept: {b}");
        assert_eq!(b["jail"], "sshd", "{b}");
    }
    assert_eq!(
        restored,
        stored.len(),
        "`Ban store read restored=N` should count the stored active bans"
    );
    for a in &extra {
        assert!(
            crashed_set.contains(*a),
            "{a} is stored now but was not at the kill: a ban appeared from nowhere"
        );
    }

    // nft: every reported (and every stored) address, with a timeout of at most the bantime.
    let mut bad = Vec::new();
    for a in &stored {
        let e = &in_nft[a];
        let ok = matches!((e.timeout, e.expires), (Some(t), Some(x)) if t > 0 && t <= BANTIME_S && x > 0 && x <= t);
        if !ok {
            bad.push(format!("{e:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} restored element(s) without a timeout in (0, {BANTIME_S}] s, e.g. {:?}",
        bad.len(),
        bad.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        !in_nft.contains_key(SHORT_ADDR),
        "the expired short ban was restored into nft: {:?}",
        in_nft.get(SHORT_ADDR)
    );
    let unexpected: Vec<&String> = in_nft
        .keys()
        .filter(|a| !stored.contains(*a))
        .take(10)
        .collect();
    assert!(
        unexpected.is_empty(),
        "nft holds addresses the store does not: {unexpected:?}"
    );
    let max_left = stored
        .iter()
        .filter_map(|a| in_nft[a].timeout)
        .max()
        .unwrap_or(0);
    let min_left = stored
        .iter()
        .filter_map(|a| in_nft[a].timeout)
        .min()
        .unwrap_or(0);
    lab.note(&format!(
        "restored timeouts between {min_left} s and {max_left} s (bantime {BANTIME_S} s)"
    ));

    // The daemon agrees.
    let listed = banned(&lab);
    let listed_set: BTreeSet<String> = listed.iter().map(|b| b.address.clone()).collect();
    assert_eq!(listed.len(), stored.len(), "`banned --json` count vs store");
    assert_eq!(listed_set, stored, "`banned --json` vs store");
    assert!(listed
        .iter()
        .all(|b| b.jail == "sshd" && b.remaining.is_some_and(|r| r > 0 && r <= BANTIME_S)));
    lab.assert_running("syslog2ban-2");
    lab.note(&format!("done in {:.2?}", t0.elapsed()));
}

/// `bantime = -1`: an element without timeout, removed with the table on a clean stop and put
/// back, still without timeout, on start.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn permanent_ban_survives_restart() {
    let test = "permanent_ban_survives_restart";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let t0 = Instant::now();
    let mut lab = Lab::new(test);
    configure(&mut lab, &sshd_override(2, "-1", ""), &[], "");
    launch(&mut lab, "syslog2ban");
    let a4 = "203.0.113.50";
    let a6 = "2001:db8:2::50";
    lab.send_frames(&[sshd_failure(a4), sshd_failure(a4)]);
    lab.send_frames(&[sshd_failure(a6), sshd_failure(a6)]);
    for a in [a4, a6] {
        let e = wait_element(&lab, a, "2 failures at maxretry 2");
        assert_eq!(e.timeout, None, "permanent ban of {a} has a timeout: {e:?}");
        let l = wait_listed(&lab, a, "sshd", "permanent ban");
        assert_eq!(
            l.remaining, None,
            "permanent ban listed with time left: {l:?}"
        );
    }
    wait_log(
        &lab,
        "syslog2ban",
        &format!("Banned jail=sshd address={a6} "),
        "ban of {a6}",
    );
    assert!(
        lab.log_of("syslog2ban").contains("bantime=permanent"),
        "the Banned line should say bantime=permanent\n{}",
        lab.log_of("syslog2ban")
    );
    let db = read_db(&lab);
    for a in [a4, a6] {
        let rows = db.bans_of(a);
        assert_eq!(rows.len(), 1, "{a}: {rows:?}");
        assert!(
            rows[0]["expires"].is_null(),
            "stored permanent ban has an expiry: {:?}",
            rows[0]
        );
    }
    lab.note("both permanent bans in nft without timeout and stored with expires NULL");
    let status = ctl_ok(&lab, &["status"]);
    let local = &status["targets"][0];
    assert_eq!(local["target"], "local", "{status}");
    assert!(
        local["netlink_batches"].as_u64() >= Some(1) && local["errors"] == 0,
        "the bans should have gone to the kernel over netlink, without errors: {local}"
    );

    stop_clean(&mut lab, "syslog2ban");
    lab.note("clean stop: table gone");

    let restart = Instant::now();
    launch(&mut lab, "syslog2ban-2");
    for a in [a4, a6] {
        let e = wait_element(&lab, a, "restart");
        assert_eq!(
            e.timeout, None,
            "restored permanent ban of {a} has a timeout: {e:?}"
        );
        let l = wait_listed(&lab, a, "sshd", "restart");
        assert_eq!(l.remaining, None, "{l:?}");
    }
    assert_eq!(restored_count(&lab.log_of("syslog2ban-2")), Some(2));
    lab.note(&format!(
        "both back without timeout {:.2?} after the restart",
        restart.elapsed()
    ));
    assert_eq!(all_elements(&lab).len(), 2);
    lab.assert_running("syslog2ban-2");
    lab.note(&format!("done in {:.2?}", t0.elapsed()));
}

/// Recidive over three jails with a restart between the second and the third ban: the
/// history is durable, so the third ban earns `recidive` (1 h), which survives another restart.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn recidive_after_bans_in_three_jails_survives_restart() {
    let test = "recidive_after_bans_in_three_jails_survives_restart";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let t0 = Instant::now();
    let mut lab = Lab::new(test);
    configure(
        &mut lab,
        &sshd_override(1, "\"5s\"", ""),
        &[
            ("fake2.toml", fake_jail("fake2", 1, "\"5s\"")),
            ("fake3.toml", fake_jail("fake3", 1, "\"5s\"")),
        ],
        "[recidive]\nenabled = true\nmaxretry = 3\nfindtime = \"1d\"\nbantime = \"1h\"\n",
    );
    launch(&mut lab, "syslog2ban");
    let a = "203.0.113.60";
    let bystander = "203.0.113.61";

    lab.send_frames(&[sshd_failure(a)]);
    wait_listed(&lab, a, "sshd", "ban 1 (sshd)");
    lab.send_frames(&[fake_failure("fake2", a), fake_failure("fake2", bystander)]);
    wait_listed(&lab, a, "fake2", "ban 2 (fake2)");
    wait_listed(&lab, bystander, "fake2", "bystander's one ban");
    let b = bans_of(&lab, a);
    assert!(
        !b.iter().any(|x| x.jail == "recidive"),
        "recidive after only 2 bans (maxretry 3): {b:?}"
    );
    let e = wait_element(&lab, a, "bans 1-2");
    assert!(e.timeout.is_some_and(|t| t <= 5), "{e:?}");
    lab.note(&format!("banned in sshd and fake2: {b:?}"));

    stop_clean(&mut lab, "syslog2ban");
    launch(&mut lab, "syslog2ban-2");
    let history = read_db(&lab).history_of(a).len();
    assert_eq!(history, 2, "history rows of {a} after the restart");

    lab.send_frames(&[fake_failure("fake3", a), fake_failure("fake3", bystander)]);
    wait_listed(&lab, a, "fake3", "ban 3 (fake3)");
    let r = wait_listed(
        &lab,
        a,
        "recidive",
        "3 bans in 3 jails within findtime, one before a restart",
    );
    assert!(
        r.remaining.is_some_and(|s| (3590..=3600).contains(&s)),
        "recidive ban should have ~1h left: {r:?}"
    );
    wait_log(
        &lab,
        "syslog2ban-2",
        &format!("Banned jail=recidive address={a} "),
        "recidive ban logged",
    );
    let mut e = None;
    if lab::wait_until(SETTLE, POLL, || {
        e = element(&lab, a);
        e.as_ref().and_then(|e| e.timeout).is_some_and(|t| t > 5)
    })
    .is_none()
    {
        panic!("nft timeout of {a} not raised to the recidive bantime: {e:?}");
    }
    let e = e.expect("element");
    assert!(
        e.timeout.is_some_and(|t| (3590..=3600).contains(&t)),
        "nft timeout of the recidive ban should be ~3600 s: {e:?}"
    );
    assert!(
        !bans_of(&lab, bystander)
            .iter()
            .any(|x| x.jail == "recidive"),
        "the bystander has 2 bans only: {:?}",
        bans_of(&lab, bystander)
    );
    lab.note(&format!("recidive: {r:?}, nft {e:?}"));

    // And the recidive ban itself survives a crash.
    stop(&mut lab, "syslog2ban-2", "KILL");
    wait_no_nft_children(&lab);
    let del = nft_in_server(&lab, &["delete", "table", "inet", NFT_TABLE]);
    assert!(del.success(), "{}", del.describe());
    launch(&mut lab, "syslog2ban-3");
    let r = wait_listed(&lab, a, "recidive", "after kill -9 and restart");
    assert!(
        r.remaining.is_some_and(|s| (3580..=3600).contains(&s)),
        "{r:?}"
    );
    let e = wait_element(&lab, a, "recidive ban restored");
    assert!(
        e.timeout.is_some_and(|t| (3580..=3600).contains(&t)),
        "restored recidive element: {e:?}"
    );
    lab.note(&format!("after kill -9 + restart: {r:?}, nft {e:?}"));
    lab.assert_running("syslog2ban-3");
    lab.note(&format!("done in {:.2?}", t0.elapsed()));
}

/// `[jail.sshd.increment]` factor 1, bantime 2 s: 2 s, then 4 s, then 8 s, with restarts
/// (clean, then kill -9) between the bans.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn bantime_increment_grows_across_restarts() {
    let test = "bantime_increment_grows_across_restarts";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let t0 = Instant::now();
    let mut lab = Lab::new(test);
    configure(
        &mut lab,
        &sshd_override(
            1,
            "\"2s\"",
            "\n[jail.sshd.increment]\nenabled = true\nfactor = 1\nmaxtime = \"1h\"\n",
        ),
        &[],
        "",
    );
    launch(&mut lab, "syslog2ban");
    let a = "203.0.113.70";

    // Ban, wait until it is over (in nft and in the daemon), return the element seen.
    let ban_and_expire =
        |lab: &Lab, label: &str, n: u32, want: std::ops::RangeInclusive<u64>| -> Element {
            let before = lab.log_of(label).matches("Banned jail=sshd").count();
            lab.send_frames(&[sshd_failure(a)]);
            let e = wait_element(lab, a, &format!("ban {n}"));
            let banned_at = Instant::now();
            lab.note(&format!("ban {n}: {e:?}"));
            assert!(
                e.timeout.is_some_and(|t| want.contains(&t)),
                "ban {n} of {a}: nft timeout should be in {want:?} s, got {e:?}\n{}",
                lab.log_of(label)
            );
            if lab::wait_until(SETTLE, POLL, || {
                lab.log_of(label).matches("Banned jail=sshd").count() > before
            })
            .is_none()
            {
                panic!("ban {n}: no Banned line");
            }
            let limit = Duration::from_secs(want.end() + 3);
            if lab::wait_until(limit, POLL, || {
                element(lab, a).is_none() && bans_of(lab, a).is_empty()
            })
            .is_none()
            {
                panic!(
                    "ban {n} not over {limit:?} after it was seen: nft {:?}, banned {:?}",
                    element(lab, a),
                    bans_of(lab, a)
                );
            }
            lab.note(&format!(
                "ban {n} over {:.2?} after it was seen",
                banned_at.elapsed()
            ));
            e
        };

    let e1 = ban_and_expire(&lab, "syslog2ban", 1, 1..=2);
    stop_clean(&mut lab, "syslog2ban");
    launch(&mut lab, "syslog2ban-2");
    let h = read_db(&lab).history_of(a).len();
    assert_eq!(h, 1, "history rows after restart 1");
    let e2 = ban_and_expire(&lab, "syslog2ban-2", 2, 3..=4);
    stop(&mut lab, "syslog2ban-2", "KILL");
    wait_no_nft_children(&lab);
    launch(&mut lab, "syslog2ban-3");
    let db = read_db(&lab);
    let h = db.history_of(a);
    assert_eq!(h.len(), 2, "history rows after restart 2: {h:?}");
    let send_at = Instant::now();
    lab.send_frames(&[sshd_failure(a)]);
    let e3 = wait_element(&lab, a, "ban 3");
    assert!(
        e3.timeout.is_some_and(|t| (7..=8).contains(&t)),
        "ban 3 of {a}: nft timeout should be 7-8 s, got {e3:?}"
    );
    let l = wait_listed(&lab, a, "sshd", "ban 3");
    assert!(l.remaining.is_some_and(|r| (6..=8).contains(&r)), "{l:?}");
    lab.note(&format!(
        "timeouts: {:?} s -> {:?} s -> {:?} s (ban 3 seen {:.2?} after its failure was sent)",
        e1.timeout,
        e2.timeout,
        e3.timeout,
        send_at.elapsed()
    ));
    lab.assert_running("syslog2ban-3");
    lab.note(&format!("done in {:.2?}", t0.elapsed()));
}

/// IPv6 prefix counting (`prefix6 = 64`): failures from five addresses of one /64 ban the
/// /64 (in the interval set `banned6net`), the attacker's other address in that /64 is dropped,
/// and an address of another /64 still connects.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn ipv6_failures_counted_per_64_ban_the_prefix_only() {
    let test = "ipv6_failures_counted_per_64_ban_the_prefix_only";
    if !lab::preflight(test, &["ip", "nft", "ss", "python3", "kill", "nc"]) {
        return;
    }
    let mut lab = Lab::new(test);
    // A second /64 on the link, so "another /64" is reachable without routing.
    for (ns, address) in [
        (lab.srv.clone(), "2001:db8:5101::10/64"),
        (lab.atk.clone(), "2001:db8:5101::66/64"),
    ] {
        let out = lab.exec(
            &ns,
            &["ip", "addr", "add", address, "dev", "eth0", "nodad"],
            SETTLE,
        );
        assert!(out.success(), "{}", out.describe());
    }
    configure(
        &mut lab,
        &sshd_override(5, "\"10m\"", "prefix6 = 64\n"),
        &[],
        "",
    );
    launch(&mut lab, "syslog2ban");
    let srv = lab.srv.clone();
    lab.spawn("listener", &srv, &["nc", "-6", "-lk", "8080"], &[]);
    let connects = |lab: &Lab, src: &str, dst: &str| {
        lab.exec(
            &lab.atk,
            &["nc", "-z", "-w2", "-s", src, dst, "8080"],
            Duration::from_secs(10),
        )
        .success()
    };
    assert!(
        lab::wait_until(SETTLE, POLL, || connects(
            &lab,
            "2001:db8:5100::66",
            "2001:db8:5100::10"
        ))
        .is_some(),
        "listener not reachable before any ban"
    );

    // Four addresses of 2001:db8:5100::/64 fail once each: below maxretry 5.
    let failures: Vec<String> = (1..=4)
        .map(|i| sshd_failure(&format!("2001:db8:5100::a{i}")))
        .collect();
    lab.send_frames(&failures);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        element(&lab, "2001:db8:5100::/64").is_none(),
        "banned before the fifth failure"
    );
    // Another /64 fails too, but only twice.
    lab.send_frames(&[
        sshd_failure("2001:db8:5101::b1"),
        sshd_failure("2001:db8:5101::b2"),
    ]);
    // The fifth address of the first /64 crosses maxretry for the whole prefix.
    lab.send_frames(&[sshd_failure("2001:db8:5100::a5")]);
    let e = wait_element(&lab, "2001:db8:5100::/64", "5 failures within one /64");
    assert!(e.timeout.is_some_and(|t| t > 0 && t <= 600), "{e:?}");
    wait_listed(&lab, "2001:db8:5100::/64", "sshd", "prefix ban");
    assert!(
        element(&lab, "2001:db8:5101::/64").is_none(),
        "the other /64 must not be banned"
    );

    assert!(
        !connects(&lab, "2001:db8:5100::66", "2001:db8:5100::10"),
        "an address of the banned /64 still connects"
    );
    assert!(
        connects(&lab, "2001:db8:5101::66", "2001:db8:5101::10"),
        "an address of another /64 is dropped"
    );
    lab.note("the /64 is dropped, the other /64 connects");
}
