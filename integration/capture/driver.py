#!/usr/bin/env python3
"""Capture-lab driver (stdlib only). Started by run.sh, which has already made the network
namespaces, the private rsyslogd (socket DIR/devlog) and the capture listener (DIR/capture.log).

For each scenario it writes the daemon's config under DIR, starts the daemon in the server
namespace (private mount + UTS namespace via nsexec.sh), runs the attempts one at a time from
the attacker / user namespaces, brackets each attempt with marker messages sent through the
same rsyslog path, then stops the daemon and writes the fixture:
  OUT/<scenario>/lines.log     captured messages (markers removed), one per line
  OUT/<scenario>/labels.tsv    line number -> attempt id or '-'
  OUT/<scenario>/attempts.tsv  what the driver did, one row per attempt
  OUT/<scenario>/config.txt    the daemon configuration the scenario used
"""
import argparse
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

P = "s2bcap"
NET4, NET6 = "198.51.100", "2001:db8:5100"
SRV4, SRV6 = f"{NET4}.10", f"{NET6}::10"
SRV_NS = f"{P}-srv"
HOSTS = ["u20", "a66", "a67", "a68", "a69", "a70"]
MARK_TAG = "s2bcap"
HERE = os.path.dirname(os.path.abspath(__file__))

# The lab's accounts (private /etc/passwd, shadow, group inside the server's mount namespace).
USERS = {  # name: (uid, password or None for no password)
    "alice": (2001, "Wonderland-2024"),
    "bob": (2002, None),
    "carol": (2003, "Carol-pw-77"),
}
ROOT_PW = "Root-pw-lab-only"


def log(*a):
    print("[capture]", *a, file=sys.stderr, flush=True)


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def addr(host, v6=False):
    octet = host[1:] if host[0] in "au" else "10"
    return f"{NET6}::{octet}" if v6 else f"{NET4}.{octet}"


def other_family(source):
    """The same lab host's address in the other family (198.51.100.66 <-> 2001:db8:5100::66)."""
    if source.startswith(NET4 + "."):
        return f"{NET6}::{source.rsplit('.', 1)[1]}"
    if source.startswith(NET6 + "::"):
        return f"{NET4}.{source.rsplit(':', 1)[1]}"
    return None


def srv(v6=False):
    return SRV6 if v6 else SRV4


def parse5424(line):
    """-> (app, msg) of an RFC5424 line '<PRI>1 TS HOST APP PROCID MSGID SD MSG'."""
    parts = line.split(" ", 6)
    if len(parts) < 7:
        return "", line
    app = parts[3]
    rest = parts[6]
    # SD is '-' or one or more [..] elements; rsyslog's template writes '-' here.
    if rest.startswith("- "):
        msg = rest[2:]
    elif rest == "-":
        msg = ""
    else:
        msg = rest
    return app, msg


RX3164_MARK = re.compile(r"^<\d+>(?:\w{3} [ \d]\d \d\d:\d\d:\d\d|\S+) \S+ " + MARK_TAG + r"\[\d+\]: ?(.*)$")


def marker_text(line, rfc3164=False):
    """The marker text of a marker line of either stream, else None."""
    if rfc3164:
        m = RX3164_MARK.match(line)
        return m.group(1).strip() if m else None
    app, msg = parse5424(line)
    return msg.strip() if app == MARK_TAG else None


class Stream:
    """A capture file written by listener.py, read incrementally."""

    def __init__(self, path, rfc3164=False):
        self.path, self.rfc3164 = path, rfc3164
        self.lines, self.pos, self.partial = [], 0, b""

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        self.pos += len(data)
        data = self.partial + data
        *full, self.partial = data.split(b"\n")
        self.lines.extend(x.decode("utf-8", "surrogateescape") for x in full)

    def find(self, text, start=0):
        for i in range(start, len(self.lines)):
            if marker_text(self.lines[i], self.rfc3164) == text:
                return i
        return None

    def wait(self, text, start=0, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.poll()
            i = self.find(text, start)
            if i is not None:
                return i
            time.sleep(0.02)
        raise RuntimeError(f"marker {text!r} not received in {self.path} within {timeout}s")


class Lab:
    def __init__(self, d, out, nsexec):
        self.d, self.out, self.nsexec = d, out, nsexec
        self.main = Stream(os.path.join(d, "capture.log"))
        self.legacy = Stream(os.path.join(d, "capture-rfc3164.log"), rfc3164=True)
        self.devlog = os.path.join(d, "devlog")
        self.daemons = []
        self.clientlog = open(os.path.join(d, "clients.log"), "a")
        self.make_accounts()

    # ------------------------------------------------------------ capture files
    @property
    def lines(self):
        return self.main.lines

    def poll(self):
        self.main.poll()

    def mark(self, text, timeout=30):
        """Send a marker through the daemons' /dev/log and wait until the listener has it."""
        start = len(self.main.lines)
        # Same datagram shape as glibc's syslog(3): "<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG".
        stamp = time.strftime("%b %e %H:%M:%S", time.localtime())
        pkt = f"<13>{stamp} {MARK_TAG}[{os.getpid()}]: {text}".encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(pkt, self.devlog)
        return self.main.wait(text, start, timeout)

    def settle(self, minimum=0.6, quiet=0.8, cap=8.0):
        """Wait at least `minimum` s, then until nothing new arrived for `quiet` s (max `cap`)."""
        t0 = time.time()
        time.sleep(minimum)
        last_n, last_t = None, time.time()
        while time.time() - t0 < cap:
            self.poll()
            n = self.main.pos
            if n != last_n:
                last_n, last_t = n, time.time()
            elif time.time() - last_t >= quiet:
                return
            time.sleep(0.05)

    # ------------------------------------------------------------ processes
    def daemon(self, name, argv, binds=(), env=None, group=False):
        """Start a daemon in the server namespace, private mount + UTS namespace."""
        cmd = ["ip", "netns", "exec", SRV_NS, "unshare", "-m", "-u", self.nsexec, self.d]
        for src, dst in binds:
            cmd += ["--bind", src, dst]
        cmd += ["--", *argv]
        out = open(os.path.join(self.d, f"{name}.out"), "ab")
        e = dict(os.environ, **(env or {}))
        # own session / process group: postfix's master signals its process group on exit
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=e,
                             start_new_session=True)
        p.kill_group = group  # stop with killpg (wrapper scripts such as mysqld_safe)
        self.daemons.append((name, p))
        log(f"started {name} (pid {p.pid})")
        return p

    def stop_daemons(self):
        for name, p in reversed(self.daemons):
            if p.poll() is None:
                if getattr(p, "kill_group", False):
                    os.killpg(p.pid, signal.SIGTERM)
                else:
                    p.send_signal(signal.SIGTERM)
        for name, p in reversed(self.daemons):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            log(f"stopped {name} (rc {p.returncode})")
        self.daemons = []

    def srv_run(self, argv, binds=(), check=True, timeout=120, input=None, env=None):
        """Run a setup command in the server namespace with the same private mounts."""
        cmd = ["ip", "netns", "exec", SRV_NS, "unshare", "-m", "-u", self.nsexec, self.d]
        for src, dst in binds:
            cmd += ["--bind", src, dst]
        cmd += ["--", *argv]
        e = dict(os.environ, **(env or {}))
        r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout, env=e)
        if check and r.returncode != 0:
            raise RuntimeError(f"{argv} failed: {r.stdout.decode()} {r.stderr.decode()}")
        return r

    def wait_listen(self, port, timeout=30, proto="t"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = subprocess.run(["ip", "netns", "exec", SRV_NS, "ss", f"-Hl{proto}n", f"sport = :{port}"],
                               capture_output=True, text=True)
            if r.stdout.strip():
                return
            for name, p in self.daemons:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}; see {self.d}/{name}.out")
            time.sleep(0.1)
        raise RuntimeError(f"nothing listens on port {port}")

    def client(self, host, argv, input=None, env=None, timeout=60):
        """Run a client in namespace s2bcap-HOST; returns the exit code."""
        e = dict(os.environ, **(env or {}))
        # own UTS namespace per client: clients that put their host name in what they send
        # (swaks's HELO default, Message-ID) say lab-HOST, not the build machine's name
        cmd = ["ip", "netns", "exec", f"{P}-{host}", "unshare", "-u", "sh", "-c", 'hostname "$0"; exec "$@"',
               f"lab-{host}", *argv]
        try:
            r = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=None if input is not None else subprocess.DEVNULL,
                               timeout=timeout, env=e)
            rc, out = r.returncode, r.stdout
        except subprocess.TimeoutExpired as ex:
            rc, out = "timeout", ex.output or b""
        self.clientlog.write(f"--- {host} rc={rc} {' '.join(argv)}\n{out.decode('utf-8', 'replace')[-3000:]}\n")
        self.clientlog.flush()
        return rc

    # ------------------------------------------------------------ accounts
    def make_accounts(self):
        etc = os.path.join(self.d, "etc")
        os.makedirs(etc, exist_ok=True)
        home = os.path.join(self.d, "home")
        passwd = []
        for line in open("/etc/passwd"):
            if line.startswith("root:"):
                # clean home and plain shell for root inside the lab
                line = f"root:x:0:0:root:{home}/root:/bin/sh\n"
            passwd.append(line)
        shadow = [l for l in open("/etc/shadow") if not l.startswith("root:")]
        shadow.insert(0, f"root:{self.hash(ROOT_PW)}:20000:0:99999:7:::\n")
        group = list(open("/etc/group"))
        os.makedirs(f"{home}/root", mode=0o700, exist_ok=True)
        for name, (uid, pw) in USERS.items():
            passwd.append(f"{name}:x:{uid}:{uid}:lab user {name}:{home}/{name}:/bin/sh\n")
            shadow.append(f"{name}:{self.hash(pw) if pw else '*'}:20000:0:99999:7:::\n")
            group.append(f"{name}:x:{uid}:\n")
            os.makedirs(f"{home}/{name}", exist_ok=True)
            os.chown(f"{home}/{name}", uid, uid)
        for fn, lines, mode in (("passwd", passwd, 0o644), ("shadow", shadow, 0o640), ("group", group, 0o644)):
            path = os.path.join(etc, fn)
            with open(path, "w") as f:
                f.writelines(lines)
            os.chmod(path, mode)
        shutil.chown(os.path.join(etc, "shadow"), 0, int(_gid("shadow")))

    @staticmethod
    def hash(pw):
        return subprocess.run(["openssl", "passwd", "-6", pw], capture_output=True, text=True,
                              check=True).stdout.strip()


def _gid(name):
    for line in open("/etc/group"):
        f = line.split(":")
        if f[0] == name:
            return f[2]
    return "0"


class Scenario:
    def __init__(self, lab, name, config_text=""):
        self.lab, self.name = lab, name
        self.attempts = []
        self.config_text = config_text
        self.begin_idx = None

    def __enter__(self):
        log(f"scenario {self.name}")
        self.begin_idx = self.lab.mark(f"scenario {self.name} begin")
        return self

    def __exit__(self, et, ev, tb):
        if et is not None:
            return False
        self.lab.settle(minimum=0.5, quiet=1.0)
        self.lab.stop_daemons()
        self.lab.settle(minimum=0.5, quiet=1.0)
        end_idx = self.lab.mark(f"scenario {self.name} end")
        self.write(end_idx)
        return False

    def write_legacy(self, d):
        """lines-rfc3164.log: the same messages as forwarded by rsyslog's RSYSLOG_ForwardFormat
        (RSYSLOG_TraditionalForwardFormat, omfwd's default template;
        second omfwd action, same queue order), so line N of both files is the same message."""
        lg = self.lab.legacy
        b = lg.wait(f"scenario {self.name} begin")
        e = lg.wait(f"scenario {self.name} end", b)
        out = [l for l in lg.lines[b + 1:e] if marker_text(l, True) is None]
        self.legacy_lines = out
        with open(os.path.join(d, "lines-rfc3164.log"), "w", encoding="utf-8", errors="surrogateescape") as f:
            f.writelines(l + "\n" for l in out)

    def attempt(self, kind, role, host, steps, guesses, conns, note="", v6=False, settle=None):
        """steps: list of dicts(argv=[...], input=bytes|None, env={}) run in s2bcap-HOST."""
        aid = f"a{len(self.attempts) + 1:02d}"
        source = addr(host, v6)
        started = now_iso()
        self.lab.mark(f"attempt {self.name}/{aid} begin")
        rcs = []
        for st in steps:
            rcs.append(self.lab.client(host, st["argv"], input=st.get("input"), env=st.get("env"),
                                       timeout=st.get("timeout", 60)))
        self.lab.settle(**(settle or {}))
        self.lab.mark(f"attempt {self.name}/{aid} end")
        ended = now_iso()
        self.attempts.append(dict(id=aid, role=role, source=source, kind=kind, guesses=guesses,
                                  connections=conns, started=started, ended=ended, note=note,
                                  rc=",".join(map(str, rcs))))
        log(f"  {aid} {role:8} {source:20} {kind:28} rc={','.join(map(str, rcs))}")
        return aid

    def write(self, end_idx):
        d = os.path.join(self.lab.out, self.name)
        os.makedirs(d, exist_ok=True)
        self.write_legacy(d)
        out_lines, labels = [], []
        current = None
        for line in self.lab.lines[self.begin_idx + 1:end_idx]:
            app, msg = parse5424(line)
            if app == MARK_TAG:
                w = msg.strip().split()
                if len(w) == 3 and w[0] == "attempt":
                    current = w[1].split("/", 1)[1] if w[2] == "begin" else None
                    continue
            out_lines.append(line)
            labels.append(current or "-")
        with open(os.path.join(d, "lines.log"), "w", encoding="utf-8", errors="surrogateescape") as f:
            f.writelines(l + "\n" for l in out_lines)
        if len(out_lines) != len(self.legacy_lines):
            log(f"WARNING {self.name}: {len(out_lines)} RFC5424 lines but {len(self.legacy_lines)} RFC3164 lines")
        else:
            for a, b in zip(out_lines, self.legacy_lines):
                if parse5424(a)[1].strip() not in b:
                    log(f"WARNING {self.name}: streams differ: {a!r} / {b!r}")
                    break
        with open(os.path.join(d, "labels.tsv"), "w") as f:
            f.write("line\tattempt\n")
            f.writelines(f"{i}\t{a}\n" for i, a in enumerate(labels, 1))
        # sanity: a labelled line must not carry the attempt host's other address family
        byid = {a["id"]: a for a in self.attempts}
        for line, lab in zip(out_lines, labels):
            if lab == "-":
                continue
            a = byid[lab]
            other = other_family(a["source"])
            if other and other in line:
                log(f"WARNING {self.name}/{lab}: line has {other}, attempt source is {a['source']}")
        for a in self.attempts:
            if not any(l == a["id"] for l in labels):
                log(f"note: {self.name}/{a['id']} ({a['kind']}) produced no line")
                a["note"] += " [the daemon logged nothing for this attempt]"
        cols = ["id", "role", "source", "kind", "guesses", "connections", "started", "ended", "client_rc", "note"]
        with open(os.path.join(d, "attempts.tsv"), "w") as f:
            f.write("\t".join(cols) + "\n")
            for a in self.attempts:
                row = [str(a[c]) for c in ("id", "role", "source", "kind", "guesses", "connections",
                                           "started", "ended", "rc", "note")]
                f.write("\t".join(x.replace("\t", " ") for x in row) + "\n")
        if self.config_text:
            with open(os.path.join(d, "config.txt"), "w") as f:
                f.write(self.config_text.replace(self.lab.d, "$LAB"))
        n_att = sum(1 for l in labels if l != "-")
        log(f"wrote {d}: {len(out_lines)} lines ({n_att} in attempts), {len(self.attempts)} attempts")


# ================================================================ helpers for clients
SSH_BASE = ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=0"]
SSH_PW = ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
          "-o", "KbdInteractiveAuthentication=no"]


def nc(host_v6, port, data=None, z=False, wait=1):
    """netcat-openbsd step: -z probe, or send DATA (or nothing) and close `wait` s after EOF."""
    if z:
        return dict(argv=["nc", "-z", "-w", "3", host_v6, str(port)])
    return dict(argv=["nc", "-w", "5", "-q", str(wait), host_v6, str(port)], input=data or b"")


# ================================================================ sshd
class SSHD:
    def __init__(self, lab):
        self.lab = lab
        self.dir = os.path.join(lab.d, "sshd")
        os.makedirs(os.path.join(self.dir, "ak"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "keys"), exist_ok=True)
        for t, extra in (("ed25519", []), ("ecdsa", []), ("rsa", ["-b", "3072"])):
            k = os.path.join(self.dir, f"ssh_host_{t}_key")
            if not os.path.exists(k):
                subprocess.run(["ssh-keygen", "-q", "-t", t, *extra, "-N", "", "-f", k, "-C", "lab-server"], check=True)
        # client keys: bob's real key, bob's old (unauthorized) key, attacker keys
        names = ["bob", "bob-old"] + [f"bot{i}" for i in range(1, 8)]
        for n in names:
            k = self.key(n)
            if not os.path.exists(k):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k, "-C", n], check=True)
        shutil.copy(self.key("bob") + ".pub", os.path.join(self.dir, "ak", "bob"))
        askpass = os.path.join(lab.d, "askpass.sh")
        with open(askpass, "w") as f:
            f.write('#!/bin/sh\n# SSH_ASKPASS helper: prints the next line of $CAPTURE_PWLIST per call\n'
                    'f=$CAPTURE_PWLIST; n=$(cat "$f.n" 2>/dev/null || echo 0); n=$((n+1)); echo $n >"$f.n"\n'
                    'sed -n "${n}p" "$f"\n')
        os.chmod(askpass, 0o755)
        self.askpass = askpass
        self.pwn = 0

    def key(self, n):
        return os.path.join(self.dir, "keys", n)

    def config(self, password, loglevel):
        return f"""# sshd_config of scenario (Debian defaults where not stated)
Port 22
ListenAddress 0.0.0.0
ListenAddress ::
HostKey {self.dir}/ssh_host_rsa_key
HostKey {self.dir}/ssh_host_ecdsa_key
HostKey {self.dir}/ssh_host_ed25519_key
PidFile {self.dir}/sshd.pid
SyslogFacility AUTH
LogLevel {loglevel}
PasswordAuthentication {'yes' if password else 'no'}
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
MaxAuthTries 6
AuthorizedKeysFile {self.dir}/ak/%u
StrictModes no
UsePAM yes
UseDNS no
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
MaxStartups 100:30:200
"""

    # ---- client steps
    def sshpass(self, user, pw, v6=False, prompts=1):
        return dict(argv=["sshpass", "-p", pw, *SSH_BASE, *SSH_PW, "-o", f"NumberOfPasswordPrompts={prompts}",
                          "-p", "22", f"{user}@{srv(v6)}", "true"])

    def askpass_ssh(self, user, pws, v6=False):
        """One connection, len(pws) password prompts answered in turn (SSH_ASKPASS)."""
        self.pwn += 1
        lst = os.path.join(self.lab.d, f"pwlist.{self.pwn}")
        with open(lst, "w") as f:
            f.writelines(p + "\n" for p in pws)
        env = {"SSH_ASKPASS": self.askpass, "SSH_ASKPASS_REQUIRE": "force", "CAPTURE_PWLIST": lst,
               "DISPLAY": ":0"}
        return dict(argv=["setsid", "-w", *SSH_BASE, *SSH_PW, "-o", f"NumberOfPasswordPrompts={len(pws)}",
                          "-p", "22", f"{user}@{srv(v6)}", "true"], env=env)

    def keyssh(self, user, keys, v6=False, extra=()):
        a = [*SSH_BASE, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "PasswordAuthentication=no"]
        for k in keys:
            a += ["-i", self.key(k)]
        return dict(argv=[*a, *extra, "-p", "22", f"{user}@{srv(v6)}", "true"])

    def oldalgo(self, opt, v6=False):
        return dict(argv=[*SSH_BASE, "-o", "BatchMode=yes", *opt, "-p", "22", f"root@{srv(v6)}", "true"])

    def run(self, password, loglevel):
        lab = self.lab
        name = f"sshd-{'password' if password else 'pubkey-only'}-{loglevel.lower()}"
        cfg = os.path.join(self.dir, "sshd_config")
        text = self.config(password, loglevel)
        with open(cfg, "w") as f:
            f.write(text)
        with Scenario(lab, name, text) as sc:
            lab.daemon("sshd", ["/usr/sbin/sshd", "-D", "-f", cfg])
            lab.wait_listen(22)
            lab.settle(minimum=0.3, quiet=0.5)
            A = sc.attempt
            ok = dict(argv=["true"])  # noqa
            if password:
                A("password-wrong-user", "attacker", "a66", [self.sshpass("alice", "123456")], 1, 1,
                  "existing user, one wrong password (sshpass)")
                A("password-wrong-user", "attacker", "a66", [self.askpass_ssh("alice", ["password", "qwerty", "letmein"])], 3, 1,
                  "existing user, 3 wrong passwords in one connection (NumberOfPasswordPrompts=3, SSH_ASKPASS)")
                A("password-wrong-user", "attacker", "a66", [self.sshpass("carol", "carol123", v6=True)], 1, 1,
                  "existing user over IPv6", v6=True)
                A("password-invalid-user", "attacker", "a67", [self.sshpass("admin", "admin")], 1, 1,
                  "unknown user name")
                A("password-invalid-user", "attacker", "a67", [self.askpass_ssh("oracle", ["oracle", "oracle123", "123456"])], 3, 1,
                  "unknown user, 3 passwords in one connection")
                A("password-invalid-user", "attacker", "a67", [self.sshpass("test", "test", v6=True)], 1, 1,
                  "unknown user over IPv6", v6=True)
                A("root-password", "attacker", "a68", [self.sshpass("root", "root")], 1, 1,
                  "PermitRootLogin prohibit-password: the password is never checked")
                A("root-password", "attacker", "a68", [self.askpass_ssh("root", ["toor", "admin", "12345678"])], 3, 1,
                  "3 root passwords in one connection")
                A("max-auth-tries", "attacker", "a70", [self.askpass_ssh("alice", [f"guess{i}" for i in range(1, 7)])], 6, 1,
                  "6 wrong passwords in one connection, MaxAuthTries 6")
                A("max-auth-tries", "attacker", "a70", [self.askpass_ssh("nosuchuser", [f"pw{i}" for i in range(1, 7)])], 6, 1,
                  "unknown user, 6 passwords in one connection, MaxAuthTries 6")
            else:
                A("pubkey-only-password-bot", "attacker", "a66", [self.sshpass("alice", "123456")], 0, 1,
                  "password client vs publickey-only server: 'none' request, no password sent")
                A("pubkey-only-password-bot", "attacker", "a66", [self.sshpass("carol", "carol123", v6=True)], 0, 1,
                  "same over IPv6", v6=True)
                A("pubkey-only-password-bot", "attacker", "a67", [self.sshpass("admin", "admin")], 0, 1,
                  "unknown user, no password sent")
                A("pubkey-only-password-bot", "attacker", "a67", [self.sshpass("ubuntu", "ubuntu", v6=True)], 0, 1,
                  "unknown user over IPv6", v6=True)
                A("pubkey-only-password-bot", "attacker", "a68", [self.sshpass("root", "root")], 0, 1,
                  "root, no password sent")
                A("pubkey-only-password-bot", "attacker", "a68", [self.sshpass("root", "toor")], 0, 1,
                  "root again")
                A("max-auth-tries", "attacker", "a70",
                  [self.keyssh("root", [f"bot{i}" for i in range(1, 8)])], 6, 1,
                  "client holds 7 unknown keys for root; sshd disconnects after the 6th failure "
                  "(MaxAuthTries 6), so 6 are tried in one connection")
            A("pubkey-unknown-key", "attacker", "a68", [self.keyssh("root", ["bot1"])], 1, 1,
              "one unknown key for root")
            A("pubkey-unknown-key", "attacker", "a69", [self.keyssh("alice", ["bot2", "bot3"])], 2, 1,
              "two unknown keys for an existing user")
            A("pubkey-unknown-key", "attacker", "a67", [self.keyssh("git", ["bot4"])], 1, 1,
              "unknown user with a key")
            A("keyscan", "attacker", "a69",
              [dict(argv=["ssh-keyscan", "-T", "5", "-p", "22", srv()])], 0, 5,
              "ssh-keyscan, default key types: one connection each for rsa, ecdsa, ed25519, "
              "sk-ecdsa, sk-ed25519 (the server has no sk keys: 'Unable to negotiate')")
            A("keyscan", "attacker", "a69",
              [dict(argv=["ssh-keyscan", "-T", "5", "-t", "ed25519", "-p", "22", srv(True)])], 0, 1,
              "ssh-keyscan -t ed25519 over IPv6", v6=True)
            A("preauth-close", "attacker", "a69", [nc(srv(), 22)], 0, 1,
              "nc connects, reads the banner, closes without sending one")
            A("preauth-close", "attacker", "a70", [nc(srv(True), 22)], 0, 1, "same over IPv6", v6=True)
            A("port-probe", "attacker", "a66", [nc(srv(), 22, z=True)], 0, 1, "nc -z (connect, close at once)")
            A("port-probe", "attacker", "a67", [nc(srv(), 22, z=True)], 0, 1, "nc -z")
            A("garbage-banner", "attacker", "a69", [nc(srv(), 22, b"garbage\n")], 0, 1, "echo garbage | nc")
            A("garbage-banner", "attacker", "a67", [nc(srv(True), 22, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")], 0, 1,
              "TLS ClientHello bytes (binary garbage) over IPv6", v6=True)
            A("non-ssh-protocol", "attacker", "a70",
              [nc(srv(), 22, b"GET / HTTP/1.1\r\nHost: lab-server\r\nUser-Agent: Mozilla/5.0\r\n\r\n")], 0, 1, "HTTP GET to port 22")
            A("non-ssh-protocol", "attacker", "a66", [nc(srv(), 22, b"GET /robots.txt HTTP/1.0\r\n\r\n")], 0, 1,
              "HTTP/1.0 GET")
            A("banner-then-close", "attacker", "a68", [nc(srv(), 22, b"SSH-2.0-Go\r\n")], 0, 1,
              "sends an SSH banner, then closes before key exchange")
            A("banner-then-close", "attacker", "a69", [nc(srv(), 22, b"SSH-2.0-libssh_0.9.6\r\n", wait=2)], 0, 1,
              "same, libssh banner")
            A("negotiation-failure", "attacker", "a70",
              [self.oldalgo(["-o", "KexAlgorithms=diffie-hellman-group1-sha1"])], 0, 1, "old kex only")
            A("negotiation-failure", "attacker", "a70",
              [self.oldalgo(["-o", "HostKeyAlgorithms=ssh-dss"])], 0, 1, "DSA host key only")
            A("negotiation-failure", "attacker", "a68",
              [self.oldalgo(["-c", "3des-cbc"])], 0, 1, "3des-cbc cipher only")
            A("negotiation-failure", "attacker", "a66",
              [self.oldalgo(["-c", "aes256-cbc"], v6=True)], 0, 1, "aes256-cbc cipher only, IPv6", v6=True)
            # benign
            A("benign-login", "benign", "u20", [self.keyssh("bob", ["bob"])], 1, 1, "bob logs in with his key")
            A("benign-login", "benign", "u20", [self.keyssh("bob", ["bob"], v6=True)], 1, 1, "bob, IPv6", v6=True)
            A("benign-key-fallback", "benign", "u20", [self.keyssh("bob", ["bob-old", "bob"])], 2, 1,
              "bob's client offers an old (unauthorized) key first, then the right one")
            if password:
                A("benign-login", "benign", "u20", [self.sshpass("alice", USERS["alice"][1])], 1, 1,
                  "alice logs in with her password")
                A("benign-typo", "benign", "u20", [self.askpass_ssh("carol", ["Carol-pw-7", USERS["carol"][1]])], 2, 1,
                  "carol mistypes once, then succeeds in the same connection")
                A("benign-typo", "benign", "u20",
                  [self.sshpass("alice", "wonderland-2024"), self.sshpass("alice", USERS["alice"][1])], 2, 2,
                  "alice: wrong password (caps), gives up, reconnects with the right one")
                A("benign-typo", "benign", "u20", [self.askpass_ssh("carol", ["carol-pw-77", USERS["carol"][1]], v6=True)], 2, 1,
                  "carol over IPv6: typo then success in one connection", v6=True)


# ================================================================ postfix + dovecot
MAIL_USERS = {"alice": "Wonderland-2024", "bob": "Bob-mail-pw", "carol": "Carol-pw-77"}


class Mail:
    """postfix (postscreen on 25, submission on 587, SASL from dovecot) + dovecot (IMAP, POP3)."""

    def __init__(self, lab):
        self.lab = lab
        self.dir = os.path.join(lab.d, "mail")
        self.pf = os.path.join(self.dir, "postfix")
        self.dv = os.path.join(self.dir, "dovecot")
        self.spool = os.path.join(self.dir, "spool")
        self.data = os.path.join(self.dir, "data")
        for p in (self.pf, self.dv, self.spool, self.data, os.path.join(self.dv, "mail")):
            os.makedirs(p, exist_ok=True)
        for u in MAIL_USERS:
            uid = USERS[u][0]
            os.makedirs(os.path.join(self.dv, "mail", u), exist_ok=True)
            os.chown(os.path.join(self.dv, "mail", u), uid, uid)
        pf_uid = int(subprocess.run(["id", "-u", "postfix"], capture_output=True, text=True).stdout)
        os.chown(self.data, pf_uid, 0)
        with open(os.path.join(self.dv, "users"), "w") as f:
            for u, pw in MAIL_USERS.items():
                uid = USERS[u][0]
                f.write(f"{u}:{{SHA512-CRYPT}}{Lab.hash(pw)}:{uid}:{uid}::{self.dv}/mail/{u}\n")
        os.chmod(os.path.join(self.dv, "users"), 0o644)
        self.main_cf = f"""# main.cf (config_directory {self.pf})
compatibility_level = 3.6
queue_directory = {self.spool}
data_directory = {self.data}
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.example.org
mydomain = example.org
myorigin = $mydomain
mydestination = example.org, mail.example.org, localhost
inet_interfaces = all
inet_protocols = all
mynetworks = 127.0.0.0/8 [::1]/128
alias_maps =
alias_database =
local_recipient_maps = inline:{{alice=ok, bob=ok, carol=ok, postmaster=ok}}
# nothing leaves or is delivered in the lab: accepted mail is discarded
local_transport = discard:lab
default_transport = discard:lab
relay_transport = discard:lab
biff = no
smtputf8_enable = no
smtpd_banner = $myhostname ESMTP
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {self.spool}/private/auth
smtpd_sasl_security_options = noanonymous
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination
smtpd_tls_security_level = none
postscreen_greet_action = enforce
postscreen_greet_wait = 2s
postscreen_cache_map = btree:$data_directory/postscreen_cache
"""
        svc = [
            ("smtp", "inet", "n", "-", "n", "-", "1", "postscreen"),
            ("smtpd", "pass", "-", "-", "n", "-", "-", "smtpd"),
            ("dnsblog", "unix", "-", "-", "n", "-", "0", "dnsblog"),
            ("tlsproxy", "unix", "-", "-", "n", "-", "0", "tlsproxy"),
            ("submission", "inet", "n", "-", "n", "-", "-", "smtpd\n  -o syslog_name=postfix/submission\n"
             "  -o smtpd_client_restrictions=permit_sasl_authenticated,reject\n"
             "  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject"),
            ("pickup", "unix", "n", "-", "n", "60", "1", "pickup"),
            ("cleanup", "unix", "n", "-", "n", "-", "0", "cleanup"),
            ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
            ("rewrite", "unix", "-", "-", "n", "-", "-", "trivial-rewrite"),
            ("bounce", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("defer", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("trace", "unix", "-", "-", "n", "-", "0", "bounce"),
            ("verify", "unix", "-", "-", "n", "-", "1", "verify"),
            ("flush", "unix", "n", "-", "n", "1000?", "0", "flush"),
            ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
            ("proxywrite", "unix", "-", "-", "n", "-", "1", "proxymap"),
            ("smtp", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("relay", "unix", "-", "-", "n", "-", "-", "smtp"),
            ("showq", "unix", "n", "-", "n", "-", "-", "showq"),
            ("error", "unix", "-", "-", "n", "-", "-", "error"),
            ("retry", "unix", "-", "-", "n", "-", "-", "error"),
            ("discard", "unix", "-", "-", "n", "-", "-", "discard"),
            ("local", "unix", "-", "n", "n", "-", "-", "local"),
            ("anvil", "unix", "-", "-", "n", "-", "1", "anvil"),
            ("scache", "unix", "-", "-", "n", "-", "1", "scache"),
            ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
        ]
        self.master_cf = "# master.cf (no chroot)\n" + "".join(
            "{:<11}{:<11}{:<8}{:<8}{:<8}{:<8}{:<8}{}\n".format(*row) for row in svc)
        with open(os.path.join(self.pf, "main.cf"), "w") as f:
            f.write(self.main_cf)
        with open(os.path.join(self.pf, "master.cf"), "w") as f:
            f.write(self.master_cf)

    def dovecot_conf(self, verbose):
        return f"""# dovecot.conf (dovecot -c this file)
protocols = imap pop3
listen = *, ::
base_dir = {self.dv}/run
state_dir = {self.dv}/state
log_path = syslog
syslog_facility = mail
auth_verbose = {'yes' if verbose else 'no'}
disable_plaintext_auth = no
ssl = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 1000
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {self.dv}/users
}}
userdb {{
  driver = passwd-file
  args = {self.dv}/users
}}
service auth {{
  unix_listener {self.spool}/private/auth {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""

    def swaks(self, port, v6=False, auth=None, to="bob@example.org", frm="alice@example.org", extra=()):
        a = ["swaks", "--server", srv(v6), "--port", str(port), "--helo", "client.example.net",
             "--from", frm, "--to", to, "--timeout", "20", "--silent", "2", *extra]
        if auth:
            mech, user, pw = auth
            a += ["--auth", mech, "--auth-user", user, "--auth-password", pw]
        return dict(argv=a)

    def py(self, *args):
        return dict(argv=["python3", os.path.join(HERE, "clients.py"), *args])

    def curl(self, url, user, pw):
        return dict(argv=["curl", "-sS", "--max-time", "20", "-u", f"{user}:{pw}", url])

    def run(self, verbose):
        lab = self.lab
        name = "postfix-dovecot" + ("-auth-verbose" if verbose else "")
        dconf = os.path.join(self.dv, "dovecot.conf")
        dtext = self.dovecot_conf(verbose)
        with open(dconf, "w") as f:
            f.write(dtext)
        # create the queue directories (post-install create-missing) before the scenario
        lab.srv_run(["postfix", "-c", self.pf, "check"])
        for fn in os.listdir(self.data):  # every scenario starts with an empty postscreen cache
            if fn.startswith("postscreen_cache"):
                os.unlink(os.path.join(self.data, fn))
        cfg_text = self.main_cf + "\n" + self.master_cf + "\n" + dtext
        with Scenario(lab, name, cfg_text) as sc:
            lab.daemon("dovecot", ["dovecot", "-F", "-c", dconf])
            lab.wait_listen(143)
            lab.daemon("postfix", ["/usr/lib/postfix/sbin/master", "-c", self.pf, "-d"],
                       env={"MAIL_CONFIG": self.pf})
            lab.wait_listen(25)
            lab.wait_listen(587)
            lab.settle(minimum=0.5, quiet=0.8)
            A = sc.attempt
            S4, S6 = srv(), srv(True)
            # --- postscreen: first, while no client is in postscreen's cache yet
            A("smtp-pregreet", "attacker", "a66", [dict(argv=["nc", "-w", "5", "-q", "3", S4, "25"], input=b"EHLO bot.example.net\r\n")], 0, 1,
              "talks before the banner (postscreen PREGREET)")
            A("smtp-pregreet", "attacker", "a70",
              [dict(argv=["nc", "-w", "5", "-q", "3", S4, "25"], input=b"GET / HTTP/1.0\r\n\r\n")], 0, 1,
              "HTTP request to port 25, sent before the banner")
            # --- SMTP AUTH
            A("smtp-auth-fail", "attacker", "a66", [self.swaks(587, auth=("LOGIN", "alice", "123456"))], 1, 1,
              "swaks AUTH LOGIN, wrong password, submission port 587")
            A("smtp-auth-fail", "attacker", "a66", [self.swaks(587, auth=("PLAIN", "admin", "admin"))], 1, 1,
              "swaks AUTH PLAIN, unknown user, port 587")
            A("smtp-auth-fail", "attacker", "a67", [self.swaks(25, auth=("LOGIN", "info@example.org", "password"))], 1, 1,
              "swaks AUTH LOGIN on port 25 (through postscreen)")
            A("smtp-auth-fail", "attacker", "a67", [self.swaks(587, v6=True, auth=("PLAIN", "bob", "bob"))], 1, 1,
              "AUTH PLAIN over IPv6", v6=True)
            A("smtp-auth-fail-multi", "attacker", "a68",
              [self.py("smtp-auth", S4, "587", "login", "alice", "alice", "alice123", "password1")], 3, 1,
              "3 AUTH LOGIN commands in one SMTP session (python smtplib)")
            A("smtp-auth-fail-multi", "attacker", "a68",
              [self.py("smtp-auth", S4, "25", "plain", "carol", "carol", "123456", "qwerty")], 3, 1,
              "3 AUTH PLAIN in one session on port 25")
            # --- relay / recipients
            A("relay-attempt", "attacker", "a69", [self.swaks(25, to="victim@example.com", frm="spam@example.net")], 1, 1,
              "RCPT to an outside domain without AUTH")
            A("relay-attempt", "attacker", "a69", [self.swaks(25, v6=True, to="target@example.net", frm="<>")], 1, 1,
              "relay attempt over IPv6, null sender", v6=True)
            A("rcpt-reject", "attacker", "a70", [self.swaks(25, to="nosuchuser@example.org", frm="x@example.net")], 1, 1,
              "unknown local recipient")
            A("rcpt-reject", "attacker", "a70",
              [self.swaks(25, to="admin@example.org,sales@example.org,info@example.org", frm="x@example.net")], 3, 1,
              "3 unknown recipients in one session (dictionary attack)")
            # --- postscreen / protocol
            A("smtp-non-smtp-command", "attacker", "a67", [self.py("raw", S4, "587", "1.5", "GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")], 0, 1,
              "HTTP request after the banner on 587")
            A("port-probe", "attacker", "a69", [nc(S4, 25, z=True)], 0, 1, "nc -z to 25")
            A("port-probe", "attacker", "a69", [nc(S4, 587, z=True)], 0, 1, "nc -z to 587")
            # --- IMAP / POP3
            A("imap-login-fail", "attacker", "a66", [self.curl(f"imap://{S4}/", "alice", "123456")], 1, 1,
              "curl IMAP LOGIN, wrong password")
            A("imap-login-fail", "attacker", "a67", [self.curl(f"imap://[{S6}]/", "webmaster", "webmaster")], 1, 1,
              "unknown user over IPv6", v6=True)
            A("imap-login-fail-multi", "attacker", "a68", [self.py("imap", S4, "alice", "alice1", "alice2", "alice3")], 3, 1,
              "3 LOGIN commands in one IMAP connection (python imaplib)")
            A("imap-login-fail-multi", "attacker", "a70", [self.py("imap", S4, "test", "test", "test1", "test12", "test123")], 4, 1,
              "unknown user, 4 LOGINs in one connection")
            A("pop3-login-fail", "attacker", "a69", [self.curl(f"pop3://{S4}/", "bob", "bob")], 1, 1,
              "curl POP3 USER/PASS, wrong password")
            A("pop3-login-fail", "attacker", "a66", [self.curl(f"pop3://[{S6}]/", "root", "root")], 1, 1,
              "POP3 over IPv6, user root (not a mail user)", v6=True)
            A("pop3-login-fail-multi", "attacker", "a67", [self.py("pop3", S4, "carol", "carol", "Carol", "carol1")], 3, 1,
              "3 USER/PASS in one POP3 connection (python poplib)")
            A("port-probe", "attacker", "a70", [nc(S4, 143, z=True)], 0, 1, "nc -z to 143")
            # --- benign
            A("benign-login", "benign", "u20",
              [self.swaks(587, auth=("LOGIN", "alice", MAIL_USERS["alice"]), to="bob@example.org")], 1, 1,
              "alice sends mail to bob with SMTP AUTH on 587")
            A("benign-login", "benign", "u20",
              [self.swaks(25, to="carol@example.org", frm="news@example.net")], 0, 1,
              "a normal inbound mail on 25 to a local user (no AUTH)")
            A("benign-login", "benign", "u20", [self.curl(f"imap://{S4}/INBOX?ALL", "bob", MAIL_USERS["bob"])], 1, 1,
              "bob reads mail over IMAP")
            A("benign-login", "benign", "u20", [self.curl(f"pop3://[{S6}]/", "alice", MAIL_USERS["alice"])], 1, 1,
              "alice lists mail over POP3, IPv6", v6=True)
            A("benign-typo", "benign", "u20", [self.py("imap", S4, "carol", "Carol-pw-7", MAIL_USERS["carol"])], 2, 1,
              "carol mistypes once, then logs in, same IMAP connection")
            A("benign-typo", "benign", "u20",
              [self.py("smtp-auth-send", S4, "587", "plain", "alice", "alice@example.org", "bob@example.org",
                       "wonderland-2024", MAIL_USERS["alice"])], 2, 1,
              "alice: one wrong AUTH, then the right one, and sends her mail, same SMTP session (as a "
              "mail client does)")
            A("benign-typo", "benign", "u20",
              [self.curl(f"pop3://{S4}/", "bob", "Bob-mail-pq"), self.curl(f"pop3://{S4}/", "bob", MAIL_USERS["bob"])], 2, 2,
              "bob: wrong POP3 password, reconnects with the right one")


def svc_mail(lab):
    m = Mail(lab)
    m.run(verbose=False)
    m.run(verbose=True)


# ================================================================ nginx
class Nginx:
    def __init__(self, lab):
        self.lab = lab
        self.dir = os.path.join(lab.d, "nginx")
        www = os.path.join(self.dir, "www")
        os.makedirs(os.path.join(www, "admin"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        for p, body in (("index.html", "<h1>lab</h1>\n"), ("about.html", "<p>about</p>\n"),
                        ("admin/index.html", "<p>admin</p>\n")):
            with open(os.path.join(www, p), "w") as f:
                f.write(body)
        hp = subprocess.run(["openssl", "passwd", "-apr1", "Wonderland-2024"], capture_output=True, text=True,
                            check=True).stdout.strip()
        with open(os.path.join(self.dir, "htpasswd"), "w") as f:
            f.write(f"alice:{hp}\n")
        os.chmod(os.path.join(self.dir, "htpasswd"), 0o644)
        self.conf = f"""# nginx.conf (nginx -e stderr -p {self.dir} -c this file)
daemon off;
worker_processes 1;
pid {self.dir}/nginx.pid;
user www-data;
# Debian's default level (error), sent to syslog (program nginx, facility local7)
error_log syslog:server=unix:/dev/log error;
events {{ worker_connections 64; }}
http {{
    default_type text/html;
    access_log syslog:server=unix:/dev/log combined;
    client_body_temp_path {self.dir}/tmp/body;
    proxy_temp_path {self.dir}/tmp/proxy;
    fastcgi_temp_path {self.dir}/tmp/fastcgi;
    uwsgi_temp_path {self.dir}/tmp/uwsgi;
    scgi_temp_path {self.dir}/tmp/scgi;
    server {{
        listen 80 default_server;
        listen [::]:80 default_server;
        server_name lab-server;
        root {www};
        index index.html;
        location / {{ }}
        location /admin/ {{
            auth_basic "Restricted";
            auth_basic_user_file {self.dir}/htpasswd;
        }}
    }}
}}
"""
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(self.conf)

    @staticmethod
    def curl(urls, user=None, pws=None, agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"):
        """One curl run (one connection, keep-alive): each URL with its own -u (via --next)."""
        a = ["curl", "-sS", "--max-time", "20"]
        for i, u in enumerate(urls):
            if i:
                a.append("--next")
            a += ["-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n", "-A", agent]
            if user is not None:
                a += ["-u", f"{user}:{pws[i] if isinstance(pws, list) else pws}"]
            a.append(u)
        return dict(argv=a)

    def run(self):
        lab = self.lab
        with Scenario(lab, "nginx", self.conf) as sc:
            lab.daemon("nginx", ["nginx", "-e", "stderr", "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf")])
            lab.wait_listen(80)
            lab.settle(minimum=0.3, quiet=0.5)
            A = sc.attempt
            U4, U6 = f"http://{srv()}", f"http://[{srv(True)}]"
            bot = "Mozilla/5.0 zgrab/0.x"
            A("basic-auth-fail", "attacker", "a66", [self.curl([f"{U4}/admin/"], "alice", "123456")], 1, 1,
              "wrong password for an existing user")
            A("basic-auth-fail", "attacker", "a67", [self.curl([f"{U4}/admin/"], "admin", "admin")], 1, 1,
              "unknown user")
            A("basic-auth-fail", "attacker", "a67", [self.curl([f"{U6}/admin/"], "root", "toor")], 1, 1,
              "unknown user over IPv6", v6=True)
            A("basic-auth-fail-multi", "attacker", "a68",
              [self.curl([f"{U4}/admin/"] * 3, "alice", ["alice", "password", "letmein"])], 3, 1,
              "3 requests with 3 passwords on one keep-alive connection")
            A("basic-auth-fail-multi", "attacker", "a66",
              [self.curl([f"{U6}/admin/"] * 4, "alice", ["1", "12", "123", "1234"])], 4, 1,
              "4 passwords on one connection, IPv6", v6=True)
            A("basic-auth-no-credentials", "attacker", "a69", [self.curl([f"{U4}/admin/"], agent=bot)], 0, 1,
              "request to the protected area without credentials (401, no password tried)")
            A("bot-404-scan", "attacker", "a69",
              [self.curl([f"{U4}/wp-login.php", f"{U4}/.env", f"{U4}/phpmyadmin/", f"{U4}/.git/config",
                          f"{U4}/xmlrpc.php", f"{U4}/cgi-bin/luci"], agent=bot)], 6, 1,
              "6 typical bot paths on one connection")
            A("bot-404-scan", "attacker", "a70",
              [self.curl([f"{U6}/wp-admin/setup-config.php", f"{U6}/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
                          f"{U6}/.aws/credentials", f"{U6}/boaform/admin/formLogin"], agent=bot)], 4, 1,
              "4 bot paths over IPv6", v6=True)
            A("bot-404-scan", "attacker", "a70",
              [self.curl([f"{U4}/phpMyAdmin/index.php", f"{U4}/admin/config.php", f"{U4}/.git/HEAD"], agent="python-requests/2.31")],
              3, 1, "3 paths, one of them inside the auth area (401, not 404)")
            A("bad-request", "attacker", "a68", [nc(srv(), 80, b"garbage\r\n\r\n")], 0, 1, "not HTTP (400)")
            A("bad-request", "attacker", "a66",
              [nc(srv(), 80, b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 32)], 0, 1,
              "TLS ClientHello bytes to port 80 (400)")
            A("port-probe", "attacker", "a67", [nc(srv(), 80, z=True)], 0, 1, "nc -z")
            # benign
            A("benign-browse", "benign", "u20", [self.curl([f"{U4}/", f"{U4}/about.html", f"{U4}/favicon.ico"])], 0, 1,
              "normal pages; the missing favicon.ico is an honest 404")
            A("benign-login", "benign", "u20",
              [self.curl([f"{U4}/admin/"]), self.curl([f"{U4}/admin/"], "alice", "Wonderland-2024")],
              1, 2, "browser flow: 401 without credentials, then the right password")
            A("benign-login", "benign", "u20", [self.curl([f"{U6}/admin/"], "alice", "Wonderland-2024")], 1, 1,
              "right password, IPv6", v6=True)
            A("benign-typo", "benign", "u20",
              [self.curl([f"{U4}/admin/", f"{U4}/admin/"], "alice", ["wonderland-2024", "Wonderland-2024"])], 2, 1,
              "alice mistypes once, then gets in (same connection)")


def svc_nginx(lab):
    Nginx(lab).run()


# ================================================================ vsftpd
class Vsftpd:
    def __init__(self, lab):
        self.lab = lab
        self.dir = os.path.join(lab.d, "vsftpd")
        os.makedirs(os.path.join(self.dir, "empty"), exist_ok=True)
        os.chmod(os.path.join(self.dir, "empty"), 0o555)
        self.conf = f"""# vsftpd.conf (vsftpd this-file); Debian's defaults, plus syslog_enable
listen=NO
listen_ipv6=YES
anonymous_enable=NO
local_enable=YES
write_enable=NO
dirmessage_enable=YES
use_localtime=YES
xferlog_enable=YES
syslog_enable=YES
connect_from_port_20=YES
secure_chroot_dir={self.dir}/empty
pam_service_name=vsftpd
ssl_enable=NO
seccomp_sandbox=NO
"""
        with open(os.path.join(self.dir, "vsftpd.conf"), "w") as f:
            f.write(self.conf)

    def run(self):
        lab = self.lab
        with Scenario(lab, "vsftpd", self.conf) as sc:
            lab.daemon("vsftpd", ["vsftpd", os.path.join(self.dir, "vsftpd.conf")])
            lab.wait_listen(21)
            lab.settle(minimum=0.3, quiet=0.5)
            A = sc.attempt
            S4, S6 = srv(), srv(True)
            py = lambda *a: dict(argv=["python3", os.path.join(HERE, "clients.py"), *a])  # noqa: E731
            curl = lambda url, u, p: dict(argv=["curl", "-sS", "--max-time", "20", "-u", f"{u}:{p}", url])  # noqa: E731
            lftp = lambda host, u, p: dict(argv=["lftp", "-c", f"set net:max-retries 1; set net:timeout 10; "  # noqa: E731
                                                  f"open -u {u},{p} ftp://{host}; ls"])
            A("ftp-login-fail", "attacker", "a66", [curl(f"ftp://{S4}/", "alice", "123456")], 1, 1,
              "curl, wrong password for an existing user")
            A("ftp-login-fail", "attacker", "a67", [curl(f"ftp://{S4}/", "admin", "admin")], 1, 1, "curl, unknown user")
            A("ftp-login-fail", "attacker", "a67", [curl(f"ftp://[{S6}]/", "ftp", "ftp")], 1, 1,
              "unknown user over IPv6", v6=True)
            A("ftp-login-fail", "attacker", "a68", [lftp(S4, "carol", "carol")], 1, 1, "lftp, wrong password")
            A("ftp-root-login", "attacker", "a68", [curl(f"ftp://{S4}/", "root", "root")], 1, 1,
              "root (listed in /etc/ftpusers: PAM refuses it)")
            A("ftp-login-fail-multi", "attacker", "a69", [py("ftp", S4, "alice", "alice", "alice1", "alice123")], 3, 1,
              "3 USER/PASS in one connection (python ftplib)")
            A("ftp-login-fail-multi", "attacker", "a70", [py("ftp", S6, "administrator", "1", "12", "123")], 3, 1,
              "unknown user, 3 tries in one connection, IPv6", v6=True)
            A("port-probe", "attacker", "a70", [nc(S4, 21, z=True)], 0, 1, "nc -z")
            A("banner-grab", "attacker", "a69", [nc(S4, 21)], 0, 1, "nc: reads the banner, closes")
            A("benign-login", "benign", "u20", [curl(f"ftp://{S4}/", "alice", USERS["alice"][1])], 1, 1, "alice lists her home")
            A("benign-login", "benign", "u20", [curl(f"ftp://[{S6}]/", "carol", USERS["carol"][1])], 1, 1, "carol, IPv6",
              v6=True)
            A("benign-typo", "benign", "u20", [py("ftp", S4, "alice", "wonderland-2024", USERS["alice"][1])], 2, 1,
              "alice mistypes once, then logs in (same connection)")


def svc_vsftpd(lab):
    Vsftpd(lab).run()


# ================================================================ postgresql
PG_ROLES = {"app": "App-db-pw-9", "alice": "Wonderland-2024"}


class Postgres:
    def __init__(self, lab):
        self.lab = lab
        self.dir = os.path.join(lab.d, "pg")
        self.data = os.path.join(self.dir, "data")
        self.run_dir = os.path.join(self.dir, "run")
        bindir = subprocess.run(["sh", "-c", "ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1"],
                                capture_output=True, text=True).stdout.strip()
        self.bin = bindir
        pg_uid = int(subprocess.run(["id", "-u", "postgres"], capture_output=True, text=True).stdout)
        os.makedirs(self.run_dir, exist_ok=True)
        os.chown(self.dir, pg_uid, pg_uid)
        os.chown(self.run_dir, pg_uid, pg_uid)
        if not os.path.exists(self.data):
            subprocess.run(["runuser", "-u", "postgres", "--", f"{bindir}/initdb", "-D", self.data, "-A", "trust",
                            "-E", "UTF8", "--locale=C.UTF-8", "-U", "postgres"], check=True, capture_output=True)
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("# TYPE  DATABASE  USER  ADDRESS  METHOD\n"
                    "local   all       all                  trust\n"
                    f"host    app       all   {NET4}.0/24   scram-sha-256\n"
                    f"host    app       all   {NET6}::/64   scram-sha-256\n")

    def settings(self, debian_default):
        s = {
            "listen_addresses": "*",
            "port": "5432",
            "unix_socket_directories": self.run_dir,
            "ssl": "off",
            "password_encryption": "scram-sha-256",
            "log_destination": "syslog",
            "syslog_ident": "postgres",
            "syslog_facility": "LOCAL0",
            "lc_messages": "C",
        }
        if debian_default:
            s["log_line_prefix"] = "%m [%p] %q%u@%d "
            s["log_connections"] = "on"
        else:
            # %h puts the client's address on every line; log_connections writes the login
            # ("connection authorized: user=U") that forgives a typo.
            s["log_line_prefix"] = "%m [%p] %h "
            s["log_connections"] = "on"
        return s

    def run(self, debian_default):
        lab = self.lab
        name = "postgresql-debian-prefix" if debian_default else "postgresql"
        st = self.settings(debian_default)
        args = [f"{self.bin}/postgres", "-D", self.data]
        for k, v in st.items():
            args += ["-c", f"{k}={v}"]
        text = "# postgres -c settings\n" + "".join(f"{k} = '{v}'\n" for k, v in st.items()) + \
            "\n# pg_hba.conf\n" + open(os.path.join(self.data, "pg_hba.conf")).read()
        with Scenario(lab, name, text) as sc:
            lab.daemon("postgres", ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *args])
            lab.wait_listen(5432)
            if not getattr(self, "roles_done", False):
                sql = "CREATE DATABASE app;\n" + "".join(
                    f"CREATE ROLE {r} LOGIN PASSWORD '{pw}';\n" for r, pw in PG_ROLES.items())
                lab.srv_run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "psql", "-h", self.run_dir, "-q", "-v",
                             "ON_ERROR_STOP=1", "-d", "postgres"], input=sql.encode())
                self.roles_done = True
            lab.settle(minimum=0.3, quiet=0.5)
            A = sc.attempt

            def psql(user, pw, db="app", v6=False):
                return dict(argv=["psql", "-h", srv(v6), "-U", user, "-d", db, "-w", "-c", "select 1"],
                            env={"PGPASSWORD": pw, "PGCONNECT_TIMEOUT": "10", "PGSSLMODE": "prefer"})
            A("db-login-fail", "attacker", "a66", [psql("app", "123456")], 1, 1, "psql, wrong password")
            A("db-login-fail", "attacker", "a67", [psql("postgres", "postgres")], 1, 1,
              "psql, role postgres (exists, has no password)")
            A("db-login-fail", "attacker", "a67", [psql("admin", "admin", v6=True)], 1, 1, "unknown role, IPv6", v6=True)
            A("db-login-fail", "attacker", "a68", [psql("alice", "alice"), psql("alice", "alice123"), psql("alice", "qwerty")],
              3, 3, "3 passwords, one connection each (psql)")
            A("db-hba-reject", "attacker", "a69", [psql("postgres", "postgres", db="postgres")], 1, 1,
              "database not allowed for remote hosts in pg_hba.conf")
            A("db-hba-reject", "attacker", "a70", [psql("app", "x", db="template1", v6=True)], 1, 1,
              "pg_hba reject over IPv6", v6=True)
            A("port-probe", "attacker", "a70", [nc(srv(), 5432, z=True)], 0, 1, "nc -z")
            A("bad-protocol", "attacker", "a69", [nc(srv(), 5432, b"GET / HTTP/1.1\r\n\r\n")], 0, 1,
              "HTTP request to the postgres port")
            A("benign-login", "benign", "u20", [psql("app", PG_ROLES["app"])], 1, 1, "app role, right password")
            A("benign-login", "benign", "u20", [psql("alice", PG_ROLES["alice"], v6=True)], 1, 1, "alice, IPv6", v6=True)
            A("benign-typo", "benign", "u20", [psql("alice", "wonderland-2024"), psql("alice", PG_ROLES["alice"])], 2, 2,
              "alice mistypes once, then connects")


def svc_postgresql(lab):
    p = Postgres(lab)
    p.run(debian_default=False)
    p.run(debian_default=True)




# ================================================================ mariadb
MY_USERS = {"app": "App-db-pw-9", "alice": "Wonderland-2024"}


class MariaDB:
    """MariaDB 10.11 started by mysqld_safe --syslog (Debian's way to send its error log to
    syslog: `logger -t mysqld -p daemon.error`), skip-name-resolve, log_warnings=2, and the
    server_audit plugin writing CONNECT events to syslog (the only log of a successful login,
    which forgives a typo)."""

    def __init__(self, lab):
        self.lab = lab
        self.dir = os.path.join(lab.d, "mariadb")
        self.data = os.path.join(self.dir, "data")
        self.run_dir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.run_dir, "mysqld.sock")
        uid = int(subprocess.run(["id", "-u", "mysql"], capture_output=True, text=True).stdout)
        os.makedirs(self.run_dir, exist_ok=True)
        os.chown(self.dir, uid, uid)
        os.chown(self.run_dir, uid, uid)
        if not os.path.exists(self.data):
            # in the server's namespaces: it records the host name (lab-server) in mysql.proxies_priv
            lab.srv_run(["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={self.data}",
                         "--auth-root-authentication-method=socket", "--skip-test-db"])
        self.opts = ["--port=3306", "--bind-address=*", "--skip-name-resolve", "--log-warnings=2",
                     f"--socket={self.sock}", f"--pid-file={self.run_dir}/mysqld.pid", "--skip-log-bin",
                     "--plugin-load-add=server_audit", "--server-audit-logging=ON",
                     "--server-audit-events=CONNECT", "--server-audit-output-type=syslog"]
        self.done_users = False

    def run(self):
        lab = self.lab
        argv = ["mysqld_safe", "--no-defaults", "--syslog", "--user=mysql", f"--datadir={self.data}",
                "--mysqld=mariadbd", *self.opts]
        text = "# " + " ".join(argv).replace(self.lab.d, "$LAB") + "\n"
        with Scenario(lab, "mariadb", text) as sc:
            lab.daemon("mariadb", argv, group=True)
            lab.wait_listen(3306)
            if not self.done_users:
                sql = "".join(f"CREATE USER '{u}'@'%' IDENTIFIED BY '{pw}';\n" for u, pw in MY_USERS.items())
                sql += "CREATE DATABASE app;\nGRANT ALL ON app.* TO 'app'@'%';\nGRANT ALL ON app.* TO 'alice'@'%';\n"
                lab.srv_run(["mariadb", "--no-defaults", f"--socket={self.sock}", "-u", "root"], input=sql.encode())
                self.done_users = True
            lab.settle(minimum=0.3, quiet=0.5)
            A = sc.attempt

            def my(user, pw, v6=False, db="app"):
                a = ["mariadb", "--no-defaults", "-h", srv(v6), "-P", "3306", "-u", user, "--connect-timeout=10",
                     "-e", "select 1", db]
                if pw is not None:
                    a.insert(6, f"-p{pw}")
                return dict(argv=a)
            A("db-login-fail", "attacker", "a66", [my("app", "123456")], 1, 1, "mariadb client, wrong password")
            A("db-login-fail", "attacker", "a67", [my("root", "root")], 1, 1,
              "root (exists only as root@localhost with unix_socket auth)")
            A("db-login-fail", "attacker", "a67", [my("admin", "admin", v6=True)], 1, 1, "unknown user, IPv6", v6=True)
            A("db-login-fail", "attacker", "a68", [my("alice", "alice"), my("alice", "alice123"), my("alice", "qwerty")],
              3, 3, "3 passwords, one connection each")
            A("db-login-fail", "attacker", "a69", [my("app", None)], 0, 1, "no password at all (using password: NO)")
            A("port-probe", "attacker", "a70", [nc(srv(), 3306, z=True)], 0, 1, "nc -z")
            A("bad-protocol", "attacker", "a69", [nc(srv(), 3306, b"GET / HTTP/1.1\r\n\r\n", wait=2)], 0, 1,
              "HTTP request to the MariaDB port")
            A("benign-login", "benign", "u20", [my("app", MY_USERS["app"])], 1, 1, "app, right password")
            A("benign-login", "benign", "u20", [my("alice", MY_USERS["alice"], v6=True)], 1, 1, "alice, IPv6", v6=True)
            A("benign-typo", "benign", "u20", [my("alice", "wonderland-2024"), my("alice", MY_USERS["alice"])], 2, 2,
              "alice mistypes once, then connects")


def svc_mariadb(lab):
    MariaDB(lab).run()


# ================================================================ main
SERVICES = {}


def svc_sshd(lab):
    s = SSHD(lab)
    for password in (True, False):
        for level in ("INFO", "VERBOSE"):
            s.run(password, level)


SERVICES["sshd"] = svc_sshd
SERVICES["mail"] = svc_mail
SERVICES["nginx"] = svc_nginx
SERVICES["vsftpd"] = svc_vsftpd
SERVICES["postgresql"] = svc_postgresql
SERVICES["mariadb"] = svc_mariadb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--nsexec", required=True)
    ap.add_argument("services", nargs="+")
    a = ap.parse_args()
    lab = Lab(a.dir, a.out, a.nsexec)
    try:
        for s in a.services:
            if s not in SERVICES:
                log(f"service {s}: not implemented, skipped")
                continue
            SERVICES[s](lab)
    finally:
        lab.stop_daemons()


if __name__ == "__main__":
    main()
