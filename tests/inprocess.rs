//! The whole daemon in this process, without root: `daemon::run` on loopback with the `log`
//! backend (bans are decided, stored and logged; no firewall), driven over a real TCP socket and
//! its real control socket. Covers ingest → ban → expiry, a manual ban and unban, reload, and
//! the death of each stage (the supervisor's test hook), which must end `run` with an error
//! naming the stage. One test runs the daemon on paused tokio time: an hour's ban ends when the
//! test advances the clock by an hour. The root-only tests with real nft and peers are in `integration/`.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use syslog2ban::control::protocol::{Request, Response};
use syslog2ban::daemon::{self, DaemonError, RunOptions};
use tokio::sync::oneshot;

/// A config in a temporary directory: one TCP listener on loopback port 0 (the kernel picks
/// one; `status` reports it), the log backend, an sshd jail with 3 failures and a 2 s bantime.
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
}

impl Setup {
    pub(crate) fn new(extra: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let main = format!(
            "[[listen]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
             [ban]\nbackend = \"log\"\n\n[control]\nsocket = \"{}\"\n\n[state]\ndir = \"{}\"\n{extra}",
            dir.path().join("ctl.sock").display(),
            dir.path().join("state").display(),
        );
        std::fs::write(dir.path().join("syslog2ban.toml"), main).expect("write config");
        std::fs::create_dir_all(dir.path().join("conf.d")).expect("conf.d");
        let setup = Setup { dir };
        setup.jail(3);
        setup
    }

    pub(crate) fn jail(&self, maxretry: u32) {
        self.jail_banning_for(maxretry, "2s");
    }

    pub(crate) fn jail_banning_for(&self, maxretry: u32, bantime: &str) {
        let jail = format!(
            "[jail.sshd]\nenabled = true\nprograms = [\"sshd\"]\n\
             failregex = ['^Failed password for \\S+ from <HOST> port \\d+ ssh2$']\n\
             maxretry = {maxretry}\nfindtime = \"10m\"\nbantime = \"{bantime}\"\n"
        );
        std::fs::write(self.dir.path().join("conf.d/sshd.toml"), jail).expect("write jail");
    }

    /// Appends `lines` (TOML keys) to the sshd jail `jail_banning_for` wrote.
    pub(crate) fn add_to_jail(&self, lines: &str) {
        let file = self.dir.path().join("conf.d/sshd.toml");
        let jail = std::fs::read_to_string(&file).expect("read jail");
        std::fs::write(&file, format!("{jail}{lines}\n")).expect("write jail");
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.path().join("ctl.sock")
    }

    /// Starts the daemon on its own task; returns its result's channel and the stop switch.
    pub(crate) fn start(
        &self,
        kill_stage: Option<&str>,
    ) -> (
        tokio::task::JoinHandle<Result<(), DaemonError>>,
        oneshot::Sender<()>,
    ) {
        self.start_with(kill_stage, false)
    }

    pub(crate) fn start_with(
        &self,
        kill_stage: Option<&str>,
        dry_run: bool,
    ) -> (
        tokio::task::JoinHandle<Result<(), DaemonError>>,
        oneshot::Sender<()>,
    ) {
        let config = syslog2ban::config::load(self.dir.path()).expect("config loads");
        let options = RunOptions {
            dry_run,
            config_path: self.dir.path().to_path_buf(),
            kill_stage: kill_stage.map(|s| (s.to_string(), Duration::from_millis(300))),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let run = tokio::spawn(daemon::run(config, options, async {
            let _ = stopped.await;
        }));
        (run, stop)
    }
}

/// One control request, off the async workers (the client is blocking).
pub(crate) async fn ask(socket: &Path, request: Request) -> Option<Response> {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || syslog2ban::control::call(&socket, &request).ok())
        .await
        .ok()
        .flatten()
}

/// The port the TCP listener was bound to, as `status` reports it.
pub(crate) async fn bound_port(socket: &Path) -> u16 {
    match ask(socket, Request::Status).await {
        Some(Response::Status(status)) => status.listeners[0]
            .bound
            .as_deref()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .expect("a bound address")
            .port(),
        other => panic!("status: {other:?}"),
    }
}

pub(crate) async fn banned(socket: &Path) -> Vec<String> {
    match ask(socket, Request::Banned).await {
        Some(Response::Banned { bans }) => {
            bans.into_iter().map(|b| b.address.to_string()).collect()
        }
        other => panic!("banned: {other:?}"),
    }
}

/// Stops the daemon; it must end within 10 s without an error.
pub(crate) async fn stop_cleanly(
    run: tokio::task::JoinHandle<Result<(), DaemonError>>,
    stop: oneshot::Sender<()>,
) {
    let _ = stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the daemon stops")
        .expect("no panic");
    assert!(result.is_ok(), "{result:?}");
}

/// Until the control socket answers (the daemon is up); fails the test after 10 s.
pub(crate) async fn wait_answering(socket: &Path) {
    assert!(
        until(Duration::from_secs(10), async || ask(
            socket,
            Request::Status
        )
        .await
        .is_some())
        .await,
        "the control socket never answered"
    );
}

pub(crate) async fn until(within: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A loopback port free at the moment (for a peer the test starts).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Until something listens on loopback `port`; fails the test after 10 s naming `what`.
pub(crate) fn wait_listening(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn send_failures(port: u16, address: &str, n: usize) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    for _ in 0..n {
        send_on(&mut stream, address);
    }
}

/// As [`send_failures`], from the loopback address `source` (another sender).
pub(crate) fn send_failures_from(source: &str, port: u16, address: &str, n: usize) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let from: std::net::SocketAddr = format!("{source}:0").parse().expect("a source address");
    socket.bind(&from.into()).expect("bind the source");
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    socket.connect(&to.into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    for _ in 0..n {
        send_on(&mut stream, address);
    }
}

/// One octet-counted failure of `address` on `stream`.
pub(crate) fn send_on(stream: &mut TcpStream, address: &str) {
    let frame = format!("<38>1 2026-12-03T10:00:00Z web1 sshd 4242 - - Failed password for root from {address} port 4242 ssh2");
    write!(stream, "{} {frame}", frame.len()).expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_ban_expiry_manual_ban_unban_and_reload() {
    let setup = Setup::new("");
    let (run, stop) = setup.start(None);
    let socket = setup.socket();
    wait_answering(&socket).await;
    let port = bound_port(&socket).await;
    assert_ne!(port, 0);

    // Two failures: counted, no ban; the third bans.
    send_failures(port, "203.0.113.5", 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(banned(&socket).await.is_empty());
    send_failures(port, "203.0.113.5", 1);
    assert!(
        until(Duration::from_secs(5), async || banned(&socket).await
            == ["203.0.113.5"])
        .await,
        "three failures should ban"
    );
    // The 2 s bantime ends the ban.
    assert!(
        until(Duration::from_secs(6), async || banned(&socket)
            .await
            .is_empty())
        .await,
        "the ban should expire after its bantime"
    );

    // By hand: ban, then unban.
    let manual = |address: &str, force: bool| Request::Ban {
        jail: "sshd".into(),
        address: address.into(),
        force,
        place: Vec::new(),
        origin: None,
    };
    let answer = ask(&socket, manual("198.51.100.9", false)).await;
    assert!(matches!(answer, Some(Response::Done { .. })), "{answer:?}");
    assert_eq!(banned(&socket).await, ["198.51.100.9"]);
    // The jail's ignoreip (127.0.0.0/8 by default) holds for manual bans unless forced.
    let answer = ask(&socket, manual("127.0.0.1", false)).await;
    assert!(
        matches!(&answer, Some(Response::Error { message }) if message.contains("ignoreip") && message.contains("--force")),
        "{answer:?}"
    );
    assert_eq!(banned(&socket).await, ["198.51.100.9"]);
    let answer = ask(&socket, manual("127.0.0.1", true)).await;
    assert!(matches!(answer, Some(Response::Done { .. })), "{answer:?}");
    let answer = ask(
        &socket,
        Request::Unban {
            address: "127.0.0.1".into(),
        },
    )
    .await;
    assert!(matches!(answer, Some(Response::Done { .. })), "{answer:?}");
    let answer = ask(
        &socket,
        Request::Unban {
            address: "198.51.100.9".into(),
        },
    )
    .await;
    assert!(matches!(answer, Some(Response::Done { .. })), "{answer:?}");
    assert!(banned(&socket).await.is_empty());

    // A connection open across a reload that changes the jail (maxretry 3 -> 2): the
    // unchanged listener keeps it, and its next failure counts under the new jail.
    let mut open = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    send_on(&mut open, "203.0.113.6");
    tokio::time::sleep(Duration::from_millis(200)).await;
    setup.jail(2);
    let answer = ask(&socket, Request::Reload).await;
    assert!(
        matches!(&answer, Some(Response::Done { message }) if message.contains("0 stopped, 0 started")),
        "{answer:?}"
    );
    send_on(&mut open, "203.0.113.6");
    assert!(
        until(Duration::from_secs(5), async || banned(&socket).await
            == ["203.0.113.6"])
        .await,
        "the connection opened before the reload should still deliver, under maxretry 2"
    );

    stop_cleanly(run, stop).await;
}

/// The daemon on a current-thread runtime, whose clock the test pauses and moves: the ban
/// manager, windows and expiry run on tokio's clock (`syslog2ban::clock`). The clock is paused
/// only around the jump: while it is paused, tokio moves it on by itself whenever the runtime
/// waits, which would also time out the test's own sockets.
#[tokio::test(flavor = "current_thread")]
async fn an_hours_ban_ends_when_tokio_time_moves_an_hour() {
    let setup = Setup::new("");
    setup.jail_banning_for(3, "1h");
    let (run, stop) = setup.start(None);
    let socket = setup.socket();
    wait_answering(&socket).await;
    let port = bound_port(&socket).await;
    send_failures(port, "203.0.113.7", 3);
    assert!(
        until(Duration::from_secs(5), async || banned(&socket).await
            == ["203.0.113.7"])
        .await,
        "three failures should ban"
    );

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3599)).await;
    tokio::time::resume();
    // A second before the end, still banned (the manager has had the turn it needed).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(banned(&socket).await, ["203.0.113.7"]);

    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(2)).await;
    tokio::time::resume();
    assert!(
        until(Duration::from_secs(5), async || banned(&socket)
            .await
            .is_empty())
        .await,
        "an hour of tokio time should end the hour's ban"
    );

    stop_cleanly(run, stop).await;
}

/// fail2ban-client's get/set: a changed maxretry is in effect for the next failure; a set
/// without --persist lasts until the next reload, one with --persist survives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_set_change_a_jail_now_and_persist_when_asked() {
    let setup = Setup::new("");
    let socket = setup.socket();
    let (run, stop) = setup.start(None);
    wait_answering(&socket).await;
    let get = async |key: &str| match ask(
        &socket,
        Request::Get {
            jail: "sshd".into(),
            key: key.into(),
        },
    )
    .await
    {
        Some(Response::Setting { value, .. }) => value,
        other => panic!("get {key}: {other:?}"),
    };
    let set = async |key: &str, value: &str, persist: bool| {
        ask(
            &socket,
            Request::Set {
                jail: "sshd".into(),
                key: key.into(),
                value: value.into(),
                persist,
            },
        )
        .await
    };
    assert_eq!(get("maxretry").await, "3");
    assert_eq!(get("bantime").await, "2s");
    let bad = set("maxretry", "0", false).await;
    assert!(matches!(bad, Some(Response::Error { .. })), "{bad:?}");
    let done = set("maxretry", "1", false).await;
    assert!(
        matches!(&done, Some(Response::Setting { value, .. }) if value == "1"),
        "{done:?}"
    );
    send_failures(bound_port(&socket).await, "203.0.113.9", 1);
    assert!(
        until(Duration::from_secs(5), async || banned(&socket).await
            == ["203.0.113.9"])
        .await,
        "one failure bans once maxretry is set to 1"
    );
    let done = set("bantime", "1h 30m", true).await;
    assert!(
        matches!(&done, Some(Response::Setting { value, .. }) if value == "1h 30m"),
        "{done:?}"
    );
    let persisted = setup.dir.path().join("conf.d/zz-set.toml");
    assert!(
        persisted.exists(),
        "set --persist writes conf.d/zz-set.toml"
    );

    let answer = ask(&socket, Request::Reload).await;
    assert!(matches!(answer, Some(Response::Done { .. })), "{answer:?}");
    assert_eq!(
        get("maxretry").await,
        "3",
        "a set without --persist ends at reload"
    );
    assert_eq!(
        get("bantime").await,
        "1h 30m",
        "a persisted set survives reload"
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
}

/// A ban decided in a dry run is never restored: the next real start has no bans and the
/// state directory holds no database the dry run wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_leaves_no_ban_behind() {
    let setup = Setup::new("");
    setup.jail_banning_for(3, "1h");
    let socket = setup.socket();

    let (run, stop) = setup.start_with(None, true);
    wait_answering(&socket).await;
    send_failures(bound_port(&socket).await, "203.0.113.8", 3);
    assert!(
        until(Duration::from_secs(5), async || banned(&socket).await
            == ["203.0.113.8"])
        .await,
        "the dry run decides the ban"
    );
    // The CLI finds the daemon through the same configuration (`[control] socket`).
    let dir = setup.dir.path().to_path_buf();
    let cli = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_syslog2ban"))
            .args(["banned", "--config"])
            .arg(&dir)
            .output()
            .expect("run the CLI")
    })
    .await
    .expect("join");
    let listed = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success() && listed.contains("203.0.113.8"),
        "banned --config: {listed} {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let _ = stop.send(());
    let stopped = tokio::time::timeout(Duration::from_secs(10), run).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    let db = setup
        .dir
        .path()
        .join("state")
        .join(syslog2ban::ban::store::DB_FILE);
    assert!(!db.exists(), "the dry run wrote {}", db.display());

    let (run, stop) = setup.start_with(None, false);
    wait_answering(&socket).await;
    assert!(banned(&socket).await.is_empty(), "a dry-run ban came back");
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stage_that_dies_ends_the_daemon_with_an_error_naming_it() {
    for stage in syslog2ban::supervise::stage::ALL {
        let setup = Setup::new("\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
        let (run, _stop) = setup.start(Some(stage));
        let result = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .unwrap_or_else(|_| panic!("killing {stage} did not stop the daemon"))
            .expect("no panic");
        match result {
            Err(DaemonError::StageDied { stage: died, .. }) => assert_eq!(died, stage),
            other => panic!("killing {stage}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_host_name_never_becomes_a_bans_origin() {
    let setup = Setup::new("");
    setup.jail_banning_for(3, "1h");
    let config = setup.dir.path().join("syslog2ban.toml");
    let main = std::fs::read_to_string(&config).expect("read config");
    let trusting = main.replace(
        "address = \"127.0.0.1:0\"\n",
        "address = \"127.0.0.1:0\"\ntrust_hostname = true\n",
    );
    std::fs::write(&config, trusting).expect("write config");
    let socket = setup.socket();
    let (run, stop) = setup.start(None);
    wait_answering(&socket).await;
    let port = bound_port(&socket).await;
    // One attacker through a sender naming its host, one through a sender whose host name
    // carries a line break and a terminal escape (a space would end the host name).
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    for (host, attacker) in [
        ("web1", "203.0.113.21"),
        ("web1\nINFO\u{1b}[2Jforged", "203.0.113.22"),
    ] {
        for _ in 0..3 {
            let frame = format!("<38>1 2026-12-03T10:00:00Z {host} sshd 4242 - - Failed password for root from {attacker} port 4242 ssh2");
            write!(stream, "{} {frame}", frame.len()).expect("send");
        }
    }
    let origins = async || match ask(&socket, Request::Banned).await {
        Some(Response::Banned { bans }) => bans
            .into_iter()
            .map(|b| (b.address.to_string(), b.origin))
            .collect::<Vec<_>>(),
        other => panic!("banned: {other:?}"),
    };
    assert!(
        until(Duration::from_secs(10), async || origins().await.len() == 2).await,
        "both attackers are banned: {:?}",
        origins().await
    );
    let mut got = origins().await;
    got.sort();
    assert_eq!(
        got,
        [
            ("203.0.113.21".to_string(), "web1".to_string()),
            // No host then: the sender's address names where the attack was seen.
            ("203.0.113.22".to_string(), "127.0.0.1".to_string()),
        ]
    );
    stop_cleanly(run, stop).await;
}
