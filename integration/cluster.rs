//! Two collectors on one engine, in network namespaces: a real `redis-server`, two syslog2ban
//! daemons each enforcing on its own nftables, and a web server whose rsyslog forwards to
//! collector A and fails over to B (examples/clients/rsyslog-failover.conf's chain).
//!
//! ```text
//!  ENGINE (Lab.srv)  br0 198.51.100.5/24   redis-server :6379
//!      ├── A    eth0 198.51.100.1/24   syslog2ban tcp :5514, nft
//!      ├── B    eth0 198.51.100.2/24   syslog2ban tcp :5514, nft
//!      └── WEB  eth0 198.51.100.10/24  rsyslogd: imuxsock -> A, failing over to B
//! ```
//! What a user checks: the attacker's address in each collector's nft set.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::lab::{kill_pid, tool, wait_until, Lab, DAEMON_BIN, NFT_TABLE, SYSLOG_TCP_PORT};

const ENGINE_IP: &str = "198.51.100.5";
const A_IP: &str = "198.51.100.1";
const B_IP: &str = "198.51.100.2";
const WEB_IP: &str = "198.51.100.10";
const ATTACKER: &str = "198.51.100.66";
const TOOLS: &[&str] = &[
    "ip",
    "nft",
    "ss",
    "redis-server",
    "rsyslogd",
    "logger",
    "kill",
    "python3",
];

struct Cluster {
    lab: Lab,
    a: String,
    b: String,
    web: String,
    devlog: PathBuf,
}

impl Cluster {
    fn new(test: &str) -> Cluster {
        let mut lab = Lab::bare(test);
        let engine = lab.srv.clone();
        let a = format!("{}-a", lab.id);
        let b = format!("{}-b", lab.id);
        let web = format!("{}-web", lab.id);
        for ns in [&engine, &a, &b, &web] {
            lab.add_netns(ns);
        }
        lab.ip(&["-n", &engine, "link", "add", "br0", "type", "bridge"]);
        lab.ip(&["-n", &engine, "link", "set", "br0", "up"]);
        lab.ip(&[
            "-n",
            &engine,
            "addr",
            "add",
            &format!("{ENGINE_IP}/24"),
            "dev",
            "br0",
        ]);
        for (ns, port, addr) in [
            (&a, "v-a", A_IP),
            (&b, "v-b", B_IP),
            (&web, "v-web", WEB_IP),
        ] {
            // Created in ENGINE with the peer moved straight into its namespace: nothing ever
            // appears in the root namespace.
            lab.ip(&[
                "-n", &engine, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            ]);
            lab.ip(&["-n", &engine, "link", "set", port, "master", "br0", "up"]);
            lab.ip(&["-n", ns, "link", "set", "eth0", "up"]);
            lab.ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
        }
        let redis = tool("redis-server");
        lab.spawn(
            "redis-server",
            &engine,
            &[
                redis.as_os_str(),
                "--bind".as_ref(),
                ENGINE_IP.as_ref(),
                "--port".as_ref(),
                "6379".as_ref(),
                "--save".as_ref(),
                "".as_ref(),
                "--appendonly".as_ref(),
                "no".as_ref(),
                "--protected-mode".as_ref(),
                "no".as_ref(),
            ],
            &[],
        );
        let engine_ns = engine.clone();
        lab.wait_ready(
            "redis-server",
            "tcp :6379",
            Duration::from_secs(10),
            move |lab| lab.listening_in(&engine_ns, false, &format!("{ENGINE_IP}:6379")),
        );
        let devlog = lab.dir.join("web-devlog");
        let mut cluster = Cluster {
            lab,
            a,
            b,
            web,
            devlog,
        };
        cluster.start_rsyslog();
        cluster
    }

    fn dir(&self, node: &str) -> PathBuf {
        self.lab.dir.join(node)
    }

    fn socket(&self, node: &str) -> PathBuf {
        self.dir(node).join("ctl.sock")
    }

    /// Writes `node`'s config (first time) and starts it in `ns` as process `label`; returns
    /// once its table exists and it listens.
    fn start_collector(&mut self, node: &str, ns: &str, ip: &str, label: &str) -> u32 {
        let dir = self.dir(node);
        let conf_d = dir.join("conf.d");
        fs::create_dir_all(&conf_d).expect("mkdir conf.d");
        fs::write(
            dir.join("syslog2ban.toml"),
            format!(
                "[[listen]]\ntype = \"tcp\"\naddress = \"{ip}:{SYSLOG_TCP_PORT}\"\n\n\
                 [ban]\nbackend = \"nftables\"\ntable = \"{NFT_TABLE}\"\n\n\
                 [control]\nsocket = \"{}\"\n\n[state]\ndir = \"{}\"\n\n\
                 [cluster]\nengine = \"redis\"\nurls = [\"redis://{ENGINE_IP}:6379\"]\n\
                 node = \"{node}\"\n",
                self.socket(node).display(),
                dir.join("state").display()
            ),
        )
        .expect("write config");
        fs::write(
            conf_d.join("sshd.toml"),
            "[jail.sshd]\nenabled = true\nprograms = [\"sshd\"]\n\
             failregex = ['^Failed password for \\S+ from <HOST> port \\d+ ssh2$']\n\
             maxretry = 5\nfindtime = \"10m\"\nbantime = \"1h\"\n",
        )
        .expect("write jail");
        let argv = [
            DAEMON_BIN.as_ref(),
            "run".as_ref(),
            "--config".as_ref(),
            dir.as_os_str(),
        ];
        let pid = self
            .lab
            .spawn(label, ns, &argv, &[("RUST_LOG", "info,syslog2ban=debug")]);
        let (ns, listen) = (ns.to_string(), format!("{ip}:{SYSLOG_TCP_PORT}"));
        self.lab.wait_ready(
            label,
            &format!("tcp {listen}"),
            Duration::from_secs(15),
            move |lab| lab.listening_in(&ns, false, &listen),
        );
        pid
    }

    /// rsyslogd in WEB: what is logged to its socket goes to A, and to B while A is away.
    fn start_rsyslog(&mut self) {
        let d = self.lab.dir.clone();
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
            fwd(A_IP),
            fwd(B_IP),
        );
        let conf_path = d.join("rsyslog.conf");
        fs::write(&conf_path, conf).expect("write rsyslog.conf");
        let web = self.web.clone();
        let rsyslogd = tool("rsyslogd");
        self.lab.spawn(
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
        self.lab.wait_ready(
            "rsyslogd",
            "its socket",
            Duration::from_secs(10),
            move |_| sock.exists(),
        );
    }

    /// sshd-style lines logged on WEB (through rsyslog).
    fn log(&self, line: &str) {
        let out = self.lab.exec(
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

    fn failure(&self) {
        self.log(&format!(
            "Failed password for root from {ATTACKER} port 4242 ssh2"
        ));
    }

    /// Whether `ns`'s nft set holds `address`.
    fn holds(&self, ns: &str, address: &str) -> bool {
        let out = self.lab.exec(
            ns,
            &[
                tool("nft").as_os_str(),
                "-j".as_ref(),
                "list".as_ref(),
                "set".as_ref(),
                "inet".as_ref(),
                NFT_TABLE.as_ref(),
                "banned4".as_ref(),
            ],
            Duration::from_secs(10),
        );
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        v["nftables"].as_array().into_iter().flatten().any(|item| {
            item["set"]["elem"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e.as_str() == Some(address) || e["elem"]["val"].as_str() == Some(address))
        })
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

/// Acceptance 1 and 2 of the cluster: a split attack, then a collector killed mid-attack.
#[test]
fn collectors_count_together_and_survive_a_kill_9_with_rsyslog_failing_over() {
    if !crate::lab::preflight("cluster", TOOLS) {
        return;
    }
    let mut c = Cluster::new("cluster");
    let (a, b) = (c.a.clone(), c.b.clone());
    let pid_a = c.start_collector("a", &a, A_IP, "collector-a");
    c.start_collector("b", &b, B_IP, "collector-b");

    // Three failures reach A (rsyslog's first choice); nothing is banned.
    for _ in 0..3 {
        c.failure();
    }
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            c.status("a")["jails"][0]["total_failed"].as_u64() == Some(3)
        })
        .is_some(),
        "A did not count three failures: {}",
        c.status("a")
    );
    assert!(!c.holds(&a, ATTACKER) && !c.holds(&b, ATTACKER));

    // A dies; rsyslog notices when a write fails (the server logs on meanwhile: lines no jail
    // counts) and fails over to B.
    assert!(kill_pid(pid_a, "KILL"), "kill -9 A");
    c.lab.note("collector A killed (-9)");
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(200), || {
            c.log("Connection closed by 198.51.100.99 port 1 [preauth]");
            c.status("b")["listeners"][0]["messages"].as_u64() >= Some(1)
        })
        .is_some(),
        "rsyslog did not fail over to B: {}",
        c.status("b")
    );
    c.failure();
    std::thread::sleep(Duration::from_secs(1));
    assert!(!c.holds(&b, ATTACKER), "the fourth failure banned");
    c.failure();
    assert!(
        wait_until(Duration::from_secs(1), Duration::from_millis(25), || c
            .holds(&b, ATTACKER))
        .is_some(),
        "the fifth failure did not ban on B: {}",
        c.status("b")
    );
    assert_eq!(
        c.status("b")["cluster"]["shared_offences"],
        1,
        "{}",
        c.status("b")
    );

    // A comes back and holds the ban in its own firewall.
    c.start_collector("a", &a, A_IP, "collector-a-2");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || c
            .holds(&a, ATTACKER))
        .is_some(),
        "the restarted A does not hold the ban: {}",
        c.status("a")
    );
}
