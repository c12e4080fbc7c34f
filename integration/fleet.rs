//! Remote bans over SSH against real sshd and nft on two servers (see `fleet_lab.rs`).

use std::fs;
use std::time::{Duration, Instant};

use crate::fleet_lab::{
    keygen, Fleet, ATTACKER, ATTACKER2, A_IP, BANTIME_SECS, B_IP, PORT, RECONCILE, TOOLS,
};
use crate::lab::{preflight, wait_until, NFT_TABLE};

/// Acceptance 1 and 4: `origin` bans on A only, `all` on A and B, the attacker's connection
/// to the banned server is dropped, and a target whose host key does not match is refused
/// with an error naming it.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn remote_bans_follow_placement_and_refuse_wrong_host_keys() {
    if !preflight("remote_bans_follow_placement", TOOLS) {
        return;
    }
    let mut f = Fleet::new("rplace");
    // Target c is B's address with a known_hosts that holds some other key (and a table of
    // its own: two targets managing one table on a host are refused at load).
    let wrong = f.lab.dir.join("wrong_known_hosts");
    let other_key = f.lab.dir.join("other_host_key");
    keygen(&other_key, "not-b");
    let other_pub = fs::read_to_string(other_key.with_extension("pub")).unwrap();
    fs::write(&wrong, format!("[{B_IP}]:{PORT} {}", other_pub.trim())).unwrap();
    f.start_daemon(&format!(
        "[target.c]\naddress = \"{B_IP}\"\nport = {PORT}\nidentity = \"{}\"\nknown_hosts = \"{}\"\n\
         ssh_config = \"{}\"\nconnect_timeout = \"3s\"\ntable = \"viac\"\n",
        f.client_key.display(),
        wrong.display(),
        f.lab.dir.join("ssh_config").display()
    ));
    f.wait_connected("a", Duration::from_secs(20));
    f.wait_connected("b", Duration::from_secs(20));
    assert!(f.connects(ATTACKER, A_IP), "A reachable before any ban");

    // placement = ["origin"]: the failures came from A.
    f.failures_from_a("sshd", ATTACKER);
    let took = f
        .wait_has(&f.a, ATTACKER, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{ATTACKER} not in A's set: {:?}", f.remote_set(&f.a)));
    f.lab.note(&format!("origin ban on A after {took:.2?}"));
    assert!(
        !f.connects(ATTACKER, A_IP),
        "A must drop the banned attacker"
    );
    assert!(f.connects(ATTACKER2, A_IP), "A must still accept others");
    // Let a reconcile pass: B must still not have it.
    std::thread::sleep(RECONCILE + Duration::from_millis(500));
    assert!(!f.has(&f.b, ATTACKER), "origin placement leaked to B");
    assert!(
        f.connects(ATTACKER, B_IP),
        "B must not drop an attacker banned on A only"
    );
    // The collector bans nothing locally (placement has no "local").
    assert!(!f.lab.set_contains("banned4", ATTACKER));

    // By hand in the origin-placed jail: refused without the attacked host instead of
    // silently banning on the collector only; with --origin it lands on that host.
    const BY_HAND: &str = "198.51.100.77";
    let refused = f.lab.ctl(&["ban", "sshd", BY_HAND]);
    assert!(
        refused.status.is_some_and(|s| !s.success()) && refused.stderr.contains("--origin"),
        "a manual ban in an origin-placed jail needs --origin: {refused:?}"
    );
    let placed = f.lab.ctl(&["ban", "sshd", BY_HAND, "--origin", A_IP]);
    assert!(placed.status.is_some_and(|s| s.success()), "{placed:?}");
    assert!(
        f.wait_has(&f.a, BY_HAND, Duration::from_secs(10)).is_some(),
        "--origin A did not reach A: {:?}",
        f.remote_set(&f.a)
    );
    assert!(!f.has(&f.b, BY_HAND), "--origin A reached B");

    // placement = ["all"]: both servers.
    f.failures_from_a("fleetd", ATTACKER2);
    assert!(f
        .wait_has(&f.a, ATTACKER2, Duration::from_secs(10))
        .is_some());
    assert!(
        f.wait_has(&f.b, ATTACKER2, Duration::from_secs(10))
            .is_some(),
        "all placement did not reach B: {:?}",
        f.remote_set(&f.b)
    );
    assert!(
        !f.connects(ATTACKER2, B_IP),
        "B must drop the fleet-wide ban"
    );

    // Target c: the wrong host key is refused, reported, and never accepted.
    let c = f.target_status("c");
    assert_eq!(c["remote"]["connected"], false, "{c}");
    let error = c["remote"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("target c") && error.contains("host key"),
        "status must name the target and the host key problem: {c}"
    );
    let log = f.lab.log_of("syslog2ban");
    assert!(
        log.contains("target c: host key of root@198.51.100.20:2222 is unknown or has changed"),
        "daemon log must name the target:\n{log}"
    );
    assert_eq!(
        fs::read_to_string(&wrong).unwrap().lines().count(),
        1,
        "known_hosts must not be changed"
    );
}

/// `placement = ["origin"]`: an attacker banned on A who goes on to B offends there and is
/// banned on B too (a jail that bans where the attack happened must not leave the next
/// server open for the first ban's bantime); A keeps its ban, and a restarted collector
/// holds both (a reconcile would otherwise remove the one it forgot), and a ban by hand
/// where it was told to go.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn an_attacker_banned_on_one_server_is_banned_on_the_next_it_attacks() {
    if !preflight("remote_widen", TOOLS) {
        return;
    }
    let mut f = Fleet::with_ban_on_a("rwiden");
    f.wait_connected("b", Duration::from_secs(20));
    assert!(!f.has(&f.b, ATTACKER), "origin placement leaked to B");
    assert!(f.connects(ATTACKER, B_IP), "B open before the attack on it");

    f.failures_from_b("sshd", ATTACKER);
    let took = f
        .wait_has(&f.b, ATTACKER, Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "{ATTACKER} not banned on B after attacking it: {:?}\n{}",
                f.remote_set(&f.b),
                f.lab.log_of("syslog2ban")
            )
        });
    f.lab.note(&format!("ban widened to B after {took:.2?}"));
    assert!(!f.connects(ATTACKER, B_IP), "B must drop the attacker now");
    assert!(f.has(&f.a, ATTACKER), "A lost its ban");
    let log = f.lab.log_of("syslog2ban");
    assert!(
        log.contains(&format!(
            "Banned jail=sshd address={ATTACKER} origin={B_IP}"
        )),
        "the widening is logged as a ban from B:\n{log}"
    );

    // A ban by hand told to go to B only (not where the jail would place it).
    const BY_HAND: &str = "198.51.100.78";
    let placed = f.lab.ctl(&["ban", "sshd", BY_HAND, "--place", "target:b"]);
    assert!(placed.status.is_some_and(|s| s.success()), "{placed:?}");
    assert!(f.wait_has(&f.b, BY_HAND, Duration::from_secs(10)).is_some());

    // Restarted: both servers keep the widened ban, and B the one by hand, through the
    // reconciles that follow.
    let pid = f.lab.pid_of("syslog2ban").expect("running");
    assert!(crate::lab::kill_pid(pid, "TERM"));
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
            f.lab.exited("syslog2ban").is_some()
        })
        .is_some(),
        "the collector did not stop"
    );
    f.lab.launch_daemon(
        "syslog2ban-again",
        crate::lab::Listener::Tcp,
        &crate::lab::DaemonOptions::default(),
    );
    f.wait_connected("a", Duration::from_secs(20));
    f.wait_connected("b", Duration::from_secs(20));
    std::thread::sleep(RECONCILE * 2 + Duration::from_millis(500));
    assert!(
        f.has(&f.a, ATTACKER) && f.has(&f.b, ATTACKER) && f.has(&f.b, BY_HAND),
        "after a restart both keep the bans: A {:?}, B {:?}\n{}",
        f.remote_set(&f.a),
        f.remote_set(&f.b),
        f.lab.log_of("syslog2ban-again")
    );
}

/// Acceptance 2: B is down while a fleet-wide ban is decided; A gets it at once, B gets it
/// after sshd is back, with the time that was left, not a fresh bantime.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn a_ban_decided_while_a_target_is_down_reaches_it_after_reconnect() {
    if !preflight("remote_outage", TOOLS) {
        return;
    }
    let mut f = Fleet::new("rdown");
    f.start_daemon("");
    f.wait_connected("a", Duration::from_secs(20));
    f.wait_connected("b", Duration::from_secs(20));
    let b = f.b.clone();
    f.take_down(&b);
    f.lab.note("B is down");

    let decided = Instant::now();
    f.failures_from_a("fleetd", ATTACKER);
    assert!(
        f.wait_has(&f.a, ATTACKER, Duration::from_secs(10))
            .is_some(),
        "A must get the ban while B is down"
    );
    // Long enough for the collector to notice B is gone and for the reconnects to fail.
    std::thread::sleep(Duration::from_secs(6));
    let status = f.target_status("b");
    assert_eq!(status["remote"]["connected"], false, "{status}");
    assert!(status["remote"]["last_error"].is_string(), "{status}");
    assert!(f.has(&f.a, ATTACKER), "A lost the ban during B's outage");

    f.start_sshd(&b, "sshd-b-again");
    let back = Instant::now();
    // Reconnect attempts are at most a reconcile interval apart; then a reconcile runs.
    let took = f
        .wait_has(&b, ATTACKER, RECONCILE * 3 + Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "ban not on B after it came back: {:?}\nstatus: {}",
                f.remote_set(&b),
                f.target_status("b")
            )
        });
    f.lab
        .note(&format!("ban reached B {took:.2?} after sshd came back"));
    let left = f
        .remote_set(&b)
        .into_iter()
        .find(|(a, _)| a == ATTACKER)
        .and_then(|(_, left)| left)
        .expect("the ban on B has a timeout");
    let elapsed = decided.elapsed().as_secs();
    assert!(
        left <= BANTIME_SECS - elapsed + 2 && left + elapsed + 10 >= BANTIME_SECS,
        "B got {left}s left; {elapsed}s after a {BANTIME_SECS}s ban it should be about {}",
        BANTIME_SECS - elapsed
    );
    assert!(back.elapsed() < Duration::from_secs(30));
    assert!(f.has(&f.a, ATTACKER));
}

/// Acceptance 3: an element deleted by hand comes back; a stray one is removed.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn reconcile_repairs_hand_made_drift() {
    if !preflight("remote_drift", TOOLS) {
        return;
    }
    let f = Fleet::with_ban_on_a("rdrift");

    let a = f.a.clone();
    f.nft(
        &a,
        &format!("delete element inet {NFT_TABLE} banned4 {{ {ATTACKER} }}"),
    );
    assert!(!f.has(&a, ATTACKER));
    let back = f
        .wait_has(&a, ATTACKER, RECONCILE * 2 + Duration::from_secs(3))
        .expect("reconcile must put the deleted ban back");
    f.lab
        .note(&format!("deleted element restored after {back:.2?}"));

    let stray = "198.51.100.99";
    f.nft(
        &a,
        &format!("add element inet {NFT_TABLE} banned4 {{ {stray} timeout 1h }}"),
    );
    assert!(f.has(&a, stray));
    let gone = wait_until(
        RECONCILE * 2 + Duration::from_secs(3),
        Duration::from_millis(50),
        || !f.has(&a, stray),
    )
    .expect("reconcile must remove the stray element");
    f.lab
        .note(&format!("stray element removed after {gone:.2?}"));
    assert!(f.has(&a, ATTACKER), "the real ban stays");
    let status = f.target_status("a");
    assert!(
        status["remote"]["reconciles"].as_u64() >= Some(3),
        "{status}"
    );
}

/// `user = "nlban"`, `sudo = true`: a ban account that may only run nft through sudo applies
/// and reconciles bans as root does.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn a_sudo_ban_account_applies_and_reconciles() {
    let mut tools = TOOLS.to_vec();
    tools.push("sudo");
    if !preflight("remote_sudo", &tools) {
        return;
    }
    let mut f = Fleet::new("rsudo");
    // A table of its own on A: the fleet's target `a` (root on the same host) reconciles
    // `syslog2ban` there and would take this target's bans out as strays.
    const TABLE: &str = "viasudo";
    let target = format!(
        "[target.s]\naddress = \"{A_IP}\"\nport = {PORT}\nuser = \"nlban\"\nsudo = true\nidentity = \"{}\"\n\
         table = \"{TABLE}\"\n\
         known_hosts = \"{}\"\nssh_config = \"{}\"\nreconcile_interval = \"{}s\"\n\n\
         [jail.viasudo]\nenabled = true\nprograms = [\"sudod\"]\n\
         failregex = ['^Failed password for \\S+ from <HOST> port \\d+ ssh2$']\n\
         maxretry = 3\nplacement = [\"target:s\"]\n",
        f.client_key.display(),
        f.known_hosts.display(),
        f.lab.dir.join("ssh_config").display(),
        RECONCILE.as_secs(),
    );
    f.start_daemon(&target);
    f.wait_connected("s", Duration::from_secs(20));
    f.failures_from_a("sudod", ATTACKER);
    let a = f.a.clone();
    let has = |f: &Fleet, within| {
        wait_until(within, Duration::from_millis(25), || {
            f.set_in(&a, TABLE)
                .iter()
                .any(|(address, _)| address == ATTACKER)
        })
    };
    assert!(
        has(&f, Duration::from_secs(10)).is_some(),
        "the ban did not reach A through sudo: {}",
        f.target_status("s")
    );
    f.nft(
        &a,
        &format!("delete element inet {TABLE} banned4 {{ {ATTACKER} }}"),
    );
    assert!(
        has(&f, RECONCILE * 2 + Duration::from_secs(3)).is_some(),
        "reconcile through sudo did not restore the ban"
    );
    let sshd_log = f.lab.log_of(&format!("sshd-{a}"));
    assert!(
        sshd_log.contains("Accepted publickey for nlban"),
        "the target must log in as nlban:\n{sshd_log}"
    );
}

/// Issue 16, acceptance 3: two collectors banning on one target never remove each other's
/// elements. A second collector configured onto the first one's table there refuses to touch
/// it (named in its status); with a table of its own there, both collectors' bans stay
/// through each other's reconciles.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn two_collectors_on_one_target_never_remove_each_others_bans() {
    if !preflight("two_collectors", TOOLS) {
        return;
    }
    let mut f = Fleet::with_ban_on_a("rtwo");

    let dir = f.lab.dir.clone();
    let first = fs::read_to_string(f.lab.config_dir().join("syslog2ban.toml")).unwrap();
    let socket = dir.join("ctl2.sock");
    let second = |shared: bool| {
        let text = first
            .replace(":5514", ":5516")
            .replace(
                &format!("table = \"{NFT_TABLE}\""),
                "table = \"second\"\ncollector = \"two\"",
            )
            .replace(
                &f.lab.control_socket().display().to_string(),
                &socket.display().to_string(),
            )
            .replace(
                &dir.join("state").display().to_string(),
                &dir.join("state2").display().to_string(),
            )
            .replace(
                "[target.a]\n",
                if shared {
                    "[target.a]\ntable = \"syslog2ban\"\n"
                } else {
                    "[target.a]\n"
                },
            );
        let path = dir.join(format!("second-{shared}.toml"));
        fs::write(
            &path,
            format!("conf_dir = \"{}\"\n{text}", f.lab.conf_d().display()),
        )
        .unwrap();
        path
    };
    let (shared, own) = (second(true), second(false));
    // Null while the second collector does not answer yet (its socket file can exist a
    // moment before it accepts): the waits below poll through that.
    let status_two = || {
        let out = crate::lab::run(
            crate::lab::command(crate::lab::DAEMON_BIN)
                .args(["status", "--json", "--socket"])
                .arg(&socket),
            Duration::from_secs(10),
        );
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    let target_a = |v: serde_json::Value| {
        v["targets"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["target"] == "a").cloned())
            .unwrap_or_default()
    };
    let from_a_to_second = |f: &Fleet, attacker: &str| f.failures_from_a_to("sshd", attacker, 5516);
    let in_table = |f: &Fleet, table: &str, addr: &str| {
        let out = f.lab.exec(
            &f.a,
            &["nft", "list", "set", "inet", table, "banned4"],
            Duration::from_secs(5),
        );
        out.success() && out.stdout.contains(addr)
    };

    // Pointed at the first collector's table: it refuses, says so, and touches nothing.
    let srv = f.lab.srv.clone();
    f.lab.spawn(
        "two-shared",
        &srv,
        &[
            crate::lab::DAEMON_BIN,
            "run",
            "--config",
            &shared.display().to_string(),
        ],
        &[("RUST_LOG", "info")],
    );
    let refused = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        socket.exists()
            && target_a(status_two())["remote"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("managed by collector"))
    });
    assert!(
        refused.is_some(),
        "the second collector should refuse the first one's table: {}\n{}",
        target_a(status_two()),
        f.lab.log_of("two-shared")
    );
    from_a_to_second(&f, ATTACKER2);
    std::thread::sleep(RECONCILE * 2 + Duration::from_millis(500));
    assert!(
        f.has(&f.a, ATTACKER),
        "the first collector's ban was removed"
    );
    assert!(
        !f.has(&f.a, ATTACKER2),
        "the refused collector changed the table"
    );
    let pid = f.lab.pid_of("two-shared").expect("running");
    assert!(crate::lab::kill_pid(pid, "TERM"));
    // Gone, with its state-dir lock, before the next one starts (its socket file may stay
    // behind a moment: the next one replaces it, and the waits below poll through that).
    assert!(
        wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
            f.lab.exited("two-shared").is_some()
        })
        .is_some(),
        "the refused collector did not stop\n{}",
        f.lab.log_of("two-shared")
    );

    // With its own table there: both collectors' bans stay through each other's reconciles.
    f.lab.spawn(
        "two-own",
        &srv,
        &[
            crate::lab::DAEMON_BIN,
            "run",
            "--config",
            &own.display().to_string(),
        ],
        &[("RUST_LOG", "info")],
    );
    assert!(
        wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            socket.exists() && target_a(status_two())["remote"]["connected"] == true
        })
        .is_some(),
        "{}",
        f.lab.log_of("two-own")
    );
    from_a_to_second(&f, ATTACKER2);
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            in_table(&f, "second", ATTACKER2)
        })
        .is_some(),
        "the second collector's ban did not land in its own table\n{}",
        f.lab.log_of("two-own")
    );
    std::thread::sleep(RECONCILE * 2 + Duration::from_millis(500));
    assert!(
        f.has(&f.a, ATTACKER),
        "the first collector's ban was removed"
    );
    assert!(
        in_table(&f, "second", ATTACKER2),
        "the second collector's ban was removed"
    );
    assert!(!in_table(&f, NFT_TABLE, ATTACKER2) && !in_table(&f, "second", ATTACKER));
    assert!(
        !f.connects(ATTACKER2, A_IP),
        "A must drop the second collector's ban"
    );
}

/// `[target.a] backend = "ipset"`: the ban reaches A's ipset sets over SSH (through A's
/// iptables, the attacker's connection to A is dropped while B still accepts it), and the
/// reconcile puts back an element deleted by hand and the rule of a flushed INPUT chain.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn an_ipset_target_gets_bans_over_ssh_and_is_reconciled() {
    let mut tools = TOOLS.to_vec();
    tools.extend(["ipset", "iptables"]);
    if !preflight("remote_ipset", &tools) {
        return;
    }
    let mut f = Fleet::new("ripset");
    f.target_a_extra = "backend = \"ipset\"\n".into();
    f.start_daemon("");
    f.wait_connected("a", Duration::from_secs(20));
    let a = f.a.clone();
    let set = format!("{NFT_TABLE}4");
    let rules = f.exec_ok(&a, &["iptables", "-w", "-S", "INPUT"]);
    assert!(rules.contains(&format!("--match-set {set} src")), "{rules}");

    f.failures_from_a("sshd", ATTACKER);
    let in_set = |f: &Fleet| {
        f.lab
            .exec(
                &a,
                &["ipset", "test", &set, ATTACKER],
                Duration::from_secs(5),
            )
            .success()
    };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            in_set(&f)
        })
        .is_some(),
        "{ATTACKER} never reached A's ipset set: {}",
        f.target_status("a")
    );
    assert!(!f.connects(ATTACKER, A_IP), "the attacker still reaches A");
    assert!(f.connects(ATTACKER, B_IP), "B was not part of this ban");

    f.exec_ok(&a, &["ipset", "del", &set, ATTACKER]);
    assert!(
        wait_until(
            RECONCILE * 2 + Duration::from_secs(3),
            Duration::from_millis(50),
            || { in_set(&f) }
        )
        .is_some(),
        "the reconcile did not put the deleted element back"
    );
    f.exec_ok(&a, &["iptables", "-w", "-F", "INPUT"]);
    assert!(f.connects(ATTACKER, A_IP), "the flush opened A");
    assert!(
        wait_until(
            RECONCILE * 2 + Duration::from_secs(3),
            Duration::from_millis(200),
            || { !f.connects(ATTACKER, A_IP) }
        )
        .is_some(),
        "the reconcile did not put the rule back: {}",
        f.target_status("a")
    );
}

/// `[target.a] backend = "hosts-deny"`: the ban becomes an entry in A's tcp-wrappers file,
/// written over SSH; A's sshd (linked with libwrap) then refuses the attacker before its
/// banner while B still greets him, and an emptied file gets the entry back at the next
/// reconcile.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn a_hosts_deny_target_gets_bans_over_ssh_and_is_reconciled() {
    if !preflight("remote_hosts_deny", TOOLS) {
        return;
    }
    let mut f = Fleet::new("rdeny");
    let a = f.a.clone();
    // A's sshd reads /etc/hosts.deny; in its mount namespace that is a symlink to this file.
    let srv_a = f.lab.dir.join("srv-a");
    let deny = srv_a.join("wrap/hosts.deny");
    fs::create_dir_all(deny.parent().expect("parent")).expect("mkdir wrap");
    fs::write(&deny, "# A's own line\n").expect("write hosts.deny");
    fs::write(
        srv_a.join("etc/hosts-deny-target"),
        deny.to_str().expect("utf-8"),
    )
    .expect("write target");
    f.take_down(&a);
    f.start_sshd(&a, "sshd-a2");
    f.target_a_extra = format!(
        "backend = \"hosts-deny\"\nhosts_deny = \"{}\"\n",
        deny.display()
    );
    f.start_daemon("");
    f.wait_connected("a", Duration::from_secs(20));

    let banner = |f: &Fleet, server: &str| {
        let out = f.lab.exec(
            &f.lab.atk,
            &["nc", "-w", "2", "-s", ATTACKER, server, &PORT.to_string()],
            Duration::from_secs(6),
        );
        out.stdout.lines().next().unwrap_or_default().to_string()
    };
    assert!(
        banner(&f, A_IP).starts_with("SSH-2.0-"),
        "A greets before a ban"
    );
    f.failures_from_a("sshd", ATTACKER);
    let entry = format!("ALL: {ATTACKER}");
    let listed = || {
        fs::read_to_string(&deny)
            .unwrap_or_default()
            .lines()
            .any(|l| l == entry)
    };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), listed).is_some(),
        "no entry on A: {}",
        f.target_status("a")
    );
    assert!(
        fs::read_to_string(&deny)
            .expect("read")
            .starts_with("# A's own line\n"),
        "A's own line stays"
    );
    assert_eq!(banner(&f, A_IP), "", "A's sshd greeted the banned attacker");
    assert!(
        banner(&f, B_IP).starts_with("SSH-2.0-"),
        "B was not part of this ban"
    );

    fs::write(&deny, "# A's own line\n").expect("empty the file");
    assert!(
        wait_until(
            RECONCILE * 2 + Duration::from_secs(3),
            Duration::from_millis(50),
            listed
        )
        .is_some(),
        "the reconcile did not put the entry back: {}",
        f.target_status("a")
    );
}

/// `[target.a] backend = "command"`: the ban runs the operator's program on A over SSH (the
/// attacker is dropped there, B still accepts him); a ban decided while A is down runs once
/// A is back.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn a_command_target_runs_its_program_over_ssh_and_retries_while_down() {
    use std::os::unix::fs::PermissionsExt as _;
    if !preflight("remote_command", TOOLS) {
        return;
    }
    let mut f = Fleet::new("rcmd");
    let a = f.a.clone();
    let script = f.lab.dir.join("a-ban.sh");
    fs::write(&script, crate::lab::NFT_BAN_SCRIPT).expect("write script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let s = script.display();
    f.target_a_extra = format!(
        "backend = \"command\"\nstart = [\"{s}\", \"start\"]\n\
         ban = [\"{s}\", \"ban\", \"<ip>\"]\nunban = [\"{s}\", \"unban\", \"<ip>\"]\n"
    );
    f.start_daemon("");
    let in_set = |f: &Fleet, address: &str| {
        f.lab
            .exec(
                &a,
                &["nft", "list", "set", "inet", "cmdtest", "banned"],
                Duration::from_secs(5),
            )
            .stdout
            .contains(address)
    };
    f.failures_from_a("sshd", ATTACKER);
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            in_set(&f, ATTACKER)
        })
        .is_some(),
        "the program never banned {ATTACKER} on A: {}",
        f.target_status("a")
    );
    assert!(!f.connects(ATTACKER, A_IP), "the attacker still reaches A");
    assert!(f.connects(ATTACKER, B_IP), "B was not part of this ban");
    assert_eq!(f.target_status("a")["backend"], "ssh+command");

    // A goes away; a ban decided meanwhile cannot start there, and runs once A is back.
    f.take_down(&a);
    f.failures_from_a("sshd", ATTACKER2);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        f.target_status("a")["errors"].as_u64() >= Some(1),
        "the failed start is counted: {}",
        f.target_status("a")
    );
    f.start_sshd(&a, "sshd-a2");
    assert!(
        wait_until(Duration::from_secs(40), Duration::from_millis(100), || {
            in_set(&f, ATTACKER2)
        })
        .is_some(),
        "the ban decided while A was down never ran there: {}",
        f.target_status("a")
    );
    assert!(
        !f.connects(ATTACKER2, A_IP),
        "the second attacker still reaches A"
    );
}

/// `kill_connections` on a target: the attacker's open session to A's sshd is cut by `ss -K`
/// run on A over SSH, within a second of the ban reaching A's set.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn kill_connections_cuts_a_session_on_the_target() {
    if !preflight("remote_kill_connections", TOOLS) {
        return;
    }
    let mut f = Fleet::new("rkill");
    f.start_daemon("[defaults]\nkill_connections = true\n");
    f.wait_connected("a", Duration::from_secs(20));
    let atk = f.lab.atk.clone();
    // nc -d never sends: sshd waits for its banner, and only a reset ends the session.
    f.lab.spawn(
        "session",
        &atk,
        &["nc", "-d", "-s", ATTACKER, A_IP, &PORT.to_string()],
        &[],
    );
    let a = f.a.clone();
    let established = |f: &Fleet| {
        f.lab
            .exec(
                &a,
                &["ss", "-Htn", "state", "established", "dst", ATTACKER],
                Duration::from_secs(5),
            )
            .stdout
            .contains(&format!("{A_IP}:{PORT}"))
    };
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            established(&f)
        })
        .is_some(),
        "the attacker's session to A never came up"
    );
    f.failures_from_a("sshd", ATTACKER);
    assert!(
        f.wait_has(&a, ATTACKER, Duration::from_secs(10)).is_some(),
        "{ATTACKER} not in A's set"
    );
    let cut = wait_until(Duration::from_secs(1), Duration::from_millis(20), || {
        f.lab.exited("session").is_some()
    });
    assert!(
        cut.is_some(),
        "the attacker's session to A outlived the ban by 1 s: {}",
        f.target_status("a")
    );
    assert!(!established(&f), "A still holds the session");
}
