//! Network-namespace test bed for the end-to-end tests.
//!
//! One [`Lab`] per test: two fresh network namespaces (`s2b<pid>-<n>-srv` and `-atk`) joined by a
//! veth pair, everything else under a per-test directory. Nothing is created in the root network
//! namespace: the veth pair is created inside SERVER with its peer moved straight into ATTACKER.
//!
//! ```text
//!  SERVER  eth0 198.51.100.10/24, 2001:db8:5100::10/64     ATTACKER  eth0 198.51.100.66/24,
//!    sshd :2222 (private mount ns, /dev/log -> DIR/...)               198.51.100.67/24,
//!    rsyslogd (imuxsock DIR/rsyslog-devlog -> omfwd 127.0.0.1)        2001:db8:5100::66/64
//!    syslog2ban (listener on 127.0.0.1 or DIR/devlog, nft table inet syslog2ban)
//! ```
//!
//! Every process is started through `ip netns exec`, which (like `unshare` and the mount-ns
//! wrapper script) execs rather than forks, so the PID we hold is the PID of the real program.
//! `Drop` stops those PIDs (TERM, then KILL), then kills by PID whatever is still inside the
//! test's own namespaces (sshd's per-connection children, the daemon's `nft` children), deletes
//! the namespaces and removes the directory. When the test is panicking, `Drop` first prints the
//! daemon's log, what rsyslog received, the SERVER ruleset and socket table.
//!
//! Environment knobs: `S2B_LAB_KEEP=1` keeps the directory, `S2B_LAB_DUMP=1` prints the
//! diagnostics even for passing tests, `RUST_LOG` is passed to the daemon (default `info,syslog2ban=debug`).

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// SERVER's address (sshd listens here).
pub const SERVER_IP: &str = "198.51.100.10";
/// SERVER's IPv6 address.
pub const SERVER_IP6: &str = "2001:db8:5100::10";
/// The attacking source address.
pub const ATTACKER_IP: &str = "198.51.100.66";
/// A second source address in ATTACKER that never attacks.
pub const BYSTANDER_IP: &str = "198.51.100.67";
/// ATTACKER's IPv6 address.
pub const ATTACKER_IP6: &str = "2001:db8:5100::66";
/// sshd's port in SERVER.
pub const SSH_PORT: u16 = 2222;
/// The daemon's TCP syslog port (127.0.0.1 in SERVER).
pub const SYSLOG_TCP_PORT: u16 = 5514;
/// The daemon's UDP syslog port (127.0.0.1 in SERVER).
pub const SYSLOG_UDP_PORT: u16 = 5515;
/// The journal-upload listener's port inside SERVER (systemd-journal-remote's default).
pub const JOURNAL_UPLOAD_PORT: u16 = 19532;
/// nft table the daemon manages (family inet).
pub const NFT_TABLE: &str = "syslog2ban";
/// `maxretry` of the test jail override.
pub const MAXRETRY: u32 = 3;
/// `bantime` of the test jail override.
pub const BANTIME: Duration = Duration::from_secs(8);

/// The daemon under test.
pub const DAEMON_BIN: &str = env!("CARGO_BIN_EXE_syslog2ban");
/// The shipped sshd jail, copied into every test's conf.d.
pub const SHIPPED_SSHD_JAIL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf.d/sshd.toml");

/// The test override, loaded after the shipped jail (`zz-` sorts last).
const TEST_JAIL_OVERRIDE: &str =
    "[jail.sshd]\nmaxretry = 3\nbantime = \"8s\"\nfindtime = \"10m\"\n";

/// Test account in SERVER's private /etc: `nltest` / `nltest-pw`
/// (`openssl passwd -6 -salt s2bnltestsalt nltest-pw`, fixed so no openssl is needed).
const NLTEST_SHADOW_HASH: &str = "$6$s2bnltestsalt$KsItYu7RYc0pej0QRNHQDzIQBo5/C2jP7klITNCC.ybNM7WFYahpXIRO7J5jQUTHaVkEMK7ORMZa/CtdhgM/z/";

/// Runs `"$@"` in the private mount namespace created by `unshare -m`: tmpfs /run (for
/// /run/sshd), a tmpfs /dev with the few nodes sshd needs and `/dev/log` pointing at the
/// per-test socket, and the per-test passwd/shadow/group bind-mounted over /etc's. The host's
/// /etc, /dev and /run are not touched.
const MOUNTNS_EXEC_SH: &str = r#"#!/bin/sh
# mountns-exec.sh DIR DEVLOG_TARGET cmd args...
set -e
D=$1 LOGT=$2; shift 2
mount --make-rprivate /
mount -t tmpfs -o mode=755 s2brun /run
mkdir -m 755 /run/sshd /run/hostdev
mount --rbind /dev /run/hostdev
mount -t tmpfs -o mode=755 s2bdev /dev
for d in null zero full random urandom tty ptmx; do touch /dev/$d; mount --bind /run/hostdev/$d /dev/$d; done
mkdir /dev/pts /dev/shm
mount --bind /run/hostdev/pts /dev/pts
mount --bind /run/hostdev/shm /dev/shm
ln -s /proc/self/fd /dev/fd; ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout; ln -s /proc/self/fd/2 /dev/stderr
umount -l /run/hostdev
ln -s "$LOGT" /dev/log
# tcp-wrappers tests: /etc seen through an overlay (the host's /etc untouched) whose
# hosts.deny is a symlink to the per-test file the daemon rewrites (rename-safe).
if [ -f "$D/etc/hosts-deny-target" ]; then
  mkdir -p "$D/ovl/u" "$D/ovl/w"
  mount -t overlay s2betc -o lowerdir=/etc,upperdir="$D/ovl/u",workdir="$D/ovl/w" /etc
  rm -f /etc/hosts.deny /etc/hosts.allow
  ln -s "$(cat "$D/etc/hosts-deny-target")" /etc/hosts.deny
fi
for f in passwd shadow group; do mount --bind "$D/etc/$f" /etc/$f; done
if [ -e "$D/etc/sudoers" ] && [ -e /etc/sudoers ]; then mount --bind "$D/etc/sudoers" /etc/sudoers; fi
exec "$@"
"#;

/// The command backend's test script (`backends.rs`, `fleet.rs`): records each run's argv (one `[arg]` line per
/// element), and keeps banned addresses out with nft, in a table of its own.
pub const NFT_BAN_SCRIPT: &str = r#"#!/bin/sh
log="$(dirname "$0")/runs.log"
{ echo "run"; for a in "$@"; do printf '[%s]\n' "$a"; done; } >> "$log"
case "$1" in
  start) printf '%s\n' 'add table inet cmdtest' \
      'add set inet cmdtest banned { type ipv4_addr; }' \
      'add chain inet cmdtest input { type filter hook input priority -10; }' \
      'flush chain inet cmdtest input' \
      'add rule inet cmdtest input ip saddr @banned drop' | nft -f - ;;
  ban) nft add element inet cmdtest banned "{ $2 }" ;;
  unban) nft delete element inet cmdtest banned "{ $2 }" ;;
esac
"#;

static LAB_COUNTER: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------------------------------------
// prerequisites
// ---------------------------------------------------------------------------------------------

/// PATH for every child: the caller's PATH plus the sbin directories (cargo may run us with a
/// PATH that lacks /usr/sbin, where ip, nft, sshd and rsyslogd live; the daemon runs `nft`).
pub fn child_path() -> String {
    let mut dirs: Vec<String> = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !dirs.iter().any(|x| x == d) {
            dirs.push(d.to_owned());
        }
    }
    dirs.join(":")
}

/// Absolute path of a tool, looked up in [`child_path`]. `python3` prefers the distribution's
/// interpreter (a pyenv shim works too, but costs a shell start-up per call).
pub fn which(tool: &str) -> Option<PathBuf> {
    if tool == "python3" && is_executable(Path::new("/usr/bin/python3")) {
        return Some(PathBuf::from("/usr/bin/python3"));
    }
    // systemd's helpers (systemd-journal-upload, ...) live outside PATH.
    if tool.starts_with("systemd-") {
        let helper = Path::new("/usr/lib/systemd").join(tool);
        if is_executable(&helper) {
            return Some(helper);
        }
    }
    child_path()
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// [`which`], for tools [`preflight`] has already checked.
pub fn tool(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| panic!("tool `{name}` not found in {}", child_path()))
}

fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Checks root and the tools a test needs. Returns false when the test should be skipped
/// (after printing `SKIP: ...`); with `CI=true` a missing prerequisite fails the test instead.
pub fn preflight(test: &str, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if effective_uid() != Some(0) {
        missing.push(
            "root (uid 0 with CAP_NET_ADMIN and CAP_SYS_ADMIN, for netns and mount ns)".to_owned(),
        );
    }
    for t in tools {
        if which(t).is_none() {
            missing.push(format!("`{t}` (not in {})", child_path()));
        }
    }
    if !Path::new(DAEMON_BIN).exists() {
        missing.push(format!("daemon binary {DAEMON_BIN}"));
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: missing {}", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{msg} (CI=true, so missing prerequisites fail instead of skipping; .ci/run installs them)");
    }
    // Straight to the process's stderr: libtest captures eprintln! of passing tests, and a
    // skip should be visible in a normal run.
    let _ = writeln!(std::io::stderr(), "SKIP: {msg}");
    false
}

// ---------------------------------------------------------------------------------------------
// running commands
// ---------------------------------------------------------------------------------------------

/// Result of a finished (or timed-out) command.
#[derive(Debug)]
pub struct Out {
    /// None if it was killed after the timeout.
    pub status: Option<ExitStatus>,
    /// Captured stdout (lossy UTF-8).
    pub stdout: String,
    /// Captured stderr (lossy UTF-8).
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
    /// A printable form of the command.
    pub cmdline: String,
}

impl Out {
    /// Exit code, if it exited normally.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
    /// Exited with status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
    /// One-paragraph description for assertion messages.
    pub fn describe(&self) -> String {
        let st = match self.status {
            Some(s) => format!("{s}"),
            None => "killed after timeout".to_owned(),
        };
        format!(
            "`{}` -> {st} in {:.2?}\n  stdout: {}\n  stderr: {}",
            self.cmdline,
            self.elapsed,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

fn cmdline(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A `Command` with our PATH and no stdin.
pub fn command<S: AsRef<OsStr>>(program: S) -> Command {
    let mut c = Command::new(program);
    c.env("PATH", child_path()).stdin(Stdio::null());
    c
}

/// Sends `sig` (e.g. "TERM", "KILL") to one PID.
pub fn kill_pid(pid: u32, sig: &str) -> bool {
    command("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a command to completion, capturing output; kills it (by PID) after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Out {
    let line = cmdline(cmd);
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
    let pid = child.id();
    let mut so = child.stdout.take().expect("piped stdout");
    let mut se = child.stderr.take().expect("piped stderr");
    let ro = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let re = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(s) => s.ok(),
        Err(_) => {
            // Not reaped yet (the waiter still holds it), so the PID is still ours.
            kill_pid(pid, "KILL");
            let _ = rx.recv_timeout(Duration::from_secs(5));
            None
        }
    };
    let elapsed = start.elapsed();
    // After a timeout a grandchild may still hold the pipes open: do not wait for EOF then.
    let (stdout, stderr) = if status.is_some() {
        let o = ro.join().unwrap_or_default();
        let e = re.join().unwrap_or_default();
        (
            String::from_utf8_lossy(&o).into_owned(),
            String::from_utf8_lossy(&e).into_owned(),
        )
    } else {
        (String::new(), String::new())
    };
    Out {
        status,
        stdout,
        stderr,
        elapsed,
        cmdline: line,
    }
}

/// Polls `f` every `every` until it returns true or `within` has passed; returns the time it
/// took, or None on timeout.
pub fn wait_until(
    within: Duration,
    every: Duration,
    mut f: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= within {
            return None;
        }
        thread::sleep(every);
    }
}

fn tail(path: &Path, max_lines: usize) -> String {
    match fs::read(path) {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b);
            let lines: Vec<&str> = s.lines().collect();
            let skip = lines.len().saturating_sub(max_lines);
            let mut out = String::new();
            if skip > 0 {
                out.push_str(&format!("    [... {skip} earlier lines ...]\n"));
            }
            for l in &lines[skip..] {
                out.push_str("    ");
                out.push_str(l);
                out.push('\n');
            }
            if out.is_empty() {
                out.push_str("    (empty)\n");
            }
            out
        }
        Err(e) => format!("    ({}: {e})\n", path.display()),
    }
}

fn indent(s: &str) -> String {
    let mut out = String::new();
    for l in s.lines() {
        out.push_str("    ");
        out.push_str(l);
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// the lab
// ---------------------------------------------------------------------------------------------

/// Extra daemon settings for [`Lab::start_daemon_with`]; the default is what
/// [`Lab::start_daemon`] writes.
#[derive(Clone, Debug, Default)]
pub struct DaemonOptions {
    /// `[metrics] listen`, e.g. `"127.0.0.1:9617"` (inside SERVER).
    pub metrics_listen: Option<String>,
    /// `max_frame` of the listener.
    pub max_frame: Option<usize>,
    /// RUST_LOG for the daemon (default: the test's RUST_LOG, else `info,syslog2ban=debug`).
    pub rust_log: Option<String>,
    /// Soft and hard RLIMIT_NOFILE for the daemon (through `prlimit`), as a small host has.
    pub open_files: Option<u64>,
    /// More environment for the daemon (test hooks, NOTIFY_SOCKET).
    pub env: Vec<(String, String)>,
}

/// How syslog reaches the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// `type = "tcp"` on 127.0.0.1:5514 (rsyslog: octet-counted RFC 5424).
    Tcp,
    /// `type = "udp"` on 127.0.0.1:5515 (rsyslog: RFC 3164 forward format).
    Udp,
    /// `type = "unix"` at DIR/devlog (sshd's /dev/log, no rsyslog in between).
    Unix,
    /// `type = "journal-upload"` on 127.0.0.1:19532 (systemd-journal-upload, plain HTTP).
    JournalUpload,
}

struct Proc {
    label: String,
    pid: u32,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

/// Runs inside a namespace. argv: host, port, then one message per argument. Sends them all as
/// octet-counted frames over one TCP connection, half-closes, and waits for the daemon to close
/// (it does so only after reading every byte), then prints `sent N`.
const SEND_FRAMES_PY: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
msgs = [m.encode() for m in sys.argv[3:]]
s = socket.create_connection((host, port), timeout=5)
s.sendall(b"".join(str(len(m)).encode() + b" " + m for m in msgs))
s.shutdown(socket.SHUT_WR)
while s.recv(4096):
    pass
s.close()
print("sent", len(msgs), flush=True)
"#;

/// One test's namespaces, files and processes. Dropping it tears everything down.
pub struct Lab {
    /// `s2b<pid>-<n>`; namespace names are `<id>-srv` and `<id>-atk`.
    pub id: String,
    /// SERVER namespace.
    pub srv: String,
    /// ATTACKER namespace.
    pub atk: String,
    /// Per-test directory (mode 755: sshd's privsep and PAM read from it).
    pub dir: PathBuf,
    start: Instant,
    namespaces: Vec<String>,
    procs: Vec<Proc>,
    /// Paths whose contents go into the diagnostics, with a title.
    extra_logs: Vec<(String, PathBuf)>,
}

impl Lab {
    /// Creates the namespaces and the veth link. Panics (after cleaning up) if anything fails.
    pub fn new(test: &str) -> Lab {
        let mut lab = Lab::bare(test);
        lab.net_up();
        lab.note(&format!(
            "namespaces {} and {} up, dir {}",
            lab.srv,
            lab.atk,
            lab.dir.display()
        ));
        lab
    }

    /// The directory and the (not yet created) namespace names, for topologies built by
    /// another module with [`Lab::add_netns`] and [`Lab::ip`].
    pub fn bare(test: &str) -> Lab {
        let n = LAB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("s2b{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(format!("{id}-{test}"));
        if dir.exists() {
            let _ = fs::remove_dir_all(&dir);
        }
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod lab dir");
        let lab = Lab {
            srv: format!("{id}-srv"),
            atk: format!("{id}-atk"),
            id,
            dir,
            start: Instant::now(),
            namespaces: Vec::new(),
            procs: Vec::new(),
            extra_logs: Vec::new(),
        };
        lab
    }

    /// Creates a namespace (deleted by `Drop`) with its loopback up.
    pub fn add_netns(&mut self, ns: &str) {
        self.ip(&["netns", "add", ns]);
        self.namespaces.push(ns.to_string());
        self.ip(&["-n", ns, "link", "set", "lo", "up"]);
    }

    /// Adds a file to the post-mortem dump.
    pub fn dump_file(&mut self, title: &str, path: PathBuf) {
        self.extra_logs.push((title.to_string(), path));
    }

    fn net_up(&mut self) {
        for ns in [self.srv.clone(), self.atk.clone()] {
            self.add_netns(&ns);
        }
        let (s, a) = (self.srv.clone(), self.atk.clone());
        // Created in SERVER, peer created directly in ATTACKER: never visible in the root ns.
        self.ip(&[
            "-n", &s, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &a,
        ]);
        self.ip(&["-n", &s, "link", "set", "eth0", "up"]);
        self.ip(&["-n", &a, "link", "set", "eth0", "up"]);
        self.ip(&[
            "-n",
            &s,
            "addr",
            "add",
            &format!("{SERVER_IP}/24"),
            "dev",
            "eth0",
        ]);
        self.ip(&[
            "-n",
            &s,
            "addr",
            "add",
            &format!("{SERVER_IP6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        self.ip(&[
            "-n",
            &a,
            "addr",
            "add",
            &format!("{ATTACKER_IP}/24"),
            "dev",
            "eth0",
        ]);
        self.ip(&[
            "-n",
            &a,
            "addr",
            "add",
            &format!("{BYSTANDER_IP}/24"),
            "dev",
            "eth0",
        ]);
        self.ip(&[
            "-n",
            &a,
            "addr",
            "add",
            &format!("{ATTACKER_IP6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
    }

    /// Runs `ip ARGS` in the root namespace (only ever with `-n NS` or `netns`); panics on error.
    pub fn ip(&self, args: &[&str]) {
        let out = run(command(tool("ip")).args(args), Duration::from_secs(10));
        assert!(out.success(), "lab {}: {}", self.id, out.describe());
    }

    /// Prints a timestamped progress line (shown by libtest for failing tests).
    pub fn note(&self, msg: &str) {
        eprintln!(
            "[{} +{:>7.3}s] {msg}",
            self.id,
            self.start.elapsed().as_secs_f64()
        );
    }

    /// Runs a command inside a namespace and waits for it.
    pub fn exec<S: AsRef<OsStr>>(&self, ns: &str, argv: &[S], timeout: Duration) -> Out {
        let mut c = command(tool("ip"));
        c.args(["netns", "exec", ns]).args(argv);
        run(&mut c, timeout)
    }

    /// Starts a long-running process inside a namespace; stdout and stderr go to DIR/<label>.log.
    pub fn spawn<S: AsRef<OsStr>>(
        &mut self,
        label: &str,
        ns: &str,
        argv: &[S],
        env: &[(&str, &str)],
    ) -> u32 {
        let log = self.dir.join(format!("{label}.log"));
        let f = fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let f2 = f.try_clone().expect("dup log fd");
        let mut c = command(tool("ip"));
        c.args(["netns", "exec", ns])
            .args(argv)
            .stdout(f)
            .stderr(f2);
        for (k, v) in env {
            c.env(k, v);
        }
        let line = cmdline(&c);
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        let pid = child.id();
        self.note(&format!("started {label} pid {pid}: {line}"));
        self.procs.push(Proc {
            label: label.to_owned(),
            pid,
            child,
            log,
            exit: None,
        });
        pid
    }

    /// If the process has exited: its status.
    pub fn exited(&mut self, label: &str) -> Option<ExitStatus> {
        let p = self.procs.iter_mut().find(|p| p.label == label)?;
        if p.exit.is_none() {
            p.exit = p.child.try_wait().ok().flatten();
        }
        p.exit
    }

    /// Panics if the process is no longer running.
    pub fn assert_running(&mut self, label: &str) {
        if let Some(st) = self.exited(label) {
            panic!("{label} exited unexpectedly: {st}");
        }
    }

    /// Polls `ready` until true; panics if `label` exits first or `within` passes.
    pub fn wait_ready(
        &mut self,
        label: &str,
        what: &str,
        within: Duration,
        mut ready: impl FnMut(&Lab) -> bool,
    ) {
        let start = Instant::now();
        loop {
            if ready(self) {
                self.note(&format!(
                    "{label} ready ({what}) after {:.0?}",
                    start.elapsed()
                ));
                return;
            }
            if let Some(st) = self.exited(label) {
                panic!("{label} exited during start-up ({st}) before {what}");
            }
            if start.elapsed() > within {
                panic!("{label} not ready within {within:?}: {what}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn listening(&self, udp: bool, addr: &str) -> bool {
        self.listening_in(&self.srv, udp, addr)
    }

    /// Whether something listens on `addr` (e.g. `0.0.0.0:2222`) inside `ns`.
    pub fn listening_in(&self, ns: &str, udp: bool, addr: &str) -> bool {
        let flags = if udp { "-Hlun" } else { "-Hltn" };
        let out = self.exec(
            ns,
            &[tool("ss").as_os_str(), OsStr::new(flags)],
            Duration::from_secs(5),
        );
        out.success() && out.stdout.split_whitespace().any(|w| w == addr)
    }

    /// True if the nft table exists in SERVER.
    pub fn table_exists(&self) -> bool {
        let nft = tool("nft");
        self.exec(
            &self.srv,
            &[
                nft.as_os_str(),
                "list".as_ref(),
                "table".as_ref(),
                "inet".as_ref(),
                NFT_TABLE.as_ref(),
            ],
            Duration::from_secs(5),
        )
        .success()
    }

    // ---- syslog2ban -----------------------------------------------------------------------

    /// Path of the daemon's unix listener (Listener::Unix).
    pub fn daemon_devlog(&self) -> PathBuf {
        self.dir.join("devlog")
    }

    /// Path of the daemon's control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("s2b.sock")
    }

    /// The daemon's config directory (`--config`): DIR/s2b.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.join("s2b")
    }

    /// The daemon's jail directory: DIR/s2b/conf.d.
    pub fn conf_d(&self) -> PathBuf {
        self.config_dir().join("conf.d")
    }

    /// Replaces conf.d/zz-test.toml (the test's jail override) with `toml`; the running daemon
    /// sees it on its next reload.
    pub fn write_jail_override(&self, toml: &str) {
        let path = self.conf_d().join("zz-test.toml");
        fs::write(&path, toml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Writes DIR/s2b/{syslog2ban.toml,conf.d/} and starts the daemon in SERVER; returns when
    /// the nft table exists and the listener is bound.
    pub fn start_daemon(&mut self, listener: Listener) -> u32 {
        self.start_daemon_with(listener, &DaemonOptions::default())
    }

    /// [`Lab::start_daemon`] with extra settings. With `metrics_listen` it also waits until the
    /// metrics endpoint is bound.
    pub fn start_daemon_with(&mut self, listener: Listener, options: &DaemonOptions) -> u32 {
        self.write_daemon_config(listener, options);
        self.launch_daemon("syslog2ban", listener, options)
    }

    /// Writes DIR/s2b/{syslog2ban.toml,conf.d/{sshd,zz-test}.toml} (what [`Lab::start_daemon_with`]
    /// runs on) without starting anything, so a test can add to them first.
    pub fn write_daemon_config(&mut self, listener: Listener, options: &DaemonOptions) {
        let cfg = self.config_dir();
        let confd = self.conf_d();
        fs::create_dir_all(&confd).expect("mkdir conf.d");
        fs::create_dir_all(self.dir.join("state")).expect("mkdir state");
        fs::copy(SHIPPED_SSHD_JAIL, confd.join("sshd.toml"))
            .unwrap_or_else(|e| panic!("copy {SHIPPED_SSHD_JAIL}: {e}"));
        fs::write(confd.join("zz-test.toml"), TEST_JAIL_OVERRIDE).expect("write zz-test.toml");
        let mut listen = match listener {
            Listener::Tcp => format!("type = \"tcp\"\naddress = \"127.0.0.1:{SYSLOG_TCP_PORT}\"\n"),
            Listener::Udp => format!("type = \"udp\"\naddress = \"127.0.0.1:{SYSLOG_UDP_PORT}\"\n"),
            Listener::Unix => format!(
                "type = \"unix\"\npath = \"{}\"\n",
                self.daemon_devlog().display()
            ),
            Listener::JournalUpload => format!(
                "type = \"journal-upload\"\naddress = \"127.0.0.1:{JOURNAL_UPLOAD_PORT}\"\n"
            ),
        };
        if let Some(max_frame) = options.max_frame {
            listen.push_str(&format!("max_frame = {max_frame}\n"));
        }
        let mut toml = format!(
            "[[listen]]\n{listen}\n[ban]\nbackend = \"nftables\"\ntable = \"{NFT_TABLE}\"\n\n\
             [control]\nsocket = \"{}\"\n\n[state]\ndir = \"{}\"\n",
            self.control_socket().display(),
            self.dir.join("state").display()
        );
        if let Some(address) = &options.metrics_listen {
            toml.push_str(&format!("\n[metrics]\nlisten = \"{address}\"\n"));
        }
        fs::write(cfg.join("syslog2ban.toml"), &toml).expect("write syslog2ban.toml");
        self.extra_logs
            .push(("syslog2ban.toml".into(), cfg.join("syslog2ban.toml")));
    }

    /// Starts the daemon in SERVER on the config already in DIR/s2b, as process `label` (its
    /// output goes to DIR/<label>.log; a restarted daemon takes a new label so the first log is
    /// kept). Returns when the nft table exists and the listener is bound. (After a `kill -9`,
    /// a unix listener's stale socket file would look bound at once: restart tests use TCP.)
    pub fn launch_daemon(
        &mut self,
        label: &str,
        listener: Listener,
        options: &DaemonOptions,
    ) -> u32 {
        let cfg = self.config_dir();
        let rust_log = options.rust_log.clone().unwrap_or_else(|| {
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,syslog2ban=debug".into())
        });
        let srv = self.srv.clone();
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(n) = options.open_files {
            // prlimit execs the daemon: the PID stays the daemon's.
            argv.push(tool("prlimit").into());
            argv.push(format!("--nofile={n}:{n}").into());
        }
        argv.extend([
            OsString::from(DAEMON_BIN),
            "run".into(),
            "--config".into(),
            cfg.clone().into(),
        ]);
        let mut env: Vec<(&str, &str)> = vec![("RUST_LOG", &rust_log)];
        env.extend(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let pid = self.spawn(label, &srv, &argv, &env);
        let devlog = self.daemon_devlog();
        let what = match listener {
            Listener::Tcp => format!("table inet {NFT_TABLE} and tcp 127.0.0.1:{SYSLOG_TCP_PORT}"),
            Listener::Udp => format!("table inet {NFT_TABLE} and udp 127.0.0.1:{SYSLOG_UDP_PORT}"),
            Listener::Unix => format!("table inet {NFT_TABLE} and socket {}", devlog.display()),
            Listener::JournalUpload => {
                format!("table inet {NFT_TABLE} and tcp 127.0.0.1:{JOURNAL_UPLOAD_PORT}")
            }
        };
        self.wait_ready(label, &what, Duration::from_secs(15), |lab| {
            let bound = match listener {
                Listener::Tcp => lab.listening(false, &format!("127.0.0.1:{SYSLOG_TCP_PORT}")),
                Listener::Udp => lab.listening(true, &format!("127.0.0.1:{SYSLOG_UDP_PORT}")),
                Listener::JournalUpload => {
                    lab.listening(false, &format!("127.0.0.1:{JOURNAL_UPLOAD_PORT}"))
                }
                Listener::Unix => fs::metadata(&devlog)
                    .map(|m| m.file_type().is_socket())
                    .unwrap_or(false),
            };
            bound && lab.table_exists()
        });
        if let Some(address) = options.metrics_listen.clone() {
            self.wait_ready(
                label,
                &format!("metrics endpoint tcp {address}"),
                Duration::from_secs(10),
                move |lab| lab.listening(false, &address),
            );
        }
        pid
    }

    /// PID of a process started with [`Lab::spawn`] (e.g. "syslog2ban"), if it is still running.
    pub fn pid_of(&mut self, label: &str) -> Option<u32> {
        if self.exited(label).is_some() {
            return None;
        }
        self.procs.iter().find(|p| p.label == label).map(|p| p.pid)
    }

    /// What a process started with [`Lab::spawn`] has written so far (stdout and stderr).
    pub fn log_of(&self, label: &str) -> String {
        self.procs
            .iter()
            .find(|p| p.label == label)
            .and_then(|p| fs::read(&p.log).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Runs the CLI against the daemon's control socket: `syslog2ban ARGS... --socket SOCK`
    /// (from the root namespace: the socket is a path).
    /// Sends `msgs` as octet-counted frames over one TCP connection to the daemon's TCP
    /// listener (127.0.0.1 in SERVER) and waits until it has read them all.
    pub fn send_frames(&self, msgs: &[String]) {
        self.send_frames_from(&self.srv, "127.0.0.1", SYSLOG_TCP_PORT, msgs);
    }

    /// Sends `msgs` as octet-counted frames from namespace `ns` to `host:port` over one TCP
    /// connection and waits until the receiver has read them all.
    pub fn send_frames_from(&self, ns: &str, host: &str, port: u16, msgs: &[String]) {
        let python = tool("python3").display().to_string();
        let port = port.to_string();
        let mut argv: Vec<&str> = vec![python.as_str(), "-c", SEND_FRAMES_PY, host, port.as_str()];
        argv.extend(msgs.iter().map(String::as_str));
        let out = self.exec(ns, &argv, Duration::from_secs(15));
        assert!(
            out.success() && out.stdout.contains(&format!("sent {}", msgs.len())),
            "sending {} frame(s) failed\n{}",
            msgs.len(),
            out.describe()
        );
    }

    /// [`Lab::ctl`] with a JSON answer (add `--json` to `args`); panics unless it parses.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ctl(args);
        assert!(out.success(), "syslog2ban {args:?}: {}", out.describe());
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("syslog2ban {args:?} is not JSON ({e}): {}", out.stdout))
    }

    pub fn ctl(&self, args: &[&str]) -> Out {
        run(
            command(DAEMON_BIN)
                .args(args)
                .arg("--socket")
                .arg(self.control_socket()),
            Duration::from_secs(10),
        )
    }

    // ---- rsyslog ---------------------------------------------------------------------------

    /// Starts rsyslogd in SERVER forwarding to the daemon (TCP: octet-counted RFC 5424; UDP:
    /// the default RFC 3164 forward format). Returns its imuxsock socket, for sshd's /dev/log.
    /// Start it after the daemon listens.
    pub fn start_rsyslog(&mut self, listener: Listener) -> PathBuf {
        let d = self.dir.clone();
        let sock = d.join("rsyslog-devlog");
        let work = d.join("rsyslog-work");
        fs::create_dir_all(&work).expect("mkdir rsyslog-work");
        let fwd = match listener {
            Listener::Tcp => format!(
                "action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{SYSLOG_TCP_PORT}\" protocol=\"tcp\" \
                 TCP_Framing=\"octet-counted\" template=\"RSYSLOG_SyslogProtocol23Format\""
            ),
            Listener::Udp => format!("action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{SYSLOG_UDP_PORT}\" protocol=\"udp\""),
            Listener::Unix | Listener::JournalUpload => {
                panic!("rsyslog forwards over tcp or udp only")
            }
        };
        let conf = format!(
            "global(workDirectory=\"{work}\" localHostName=\"s2b-server\" maxMessageSize=\"64k\" inputs.timeout.shutdown=\"100\")\n\
             module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             input(type=\"imuxsock\" Socket=\"{sock}\" CreatePath=\"on\" RateLimit.Interval=\"0\")\n\
             action(type=\"omfile\" file=\"{recv}\")\n\
             {fwd}\n       queue.type=\"LinkedList\" queue.timeoutShutdown=\"10\" queue.timeoutActionCompletion=\"10\"\n       \
             action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\" action.resumeIntervalMax=\"2\")\n",
            work = work.display(),
            sock = sock.display(),
            recv = d.join("rsyslog-received.log").display(),
        );
        let conf_path = d.join("rsyslog.conf");
        fs::write(&conf_path, conf).expect("write rsyslog.conf");
        self.extra_logs.push((
            "what rsyslog received (omfile copy)".into(),
            d.join("rsyslog-received.log"),
        ));
        let srv = self.srv.clone();
        let pidfile = d.join("rsyslogd.pid");
        self.spawn(
            "rsyslogd",
            &srv,
            &[
                tool("rsyslogd").as_os_str(),
                "-n".as_ref(),
                "-f".as_ref(),
                conf_path.as_os_str(),
                "-i".as_ref(),
                pidfile.as_os_str(),
            ],
            &[],
        );
        let s = sock.clone();
        self.wait_ready(
            "rsyslogd",
            &format!("socket {}", sock.display()),
            Duration::from_secs(10),
            move |_| {
                fs::metadata(&s)
                    .map(|m| m.file_type().is_socket())
                    .unwrap_or(false)
            },
        );
        sock
    }

    // ---- sshd ------------------------------------------------------------------------------

    /// Starts OpenSSH sshd on SERVER:2222 (password auth through PAM, user nltest) in a private
    /// mount namespace whose /dev/log is a symlink to `devlog`.
    pub fn start_sshd(&mut self, devlog: &Path) -> u32 {
        let d = self.dir.clone();
        let etc = d.join("etc");
        let home = d.join("home-nltest");
        fs::create_dir_all(&etc).expect("mkdir etc");
        fs::create_dir_all(&home).expect("mkdir home");
        let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        let shadow = fs::read_to_string("/etc/shadow").expect("read /etc/shadow");
        let group = fs::read_to_string("/etc/group").expect("read /etc/group");
        let nl = |s: &str| {
            if s.ends_with('\n') || s.is_empty() {
                String::new()
            } else {
                "\n".into()
            }
        };
        fs::write(
            etc.join("passwd"),
            format!(
                "{passwd}{}nltest:x:4242:4242:syslog2ban test user:{}:/bin/sh\n",
                nl(&passwd),
                home.display()
            ),
        )
        .expect("write passwd");
        fs::write(
            etc.join("shadow"),
            format!(
                "{shadow}{}nltest:{NLTEST_SHADOW_HASH}:20000:0:99999:7:::\n",
                nl(&shadow)
            ),
        )
        .expect("write shadow");
        fs::set_permissions(etc.join("shadow"), fs::Permissions::from_mode(0o640))
            .expect("chmod shadow");
        fs::write(
            etc.join("group"),
            format!("{group}{}nltest:x:4242:\n", nl(&group)),
        )
        .expect("write group");

        let key = d.join("ssh_host_ed25519_key");
        let out = run(
            command(tool("ssh-keygen"))
                .args(["-q", "-t", "ed25519", "-N", "", "-C", &self.srv, "-f"])
                .arg(&key),
            Duration::from_secs(20),
        );
        assert!(out.success(), "{}", out.describe());

        let config = d.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {SSH_PORT}\nListenAddress 0.0.0.0\nListenAddress ::\nHostKey {key}\nPidFile {pid}\n\
                 SyslogFacility AUTH\nLogLevel INFO\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication no\nAuthorizedKeysFile none\nPermitRootLogin no\nStrictModes no\nUsePAM yes\n\
                 UseDNS no\nMaxAuthTries 6\nMaxStartups 100:30:200\nPrintMotd no\n",
                key = key.display(),
                pid = d.join("sshd.pid").display()
            ),
        )
        .expect("write sshd_config");
        let srv = self.srv.clone();
        self.spawn_sshd("sshd", &srv, &d, devlog, &config, &[])
    }

    /// Starts `sshd -D -f config` in namespace `ns`, inside the private mount namespace of
    /// [`MOUNTNS_EXEC_SH`] over `dir` (its `etc/` files) with /dev/log pointing at `devlog`, and
    /// waits until it listens on [`SSH_PORT`] (the port every test config uses). Readiness comes from the socket table: a probe
    /// connection would itself be logged ("Connection closed by ...") and reach the jail.
    pub fn spawn_sshd(
        &mut self,
        label: &str,
        ns: &str,
        dir: &Path,
        devlog: &Path,
        config: &Path,
        extra_args: &[&str],
    ) -> u32 {
        let port = SSH_PORT;
        let wrapper = dir.join("mountns-exec.sh");
        fs::write(&wrapper, MOUNTNS_EXEC_SH).expect("write mountns-exec.sh");
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
        let (unshare, sshd) = (tool("unshare"), tool("sshd"));
        let mut argv: Vec<&OsStr> = vec![
            unshare.as_os_str(),
            "-m".as_ref(),
            "/bin/sh".as_ref(),
            wrapper.as_os_str(),
            dir.as_os_str(),
            devlog.as_os_str(),
        ];
        argv.push(sshd.as_os_str());
        argv.push("-D".as_ref());
        argv.extend(extra_args.iter().map(OsStr::new));
        argv.push("-f".as_ref());
        argv.push(config.as_os_str());
        let pid = self.spawn(label, ns, &argv, &[]);
        let ns_owned = ns.to_string();
        self.wait_ready(
            label,
            &format!("tcp 0.0.0.0:{port} in {ns}"),
            Duration::from_secs(10),
            move |lab| lab.listening_in(&ns_owned, false, &format!("0.0.0.0:{port}")),
        );
        pid
    }

    // ---- attacker --------------------------------------------------------------------------

    /// One failed password login from `src` to SERVER's sshd (sshpass rc 5 = wrong password).
    pub fn ssh_wrong_password(&self, src: &str) -> Out {
        let argv: Vec<String> = [
            tool("sshpass").display().to_string(),
            "-p".into(),
            "wrong".into(),
            tool("ssh").display().to_string(),
            "-b".into(),
            src.into(),
            "-o".into(),
            "StrictHostKeyChecking=no".into(),
            "-o".into(),
            "UserKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            "-o".into(),
            "PubkeyAuthentication=no".into(),
            "-o".into(),
            "PreferredAuthentications=password".into(),
            "-o".into(),
            "ConnectTimeout=3".into(),
            "-p".into(),
            SSH_PORT.to_string(),
            format!("nltest@{SERVER_IP}"),
            "true".into(),
        ]
        .into();
        self.exec(&self.atk, &argv, Duration::from_secs(30))
    }

    /// TCP connect from ATTACKER's `src` to SERVER:`port` (`nc -z -w wait`).
    pub fn tcp_connects(&self, src: &str, port: u16, wait_secs: u32) -> bool {
        let argv: Vec<String> = vec![
            tool("nc").display().to_string(),
            "-z".into(),
            format!("-w{wait_secs}"),
            "-s".into(),
            src.into(),
            SERVER_IP.into(),
            port.to_string(),
        ];
        self.exec(
            &self.atk,
            &argv,
            Duration::from_secs(u64::from(wait_secs) + 10),
        )
        .success()
    }

    // ---- nft -------------------------------------------------------------------------------

    /// `nft -j list set inet syslog2ban <set>` in SERVER.
    pub fn list_set(&self, set: &str) -> Out {
        let argv: Vec<String> = vec![
            tool("nft").display().to_string(),
            "-j".into(),
            "list".into(),
            "set".into(),
            "inet".into(),
            NFT_TABLE.into(),
            set.into(),
        ];
        self.exec(&self.srv, &argv, Duration::from_secs(10))
    }

    /// Whether `addr` is an element of the set. Minimal JSON inspection: elements are printed as
    /// `"val": "ADDR"` (with timeout) or `"ADDR"`, and no other string in the output can equal a
    /// quoted address.
    pub fn set_contains(&self, set: &str, addr: &str) -> bool {
        let out = self.list_set(set);
        out.success() && out.stdout.contains(&format!("\"{addr}\""))
    }

    /// Polls `banned4` until `addr` shows up; returns how long that took.
    pub fn wait_banned4(&self, addr: &str, within: Duration) -> Option<Duration> {
        wait_until(within, Duration::from_millis(25), || {
            self.set_contains("banned4", addr)
        })
    }

    // ---- diagnostics and teardown ----------------------------------------------------------

    /// Prints everything useful for a post-mortem to stderr.
    pub fn dump(&mut self) {
        let mut s = format!(
            "\n========== lab {} diagnostics (dir {}) ==========\n",
            self.id,
            self.dir.display()
        );
        for i in 0..self.procs.len() {
            let (label, pid) = (self.procs[i].label.clone(), self.procs[i].pid);
            let st = match self.exited(&label) {
                Some(st) => format!("exited: {st}"),
                None => "running".to_owned(),
            };
            s.push_str(&format!(
                "--- {label} (pid {pid}, {st}) output {} ---\n",
                self.procs[i].log.display()
            ));
            s.push_str(&tail(&self.procs[i].log, 200));
        }
        for (title, path) in &self.extra_logs {
            s.push_str(&format!("--- {title} ({}) ---\n", path.display()));
            s.push_str(&tail(path, 80));
        }
        if self.namespaces.contains(&self.srv) {
            let nft = tool("nft").display().to_string();
            let o = self.exec(
                &self.srv,
                &[nft.as_str(), "list", "ruleset"],
                Duration::from_secs(10),
            );
            s.push_str(&format!(
                "--- SERVER nft list ruleset (rc {:?}) ---\n{}{}",
                o.code(),
                indent(&o.stdout),
                indent(&o.stderr)
            ));
            let ss = tool("ss").display().to_string();
            let o = self.exec(&self.srv, &[ss.as_str(), "-ltunp"], Duration::from_secs(10));
            s.push_str(&format!("--- SERVER ss -ltunp ---\n{}", indent(&o.stdout)));
        }
        let mut entries = String::new();
        if let Ok(rd) = fs::read_dir(&self.dir) {
            let mut v: Vec<String> = rd
                .flatten()
                .map(|e| {
                    let kind = match e.file_type() {
                        Ok(t) if t.is_socket() => "socket",
                        Ok(t) if t.is_dir() => "dir",
                        Ok(t) if t.is_symlink() => "symlink",
                        Ok(_) => "file",
                        Err(_) => "?",
                    };
                    format!("{kind:7} {}", e.file_name().to_string_lossy())
                })
                .collect();
            v.sort();
            entries = v.join("\n");
        }
        s.push_str(&format!("--- lab dir ---\n{}", indent(&entries)));
        if self.control_socket().exists() {
            let o = run(
                command(DAEMON_BIN)
                    .args(["banned", "--json", "--socket"])
                    .arg(self.control_socket()),
                Duration::from_secs(5),
            );
            s.push_str(&format!(
                "--- syslog2ban banned --json (control socket) ---\n{}",
                indent(&o.describe())
            ));
        }
        s.push_str(&format!(
            "========== end of lab {} diagnostics ==========\n",
            self.id
        ));
        eprint!("{s}");
    }

    fn stop_processes(&mut self) {
        // Reverse start order: sshd, then rsyslogd, then the daemon.
        for p in self.procs.iter_mut().rev() {
            if p.exit.is_none() {
                p.exit = p.child.try_wait().ok().flatten();
            }
            if p.exit.is_none() {
                kill_pid(p.pid, "TERM");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for p in self.procs.iter_mut().rev() {
            while p.exit.is_none() {
                p.exit = p.child.try_wait().ok().flatten();
                if p.exit.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    eprintln!(
                        "[{}] {} (pid {}) ignored SIGTERM for 3 s, sending SIGKILL",
                        self.id, p.label, p.pid
                    );
                    let _ = p.child.kill();
                    p.exit = p.child.wait().ok();
                    break;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// PIDs of every process inside a namespace (`ip netns pids`).
    pub fn pids_in(&self, ns: &str) -> Vec<u32> {
        self.ns_pids(ns)
    }

    fn ns_pids(&self, ns: &str) -> Vec<u32> {
        let out = run(
            command(tool("ip")).args(["netns", "pids", ns]),
            Duration::from_secs(5),
        );
        out.stdout
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    fn teardown_namespaces(&mut self) {
        for ns in self.namespaces.clone() {
            // Only processes inside this test's own namespaces: sshd's connection children,
            // anything the daemon forked.
            let mut pids = self.ns_pids(&ns);
            if !pids.is_empty() {
                for &p in &pids {
                    kill_pid(p, "KILL");
                }
                let _ = wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
                    pids = self.ns_pids(&ns);
                    pids.is_empty()
                });
                if !pids.is_empty() {
                    eprintln!(
                        "[{}] processes still in {ns} after SIGKILL: {pids:?}",
                        self.id
                    );
                }
            }
            let out = run(
                command(tool("ip")).args(["netns", "del", &ns]),
                Duration::from_secs(10),
            );
            if !out.success() {
                eprintln!("[{}] cannot delete netns: {}", self.id, out.describe());
            }
        }
        self.namespaces.clear();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let failed = thread::panicking();
        if failed || std::env::var("S2B_LAB_DUMP").as_deref() == Ok("1") {
            self.dump();
        }
        self.stop_processes();
        self.teardown_namespaces();
        if std::env::var("S2B_LAB_KEEP").as_deref() == Ok("1") {
            eprintln!("[{}] keeping {}", self.id, self.dir.display());
        } else {
            if failed {
                eprintln!(
                    "[{}] removing {} (set S2B_LAB_KEEP=1 to keep it)",
                    self.id,
                    self.dir.display()
                );
            }
            let _ = fs::remove_dir_all(&self.dir);
        }
        let _ = std::io::stderr().flush();
    }
}
