//! Mail notifications to a real SMTP server: Debian's aiosmtpd (`python3-aiosmtpd`, installed
//! by `integration/install-deps.sh`) on loopback, requiring STARTTLS with a certificate made
//! here by openssl, writing what it receives to a maildir. A local HTTP server stands in for
//! RDAP (a bootstrap redirect, then a registry answer whose names carry shell and
//! header-injection text). The daemon runs in this process (as `inprocess.rs` runs it).
//!
//! One mail per ban with the address, jail, failures, every matched line and the RDAP summary;
//! what the log lines and the RDAP answer say arrives as inert text (no added header or
//! recipient, no command run); a restart sends nothing for the restored ban. Skipped without
//! aiosmtpd or openssl, except under CI.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use syslog2ban::control::protocol::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::inprocess::{
    ask, bound_port, free_port, stop_cleanly, until, wait_answering, wait_listening, Setup,
};

const PYTHON: &str = "/usr/bin/python3";
const ATTACKER: &str = "198.51.100.7";

/// aiosmtpd, stopped by PID when dropped.
struct SmtpServer {
    child: Child,
    maildir: PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tools_present() -> bool {
    let aiosmtpd = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let openssl = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    aiosmtpd && openssl
}

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

/// A private CA (ca.pem) and its certificate for `localhost` (cert.pem, key.pem) in `dir`.
fn certificate(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=syslog2ban test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-subj", "/CN=localhost"];
    csr.extend(ec);
    csr.extend(["-keyout", "key.pem", "-out", "leaf.csr"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ],
    );
}

fn smtp_server(dir: &Path) -> (SmtpServer, u16) {
    let port = free_port();
    let maildir = dir.join("maildir");
    let child = Command::new(PYTHON)
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--tlscert")
        .arg(dir.join("cert.pem"))
        .arg("--tlskey")
        .arg(dir.join("key.pem"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    let server = SmtpServer { child, maildir };
    wait_listening(port, "aiosmtpd");
    (server, port)
}

/// An RDAP stand-in: `/bootstrap/ip/A` redirects to `/registry/ip/A`, which answers a network
/// whose holder wrote shell and header text into its names. Counts the registry's answers.
async fn rdap_server(canary: &Path) -> (u16, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let answers = Arc::new(Mutex::new(0));
    let count = answers.clone();
    let answer = serde_json::json!({
        "objectClassName": "ip network",
        "handle": "NET-198-51-100-0-1",
        "startAddress": "198.51.100.0",
        "endAddress": "198.51.100.255",
        "name": "EVIL-NET\r\nBcc: victim@example.net",
        "country": "ZZ",
        "entities": [{
            "roles": ["registrant"],
            "vcardArray": ["vcard", [["fn", {}, "text", format!("Evil $(touch {}) Org", canary.display())]]],
            "entities": [{"roles": ["abuse"], "vcardArray": ["vcard", [["email", {}, "text", "abuse@evil.example"]]]}]
        }]
    })
    .to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let path = request.split(' ').nth(1).unwrap_or("").to_string();
            let reply = if let Some(address) = path.strip_prefix("/bootstrap/ip/") {
                format!(
                    "HTTP/1.0 302 Found\r\nLocation: http://127.0.0.1:{port}/registry/ip/{address}\r\n\r\n"
                )
            } else if path.starts_with("/registry/ip/") {
                *count.lock().expect("count") += 1;
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Type: application/rdap+json\r\nContent-Length: {}\r\n\r\n{answer}",
                    answer.len()
                )
            } else {
                "HTTP/1.0 404 Not Found\r\n\r\n".to_string()
            };
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    (port, answers)
}

/// One received mail, read by Python's email package: its headers and decoded body.
#[derive(Debug)]
struct Mail {
    headers: Vec<(String, String)>,
    body: String,
}

fn received(maildir: &Path) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files
        .iter()
        .map(|file| {
            let out = Command::new(PYTHON)
                .args([
                    "-c",
                    "import email, json, sys\n\
                     m = email.message_from_binary_file(open(sys.argv[1], 'rb'))\n\
                     print(json.dumps({'headers': [[k, str(v)] for k, v in m.items()],\n\
                                       'body': m.get_payload(decode=True).decode()}))",
                ])
                .arg(file)
                .output()
                .expect("run python");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            Mail {
                headers: v["headers"]
                    .as_array()
                    .expect("headers")
                    .iter()
                    .map(|h| {
                        (
                            h[0].as_str().unwrap_or("").to_string(),
                            h[1].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect(),
                body: v["body"].as_str().expect("body").to_string(),
            }
        })
        .collect()
}

fn header<'a>(mail: &'a Mail, name: &str) -> Vec<&'a str> {
    mail.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Failures whose user names are shell text.
fn send_hostile_failures(port: u16, users: &[&str]) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    for user in users {
        let frame = format!(
            "<38>1 2026-12-03T10:00:00Z web1 sshd 4242 - - Failed password for {user} from {ATTACKER} port 4242 ssh2"
        );
        write!(stream, "{} {frame}", frame.len()).expect("send");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_per_ban_over_starttls_with_lines_and_inert_whois_and_none_after_a_restart() {
    if !tools_present() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must have python3-aiosmtpd and openssl (integration/install-deps.sh)"
        );
        println!("skipped: no aiosmtpd or openssl (apt-get install python3-aiosmtpd openssl)");
        return;
    }
    let tls_dir = tempfile::tempdir().expect("tempdir");
    certificate(tls_dir.path());
    let (smtp, smtp_port) = smtp_server(tls_dir.path());
    let canary = tls_dir.path().join("canary");
    let (rdap_port, rdap_answers) = rdap_server(&canary).await;
    let setup = Setup::new(&format!(
        "\n[notify.admin]\ntype = \"mail\"\nsmtp = \"localhost:{smtp_port}\"\n\
         ca_file = \"{}\"\nfrom = \"syslog2ban <syslog2ban@example.org>\"\n\
         to = [\"admin@example.org\"]\nwhois = true\n\
         rdap_url = \"http://127.0.0.1:{rdap_port}/bootstrap/ip/\"\n\
         subject = \"[s2b] <jail>: <ip> after <failures> | <whois>\"\ntimeout = \"5s\"\n",
        tls_dir.path().join("ca.pem").display()
    ));
    setup.jail_banning_for(3, "1h");
    setup.add_to_jail("notify = [\"admin\"]");
    let socket = setup.socket();

    let (run, stop) = setup.start(None);
    wait_answering(&socket).await;
    let port = bound_port(&socket).await;
    let users = [
        "$(touch${IFS}/tmp/s2b-pwned)",
        "`id`;reboot",
        "root\"<script>",
    ];
    send_hostile_failures(port, &users);
    assert!(
        until(Duration::from_secs(15), async || received(&smtp.maildir)
            .len()
            == 1)
        .await,
        "no mail for the ban"
    );
    let mail = received(&smtp.maildir).remove(0);
    let subject = header(&mail, "Subject");
    assert_eq!(subject.len(), 1, "{mail:?}");
    assert!(
        subject[0].starts_with(&format!(
            "[s2b] sshd: {ATTACKER} after 3 | RDAP for {ATTACKER}:"
        )),
        "{subject:?}"
    );
    // The RDAP name's line break did not start a header, and added no recipient.
    assert!(header(&mail, "Bcc").is_empty(), "{mail:?}");
    assert_eq!(header(&mail, "X-RcptTo"), ["admin@example.org"], "{mail:?}");
    assert_eq!(header(&mail, "To"), ["admin@example.org"]);
    assert!(
        header(&mail, "Message-ID")
            .first()
            .is_some_and(|id| id.starts_with("<syslog2ban.") && id.ends_with("@example.org>")),
        "{mail:?}"
    );
    for want in [
        format!("syslog2ban: ban {ATTACKER}"),
        "jail:     sshd".to_string(),
        "failures: 3".to_string(),
        "bantime:  1h".to_string(),
        "network: EVIL-NET  Bcc: victim@example.net".to_string(),
        format!("holder: Evil $(touch {}) Org", canary.display()),
        "abuse: abuse@evil.example".to_string(),
    ] {
        assert!(mail.body.contains(&want), "{want:?} not in\n{}", mail.body);
    }
    // Every matched line, in order, as it was.
    let lines: Vec<&str> = mail
        .body
        .lines()
        .filter(|l| l.starts_with("Failed password for"))
        .collect();
    assert_eq!(lines.len(), 3, "{}", mail.body);
    for (line, user) in lines.iter().zip(users) {
        assert_eq!(
            *line,
            format!("Failed password for {user} from {ATTACKER} port 4242 ssh2")
        );
    }
    assert!(!canary.exists() && !Path::new("/tmp/s2b-pwned").exists());
    assert_eq!(*rdap_answers.lock().expect("count"), 1);
    match ask(&socket, Request::Status).await {
        Some(Response::Status(status)) => {
            let v = serde_json::to_value(&status.notifiers).expect("serializes");
            assert_eq!(
                (v[0]["sent"].as_u64(), v[0]["queued"].as_u64()),
                (Some(1), Some(0)),
                "{v}"
            );
        }
        other => panic!("status: {other:?}"),
    }

    // A restart restores the ban and mails nothing.
    stop_cleanly(run, stop).await;
    let (run, stop) = setup.start(None);
    wait_answering(&socket).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        received(&smtp.maildir).len(),
        1,
        "a restored ban was mailed"
    );
    stop_cleanly(run, stop).await;
    drop(smtp);
}
