//! Webhook notifications, with the whole daemon in this process (as `inprocess.rs` runs it)
//! and a local HTTP receiver standing in for the webhook endpoint: the documented JSON with a
//! valid HMAC signature; events queued while the receiver is down arrive once it is back,
//! each exactly once, also across a restart of the daemon; restored bans announce nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use syslog2ban::control::protocol::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::inprocess::{
    ask, bound_port, send_failures, stop_cleanly, until, wait_answering, Setup,
};

const SECRET: &str = "s3cret-for-the-test";

/// One request the receiver got: its head and its body.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    head: String,
    pub(crate) body: String,
}

/// An HTTP endpoint on a fixed port that records each request and answers 204.
pub(crate) struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub(crate) port: u16,
}

impl Receiver {
    pub(crate) async fn new() -> Receiver {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        Receiver {
            got: Arc::default(),
            task: None,
            port,
        }
    }

    pub(crate) async fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("rebind the receiver's port");
        let got = self.got.clone();
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let got = got.clone();
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = conn.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        data.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&data).into_owned();
                        let Some((head, body)) = text.split_once("\r\n\r\n") else {
                            continue;
                        };
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|n| n.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() < length {
                            continue;
                        }
                        got.lock().expect("receiver log").push(Received {
                            head: head.to_string(),
                            body: body.to_string(),
                        });
                        let _ = conn
                            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                            .await;
                        return;
                    }
                });
            }
        }));
    }

    async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.got.lock().expect("receiver log").clone()
    }
}

fn json(r: &Received) -> serde_json::Value {
    serde_json::from_str(&r.body).expect("the body is JSON")
}

fn header<'a>(r: &'a Received, name: &str) -> Option<&'a str> {
    r.head
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

async fn notifier_status(socket: &std::path::Path) -> serde_json::Value {
    match ask(socket, Request::Status).await {
        Some(Response::Status(status)) => {
            serde_json::to_value(&status.notifiers).expect("serializes")
        }
        other => panic!("status: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_each_event_once_signed_through_outages_and_restarts() {
    let mut receiver = Receiver::new().await;
    let setup = Setup::new(&format!(
        "\n[notify.ops]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n\
         secret = \"{SECRET}\"\nevents = [\"ban\", \"unban\"]\ntimeout = \"2s\"\n",
        receiver.port
    ));
    setup.jail_banning_for(3, "1h");
    setup.add_to_jail("notify = [\"ops\"]");
    let socket = setup.socket();

    receiver.up().await;
    let (run, stop) = setup.start(None);
    wait_answering(&socket).await;
    let port = bound_port(&socket).await;
    send_failures(port, "198.51.100.71", 3);
    assert!(
        until(Duration::from_secs(10), async || receiver.received().len()
            == 1)
        .await,
        "no webhook for the ban: {:?}",
        receiver.received()
    );
    let first = receiver.received().remove(0);
    assert!(
        first.head.starts_with("POST /hook HTTP/1.1\r\n"),
        "{}",
        first.head
    );
    let v = json(&first);
    assert_eq!(v["event"], "ban");
    assert_eq!(v["jail"], "sshd");
    assert_eq!(v["address"], "198.51.100.71");
    assert_eq!(v["failures"], 3);
    assert_eq!(v["bantime"], 3600);
    // The sender's address: the listener does not trust claimed host names.
    assert_eq!(v["origin"], "127.0.0.1");
    assert!(
        v["lines"][0]
            .as_str()
            .is_some_and(|l| l.contains("Failed password for root from 198.51.100.71")),
        "{v}"
    );
    // The signature, computed here independently of the daemon.
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(first.body.as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        header(&first, "X-Syslog2ban-Signature"),
        Some(format!("sha256={expected}").as_str())
    );

    // The receiver goes away: the next ban is queued, and the failed attempt is counted.
    receiver.down().await;
    send_failures(port, "198.51.100.72", 3);
    assert!(
        until(Duration::from_secs(10), async || {
            let n = notifier_status(&socket).await;
            n[0]["queued"] == 1 && n[0]["failed"].as_u64() >= Some(1)
        })
        .await,
        "the undelivered event is not reported: {}",
        notifier_status(&socket).await
    );
    // The daemon restarts while the receiver is still down.
    stop_cleanly(run, stop).await;
    let (run, stop) = setup.start(None);
    wait_answering(&socket).await;
    receiver.up().await;
    assert!(
        until(Duration::from_secs(40), async || receiver.received().len()
            >= 2)
        .await,
        "the queued event never arrived: {}",
        notifier_status(&socket).await
    );
    // Nothing else comes: no repeat, and no event for the two restored bans.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = receiver.received();
    let addresses: Vec<String> = got
        .iter()
        .map(|r| json(r)["address"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        addresses,
        vec!["198.51.100.71".to_string(), "198.51.100.72".to_string()],
        "{got:?}"
    );

    // An unban is an event too.
    let answer = ask(
        &socket,
        Request::Unban {
            address: "198.51.100.71".into(),
        },
    )
    .await;
    assert!(matches!(answer, Some(Response::Done { .. })), "{answer:?}");
    assert!(
        until(Duration::from_secs(10), async || receiver.received().len()
            == 3)
        .await,
        "no webhook for the unban"
    );
    let unban = json(&receiver.received()[2]);
    assert_eq!(
        (unban["event"].as_str(), unban["address"].as_str()),
        (Some("unban"), Some("198.51.100.71"))
    );
    assert_eq!(notifier_status(&socket).await[0]["sent"], 2);
    stop_cleanly(run, stop).await;
    receiver.down().await;
}

/// The AbuseIPDB reporter against a local server taking its v2 request shape (AbuseIPDB
/// itself is not reachable from tests): two jails ban one attacker, seen over three
/// connections, and one report leaves, with the API key, the categories and a comment
/// without the user name; a restart (the bans restored) reports nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuseipdb_gets_one_report_per_address_per_period() {
    let mut receiver = Receiver::new().await;
    let setup = Setup::new(&format!(
        "\n[notify.abuse]\ntype = \"abuseipdb\"\nurl = \"http://127.0.0.1:{}/api/v2/report\"\n\
         key = \"test-key\"\ncategories = [18, 22]\nperiod = \"1d\"\ntimeout = \"2s\"\n",
        receiver.port
    ));
    setup.jail_banning_for(3, "1h");
    let conf_d = setup.dir.path().join("conf.d");
    let jail = std::fs::read_to_string(conf_d.join("sshd.toml")).expect("read jail");
    setup.add_to_jail("notify = [\"abuse\"]");
    // A second jail hearing the same lines: the same attacker is banned twice.
    std::fs::write(
        conf_d.join("twin.toml"),
        jail.replace("[jail.sshd]", "[jail.sshd-twin]") + "notify = [\"abuse\"]\n",
    )
    .expect("write twin jail");
    let socket = setup.socket();
    receiver.up().await;
    let (run, stop) = setup.start(None);
    wait_answering(&socket).await;
    let port = bound_port(&socket).await;
    for _ in 0..3 {
        send_failures(port, "198.51.100.91", 1);
    }
    assert!(
        until(Duration::from_secs(10), async || {
            notifier_status(&socket).await[0]["dropped"] == 1
        })
        .await,
        "the second ban was not recognised as reported: {} {:?}",
        notifier_status(&socket).await,
        receiver.received()
    );
    let got = receiver.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let report = &got[0];
    assert!(
        report.head.starts_with("POST /api/v2/report HTTP/1.1\r\n"),
        "{}",
        report.head
    );
    assert_eq!(header(report, "Key"), Some("test-key"));
    assert_eq!(
        header(report, "Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(
        report
            .body
            .starts_with("ip=198.51.100.91&categories=18%2C22&comment="),
        "{}",
        report.body
    );
    assert!(
        report
            .body
            .contains("Failed+password+for+%5Buser%5D+from+198.51.100.91"),
        "the comment keeps the attack and hides the user: {}",
        report.body
    );
    assert!(!report.body.contains("root"), "{}", report.body);

    stop_cleanly(run, stop).await;
    let (run, stop) = setup.start(None);
    wait_answering(&socket).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "restored bans were reported again"
    );
    stop_cleanly(run, stop).await;
    receiver.down().await;
}

/// The other notifier shapes against one local receiver, told apart by path: a digest webhook
/// (one POST for three bans, after its interval), a Slack-format webhook limited to two
/// messages an hour (the third waits in the outbox), and a blocklist.de reporter against a
/// local server taking its documented report form (blocklist.de itself is not reachable from
/// tests), once per address although two jails ban it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_rate_limits_chat_formats_and_blocklist_de_reports() {
    let mut receiver = Receiver::new().await;
    let port = receiver.port;
    let setup = Setup::new(&format!(
        "\n[notify.daily]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/digest\"\n\
         events = [\"digest\"]\ndigest_interval = \"3s\"\n\
         \n[notify.chat]\ntype = \"webhook\"\nformat = \"slack\"\nrate = \"2/1h\"\n\
         url = \"http://127.0.0.1:{port}/slack\"\n\
         \n[notify.bl]\ntype = \"blocklist-de\"\nurl = \"http://127.0.0.1:{port}/en/httpreports.html\"\n\
         server = \"ops@example.org\"\nkey = \"bl-key\"\nservice = \"ssh\"\n"
    ));
    setup.jail_banning_for(3, "1h");
    let conf_d = setup.dir.path().join("conf.d");
    let jail = std::fs::read_to_string(conf_d.join("sshd.toml")).expect("read jail");
    setup.add_to_jail("notify = [\"daily\", \"chat\", \"bl\"]");
    std::fs::write(
        conf_d.join("twin.toml"),
        jail.replace("[jail.sshd]", "[jail.sshd-twin]") + "notify = [\"bl\"]\n",
    )
    .expect("write twin jail");
    let socket = setup.socket();
    receiver.up().await;
    let (run, stop) = setup.start(None);
    wait_answering(&socket).await;
    let listen = bound_port(&socket).await;
    let attackers = ["198.51.100.81", "198.51.100.82", "198.51.100.83"];
    for address in attackers {
        send_failures(listen, address, 3);
    }
    let on = |path: &str| -> Vec<Received> {
        receiver
            .received()
            .into_iter()
            .filter(|r| r.head.starts_with(&format!("POST {path} ")))
            .collect()
    };
    assert!(
        until(Duration::from_secs(10), async || on("/en/httpreports.html")
            .len()
            == 3
            && on("/slack").len() == 2)
        .await,
        "{:?}",
        receiver.received()
    );
    assert!(
        on("/digest").is_empty(),
        "the digest came before its interval"
    );

    // blocklist.de: its form, one report per address although two jails banned each.
    let mut reported: Vec<String> = Vec::new();
    for report in on("/en/httpreports.html") {
        assert_eq!(
            header(&report, "Content-Type"),
            Some("application/x-www-form-urlencoded")
        );
        let fields: std::collections::HashMap<&str, &str> = report
            .body
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        assert_eq!(
            (
                fields["server"],
                fields["apikey"],
                fields["service"],
                fields["format"]
            ),
            ("ops%40example.org", "bl-key", "ssh", "json")
        );
        assert!(
            fields["logs"].starts_with("Failed+password+for+%5Buser%5D+from+198.51.100.8"),
            "{}",
            report.body
        );
        reported.push(fields["ip"].to_string());
    }
    reported.sort();
    assert_eq!(reported, attackers);

    // Slack: text only, the lines quoted; the third message waits for the rate limit.
    let chat = json(&on("/slack")[0]);
    let text = chat["text"].as_str().expect("text");
    assert!(
        text.starts_with("syslog2ban: banned 198.51.100.8")
            && text.contains("\n&gt; Failed password for root from 198.51.100.8"),
        "{text}"
    );
    let status = notifier_status(&socket).await;
    let chat_status = status
        .as_array()
        .and_then(|all| all.iter().find(|n| n["name"] == "chat"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(chat_status["queued"], 1, "{status}");

    // The digest: one POST with the three bans.
    assert!(
        until(Duration::from_secs(10), async || on("/digest").len() == 1).await,
        "no digest: {status}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(on("/digest").len(), 1);
    let digest = json(&on("/digest")[0]);
    assert_eq!(digest["event"], "digest");
    let mut digested: Vec<&str> = digest["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["address"].as_str())
        .collect();
    digested.sort();
    assert_eq!(digested, attackers);
    assert!(digest["events"][0]["lines"]
        .as_array()
        .is_some_and(|l| l.len() == 3));
    stop_cleanly(run, stop).await;
    receiver.down().await;
}

/// `reload` hands the notifiers over: a webhook moved to another receiver gets the next ban
/// there and the first hears nothing more; a mail notifier that cannot be set up (its CA file
/// holds no certificate) makes the reload fail naming its key, and the webhook goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_a_webhook_and_refuses_a_notifier_that_cannot_be_set_up() {
    let mut first = Receiver::new().await;
    let mut second = Receiver::new().await;
    let setup = Setup::new(&format!(
        "\n[notify.ops]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n\
         events = [\"ban\"]\ntimeout = \"2s\"\n",
        first.port
    ));
    setup.jail_banning_for(3, "1h");
    setup.add_to_jail("notify = [\"ops\"]");
    let socket = setup.socket();
    first.up().await;
    second.up().await;
    let (run, stop) = setup.start(None);
    wait_answering(&socket).await;
    let port = bound_port(&socket).await;
    send_failures(port, "198.51.100.81", 3);
    assert!(
        until(Duration::from_secs(10), async || first.received().len()
            == 1)
        .await,
        "no webhook for the first ban: {}",
        notifier_status(&socket).await
    );

    let main = setup.dir.path().join("syslog2ban.toml");
    let text = std::fs::read_to_string(&main).expect("read config");
    let moved = text.replace(
        &format!("127.0.0.1:{}/hook", first.port),
        &format!("127.0.0.1:{}/hook", second.port),
    );
    std::fs::write(&main, &moved).expect("write config");
    let answer = ask(&socket, Request::Reload).await;
    assert!(
        matches!(&answer, Some(Response::Done { message }) if message.contains("1 notifier(s) (changed)")),
        "{answer:?}"
    );
    send_failures(port, "198.51.100.82", 3);
    assert!(
        until(Duration::from_secs(10), async || second.received().len()
            == 1)
        .await,
        "the moved webhook got nothing: {}",
        notifier_status(&socket).await
    );
    assert_eq!(json(&second.received()[0])["address"], "198.51.100.82");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(first.received().len(), 1, "the old receiver still hears");

    let bad_ca = setup.dir.path().join("bad-ca.pem");
    std::fs::write(&bad_ca, "not a certificate\n").expect("write the CA file");
    std::fs::write(
        &main,
        format!(
            "{moved}\n[notify.admin]\ntype = \"mail\"\nsmtp = \"localhost:25\"\nca_file = \"{}\"\n\
             from = \"syslog2ban@example.org\"\nto = [\"admin@example.org\"]\n",
            bad_ca.display()
        ),
    )
    .expect("write config");
    let answer = ask(&socket, Request::Reload).await;
    assert!(
        matches!(&answer, Some(Response::Error { message })
            if message.contains("notify.admin.ca_file") && message.contains("no PEM certificate")),
        "{answer:?}"
    );
    send_failures(port, "198.51.100.83", 3);
    assert!(
        until(Duration::from_secs(10), async || second.received().len()
            == 2)
        .await,
        "after the refused reload the webhook must go on: {}",
        notifier_status(&socket).await
    );
    first.down().await;
    second.down().await;
    stop_cleanly(run, stop).await;
}
