//! Remote bans over SSH: a collector running syslog2ban, and servers A and B each with a real
//! sshd (key auth for root) and their own nftables, in namespaces joined by a bridge.
//!
//! ```text
//!  COLLECTOR (Lab.srv)  br0 198.51.100.1/24      syslog2ban: tcp 127.0.0.1:5514 + 198.51.100.1:5514,
//!      │                                                     [target.a] / [target.b] over ssh
//!      ├── A    eth0 198.51.100.10/24  sshd :2222, nft (managed remotely), sends its syslog
//!      ├── B    eth0 198.51.100.20/24  sshd :2222, nft
//!      └── ATTACKER eth0 198.51.100.66/24, .67/24
//! ```
//! Failures are sent from A's namespace to the collector, so their origin is A's address.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::lab::{
    command, preflight, run, tool, wait_until, DaemonOptions, Lab, Listener, MOUNTNS_EXEC_SH,
    NFT_TABLE, SYSLOG_TCP_PORT,
};

const COLLECTOR_IP: &str = "198.51.100.1";
const A_IP: &str = "198.51.100.10";
const B_IP: &str = "198.51.100.20";
const ATTACKER: &str = "198.51.100.66";
const ATTACKER2: &str = "198.51.100.67";
const PORT: u16 = 2222;
const RECONCILE: Duration = Duration::from_secs(2);
const BANTIME_SECS: u64 = 600;

const TOOLS: &[&str] = &[
    "ip",
    "nft",
    "ss",
    "sshd",
    "ssh",
    "ssh-keygen",
    "nc",
    "unshare",
    "mount",
    "python3",
];

/// The collector and two servers, with keys and known_hosts in place.
struct Fleet {
    lab: Lab,
    a: String,
    b: String,
    client_key: PathBuf,
    known_hosts: PathBuf,
}

impl Fleet {
    fn new(test: &str) -> Fleet {
        let mut lab = Lab::bare(test);
        let (col, atk) = (lab.srv.clone(), lab.atk.clone());
        let a = format!("{}-a", lab.id);
        let b = format!("{}-b", lab.id);
        for ns in [&col, &a, &b, &atk] {
            lab.add_netns(ns);
        }
        lab.ip(&["-n", &col, "link", "add", "br0", "type", "bridge"]);
        lab.ip(&["-n", &col, "link", "set", "br0", "up"]);
        lab.ip(&[
            "-n",
            &col,
            "addr",
            "add",
            &format!("{COLLECTOR_IP}/24"),
            "dev",
            "br0",
        ]);
        for (ns, port, addrs) in [
            (&a, "v-a", vec![A_IP]),
            (&b, "v-b", vec![B_IP]),
            (&atk, "v-atk", vec![ATTACKER, ATTACKER2]),
        ] {
            // Created in COLLECTOR with the peer moved straight into the server: nothing ever
            // appears in the root namespace.
            lab.ip(&[
                "-n", &col, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns",
                ns,
            ]);
            lab.ip(&["-n", &col, "link", "set", port, "master", "br0", "up"]);
            lab.ip(&["-n", ns, "link", "set", "eth0", "up"]);
            for addr in addrs {
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
        }
        let client_key = lab.dir.join("collector_key");
        keygen(&client_key, "collector");
        let known_hosts = lab.dir.join("known_hosts");
        let mut fleet = Fleet {
            lab,
            a,
            b,
            client_key,
            known_hosts,
        };
        let mut known = String::new();
        for (ns, ip) in [(fleet.a.clone(), A_IP), (fleet.b.clone(), B_IP)] {
            let host_pub = fleet.start_sshd(&ns, &format!("sshd-{ns}"));
            known.push_str(&format!("[{ip}]:{PORT} {}\n", host_pub.trim()));
        }
        fs::write(&fleet.known_hosts, known).expect("write known_hosts");
        fleet
            .lab
            .note("fleet up: collector, A and B with sshd, attacker");
        fleet
    }

    /// Starts (or restarts) sshd in `ns` with root key login; returns its host public key.
    fn start_sshd(&mut self, ns: &str, label: &str) -> String {
        let d = self
            .lab
            .dir
            .join(format!("srv-{}", ns.rsplit('-').next().unwrap_or(ns)));
        let etc = d.join("etc");
        fs::create_dir_all(&etc).expect("mkdir etc");
        fs::create_dir_all(d.join("root-home")).expect("mkdir root home");
        // A private passwd where root has a plain /bin/sh and an empty home: the host's root
        // .bashrc (pyenv init) would add half a second to every remote command.
        let passwd: String = fs::read_to_string("/etc/passwd")
            .expect("read /etc/passwd")
            .lines()
            .map(|l| {
                if l.starts_with("root:") {
                    format!(
                        "root:x:0:0:root:{}:/bin/sh\n",
                        d.join("root-home").display()
                    )
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let shadow: String = fs::read_to_string("/etc/shadow")
            .expect("read /etc/shadow")
            .lines()
            .map(|l| {
                if l.starts_with("root:") {
                    // `*`: no password, but not locked, so key login is allowed.
                    "root:*:20000:0:99999:7:::\n".to_string()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        fs::write(etc.join("passwd"), passwd).expect("write passwd");
        fs::write(etc.join("shadow"), shadow).expect("write shadow");
        fs::set_permissions(etc.join("shadow"), fs::Permissions::from_mode(0o640))
            .expect("chmod shadow");
        fs::copy("/etc/group", etc.join("group")).expect("copy group");
        let host_key = d.join("ssh_host_ed25519_key");
        if !host_key.exists() {
            keygen(&host_key, ns);
        }
        let client_pub = fs::read_to_string(self.client_key.with_extension("pub"))
            .expect("read client public key");
        fs::write(d.join("authorized_keys"), client_pub).expect("write authorized_keys");
        let config = d.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {PORT}\nListenAddress 0.0.0.0\nHostKey {key}\nPidFile {pid}\nLogLevel INFO\n\
                 PubkeyAuthentication yes\nAuthorizedKeysFile {auth}\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\n\
                 UsePAM no\nUseDNS no\nMaxSessions 64\nMaxStartups 100:30:200\n",
                key = host_key.display(),
                pid = d.join("sshd.pid").display(),
                auth = d.join("authorized_keys").display(),
            ),
        )
        .expect("write sshd_config");
        let wrapper = d.join("mountns-exec.sh");
        fs::write(&wrapper, MOUNTNS_EXEC_SH).expect("write mountns-exec.sh");
        let devlog = d.join("devlog");
        self.lab.spawn(
            label,
            ns,
            &[
                tool("unshare").as_os_str(),
                "-m".as_ref(),
                "/bin/sh".as_ref(),
                wrapper.as_os_str(),
                d.as_os_str(),
                devlog.as_os_str(),
                tool("sshd").as_os_str(),
                "-D".as_ref(),
                "-e".as_ref(),
                "-f".as_ref(),
                config.as_os_str(),
            ],
            &[],
        );
        let ns_owned = ns.to_string();
        self.lab.wait_ready(
            label,
            &format!("tcp 0.0.0.0:{PORT} in {ns}"),
            Duration::from_secs(10),
            move |lab| lab.listening_in(&ns_owned, false, &format!("0.0.0.0:{PORT}")),
        );
        fs::read_to_string(host_key.with_extension("pub")).expect("read host public key")
    }

    /// Kills every process in `ns` (sshd and the per-connection child serving the
    /// collector's master), as if the host went away.
    fn take_down(&mut self, ns: &str) {
        for pid in self.lab.pids_in(ns) {
            crate::lab::kill_pid(pid, "KILL");
        }
        let lab = &self.lab;
        assert!(
            wait_until(Duration::from_secs(5), Duration::from_millis(20), || lab
                .pids_in(ns)
                .is_empty())
            .is_some(),
            "processes left in {ns}"
        );
    }

    /// Writes the collector's config: targets a and b (plus `extra` TOML), the jail `sshd`
    /// placed at the origin and the jail `fleetwide` (program `fleetd`) placed everywhere.
    fn start_daemon(&mut self, extra: &str) {
        let dir = self.lab.dir.clone();
        let cfg = self.lab.config_dir();
        let confd = self.lab.conf_d();
        fs::create_dir_all(&confd).expect("mkdir conf.d");
        fs::create_dir_all(dir.join("state")).expect("mkdir state");
        let ssh_config = dir.join("ssh_config");
        fs::write(
            &ssh_config,
            "# empty: only the target's own settings apply\n",
        )
        .expect("write ssh_config");
        let target = |name: &str, ip: &str, group: &str| {
            format!(
                "[target.{name}]\naddress = \"{ip}\"\nport = {PORT}\nuser = \"root\"\n\
                 identity = \"{key}\"\nknown_hosts = \"{known}\"\nssh_config = \"{cfg}\"\n\
                 origins = [\"{ip}\"]\ngroups = [\"{group}\"]\nreconcile_interval = \"{rec}s\"\n\
                 connect_timeout = \"3s\"\ncommand_timeout = \"5s\"\n\n",
                key = self.client_key.display(),
                known = self.known_hosts.display(),
                cfg = ssh_config.display(),
                rec = RECONCILE.as_secs(),
            )
        };
        let toml = format!(
            "[[listen]]\ntype = \"tcp\"\naddress = \"127.0.0.1:{SYSLOG_TCP_PORT}\"\n\n\
             [[listen]]\ntype = \"tcp\"\naddress = \"{COLLECTOR_IP}:{SYSLOG_TCP_PORT}\"\n\n\
             [ban]\nbackend = \"nftables\"\ntable = \"{NFT_TABLE}\"\n\n\
             [control]\nsocket = \"{sock}\"\n\n[state]\ndir = \"{state}\"\n\n{a}{b}{extra}",
            sock = self.lab.control_socket().display(),
            state = dir.join("state").display(),
            a = target("a", A_IP, "web"),
            b = target("b", B_IP, "web"),
        );
        fs::write(cfg.join("syslog2ban.toml"), &toml).expect("write syslog2ban.toml");
        let jails = format!(
            "[jail.sshd]\nenabled = true\nprograms = [\"sshd\"]\n\
             failregex = ['^Failed password for \\S+ from <HOST> port \\d+ ssh2$']\n\
             maxretry = 3\nbantime = \"{BANTIME_SECS}s\"\nplacement = [\"origin\"]\n\n\
             [jail.fleetwide]\nenabled = true\nprograms = [\"fleetd\"]\n\
             failregex = ['^Failed password for \\S+ from <HOST> port \\d+ ssh2$']\n\
             maxretry = 3\nbantime = \"{BANTIME_SECS}s\"\nplacement = [\"all\"]\n"
        );
        fs::write(confd.join("fleet.toml"), jails).expect("write fleet.toml");
        self.lab
            .dump_file("collector syslog2ban.toml", cfg.join("syslog2ban.toml"));
        self.lab
            .launch_daemon("syslog2ban", Listener::Tcp, &DaemonOptions::default());
    }

    /// `program` on A reports three failed passwords from `attacker` to the collector.
    fn failures_from_a(&self, program: &str, attacker: &str) {
        let msgs: Vec<String> = (0..3)
            .map(|i| {
                format!(
                    "<38>1 2026-11-25T10:00:0{i}Z server-a {program} 4242 - - Failed password for root from {attacker} port 4{i}000 ssh2"
                )
            })
            .collect();
        self.lab
            .send_frames_from(&self.a, COLLECTOR_IP, SYSLOG_TCP_PORT, &msgs);
    }

    /// The elements of `banned4` on a server: address → seconds left (None: no timeout).
    fn remote_set(&self, ns: &str) -> Vec<(String, Option<u64>)> {
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
        if !out.success() {
            return Vec::new();
        }
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        let mut found = Vec::new();
        for item in v["nftables"].as_array().into_iter().flatten() {
            for elem in item["set"]["elem"].as_array().into_iter().flatten() {
                match elem {
                    Value::String(s) => found.push((s.clone(), None)),
                    other => found.push((
                        other["elem"]["val"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        other["elem"]["expires"].as_u64(),
                    )),
                }
            }
        }
        found
    }

    fn has(&self, ns: &str, addr: &str) -> bool {
        self.remote_set(ns).iter().any(|(a, _)| a == addr)
    }

    fn wait_has(&self, ns: &str, addr: &str, within: Duration) -> Option<Duration> {
        wait_until(within, Duration::from_millis(25), || self.has(ns, addr))
    }

    fn nft(&self, ns: &str, script: &str) {
        let out = self.lab.exec(
            ns,
            &[tool("nft").as_os_str(), OsStr::new(script)],
            Duration::from_secs(10),
        );
        assert!(out.success(), "nft in {ns}: {}", out.describe());
    }

    /// The `status --json` entry of a target.
    fn target_status(&self, name: &str) -> Value {
        let v = self.lab.ctl_json(&["status", "--json"]);
        v["targets"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["target"] == name).cloned())
            .unwrap_or_else(|| panic!("target {name} not in status: {v}"))
    }

    fn wait_connected(&self, name: &str, within: Duration) {
        let ok = wait_until(within, Duration::from_millis(50), || {
            let t = self.target_status(name);
            t["remote"]["connected"] == true && t["remote"]["reconciles"].as_u64() >= Some(1)
        });
        assert!(
            ok.is_some(),
            "target {name} not connected and reconciled within {within:?}: {}",
            self.target_status(name)
        );
    }

    /// TCP connect from ATTACKER's `src` to `dst`:2222.
    fn connects(&self, src: &str, dst: &str) -> bool {
        self.lab
            .exec(
                &self.lab.atk,
                &[
                    tool("nc").display().to_string(),
                    "-z".into(),
                    "-w2".into(),
                    "-s".into(),
                    src.into(),
                    dst.into(),
                    PORT.to_string(),
                ],
                Duration::from_secs(10),
            )
            .success()
    }
}

fn keygen(path: &Path, comment: &str) {
    let out = run(
        command(tool("ssh-keygen"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
        Duration::from_secs(20),
    );
    assert!(out.success(), "{}", out.describe());
}

/// Acceptance 1 and 4: `origin` bans on A only, `all` on A and B, the attacker's connection
/// to the banned server is dropped, and a target whose host key does not match is refused
/// with an error naming it.
#[test]
fn remote_bans_follow_placement_and_refuse_wrong_host_keys() {
    if !preflight("remote_bans_follow_placement", TOOLS) {
        return;
    }
    let mut f = Fleet::new("rplace");
    // Target c is B's address with a known_hosts that holds some other key.
    let wrong = f.lab.dir.join("wrong_known_hosts");
    let other_key = f.lab.dir.join("other_host_key");
    keygen(&other_key, "not-b");
    let other_pub = fs::read_to_string(other_key.with_extension("pub")).unwrap();
    fs::write(&wrong, format!("[{B_IP}]:{PORT} {}", other_pub.trim())).unwrap();
    f.start_daemon(&format!(
        "[target.c]\naddress = \"{B_IP}\"\nport = {PORT}\nidentity = \"{}\"\nknown_hosts = \"{}\"\n\
         ssh_config = \"{}\"\nconnect_timeout = \"3s\"\n",
        f.client_key.display(),
        wrong.display(),
        f.lab.dir.join("ssh_config").display()
    ));
    f.wait_connected("a", Duration::from_secs(20));
    f.wait_connected("b", Duration::from_secs(20));
    assert!(f.connects(ATTACKER, A_IP), "A reachable before any ban");

    // placement = ["origin"]: the failures came from A.
    f.failures_from_a("sshd", ATTACKER);
    let took = f
        .wait_has(&f.a, ATTACKER, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{ATTACKER} not in A's set: {:?}", f.remote_set(&f.a)));
    f.lab.note(&format!("origin ban on A after {took:.2?}"));
    assert!(
        !f.connects(ATTACKER, A_IP),
        "A must drop the banned attacker"
    );
    assert!(f.connects(ATTACKER2, A_IP), "A must still accept others");
    // Let a reconcile pass: B must still not have it.
    std::thread::sleep(RECONCILE + Duration::from_millis(500));
    assert!(!f.has(&f.b, ATTACKER), "origin placement leaked to B");
    assert!(
        f.connects(ATTACKER, B_IP),
        "B must not drop an attacker banned on A only"
    );
    // The collector bans nothing locally (placement has no "local").
    assert!(!f.lab.set_contains("banned4", ATTACKER));

    // placement = ["all"]: both servers.
    f.failures_from_a("fleetd", ATTACKER2);
    assert!(f
        .wait_has(&f.a, ATTACKER2, Duration::from_secs(10))
        .is_some());
    assert!(
        f.wait_has(&f.b, ATTACKER2, Duration::from_secs(10))
            .is_some(),
        "all placement did not reach B: {:?}",
        f.remote_set(&f.b)
    );
    assert!(
        !f.connects(ATTACKER2, B_IP),
        "B must drop the fleet-wide ban"
    );

    // Target c: the wrong host key is refused, reported, and never accepted.
    let c = f.target_status("c");
    assert_eq!(c["remote"]["connected"], false, "{c}");
    let error = c["remote"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("target c") && error.contains("host key"),
        "status must name the target and the host key problem: {c}"
    );
    let log = f.lab.log_of("syslog2ban");
    assert!(
        log.contains("target c: host key of root@198.51.100.20:2222 is unknown or has changed"),
        "daemon log must name the target:\n{log}"
    );
    assert_eq!(
        fs::read_to_string(&wrong).unwrap().lines().count(),
        1,
        "known_hosts must not be changed"
    );
}

/// Acceptance 2: B is down while a fleet-wide ban is decided; A gets it at once, B gets it
/// after sshd is back, with the time that was left, not a fresh bantime.
#[test]
fn a_ban_decided_while_a_target_is_down_reaches_it_after_reconnect() {
    if !preflight("remote_outage", TOOLS) {
        return;
    }
    let mut f = Fleet::new("rdown");
    f.start_daemon("");
    f.wait_connected("a", Duration::from_secs(20));
    f.wait_connected("b", Duration::from_secs(20));
    let b = f.b.clone();
    f.take_down(&b);
    f.lab.note("B is down");

    let decided = Instant::now();
    f.failures_from_a("fleetd", ATTACKER);
    assert!(
        f.wait_has(&f.a, ATTACKER, Duration::from_secs(10))
            .is_some(),
        "A must get the ban while B is down"
    );
    // Long enough for the collector to notice B is gone and for the reconnects to fail.
    std::thread::sleep(Duration::from_secs(6));
    let status = f.target_status("b");
    assert_eq!(status["remote"]["connected"], false, "{status}");
    assert!(status["remote"]["last_error"].is_string(), "{status}");
    assert!(f.has(&f.a, ATTACKER), "A lost the ban during B's outage");

    f.start_sshd(&b, "sshd-b-again");
    let back = Instant::now();
    // Reconnect attempts are at most a reconcile interval apart; then a reconcile runs.
    let took = f
        .wait_has(&b, ATTACKER, RECONCILE * 3 + Duration::from_secs(5))
        .unwrap_or_else(|| {
            panic!(
                "ban not on B after it came back: {:?}\nstatus: {}",
                f.remote_set(&b),
                f.target_status("b")
            )
        });
    f.lab
        .note(&format!("ban reached B {took:.2?} after sshd came back"));
    let left = f
        .remote_set(&b)
        .into_iter()
        .find(|(a, _)| a == ATTACKER)
        .and_then(|(_, left)| left)
        .expect("the ban on B has a timeout");
    let elapsed = decided.elapsed().as_secs();
    assert!(
        left <= BANTIME_SECS - elapsed + 2 && left + elapsed + 10 >= BANTIME_SECS,
        "B got {left}s left; {elapsed}s after a {BANTIME_SECS}s ban it should be about {}",
        BANTIME_SECS - elapsed
    );
    assert!(back.elapsed() < Duration::from_secs(30));
    assert!(f.has(&f.a, ATTACKER));
}

/// Acceptance 3: an element deleted by hand comes back; a stray one is removed.
#[test]
fn reconcile_repairs_hand_made_drift() {
    if !preflight("remote_drift", TOOLS) {
        return;
    }
    let mut f = Fleet::new("rdrift");
    f.start_daemon("");
    f.wait_connected("a", Duration::from_secs(20));
    f.failures_from_a("sshd", ATTACKER);
    assert!(f
        .wait_has(&f.a, ATTACKER, Duration::from_secs(10))
        .is_some());

    let a = f.a.clone();
    f.nft(
        &a,
        &format!("delete element inet {NFT_TABLE} banned4 {{ {ATTACKER} }}"),
    );
    assert!(!f.has(&a, ATTACKER));
    let back = f
        .wait_has(&a, ATTACKER, RECONCILE * 2 + Duration::from_secs(3))
        .expect("reconcile must put the deleted ban back");
    f.lab
        .note(&format!("deleted element restored after {back:.2?}"));

    let stray = "198.51.100.99";
    f.nft(
        &a,
        &format!("add element inet {NFT_TABLE} banned4 {{ {stray} timeout 1h }}"),
    );
    assert!(f.has(&a, stray));
    let gone = wait_until(
        RECONCILE * 2 + Duration::from_secs(3),
        Duration::from_millis(50),
        || !f.has(&a, stray),
    )
    .expect("reconcile must remove the stray element");
    f.lab
        .note(&format!("stray element removed after {gone:.2?}"));
    assert!(f.has(&a, ATTACKER), "the real ban stays");
    let status = f.target_status("a");
    assert!(
        status["remote"]["reconciles"].as_u64() >= Some(3),
        "{status}"
    );
}
