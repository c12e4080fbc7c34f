//! TLS syslog end to end: a real rsyslogd with the gtls driver and mutual X.509
//! (`x509/name`) forwards sshd failures to syslog2ban's TLS listener, which bans; a client
//! certificate from an untrusted CA, a trusted certificate whose name is not allowed, and a
//! plain-TCP client on the TLS port are refused, and none of them disturbs the trusted stream.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::lab::{self, DaemonOptions, Lab, Listener};

const TOOLS: &[&str] = &["ip", "nft", "ss", "python3", "kill", "openssl", "rsyslogd"];
const DEADLINE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(25);
const PORT: u16 = 6514;

/// `openssl` in the test directory; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`name`.pem/.key) and, signed by it, certificates for each (file, CN/SAN name: a
/// DNS name, or an IP address), each also valid for 127.0.0.1.
pub(crate) fn make_pki(dir: &Path, ca: &str, certs: &[(&str, &str)]) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
        ],
    );
    for (file, name) in certs {
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-keyout",
                &format!("{file}.key"),
                "-out",
                &format!("{file}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(
            dir.join(format!("{file}.ext")),
            format!(
                "subjectAltName={}:{name},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
                if name.parse::<std::net::IpAddr>().is_ok() {
                    "IP"
                } else {
                    "DNS"
                }
            ),
        )
        .expect("write ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{file}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{file}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{file}.ext"),
            ],
        );
    }
}

/// A TLS (or, with no certificate, plain TCP) client in SERVER that sends three failures for
/// `address` and reports how far it got.
const CLIENT_PY: &str = r#"
import socket, ssl, sys
port, ca, cert, key, address = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
frame = ("<38>1 2026-11-25T08:32:44Z web9 sshd 7 - - Failed password for root from %s port 22 ssh2" % address).encode()
s = socket.create_connection(("127.0.0.1", port), timeout=5)
try:
    if cert != "-":
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False
        ctx.load_cert_chain(cert, key)
        s = ctx.wrap_socket(s)
    for _ in range(3):
        s.sendall(str(len(frame)).encode() + b" " + frame)
    s.settimeout(2)
    s.recv(1)
    print("sent")
except Exception as e:
    print("refused:", type(e).__name__)
"#;

#[test]
#[cfg_attr(
    not(s2b_netns),
    ignore = "root-only: network namespaces and real peers; runs as root or with CI=true"
)]
fn rsyslog_gtls_mutual_x509_bans_and_untrusted_clients_are_refused() {
    let test = "rsyslog_gtls_mutual_x509_bans_and_untrusted_clients_are_refused";
    if !lab::preflight(test, TOOLS) {
        return;
    }
    let mut lab = Lab::new(test);
    let pki = lab.dir.join("pki");
    std::fs::create_dir_all(&pki).expect("mkdir pki");
    make_pki(
        &pki,
        "ca",
        &[
            ("collector", "syslog2ban-collector"),
            ("web1", "web1"),
            ("web2", "web2"),
        ],
    );
    make_pki(&pki, "rogue", &[("mallory", "web1")]);
    let p = |f: &str| pki.join(f).display().to_string();

    lab.write_daemon_config(Listener::Tcp, &DaemonOptions::default());
    let path = lab.config_dir().join("syslog2ban.toml");
    let main = std::fs::read_to_string(&path).expect("read config");
    let tls = format!(
        "[[listen]]\ntype = \"tls\"\naddress = \"127.0.0.1:{PORT}\"\ncert = \"{}\"\nkey = \"{}\"\n\
         client_ca = \"{}\"\nallowed_names = [\"web1\"]\n",
        p("collector.pem"),
        p("collector.key"),
        p("ca.pem")
    );
    std::fs::write(&path, format!("{tls}\n{main}")).expect("write config");
    lab.launch_daemon("syslog2ban", Listener::Tcp, &DaemonOptions::default());

    // rsyslog with the gtls driver, client certificate web1, checking the server's name.
    let work = lab.dir.join("rsyslog-work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let sock = lab.dir.join("rsyslog-devlog");
    let conf = format!(
        "global(workDirectory=\"{work}\" localHostName=\"web1\" DefaultNetstreamDriver=\"gtls\" \
         DefaultNetstreamDriverCAFile=\"{ca}\" DefaultNetstreamDriverCertFile=\"{cert}\" DefaultNetstreamDriverKeyFile=\"{key}\")\n\
         module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
         input(type=\"imuxsock\" Socket=\"{sock}\" CreatePath=\"on\" RateLimit.Interval=\"0\")\n\
         action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{PORT}\" protocol=\"tcp\" StreamDriver=\"gtls\" StreamDriverMode=\"1\" \
         StreamDriverAuthMode=\"x509/name\" StreamDriverPermittedPeers=\"syslog2ban-collector\" TCP_Framing=\"octet-counted\" \
         template=\"RSYSLOG_SyslogProtocol23Format\" queue.type=\"LinkedList\" queue.timeoutShutdown=\"10\" \
         queue.timeoutActionCompletion=\"10\" action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\" action.resumeIntervalMax=\"2\")\n",
        work = work.display(),
        ca = p("ca.pem"),
        cert = p("web1.pem"),
        key = p("web1.key"),
        sock = sock.display(),
    );
    let conf_path = lab.dir.join("rsyslog.conf");
    std::fs::write(&conf_path, conf).expect("write rsyslog.conf");
    let srv = lab.srv.clone();
    let rsyslogd = lab::tool("rsyslogd").display().to_string();
    let pidfile = lab.dir.join("rsyslogd.pid").display().to_string();
    lab.spawn(
        "rsyslogd",
        &srv,
        &[
            rsyslogd.as_str(),
            "-n",
            "-f",
            &conf_path.display().to_string(),
            "-i",
            &pidfile,
        ],
        &[],
    );
    assert!(
        lab::wait_until(DEADLINE, POLL, || sock.exists()).is_some(),
        "rsyslogd did not create its socket\n{}",
        lab.log_of("rsyslogd")
    );

    // The refused clients first: each would ban its own address if it got through.
    let python = lab::tool("python3").display().to_string();
    let port = PORT.to_string();
    for (who, cert, key, address) in [
        (
            "untrusted CA",
            p("mallory.pem"),
            p("mallory.key"),
            "203.0.113.61",
        ),
        (
            "name not allowed",
            p("web2.pem"),
            p("web2.key"),
            "203.0.113.62",
        ),
        (
            "plain TCP",
            "-".to_string(),
            "-".to_string(),
            "203.0.113.63",
        ),
    ] {
        let out = lab.exec(
            &lab.srv,
            &[
                python.as_str(),
                "-c",
                CLIENT_PY,
                &port,
                &p("ca.pem"),
                &cert,
                &key,
                address,
            ],
            Duration::from_secs(15),
        );
        lab.note(&format!("{who}: {}", out.stdout.trim()));
    }

    // The trusted stream: three sshd failures through rsyslog's /dev/log.
    let send = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for i in range(3):
    s.sendto(b"<38>Nov 25 08:33:27 sshd[18458]: Failed password for nltest from 203.0.113.60 port 53290 ssh2", sys.argv[1])
"#;
    let out = lab.exec(
        &lab.srv,
        &[python.as_str(), "-c", send, &sock.display().to_string()],
        DEADLINE,
    );
    assert!(out.success(), "{}", out.describe());
    assert!(
        lab.wait_banned4("203.0.113.60", Duration::from_secs(15))
            .is_some(),
        "rsyslog's failures over mutual TLS should ban\n{}\n{}",
        lab.log_of("syslog2ban"),
        lab.log_of("rsyslogd")
    );
    // The origin of the ban is the verified certificate name, not the peer address.
    let banned: Value =
        serde_json::from_str(&lab.ctl(&["banned", "--json"]).stdout).expect("banned");
    let ban = banned["bans"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["address"] == "203.0.113.60").cloned())
        .expect("203.0.113.60 listed");
    assert_eq!(ban["origin"], "web1", "{ban}");
    for refused in ["203.0.113.61", "203.0.113.62", "203.0.113.63"] {
        assert!(
            !lab.set_contains("banned4", refused),
            "{refused} was banned through a refused client"
        );
    }
    let status: Value =
        serde_json::from_str(&lab.ctl(&["status", "--json"]).stdout).expect("status");
    let listener = status["listeners"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|l| l["listener"] == format!("tls:127.0.0.1:{PORT}"))
                .cloned()
        })
        .expect("tls listener in status");
    assert!(
        listener["refused_senders"].as_u64().unwrap_or(0) >= 3,
        "{listener}"
    );
    assert_eq!(
        listener["messages"], 3,
        "only the trusted stream's frames count: {listener}"
    );
}
