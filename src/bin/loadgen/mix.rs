//! A realistic syslog stream for benchmarks: sshd failures from a pool of attacker addresses,
//! sshd lines that must not count, and other programs as noise. Shared by the load generator
//! (`src/bin/loadgen.rs`) and the criterion benches (`benches/*.rs` include this file with
//! `#[path]`), so both measure the same messages.
//!
//! Deterministic (own xorshift generator, fixed seed) and dependency-free. Addresses are text
//! only: attacker IPv4 addresses come from 198.18.0.0/15 (RFC 2544, reserved for
//! benchmarking), IPv6 from 2001:db8::/32 (documentation); nothing is ever routed to them.

#![allow(dead_code)] // each includer uses a different part

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Wire shape of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// rsyslog `RSYSLOG_SyslogProtocol23Format`: `<38>1 TIMESTAMP HOST APP PID - -  MSG`.
    Rfc5424,
    /// Classic forward format: `<38>Nov 25 08:32:44 HOST APP[PID]: MSG`.
    Rfc3164,
    /// A syslog file line, no `<PRI>`: `Nov 25 08:32:44 HOST APP[PID]: MSG` (for fail2ban-regex
    /// and `syslog2ban regex`).
    File,
}

/// What a generated message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An sshd line the shipped sshd jail counts once, for this address.
    Failure(IpAddr),
    /// An sshd line the jail must not count.
    SshdOther,
    /// Another program.
    Noise,
}

/// The stream's composition.
#[derive(Debug, Clone, Copy)]
pub struct MixOptions {
    /// Share of sshd failures (0..=1).
    pub sshd_failures: f64,
    /// Share of sshd lines that are not failures (0..=1).
    pub sshd_other: f64,
    /// Distinct attacker addresses.
    pub attackers: u32,
    /// Share of attackers with IPv6 addresses.
    pub ipv6: f64,
    /// Generate other programs; without it the rest of the stream is sshd non-failures.
    pub noise: bool,
    /// Wire shape.
    pub format: Format,
    /// Generator seed.
    pub seed: u64,
}

impl Default for MixOptions {
    fn default() -> Self {
        MixOptions {
            sshd_failures: 0.3,
            sshd_other: 0.2,
            attackers: 10_000,
            ipv6: 0.2,
            noise: true,
            format: Format::Rfc5424,
            seed: 0x5eed_2ba0,
        }
    }
}

/// Tiny deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (0 is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n.max(1))) >> 32) as u32
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u32) as usize]
    }
}

/// Attacker number `i` of a pool whose IPv6 share is `ipv6`: IPv4 from 198.18.0.0/15,
/// IPv6 from 2001:db8::/32. Stable: the same `i` is always the same address.
pub fn attacker(i: u32, ipv6: f64) -> IpAddr {
    // Spread IPv6 over the pool by a hash of i, so any prefix of the pool has the same mix.
    let h = (u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64;
    if h < ipv6 {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            (i >> 16) as u16,
            i as u16,
            0,
            0,
            0,
            0x1,
        ))
    } else {
        let n = 0xc612_0000u32 + (i % 0x2_0000); // 198.18.0.0 + i, within the /15
        IpAddr::V4(Ipv4Addr::from(n))
    }
}

const USERS: &[&str] = &[
    "root", "admin", "test", "user", "oracle", "postgres", "ubuntu", "git", "guest", "ftpuser",
    "pi", "support", "deploy", "www-data", "nagios", "hadoop", "jenkins", "mysql", "ec2-user",
    "alex",
];
const HOSTS: &[&str] = &[
    "web01",
    "web02",
    "web03",
    "db01",
    "db02",
    "mail01",
    "vpn01",
    "git01",
    "ci-runner-7",
    "bastion",
    "lb01",
    "monitor",
];
const LAN: &[&str] = &[
    "10.0.0.12",
    "10.0.0.31",
    "10.0.1.7",
    "192.168.10.20",
    "172.16.4.9",
];

/// One sshd failure line (what the jail counts).
pub fn failure_text(out: &mut String, rng: &mut Rng, address: IpAddr) {
    let user = rng.pick(USERS);
    let port = 1024 + rng.below(64000);
    match rng.below(10) {
        0..=6 => write!(
            out,
            "Failed password for {user} from {address} port {port} ssh2"
        ),
        7 | 8 => write!(
            out,
            "Failed password for invalid user {user} from {address} port {port} ssh2"
        ),
        _ => write!(out, "Invalid user {user} from {address} port {port}"),
    }
    .expect("writing to a String cannot fail");
}

/// An sshd line that is not a failure (session noise around logins and failures).
fn sshd_other_text(out: &mut String, rng: &mut Rng, address: IpAddr) {
    let user = rng.pick(USERS);
    let port = 1024 + rng.below(64000);
    let lan = rng.pick(LAN);
    let _ = match rng.below(7) {
        0 => write!(
            out,
            "Connection closed by authenticating user {user} {address} port {port} [preauth]"
        ),
        1 => write!(
            out,
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={address}  user={user}"
        ),
        2 => write!(
            out,
            "Accepted publickey for deploy from {lan} port {port} ssh2: ED25519 SHA256:Xb1mJqk2vY3hZ8Lr0cQf5WnT7pA6sD9eG4uI2oK1lMw"
        ),
        3 => write!(
            out,
            "Received disconnect from {address} port {port}:11: Bye Bye [preauth]"
        ),
        4 => write!(
            out,
            "Disconnected from invalid user {user} {address} port {port} [preauth]"
        ),
        5 => write!(
            out,
            "pam_unix(sshd:session): session opened for user deploy(uid=1000) by deploy(uid=0)"
        ),
        _ => write!(out, "Connection closed by {address} port {port} [preauth]"),
    };
}

/// Another program's line: (program, pid, text). Some programs are heard by shipped jails
/// (postfix, dovecot, nginx, named, sudo, kernel) with lines that do not match; most are not.
fn noise(out: &mut String, rng: &mut Rng) -> &'static str {
    let lan = rng.pick(LAN);
    let port = 1024 + rng.below(64000);
    let n = rng.below(100_000);
    let (program, _) = match rng.below(12) {
        0 => ("CRON", write!(out, "(root) CMD (   cd / && run-parts --report /etc/cron.hourly)")),
        1 => ("systemd", write!(out, "Started session-{n}.scope - Session {n} of User deploy.")),
        2 => ("systemd-logind", write!(out, "New session {n} of user deploy.")),
        3 => (
            "postfix/smtpd",
            write!(out, "connect from mail-{n}.example.net[{lan}]"),
        ),
        4 => (
            "postfix/smtpd",
            write!(
                out,
                "disconnect from mail-{n}.example.net[{lan}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"
            ),
        ),
        5 => (
            "dovecot",
            write!(
                out,
                "imap-login: Login: user=<alice>, method=PLAIN, rip={lan}, lip=10.0.0.1, mpid={n}, TLS, session=<Gq3{n}>"
            ),
        ),
        6 => (
            "nginx",
            write!(
                out,
                "2026/11/25 08:32:44 [error] 812#812: *{n} open() \"/var/www/html/favicon.ico\" failed (2: No such file or directory), client: {lan}, server: example.org, request: \"GET /favicon.ico HTTP/1.1\", host: \"example.org\""
            ),
        ),
        7 => (
            "named",
            write!(
                out,
                "client @0x7f1c2c0{n:05} {lan}#{port} (example.org): query: example.org IN A +E(0)K (10.0.0.1)"
            ),
        ),
        8 => (
            "sudo",
            write!(
                out,
                "  deploy : TTY=pts/0 ; PWD=/home/deploy ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx"
            ),
        ),
        9 => (
            "kernel",
            write!(
                out,
                "[{n}.123456] audit: type=1400 audit(1764059564.{n}:42): apparmor=\"STATUS\" operation=\"profile_load\" name=\"nginx\" pid={port}"
            ),
        ),
        10 => (
            "postgres",
            write!(
                out,
                "[{port}] LOG:  checkpoint complete: wrote {n} buffers (0.1%); 0 WAL file(s) added, 0 removed, 1 recycled"
            ),
        ),
        _ => (
            "chronyd",
            write!(out, "Selected source 192.0.2.123 (2.debian.pool.ntp.org)"),
        ),
    };
    program
}

/// Generates messages of a mix.
#[derive(Debug, Clone)]
pub struct Mix {
    opts: MixOptions,
    rng: Rng,
    text: String,
    /// Seconds into the (fixed) day for timestamps, advancing slowly.
    clock: u32,
}

impl Mix {
    /// A generator for `opts`.
    pub fn new(opts: MixOptions) -> Self {
        Mix {
            rng: Rng::new(opts.seed),
            opts,
            text: String::with_capacity(256),
            clock: 8 * 3600,
        }
    }

    /// The options.
    pub fn options(&self) -> &MixOptions {
        &self.opts
    }

    /// Appends the next message (no framing, no trailer) to `out`; says what it is.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Kind {
        self.text.clear();
        let r = self.rng.unit();
        let attackers = self.opts.attackers.max(1);
        let (program, pri, kind) = if r < self.opts.sshd_failures {
            let address = attacker(self.rng.below(attackers), self.opts.ipv6);
            failure_text(&mut self.text, &mut self.rng, address);
            ("sshd", 38, Kind::Failure(address))
        } else if r < self.opts.sshd_failures + self.opts.sshd_other || !self.opts.noise {
            let address = attacker(self.rng.below(attackers), self.opts.ipv6);
            sshd_other_text(&mut self.text, &mut self.rng, address);
            ("sshd", 38, Kind::SshdOther)
        } else {
            let program = noise(&mut self.text, &mut self.rng);
            (program, 30, Kind::Noise)
        };
        let host = self.rng.pick(HOSTS);
        let pid = 300 + self.rng.below(60000);
        if self.rng.below(50) == 0 {
            self.clock = (self.clock + 1) % 86_400;
        }
        let (h, m, s) = (self.clock / 3600, self.clock / 60 % 60, self.clock % 60);
        let micros = self.rng.below(1_000_000);
        let text = &self.text;
        let mut head = String::with_capacity(80);
        let _ = match self.opts.format {
            Format::Rfc5424 => write!(
                head,
                "<{pri}>1 2026-11-25T{h:02}:{m:02}:{s:02}.{micros:06}+00:00 {host} {program} {pid} - -  {text}"
            ),
            Format::Rfc3164 => write!(
                head,
                "<{pri}>Nov 25 {h:02}:{m:02}:{s:02} {host} {program}[{pid}]: {text}"
            ),
            Format::File => write!(
                head,
                "Nov 25 {h:02}:{m:02}:{s:02} {host} {program}[{pid}]: {text}"
            ),
        };
        out.extend_from_slice(head.as_bytes());
        kind
    }

    /// The next message as an owned buffer.
    pub fn next_message(&mut self) -> (Vec<u8>, Kind) {
        let mut out = Vec::with_capacity(200);
        let kind = self.next_into(&mut out);
        (out, kind)
    }
}
