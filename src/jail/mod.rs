//! Jails: filter a routed message, count failures per address, and emit an `Offence` when an
//! address reaches maxretry within findtime.
//!
//! Owns failure matching, ignoreip and the failure windows. A jail never bans: it reports
//! offences forward to the ban manager and holds no ban state.

// Reads network or config input: a byte index inside a UTF-8 character would panic.
#![deny(clippy::string_slice)]

mod attempts;
mod feedback;
pub mod filter;
mod lines;
mod reported;

pub mod window;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::config::{JailConfig, JailName};
use crate::fail2ban::Fail2banMatcher;
use crate::input::Origin;
use crate::parse::LogRecord;
pub use crate::target::Target;
use attempts::AttemptMemory;
pub use attempts::UserKey;
#[cfg(test)]
pub(crate) use feedback::NEWS_CAP;
pub use feedback::{BanChange, BanFeedback, BanNews};
use filter::{Filter, FilterMatch};
use lines::MatchedLines;
use reported::Reported;
use window::{Count, FailureWindow};

/// An address that reached maxretry in a jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offence {
    /// Which jail.
    pub jail: JailName,
    /// The attacker: an address, or its prefix when the jail counts by prefix.
    pub target: Target,
    /// Transport origin of the message that crossed the threshold.
    pub origin: Origin,
    /// The origin's proven (TLS) or trusted (relay) name, which replaces the address in logs
    /// and records; set by the pipeline.
    pub origin_name: Option<Arc<str>>,
    /// Failures counted in the window.
    pub failures: u32,
    /// When the threshold message arrived.
    pub at: Instant,
    /// The message text that crossed the threshold (for logs and records).
    pub sample: String,
    /// The matched lines of the address in the window, oldest first, `sample` last (only
    /// `sample` in a jail without notifiers).
    pub lines: Vec<String>,
}

/// What one message did in one jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No failregex matched.
    NoMatch,
    /// A failure matched but ignoreregex or ignoreip excluded it.
    Ignored,
    /// A failure of an address this jail reported within findtime whose ban has not been
    /// lifted since: counted, and no new offence (it would only repeat the ban decided).
    Reported {
        /// The address.
        address: IpAddr,
    },
    /// A failure was counted; the address is still below maxretry.
    Counted {
        /// The address.
        address: IpAddr,
        /// Failures in the window now.
        failures: u32,
    },
    /// The failure reached maxretry.
    Offence(Offence),
}

/// What a failure match becomes after ignoreip and counting by prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    /// No failregex matched.
    NoMatch,
    /// ignoreregex or ignoreip excluded it.
    Ignored,
    /// A failure of this address (or prefix, when the jail counts by prefix), and what the
    /// line says about its attempts.
    Failure(Target, Attempts),
}

/// What one failure line is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// Attempts the line reports (1 unless its pattern captures a `count`).
    pub count: u32,
    /// The client's port: with the address, the connection the line belongs to.
    pub port: Option<u16>,
    /// The user name the line names: a login forgives that user's failures.
    pub user: Option<UserKey>,
    /// Counts only if nothing of its connection counted before (a "closed while
    /// authenticating" line after "Failed password" lines of the same connection).
    pub followup: bool,
    /// Opens its connection's attempt: the connection's next failure line is the same
    /// attempt and adds nothing ("Invalid user U ... port N", then "Failed password for
    /// invalid user U ... port N").
    pub opens: bool,
    /// A successful login: counts nothing, and takes back what its connection counted (a
    /// user's typo before the right password).
    pub gained: bool,
}

impl Attempts {
    /// One attempt, no connection known.
    pub const ONE: Attempts = Attempts {
        count: 1,
        port: None,
        user: None,
        followup: false,
        opens: false,
        gained: false,
    };
}

/// The stateless part of turning a match into a failure: ignoreip, and the prefix an address
/// counts under. The pipeline's parallel workers apply it before a failure reaches the
/// jail's window.
#[derive(Debug, Clone)]
pub struct Classifier {
    ignoreip: Vec<IpNet>,
    prefix4: u8,
    prefix6: u8,
}

impl Classifier {
    /// From a jail's config.
    pub fn new(config: &JailConfig) -> Self {
        Classifier {
            ignoreip: config.ignoreip.clone(),
            prefix4: config.prefix4,
            prefix6: config.prefix6,
        }
    }

    /// ignoreip, then the counting prefix.
    pub fn classify(&self, matched: FilterMatch) -> Classified {
        let (address, attempts) = match matched {
            FilterMatch::None => return Classified::NoMatch,
            FilterMatch::Ignored { .. } => return Classified::Ignored,
            FilterMatch::Failure {
                host,
                identity,
                count,
                port,
                followup,
                opens,
                gained,
                ..
            } => (
                host,
                Attempts {
                    count,
                    port,
                    user: identity,
                    followup,
                    opens,
                    gained,
                },
            ),
        };
        if self.ignoreip.iter().any(|net| net.contains(&address)) {
            return Classified::Ignored;
        }
        // Counting by prefix: every address of the prefix adds to one count.
        let target = match address {
            IpAddr::V4(_) => Target::new(address, self.prefix4),
            IpAddr::V6(_) => Target::new(address, self.prefix6),
        };
        Classified::Failure(target, attempts)
    }
}

/// Whether a jail's bans go to the firewalls of the host that was attacked (so a ban covers
/// only the hosts it came from).
fn bans_where_attacked(config: &JailConfig) -> bool {
    config
        .placement
        .iter()
        .any(|rule| matches!(rule, crate::config::PlacementRule::Origin))
}

/// One running jail.
#[derive(Debug)]
pub struct Jail {
    name: JailName,
    filter: Filter,
    /// A fail2ban filter and its per-stream state (multi-line buffer, connection ids), when
    /// the jail uses one; `filter` then holds only the jail's own ignoreregex.
    fail2ban: Option<Fail2banMatcher>,
    classifier: Classifier,
    window: Windows,
    findtime: Duration,
    /// The connections and users of counted failures, for follow-up lines and logins.
    attempts: AttemptMemory,
    /// Matched lines per address, for notifications (None: the jail has no notifiers).
    lines: Option<MatchedLines>,
    maxretry: u32,
    /// How long a shared claim on the attacker holds (see [`Jail::claim_for`]).
    claim_for: Duration,
    per_origin: bool,
    /// Addresses whose offence this jail reported, and when (per attacked host when its
    /// bans go where the attack happened): during a ban storm most of an attacker's failures
    /// arrive after its threshold, and each would only repeat the ban. Forgotten when its
    /// ban in this jail ends (see [`BanFeedback`]) and after findtime; bans made elsewhere
    /// are added.
    reported: Reported,
}

/// Failures counted across origins (the default: an attacker spraying many servers adds up),
/// or per origin host (`count_per_origin = true`).
#[derive(Debug)]
enum Windows {
    Shared(FailureWindow<IpAddr>),
    PerOrigin(FailureWindow<(IpAddr, IpAddr)>),
}

/// The origin's host, the key of per-origin counting (local sockets share one key).
fn origin_host(origin: Origin) -> IpAddr {
    match origin {
        Origin::Peer(peer) => peer.ip(),
        Origin::Local => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    }
}

impl Windows {
    fn new(config: &JailConfig) -> Self {
        let (maxretry, findtime, cap) = (config.maxretry, config.findtime, config.max_tracked);
        if config.count_per_origin {
            Windows::PerOrigin(FailureWindow::new(maxretry, findtime, cap))
        } else {
            Windows::Shared(FailureWindow::new(maxretry, findtime, cap))
        }
    }

    fn record(&mut self, origin: Origin, address: IpAddr, now: Instant, count: u32) -> Count {
        match self {
            Windows::Shared(w) => w.record_n(address, now, count),
            Windows::PerOrigin(w) => w.record_n((origin_host(origin), address), now, count),
        }
    }

    fn forgive(&mut self, origin: Origin, address: IpAddr, n: u32) {
        if n == 0 {
            return;
        }
        match self {
            Windows::Shared(w) => w.forgive(address, n),
            Windows::PerOrigin(w) => w.forgive((origin_host(origin), address), n),
        }
    }

    fn current(&self, origin: Origin, address: IpAddr, now: Instant) -> u32 {
        match self {
            Windows::Shared(w) => w.current(address, now),
            Windows::PerOrigin(w) => w.current((origin_host(origin), address), now),
        }
    }

    fn tracked(&self) -> usize {
        match self {
            Windows::Shared(w) => w.tracked(),
            Windows::PerOrigin(w) => w.tracked(),
        }
    }

    fn take_new_evictions(&mut self) -> u64 {
        match self {
            Windows::Shared(w) => w.take_new_evictions(),
            Windows::PerOrigin(w) => w.take_new_evictions(),
        }
    }

    fn sweep(&mut self, now: Instant) {
        match self {
            Windows::Shared(w) => w.sweep(now),
            Windows::PerOrigin(w) => w.sweep(now),
        }
    }

    /// New limits, keeping the counts; a switch between shared and per-origin starts afresh.
    fn reconfigure(&mut self, config: &JailConfig) {
        let (maxretry, findtime, cap) = (config.maxretry, config.findtime, config.max_tracked);
        match (self, config.count_per_origin) {
            (Windows::Shared(w), false) => w.set_limits(maxretry, findtime, cap),
            (Windows::PerOrigin(w), true) => w.set_limits(maxretry, findtime, cap),
            (this, _) => *this = Windows::new(config),
        }
    }
}

impl Jail {
    /// A jail with empty failure windows.
    pub fn new(config: &JailConfig) -> Self {
        Jail {
            name: config.name.clone(),
            filter: config.filter.clone(),
            fail2ban: config
                .fail2ban
                .as_ref()
                .map(|f| Fail2banMatcher::new(f.filter.clone())),
            classifier: Classifier::new(config),
            window: Windows::new(config),
            findtime: config.findtime,
            attempts: AttemptMemory::new(attempts::REMEMBERED),
            lines: (!config.notify.is_empty()).then(MatchedLines::default),
            maxretry: config.maxretry,
            claim_for: claim_for(config),
            per_origin: config.count_per_origin,
            reported: Reported::new(bans_where_attacked(config)),
        }
    }

    /// Takes a reloaded config for the same jail, keeping the failures counted so far.
    pub fn reconfigure(&mut self, config: &JailConfig) {
        self.filter = config.filter.clone();
        // A reloaded filter file starts with fresh multi-line state; an unchanged one keeps it.
        let same = match (&self.fail2ban, &config.fail2ban) {
            (Some(m), Some(f)) => Arc::ptr_eq(m.filter(), &f.filter),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.fail2ban = config
                .fail2ban
                .as_ref()
                .map(|f| Fail2banMatcher::new(f.filter.clone()));
        }
        self.classifier = Classifier::new(config);
        self.findtime = config.findtime;
        self.maxretry = config.maxretry;
        self.claim_for = claim_for(config);
        self.per_origin = config.count_per_origin;
        self.reported.set_per_host(bans_where_attacked(config));
        self.window.reconfigure(config);
        match (config.notify.is_empty(), self.lines.is_some()) {
            (true, true) => self.lines = None,
            (false, false) => self.lines = Some(MatchedLines::default()),
            _ => {}
        }
    }

    /// The compiled filter.
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// The jail's name.
    pub fn name(&self) -> &JailName {
        &self.name
    }

    /// Runs the filter and counts a failure, as of `now`.
    pub fn process(&mut self, record: &LogRecord, origin: Origin, now: Instant) -> Verdict {
        self.process_from(record, origin, None, now)
    }

    /// As [`Jail::process`], for a sender the listener names `name` (its TLS identity or
    /// trusted host name: the attacked host, for placement).
    pub fn process_from(
        &mut self,
        record: &LogRecord,
        origin: Origin,
        name: Option<&Arc<str>>,
        now: Instant,
    ) -> Verdict {
        let matched = match &mut self.fail2ban {
            Some(matcher) => fail2ban_match(matcher, &self.filter, record),
            None => self.filter.check(&record.message),
        };
        self.count(matched, record, origin, name, now)
    }

    /// Like `process`, with this jail's failregex hits already found by a matcher shared with
    /// the other jails of the same program.
    pub fn process_hits(
        &mut self,
        record: &LogRecord,
        origin: Origin,
        now: Instant,
        hits: impl Iterator<Item = usize>,
    ) -> Verdict {
        let matched = match &mut self.fail2ban {
            // A fail2ban filter is not part of the shared pass; it matches on its own.
            Some(matcher) => fail2ban_match(matcher, &self.filter, record),
            None => self.filter.check_hits(&record.message, hits),
        };
        self.count(matched, record, origin, None, now)
    }

    /// The filter's answer's effect: ignoreip, prefix, and the failure window.
    fn count(
        &mut self,
        matched: FilterMatch,
        record: &LogRecord,
        origin: Origin,
        name: Option<&Arc<str>>,
        now: Instant,
    ) -> Verdict {
        match self.classifier.classify(matched) {
            Classified::NoMatch => Verdict::NoMatch,
            Classified::Ignored => Verdict::Ignored,
            Classified::Failure(target, attempts) => {
                self.record(target, attempts, origin, name, now, &record.message)
            }
        }
    }

    /// Whether the jail's matching keeps state between messages (a fail2ban filter's
    /// multi-line buffer and connection ids): such a jail must see its messages itself, in
    /// order; other jails can be matched anywhere and only their failures recorded here.
    pub fn is_stateful(&self) -> bool {
        self.fail2ban.is_some()
    }

    /// Counts a failure that was matched and classified elsewhere: `attempts.count` attempts (a
    /// line that reports several counts them all), or none for a follow-up line of a
    /// connection that already counted.
    pub fn record(
        &mut self,
        target: Target,
        attempts: Attempts,
        origin: Origin,
        name: Option<&Arc<str>>,
        now: Instant,
        sample: &str,
    ) -> Verdict {
        let address = target.addr();
        if !attempts.gained
            && self
                .reported
                .covers(address, origin, name, now, self.findtime)
        {
            return Verdict::Reported { address };
        }
        if attempts.gained {
            // A login, not a failure: it takes back its own connection's failures and its
            // user's from this address, nothing else.
            let forgiven =
                self.attempts
                    .forgive(address, attempts.port, attempts.user, now, self.findtime);
            self.window.forgive(origin, address, forgiven);
            return Verdict::NoMatch;
        }
        // Remembering attempts costs a map entry per failure: only for filters that use it.
        let mut count = attempts.count;
        if self.filter.tracks_connections() {
            if let Some(port) = attempts.port {
                if attempts.followup && self.attempts.seen(address, port, now, self.findtime) {
                    return Verdict::Ignored;
                }
            }
            if attempts.port.is_some() || attempts.user.is_some() {
                // Less the attempt an earlier line of this connection opened, and counted.
                count = self.attempts.note(
                    address,
                    attempts.port,
                    attempts.user,
                    count,
                    attempts.opens,
                    now,
                    self.findtime,
                );
                if count == 0 {
                    return Verdict::Ignored;
                }
            }
        }
        match self.window.record(origin, address, now, count) {
            Count::Below(failures) => {
                if let Some(lines) = &mut self.lines {
                    lines.keep(address, now, sample);
                }
                Verdict::Counted { address, failures }
            }
            Count::Reached(failures) => {
                self.reported.mark(address, origin, name, now);
                Verdict::Offence(Offence {
                    target,
                    jail: self.name.clone(),
                    origin,
                    origin_name: None,
                    failures,
                    at: now,
                    sample: sample.to_string(),
                    lines: match &mut self.lines {
                        Some(lines) => lines.take(address, now, self.findtime, sample),
                        None => vec![sample.to_string()],
                    },
                })
            }
        }
    }

    /// Takes `address` as reported at `now` by a ban of it made elsewhere: its failures
    /// within findtime repeat nothing (in a jail whose bans go where the attack happened
    /// they still count: which hosts that ban covers is the ban manager's to know).
    pub fn mark_reported(&mut self, address: IpAddr, now: Instant) {
        self.reported.mark_banned_elsewhere(address, now);
    }

    /// Forgets that this jail reported `address` (its ban here ended): it counts again.
    pub fn forget(&mut self, address: IpAddr) {
        self.reported.forget(address);
    }

    /// Forgets which addresses this jail reported (the news of bans overflowed): the next
    /// failures of every address count again.
    pub fn forget_reported(&mut self) {
        self.reported.clear();
    }

    /// Failures of `address` (as seen from `origin`, when counting per origin) in the window.
    pub fn current_failures(&self, origin: Origin, address: IpAddr, now: Instant) -> u32 {
        self.window.current(origin, address, now)
    }

    /// Addresses with failures in the window.
    pub fn tracked_addresses(&self) -> usize {
        self.window.tracked()
    }

    /// Addresses evicted at the tracker's cap, with failures still counting, since the last
    /// call.
    pub fn take_new_evictions(&mut self) -> u64 {
        self.window.take_new_evictions()
    }

    /// Drops stale windows; call periodically (every findtime is plenty).
    pub fn sweep(&mut self, now: Instant) {
        self.window.sweep(now);
        if let Some(lines) = &mut self.lines {
            lines.sweep(now, self.findtime);
        }
        self.reported.sweep(now, self.findtime);
    }

    /// Failures that make an offence.
    pub fn maxretry(&self) -> u32 {
        self.maxretry
    }

    /// Whether each origin host counts on its own (`count_per_origin`).
    pub fn counts_per_origin(&self) -> bool {
        self.per_origin
    }

    /// The counting window length.
    pub fn findtime(&self) -> Duration {
        self.findtime
    }

    /// How long a cluster's claim on an attacker of this jail holds: findtime, or the
    /// bantime if shorter (an attacker back after a short ban can be claimed again).
    pub fn claim_for(&self) -> Duration {
        self.claim_for
    }
}

fn claim_for(config: &JailConfig) -> Duration {
    match config.bantime {
        crate::config::BanTime::For(bantime) => bantime.min(config.findtime),
        crate::config::BanTime::Permanent => config.findtime,
    }
}

/// The line a fail2ban filter expects for a syslog record: `host prog[pid]: message`, the
/// shape of fail2ban's journal lines and of a syslog file line after its date.
fn syslog_line(record: &LogRecord) -> String {
    let mut line = String::with_capacity(record.message.len() + 48);
    if let Some(host) = &record.host {
        line.push_str(host);
        line.push(' ');
    }
    line.push_str(&record.program);
    if let Some(pid) = record.pid {
        line.push_str(&format!("[{pid}]"));
    }
    line.push_str(": ");
    line.push_str(&record.message);
    line
}

/// Runs a fail2ban filter on a record. Only failures with an address count: a filter may
/// capture a host name or failure id, which cannot be banned.
fn fail2ban_match(matcher: &mut Fail2banMatcher, own: &Filter, record: &LogRecord) -> FilterMatch {
    let out = matcher.dated_line(&syslog_line(record));
    let failregex = out.failregex.unwrap_or(0);
    if out.ignored {
        return FilterMatch::Ignored { failregex };
    }
    if !out.matched {
        return FilterMatch::None;
    }
    let Some(host) = out.host.and_then(|h| h.parse::<IpAddr>().ok()) else {
        return FilterMatch::None;
    };
    if own.is_ignored(&record.message) {
        return FilterMatch::Ignored { failregex };
    }
    FilterMatch::Failure {
        host: host.to_canonical(),
        identity: None,
        user: out.user,
        failregex,
        count: 1,
        port: None,
        followup: false,
        opens: false,
        gained: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BanTime;

    fn jail(maxretry: u32) -> Jail {
        jail_counting(maxretry, false)
    }

    fn jail_counting(maxretry: u32, count_per_origin: bool) -> Jail {
        Jail::new(&config(maxretry, count_per_origin))
    }

    fn config(maxretry: u32, count_per_origin: bool) -> JailConfig {
        JailConfig {
            name: JailName::new("sshd").unwrap(),
            programs: vec!["sshd".into()],
            filter: Filter::compile(
                &[r"^Failed password for (?P<user>.*?) from <HOST> port \d+ ssh2$".into()],
                &[],
            )
            .unwrap(),
            fail2ban: None,
            maxretry,
            findtime: Duration::from_secs(600),
            bantime: BanTime::For(Duration::from_secs(60)),
            ignoreip: vec![
                "127.0.0.0/8".parse().unwrap(),
                "198.51.100.0/28".parse().unwrap(),
            ],
            increment: None,
            max_tracked: 1000,
            prefix4: 32,
            prefix6: 128,
            count_per_origin,
            kill_connections: false,
            ports: None,
            notify: Vec::new(),
            placement: crate::config::default_placement(),
        }
    }

    fn record(msg: &str) -> LogRecord {
        LogRecord {
            priority: Some(38),
            timestamp: None,
            host: None,
            program: "sshd".into(),
            pid: None,
            message: msg.into(),
        }
    }

    #[test]
    fn third_failure_is_the_offence() {
        let mut j = jail(3);
        let t = Instant::now();
        let msg = record("Failed password for root from 203.0.113.9 port 22 ssh2");
        assert!(matches!(
            j.process(&msg, Origin::Local, t),
            Verdict::Counted { failures: 1, .. }
        ));
        assert!(matches!(
            j.process(&msg, Origin::Local, t),
            Verdict::Counted { failures: 2, .. }
        ));
        match j.process(&msg, Origin::Local, t) {
            Verdict::Offence(o) => {
                assert_eq!(o.target.to_string(), "203.0.113.9");
                assert_eq!(o.failures, 3);
                assert_eq!(o.jail.as_str(), "sshd");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_login_forgives_its_users_failures_from_its_address_only() {
        let mut config_jail = jail(10);
        config_jail.filter = Filter::compile(
            &[
                r"^Failed password for (?P<user>\S+) from <HOST> port (?P<port>\d+) ssh2$".into(),
                r"^Accepted password for (?P<user>\S+) from <HOST> port (?P<port>\d+) ssh2(?P<gained>)$"
                    .into(),
            ],
            &[],
        )
        .unwrap();
        let mut j = config_jail;
        let t = Instant::now();
        let (a, b) = ("203.0.113.9", "203.0.113.10");
        for line in [
            format!("Failed password for alice from {a} port 4000 ssh2"),
            format!("Failed password for root from {a} port 4001 ssh2"),
            format!("Failed password for root from {a} port 4001 ssh2"),
            format!("Failed password for alice from {b} port 4002 ssh2"),
        ] {
            j.process(&record(&line), Origin::Local, t);
        }
        let failures =
            |j: &Jail, ip: &str| j.current_failures(Origin::Local, ip.parse().unwrap(), t);
        assert_eq!((failures(&j, a), failures(&j, b)), (3, 1));
        // alice logs in from a on a new connection: her typo goes, root's guesses stay, and
        // b's failure for alice stays.
        let login = format!("Accepted password for alice from {a} port 4003 ssh2");
        assert_eq!(
            j.process(&record(&login), Origin::Local, t),
            Verdict::NoMatch
        );
        assert_eq!((failures(&j, a), failures(&j, b)), (2, 1));
        // An attacker logging in with its own account on the connection it guessed root on
        // takes nothing back.
        let own = format!("Accepted password for mallory from {a} port 4001 ssh2");
        j.process(&record(&own), Origin::Local, t);
        assert_eq!(failures(&j, a), 2);
    }

    #[test]
    fn failures_from_many_origins_add_up_unless_counted_per_origin() {
        let t = Instant::now();
        let msg = record("Failed password for root from 203.0.113.9 port 22 ssh2");
        let web = |n: u8| Origin::Peer(std::net::SocketAddr::from(([198, 51, 100, n], 514)));
        // An attacker spraying three servers once each: caught across origins.
        let mut shared = jail(3);
        assert!(matches!(
            shared.process(&msg, web(1), t),
            Verdict::Counted { .. }
        ));
        assert!(matches!(
            shared.process(&msg, web(2), t),
            Verdict::Counted { .. }
        ));
        assert!(matches!(
            shared.process(&msg, web(3), t),
            Verdict::Offence(_)
        ));
        // Counted per origin, each server has seen one failure only.
        let mut per_origin = jail_counting(3, true);
        for n in 1..=3 {
            assert!(matches!(
                per_origin.process(&msg, web(n), t),
                Verdict::Counted { failures: 1, .. }
            ));
        }
        assert!(matches!(
            per_origin.process(&msg, web(1), t),
            Verdict::Counted { failures: 2, .. }
        ));
        assert!(matches!(
            per_origin.process(&msg, web(1), t),
            Verdict::Offence(_)
        ));
    }

    #[test]
    fn a_jail_banning_where_attacked_counts_an_attacker_again_on_the_next_host() {
        let t = Instant::now();
        let msg = record("Failed password for root from 203.0.113.9 port 22 ssh2");
        let web = |n: u8| Origin::Peer(std::net::SocketAddr::from(([198, 51, 100, n], 514)));
        let mut placed = config(2, false);
        placed.placement = vec![crate::config::PlacementRule::Origin];
        let mut j = Jail::new(&placed);
        j.process(&msg, web(1), t);
        assert!(matches!(j.process(&msg, web(1), t), Verdict::Offence(_)));
        // web1's later failures repeat the report; web2's count towards a ban there.
        assert!(matches!(
            j.process(&msg, web(1), t),
            Verdict::Reported { .. }
        ));
        assert!(matches!(
            j.process(&msg, web(2), t),
            Verdict::Counted { .. }
        ));
        assert!(matches!(j.process(&msg, web(2), t), Verdict::Offence(_)));
        assert!(matches!(
            j.process(&msg, web(2), t),
            Verdict::Reported { .. }
        ));
        // A host named by its TLS identity or trusted name is that name's, whatever relays it.
        let web7: Arc<str> = Arc::from("web7");
        assert!(matches!(
            j.process_from(&msg, web(1), Some(&web7), t),
            Verdict::Counted { .. }
        ));
        // Placed locally (the default), one report covers every origin.
        let mut local = jail(2);
        local.process(&msg, web(1), t);
        assert!(matches!(
            local.process(&msg, web(1), t),
            Verdict::Offence(_)
        ));
        assert!(matches!(
            local.process(&msg, web(2), t),
            Verdict::Reported { .. }
        ));
    }

    #[test]
    fn ignoreip_addresses_never_count() {
        let mut j = jail(1);
        let t = Instant::now();
        let msg = record("Failed password for root from 198.51.100.5 port 22 ssh2");
        assert_eq!(j.process(&msg, Origin::Local, t), Verdict::Ignored);
        assert_eq!(
            j.current_failures(Origin::Local, "198.51.100.5".parse().unwrap(), t),
            0
        );
        let msg = record("Failed password for root from 198.51.100.16 port 22 ssh2");
        assert!(matches!(
            j.process(&msg, Origin::Local, t),
            Verdict::Offence(_)
        ));
    }

    #[test]
    fn unrelated_messages_do_not_match() {
        let mut j = jail(1);
        let msg = record("Accepted password for root from 203.0.113.9 port 22 ssh2");
        assert_eq!(
            j.process(&msg, Origin::Local, Instant::now()),
            Verdict::NoMatch
        );
    }
}
