//! End-to-end tests with real peers in network namespaces: OpenSSH sshd, rsyslogd and nft,
//! with the syslog2ban daemon enforcing bans on SERVER's own nftables.
//!
//! Needs root (netns + mount ns) and ip, nft, ss, sshd, ssh, ssh-keygen, sshpass, rsyslogd, nc,
//! unshare, python3. Built by a normal user without `CI=true`, every test here is ignored with
//! that reason (`build.rs`); as root without the tools a test prints `SKIP: ...` and passes,
//! unless `CI=true`, where it fails naming what is missing. See `lab.rs` for the topology and the teardown guarantees.
//!
//! `cluster.rs`: two collectors on a real redis-server, a split attack and a `kill -9` with
//! rsyslog failing over, each collector banning in its own nftables.
//! `operator.rs`: the control CLI, reload (and SIGHUP) and /metrics against a real daemon.
//! `journal.rs`: the real systemd-journal-upload against the journal-upload listener (bans,
//! resends counted once, malformed uploads refused with the right status).
//! `attest.rs`: the firewall holds what `banned` says: drift repaired, one owner, no restart window.
//! `hostile.rs`: hostile senders: foreign bytes in headers, one host flooding every listener.
//! `backends.rs`: the ipset, hosts-deny (a libwrap sshd) and command backends, and
//! `kill_connections`, each against the real tool.
//! `forward.rs`: `hook = "forward"` drops an attacker's routed traffic, not the router's own.
//! `package.rs`: the Debian package built, installed, started as its unit says, banning.
//! `state.rs`: durable ban state across restarts and `kill -9` (SQLite store, restore into nft,
//! permanent bans, recidive, growing bantimes).
//!
//! Run: `cargo test --test netns -- --test-threads=2` (each sshd test takes ~20 s, most of it
//! the 2 s PAM delay per failed login and the 8 s bantime).

mod attest;
mod backends;
mod cluster;
mod fleet;
mod fleet_lab;
mod forward;
mod hostile;
mod inputs;
mod journal;
mod lab;
mod operator;
mod package;
mod state;
mod tls;

use std::time::{Duration, Instant};

use lab::{Lab, Listener, ATTACKER_IP, BANTIME, BYSTANDER_IP, MAXRETRY, SSH_PORT, SYSLOG_TCP_PORT};

const SSHD_TOOLS: &[&str] = &[
    "ip",
    "nft",
    "ss",
    "sshd",
    "ssh",
    "ssh-keygen",
    "sshpass",
    "nc",
    "unshare",
    "mount",
    "kill",
];

/// The shared scenario of tests 1-3: sshd in SERVER logs through `listener` (via rsyslog for
/// TCP and UDP, straight into the daemon's socket for unix); ATTACKER fails MAXRETRY password
/// logins from .66; the third one must get .66 banned in nftables, .67 must stay reachable,
/// and the ban must lapse after `bantime`.
fn sshd_bans_after_maxretry(test: &str, listener: Listener) {
    let mut tools = SSHD_TOOLS.to_vec();
    if listener != Listener::Unix {
        tools.push("rsyslogd");
    }
    if !lab::preflight(test, &tools) {
        return;
    }
    let mut lab = Lab::new(test);
    lab.start_daemon(listener);
    let devlog = match listener {
        Listener::Unix => lab.daemon_devlog(),
        Listener::Tcp | Listener::Udp | Listener::JournalUpload => lab.start_rsyslog(listener),
    };
    lab.start_sshd(&devlog);

    let mut third_started = None;
    for attempt in 1..=MAXRETRY {
        if attempt == MAXRETRY {
            // Let the previous attempt's lines drain (sshd logs "Failed password" ~0.4 s before
            // the client gives up, so this is slack, not a requirement).
            std::thread::sleep(Duration::from_millis(300));
            let set = lab.list_set("banned4");
            assert!(
                set.success(),
                "cannot list banned4 before attempt {attempt}: {}",
                set.describe()
            );
            assert!(
                !set.stdout.contains(&format!("\"{ATTACKER_IP}\"")),
                "{ATTACKER_IP} banned after only {} failed logins (maxretry = {MAXRETRY}): \
                 something counts more than one failure per attempt\n{}",
                attempt - 1,
                set.stdout
            );
        }
        if attempt == MAXRETRY {
            // The ban may land while this session is still open: the ban lasts bantime from no
            // earlier than here.
            third_started = Some(Instant::now());
        }
        let out = lab.ssh_wrong_password(ATTACKER_IP);
        lab.note(&format!(
            "failed login {attempt}/{MAXRETRY} from {ATTACKER_IP}: rc {:?} in {:.2?}",
            out.code(),
            out.elapsed
        ));
        // sshpass: 5 = password rejected. On the last attempt the ban may drop the client's
        // packets before ssh finishes, which ssh reports as 255.
        let accepted: &[i32] = if attempt == MAXRETRY { &[5, 255] } else { &[5] };
        assert!(
            out.code().is_some_and(|c| accepted.contains(&c)),
            "attempt {attempt}: expected sshpass rc {accepted:?} (wrong password) from a reachable sshd\n{}",
            out.describe()
        );
    }
    let third_started = third_started.expect("last attempt ran");

    let after_third = Instant::now();
    let took = lab.wait_banned4(ATTACKER_IP, Duration::from_secs(3));
    let took = took.unwrap_or_else(|| {
        panic!(
            "{ATTACKER_IP} not in `nft list set inet syslog2ban banned4` within 3 s of the \
             {MAXRETRY}rd failed login\n{}",
            lab.list_set("banned4").describe()
        )
    });
    let banned_at = Instant::now();
    lab.note(&format!(
        "{ATTACKER_IP} in banned4 {took:.2?} after the last attempt ended: {}",
        lab.list_set("banned4").stdout.trim()
    ));

    assert!(
        !lab.tcp_connects(ATTACKER_IP, SSH_PORT, 2),
        "banned {ATTACKER_IP} can still open a TCP connection to sshd"
    );
    assert!(
        lab.tcp_connects(BYSTANDER_IP, SSH_PORT, 2),
        "{BYSTANDER_IP} (never attacked) cannot connect: the ban is too wide"
    );
    lab.note("ban enforced: .66 dropped, .67 connects");

    let window = BANTIME + Duration::from_secs(5);
    let back = lab::wait_until(window, Duration::from_millis(250), || {
        lab.tcp_connects(ATTACKER_IP, SSH_PORT, 1)
    });
    let back = back.unwrap_or_else(|| {
        panic!(
            "{ATTACKER_IP} still cannot connect {window:?} after the ban was seen (bantime {BANTIME:?})\n{}",
            lab.list_set("banned4").describe()
        )
    });
    let since_seen = banned_at.elapsed();
    let upper = third_started.elapsed();
    lab.note(&format!(
        "{ATTACKER_IP} connects again {since_seen:.2?} after the ban was seen, {upper:.2?} after the last \
         attempt started ({back:.2?} of polling)"
    ));
    // The ban cannot have started before the last attempt did, so it lasted at most `upper`.
    // Allow half a second for nft's timeout granularity.
    assert!(
        upper + Duration::from_millis(500) >= BANTIME,
        "the ban lifted at most {upper:.2?} after it could have started: shorter than bantime {BANTIME:?}"
    );
    lab.assert_running("syslog2ban");
    lab.note(&format!(
        "done, {:.2?} after the last attempt",
        after_third.elapsed()
    ));
}

#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn rsyslog_tcp_rfc5424_bans_after_maxretry() {
    sshd_bans_after_maxretry("rsyslog_tcp_rfc5424_bans_after_maxretry", Listener::Tcp);
}

#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn rsyslog_udp_rfc3164_bans_after_maxretry() {
    sshd_bans_after_maxretry("rsyslog_udp_rfc3164_bans_after_maxretry", Listener::Udp);
}

#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn sshd_devlog_unix_socket_bans_after_maxretry() {
    sshd_bans_after_maxretry(
        "sshd_devlog_unix_socket_bans_after_maxretry",
        Listener::Unix,
    );
}

/// Runs inside SERVER. argv: nft path, port. One TCP connection; frames 1-2, a look at the set,
/// frame 3, poll the set until the address appears, and only then frame 4.
const ONE_CONNECTION_PY: &str = r#"
import socket, subprocess, sys, time
nft, port = sys.argv[1], int(sys.argv[2])
addr = "203.0.113.9"
msg = b"<38>1 2026-11-25T08:32:44.640342+00:00 web1 sshd 16313 - - Failed password for root from 203.0.113.9 port 4242 ssh2"
frame = str(len(msg)).encode() + b" " + msg
def banned():
    r = subprocess.run([nft, "-j", "list", "set", "inet", "syslog2ban", "banned4"], capture_output=True, text=True)
    if r.returncode != 0:
        print("nft-error", r.returncode, r.stderr.strip(), flush=True)
        return False
    return ('"%s"' % addr) in r.stdout
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.sendall(frame)
s.sendall(frame)
time.sleep(0.3)
print("after2", "present" if banned() else "absent", flush=True)
t0 = time.monotonic()
s.sendall(frame)
seen = None
while time.monotonic() - t0 < 2.0:
    if banned():
        seen = (time.monotonic() - t0) * 1000.0
        break
    time.sleep(0.01)
print("banned_ms", "none" if seen is None else "%.1f" % seen, flush=True)
s.sendall(frame)
print("sent4", flush=True)
time.sleep(0.2)
s.close()
"#;

/// Three frames on one TCP connection must ban on the third: the frame that crosses maxretry
/// is acted on by itself, not when a later frame (or the connection close) pushes it through.
#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn no_overshoot_over_one_tcp_connection() {
    let test = "no_overshoot_over_one_tcp_connection";
    if !lab::preflight(test, &["ip", "nft", "ss", "python3", "kill"]) {
        return;
    }
    let mut lab = Lab::new(test);
    lab.start_daemon(Listener::Tcp);
    let python = lab::tool("python3").display().to_string();
    let nft = lab::tool("nft").display().to_string();
    let port = SYSLOG_TCP_PORT.to_string();
    let srv = lab.srv.clone();
    let out = lab.exec(
        &srv,
        &[
            python.as_str(),
            "-c",
            ONE_CONNECTION_PY,
            nft.as_str(),
            port.as_str(),
        ],
        Duration::from_secs(20),
    );
    lab.note(&format!(
        "client: rc {:?}, output: {}",
        out.code(),
        out.stdout.trim().replace('\n', " | ")
    ));
    assert!(out.success(), "client script failed\n{}", out.describe());
    let field = |key: &str| -> Option<String> {
        out.stdout.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.strip_prefix(' '))
                .map(str::to_owned)
        })
    };
    assert_eq!(
        field("after2").as_deref(),
        Some("absent"),
        "203.0.113.9 was in banned4 after only 2 of maxretry = {MAXRETRY} frames\n{}",
        out.describe()
    );
    let ms = field("banned_ms").unwrap_or_default();
    let ms: f64 = ms.parse().unwrap_or_else(|_| {
        panic!(
            "203.0.113.9 not in banned4 within 2 s of the 3rd frame, with no 4th frame sent \
             (the frame that crosses maxretry must not wait for a later one)\n{}",
            out.describe()
        )
    });
    assert!(
        out.stdout.lines().any(|l| l == "sent4"),
        "4th frame not sent\n{}",
        out.describe()
    );
    lab.note(&format!(
        "ban visible {ms} ms after the 3rd frame, before the 4th was sent"
    ));
    assert!(
        lab.set_contains("banned4", "203.0.113.9"),
        "203.0.113.9 vanished from banned4 after the 4th frame\n{}",
        lab.list_set("banned4").describe()
    );
    lab.assert_running("syslog2ban");
}
