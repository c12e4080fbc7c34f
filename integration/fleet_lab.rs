//! The fleet test bed: a collector running syslog2ban, and servers A and B each with a real
//! sshd (key auth for root) and their own nftables, in namespaces joined by a bridge. Used by
//! the remote-ban tests (`fleet.rs`) and the remote latency benchmark (`benches/remote.rs`).

#![allow(dead_code)]
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
use std::time::Duration;

use serde_json::Value;

use crate::lab::{
    command, run, tool, wait_until, DaemonOptions, Lab, Listener, NFT_TABLE, SYSLOG_TCP_PORT,
};

pub const COLLECTOR_IP: &str = "198.51.100.1";
pub const A_IP: &str = "198.51.100.10";
pub const B_IP: &str = "198.51.100.20";
pub const ATTACKER: &str = "198.51.100.66";
pub const ATTACKER2: &str = "198.51.100.67";
pub const PORT: u16 = crate::lab::SSH_PORT;
pub const RECONCILE: Duration = Duration::from_secs(2);
pub const BANTIME_SECS: u64 = 600;

pub const TOOLS: &[&str] = &[
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
pub struct Fleet {
    /// Namespaces, processes, directory (`lab.srv` is the collector).
    pub lab: Lab,
    /// Server A's namespace.
    pub a: String,
    /// Server B's namespace.
    pub b: String,
    /// The collector's ssh key.
    pub client_key: PathBuf,
    /// known_hosts with A's and B's keys.
    pub known_hosts: PathBuf,
    /// More keys for `[target.a]` (e.g. `backend = "ipset"`), written by `start_daemon`.
    pub target_a_extra: String,
}

impl Fleet {
    pub fn new(test: &str) -> Fleet {
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
            target_a_extra: String::new(),
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
    pub fn start_sshd(&mut self, ns: &str, label: &str) -> String {
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
        // `nlban`: a ban-only account that may run nft through sudo and nothing else.
        let passwd = format!(
            "{passwd}nlban:x:4243:4243:syslog2ban ban account:{}:/bin/sh\n",
            d.join("root-home").display()
        );
        let shadow = format!("{shadow}nlban:*:20000:0:99999:7:::\n");
        fs::write(etc.join("passwd"), passwd).expect("write passwd");
        fs::write(etc.join("shadow"), shadow).expect("write shadow");
        let nft = tool("nft");
        fs::write(
            etc.join("sudoers"),
            format!(
                "Defaults env_reset\nDefaults secure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n\
                 root ALL=(ALL:ALL) ALL\nnlban ALL=(root) NOPASSWD: {}\n",
                nft.display()
            ),
        )
        .expect("write sudoers");
        fs::set_permissions(etc.join("sudoers"), fs::Permissions::from_mode(0o440))
            .expect("chmod sudoers");
        fs::set_permissions(etc.join("shadow"), fs::Permissions::from_mode(0o640))
            .expect("chmod shadow");
        let group = fs::read_to_string("/etc/group").expect("read /etc/group");
        fs::write(etc.join("group"), format!("{group}nlban:x:4243:\n")).expect("write group");
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
        self.lab
            .spawn_sshd(label, ns, &d, &d.join("devlog"), &config, &["-e"]);
        fs::read_to_string(host_key.with_extension("pub")).expect("read host public key")
    }

    /// Kills every process in `ns` (sshd and the per-connection child serving the
    /// collector's master), as if the host went away.
    pub fn take_down(&mut self, ns: &str) {
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
    pub fn start_daemon(&mut self, extra: &str) {
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
                 connect_timeout = \"3s\"\ncommand_timeout = \"5s\"\n{more}\n",
                more = if name == "a" {
                    self.target_a_extra.as_str()
                } else {
                    ""
                },
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

    /// A fleet whose collector runs with the default targets, is connected to A, and has
    /// banned ATTACKER there (through the `origin` jail).
    pub fn with_ban_on_a(test: &str) -> Fleet {
        let mut f = Fleet::new(test);
        f.start_daemon("");
        f.wait_connected("a", Duration::from_secs(20));
        f.failures_from_a("sshd", ATTACKER);
        assert!(
            f.wait_has(&f.a, ATTACKER, Duration::from_secs(10))
                .is_some(),
            "{ATTACKER} not in A's set: {:?}",
            f.remote_set(&f.a)
        );
        f
    }

    /// `program` on A reports three failed passwords from `attacker` to the collector.
    pub fn failures_from_a(&self, program: &str, attacker: &str) {
        self.failures_from_a_to(program, attacker, SYSLOG_TCP_PORT);
    }

    /// [`Fleet::failures_from_a`] to the collector's `port`.
    pub fn failures_from_a_to(&self, program: &str, attacker: &str, port: u16) {
        self.failures_from(&self.a, "server-a", program, attacker, port);
    }

    /// `program` on B reports three failed passwords from `attacker` to the collector.
    pub fn failures_from_b(&self, program: &str, attacker: &str) {
        self.failures_from(&self.b, "server-b", program, attacker, SYSLOG_TCP_PORT);
    }

    fn failures_from(&self, ns: &str, host: &str, program: &str, attacker: &str, port: u16) {
        let msgs: Vec<String> = (0..3)
            .map(|i| {
                format!(
                    "<38>1 2026-11-25T10:00:0{i}Z {host} {program} 4242 - - Failed password for root from {attacker} port 4{i}000 ssh2"
                )
            })
            .collect();
        self.lab.send_frames_from(ns, COLLECTOR_IP, port, &msgs);
    }

    /// The elements of `banned4` on a server: address → seconds left (None: no timeout).
    pub fn remote_set(&self, ns: &str) -> Vec<(String, Option<u64>)> {
        self.set_in(ns, NFT_TABLE)
    }

    /// The elements (and seconds left) of set `banned4` of nft table `table` in `ns`.
    pub fn set_in(&self, ns: &str, table: &str) -> Vec<(String, Option<u64>)> {
        let out = self.lab.exec(
            ns,
            &[
                tool("nft").as_os_str(),
                "-j".as_ref(),
                "list".as_ref(),
                "set".as_ref(),
                "inet".as_ref(),
                table.as_ref(),
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

    pub fn has(&self, ns: &str, addr: &str) -> bool {
        self.remote_set(ns).iter().any(|(a, _)| a == addr)
    }

    pub fn wait_has(&self, ns: &str, addr: &str, within: Duration) -> Option<Duration> {
        wait_until(within, Duration::from_millis(25), || self.has(ns, addr))
    }

    pub fn nft(&self, ns: &str, script: &str) {
        let out = self.lab.exec(
            ns,
            &[tool("nft").as_os_str(), OsStr::new(script)],
            Duration::from_secs(10),
        );
        assert!(out.success(), "nft in {ns}: {}", out.describe());
    }

    /// Runs `argv` in `ns`; panics unless it succeeds. Its stdout.
    pub fn exec_ok(&self, ns: &str, argv: &[&str]) -> String {
        let out = self.lab.exec(ns, argv, Duration::from_secs(10));
        assert!(out.success(), "{argv:?} in {ns}: {}", out.describe());
        out.stdout
    }

    /// The `status --json` entry of a target.
    pub fn target_status(&self, name: &str) -> Value {
        let v = self.lab.ctl_json(&["status", "--json"]);
        v["targets"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["target"] == name).cloned())
            .unwrap_or_else(|| panic!("target {name} not in status: {v}"))
    }

    /// [`Fleet::wait_connected`] for the daemon answering on `socket`.
    pub fn wait_connected_at(&self, socket: &Path, name: &str, within: Duration) {
        let status = || {
            let out = run(
                command(crate::lab::DAEMON_BIN)
                    .args(["status", "--json", "--socket"])
                    .arg(socket),
                Duration::from_secs(10),
            );
            let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
            v["targets"]
                .as_array()
                .and_then(|t| t.iter().find(|t| t["target"] == name).cloned())
                .unwrap_or(Value::Null)
        };
        let ok = wait_until(within, Duration::from_millis(50), || {
            let t = status();
            t["remote"]["connected"] == true && t["remote"]["reconciles"].as_u64() >= Some(1)
        });
        assert!(
            ok.is_some(),
            "target {name} not connected within {within:?}: {}",
            status()
        );
    }

    pub fn wait_connected(&self, name: &str, within: Duration) {
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
    pub fn connects(&self, src: &str, dst: &str) -> bool {
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

/// Makes an ed25519 key pair (no passphrase).
pub fn keygen(path: &Path, comment: &str) {
    let out = run(
        command(tool("ssh-keygen"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
        Duration::from_secs(20),
    );
    assert!(out.success(), "{}", out.describe());
}
