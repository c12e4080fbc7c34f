//! `hook = "forward"`: bans that cover traffic routed through the host (containers behind
//! Docker's published ports, VMs, a router) and not the host's own. Three namespaces: an
//! attacker, a router running syslog2ban, and a server behind the router. Once the attacker is
//! banned, its packets to the server are dropped in the router's forward path while the router
//! itself still answers it (no input chain), and the table holds exactly the forward chain.

use std::fs;
use std::time::Duration;

use crate::lab::{command, preflight, run, wait_until, Lab, DAEMON_BIN};

const TOOLS: &[&str] = &["ip", "nft", "nc", "logger", "sysctl"];
const ATTACKER: &str = "198.51.100.5";
const ROUTER_A: &str = "198.51.100.1";
const ROUTER_S: &str = "198.51.100.65";
const SERVER: &str = "198.51.100.70";

#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn a_forward_hook_ban_drops_routed_traffic_and_leaves_the_router_reachable() {
    if !preflight("forward_hook", TOOLS) {
        return;
    }
    let mut lab = Lab::bare("forward");
    let (atk, rtr, srv) = (
        format!("{}-fa", lab.id),
        format!("{}-fr", lab.id),
        format!("{}-fs", lab.id),
    );
    for ns in [&atk, &rtr, &srv] {
        lab.add_netns(ns);
    }
    // atk eth0 <-> rtr a0 (198.51.100.0/26); rtr s0 <-> srv eth0 (198.51.100.64/26).
    lab.ip(&[
        "-n", &atk, "link", "add", "eth0", "type", "veth", "peer", "name", "a0", "netns", &rtr,
    ]);
    lab.ip(&[
        "-n", &srv, "link", "add", "eth0", "type", "veth", "peer", "name", "s0", "netns", &rtr,
    ]);
    for (ns, dev, addr) in [
        (&atk, "eth0", "198.51.100.5/26"),
        (&rtr, "a0", "198.51.100.1/26"),
        (&rtr, "s0", "198.51.100.65/26"),
        (&srv, "eth0", "198.51.100.70/26"),
    ] {
        lab.ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
        lab.ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    lab.ip(&["-n", &atk, "route", "add", "default", "via", ROUTER_A]);
    lab.ip(&["-n", &srv, "route", "add", "default", "via", ROUTER_S]);
    let fwd = lab.exec(
        &rtr,
        &["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        Duration::from_secs(5),
    );
    assert!(fwd.success(), "{}", fwd.describe());
    // A TCP listener on the server and one on the router itself (-d: stdin is not read).
    lab.spawn("server", &srv, &["nc", "-dlk", SERVER, "8080"], &[]);
    lab.spawn(
        "router-service",
        &rtr,
        &["nc", "-dlk", ROUTER_A, "8080"],
        &[],
    );
    let connects = |lab: &Lab, to: &str| {
        lab.exec(
            &atk,
            &["nc", "-z", "-w", "2", to, "8080"],
            Duration::from_secs(5),
        )
        .success()
    };
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            connects(&lab, SERVER)
        })
        .is_some(),
        "the server is reachable through the router before a ban"
    );

    let dir = lab.dir.join("daemon");
    fs::create_dir_all(dir.join("conf.d")).expect("mkdir");
    let socket = dir.join("ctl.sock");
    fs::write(
        dir.join("syslog2ban.toml"),
        format!(
            "[[listen]]\ntype = \"udp\"\naddress = \"127.0.0.1:5514\"\n\n\
             [ban]\ntable = \"s2bfwd\"\nhook = \"forward\"\nkeep_table = false\n\n\
             [control]\nsocket = \"{}\"\n\n[state]\ndir = \"{}\"\n",
            socket.display(),
            dir.join("state").display()
        ),
    )
    .expect("write config");
    fs::write(
        dir.join("conf.d/sshd.toml"),
        "[jail.sshd]\nenabled = true\nprograms = [\"sshd\"]\nmaxretry = 2\n\
         failregex = ['^Failed password for \\S+ from <HOST> port \\d+ ssh2$']\n",
    )
    .expect("write jail");
    lab.spawn(
        "syslog2ban",
        &rtr,
        &[
            DAEMON_BIN,
            "run",
            "--config",
            dir.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    let status = || {
        run(
            command(DAEMON_BIN)
                .args(["status", "--socket"])
                .arg(&socket),
            Duration::from_secs(5),
        )
        .success()
    };
    lab.wait_ready(
        "syslog2ban",
        "control socket",
        Duration::from_secs(20),
        |_| status(),
    );

    let table = lab.exec(
        &rtr,
        &["nft", "list", "table", "inet", "s2bfwd"],
        Duration::from_secs(5),
    );
    assert!(
        table.stdout.contains("hook forward") && !table.stdout.contains("hook input"),
        "the table has a forward chain only:\n{}",
        table.stdout
    );
    for _ in 0..2 {
        let sent = lab.exec(
            &rtr,
            &[
                "logger",
                "-d",
                "-n",
                "127.0.0.1",
                "-P",
                "5514",
                "-t",
                "sshd",
                &format!("Failed password for root from {ATTACKER} port 4242 ssh2"),
            ],
            Duration::from_secs(5),
        );
        assert!(sent.success(), "{}", sent.describe());
    }
    let banned = || {
        lab.exec(
            &rtr,
            &["nft", "list", "set", "inet", "s2bfwd", "banned4"],
            Duration::from_secs(5),
        )
        .stdout
        .contains(ATTACKER)
    };
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), banned).is_some(),
        "{ATTACKER} was not banned; log:\n{}",
        lab.log_of("syslog2ban")
    );
    assert!(
        !connects(&lab, SERVER),
        "the banned attacker still reaches the server through the router"
    );
    assert!(
        connects(&lab, ROUTER_A),
        "the router itself must still answer (no input hook)"
    );
}
