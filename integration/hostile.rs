//! Hostile senders with nothing but the syslog ports (issue 15's acceptance): datagrams and
//! frames with foreign bytes in their headers, and one host flooding every stream listener and
//! `/metrics` with idle and slowloris connections. A real daemon in SERVER with real nft; the
//! attackers are python3 clients in ATTACKER, so their source addresses are real.

use std::time::Duration;

use serde_json::Value;

use crate::lab::{
    self, DaemonOptions, Lab, Listener, ATTACKER_IP, BYSTANDER_IP as SENDER_IP, SERVER_IP,
};

const TOOLS: &[&str] = &["ip", "nft", "ss", "python3", "kill", "openssl", "prlimit"];
const DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(25);
/// Bans outlast the test, so "still banned" means kept, not re-banned.
const LONG_BANS: &str = "[jail.sshd]\nmaxretry = 3\nbantime = \"10m\"\nfindtime = \"10m\"\n";

/// Writes the default config with `extra` listeners before it and long bans.
fn configure(lab: &mut Lab, extra: &str, options: &DaemonOptions) {
    lab.write_daemon_config(Listener::Tcp, options);
    let path = lab.config_dir().join("syslog2ban.toml");
    let main = std::fs::read_to_string(&path).expect("read config");
    std::fs::write(&path, format!("{extra}\n{main}")).expect("write config");
    lab.write_jail_override(LONG_BANS);
}

fn status(lab: &Lab) -> Value {
    lab.ctl_json(&["status", "--json"])
}

fn listener(lab: &Lab, label: &str) -> Value {
    status(lab)["listeners"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["listener"] == label).cloned())
        .unwrap_or_else(|| panic!("no listener {label} in status"))
}

/// `GET /metrics` from inside SERVER.
fn scrape(lab: &Lab, address: &str) -> String {
    let python = lab::tool("python3").display().to_string();
    let script = "import sys, urllib.request\nprint(urllib.request.urlopen('http://' + sys.argv[1] + '/metrics', timeout=5).read().decode())";
    let out = lab.exec(
        &lab.srv,
        &[python.as_str(), "-c", script, address],
        DEADLINE,
    );
    assert!(out.success(), "scrape {address}: {}", out.describe());
    out.stdout
}

/// Sends, from ATTACKER, the reported datagram and held-out variants of it (2-, 3- and 4-byte
/// characters, invalid UTF-8, at every offset of RFC 3164, RFC 3339 and RFC 5424 headers),
/// each as a UDP datagram and as an octet-counted frame over one TCP connection.
const VARIANTS_PY: &str = r#"
import socket, sys, time
src, srv, udp_port, tcp_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
shapes = [
    b"<13>Dec  3 10:00:00 host sshd[1]: x",
    b"<13>Dec 13 10:00:00.123 2026 host sshd[1]: x",
    b"<13>2026-12-03T10:00:00.5+01:00 host sshd: x",
    b"<13>1 2026-12-03T10:00:00Z host sshd 12 ID [a b=\"c\"] x",
]
inserts = [b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x92\xa9", b"\xff\xfe", b"\xc3"]
frames = [b"<13>Dec  3 10:00:00 h\xc3\xa9\xc3\xa9 sshd[1]: x"]
for shape in shapes:
    for at in range(len(shape) + 1):
        for insert in inserts:
            frames.append(shape[:at] + insert + shape[at:])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((src, 0))
for i, f in enumerate(frames):
    u.sendto(f, (srv, udp_port))
    if i % 10 == 9:
        # Paced: a burst would overrun the default receive buffer (a drop, not a bug).
        time.sleep(0.002)
t = socket.create_connection((srv, tcp_port), timeout=5, source_address=(src, 0))
t.sendall(b"".join(str(len(f)).encode() + b" " + f for f in frames))
t.shutdown(socket.SHUT_WR)
while t.recv(4096):
    pass
print("sent", len(frames), flush=True)
"#;

/// UDP datagrams from `src` to `srv:port`.
const UDP_PY: &str = r#"
import socket, sys
src, srv, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
for m in sys.argv[4:]:
    s.sendto(m.encode(), (srv, port))
"#;

fn failure(address: &str) -> String {
    format!("<38>Dec  3 10:00:00 web1 sshd[4242]: Failed password for root from {address} port 4242 ssh2")
}

/// Acceptance 1: the daemon keeps running, keeps its bans and bans the next real attacker
/// after every variant of the datagram that once stopped all protection.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn foreign_bytes_in_headers_never_stop_protection() {
    let test = "foreign_bytes_in_headers_never_stop_protection";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let mut lab = Lab::new(test);
    let metrics = "127.0.0.1:9621";
    let options = DaemonOptions {
        metrics_listen: Some(metrics.into()),
        ..Default::default()
    };
    configure(
        &mut lab,
        &format!(
            "[[listen]]\ntype = \"udp\"\naddress = \"{SERVER_IP}:5620\"\n\n\
             [[listen]]\ntype = \"tcp\"\naddress = \"{SERVER_IP}:5621\"\n"
        ),
        &options,
    );
    let pid = lab.launch_daemon("syslog2ban", Listener::Tcp, &options);
    let python = lab::tool("python3").display().to_string();
    let udp = |lab: &Lab, frames: &[String]| {
        let mut argv = vec![
            python.clone(),
            "-c".into(),
            UDP_PY.into(),
            ATTACKER_IP.into(),
            SERVER_IP.into(),
            "5620".into(),
        ];
        argv.extend(frames.iter().cloned());
        assert!(lab.exec(&lab.atk, &argv, DEADLINE).success());
    };
    let before = vec![failure("203.0.113.50"); 3];
    udp(&lab, &before);
    assert!(
        lab.wait_banned4("203.0.113.50", DEADLINE).is_some(),
        "the first attacker should be banned\n{}",
        lab.log_of("syslog2ban")
    );

    let out = lab.exec(
        &lab.atk,
        &[
            python.as_str(),
            "-c",
            VARIANTS_PY,
            ATTACKER_IP,
            SERVER_IP,
            "5620",
            "5621",
        ],
        Duration::from_secs(30),
    );
    assert!(out.success(), "{}", out.describe());
    let sent: u64 = out
        .stdout
        .trim()
        .strip_prefix("sent ")
        .and_then(|n| n.parse().ok())
        .expect("sent N");
    assert!(sent > 500, "only {sent} variants");
    // Every variant went through matching (or was refused as unparsable) on both transports.
    let udp_label = format!("udp:{SERVER_IP}:5620");
    let tcp_label = format!("tcp:{SERVER_IP}:5621");
    let received = lab::wait_until(DEADLINE, POLL, || {
        listener(&lab, &udp_label)["messages"].as_u64() >= Some(sent + 3)
            && listener(&lab, &tcp_label)["messages"].as_u64() >= Some(sent)
    });
    assert!(
        received.is_some(),
        "not every variant arrived: {} / {}",
        listener(&lab, &udp_label),
        listener(&lab, &tcp_label)
    );

    lab.assert_running("syslog2ban");
    assert_eq!(lab.pid_of("syslog2ban"), Some(pid));
    assert!(
        lab.set_contains("banned4", "203.0.113.50"),
        "the ban made before the variants is gone"
    );
    let after = vec![failure("203.0.113.51"); 3];
    udp(&lab, &after);
    assert!(
        lab.wait_banned4("203.0.113.51", DEADLINE).is_some(),
        "the next real attacker should be banned after the variants\n{}",
        lab.log_of("syslog2ban")
    );
    let text = scrape(&lab, metrics);
    assert!(
        text.contains("\nsyslog2ban_message_faults_total 0\n"),
        "a variant reached a bug (contained, but a bug):\n{text}"
    );
}

/// Opens `per_port` connections from `src` to each port and holds them, sending one byte
/// every 3 s on each (slowloris); prints `held N` once they are open, stops after 60 s.
const FLOOD_PY: &str = r#"
import resource, socket, sys, time
src, srv, per_port, ports = sys.argv[1], sys.argv[2], int(sys.argv[3]), [int(p) for p in sys.argv[4:]]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for port in ports:
    for _ in range(per_port):
        c = socket.socket()
        c.bind((src, 0))
        c.settimeout(2)
        try:
            c.connect((srv, port))
            held.append(c)
        except OSError:
            c.close()
print("held", len(held), flush=True)
end = time.time() + 60
while time.time() < end:
    for c in held:
        try:
            c.send(b"1")
        except OSError:
            pass
    time.sleep(3)
"#;

/// From `src`: three failures over TCP, TLS and journal-upload (one address each), then a
/// scrape of /metrics; prints what each answered, as JSON.
const SENDER_PY: &str = r#"
import json, socket, ssl, sys
src, srv = sys.argv[1], sys.argv[2]
tcp, tls, journal, metrics = (int(p) for p in sys.argv[3:7])
def connect(port):
    return socket.create_connection((srv, port), timeout=10, source_address=(src, 0))
def frames(address):
    m = ("<38>1 2026-12-03T10:00:00Z web1 sshd 4242 - - Failed password for root from %s port 4242 ssh2" % address).encode()
    return (str(len(m)).encode() + b" " + m) * 3
out = {}
s = connect(tcp)
s.sendall(frames("203.0.113.60"))
s.close()
out["tcp"] = "sent"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(connect(tls))
t.sendall(frames("203.0.113.61"))
t.close()
out["tls"] = "sent"
entry = b"MESSAGE=Failed password for root from 203.0.113.62 port 4242 ssh2\nSYSLOG_IDENTIFIER=sshd\n_HOSTNAME=web1\n\n"
body = entry * 3
j = connect(journal)
j.sendall(b"POST /upload HTTP/1.1\r\nHost: collector\r\nContent-Type: application/vnd.fdo.journal\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
out["journal"] = j.recv(4096).split(b"\r\n")[0].decode()
m = connect(metrics)
m.sendall(b"GET /metrics HTTP/1.1\r\nHost: collector\r\n\r\n")
data = b""
while True:
    chunk = m.recv(65536)
    if not chunk:
        break
    data += chunk
out["metrics"] = data.split(b"\r\n")[0].decode()
print(json.dumps(out), flush=True)
"#;

/// Acceptance 3: 1,100 idle or slowloris connections from one address to each of TCP, TLS,
/// journal-upload and /metrics, on a daemon whose open-file limit is 1,024: another address's
/// failures over each transport ban, its scrape is answered, control answers, and the log
/// grows by a few lines, not thousands.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn one_host_flooding_every_listener_locks_nobody_out() {
    let test = "one_host_flooding_every_listener_locks_nobody_out";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let mut lab = Lab::new(test);
    super::tls::make_pki(&lab.dir, "ca", &[("server", "collector")]);
    let (tcp, tls, journal, metrics) = (5630, 5631, 5632, 5633);
    let options = DaemonOptions {
        metrics_listen: Some(format!("{SERVER_IP}:{metrics}")),
        // What a sysadmin sees at the default level, on a host with a small fd limit.
        rust_log: Some("info".into()),
        open_files: Some(1024),
        ..Default::default()
    };
    let dir = lab.dir.display().to_string();
    configure(
        &mut lab,
        &format!(
            "[[listen]]\ntype = \"tcp\"\naddress = \"{SERVER_IP}:{tcp}\"\n\n\
             [[listen]]\ntype = \"tls\"\naddress = \"{SERVER_IP}:{tls}\"\n\
             cert = \"{dir}/server.pem\"\nkey = \"{dir}/server.key\"\n\n\
             [[listen]]\ntype = \"journal-upload\"\naddress = \"{SERVER_IP}:{journal}\"\n"
        ),
        &options,
    );
    lab.launch_daemon("syslog2ban", Listener::Tcp, &options);
    let lines_before = lab.log_of("syslog2ban").lines().count();

    let python = lab::tool("python3").display().to_string();
    let atk = lab.atk.clone();
    let ports = [tcp, tls, journal, metrics].map(|p| p.to_string());
    let mut argv = vec![
        python.as_str(),
        "-c",
        FLOOD_PY,
        ATTACKER_IP,
        SERVER_IP,
        "1100",
    ];
    argv.extend(ports.iter().map(String::as_str));
    lab.spawn("flood", &atk, &argv, &[]);
    assert!(
        lab::wait_until(Duration::from_secs(60), POLL, || lab
            .log_of("flood")
            .contains("held "))
        .is_some(),
        "the flood did not open its connections: {}",
        lab.log_of("flood")
    );
    let tcp_label = format!("tcp:{SERVER_IP}:{tcp}");
    let refused = listener(&lab, &tcp_label)["refused_connections"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        refused >= 1000,
        "the flood should have met the per-peer limit: {refused} refused"
    );

    let mut argv = vec![python.as_str(), "-c", SENDER_PY, SENDER_IP, SERVER_IP];
    argv.extend(ports.iter().map(String::as_str));
    let out = lab.exec(&atk, &argv, Duration::from_secs(30));
    assert!(
        out.success(),
        "the real sender was locked out\n{}\nflood: {}",
        out.describe(),
        lab.log_of("flood")
    );
    let answers: Value = serde_json::from_str(out.stdout.trim()).expect("sender JSON");
    assert_eq!(answers["journal"], "HTTP/1.1 202 Accepted", "{answers}");
    assert_eq!(answers["metrics"], "HTTP/1.1 200 OK", "{answers}");
    for (address, transport) in [
        ("203.0.113.60", "tcp"),
        ("203.0.113.61", "tls"),
        ("203.0.113.62", "journal-upload"),
    ] {
        assert!(
            lab.wait_banned4(address, DEADLINE).is_some(),
            "the failures over {transport} did not ban during the flood\n{}",
            lab.log_of("syslog2ban")
        );
    }
    // Control answers while the flood holds its connections.
    assert!(lab.ctl(&["status", "--json"]).success());
    lab.assert_running("flood");
    lab.assert_running("syslog2ban");
    let log = lab.log_of("syslog2ban");
    let grown = log.lines().count() - lines_before;
    assert!(
        grown < 300,
        "the flood wrote {grown} log lines:\n{}",
        log.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
}

/// Sends, over one TCP connection from `src`, the attacker's failures interleaved with
/// failures of `spoofed` distinct addresses: 1 attacker failure, 1,000 spoofed, the second
/// attacker failure, the rest of the spoofed ones, the third attacker failure.
const SPOOF_PY: &str = r#"
import socket, sys
src, srv, port, attacker, spoofed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
def frame(address):
    m = ("<38>1 2026-12-03T10:00:00Z web1 sshd 4242 - - Failed password for root from %s port 4242 ssh2" % address).encode()
    return str(len(m)).encode() + b" " + m
def spoof(i):
    return frame("2001:db8:ffff::%x:%x" % (i >> 16, i & 0xffff))
parts = [frame(attacker)]
parts += [spoof(i) for i in range(1000)]
parts.append(frame(attacker))
parts += [spoof(i) for i in range(1000, spoofed)]
parts.append(frame(attacker))
s = socket.create_connection((srv, port), timeout=30, source_address=(src, 0))
s.sendall(b"".join(parts))
s.shutdown(socket.SHUT_WR)
while s.recv(4096):
    pass
print("sent", len(parts), flush=True)
"#;

/// Acceptance 4: 150,000 distinct spoofed addresses (over the default cap of 100,000 tracked
/// addresses) between an attacker's second and third failure (maxretry 3) do not erase its
/// count: the third failure bans. The flood's own evictions are counted.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn a_spoofed_address_flood_cannot_erase_an_attackers_count() {
    let test = "a_spoofed_address_flood_cannot_erase_an_attackers_count";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let mut lab = Lab::new(test);
    let metrics = "127.0.0.1:9622";
    let options = DaemonOptions {
        metrics_listen: Some(metrics.into()),
        rust_log: Some("info".into()),
        ..Default::default()
    };
    configure(
        &mut lab,
        &format!("[[listen]]\ntype = \"tcp\"\naddress = \"{SERVER_IP}:5640\"\n"),
        &options,
    );
    lab.launch_daemon("syslog2ban", Listener::Tcp, &options);
    let python = lab::tool("python3").display().to_string();
    let out = lab.exec(
        &lab.atk,
        &[
            python.as_str(),
            "-c",
            SPOOF_PY,
            ATTACKER_IP,
            SERVER_IP,
            "5640",
            "203.0.113.70",
            "150000",
        ],
        Duration::from_secs(120),
    );
    assert!(out.success(), "{}", out.describe());
    assert!(
        lab.wait_banned4("203.0.113.70", Duration::from_secs(60))
            .is_some(),
        "the attacker's third failure did not ban after the flood\n{}",
        lab.log_of("syslog2ban")
    );
    let text = scrape(&lab, metrics);
    let evictions: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("syslog2ban_jail_tracker_evictions_total{jail=\"sshd\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no sshd evictions counter:\n{text}"));
    assert!(
        evictions >= 50_000,
        "150,000 addresses over a cap of 100,000 should evict at least 50,000: {evictions}"
    );
}
