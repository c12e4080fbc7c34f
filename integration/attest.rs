//! The firewall holds what `banned` says (issue 16's acceptance): drift made by other tools is
//! repaired within 2 s, a second daemon refuses to start and leaves the first untouched, and a
//! restart with 1,000 active bans never takes an element out of the kernel. A real daemon and
//! real nft in SERVER; failures arrive over TCP from inside SERVER.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::{self, DaemonOptions, Lab, Listener, NFT_TABLE};

const TOOLS: &[&str] = &["ip", "nft", "ss", "python3", "kill"];
const LONG_BANS: &str = "[jail.sshd]\nmaxretry = 3\nbantime = \"10m\"\nfindtime = \"10m\"\n";

fn failures(address: &str) -> Vec<String> {
    (0..3)
        .map(|i| format!("<38>1 2026-12-03T10:00:0{i}Z web1 sshd 4242 - - Failed password for root from {address} port 4242 ssh2"))
        .collect()
}

fn start(lab: &mut Lab, label: &str) -> u32 {
    lab.write_daemon_config(Listener::Tcp, &DaemonOptions::default());
    lab.write_jail_override(LONG_BANS);
    lab.launch_daemon(label, Listener::Tcp, &DaemonOptions::default())
}

fn nft(lab: &Lab, args: &[&str]) {
    let mut argv = vec![lab::tool("nft").display().to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let out = lab.exec(&lab.srv, &argv, Duration::from_secs(10));
    assert!(out.success(), "nft {args:?}: {}", out.describe());
}

fn local_target(lab: &Lab) -> Value {
    let status = lab.ctl_json(&["status", "--json"]);
    status["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["target"] == "local").cloned())
        .unwrap_or_else(|| panic!("no local target in {status}"))
}

/// Acceptance 1: the table deleted, the set flushed, the whole ruleset flushed: every active
/// ban is back within 2 s, and a ban decided during the gap lands too.
#[test]
fn drift_by_other_tools_is_repaired_within_two_seconds() {
    let test = "drift_by_other_tools_is_repaired_within_two_seconds";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let mut lab = Lab::new(test);
    start(&mut lab, "syslog2ban");
    let mut banned: Vec<String> = Vec::new();
    for i in 1..=3 {
        let address = format!("203.0.113.{i}");
        lab.send_frames(&failures(&address));
        assert!(lab.wait_banned4(&address, Duration::from_secs(5)).is_some());
        banned.push(address);
    }
    let drifts: [(&str, &[&str]); 3] = [
        ("nft delete table", &["delete", "table", "inet", NFT_TABLE]),
        (
            "nft flush set",
            &["flush", "set", "inet", NFT_TABLE, "banned4"],
        ),
        ("nft flush ruleset", &["flush", "ruleset"]),
    ];
    for (n, (what, args)) in drifts.iter().enumerate() {
        nft(&lab, args);
        let t0 = Instant::now();
        // A ban decided while the table is (maybe still) gone.
        let during = format!("203.0.113.{}", 10 + n);
        lab.send_frames(&failures(&during));
        banned.push(during);
        for address in &banned {
            let left = Duration::from_secs(2).saturating_sub(t0.elapsed());
            assert!(
                lab.wait_banned4(address, left).is_some(),
                "after `{what}`: {address} not back in banned4 within 2 s\n{}\n{}",
                lab.list_set("banned4").stdout,
                lab.log_of("syslog2ban")
            );
        }
        // The drop rules are back too.
        let chain = lab.exec(
            &lab.srv,
            &[
                lab::tool("nft").display().to_string(),
                "list".into(),
                "chain".into(),
                "inet".into(),
                NFT_TABLE.into(),
                "input".into(),
            ],
            Duration::from_secs(5),
        );
        assert!(
            chain.stdout.matches("drop").count() >= 4,
            "after `{what}` the drop rules are missing:\n{}",
            chain.describe()
        );
    }
    let local = local_target(&lab);
    let attested = &local["attested"];
    assert!(
        attested["fixes"].as_u64() >= Some(3),
        "status should count the repairs: {local}"
    );
    assert_eq!(attested["present"], attested["desired"], "{local}");
    lab.assert_running("syslog2ban");
}

/// Acceptance 2: a second `syslog2ban run` with the same config, or with its own state
/// directory but the same table, exits non-zero naming the running daemon's PID; the first
/// one's table, bans, sockets and store are untouched, and its next ban lands.
#[test]
fn a_second_daemon_refuses_and_leaves_the_first_untouched() {
    let test = "a_second_daemon_refuses_and_leaves_the_first_untouched";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let mut lab = Lab::new(test);
    let first = start(&mut lab, "first");
    lab.send_frames(&failures("203.0.113.20"));
    assert!(lab
        .wait_banned4("203.0.113.20", Duration::from_secs(5))
        .is_some());
    let config = lab.config_dir();
    let other = lab.dir.join("other.toml");
    let text = std::fs::read_to_string(config.join("syslog2ban.toml")).expect("config");
    // Its own state directory and control socket, on another port: only the table is shared.
    let text = text
        .replace(
            &lab.dir.join("state").display().to_string(),
            &lab.dir.join("state2").display().to_string(),
        )
        .replace(
            &lab.control_socket().display().to_string(),
            &lab.dir.join("ctl2.sock").display().to_string(),
        )
        .replace(":5514", ":5599");
    std::fs::write(
        &other,
        format!("conf_dir = \"{}\"\n{text}", lab.conf_d().display()),
    )
    .expect("write other.toml");
    let srv = lab.srv.clone();
    for (label, config, says) in [
        ("same-config", config.clone(), "state directory"),
        ("same-table", other.clone(), "nft table inet"),
    ] {
        lab.spawn(
            label,
            &srv,
            &[
                lab::DAEMON_BIN,
                "run",
                "--config",
                &config.display().to_string(),
            ],
            &[("RUST_LOG", "info")],
        );
        let mut status = None;
        lab::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            status = lab.exited(label);
            status.is_some()
        });
        let status = status.unwrap_or_else(|| panic!("the {label} daemon did not exit"));
        let log = lab.log_of(label);
        assert!(!status.success(), "{label}: exit {status}\n{log}");
        assert!(
            log.contains(says) && log.contains(&format!("PID {first}")),
            "{label} should name what is in use and PID {first}:\n{log}"
        );
    }
    assert!(lab.set_contains("banned4", "203.0.113.20"));
    assert!(
        lab.ctl(&["status", "--json"]).success(),
        "control socket gone"
    );
    lab.send_frames(&failures("203.0.113.21"));
    assert!(
        lab.wait_banned4("203.0.113.21", Duration::from_secs(5))
            .is_some(),
        "the first daemon's next ban did not land\n{}",
        lab.log_of("first")
    );
    lab.assert_running("first");
}

/// Acceptance 4: SIGTERM and a new start with 1,000 active bans: `nft monitor` sees no
/// deletion at all, and every ban is in the kernel before, during and after.
#[test]
fn restart_with_a_thousand_bans_never_takes_one_out() {
    let test = "restart_with_a_thousand_bans_never_takes_one_out";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let mut lab = Lab::new(test);
    start(&mut lab, "first");
    let mut frames = Vec::new();
    for i in 0..1000u32 {
        frames.extend(failures(&format!(
            "203.0.{}.{}",
            100 + i / 250,
            1 + i % 250
        )));
    }
    lab.send_frames(&frames);
    let count = |lab: &Lab| lab.list_set("banned4").stdout.matches("\"val\"").count();
    assert!(
        lab::wait_until(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || count(&lab) == 1000
        )
        .is_some(),
        "1,000 bans expected, {} in the set\n{}",
        count(&lab),
        lab.log_of("first")
    );
    let srv = lab.srv.clone();
    let nft = lab::tool("nft").display().to_string();
    lab.spawn("monitor", &srv, &[nft.as_str(), "monitor"], &[]);
    std::thread::sleep(Duration::from_millis(300));
    let pid = lab.pid_of("first").expect("first running");
    assert!(lab::kill_pid(pid, "TERM"));
    assert!(
        lab::wait_until(Duration::from_secs(10), Duration::from_millis(10), || lab
            .exited("first")
            .is_some())
        .is_some(),
        "the daemon did not stop"
    );
    assert_eq!(count(&lab), 1000, "bans missing while stopped");
    lab.launch_daemon("second", Listener::Tcp, &DaemonOptions::default());
    assert!(
        lab::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            local_target(&lab)["attested"]["reconciles"].as_u64() >= Some(1)
        })
        .is_some(),
        "the restarted daemon never reconciled\n{}",
        lab.log_of("second")
    );
    let local = local_target(&lab);
    assert_eq!(local["attested"]["present"], 1000, "{local}");
    assert_eq!(local["attested"]["desired"], 1000, "{local}");
    assert_eq!(count(&lab), 1000);
    let events = lab.log_of("monitor");
    assert!(
        !events.lines().any(|l| l.starts_with("delete")),
        "the restart deleted something:\n{}",
        events
            .lines()
            .filter(|l| l.starts_with("delete"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
