//! Several collectors on one engine: two (or three) whole daemons in this process (as
//! `inprocess.rs` runs one, with the log backend), each with its own listener and state
//! directory, sharing a real `redis-server` on loopback that the test starts, pauses
//! (SIGSTOP), and restarts empty. What a user checks: which collectors hold the ban, the
//! failures in the store, and `status`. Skipped without redis-server, except under CI.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use syslog2ban::ban::store::Store;
use syslog2ban::control::protocol::{ClusterReport, Request, Response};

use crate::inprocess::{
    ask, banned, bound_port, free_port, send_failures, send_failures_from, stop_cleanly, until,
    wait_answering, wait_listening, Setup,
};
use crate::notify::Receiver;

const ATTACKER: &str = "198.51.100.60";
/// The collectors' `announce_delay`: how long their notifications wait.
const ANNOUNCE_DELAY: Duration = Duration::from_secs(1);

/// redis-server on a loopback port, without persistence; stopped by PID when dropped.
struct Engine {
    child: Child,
    port: u16,
}

impl Engine {
    fn start(port: u16) -> Engine {
        Engine::start_with(port, &[])
    }

    /// A replica of the engine on `primary`.
    fn start_replica(port: u16, primary: u16) -> Engine {
        Engine::start_with(port, &["--replicaof", "127.0.0.1", &primary.to_string()])
    }

    fn start_with(port: u16, more: &[&str]) -> Engine {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            // A replica is in step at once, not after the default 5 s wait for more.
            .args(["--repl-diskless-sync-delay", "0"])
            // What replication writes goes to a file of this engine's, never the checkout.
            .arg("--dir")
            .arg(std::env::temp_dir())
            .arg("--dbfilename")
            .arg(Engine::dump_file(port))
            .args(more)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        wait_listening(port, "redis-server");
        Engine { child, port }
    }

    fn dump_file(port: u16) -> String {
        format!("syslog2ban-test-engine-{port}.rdb")
    }

    /// A sentinel monitoring the engine on `primary` as `master` (its config written to
    /// `dir`, which the sentinel rewrites), quick to judge it down and to fail over.
    fn start_sentinel(port: u16, primary: u16, master: &str, dir: &Path) -> Engine {
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n\
                 sentinel monitor {master} 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds {master} 500\n\
                 sentinel failover-timeout {master} 5000\n",
                dir.display()
            ),
        )
        .expect("write sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server --sentinel");
        wait_listening(port, "redis sentinel");
        Engine { child, port }
    }

    /// Whether `INFO replication` has `line`.
    async fn info_has(&self, line: &str) -> bool {
        let url = syslog2ban::config::EngineUrl::parse(&format!("redis://127.0.0.1:{}", self.port))
            .expect("an engine url");
        let Ok(mut conn) =
            syslog2ban::cluster::resp::Connection::connect(&url, None, Duration::from_secs(2))
                .await
        else {
            return false;
        };
        conn.call(&[b"INFO", b"replication"])
            .await
            .ok()
            .and_then(|reply| reply.text())
            .is_some_and(|info| info.lines().any(|l| l.trim() == line))
    }

    /// Sends one command, as `redis-cli` would.
    async fn command(&self, args: &[&str]) {
        let url = syslog2ban::config::EngineUrl::parse(&format!("redis://127.0.0.1:{}", self.port))
            .expect("an engine url");
        let mut conn =
            syslog2ban::cluster::resp::Connection::connect(&url, None, Duration::from_secs(5))
                .await
                .expect("connect");
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        conn.call(&args).await.expect("the engine accepts it");
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal redis-server");
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // A paused engine must be able to die.
        self.signal(rustix::process::Signal::CONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(std::env::temp_dir().join(Engine::dump_file(self.port)));
    }
}

fn redis_present() -> bool {
    let present = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI must have redis-server (integration/install-deps.sh)"
        );
        println!("skipped: no redis-server (apt-get install redis-server)");
    }
    present
}

/// A collector named `node` on the engine at `port`, its sshd jail banning at 5 for an hour;
/// with `webhook`, the jail's bans and unbans are posted there.
fn collector(node: &str, port: u16, webhook: Option<u16>) -> Setup {
    collector_on(node, &[port], webhook)
}

/// As `collector`, its `urls` the engines on `ports`, in that order.
fn collector_on(node: &str, ports: &[u16], webhook: Option<u16>) -> Setup {
    collector_with(node, ports, webhook, "")
}

/// As `collector_on`, with `more` lines in its `[cluster]`.
fn collector_with(node: &str, ports: &[u16], webhook: Option<u16>, more: &str) -> Setup {
    let notifier = webhook.map_or_else(String::new, |hook| {
        format!(
            "\n[notify.ops]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{hook}/hook\"\n\
             events = [\"ban\", \"unban\"]\n"
        )
    });
    let urls: Vec<String> = ports
        .iter()
        .map(|port| format!("\"redis://127.0.0.1:{port}\""))
        .collect();
    let setup = Setup::new(&format!(
        "\n[cluster]\nengine = \"redis\"\nurls = [{}]\nnode = \"{node}\"\n\
         timeout = \"200ms\"\nannounce_delay = \"{}s\"\n{more}\n{notifier}",
        urls.join(", "),
        ANNOUNCE_DELAY.as_secs()
    ));
    setup.jail_banning_for(5, "1h");
    if webhook.is_some() {
        setup.add_to_jail("notify = [\"ops\"]");
    }
    setup
}

/// A collector up: its setup, control socket, listener port, and its run and stop switch.
struct Up {
    setup: Setup,
    socket: std::path::PathBuf,
    port: u16,
    run: tokio::task::JoinHandle<Result<(), syslog2ban::daemon::DaemonError>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// Collectors a and b on `engine`, both answering.
async fn up_pair(engine: &Engine) -> (Up, Up) {
    (up("a", engine.port).await, up("b", engine.port).await)
}

/// Starts collector `node` on the engine at `engine` and waits until it answers.
async fn up(node: &str, engine: u16) -> Up {
    up_notifying(node, engine, None).await
}

/// As `up`, with its bans and unbans posted to the webhook on port `webhook`.
async fn up_notifying(node: &str, engine: u16, webhook: Option<u16>) -> Up {
    launch(collector(node, engine, webhook)).await
}

/// Starts the collector `setup` describes and waits until it answers.
async fn launch(setup: Setup) -> Up {
    let (run, stop) = setup.start(None);
    let socket = setup.socket();
    wait_answering(&socket).await;
    let port = bound_port(&socket).await;
    Up {
        setup,
        socket,
        port,
        run,
        stop,
    }
}

impl Up {
    /// Stops it cleanly; its setup stays for a restart.
    async fn down(self) -> Setup {
        stop_cleanly(self.run, self.stop).await;
        self.setup
    }
}

async fn cluster_status(socket: &Path) -> ClusterReport {
    match ask(socket, Request::Status).await {
        Some(Response::Status(status)) => *status.cluster.expect("a cluster section"),
        other => panic!("status: {other:?}"),
    }
}

/// Whether every collector of `all` holds (or, with `held` false, does not hold) the
/// attacker's ban within `limit`.
async fn all_within(limit: Duration, all: &[&Up], held: bool) -> bool {
    until(limit, async || {
        for up in all {
            if holds(&up.socket, ATTACKER).await != held {
                return false;
            }
        }
        true
    })
    .await
}

async fn holds(socket: &Path, address: &str) -> bool {
    banned(socket).await.iter().any(|a| a == address)
}

/// The active bans of `address` in the store of `setup` (read after a stop).
fn stored(setup: &Setup, address: &str) -> Vec<syslog2ban::ban::record::BanRecord> {
    let mut store = Store::open(&setup.dir.path().join("state")).expect("open store");
    store
        .active(SystemTime::now())
        .expect("read")
        .into_iter()
        .filter(|b| b.address.to_string() == address)
        .collect()
}

/// Failures of the active ban of `address` in the store of `setup` (read after a stop).
fn stored_failures(setup: &Setup, address: &str) -> Vec<u32> {
    stored(setup, address).iter().map(|b| b.failures).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_attack_adds_up_and_one_collector_bans_for_both() {
    if !redis_present() {
        return;
    }
    let engine = Engine::start(free_port());
    let (a, b) = up_pair(&engine).await;

    send_failures(a.port, ATTACKER, 2);
    send_failures(b.port, ATTACKER, 2);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!holds(&a.socket, ATTACKER).await && !holds(&b.socket, ATTACKER).await);
    // The fifth, through either: both hold the ban within a second.
    send_failures(b.port, ATTACKER, 1);
    assert!(
        until(Duration::from_secs(1), async || holds(&a.socket, ATTACKER)
            .await
            && holds(&b.socket, ATTACKER).await)
        .await,
        "a: {:?} b: {:?}",
        cluster_status(&a.socket).await,
        cluster_status(&b.socket).await
    );
    let (ca, cb) = (
        cluster_status(&a.socket).await,
        cluster_status(&b.socket).await,
    );
    assert_eq!(
        (cb.shared_offences, cb.published, cb.adopted),
        (1, 1, 0),
        "{cb:?}"
    );
    assert_eq!(
        (ca.shared_offences, ca.published, ca.adopted),
        (0, 0, 1),
        "{ca:?}"
    );
    assert!(!ca.degraded && !cb.degraded);
    // Both collectors are seen, with no lag once the ban is read, and their clocks (this
    // machine's) measured against the engine's within a second.
    assert!(
        until(Duration::from_secs(3), async || {
            let peers = cluster_status(&a.socket).await.peers;
            peers.len() == 2
                && peers
                    .iter()
                    .all(|p| p.lag_ms == 0 && p.clock_ahead_ms.is_some_and(|ms| ms.abs() < 1000))
        })
        .await,
        "{:?}",
        cluster_status(&a.socket).await.peers
    );
    let (a_setup, b_setup) = (a.down().await, b.down().await);
    // One ban each, with the five failures of the whole attack.
    assert_eq!(stored_failures(&b_setup, ATTACKER), vec![5]);
    assert_eq!(stored_failures(&a_setup, ATTACKER), vec![5]);
}

/// A jail counting per origin host: a sender that fails over to the other collector keeps
/// its count of the attacker there, and another sender's failures do not add to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_failing_over_keeps_its_count_in_a_jail_counting_per_origin() {
    if !redis_present() {
        return;
    }
    let engine = Engine::start(free_port());
    let per_origin = |node: &str| {
        let setup = collector(node, engine.port, None);
        setup.add_to_jail("count_per_origin = true");
        setup
    };
    let a = launch(per_origin("a")).await;
    let b = launch(per_origin("b")).await;
    send_failures_from("127.0.0.2", a.port, ATTACKER, 2);
    send_failures_from("127.0.0.3", a.port, ATTACKER, 4);
    // 127.0.0.2 fails over to b.
    send_failures_from("127.0.0.2", b.port, ATTACKER, 2);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !holds(&a.socket, ATTACKER).await && !holds(&b.socket, ATTACKER).await,
        "one sender's failures must not add to another's"
    );
    // Its fifth, through b: both hold the ban.
    send_failures_from("127.0.0.2", b.port, ATTACKER, 1);
    assert!(
        all_within(Duration::from_secs(2), &[&a, &b], true).await,
        "a: {:?} b: {:?}",
        cluster_status(&a.socket).await,
        cluster_status(&b.socket).await
    );
    let (_a_setup, b_setup) = (a.down().await, b.down().await);
    assert_eq!(stored_failures(&b_setup, ATTACKER), vec![5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_ban_one_collector_decided_alone_the_attackers_return_counts_from_zero() {
    if !redis_present() {
        return;
    }
    let engine = Engine::start(free_port());
    let short = |node| {
        let setup = collector(node, engine.port, None);
        setup.jail_banning_for(5, "2s");
        setup
    };
    let (a, b) = (launch(short("a")).await, launch(short("b")).await);
    // All five through a: its own count bans, before the shared count could.
    send_failures(a.port, ATTACKER, 5);
    assert!(
        all_within(Duration::from_secs(1), &[&a, &b], true).await,
        "the ban is not on both"
    );
    assert!(
        all_within(Duration::from_secs(5), &[&a, &b], false).await,
        "the ban did not end"
    );
    // Back within findtime: the first four failures a counted before its ban must not
    // count again on the engine, or b would ban at this one.
    send_failures(b.port, ATTACKER, 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !holds(&b.socket, ATTACKER).await && !holds(&a.socket, ATTACKER).await,
        "one failure after the ban banned again: {:?}",
        cluster_status(&b.socket).await
    );
    send_failures(b.port, ATTACKER, 4);
    assert!(
        all_within(Duration::from_secs(1), &[&a, &b], true).await,
        "the return's fifth failure did not ban"
    );
    a.down().await;
    b.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unban_by_hand_on_one_collector_lifts_the_address_on_all() {
    if !redis_present() {
        return;
    }
    // Both collectors notify the same endpoint: it hears the ban and the unban once each,
    // from the collector that decided the ban.
    let (_engine, hook, a, b) = notifying_pair().await;
    send_failures(a.port, ATTACKER, 5);
    assert!(
        until(Duration::from_secs(2), async || holds(&b.socket, ATTACKER)
            .await)
        .await,
        "the ban did not reach b"
    );
    unban_by_hand(&b.socket, ATTACKER).await;
    assert!(
        until(Duration::from_secs(1), async || !holds(&a.socket, ATTACKER)
            .await)
        .await,
        "the unban on b did not lift the ban on a"
    );
    // The lift is on the stream, but it is no ban: b published none.
    assert_eq!(cluster_status(&b.socket).await.published, 0);
    let events = async || hook_events(&hook);
    // Notifications wait `ANNOUNCE_DELAY` in these collectors.
    assert!(
        until(Duration::from_secs(10), async || events().await.len() >= 2).await,
        "{:?}",
        events().await
    );
    // A repeat from the other collector would be posted as promptly as these were.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        events().await,
        vec![
            format!("\"ban\" \"{ATTACKER}\""),
            format!("\"unban\" \"{ATTACKER}\"")
        ]
    );
    // b held the ban adopted, so its jail took the attacker as reported; the lift must undo
    // that, or the attacker's return would go uncounted there.
    send_failures(b.port, ATTACKER, 5);
    assert!(
        until(Duration::from_secs(2), async || holds(&b.socket, ATTACKER)
            .await)
        .await,
        "after the lift, b did not ban the attacker's return"
    );
    // a held the attacker's claim; the lift took it off the engine too, so the return is
    // b's ban: published, held by a, announced by b.
    assert!(
        until(Duration::from_secs(2), async || holds(&a.socket, ATTACKER)
            .await)
        .await,
        "b's ban of the return did not reach a (recorded as a's, by a's old claim?)"
    );
    assert!(
        until(Duration::from_secs(10), async || events().await.len() >= 3).await,
        "the return's ban was not announced: {:?}",
        events().await
    );
    a.down().await;
    b.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_lift_elsewhere_the_attackers_return_counts_across_collectors() {
    if !redis_present() {
        return;
    }
    let engine = Engine::start(free_port());
    let (a, b) = up_pair(&engine).await;
    // a bans on its own count: it holds the claim, and sends none of the attacker's later
    // failures to the engine while that lasts.
    send_failures(a.port, ATTACKER, 5);
    assert!(all_within(Duration::from_secs(2), &[&a, &b], true).await);
    // Lifted by hand on b: the claim goes, and a must count the return on the engine again.
    unban_by_hand(&b.socket, ATTACKER).await;
    assert!(all_within(Duration::from_secs(2), &[&a, &b], false).await);
    send_failures(a.port, ATTACKER, 2);
    send_failures(b.port, ATTACKER, 3);
    assert!(
        all_within(Duration::from_secs(2), &[&a, &b], true).await,
        "the return split over both (2 + 3) did not add up: {:?}",
        cluster_status(&a.socket).await
    );
    a.down().await;
    b.down().await;
}

/// An engine, a webhook receiver, and collectors a and b both notifying it.
async fn notifying_pair() -> (Engine, Receiver, Up, Up) {
    let engine = Engine::start(free_port());
    let mut hook = Receiver::new().await;
    hook.up().await;
    let a = up_notifying("a", engine.port, Some(hook.port)).await;
    let b = up_notifying("b", engine.port, Some(hook.port)).await;
    (engine, hook, a, b)
}

/// Lifts `address` on the collector at `socket`, as `syslog2ban unban` does.
async fn unban_by_hand(socket: &Path, address: &str) {
    let answer = ask(
        socket,
        Request::Unban {
            address: address.into(),
        },
    )
    .await;
    assert!(matches!(answer, Some(Response::Done { .. })), "{answer:?}");
}

/// The webhook's events as `"event" "address"`.
fn hook_events(hook: &Receiver) -> Vec<String> {
    hook.received()
        .iter()
        .map(|r| {
            let event: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
            format!("{} {}", event["event"], event["address"])
        })
        .collect()
}

/// The webhook hears the attacker's ban once: within the announce delay and a margin, and
/// no second time after.
async fn announced_once(hook: &Receiver) {
    let ban = format!("\"ban\" \"{ATTACKER}\"");
    assert!(
        until(ANNOUNCE_DELAY + Duration::from_secs(4), async || {
            hook_events(hook).contains(&ban)
        })
        .await,
        "never announced: {:?}",
        hook_events(hook)
    );
    tokio::time::sleep(ANNOUNCE_DELAY * 2).await;
    assert_eq!(hook_events(hook), vec![ban]);
}

/// Each entry of the engine's ban stream (default prefix): its fields, names and values.
async fn stream(port: u16) -> Vec<Vec<(String, String)>> {
    use syslog2ban::cluster::resp::{Connection, Reply};
    let url = syslog2ban::config::EngineUrl::parse(&format!("redis://127.0.0.1:{port}"))
        .expect("an engine url");
    let mut conn = Connection::connect(&url, None, Duration::from_secs(5))
        .await
        .expect("connect");
    let entries = conn
        .call(&[b"XRANGE", b"syslog2ban:bans", b"-", b"+"])
        .await
        .expect("XRANGE");
    entries
        .items()
        .iter()
        .map(|entry| {
            entry.items().get(1).map_or_else(Vec::new, |fields| {
                fields
                    .items()
                    .chunks(2)
                    .map(|pair| {
                        let text = |i: usize| pair.get(i).and_then(Reply::text).unwrap_or_default();
                        (text(0), text(1))
                    })
                    .collect()
            })
        })
        .collect()
}

/// The entries of the engine's ban stream (default prefix) that ban `address`.
async fn stream_entries(port: u16, address: &str) -> usize {
    stream(port)
        .await
        .iter()
        .filter(|fields| {
            fields.iter().any(|(name, value)| match name.as_str() {
                // A ban in one field: node, jail, address, ... joined by tabs.
                "ban" => value.split('\t').nth(2) == Some(address),
                "address" => value == address,
                _ => false,
            })
        })
        .count()
}

/// The field names of each entry of the engine's ban stream (default prefix).
async fn stream_field_names(port: u16) -> Vec<Vec<String>> {
    stream(port)
        .await
        .into_iter()
        .map(|fields| fields.into_iter().map(|(name, _)| name).collect())
        .collect()
}

/// A collector of an earlier version in the cluster (its heartbeat without the forms it
/// reads, as those versions write it) gets bans in the one form it reads, a field per value,
/// and a collector of this version adopts them; once its heartbeat says it reads one field
/// (it was upgraded), or it is forgotten (taken out), bans go out in one field again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_go_out_in_a_form_every_collector_of_the_cluster_reads() {
    if !redis_present() {
        return;
    }
    let port = free_port();
    let engine = Engine::start(port);
    let now_ms = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis()
            .to_string()
    };
    let beat = |reads: &str| format!("{} 0 0{reads}", now_ms());
    engine
        .command(&["HSET", "syslog2ban:nodes", "old", &beat("")])
        .await;
    let (a, b) = up_pair(&engine).await;
    let old_reads = async |reads: u64| {
        until(Duration::from_secs(3), async || {
            cluster_status(&a.socket)
                .await
                .peers
                .iter()
                .any(|p| p.node == "old" && p.reads == reads)
        })
        .await
    };
    assert!(old_reads(1).await, "{:?}", cluster_status(&a.socket).await);
    send_failures(a.port, ATTACKER, 5);
    assert!(
        all_within(Duration::from_secs(2), &[&a, &b], true).await,
        "b did not adopt a's ban in the older form"
    );
    let fields = stream_field_names(port).await;
    assert_eq!(fields.len(), 1, "{fields:?}");
    assert!(
        fields[0].iter().any(|f| f == "node") && !fields[0].iter().any(|f| f == "ban"),
        "not a field per value: {fields:?}"
    );
    // Upgraded: its heartbeat says it reads one field.
    engine
        .command(&["HSET", "syslog2ban:nodes", "old", &beat(" 2")])
        .await;
    assert!(old_reads(2).await, "{:?}", cluster_status(&a.socket).await);
    let next = "198.51.100.62";
    send_failures(a.port, next, 5);
    assert!(
        until(Duration::from_secs(2), async || holds(&b.socket, next)
            .await)
        .await,
        "b did not adopt a's ban in one field"
    );
    let fields = stream_field_names(port).await;
    assert_eq!(fields.len(), 2, "{fields:?}");
    assert_eq!(fields[1], vec!["ban".to_string()]);

    // An earlier version's collector taken out for good (`syslog2ban forget-collector`):
    // gone from status, and bans go out in one field.
    engine
        .command(&["HSET", "syslog2ban:nodes", "old", &beat("")])
        .await;
    assert!(old_reads(1).await, "{:?}", cluster_status(&a.socket).await);
    let cluster = || {
        syslog2ban::config::load(a.setup.dir.path())
            .expect("config loads")
            .cluster
            .expect("a [cluster]")
    };
    assert!(syslog2ban::cluster::forget(cluster(), "old")
        .await
        .expect("forget"));
    assert!(!syslog2ban::cluster::forget(cluster(), "old")
        .await
        .expect("forget again"));
    assert!(
        until(Duration::from_secs(3), async || !cluster_status(&a.socket)
            .await
            .peers
            .iter()
            .any(|p| p.node == "old"))
        .await,
        "{:?}",
        cluster_status(&a.socket).await
    );
    let third = "198.51.100.63";
    send_failures(a.port, third, 5);
    assert!(
        until(Duration::from_secs(2), async || holds(&b.socket, third)
            .await)
        .await
    );
    let fields = stream_field_names(port).await;
    assert_eq!(fields.get(2), Some(&vec!["ban".to_string()]), "{fields:?}");
    a.down().await;
    b.down().await;
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_both_collectors_decided_at_once_is_announced_once() {
    if !redis_present() {
        return;
    }
    let (engine, hook, a, b) = notifying_pair().await;
    // The engine paused (for less than the collectors' 200 ms timeout): neither collector can
    // learn of the other's count or ban, and each bans on its own five failures.
    engine.signal(rustix::process::Signal::STOP);
    send_failures(a.port, ATTACKER, 5);
    send_failures(b.port, ATTACKER, 5);
    let both = until(Duration::from_millis(150), async || {
        holds(&a.socket, ATTACKER).await && holds(&b.socket, ATTACKER).await
    })
    .await;
    engine.signal(rustix::process::Signal::CONT);
    assert!(
        both,
        "each collector bans on its own count, the engine or not"
    );
    assert!(
        until(Duration::from_secs(10), async || !hook_events(&hook)
            .is_empty())
        .await,
        "no notification"
    );
    // A second one would have been posted by now.
    tokio::time::sleep(ANNOUNCE_DELAY + Duration::from_secs(1)).await;
    assert_eq!(
        hook_events(&hook),
        vec![format!("\"ban\" \"{ATTACKER}\"")],
        "decided on both, announced by one"
    );
    // Each collector's claim went to the engine before its ban: the one that lost it did not
    // publish its ban.
    assert_eq!(
        stream_entries(engine.port, ATTACKER).await,
        1,
        "published by both"
    );
    // Its end too: lifted on b, announced by a, whose decision it is.
    unban_by_hand(&b.socket, ATTACKER).await;
    assert!(
        until(Duration::from_secs(10), async || hook_events(&hook).len()
            >= 2)
        .await,
        "no unban notification"
    );
    tokio::time::sleep(ANNOUNCE_DELAY + Duration::from_secs(1)).await;
    assert_eq!(
        hook_events(&hook),
        vec![
            format!("\"ban\" \"{ATTACKER}\""),
            format!("\"unban\" \"{ATTACKER}\"")
        ]
    );
    a.down().await;
    b.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_goes_away_leaves_its_count_and_gets_the_ban_back() {
    if !redis_present() {
        return;
    }
    let engine = Engine::start(free_port());
    let (a, b) = up_pair(&engine).await;
    send_failures(a.port, ATTACKER, 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A goes away; its sender fails over to B.
    let a_setup = a.down().await;
    send_failures(b.port, ATTACKER, 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !holds(&b.socket, ATTACKER).await,
        "the fourth failure banned"
    );
    send_failures(b.port, ATTACKER, 1);
    assert!(
        until(Duration::from_secs(1), async || holds(&b.socket, ATTACKER)
            .await)
        .await,
        "the fifth failure did not ban: {:?}",
        cluster_status(&b.socket).await
    );
    // A comes back and holds the ban it missed.
    let (run_a, stop_a) = a_setup.start(None);
    let sock_a = a_setup.socket();
    wait_answering(&sock_a).await;
    assert!(
        until(Duration::from_secs(3), async || holds(&sock_a, ATTACKER)
            .await)
        .await,
        "the restarted collector does not hold the ban: {:?}",
        cluster_status(&sock_a).await
    );
    stop_cleanly(run_a, stop_a).await;
    b.down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_engine_never_blinds_a_collector_and_an_emptied_one_gets_the_bans_again() {
    if !redis_present() {
        return;
    }
    let port = free_port();
    let mut engine = Engine::start(port);
    let (a, b) = (up("a", port).await, up("b", port).await);
    let (sock_a, sock_b, port_a, port_b) = (a.socket.clone(), b.socket.clone(), a.port, b.port);

    engine.signal(rustix::process::Signal::STOP);
    // One collector alone: bans at once, the engine or not.
    let alone = "198.51.100.61";
    send_failures(port_a, alone, 5);
    assert!(
        until(Duration::from_secs(1), async || holds(&sock_a, alone).await).await,
        "a paused engine delayed a local ban"
    );
    // A split attack while paused: neither collector alone has five.
    send_failures(port_a, ATTACKER, 2);
    send_failures(port_b, ATTACKER, 3);
    assert!(
        until(Duration::from_secs(5), async || cluster_status(&sock_b)
            .await
            .degraded)
        .await,
        "b does not say it counts alone"
    );
    assert!(!holds(&sock_a, ATTACKER).await && !holds(&sock_b, ATTACKER).await);
    engine.signal(rustix::process::Signal::CONT);
    // Resumed: the buffered failures add up, and the ban of the lone attack reaches b.
    assert!(
        until(Duration::from_secs(10), async || holds(&sock_a, ATTACKER)
            .await
            && holds(&sock_b, ATTACKER).await
            && holds(&sock_b, alone).await)
        .await,
        "a: {:?} b: {:?}",
        cluster_status(&sock_a).await,
        cluster_status(&sock_b).await
    );
    // Both reconnect and replay (a collector tries again every second).
    assert!(
        until(Duration::from_secs(5), async || {
            let (ca, cb) = (cluster_status(&sock_a).await, cluster_status(&sock_b).await);
            !ca.degraded && !cb.degraded && ca.buffered_failures + cb.buffered_failures == 0
        })
        .await,
        "{:?} {:?}",
        cluster_status(&sock_a).await,
        cluster_status(&sock_b).await
    );
    let (ca, cb) = (cluster_status(&sock_a).await, cluster_status(&sock_b).await);
    // The lone attack was A's own to ban; the split one was decided once, by the shared count.
    assert_eq!(ca.shared_offences + cb.shared_offences, 1, "{ca:?} {cb:?}");

    // The engine restarts empty while a is stopped: b publishes the bans again, the lone
    // attack's as a's decision, and a third collector that starts now adopts them so.
    let a = a.down().await;
    drop(engine);
    engine = Engine::start(port);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = up("c", port).await;
    assert!(
        until(Duration::from_secs(5), async || holds(&c.socket, ATTACKER)
            .await
            && holds(&c.socket, alone).await)
        .await,
        "c: {:?}",
        cluster_status(&c.socket).await
    );
    let c = c.down().await;
    let deciders = stored(&c, alone)
        .into_iter()
        .map(|b| b.decided_by)
        .collect::<Vec<_>>();
    assert_eq!(deciders, vec![Some("a".to_string())]);
    drop(a);
    b.down().await;
    drop(engine);
}

/// A collector whose state directory is lost comes back (same name, nothing stored) holding
/// the bans it decided before: they are in the stream under its name, and the others hold
/// them all the while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_lost_its_state_holds_its_own_earlier_bans_again() {
    if !redis_present() {
        return;
    }
    let engine = Engine::start(free_port());
    let (a, b) = up_pair(&engine).await;
    send_failures(a.port, ATTACKER, 5);
    assert!(
        all_within(Duration::from_secs(3), &[&a, &b], true).await,
        "the ban did not reach both"
    );
    let setup = a.down().await;
    let state = setup.dir.path().join("state");
    std::fs::remove_dir_all(&state).expect("remove the state directory");
    let a = launch(setup).await;
    assert!(
        until(Duration::from_secs(5), async || holds(&a.socket, ATTACKER)
            .await)
        .await,
        "a without its state does not hold its own ban: {:?}",
        cluster_status(&a.socket).await
    );
    // Held, not decided again: one ban in the cluster, announced once.
    assert_eq!(cluster_status(&a.socket).await.published, 0);
    a.down().await;
    b.down().await;
    drop(engine);
}

/// A Redis Cluster node for an engine: refused by name (its MOVED redirects are not followed),
/// and the collector bans alone meanwhile, saying why in `status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_node_is_refused_by_name_and_the_collector_bans_alone() {
    if !redis_present() {
        return;
    }
    let port = free_port();
    let nodes = tempfile::tempdir().expect("temp dir");
    let nodes_file = nodes.path().join("nodes.conf");
    let engine = Engine::start_with(
        port,
        &[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            nodes_file.to_str().expect("a UTF-8 temp path"),
        ],
    );
    let a = up("a", port).await;
    send_failures(a.port, ATTACKER, 5);
    assert!(
        until(Duration::from_secs(1), async || holds(&a.socket, ATTACKER)
            .await)
        .await,
        "a collector on a cluster node did not ban alone"
    );
    let status = cluster_status(&a.socket).await;
    assert!(status.degraded, "{status:?}");
    let error = status.last_error.unwrap_or_default();
    assert!(
        error.contains("Redis Cluster node") && error.contains("[cluster] urls"),
        "{error}"
    );
    a.down().await;
    drop(engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_script_names_who_holds_the_claim() {
    use syslog2ban::cluster::engine::CountArgs;
    if !redis_present() {
        return;
    }
    let engine = Engine::start(free_port());
    let mut script = CountScript::on(engine.port, "t").await;
    let now = SystemTime::now();
    let failure = |node, sequence| sshd_failure(node, sequence, ATTACKER, now, 3);
    let answers = script
        .count_all(now, &[failure("a", 1), failure("b", 1), failure("a", 2)])
        .await;
    let claims: Vec<(bool, Option<&str>)> = answers
        .iter()
        .map(|c| (c.claimed, c.holder.as_deref()))
        .collect();
    assert_eq!(claims, vec![(false, None), (false, None), (true, None)]);
    // After a's claim: b's next failure is told a holds it (b need not send more, and a
    // ban b decides alone is a's), a's claiming failure sent again that it holds it, and
    // a's next failure that a's earlier one does.
    let answers = script
        .count_all(now, &[failure("b", 2), failure("a", 2), failure("a", 3)])
        .await;
    let claims: Vec<(bool, Option<&str>)> = answers
        .iter()
        .map(|c| (c.claimed, c.holder.as_deref()))
        .collect();
    assert_eq!(
        claims,
        vec![(false, Some("a")), (true, None), (false, Some("a"))]
    );

    // A jail counting per origin host: a sender's failures add up on whichever collectors
    // they reach, apart from another sender's, and its claim is its own.
    let from = |node, sequence, origin| CountArgs {
        origin: Some(origin),
        ..failure(node, sequence)
    };
    let answers = script
        .count_all(
            now,
            &[
                from("a", 10, "192.0.2.1"),
                from("b", 10, "192.0.2.1"),
                from("a", 11, "192.0.2.2"),
                from("b", 11, "192.0.2.1"),
            ],
        )
        .await;
    let seen: Vec<(u32, bool)> = answers.iter().map(|c| (c.count, c.claimed)).collect();
    assert_eq!(seen, vec![(1, false), (2, false), (1, false), (3, true)]);
    // A lift by hand takes the per-sender counts and claims too.
    let sshd = syslog2ban::config::JailName::new("sshd").unwrap();
    script
        .keys
        .lift(&mut script.conn, ATTACKER.parse().unwrap(), &[sshd])
        .await
        .expect("lifted");
    let answers = script
        .count_all(
            now,
            &[from("a", 12, "192.0.2.2"), from("b", 12, "192.0.2.1")],
        )
        .await;
    let seen: Vec<(u32, Option<&str>)> = answers
        .iter()
        .map(|c| (c.count, c.holder.as_deref()))
        .collect();
    assert_eq!(seen, vec![(1, None), (1, None)]);
}

/// Two running collectors given the same `node` (a cloned machine keeping its host name):
/// each would skip the other's bans as its own, so each says so in `status` while it lasts,
/// and a restart under the same name (a new run of the same collector) is no clash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_with_one_node_name_say_so() {
    if !redis_present() {
        return;
    }
    let engine = Engine::start(free_port());
    let first = up("twin", engine.port).await;
    // Beats of one run, then of the next run of the same collector: no clash.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!cluster_status(&first.socket).await.name_clash);
    let setup = first.down().await;
    let again = launch(setup).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !cluster_status(&again.socket).await.name_clash,
        "a restart under the same name was taken for another collector"
    );
    // Another collector under the same name, running beside it: both say so.
    let twin = up("twin", engine.port).await;
    for socket in [&again.socket, &twin.socket] {
        assert!(
            until(Duration::from_secs(5), async || cluster_status(socket)
                .await
                .name_clash)
            .await,
            "{:?}",
            cluster_status(socket).await
        );
    }
    twin.down().await;
    again.down().await;
}

/// Collectors whose clocks disagree count together: the window is on the engine's clock.
/// Collector b's clock runs 20 minutes ahead (a host whose NTP broke); findtime is 10
/// minutes. With each collector's own clock in the window, b would drop a's two failures
/// as older than findtime, and the attacker's 4th failure would not reach maxretry 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_whose_clocks_disagree_count_together() {
    if !redis_present() {
        return;
    }
    let engine = Engine::start(free_port());
    let mut script = CountScript::on(engine.port, "t").await;
    let mut answers = Vec::new();
    for (sequence, (node, skew)) in [("a", 0), ("a", 0), ("b", 1200), ("b", 1200)]
        .into_iter()
        .enumerate()
    {
        let clock = SystemTime::now() + Duration::from_secs(skew);
        let failure = sshd_failure(node, sequence as u64, ATTACKER, clock, 4);
        let counted = script.count(clock, failure).await;
        answers.push((counted.count, counted.claimed));
    }
    assert_eq!(answers, vec![(1, false), (2, false), (3, false), (4, true)]);
    // A failure sent late (buffered while the engine was away) counts with its age: one
    // older than findtime adds nothing.
    let clock = SystemTime::now();
    let old = sshd_failure(
        "a",
        100,
        "198.51.100.99",
        clock - Duration::from_secs(601),
        4,
    );
    let counted = script.count(clock, old).await;
    assert_eq!((counted.count, counted.claimed), (0, false));
}

/// The count script on a connection of its own, for the tests that call it directly.
struct CountScript {
    conn: syslog2ban::cluster::resp::Connection,
    keys: syslog2ban::cluster::engine::Keys,
    sha: String,
}

impl CountScript {
    /// Connected to the engine at `port`, for the keys under `prefix`, the script loaded.
    async fn on(port: u16, prefix: &str) -> CountScript {
        use syslog2ban::cluster::engine::Keys;
        use syslog2ban::cluster::resp::Connection;
        use syslog2ban::config::EngineUrl;
        let url = EngineUrl::parse(&format!("redis://127.0.0.1:{port}")).expect("an engine url");
        let mut conn = Connection::connect(&url, None, Duration::from_secs(5))
            .await
            .expect("connect");
        let keys = Keys::new(prefix);
        let sha = keys.load_script(&mut conn).await.expect("load the script");
        CountScript { conn, keys, sha }
    }

    /// Counts `failures` in one call, `now` the sending collector's clock.
    async fn count_all(
        &mut self,
        now: SystemTime,
        failures: &[syslog2ban::cluster::engine::CountArgs<'_>],
    ) -> Vec<syslog2ban::cluster::engine::Counted> {
        let (mut commands, mut counted) = (Vec::new(), Vec::new());
        self.keys
            .count_all(
                &mut self.conn,
                &mut self.sha,
                now,
                failures,
                &mut commands,
                &mut counted,
            )
            .await
            .expect("counted");
        counted
    }

    /// Counts one failure.
    async fn count(
        &mut self,
        now: SystemTime,
        failure: syslog2ban::cluster::engine::CountArgs<'_>,
    ) -> syslog2ban::cluster::engine::Counted {
        self.count_all(now, &[failure]).await.remove(0)
    }
}

/// A failed password of `address` in the sshd jail (findtime 10 minutes), collector `node`'s
/// `sequence`th, at `at` on its clock.
fn sshd_failure<'a>(
    node: &'a str,
    sequence: u64,
    address: &str,
    at: SystemTime,
    maxretry: u32,
) -> syslog2ban::cluster::engine::CountArgs<'a> {
    use syslog2ban::cluster::engine::{millis, CountArgs, FailureId};
    CountArgs {
        jail: "sshd",
        target: address.parse().expect("an address"),
        at_ms: millis(at),
        findtime_ms: 600_000,
        claim_ms: 600_000,
        maxretry,
        weight: 1,
        member: FailureId {
            node,
            started_ms: 1,
            sequence,
            entry: None,
        },
        origin: None,
    }
}

/// The claim on `address` in the sshd jail, taken on the engine at `port` by a collector
/// named `node` through the count script (as that collector's fifth failure would).
async fn claim_as(port: u16, address: &str, node: &str) {
    claim_as_from(port, address, node, None).await;
}

/// As `claim_as`, in a jail counting per sender: the claim of `sender`'s count.
async fn claim_as_from(port: u16, address: &str, node: &str, sender: Option<&str>) {
    let mut script = CountScript::on(port, "syslog2ban").await;
    let now = SystemTime::now();
    let claim = syslog2ban::cluster::engine::CountArgs {
        origin: sender,
        ..sshd_failure(node, 1, address, now, 1)
    };
    assert!(
        script.count(now, claim).await.claimed,
        "{node} takes the claim"
    );
}

/// A collector that took an attacker's claim and stopped before publishing its ban: the
/// collector whose own count banned the attacker held its ban back for that one's, and
/// publishes it once that one's is overdue, so the other collectors get it; and announces
/// it, since the holder never will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_held_back_for_a_claim_holder_that_never_publishes_it_reaches_the_others() {
    if !redis_present() {
        return;
    }
    let (engine, hook, a, b) = notifying_pair().await;
    claim_as(engine.port, ATTACKER, "ghost").await;
    send_failures(a.port, ATTACKER, 5);
    assert!(
        until(Duration::from_secs(2), async || holds(&a.socket, ATTACKER)
            .await)
        .await,
        "a bans on its own count"
    );
    // Held back: the claim is ghost's, whose ban would come within seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!holds(&b.socket, ATTACKER).await);
    assert_eq!(stream_entries(engine.port, ATTACKER).await, 0);
    // Ten seconds after its decision, a publishes it.
    assert!(
        until(Duration::from_secs(12), async || holds(&b.socket, ATTACKER)
            .await)
        .await,
        "b never got the ban: {:?}",
        cluster_status(&a.socket).await
    );
    assert_eq!(stream_entries(engine.port, ATTACKER).await, 1);
    // Not announced while it was the holder's; announced once after it was published here.
    announced_once(&hook).await;
    a.down().await;
    b.down().await;
}

/// In a jail counting per sender, a claim another collector holds on one sender's count of
/// an attacker says nothing of another sender's: a ban this collector decides on that
/// other sender's count is its own, announced and published at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_senders_claim_elsewhere_leaves_a_ban_decided_here_this_collectors() {
    if !redis_present() {
        return;
    }
    let engine = Engine::start(free_port());
    let mut hook = Receiver::new().await;
    hook.up().await;
    let per_origin = |node: &str| {
        let setup = collector(node, engine.port, Some(hook.port));
        setup.add_to_jail("count_per_origin = true");
        setup
    };
    let a = launch(per_origin("a")).await;
    let b = launch(per_origin("b")).await;
    // ghost holds 127.0.0.2's claim; a learns so from that sender's next failure.
    claim_as_from(engine.port, ATTACKER, "ghost", Some("127.0.0.2")).await;
    send_failures_from("127.0.0.2", a.port, ATTACKER, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 127.0.0.3's five: a's own ban, on b at once (not held back for ghost's).
    send_failures_from("127.0.0.3", a.port, ATTACKER, 5);
    assert!(
        all_within(Duration::from_secs(3), &[&a, &b], true).await,
        "a: {:?} b: {:?}",
        cluster_status(&a.socket).await,
        cluster_status(&b.socket).await
    );
    announced_once(&hook).await;
    a.down().await;
    b.down().await;
}

/// A replica listed first is passed over for the primary; after a failover (the replica
/// promoted, the old primary made its replica, so the last ban it took is lost) the collector
/// writes to the new primary and publishes its active bans there again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_writes_to_the_primary_and_after_a_failover_publishes_its_bans_again() {
    if !redis_present() {
        return;
    }
    let (first, second) = ("198.51.100.61", "198.51.100.62");
    let primary = Engine::start(free_port());
    let replica = Engine::start_replica(free_port(), primary.port);
    let a = launch(collector_on("a", &[replica.port, primary.port], None)).await;
    send_failures(a.port, first, 5);
    assert!(
        until(Duration::from_secs(3), async || {
            stream_entries(replica.port, first).await == 1
        })
        .await,
        "the ban never reached the primary (and its replica): {:?}",
        cluster_status(&a.socket).await
    );
    assert!(!cluster_status(&a.socket).await.degraded);
    // The failover: the replica stops copying and takes writes; a ban then goes to the old
    // primary alone, which becomes the new one's replica and so loses it.
    replica.command(&["REPLICAOF", "NO", "ONE"]).await;
    send_failures(a.port, second, 5);
    assert!(
        until(Duration::from_secs(3), async || {
            stream_entries(primary.port, second).await == 1
        })
        .await
    );
    let promoted = replica.port.to_string();
    primary
        .command(&["REPLICAOF", "127.0.0.1", &promoted])
        .await;
    assert!(
        until(Duration::from_secs(8), async || {
            stream_entries(replica.port, second).await >= 1
                && !cluster_status(&a.socket).await.degraded
        })
        .await,
        "the lost ban was not published to the new primary: {:?}",
        cluster_status(&a.socket).await
    );
    assert!(stream_entries(replica.port, first).await >= 1);
    a.down().await;
}

/// With sentinels configured, a collector whose primary dies writes to the replica the
/// sentinels promote, though `urls` names only the dead one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinels_lead_a_collector_to_the_primary_they_promote() {
    if !redis_present() {
        return;
    }
    let (before, after) = ("198.51.100.63", "198.51.100.64");
    let primary = Engine::start(free_port());
    let replica = Engine::start_replica(free_port(), primary.port);
    // The sentinel learns of the replica from the primary: only once it is in step.
    assert!(
        until(Duration::from_secs(5), async || {
            replica.info_has("master_link_status:up").await
        })
        .await,
        "the replica never caught up"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sentinel = Engine::start_sentinel(free_port(), primary.port, "engine", dir.path());
    let sentinels = format!(
        "sentinels = [\"redis://127.0.0.1:{}\"]\nsentinel_master = \"engine\"",
        sentinel.port
    );
    let a = launch(collector_with("a", &[primary.port], None, &sentinels)).await;
    send_failures(a.port, before, 5);
    assert!(
        until(Duration::from_secs(3), async || {
            stream_entries(primary.port, before).await == 1
        })
        .await
    );
    drop(primary);
    assert!(
        until(Duration::from_secs(15), async || {
            replica.info_has("role:master").await
        })
        .await,
        "the sentinel never promoted the replica"
    );
    send_failures(a.port, after, 5);
    assert!(
        until(Duration::from_secs(8), async || {
            stream_entries(replica.port, after).await >= 1
                && !cluster_status(&a.socket).await.degraded
        })
        .await,
        "the collector never reached the promoted primary: {:?}",
        cluster_status(&a.socket).await
    );
    a.down().await;
    drop(sentinel);
}

/// A collector named `node` as `collector` makes it, with a journal-upload listener on
/// `journal` too.
fn collector_with_journal(node: &str, engine: u16, journal: u16) -> Setup {
    let setup = collector(node, engine, None);
    let main = setup.dir.path().join("syslog2ban.toml");
    let text = std::fs::read_to_string(&main).expect("read config");
    std::fs::write(
        &main,
        format!(
            "{text}\n[[listen]]\ntype = \"journal-upload\"\naddress = \"127.0.0.1:{journal}\"\n"
        ),
    )
    .expect("write config");
    setup
}

/// Uploads journal entries (cursor numbers `seqnums`, each a failed password of `address`)
/// to the journal-upload listener on `port`, as systemd-journal-upload does; waits for the
/// answer.
fn upload_entries(port: u16, address: &str, seqnums: &[u32]) {
    use std::io::{Read, Write};
    let mut body = String::new();
    for seqnum in seqnums {
        body.push_str(&format!(
            "__CURSOR=s=5f1e0c55;i={seqnum:x};b=0a1b2c3d;m={seqnum:x};t=6;x=9\n\
             __REALTIME_TIMESTAMP=1764892800000000\n_HOSTNAME=web1\nSYSLOG_IDENTIFIER=sshd\n\
             _PID=4242\nMESSAGE=Failed password for root from {address} port 4242 ssh2\n\n"
        ));
    }
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/vnd.fdo.journal\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
}

/// systemd-journal-upload failing over resends, to the next collector, entries the first one
/// may have counted already: they count once in the shared count (maxretry 5: entries 1-3
/// through a, then 2-4 through b, is four failures, not six), and the fifth bans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_entries_resent_to_another_collector_count_once() {
    if !redis_present() {
        return;
    }
    let engine = Engine::start(free_port());
    let (journal_a, journal_b) = (free_port(), free_port());
    let a = launch(collector_with_journal("a", engine.port, journal_a)).await;
    let b = launch(collector_with_journal("b", engine.port, journal_b)).await;
    wait_listening(journal_a, "a's journal listener");
    wait_listening(journal_b, "b's journal listener");
    upload_entries(journal_a, ATTACKER, &[1, 2, 3]);
    upload_entries(journal_b, ATTACKER, &[2, 3, 4]);
    // Each collector's own count stays below 5; a double count would ban now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for socket in [&a.socket, &b.socket] {
        assert!(!holds(socket, ATTACKER).await, "banned on a resent entry");
    }
    upload_entries(journal_b, ATTACKER, &[5]);
    assert!(
        until(Duration::from_secs(3), async || holds(&a.socket, ATTACKER)
            .await
            && holds(&b.socket, ATTACKER).await)
        .await,
        "the fifth entry did not ban: {:?}",
        cluster_status(&b.socket).await
    );
    let (a, b) = (a.down().await, b.down().await);
    assert_eq!(
        [stored_failures(&a, ATTACKER), stored_failures(&b, ATTACKER)].concat(),
        vec![5, 5]
    );
}

/// A collector whose own decisions come faster than its round trips to the engine (a storm:
/// every local decision queues the attacker's claim) still publishes the bans it decides,
/// not only once the claims pause: the other collectors would count those attackers on and
/// decide their bans themselves meanwhile (a storm's bans were published 2-3 s late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_decided_here_is_published_while_claims_keep_coming() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use syslog2ban::cluster::{ClaimedElsewhere, Links, Published, SharedBan, SharedFailure};
    use syslog2ban::config::{ClusterConfig, EngineUrl, JailName, NodeName};
    use syslog2ban::input::Origin;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;
    if !redis_present() {
        return;
    }
    const CLAIMS: usize = 300_000;
    let engine = Engine::start(free_port());
    let state = tempfile::tempdir().unwrap();
    let config = ClusterConfig {
        urls: vec![EngineUrl::parse(&format!("redis://127.0.0.1:{}", engine.port)).unwrap()],
        sentinel: None,
        node: NodeName::new("a").unwrap(),
        prefix: "syslog2ban".into(),
        timeout: Duration::from_secs(5),
        ca_file: None,
        buffer: 10_000,
        announce_delay: ANNOUNCE_DELAY,
    };
    let jail = JailName::new("sshd").unwrap();
    let (_failures_tx, failures) = mpsc::channel(16);
    let (reached_tx, reached) = mpsc::channel(64);
    let (decided_tx, decided) = mpsc::channel(16);
    let (offences, _offences_rx) = mpsc::channel(1024);
    let (to_ban, _to_ban_rx) = mpsc::channel(1024);
    let links = Links {
        failures,
        reached,
        decided,
        offences,
        to_ban,
        claims: Arc::new(ClaimedElsewhere::default()),
        jails: vec![jail.clone()],
    };
    let stop = CancellationToken::new();
    let metrics = Arc::new(syslog2ban::metrics::Metrics::default());
    let cluster = tokio::spawn(syslog2ban::cluster::run(
        config,
        state.path().to_path_buf(),
        links,
        metrics.clone(),
        stop.clone(),
    ));
    // The storm's local decisions: each attacker's failure that reached maxretry, its claim
    // queued as fast as the counter takes them.
    let sent = Arc::new(AtomicUsize::new(0));
    let feeder = tokio::spawn({
        let (sent, jail) = (sent.clone(), jail.clone());
        async move {
            for i in 0..CLAIMS {
                let claim = SharedFailure {
                    jail: jail.clone(),
                    target: std::net::IpAddr::from(std::net::Ipv4Addr::from(
                        0xc612_0000 + i as u32,
                    ))
                    .into(),
                    weight: 1,
                    maxretry: 3,
                    findtime: Duration::from_secs(600),
                    claim_for: Duration::from_secs(600),
                    at: SystemTime::now(),
                    origin: Origin::Local,
                    origin_name: None,
                    sample: "Failed password for root".into(),
                    entry: None,
                    reached: true,
                    per_origin: false,
                };
                if reached_tx.send(claim).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    assert!(
        until(Duration::from_secs(10), async || sent
            .load(Ordering::Relaxed)
            > 1000)
        .await,
        "the counter takes the claims"
    );
    let ban = SharedBan {
        node: "a".into(),
        jail: "sshd".into(),
        address: ATTACKER.parse().unwrap(),
        failures: 3,
        origin: "local".into(),
        started: SystemTime::now(),
        expires: Some(SystemTime::now() + Duration::from_secs(3600)),
        sample: "Failed password for root".into(),
        republished: false,
        decided_by: None,
        more_origins: Vec::new(),
        placement: None,
    };
    decided_tx.send(Published::Ban(ban)).await.unwrap();
    let published = until(Duration::from_secs(20), async || {
        stream_entries(engine.port, ATTACKER).await > 0
    })
    .await;
    let claims_by_then = sent.load(Ordering::Relaxed);
    feeder.abort();
    stop.cancel();
    let _ = cluster.await;
    assert!(published, "the ban was never published");
    assert!(
        claims_by_then < CLAIMS,
        "the ban was published only once the claims stopped ({claims_by_then} of {CLAIMS})"
    );
    // And how late it went out is in the metrics, once.
    let rendered = metrics.cluster.render(0);
    assert!(
        rendered.contains("\nsyslog2ban_cluster_publish_delay_seconds_count 1\n"),
        "{rendered}"
    );
}
