//! The journal-upload listener against the real `systemd-journal-upload` (Debian package
//! systemd-journal-remote), inside SERVER, enforcing on SERVER's nftables.
//!
//! No journald is needed: the uploader reads an export stream on stdin (`-`), built here with
//! sshd failure entries, each with its own `__CURSOR` as a real journal would give it.
//! Malformed uploads are sent by a python3 client over raw sockets, one connection per case.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::lab::{self, Lab, Listener, JOURNAL_UPLOAD_PORT};

const TOOLS: &[&str] = &[
    "ip",
    "nft",
    "ss",
    "python3",
    "kill",
    "systemd-journal-upload",
];
const SETTLE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(25);

/// One export-format entry: an sshd "Failed password" for `addr`, cursor number `seq`.
fn entry(addr: &str, seq: u32) -> String {
    let boot = "0123456789abcdef0123456789abcdef";
    let t = 1_795_595_782_000_000u64 + u64::from(seq);
    format!(
        "__CURSOR=s=5e1f0c7a9d2b4c6e8f0a1b2c3d4e5f60;i={seq:x};b={boot};m={seq:x};t={t:x};x={seq:x}\n\
         __REALTIME_TIMESTAMP={t}\n__MONOTONIC_TIMESTAMP={seq}\n_BOOT_ID={boot}\n\
         _HOSTNAME=web1\nSYSLOG_IDENTIFIER=sshd\nSYSLOG_FACILITY=4\nPRIORITY=6\n_PID={}\n\
         _COMM=sshd\n_TRANSPORT=syslog\n\
         MESSAGE=Failed password for root from {addr} port 22 ssh2\n\n",
        4000 + seq
    )
}

/// Uploads `export` with `systemd-journal-upload --url=http://127.0.0.1:PORT -` in SERVER.
fn upload(lab: &Lab, name: &str, export: &str) {
    let file = lab.dir.join(name);
    fs::write(&file, export).expect("write export file");
    let script = format!(
        "exec {} --url=http://127.0.0.1:{JOURNAL_UPLOAD_PORT} - < {}",
        lab::tool("systemd-journal-upload").display(),
        file.display()
    );
    let out = lab.exec(&lab.srv, &["sh", "-c", &script], Duration::from_secs(20));
    lab.note(&format!(
        "systemd-journal-upload {name}: rc {:?}",
        out.code()
    ));
    assert!(
        out.success(),
        "systemd-journal-upload failed\n{}",
        out.describe()
    );
}

fn jail_status(lab: &Lab) -> Value {
    let out = lab.ctl(&["status", "sshd", "--json"]);
    assert!(out.success(), "status sshd\n{}", out.describe());
    serde_json::from_str(&out.stdout).expect("status is JSON")
}

fn total_failed(lab: &Lab) -> u64 {
    jail_status(lab)["total_failed"].as_u64().unwrap_or(0)
}

fn start(lab: &mut Lab) {
    lab.start_daemon(Listener::JournalUpload);
    let ready = lab::wait_until(SETTLE, POLL, || lab.ctl(&["status", "--json"]).success());
    assert!(ready.is_some(), "control socket not answering");
}

/// Real uploads: 2 failures, the same 2 again (a resend: still 2), then all 3 → banned.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn journal_upload_bans_and_counts_resent_entries_once() {
    let test = "journal_upload_bans_and_counts_resent_entries_once";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let mut lab = Lab::new(test);
    start(&mut lab);
    let addr = "203.0.113.9";
    let first_two = format!("{}{}", entry(addr, 1), entry(addr, 2));
    upload(&lab, "first.export", &first_two);
    let counted = lab::wait_until(SETTLE, POLL, || total_failed(&lab) == 2);
    assert!(
        counted.is_some(),
        "2 uploaded failures not counted: {}",
        jail_status(&lab)
    );
    upload(&lab, "resend.export", &first_two);
    // Let the resend be processed before judging that it was not counted.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        total_failed(&lab),
        2,
        "a resend of the same entries (same __CURSOR) was counted again"
    );
    assert!(
        !lab.set_contains("banned4", addr),
        "{addr} banned after 2 distinct failures (maxretry 3)"
    );
    upload(
        &lab,
        "all.export",
        &format!("{first_two}{}", entry(addr, 3)),
    );
    let took = lab.wait_banned4(addr, Duration::from_secs(5));
    assert!(
        took.is_some(),
        "{addr} not banned after its 3rd distinct failure\n{}\n{}",
        jail_status(&lab),
        lab.list_set("banned4").describe()
    );
    assert_eq!(total_failed(&lab), 3);
    lab.note(&format!("{addr} banned {took:?} after the third upload"));
    let log = lab.log_of("syslog2ban");
    assert!(log.contains("Banned"), "no Banned line in the log:\n{log}");
    lab.assert_running("syslog2ban");
}

/// Runs inside SERVER. argv: port. One connection per case; prints `CASE STATUS` (the first
/// status line's code other than 100, or `none`).
const MALFORMED_PY: &str = r#"
import socket, struct, sys
port = int(sys.argv[1])

def head(seq):
    return ("__CURSOR=s=bad;i=%x\n_BOOT_ID=0123\nSYSLOG_IDENTIFIER=sshd\n_PID=%d\n" % (seq, seq)).encode()

def entry(addr, seq, message_field=None):
    if message_field is None:
        message_field = ("MESSAGE=Failed password for root from %s port 22 ssh2\n" % addr).encode()
    return head(seq) + message_field + b"\n"

def binary(value, declared):
    return b"MESSAGE\n" + struct.pack("<Q", declared) + value + b"\n"

def chunked(body):
    return ("%x\r\n" % len(body)).encode() + body + b"\r\n0\r\n\r\n"

def request(headers, body):
    return ("POST /upload HTTP/1.1\r\nHost: x\r\n" + headers + "\r\n").encode() + body

JT = "Content-Type: application/vnd.fdo.journal\r\n"
TE = JT + "Transfer-Encoding: chunked\r\n"
bad = "203.0.113.77"
msg = ("Failed password for root from %s port 22 ssh2" % bad).encode()
cases = [
    ("bad_length", request(TE, chunked(entry(bad, 1, binary(msg, 10))))),
    ("truncated_binary", request(TE, chunked(head(2) + b"MESSAGE\n" + struct.pack("<Q", 500) + msg))),
    ("wrong_content_type", request("Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n", chunked(entry(bad, 3)))),
    ("unchunked_garbage", request(TE, entry(bad, 4))),
    ("no_length", request(JT + "Connection: close\r\n", entry(bad, 5))),
    ("length_past_body", request(TE, chunked(entry(bad, 6, binary(msg, 1 << 40))))),
    # A 1 MiB core dump field (over max_frame) in an entry whose failure still counts.
    ("oversize_field", request(TE + "Connection: close\r\n", chunked(head(7) + b"COREDUMP\n" + struct.pack("<Q", 1 << 20) + bytes(1 << 20) + b"\n" + b"MESSAGE=Failed password for root from 203.0.113.79 port 22 ssh2\n\n"))),
    ("good", request(TE + "Connection: close\r\n", chunked(b"".join(entry("203.0.113.78", 10 + i) for i in range(3))))),
]
for name, data in cases:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(data)
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    codes = [l.split(b" ")[1].decode() for l in got.split(b"\r\n") if l.startswith(b"HTTP/1.1 ")]
    codes = [c for c in codes if c != "100"]
    print(name, codes[0] if codes else "none", flush=True)
"#;

/// Malformed uploads get 400/415, count nothing, and the listener serves the next one; a field
/// over the size limit is skipped and counted, and its entry accepted (a 413 would make the
/// uploader resend it forever).
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn journal_upload_refuses_malformed_bodies_and_keeps_serving() {
    let test = "journal_upload_refuses_malformed_bodies_and_keeps_serving";
    if !lab::preflight(test, &["ip", "nft", "ss", "python3", "kill"]) {
        return;
    }
    let mut lab = Lab::new(test);
    start(&mut lab);
    let python = lab::tool("python3").display().to_string();
    let port = JOURNAL_UPLOAD_PORT.to_string();
    let out = lab.exec(
        &lab.srv,
        &[python.as_str(), "-c", MALFORMED_PY, port.as_str()],
        Duration::from_secs(60),
    );
    assert!(out.success(), "client failed\n{}", out.describe());
    lab.note(&format!(
        "client: {}",
        out.stdout.trim().replace('\n', " | ")
    ));
    let status = |case: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(case)?.strip_prefix(' ').map(str::to_owned))
            .unwrap_or_else(|| panic!("no result for {case}\n{}", out.describe()))
    };
    for (case, want) in [
        ("bad_length", "400"),
        ("truncated_binary", "400"),
        ("wrong_content_type", "415"),
        ("unchunked_garbage", "400"),
        ("no_length", "400"),
        ("length_past_body", "400"),
        ("oversize_field", "202"),
        ("good", "202"),
    ] {
        assert_eq!(status(case), want, "{case}\n{}", out.describe());
    }
    let took = lab.wait_banned4("203.0.113.78", Duration::from_secs(5));
    assert!(
        took.is_some(),
        "the good upload after the malformed ones did not ban\n{}",
        lab.list_set("banned4").describe()
    );
    assert!(
        !lab.set_contains("banned4", "203.0.113.77"),
        "an address from malformed uploads was banned"
    );
    assert_eq!(
        total_failed(&lab),
        4,
        "only the good upload's 3 failures and the one beside the oversize field count: {}",
        jail_status(&lab)
    );
    let status = lab.ctl_json(&["status", "--json"]);
    let oversize: u64 = status["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["oversize"].as_u64())
        .sum();
    // The core dump, and the field claiming 1 TiB (skipped until its body ended inside it).
    assert_eq!(oversize, 2, "oversize fields are counted: {status}");
    lab.assert_running("syslog2ban");
}

/// journal-upload over HTTPS with client certificates: the real uploader with a certificate
/// from the trusted CA bans; one from another CA is refused and bans nothing.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn journal_upload_over_https_requires_a_trusted_client_certificate() {
    let test = "journal_upload_over_https_requires_a_trusted_client_certificate";
    if !lab::preflight(test, TOOLS) || !lab::preflight(test, &["openssl"]) {
        return;
    }
    let mut lab = Lab::new(test);
    let pki = lab.dir.join("pki");
    fs::create_dir_all(&pki).expect("mkdir pki");
    crate::tls::make_pki(
        &pki,
        "ca",
        &[("collector", "syslog2ban-collector"), ("web1", "web1")],
    );
    crate::tls::make_pki(&pki, "rogue", &[("mallory", "web1")]);
    let p = |f: &str| pki.join(f).display().to_string();
    lab.write_daemon_config(Listener::JournalUpload, &lab::DaemonOptions::default());
    let path = lab.config_dir().join("syslog2ban.toml");
    let main = fs::read_to_string(&path).expect("read config");
    let main = main.replacen(
        "type = \"journal-upload\"\n",
        &format!(
            "type = \"journal-upload\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
            p("collector.pem"),
            p("collector.key"),
            p("ca.pem")
        ),
        1,
    );
    fs::write(&path, main).expect("write config");
    lab.launch_daemon(
        "syslog2ban",
        Listener::JournalUpload,
        &lab::DaemonOptions::default(),
    );
    assert!(lab::wait_until(SETTLE, POLL, || lab.ctl(&["status", "--json"]).success()).is_some());

    let send = |lab: &Lab, name: &str, cert: &str, key: &str, addr: &str| {
        let file = lab.dir.join(name);
        let export: String = (1..=3).map(|i| entry(addr, i)).collect();
        fs::write(&file, export).expect("write export");
        let script = format!(
            "exec {} --url=https://127.0.0.1:{JOURNAL_UPLOAD_PORT} --key={key} --cert={cert} --trust={} - < {}",
            lab::tool("systemd-journal-upload").display(),
            p("ca.pem"),
            file.display()
        );
        lab.exec(&lab.srv, &["sh", "-c", &script], Duration::from_secs(20))
    };
    let refused = send(
        &lab,
        "rogue.export",
        &p("mallory.pem"),
        &p("mallory.key"),
        "203.0.113.91",
    );
    lab.note(&format!("untrusted client: rc {:?}", refused.code()));
    assert!(
        !refused.success(),
        "an untrusted client certificate must be refused\n{}",
        refused.describe()
    );
    let ok = send(
        &lab,
        "web1.export",
        &p("web1.pem"),
        &p("web1.key"),
        "203.0.113.90",
    );
    assert!(
        ok.success(),
        "trusted upload over HTTPS failed\n{}\n{}",
        ok.describe(),
        lab.log_of("syslog2ban")
    );
    assert!(
        lab.wait_banned4("203.0.113.90", SETTLE).is_some(),
        "3 failures uploaded over HTTPS should ban\n{}",
        lab.log_of("syslog2ban")
    );
    assert!(
        !lab.set_contains("banned4", "203.0.113.91"),
        "the refused upload banned its address"
    );
}
