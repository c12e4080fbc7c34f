//! Input hardening end to end: sender allow-lists, per-peer connection limits with oversize
//! frames, and systemd socket activation. A real daemon in the SERVER namespace, real nft;
//! senders are python3 clients in the ATTACKER namespace (so their source addresses are real).

use std::time::Duration;

use serde_json::Value;

use crate::lab::{
    self, DaemonOptions, Lab, Listener, ATTACKER_IP, BYSTANDER_IP as ATTACKER_IP2, DAEMON_BIN,
    SERVER_IP,
};

const TOOLS: &[&str] = &["ip", "nft", "ss", "python3", "kill"];
const DEADLINE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(25);

fn failure(address: &str) -> String {
    format!("<38>1 2026-11-25T08:32:44.640342+00:00 web1 sshd 16313 - - Failed password for root from {address} port 4242 ssh2")
}

/// UDP datagrams from `source` in ATTACKER to SERVER:port.
const UDP_PY: &str = r#"
import socket, sys
src, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
for m in sys.argv[3:]:
    s.sendto(m.encode(), ("198.51.100.10", port))
print("sent", len(sys.argv) - 3)
"#;

/// Opens `idle` connections from `src_idle` and keeps them open, then sends frames from
/// `src` over one connection, then waits for stdin to close.
const TCP_PY: &str = r#"
import socket, sys, time
src_idle, idle, src, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
held = []
for _ in range(idle):
    c = socket.socket()
    c.bind((src_idle, 0))
    try:
        c.connect(("198.51.100.10", port))
        held.append(c)
    except OSError:
        pass
time.sleep(0.3)
s = socket.socket()
s.bind((src, 0))
s.connect(("198.51.100.10", port))
for m in sys.argv[5:]:
    b = m.encode()
    s.sendall(str(len(b)).encode() + b" " + b)
print("held", len(held), "sent", len(sys.argv) - 5, flush=True)
time.sleep(3)
"#;

fn configure(lab: &mut Lab, extra_listeners: &str) {
    lab.write_daemon_config(Listener::Tcp, &DaemonOptions::default());
    let path = lab.config_dir().join("syslog2ban.toml");
    let main = std::fs::read_to_string(&path).expect("read config");
    std::fs::write(&path, format!("{extra_listeners}\n{main}")).expect("write config");
}

fn status(lab: &Lab) -> Value {
    let out = lab.ctl(&["status", "--json"]);
    assert!(out.success(), "{}", out.describe());
    serde_json::from_str(&out.stdout).expect("status json")
}

fn listener(lab: &Lab, label: &str) -> Value {
    status(lab)["listeners"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["listener"] == label).cloned())
        .unwrap_or_else(|| panic!("no listener {label} in status"))
}

/// Failures over UDP from outside `allow` are dropped and counted; from inside they ban.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn udp_allow_list_drops_outsiders_and_bans_for_allowed_senders() {
    let test = "udp_allow_list_drops_outsiders_and_bans_for_allowed_senders";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let mut lab = Lab::new(test);
    configure(
        &mut lab,
        &format!("[[listen]]\ntype = \"udp\"\naddress = \"{SERVER_IP}:5600\"\nallow = [\"{ATTACKER_IP2}/32\"]\n"),
    );
    lab.launch_daemon("syslog2ban", Listener::Tcp, &DaemonOptions::default());
    let python = lab::tool("python3").display().to_string();
    let frames: Vec<String> = (0..3).map(|_| failure("203.0.113.40")).collect();
    let mut argv = vec![
        python.clone(),
        "-c".into(),
        UDP_PY.into(),
        ATTACKER_IP.into(),
        "5600".into(),
    ];
    argv.extend(frames.iter().cloned());
    assert!(lab.exec(&lab.atk, &argv, DEADLINE).success());
    let label = format!("udp:{SERVER_IP}:5600");
    let refused = lab::wait_until(DEADLINE, POLL, || {
        listener(&lab, &label)["refused_senders"] == 3
    });
    assert!(
        refused.is_some(),
        "3 datagrams from {ATTACKER_IP} should be refused: {}",
        listener(&lab, &label)
    );
    assert_eq!(listener(&lab, &label)["messages"], 0);
    assert!(
        !lab.set_contains("banned4", "203.0.113.40"),
        "a refused sender got an address banned"
    );

    let mut argv = vec![
        python,
        "-c".into(),
        UDP_PY.into(),
        ATTACKER_IP2.into(),
        "5600".into(),
    ];
    argv.extend(frames.iter().cloned());
    assert!(lab.exec(&lab.atk, &argv, DEADLINE).success());
    assert!(
        lab.wait_banned4("203.0.113.40", DEADLINE).is_some(),
        "3 failures from the allowed sender should ban\n{}",
        lab.log_of("syslog2ban")
    );
    assert_eq!(listener(&lab, &label)["refused_senders"], 3);
}

/// 55 idle connections from one peer (limit 5 per peer, 10 in all) do not keep another
/// sender out; an oversize frame is skipped and the next frame on the connection counts.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn idle_connections_and_oversize_frames_do_not_stop_a_sender() {
    let test = "idle_connections_and_oversize_frames_do_not_stop_a_sender";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let mut lab = Lab::new(test);
    configure(
        &mut lab,
        &format!(
            "[[listen]]\ntype = \"tcp\"\naddress = \"{SERVER_IP}:5601\"\nmax_connections = 10\n\
             max_connections_per_peer = 5\nmax_frame = 1024\n"
        ),
    );
    lab.launch_daemon("syslog2ban", Listener::Tcp, &DaemonOptions::default());
    let python = lab::tool("python3").display().to_string();
    let oversize = format!("{} padding {}", failure("203.0.113.41"), "x".repeat(2000));
    let mut argv = vec![
        python,
        "-c".into(),
        TCP_PY.into(),
        ATTACKER_IP.into(),
        "55".into(),
        ATTACKER_IP2.into(),
        "5601".into(),
        failure("203.0.113.42"),
        oversize,
        failure("203.0.113.42"),
        failure("203.0.113.42"),
    ];
    let out = lab.exec(&lab.atk, &argv, Duration::from_secs(20));
    argv.clear();
    assert!(out.success(), "{}", out.describe());
    assert!(
        lab.wait_banned4("203.0.113.42", DEADLINE).is_some(),
        "the allowed sender's 3 failures should ban despite 55 idle connections and an oversize frame\n{}\n{}",
        out.describe(),
        lab.log_of("syslog2ban")
    );
    assert!(
        !lab.set_contains("banned4", "203.0.113.41"),
        "the oversize frame was processed"
    );
    let l = listener(&lab, &format!("tcp:{SERVER_IP}:5601"));
    assert_eq!(l["oversize"], 1, "{l}");
    assert_eq!(l["messages"], 3, "{l}");
    assert!(l["refused_connections"].as_u64().unwrap_or(0) >= 50, "{l}");
}

/// Started the way systemd starts a socket-activated service (LISTEN_PID, LISTEN_FDS, the
/// socket as fd 3), the daemon receives on the inherited unix datagram socket and leaves the
/// socket file alone.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn inherited_datagram_socket_from_socket_activation() {
    let test = "inherited_datagram_socket_from_socket_activation";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let mut lab = Lab::new(test);
    lab.write_daemon_config(Listener::Unix, &DaemonOptions::default());
    let devlog = lab.daemon_devlog();
    let config = lab.config_dir();
    // What systemd does: bind, put the socket at fd 3, set LISTEN_*, exec the service.
    let activate = r#"
import os, socket, sys
path, daemon, config = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDNAMES"] = "syslog"
os.execv(daemon, [daemon, "run", "--config", config])
"#;
    let python = lab::tool("python3").display().to_string();
    let srv = lab.srv.clone();
    lab.spawn(
        "syslog2ban",
        &srv,
        &[
            python.as_str(),
            "-c",
            activate,
            &devlog.display().to_string(),
            DAEMON_BIN,
            &config.display().to_string(),
        ],
        &[("RUST_LOG", "info,syslog2ban=debug")],
    );
    assert!(
        lab::wait_until(Duration::from_secs(15), POLL, || lab
            .ctl(&["status", "--json"])
            .success())
        .is_some(),
        "daemon did not come up\n{}",
        lab.log_of("syslog2ban")
    );
    let inode = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).map(|m| m.ino()).ok()
    };
    let before = inode(&devlog);
    let send = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for m in sys.argv[2:]:
    s.sendto(m.encode(), sys.argv[1])
"#;
    let msg = "<38>Nov 25 08:33:27 sshd[18458]: Failed password for nltest from 203.0.113.43 port 53290 ssh2";
    let out = lab.exec(
        &lab.srv,
        &[
            python.as_str(),
            "-c",
            send,
            &devlog.display().to_string(),
            msg,
            msg,
            msg,
        ],
        DEADLINE,
    );
    assert!(out.success(), "{}", out.describe());
    assert!(
        lab.wait_banned4("203.0.113.43", DEADLINE).is_some(),
        "failures sent to the inherited socket should ban\n{}",
        lab.log_of("syslog2ban")
    );
    assert!(lab
        .log_of("syslog2ban")
        .contains("Using the socket passed by systemd"));
    assert_eq!(
        inode(&devlog),
        before,
        "the daemon replaced the socket systemd owns"
    );
}
