//! Two collectors on one engine, in network namespaces (on the fleet test bed): a real
//! `redis-server`, two syslog2ban daemons each enforcing on its own nftables and on server A
//! over SSH (each in its own table there), and server B as the web server whose rsyslog
//! forwards to collector ONE and fails over to TWO (examples/clients/rsyslog-failover.conf's
//! chain).
//!
//! ```text
//!  ONE (Lab.srv)  br0 198.51.100.1/24   syslog2ban tcp :5514, nft; redis-server TLS :6379
//!      ├── TWO  eth0 198.51.100.2/24    syslog2ban tcp :5514, nft
//!      ├── A    eth0 198.51.100.10/24   sshd :2222, nft: tables syslog2ban_one, syslog2ban_two
//!      ├── B    eth0 198.51.100.20/24   rsyslogd: imuxsock -> ONE, failing over to TWO
//!      └── ATTACKER
//! ```
//! What a user checks: the attacker's address in each collector's nft set and in A's. The
//! engine is reached as a production one should be: over TLS (its certificate from a CA the
//! collectors are given in `ca_file`) as an ACL user with a password, the default user off.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::fleet_lab::{Fleet, A_IP, COLLECTOR_IP, PORT};
use crate::lab::{
    kill_pid, tool, wait_until, DAEMON_BIN, JOURNAL_UPLOAD_PORT, NFT_TABLE, SYSLOG_TCP_PORT,
};

const TWO_IP: &str = "198.51.100.2";
const ATTACKER: &str = "198.51.100.66";
/// What the fleet bed needs, and the engine, rsyslog and its client.
const MORE_TOOLS: &[&str] = &["redis-server", "rsyslogd", "logger", "kill", "openssl"];
/// The collectors' ACL user and password on the engine.
const ENGINE_USER: &str = "syslog2ban";
const ENGINE_PASSWORD: &str = "s2b-cluster-pw";
/// The user's rules: the README's (Several collectors, the engine's user), word for word.
const ENGINE_ACL: &str = "resetkeys ~syslog2ban:* resetchannels -@all +ping +info +select +time \
    +evalsha +script|load +get +set +del +hset +hget +hgetall +hdel +xadd +xread +xrevrange \
    +smembers +zadd +zremrangebyscore +zcard +pexpire +sadd";

struct Cluster {
    fleet: Fleet,
    one: String,
    two: String,
    web: String,
    devlog: PathBuf,
    /// The CA of the engine's certificate, the collectors' `ca_file`.
    engine_ca: PathBuf,
}

impl Cluster {
    fn new(test: &str) -> Cluster {
        let mut fleet = Fleet::new(test);
        let one = fleet.lab.srv.clone();
        let two = format!("{}-two", fleet.lab.id);
        let lab = &mut fleet.lab;
        lab.add_netns(&two);
        // Created in ONE with the peer moved straight into TWO: nothing ever appears in the
        // root namespace.
        lab.ip(&[
            "-n", &one, "link", "add", "v-two", "type", "veth", "peer", "name", "eth0", "netns",
            &two,
        ]);
        lab.ip(&["-n", &one, "link", "set", "v-two", "master", "br0", "up"]);
        lab.ip(&["-n", &two, "link", "set", "eth0", "up"]);
        lab.ip(&[
            "-n",
            &two,
            "addr",
            "add",
            &format!("{TWO_IP}/24"),
            "dev",
            "eth0",
        ]);
        let pki = lab.dir.join("engine-pki");
        fs::create_dir_all(&pki).expect("mkdir engine-pki");
        crate::tls::make_pki(&pki, "engine-ca", &[("engine", COLLECTOR_IP)]);
        let file = |name: &str| pki.join(name).display().to_string();
        let redis = tool("redis-server").display().to_string();
        let password = format!(">{ENGINE_PASSWORD}");
        let argv: Vec<&str> = vec![
            &redis,
            "--bind",
            COLLECTOR_IP,
            "--port",
            "0",
            "--tls-port",
            "6379",
            "--tls-cert-file",
        ];
        let (cert, key, ca) = (
            file("engine.pem"),
            file("engine.key"),
            file("engine-ca.pem"),
        );
        let argv: Vec<&str> = argv
            .into_iter()
            .chain([
                cert.as_str(),
                "--tls-key-file",
                key.as_str(),
                "--tls-ca-cert-file",
                ca.as_str(),
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--user",
                ENGINE_USER,
                "on",
                password.as_str(),
            ])
            // The least a collector needs, as the README lists it: its keys only, and its
            // commands (the count script's included: scripts run under the caller's ACL).
            .chain(ENGINE_ACL.split(' '))
            .chain(["--user", "default", "off"])
            .collect();
        let argv: Vec<&std::ffi::OsStr> = argv.iter().map(|a| a.as_ref()).collect();
        lab.spawn("redis-server", &one, &argv, &[]);
        let engine_ns = one.clone();
        lab.wait_ready(
            "redis-server",
            "tcp :6379",
            Duration::from_secs(10),
            move |lab| lab.listening_in(&engine_ns, false, &format!("{COLLECTOR_IP}:6379")),
        );
        let devlog = lab.dir.join("web-devlog");
        let web = fleet.b.clone();
        let mut cluster = Cluster {
            fleet,
            one,
            two,
            web,
            devlog,
            engine_ca: pki.join("engine-ca.pem"),
        };
        cluster.start_rsyslog();
        cluster
    }

    fn dir(&self, node: &str) -> PathBuf {
        self.fleet.lab.dir.join(node)
    }

    fn socket(&self, node: &str) -> PathBuf {
        self.dir(node).join("ctl.sock")
    }

    /// Writes `node`'s config (first time) and starts it in `ns` as process `label`; returns
    /// once its table exists and it listens.
    fn start_collector(&mut self, node: &str, ns: &str, ip: &str, label: &str) -> u32 {
        self.start_collector_with(node, ns, ip, label, &[])
    }

    /// As `start_collector`, with `env` added to the daemon's environment.
    fn start_collector_with(
        &mut self,
        node: &str,
        ns: &str,
        ip: &str,
        label: &str,
        env: &[(&str, &str)],
    ) -> u32 {
        let dir = self.dir(node);
        let conf_d = dir.join("conf.d");
        fs::create_dir_all(&conf_d).expect("mkdir conf.d");
        let ssh_config = dir.join("ssh_config");
        fs::write(
            &ssh_config,
            "# empty: only the target's own settings apply\n",
        )
        .expect("write ssh_config");
        fs::write(
            dir.join("syslog2ban.toml"),
            format!(
                "[[listen]]\ntype = \"tcp\"\naddress = \"{ip}:{SYSLOG_TCP_PORT}\"\n\n\
                 [[listen]]\ntype = \"journal-upload\"\naddress = \"{ip}:{JOURNAL_UPLOAD_PORT}\"\n\n\
                 [ban]\nbackend = \"nftables\"\ntable = \"{NFT_TABLE}\"\n\n\
                 [control]\nsocket = \"{}\"\n\n[state]\ndir = \"{}\"\n\n\
                 [cluster]\nengine = \"redis\"\n\
                 urls = [\"rediss://{ENGINE_USER}:{ENGINE_PASSWORD}@{COLLECTOR_IP}:6379\"]\n\
                 ca_file = \"{ca}\"\nnode = \"{node}\"\n\n\
                 [target.a]\naddress = \"{A_IP}\"\nport = {PORT}\nuser = \"root\"\n\
                 identity = \"{key}\"\nknown_hosts = \"{known}\"\nssh_config = \"{ssh_config}\"\n\
                 table = \"{NFT_TABLE}_{node}\"\nconnect_timeout = \"3s\"\ncommand_timeout = \"5s\"\n",
                self.socket(node).display(),
                dir.join("state").display(),
                key = self.fleet.client_key.display(),
                known = self.fleet.known_hosts.display(),
                ssh_config = ssh_config.display(),
                ca = self.engine_ca.display(),
            ),
        )
        .expect("write config");
        fs::write(
            conf_d.join("sshd.toml"),
            "[jail.sshd]\nenabled = true\nprograms = [\"sshd\"]\n\
             failregex = ['^Failed password for \\S+ from <HOST> port \\d+ ssh2$']\n\
             maxretry = 5\nfindtime = \"10m\"\nbantime = \"1h\"\n\
             placement = [\"local\", \"target:a\"]\n",
        )
        .expect("write jail");
        let argv = [
            DAEMON_BIN.as_ref(),
            "run".as_ref(),
            "--config".as_ref(),
            dir.as_os_str(),
        ];
        let env: Vec<(&str, &str)> = [("RUST_LOG", "info,syslog2ban=debug")]
            .into_iter()
            .chain(env.iter().copied())
            .collect();
        let pid = self.fleet.lab.spawn(label, ns, &argv, &env);
        let (ns, listen) = (ns.to_string(), format!("{ip}:{SYSLOG_TCP_PORT}"));
        self.fleet.lab.wait_ready(
            label,
            &format!("tcp {listen}"),
            Duration::from_secs(15),
            move |lab| lab.listening_in(&ns, false, &listen),
        );
        pid
    }

    /// rsyslogd in WEB: what is logged to its socket goes to A, and to B while A is away.
    fn start_rsyslog(&mut self) {
        let d = self.fleet.lab.dir.clone();
        let work = d.join("rsyslog-work");
        fs::create_dir_all(&work).expect("mkdir rsyslog-work");
        let fwd = |ip: &str| {
            format!(
                "action(type=\"omfwd\" target=\"{ip}\" port=\"{SYSLOG_TCP_PORT}\" protocol=\"tcp\" \
                 TCP_Framing=\"octet-counted\" template=\"RSYSLOG_SyslogProtocol23Format\""
            )
        };
        let conf = format!(
            "global(workDirectory=\"{}\" localHostName=\"web\" inputs.timeout.shutdown=\"100\")\n\
             module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             input(type=\"imuxsock\" Socket=\"{}\" CreatePath=\"on\" RateLimit.Interval=\"0\")\n\
             {} action.resumeInterval=\"1\")\n\
             {} action.execOnlyWhenPreviousIsSuspended=\"on\" queue.type=\"LinkedList\"\n   \
             action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\")\n",
            work.display(),
            self.devlog.display(),
            fwd(COLLECTOR_IP),
            fwd(TWO_IP),
        );
        let conf_path = d.join("rsyslog.conf");
        fs::write(&conf_path, conf).expect("write rsyslog.conf");
        let web = self.web.clone();
        let rsyslogd = tool("rsyslogd");
        self.fleet.lab.spawn(
            "rsyslogd",
            &web,
            &[
                rsyslogd.as_os_str(),
                "-n".as_ref(),
                "-f".as_ref(),
                conf_path.as_os_str(),
                "-i".as_ref(),
                d.join("rsyslogd.pid").as_os_str(),
            ],
            &[],
        );
        let sock = self.devlog.clone();
        self.fleet.lab.wait_ready(
            "rsyslogd",
            "its socket",
            Duration::from_secs(10),
            move |_| sock.exists(),
        );
    }

    /// sshd-style lines logged on WEB (through rsyslog).
    fn log(&self, line: &str) {
        let out = self.fleet.lab.exec(
            &self.web,
            &[
                tool("logger").as_os_str(),
                "-u".as_ref(),
                self.devlog.as_os_str(),
                "-t".as_ref(),
                "sshd".as_ref(),
                line.as_ref(),
            ],
            Duration::from_secs(5),
        );
        assert!(out.success(), "logger: {}", out.describe());
    }

    /// An sshd-style line sent from WEB straight to the collector at `ip` (not through
    /// rsyslog, whose first choice is ONE).
    fn log_to(&self, ip: &str, line: &str) {
        let port = SYSLOG_TCP_PORT.to_string();
        let out = self.fleet.lab.exec(
            &self.web,
            &[
                tool("logger").as_os_str(),
                "--server".as_ref(),
                ip.as_ref(),
                "--port".as_ref(),
                port.as_ref(),
                "--tcp".as_ref(),
                "--octet-count".as_ref(),
                "--rfc5424".as_ref(),
                "-t".as_ref(),
                "sshd".as_ref(),
                line.as_ref(),
            ],
            Duration::from_secs(5),
        );
        assert!(out.success(), "logger --server {ip}: {}", out.describe());
    }

    fn failure(&self) {
        self.log(&format!(
            "Failed password for root from {ATTACKER} port 4242 ssh2"
        ));
    }

    /// Uploads journal entries `seqnums` (each a failed password of `address`, with the
    /// cursor a journal would give it) from WEB to the collector at `ip`, with the real
    /// `systemd-journal-upload` reading an export stream.
    fn upload(&self, ip: &str, address: &str, seqnums: &[u32]) {
        let boot = "0123456789abcdef0123456789abcdef";
        let export: String = seqnums
            .iter()
            .map(|seq| {
                format!(
                    "__CURSOR=s=7a1f0c7a9d2b4c6e8f0a1b2c3d4e5f60;i={seq:x};b={boot};m={seq:x};t={seq:x};x={seq:x}\n\
                     __REALTIME_TIMESTAMP={}\n_BOOT_ID={boot}\n_HOSTNAME=web\n\
                     SYSLOG_IDENTIFIER=sshd\n_PID=4242\n_TRANSPORT=syslog\n\
                     MESSAGE=Failed password for root from {address} port 4242 ssh2\n\n",
                    1_795_595_782_000_000u64 + u64::from(*seq)
                )
            })
            .collect();
        let file = self
            .fleet
            .lab
            .dir
            .join(format!("upload-{ip}-{}.export", seqnums[0]));
        fs::write(&file, export).expect("write export file");
        let script = format!(
            "exec {} --url=http://{ip}:{JOURNAL_UPLOAD_PORT} - < {}",
            tool("systemd-journal-upload").display(),
            file.display()
        );
        let out = self
            .fleet
            .lab
            .exec(&self.web, &["sh", "-c", &script], Duration::from_secs(20));
        assert!(out.success(), "systemd-journal-upload: {}", out.describe());
    }

    /// Whether `ns`'s nft table `table` holds `address`.
    fn holds_in(&self, ns: &str, table: &str, address: &str) -> bool {
        self.fleet
            .set_in(ns, table)
            .iter()
            .any(|(element, _)| element == address)
    }

    /// Whether the collector in `ns` holds `address` in its own table.
    fn holds(&self, ns: &str, address: &str) -> bool {
        self.holds_in(ns, NFT_TABLE, address)
    }

    fn status(&self, node: &str) -> Value {
        let out = crate::lab::run(
            crate::lab::command(DAEMON_BIN)
                .args(["status", "--json", "--socket"])
                .arg(self.socket(node)),
            Duration::from_secs(10),
        );
        serde_json::from_str(&out.stdout).unwrap_or(Value::Null)
    }
}

/// A collector killed with -9 mid-attack: its count stays on the engine, rsyslog fails over,
/// the other collector bans on its own firewall and on server A, and the killed one, back,
/// holds the ban on both too.
#[test]
fn collectors_count_together_and_survive_a_kill_9_with_rsyslog_failing_over() {
    if !crate::lab::preflight("cluster", &[crate::fleet_lab::TOOLS, MORE_TOOLS].concat()) {
        return;
    }
    let mut c = Cluster::new("cluster");
    let (one, two, a) = (c.one.clone(), c.two.clone(), c.fleet.a.clone());
    let pid_one = c.start_collector("one", &one, COLLECTOR_IP, "collector-one");
    c.start_collector("two", &two, TWO_IP, "collector-two");
    c.fleet
        .wait_connected_at(&c.socket("one"), "a", Duration::from_secs(20));
    c.fleet
        .wait_connected_at(&c.socket("two"), "a", Duration::from_secs(20));

    // Three failures reach ONE (rsyslog's first choice); nothing is banned.
    for _ in 0..3 {
        c.failure();
    }
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            c.status("one")["jails"][0]["total_failed"].as_u64() == Some(3)
        })
        .is_some(),
        "ONE did not count three failures: {}",
        c.status("one")
    );
    assert!(!c.holds(&one, ATTACKER) && !c.holds(&two, ATTACKER));

    // ONE dies; rsyslog notices when a write fails (the web server logs on meanwhile: lines
    // no jail counts) and fails over to TWO.
    assert!(kill_pid(pid_one, "KILL"), "kill -9 ONE");
    c.fleet.lab.note("collector ONE killed (-9)");
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
            c.log("Connection closed by 198.51.100.99 port 1 [preauth]");
            c.status("two")["listeners"][0]["messages"].as_u64() >= Some(1)
        })
        .is_some(),
        "rsyslog did not fail over to TWO: {}",
        c.status("two")
    );
    c.failure();
    std::thread::sleep(Duration::from_secs(1));
    assert!(!c.holds(&two, ATTACKER), "the fourth failure banned");
    c.failure();
    let table_two = format!("{NFT_TABLE}_two");
    assert!(
        wait_until(Duration::from_secs(1), Duration::from_millis(25), || {
            c.holds(&two, ATTACKER) && c.holds_in(&a, &table_two, ATTACKER)
        })
        .is_some(),
        "the fifth failure did not ban on TWO and on A within 1 s: {}",
        c.status("two")
    );
    assert_eq!(
        c.status("two")["cluster"]["shared_offences"],
        1,
        "{}",
        c.status("two")
    );

    // ONE comes back and holds the ban on its own firewall and in its table on A.
    c.start_collector("one", &one, COLLECTOR_IP, "collector-one-2");
    let table_one = format!("{NFT_TABLE}_one");
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            c.holds(&one, ATTACKER) && c.holds_in(&a, &table_one, ATTACKER)
        })
        .is_some(),
        "the restarted ONE does not hold the ban: {}",
        c.status("one")
    );
}

/// systemd-journal-upload failing over: the entries the first collector had counted but not
/// acknowledged are resent to the second, and count once in the shared count.
#[test]
fn journal_upload_failing_over_counts_resent_entries_once() {
    let tools = [
        crate::fleet_lab::TOOLS,
        MORE_TOOLS,
        &["systemd-journal-upload"],
    ]
    .concat();
    if !crate::lab::preflight("cluster-journal", &tools) {
        return;
    }
    let attacker = "198.51.100.67";
    let mut c = Cluster::new("cluster-journal");
    let (one, two, a) = (c.one.clone(), c.two.clone(), c.fleet.a.clone());
    let pid_one = c.start_collector("one", &one, COLLECTOR_IP, "collector-one");
    c.start_collector("two", &two, TWO_IP, "collector-two");
    let counts_three = |c: &Cluster, node: &str| {
        let counted = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            c.status(node)["jails"][0]["total_failed"].as_u64() == Some(3)
        });
        assert!(
            counted.is_some(),
            "{node} did not count three entries: {}",
            c.status(node)
        );
    };

    // Entries 1-3 reach ONE, which counts them (and shares them); then it dies.
    c.upload(COLLECTOR_IP, attacker, &[1, 2, 3]);
    counts_three(&c, "one");
    // Its counter sends what it counted within milliseconds; give it the time.
    std::thread::sleep(Duration::from_millis(500));
    assert!(kill_pid(pid_one, "KILL"), "kill -9 ONE");
    c.fleet.lab.note("collector ONE killed (-9)");

    // The uploader resends from its last acknowledged cursor: 2 and 3 again, and 4.
    c.upload(TWO_IP, attacker, &[2, 3, 4]);
    counts_three(&c, "two");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !c.holds(&two, attacker),
        "four distinct entries banned at maxretry 5 (a resent entry counted twice): {}",
        c.status("two")
    );
    c.upload(TWO_IP, attacker, &[5]);
    let table_two = format!("{NFT_TABLE}_two");
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(25), || {
            c.holds(&two, attacker) && c.holds_in(&a, &table_two, attacker)
        })
        .is_some(),
        "the fifth entry did not ban on TWO and on A: {}",
        c.status("two")
    );
    assert_eq!(
        c.status("two")["cluster"]["shared_offences"],
        1,
        "{}",
        c.status("two")
    );
    c.fleet
        .lab
        .note("entries 1-3 via ONE, 2-4 via TWO: no ban; entry 5: banned on TWO and on A");
}

/// libfaketime's preload library (Debian's `libfaketime`, any architecture), if installed.
fn faketime_library() -> Option<PathBuf> {
    fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|arch| arch.path().join("faketime/libfaketime.so.1"))
        .find(|lib| lib.exists())
}

/// A collector whose clock runs 20 minutes ahead (libfaketime in TWO only; findtime 10
/// minutes): its failures and ONE's still add up to maxretry, both show TWO's clock out of
/// step, and the ban TWO adopts ends when ONE's does, not 20 minutes early by TWO's clock.
#[test]
fn a_collector_whose_clock_runs_ahead_counts_and_bans_with_the_others() {
    if !crate::lab::preflight(
        "cluster-clock",
        &[crate::fleet_lab::TOOLS, MORE_TOOLS].concat(),
    ) {
        return;
    }
    let Some(faketime) = faketime_library() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "libfaketime is not installed (integration/install-deps.sh installs it)"
        );
        eprintln!("skipping: libfaketime is not installed");
        return;
    };
    let attacker = "198.51.100.68";
    let mut c = Cluster::new("cluster-clock");
    let (one, two) = (c.one.clone(), c.two.clone());
    c.start_collector("one", &one, COLLECTOR_IP, "collector-one");
    let preload = faketime.display().to_string();
    c.start_collector_with(
        "two",
        &two,
        TWO_IP,
        "collector-two",
        &[
            ("LD_PRELOAD", preload.as_str()),
            ("FAKETIME", "+20m"),
            // Timers and deadlines keep the real pace; only the wall clock is off.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let line = format!("Failed password for root from {attacker} port 4242 ssh2");
    let counted = |c: &Cluster, node: &str, n: u64| {
        let seen = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            c.status(node)["jails"][0]["total_failed"].as_u64() == Some(n)
        });
        assert!(
            seen.is_some(),
            "{node} did not count {n}: {}",
            c.status(node)
        );
    };
    // Both measure TWO's clock 20 minutes ahead of the engine's.
    let two_ahead = |c: &Cluster, node: &str| {
        c.status(node)["cluster"]["peers"]
            .as_array()
            .and_then(|peers| peers.iter().find(|p| p["node"] == "two"))
            .and_then(|p| p["clock_ahead_ms"].as_i64())
    };
    for node in ["one", "two"] {
        assert!(
            wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
                two_ahead(&c, node).is_some_and(|ms| (ms - 1_200_000).abs() < 5_000)
            })
            .is_some(),
            "{node} does not see TWO's clock 20 minutes ahead: {}",
            c.status(node)
        );
    }

    // Two failures through ONE, two through TWO: no ban (maxretry 5).
    c.log_to(COLLECTOR_IP, &line);
    c.log_to(COLLECTOR_IP, &line);
    counted(&c, "one", 2);
    std::thread::sleep(Duration::from_millis(300));
    c.log_to(TWO_IP, &line);
    c.log_to(TWO_IP, &line);
    counted(&c, "two", 2);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!c.holds(&one, attacker) && !c.holds(&two, attacker));
    // The fifth, through ONE, bans on both: TWO's window did not drop ONE's failures as
    // older than findtime by its clock.
    c.log_to(COLLECTOR_IP, &line);
    assert!(
        wait_until(Duration::from_secs(2), Duration::from_millis(25), || {
            c.holds(&one, attacker) && c.holds(&two, attacker)
        })
        .is_some(),
        "the fifth failure of a split attack did not ban on both: ONE {} TWO {}",
        c.status("one"),
        c.status("two")
    );
    assert_eq!(
        c.status("one")["cluster"]["shared_offences"],
        1,
        "{}",
        c.status("one")
    );

    // TWO holds ONE's ban for the bantime (1 h), not 20 minutes less.
    let banned = crate::lab::run(
        crate::lab::command(DAEMON_BIN)
            .args(["banned", "--json", "--socket"])
            .arg(c.socket("two")),
        Duration::from_secs(10),
    );
    let banned: Value = serde_json::from_str(&banned.stdout).unwrap_or(Value::Null);
    let left = banned["bans"]
        .as_array()
        .and_then(|bans| bans.iter().find(|b| b["address"] == attacker))
        .and_then(|b| b["remaining_secs"].as_u64());
    assert!(
        left.is_some_and(|s| s > 3500),
        "TWO holds the adopted ban for {left:?} s: {banned}"
    );
    c.fleet
        .lab
        .note("TWO 20 min ahead: 2 failures via ONE, 2 via TWO, no ban; the 5th banned on both");
}
