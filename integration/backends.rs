//! The backends beyond nftables, each against the real tool: `ipset` with iptables and
//! ip6tables, `hosts-deny` read by a real sshd built with libwrap, and `command` running a
//! test script that keeps the attacker out with nft. Each test checks what an operator would:
//! the attacker's next connection fails while an innocent address still gets through, the ban
//! ends on time, and a restart over a wiped firewall puts the ban back. `kill_connections`
//! cuts an attacker's established TCP session. Everything runs in the test's own namespaces.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::lab::{
    command, kill_pid, preflight, run, wait_until, Lab, ATTACKER_IP, BYSTANDER_IP, DAEMON_BIN,
    NFT_BAN_SCRIPT, SERVER_IP, SHIPPED_SSHD_JAIL, SSH_PORT,
};

const SERVICE_PORT: &str = "8080";

/// A daemon config in DIR/daemon: `listen` and `ban` as TOML bodies, one jail.
fn write_config(lab: &Lab, listen: &str, ban: &str, jail: &str) -> PathBuf {
    let dir = lab.dir.join("daemon");
    fs::create_dir_all(dir.join("conf.d")).expect("mkdir conf.d");
    fs::write(
        dir.join("syslog2ban.toml"),
        format!(
            "[[listen]]\n{listen}\n[ban]\n{ban}\n[control]\nsocket = \"{}\"\n\n[state]\ndir = \"{}\"\n",
            socket(lab).display(),
            dir.join("state").display()
        ),
    )
    .expect("write config");
    fs::write(dir.join("conf.d/jail.toml"), jail).expect("write jail");
    dir
}

fn socket(lab: &Lab) -> PathBuf {
    lab.dir.join("daemon/ctl.sock")
}

/// Starts the daemon in SERVER as `label` and waits for its control socket.
fn start_daemon(lab: &mut Lab, label: &str) -> u32 {
    let dir = lab.dir.join("daemon");
    let srv = lab.srv.clone();
    let pid = lab.spawn(
        label,
        &srv,
        &[DAEMON_BIN, "run", "--config", dir.to_str().expect("utf-8")],
        &[("RUST_LOG", "info,syslog2ban=debug")],
    );
    let socket = socket(lab);
    lab.wait_ready(label, "control socket", Duration::from_secs(20), |_| {
        run(
            command(DAEMON_BIN)
                .args(["status", "--socket"])
                .arg(&socket),
            Duration::from_secs(5),
        )
        .success()
    });
    pid
}

/// SIGTERM, then waits for the exit (a clean stop).
fn stop_daemon(lab: &mut Lab, label: &str, pid: u32) {
    assert!(kill_pid(pid, "TERM"), "kill -TERM {pid}");
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
            lab.exited(label).is_some()
        })
        .is_some(),
        "{label} did not stop on SIGTERM"
    );
}

/// Stops the daemon (a clean stop), runs each `wipe` command in SERVER, checks that the wipe
/// let the attacker through, restarts the daemon and waits until `restored` holds again.
fn restart_over_wiped_firewall(
    lab: &mut Lab,
    pid: u32,
    wipe: &[&[&str]],
    restored: impl Fn(&Lab) -> bool,
) {
    stop_daemon(lab, "syslog2ban", pid);
    for argv in wipe {
        let out = in_srv(lab, argv);
        assert!(out.success(), "{}", out.describe());
    }
    assert!(connects(lab, ATTACKER_IP), "the wipe opened the firewall");
    start_daemon(lab, "syslog2ban-2");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            restored(lab)
        })
        .is_some(),
        "the restarted daemon did not restore the ban; log:\n{}",
        lab.log_of("syslog2ban-2")
    );
}

/// `count` sshd failures of `address` over UDP syslog to the daemon, from SERVER.
fn send_failures(lab: &Lab, address: &str, count: usize) {
    for _ in 0..count {
        let sent = lab.exec(
            &lab.srv,
            &[
                "logger",
                "-d",
                "-n",
                "127.0.0.1",
                "-P",
                "5514",
                "-t",
                "sshd",
                &format!("Failed password for root from {address} port 4242 ssh2"),
            ],
            Duration::from_secs(5),
        );
        assert!(sent.success(), "{}", sent.describe());
    }
}

/// Whether `from` (an ATTACKER address) completes a TCP handshake with SERVER's service.
fn connects(lab: &Lab, from: &str) -> bool {
    connects_to(lab, from, SERVICE_PORT)
}

/// Whether `from` completes a TCP handshake with SERVER:`port`.
fn connects_to(lab: &Lab, from: &str, port: &str) -> bool {
    lab.exec(
        &lab.atk,
        &["nc", "-z", "-w", "2", "-s", from, SERVER_IP, port],
        Duration::from_secs(5),
    )
    .success()
}

fn service(lab: &mut Lab) {
    let srv = lab.srv.clone();
    lab.spawn(
        "service",
        &srv,
        &["nc", "-dlk", SERVER_IP, SERVICE_PORT],
        &[],
    );
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            connects(lab, ATTACKER_IP)
        })
        .is_some(),
        "the service is reachable before any ban"
    );
}

fn in_srv(lab: &Lab, argv: &[&str]) -> crate::lab::Out {
    lab.exec(&lab.srv, argv, Duration::from_secs(10))
}

const UDP_LISTEN: &str = "type = \"udp\"\naddress = \"127.0.0.1:5514\"\n";

fn plain_jail(extra: &str) -> String {
    format!(
        "[jail.sshd]\nenabled = true\nprograms = [\"sshd\"]\nmaxretry = 2\nbantime = \"10s\"\n\
         failregex = ['^Failed password for \\S+ from <HOST> port \\d+ ssh2$']\n{extra}"
    )
}

/// Waits for `check`, for the ban's end after `banned_at`: it must not come before
/// `bantime - 1 s` and must come by `bantime + 4 s`.
fn assert_ends_on_time(banned_at: Instant, bantime: Duration, mut ended: impl FnMut() -> bool) {
    let end = wait_until(
        bantime + Duration::from_secs(4),
        Duration::from_millis(200),
        &mut ended,
    );
    let took = banned_at.elapsed();
    assert!(end.is_some(), "the ban did not end within {took:?}");
    assert!(
        took + Duration::from_secs(1) >= bantime,
        "the ban ended after {took:?}, before its bantime {bantime:?}"
    );
}

#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn ipset_backend_bans_through_iptables_expires_and_survives_a_wiped_firewall() {
    if !preflight(
        "ipset_backend",
        &["ip", "ipset", "iptables", "ip6tables", "nc", "logger"],
    ) {
        return;
    }
    let mut lab = Lab::new("ipset_backend");
    service(&mut lab);
    write_config(
        &lab,
        UDP_LISTEN,
        "backend = \"ipset\"\ntable = \"s2bt\"\nreconcile_interval = \"1s\"\n",
        &plain_jail(""),
    );
    let pid = start_daemon(&mut lab, "syslog2ban");
    let rules = in_srv(&lab, &["iptables", "-w", "-S", "INPUT"]).stdout;
    assert!(
        rules.contains("--match-set s2bt4 src") && rules.contains("--match-set s2btnet4 src"),
        "{rules}"
    );
    let rules6 = in_srv(&lab, &["ip6tables", "-w", "-S", "INPUT"]).stdout;
    assert!(rules6.contains("--match-set s2bt6 src"), "{rules6}");

    send_failures(&lab, ATTACKER_IP, 2);
    let in_set = |lab: &Lab| in_srv(lab, &["ipset", "test", "s2bt4", ATTACKER_IP]).success();
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            in_set(&lab)
        })
        .is_some(),
        "{ATTACKER_IP} never reached the ipset set; log:\n{}",
        lab.log_of("syslog2ban")
    );
    let banned_at = Instant::now();
    assert!(
        !connects(&lab, ATTACKER_IP),
        "the banned attacker still connects"
    );
    assert!(
        connects(&lab, BYSTANDER_IP),
        "an innocent address is refused"
    );
    let save = in_srv(&lab, &["ipset", "save", "s2bt4"]).stdout;
    assert!(
        save.contains(&format!("add s2bt4 {ATTACKER_IP} timeout ")),
        "the element has a kernel timeout: {save}"
    );

    // A clean stop keeps the sets and rules; then someone flushes iptables and destroys the
    // sets. The restarted daemon must put the ban back.
    restart_over_wiped_firewall(
        &mut lab,
        pid,
        &[
            &["iptables", "-w", "-F", "INPUT"],
            &["ip6tables", "-w", "-F", "INPUT"],
            &["ipset", "destroy"],
        ],
        in_set,
    );
    assert!(
        !connects(&lab, ATTACKER_IP),
        "the restored ban does not drop the attacker"
    );

    assert_ends_on_time(banned_at, Duration::from_secs(10), || {
        !in_set(&lab) && connects(&lab, ATTACKER_IP)
    });
}

/// An ssh connection's first line from `from`: sshd sends its banner only to a client
/// tcp-wrappers lets in (libwrap refuses before the banner, so no login is attempted).
fn ssh_banner(lab: &Lab, from: &str) -> String {
    let out = lab.exec(
        &lab.atk,
        &[
            "nc",
            "-w",
            "2",
            "-s",
            from,
            SERVER_IP,
            &SSH_PORT.to_string(),
        ],
        Duration::from_secs(6),
    );
    out.stdout.lines().next().unwrap_or_default().to_string()
}

#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn hosts_deny_backend_makes_a_libwrap_sshd_refuse_the_attacker() {
    if !preflight(
        "hosts_deny_backend",
        &[
            "ip",
            "sshd",
            "ssh",
            "sshpass",
            "nc",
            "unshare",
            "ssh-keygen",
        ],
    ) {
        return;
    }
    let mut lab = Lab::new("hosts_deny_backend");
    // sshd reads /etc/hosts.deny; in its mount namespace that is a symlink to this file.
    let deny = lab.dir.join("wrap/hosts.deny");
    fs::create_dir_all(deny.parent().expect("parent")).expect("mkdir wrap");
    fs::write(&deny, "# the site's own line\n").expect("write hosts.deny");
    fs::create_dir_all(lab.dir.join("etc")).expect("mkdir etc");
    fs::write(
        lab.dir.join("etc/hosts-deny-target"),
        deny.to_str().expect("utf-8"),
    )
    .expect("write target");
    let devlog = lab.daemon_devlog();
    let jail = fs::read_to_string(SHIPPED_SSHD_JAIL).expect("read shipped sshd jail");
    write_config(
        &lab,
        &format!("type = \"unix\"\npath = \"{}\"\n", devlog.display()),
        &format!(
            "backend = \"hosts-deny\"\nhosts_deny = \"{}\"\nreconcile_interval = \"1s\"\n",
            deny.display()
        ),
        &jail,
    );
    fs::write(
        lab.dir.join("daemon/conf.d/zz-test.toml"),
        "[jail.sshd]\nmaxretry = 2\nbantime = \"12s\"\n",
    )
    .expect("write override");
    let pid = start_daemon(&mut lab, "syslog2ban");
    lab.start_sshd(&devlog);

    assert!(
        ssh_banner(&lab, BYSTANDER_IP).starts_with("SSH-2.0-"),
        "sshd answers before any ban"
    );
    let mut banned_at = Instant::now();
    for _ in 0..2 {
        // The ban comes with sshd's log line, before the client gives up: the earliest it
        // can start is when the second attempt does.
        banned_at = Instant::now();
        let out = lab.ssh_wrong_password(ATTACKER_IP);
        assert_eq!(out.code(), Some(5), "a wrong password: {}", out.describe());
    }
    let entry = format!("ALL: {ATTACKER_IP}");
    let listed = || {
        fs::read_to_string(&deny)
            .unwrap_or_default()
            .lines()
            .any(|l| l == entry)
    };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), listed).is_some(),
        "no entry for {ATTACKER_IP}; log:\n{}",
        lab.log_of("syslog2ban")
    );
    let text = fs::read_to_string(&deny).expect("read");
    assert!(
        text.starts_with("# the site's own line\n"),
        "the file's own lines stay first: {text}"
    );
    let refused = lab.ssh_wrong_password(ATTACKER_IP);
    assert_ne!(
        refused.code(),
        Some(5),
        "the attacker reached the password prompt: {}",
        refused.describe()
    );
    assert_eq!(
        ssh_banner(&lab, ATTACKER_IP),
        "",
        "sshd greeted the attacker"
    );
    assert!(
        ssh_banner(&lab, BYSTANDER_IP).starts_with("SSH-2.0-"),
        "an innocent address is refused"
    );

    // Restart over a wiped file: the entry comes back.
    stop_daemon(&mut lab, "syslog2ban", pid);
    fs::write(&deny, "# the site's own line\n").expect("wipe");
    start_daemon(&mut lab, "syslog2ban-2");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), listed).is_some(),
        "the restarted daemon did not restore the entry; log:\n{}",
        lab.log_of("syslog2ban-2")
    );
    assert_eq!(
        ssh_banner(&lab, ATTACKER_IP),
        "",
        "sshd greeted the attacker"
    );

    assert_ends_on_time(banned_at, Duration::from_secs(12), || !listed());
    assert!(
        ssh_banner(&lab, ATTACKER_IP).starts_with("SSH-2.0-"),
        "the ban ended but sshd still refuses"
    );
    assert_eq!(
        fs::read_to_string(&deny).expect("read"),
        "# the site's own line\n",
        "only our entry is removed"
    );
}

#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn command_backend_runs_argv_never_a_shell_and_restores_after_a_restart() {
    if !preflight("command_backend", &["ip", "nft", "nc", "python3"]) {
        return;
    }
    let mut lab = Lab::new("command_backend");
    service(&mut lab);
    let script = lab.dir.join("ban.sh");
    fs::write(&script, NFT_BAN_SCRIPT).expect("write script");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let runs = lab.dir.join("runs.log");
    let s = script.display();
    write_config(
        &lab,
        "type = \"tcp\"\naddress = \"127.0.0.1:5514\"\ntrust_hostname = true\n",
        &format!(
            "backend = \"command\"\nstart = [\"{s}\", \"start\"]\n\
             ban = [\"{s}\", \"ban\", \"<ip>\", \"<jail>\", \"<failures>\", \"<bantime>\", \"<origin>\"]\n\
             unban = [\"{s}\", \"unban\", \"<ip>\", \"<jail>\"]\n"
        ),
        &plain_jail(""),
    );
    let pid = start_daemon(&mut lab, "syslog2ban");

    // The attacked host's name comes from the syslog header: the attacker's or a forger's
    // text. Each canary would appear if any of it ran through a shell.
    let lab_dir = lab.dir.clone();
    let canary = |n: u8| lab_dir.join(format!("canary{n}"));
    let origin = format!(
        "web1;touch${{IFS}}{};$(touch${{IFS}}{})`touch${{IFS}}{}`|x&&y>z",
        canary(1).display(),
        canary(2).display(),
        canary(3).display()
    );
    let frame = |n: u8| {
        format!(
            "<38>1 2026-12-03T10:00:0{n}Z {origin} sshd 4242 - - Failed password for root from {ATTACKER_IP} port 4242 ssh2"
        )
    };
    lab.send_frames_from(&lab.srv, "127.0.0.1", 5514, &[frame(1), frame(2)]);
    let in_set = |lab: &Lab| {
        in_srv(lab, &["nft", "list", "set", "inet", "cmdtest", "banned"])
            .stdout
            .contains(ATTACKER_IP)
    };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            in_set(&lab)
        })
        .is_some(),
        "the ban command never ran; log:\n{}\nruns:\n{}",
        lab.log_of("syslog2ban"),
        fs::read_to_string(&runs).unwrap_or_default()
    );
    let banned_at = Instant::now();
    assert!(
        !connects(&lab, ATTACKER_IP),
        "the banned attacker still connects"
    );
    assert!(
        connects(&lab, BYSTANDER_IP),
        "an innocent address is refused"
    );
    let log = fs::read_to_string(&runs).expect("runs.log");
    let ban_run = format!("run\n[ban]\n[{ATTACKER_IP}]\n[sshd]\n[2]\n[10]\n[{origin}]\n");
    assert!(
        log.contains(&ban_run),
        "the ban ran with one element per placeholder, the origin verbatim:\n{log}"
    );
    for n in 1..=3 {
        assert!(
            !canary(n).exists(),
            "canary {n} exists: a shell ran log text"
        );
    }
    // Only the script ever ran, and only as start and ban.
    let starts: Vec<&str> = log.lines().filter(|l| l.starts_with("run")).collect();
    assert_eq!(starts.len(), 2, "{log}");

    // Restart over a wiped firewall: `start` re-creates the table, the restored ban re-runs.
    restart_over_wiped_firewall(
        &mut lab,
        pid,
        &[&["nft", "delete", "table", "inet", "cmdtest"]],
        in_set,
    );
    assert!(
        !connects(&lab, ATTACKER_IP),
        "the restored ban does not hold"
    );

    assert_ends_on_time(banned_at, Duration::from_secs(10), || !in_set(&lab));
    assert!(
        connects(&lab, ATTACKER_IP),
        "the unban did not let the address back"
    );
    let log = fs::read_to_string(&runs).expect("runs.log");
    assert!(
        log.ends_with(&format!("run\n[unban]\n[{ATTACKER_IP}]\n[sshd]\n")),
        "the unban ran last, naming the ban's jail:\n{log}"
    );
    for n in 1..=3 {
        assert!(
            !canary(n).exists(),
            "canary {n} exists: a shell ran log text"
        );
    }
    let status = run(
        command(DAEMON_BIN)
            .args(["status", "--json", "--socket"])
            .arg(socket(&lab)),
        Duration::from_secs(5),
    );
    assert!(
        status.stdout.contains("\"backend\": \"command\""),
        "status names the backend: {}",
        status.stdout
    );
}

#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn kill_connections_cuts_an_established_session_within_a_second() {
    if !preflight("kill_connections", &["ip", "nft", "nc", "ss", "logger"]) {
        return;
    }
    let mut lab = Lab::new("kill_connections");
    service(&mut lab);
    write_config(
        &lab,
        UDP_LISTEN,
        "table = \"s2bkill\"\nkeep_table = false\n",
        &plain_jail("kill_connections = true\n"),
    );
    start_daemon(&mut lab, "syslog2ban");
    // The attacker holds a session open (nc -d: it never sends, so only a reset ends it).
    let atk = lab.atk.clone();
    lab.spawn(
        "session",
        &atk,
        &["nc", "-d", "-s", ATTACKER_IP, SERVER_IP, SERVICE_PORT],
        &[],
    );
    let established = |lab: &Lab| {
        in_srv(
            lab,
            &["ss", "-Htn", "state", "established", "dst", ATTACKER_IP],
        )
        .stdout
        .contains(&format!("{SERVER_IP}:{SERVICE_PORT}"))
    };
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            established(&lab)
        })
        .is_some(),
        "the attacker's session never came up"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        lab.exited("session").is_none(),
        "the session ended by itself"
    );

    send_failures(&lab, ATTACKER_IP, 2);
    let banned = |lab: &Lab| {
        in_srv(lab, &["nft", "list", "set", "inet", "s2bkill", "banned4"])
            .stdout
            .contains(ATTACKER_IP)
    };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            banned(&lab)
        })
        .is_some(),
        "no ban; log:\n{}",
        lab.log_of("syslog2ban")
    );
    let cut = wait_until(Duration::from_secs(1), Duration::from_millis(20), || {
        lab.exited("session").is_some()
    });
    assert!(
        cut.is_some(),
        "the attacker's session outlived the ban by 1 s; log:\n{}",
        lab.log_of("syslog2ban")
    );
    assert!(!established(&lab), "the server still holds the session");
    assert!(
        connects(&lab, BYSTANDER_IP),
        "an innocent address is refused"
    );
}

#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn a_per_service_ban_drops_its_port_and_leaves_the_others_open() {
    if !preflight(
        "per_service_ban",
        &["ip", "nft", "ipset", "iptables", "nc", "logger"],
    ) {
        return;
    }
    const GUARDED: &str = "2222";
    for (backend, ban, in_set) in [
        (
            "nftables",
            "table = \"s2bport\"\nkeep_table = false\n",
            &["nft", "list", "set", "inet", "s2bport", "banned4port"][..],
        ),
        (
            "ipset",
            "backend = \"ipset\"\ntable = \"s2bport\"\nkeep_table = false\n",
            &["ipset", "list", "s2bportp4"][..],
        ),
    ] {
        let mut lab = Lab::new(&format!("per_service_{backend}"));
        service(&mut lab);
        let srv = lab.srv.clone();
        lab.spawn("guarded", &srv, &["nc", "-dlk", SERVER_IP, GUARDED], &[]);
        assert!(
            wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
                connects_to(&lab, ATTACKER_IP, GUARDED)
            })
            .is_some(),
            "{backend}: the guarded port answers before a ban"
        );
        write_config(
            &lab,
            UDP_LISTEN,
            ban,
            &plain_jail(&format!("ports = [{GUARDED}]\nprotocol = \"tcp\"\n")),
        );
        start_daemon(&mut lab, "syslog2ban");
        send_failures(&lab, ATTACKER_IP, 2);
        let listed = |lab: &Lab| {
            let out = in_srv(lab, in_set).stdout;
            out.contains(ATTACKER_IP) && out.contains(GUARDED)
        };
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
                listed(&lab)
            })
            .is_some(),
            "{backend}: no per-port element; log:\n{}",
            lab.log_of("syslog2ban")
        );
        assert!(
            !connects_to(&lab, ATTACKER_IP, GUARDED),
            "{backend}: the attacker still reaches the banned port"
        );
        assert!(
            connects_to(&lab, ATTACKER_IP, SERVICE_PORT),
            "{backend}: the ban cut the attacker from another port of the server"
        );
        assert!(
            connects_to(&lab, BYSTANDER_IP, GUARDED),
            "{backend}: an innocent address is refused on the banned port"
        );
        // Applied by its batch, not repaired afterwards by a reconcile.
        let status = run(
            command(DAEMON_BIN)
                .args(["status", "--json", "--socket"])
                .arg(socket(&lab)),
            Duration::from_secs(5),
        );
        let status: serde_json::Value =
            serde_json::from_str(&status.stdout).expect("status --json");
        let local = &status["targets"][0];
        assert_eq!(
            local["errors"],
            0,
            "{backend}: a batch failed: {local}\nlog:\n{}",
            lab.log_of("syslog2ban")
        );
    }
}
