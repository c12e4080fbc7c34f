//! A jail's filter: failregex / ignoreregex with `<HOST>`, applied to one message text.
//!
//! Owns pattern compilation and matching. It is pure: no I/O, no clock, no counting. It must
//! not know about routing (the router already chose the jail) or about bans.
//!
//! Matching is the hot path of the daemon and of `syslog2ban regex`, so each failregex is
//! compiled twice: as written (Unicode classes), and as an ASCII-only byte regex used when the
//! message is ASCII, which nearly every syslog message is. On ASCII text both match exactly
//! the same spans: every Unicode class (`\d`, `\w`, `\s`, `.`, case folding) agrees with its
//! ASCII form on ASCII characters. The ASCII form has a far smaller NFA, and the capture engine
//! (a bounded backtracker) clears a bitset of NFA states × message length on every search, so
//! the Unicode form spends most of its time in that `memset`. A literal-prefix check per
//! failregex stands in for a `RegexSet` pass: every pattern is anchored at `^`, so a message
//! that starts with none of a pattern's possible prefixes cannot match it.

use std::net::IpAddr;

use regex::{Regex, RegexSet};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::Look;
use thiserror::Error;

use super::attempts::UserKey;

/// What `<HOST>` expands to: an IPv4 address, or an IPv6 address (possibly with an embedded
/// IPv4 tail), optionally in brackets. The capture is validated with `IpAddr::from_str`, so the
/// pattern only needs to be a tight superset. Digits are `[0-9]`, not `\d`: an address has no
/// other digits, and Unicode `\d` in eight bounded repeats made each failregex take ~2 ms to
/// compile (60% of `regex`'s start-up).
const HOST_PATTERN: &str = r"\[?(?P<host>(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]*(?:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})?)\]?";

/// A pattern that could not be compiled.
#[derive(Debug, Error, PartialEq)]
pub enum FilterError {
    /// The regex does not compile.
    #[error("{list}[{index}]: invalid regex: {message}")]
    Regex {
        /// `failregex` or `ignoreregex`.
        list: &'static str,
        /// Position in the list.
        index: usize,
        /// The regex crate's explanation.
        message: String,
    },
    /// A failregex lacks `<HOST>`.
    #[error("failregex[{index}]: has no <HOST> (or (?P<host>...)) to capture the address")]
    NoHost {
        /// Position in the list.
        index: usize,
    },
    /// A failregex is not anchored at the start.
    #[error("failregex[{index}]: must start with '^' so injected text cannot move the match")]
    Unanchored {
        /// Position in the list.
        index: usize,
    },
    /// A jail without failregex cannot match anything.
    #[error("failregex: at least one pattern is required")]
    Empty,
}

/// The outcome of running a filter over one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterMatch {
    /// No failregex matched (or it matched but `<HOST>` was not a valid address).
    None,
    /// A failregex matched, but an ignoreregex vetoed it.
    Ignored {
        /// Which failregex matched.
        failregex: usize,
    },
    /// A failure by `host`.
    Failure {
        /// The captured address.
        host: IpAddr,
        /// The `user` capture, when the pattern has one.
        user: Option<String>,
        /// The user name (and the pattern's `realm` capture) as a key, for a login to find
        /// the same user's failures; None when the pattern has no `user` group.
        identity: Option<UserKey>,
        /// Which failregex matched.
        failregex: usize,
        /// Attempts the line reports (its `count` group, 1 to [`MAX_COUNT_PER_LINE`]); 1
        /// when the pattern has no such group.
        count: u32,
        /// The client's port (`port` group): with the address, the line's connection.
        port: Option<u16>,
        /// The line ends a connection and counts only if nothing of that connection counted
        /// before (the pattern's `(?P<followup>)` group).
        followup: bool,
        /// The line opens its connection's attempt before the credentials come (sshd's
        /// "Invalid user U from IP port N"): the connection's next failure line is the same
        /// attempt (the pattern's `(?P<opens>)` group).
        opens: bool,
        /// The line is a successful login that forgives its connection's failures (the
        /// pattern's `(?P<gained>)` group).
        gained: bool,
    },
}

/// ignoreregex as one set (None when there is none). Each pattern is compiled on its own
/// first, so an error names the pattern.
fn compile_ignore(ignoreregex: &[String]) -> Result<Option<RegexSet>, FilterError> {
    if ignoreregex.is_empty() {
        return Ok(None);
    }
    for (index, pattern) in ignoreregex.iter().enumerate() {
        Regex::new(pattern).map_err(|e| FilterError::Regex {
            list: "ignoreregex",
            index,
            message: e.to_string(),
        })?;
    }
    RegexSet::new(ignoreregex)
        .map(Some)
        .map_err(|e| FilterError::Regex {
            list: "ignoreregex",
            index: 0,
            message: e.to_string(),
        })
}

/// The literals every match of an anchored pattern starts with: a message that starts with
/// none of them cannot match. `None` when the pattern gives no such finite set (not anchored
/// at the start, or an open-ended prefix like `^\S+`): then every message is a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prefixes(Option<Vec<Vec<u8>>>);

impl Prefixes {
    /// Extracts the prefixes of an (expanded) pattern. Parsed with the same defaults as
    /// `Regex::new`, so the literals describe exactly what that regex matches.
    fn of(pattern: &str) -> Self {
        let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
            return Prefixes(None);
        };
        // Only a pattern whose every match starts at offset 0 can be rejected by its prefix:
        // `^a|b` or `(?m)^a` start with '^' but can match later in the message.
        if !hir.properties().look_set_prefix().contains(Look::Start) {
            return Prefixes(None);
        }
        let mut extractor = Extractor::new();
        extractor.kind(ExtractKind::Prefix);
        let seq = extractor.extract(&hir);
        match seq.literals() {
            // An empty literal is a prefix of every message: nothing to reject.
            Some(literals) if literals.iter().all(|l| !l.as_bytes().is_empty()) => Prefixes(Some(
                literals.iter().map(|l| l.as_bytes().to_vec()).collect(),
            )),
            _ => Prefixes(None),
        }
    }

    /// Whether a match of the pattern could start this message.
    fn may_match(&self, message: &[u8]) -> bool {
        let Some(literals) = &self.0 else {
            return true;
        };
        let Some(&first) = message.first() else {
            return false;
        };
        // The first byte rejects almost every literal without a call to memcmp.
        literals
            .iter()
            .any(|l| l[0] == first && message.starts_with(l))
    }
}

/// One failregex, compiled for matching.
#[derive(Debug, Clone)]
struct FailPattern {
    /// As written (after `<HOST>` expansion): the reference, used for non-ASCII messages.
    unicode: Regex,
    /// The same pattern with Unicode off, for ASCII messages. None when it does not compile
    /// that way (e.g. it uses `\p{..}`); the Unicode form is then used for every message.
    ascii: Option<regex::bytes::Regex>,
    prefixes: Prefixes,
    /// Group numbers of `host` and `user` (the same in both forms): a lookup by name hashes
    /// the name on every match.
    host: usize,
    user: Option<usize>,
    /// Group number of `realm`: what the user logged in to, when a daemon serves several
    /// (a web server's request), so a login elsewhere forgives nothing.
    realm: Option<usize>,
    /// Group number of `count`: a line that reports several attempts ("3 attempts").
    count: Option<usize>,
    /// Group number of `port`: the client's port, which names its connection.
    port: Option<usize>,
    /// The pattern has an empty `(?P<followup>)` group: its line ends a connection and counts
    /// only if nothing of that connection counted before.
    followup: bool,
    /// The pattern has an empty `(?P<opens>)` group: its line is the first of an attempt
    /// whose failure line comes next on the same connection.
    opens: bool,
    /// The pattern has an empty `(?P<gained>)` group: its line is a successful login, which
    /// counts nothing and takes back what its connection counted.
    gained: bool,
}

/// The most attempts one line may count: a daemon reporting more is capped, so a forged
/// number cannot outweigh maxretry by much (the window keeps at most maxretry anyway).
pub const MAX_COUNT_PER_LINE: u32 = 100;

/// What one failregex match captured.
struct Captured {
    host: IpAddr,
    user: Option<String>,
    identity: Option<UserKey>,
    count: u32,
    port: Option<u16>,
}

impl FailPattern {
    fn new(unicode: Regex) -> Self {
        let ascii = regex::bytes::RegexBuilder::new(unicode.as_str())
            .unicode(false)
            .build()
            .ok();
        let prefixes = Prefixes::of(unicode.as_str());
        let group = |name| unicode.capture_names().position(|n| n == Some(name));
        // Filter::compile checked that there is a host group; usize::MAX would never match.
        let host = group("host").unwrap_or(usize::MAX);
        let user = group("user");
        let realm = group("realm");
        let count = group("count");
        let port = group("port");
        let followup = group("followup").is_some();
        let opens = group("opens").is_some();
        let gained = group("gained").is_some();
        FailPattern {
            unicode,
            ascii,
            prefixes,
            host,
            user,
            realm,
            count,
            port,
            followup,
            opens,
            gained,
        }
    }

    /// The address, user and count of a match. `ascii` says the message is pure ASCII.
    /// `identify`: key the user name too (only filters that remember attempts use it).
    fn capture(&self, message: &str, ascii: bool, identify: bool) -> Option<Captured> {
        let (host, user, realm, count, port) = match (&self.ascii, ascii) {
            (Some(regex), true) => {
                let caps = regex.captures(message.as_bytes())?;
                // ASCII text: every byte offset is a char boundary.
                let text = |group: Option<usize>| {
                    group
                        .and_then(|i| caps.get(i))
                        .and_then(|m| message.get(m.range()))
                };
                (
                    text(Some(self.host))?,
                    text(self.user),
                    text(self.realm),
                    text(self.count),
                    text(self.port),
                )
            }
            _ => {
                let caps = self.unicode.captures(message)?;
                let text =
                    |group: Option<usize>| group.and_then(|i| caps.get(i)).map(|m| m.as_str());
                (
                    text(Some(self.host))?,
                    text(self.user),
                    text(self.realm),
                    text(self.count),
                    text(self.port),
                )
            }
        };
        // No count group: one attempt. A count that is not a number counts once; a number
        // too large for any integer type is capped like any other large one.
        let count = match count {
            Some(c) if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) => {
                c.parse::<u64>().map_or(MAX_COUNT_PER_LINE, |n| {
                    n.clamp(1, u64::from(MAX_COUNT_PER_LINE)) as u32
                })
            }
            _ => 1,
        };
        Some(Captured {
            host: host.parse().ok()?,
            user: user.map(str::to_string),
            identity: user
                .filter(|_| identify)
                .map(|user| UserKey::new(user, realm.unwrap_or(""))),
            count,
            port: port.and_then(|p| p.parse().ok()),
        })
    }
}

/// Compiled failregex and ignoreregex of one jail.
#[derive(Debug, Clone)]
pub struct Filter {
    fail: Vec<FailPattern>,
    /// The failregex (ascending) that a message starting with a given byte may match: one
    /// lookup leaves only the patterns whose prefixes are worth comparing.
    by_first_byte: Box<[Vec<usize>]>,
    /// The failregex an empty message may match (those without a prefix).
    unprefixed: Vec<usize>,
    ignore: Option<RegexSet>,
    sources: Vec<String>,
    /// Some failregex has a `followup`, `opens` or `gained` group: the jail must remember
    /// connections.
    tracks_connections: bool,
}

/// For each byte value, the patterns a message starting with it may match; then the
/// patterns without prefixes.
fn first_byte_table(fail: &[FailPattern]) -> (Box<[Vec<usize>]>, Vec<usize>) {
    let mut table = vec![Vec::new(); 256];
    let mut unprefixed = Vec::new();
    for (index, pattern) in fail.iter().enumerate() {
        match &pattern.prefixes.0 {
            Some(literals) => {
                for first in literals.iter().map(|l| l[0]) {
                    let entry: &mut Vec<usize> = &mut table[usize::from(first)];
                    if entry.last() != Some(&index) {
                        entry.push(index);
                    }
                }
            }
            None => {
                unprefixed.push(index);
                table.iter_mut().for_each(|entry| entry.push(index));
            }
        }
    }
    (table.into_boxed_slice(), unprefixed)
}

impl Filter {
    /// Compiles the patterns; `<HOST>` is replaced by the address capture.
    pub fn compile(failregex: &[String], ignoreregex: &[String]) -> Result<Self, FilterError> {
        if failregex.is_empty() {
            return Err(FilterError::Empty);
        }
        let mut expanded = Vec::with_capacity(failregex.len());
        for (index, pattern) in failregex.iter().enumerate() {
            if !pattern.starts_with('^') {
                return Err(FilterError::Unanchored { index });
            }
            let pattern = pattern.replace("<HOST>", HOST_PATTERN);
            let regex = Regex::new(&pattern).map_err(|e| FilterError::Regex {
                list: "failregex",
                index,
                message: e.to_string(),
            })?;
            if !regex.capture_names().any(|name| name == Some("host")) {
                return Err(FilterError::NoHost { index });
            }
            expanded.push(FailPattern::new(regex));
        }
        let ignore = compile_ignore(ignoreregex)?;
        let (by_first_byte, unprefixed) = first_byte_table(&expanded);
        let tracks_connections = expanded.iter().any(|p| p.followup || p.opens || p.gained);
        Ok(Filter {
            fail: expanded,
            by_first_byte,
            unprefixed,
            ignore,
            sources: failregex.to_vec(),
            tracks_connections,
        })
    }

    /// A filter with no failregex of its own, only ignoreregex: for jails whose failures come
    /// from a fail2ban filter file, to which the jail's ignoreregex adds.
    pub fn ignore_only(ignoreregex: &[String]) -> Result<Self, FilterError> {
        let ignore = compile_ignore(ignoreregex)?;
        Ok(Filter {
            fail: Vec::new(),
            by_first_byte: vec![Vec::new(); 256].into_boxed_slice(),
            unprefixed: Vec::new(),
            ignore,
            sources: Vec::new(),
            tracks_connections: false,
        })
    }

    /// Whether a failregex depends on what a connection counted before (a `followup` or
    /// `gained` group): only then does the jail keep its connection memory.
    pub fn tracks_connections(&self) -> bool {
        self.tracks_connections
    }

    /// Whether an ignoreregex matches the message.
    pub fn is_ignored(&self, message: &str) -> bool {
        self.ignore
            .as_ref()
            .is_some_and(|set| set.is_match(message))
    }

    /// Number of failregex patterns.
    pub fn failregex_count(&self) -> usize {
        self.fail.len()
    }

    /// The failregex as written (before `<HOST>` expansion).
    pub fn failregex_source(&self, index: usize) -> Option<&str> {
        self.sources.get(index).map(String::as_str)
    }

    /// Runs the filter over one message text (the MSG part, without syslog header).
    pub fn check(&self, message: &str) -> FilterMatch {
        // The prefix check replaces a RegexSet pass: a candidate that does not match is
        // rejected by its own capture search, so the first candidate that captures a valid
        // address is the first set hit that does. Most messages start with no failregex's
        // prefix and are done without running any regex.
        let bytes = message.as_bytes();
        let candidates = match bytes.first() {
            Some(&first) => &self.by_first_byte[usize::from(first)],
            None => &self.unprefixed,
        };
        let candidates = candidates
            .iter()
            .copied()
            .filter(|&i| self.fail[i].prefixes.may_match(bytes));
        self.check_hits(message, candidates)
    }

    /// The failregex after expansion, for a matcher shared by several jails.
    pub fn expanded_failregex(&self) -> impl Iterator<Item = &str> {
        self.fail.iter().map(|p| p.unicode.as_str())
    }

    /// Like `check`, with the failregex hits already known (from a shared multi-pattern pass
    /// over the message); `hits` are indexes into this filter's failregex, ascending.
    pub fn check_hits(&self, message: &str, hits: impl Iterator<Item = usize>) -> FilterMatch {
        let mut hits = hits;
        let Some((index, captured)) = hits.find_map(|index| {
            // Checked here, not per message: most messages have no candidate at all.
            let captured =
                self.fail[index].capture(message, message.is_ascii(), self.tracks_connections)?;
            Some((index, captured))
        }) else {
            return FilterMatch::None;
        };
        if self
            .ignore
            .as_ref()
            .is_some_and(|set| set.is_match(message))
        {
            return FilterMatch::Ignored { failregex: index };
        }
        FilterMatch::Failure {
            host: normalize(captured.host),
            user: captured.user,
            identity: captured.identity,
            failregex: index,
            count: captured.count,
            port: captured.port,
            followup: self.fail[index].followup,
            opens: self.fail[index].opens,
            gained: self.fail[index].gained,
        }
    }
}

/// `::ffff:1.2.3.4` is the IPv4 host 1.2.3.4 for banning purposes.
fn normalize(host: IpAddr) -> IpAddr {
    match host {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(fail: &[&str], ignore: &[&str]) -> Filter {
        let fail: Vec<String> = fail.iter().map(|s| s.to_string()).collect();
        let ignore: Vec<String> = ignore.iter().map(|s| s.to_string()).collect();
        Filter::compile(&fail, &ignore).expect("compiles")
    }

    fn host(f: &Filter, msg: &str) -> Option<IpAddr> {
        match f.check(msg) {
            FilterMatch::Failure { host, .. } => Some(host),
            _ => None,
        }
    }

    #[test]
    fn ipv4_and_ipv6_hosts() {
        let f = filter(
            &[r"^Failed password for (?P<user>.*?) from <HOST> port \d+ ssh2$"],
            &[],
        );
        assert_eq!(
            host(
                &f,
                "Failed password for root from 198.51.100.66 port 22 ssh2"
            ),
            Some("198.51.100.66".parse().unwrap())
        );
        assert_eq!(
            host(
                &f,
                "Failed password for root from 2001:db8::66 port 22 ssh2"
            ),
            Some("2001:db8::66".parse().unwrap())
        );
        assert_eq!(
            host(
                &f,
                "Failed password for root from ::ffff:198.51.100.7 port 22 ssh2"
            ),
            Some("198.51.100.7".parse().unwrap())
        );
    }

    #[test]
    fn invalid_address_is_no_match() {
        let f = filter(&[r"^Failed password for \S+ from <HOST> port \d+$"], &[]);
        assert_eq!(
            f.check("Failed password for root from 999.1.1.1 port 22"),
            FilterMatch::None
        );
        assert_eq!(
            f.check("Failed password for root from ::: port 22"),
            FilterMatch::None
        );
        // Arabic-Indic digits are digits to Unicode, never to an address.
        assert_eq!(
            f.check("Failed password for root from \u{661}\u{662}.1.1.1 port 22"),
            FilterMatch::None
        );
    }

    #[test]
    fn injected_address_does_not_move_the_match() {
        let f = filter(
            &[r"^Invalid user (?P<user>.*?) from <HOST>(?: port \d+)?$"],
            &[],
        );
        assert_eq!(
            host(&f, "Invalid user x from 10.0.0.1 from 203.0.113.9"),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            host(
                &f,
                "Invalid user x from 10.0.0.1 from 203.0.113.9 port 4242"
            ),
            Some("203.0.113.9".parse().unwrap())
        );
        // Anchoring at '^' means a prefix chosen by the attacker cannot start a match.
        assert_eq!(
            host(&f, "Accepted key for Invalid user a from 10.0.0.1"),
            None
        );
    }

    #[test]
    fn user_capture_and_index() {
        let f = filter(
            &[
                r"^nothing <HOST>$",
                r"^Failed for (?P<user>\S+) from <HOST>$",
            ],
            &[],
        );
        assert_eq!(
            f.check("Failed for bob from 198.51.100.1"),
            FilterMatch::Failure {
                host: "198.51.100.1".parse().unwrap(),
                user: Some("bob".into()),
                // The filter remembers no attempts: no key is made.
                identity: None,
                failregex: 1,
                count: 1,
                port: None,
                followup: false,
                opens: false,
                gained: false,
            }
        );
    }

    #[test]
    fn ignoreregex_vetoes() {
        let f = filter(
            &[r"^Failed for \S+ from <HOST>$"],
            &[r"^Failed for monitor "],
        );
        assert_eq!(
            f.check("Failed for monitor from 198.51.100.1"),
            FilterMatch::Ignored { failregex: 0 }
        );
        assert!(host(&f, "Failed for eve from 198.51.100.1").is_some());
    }

    #[test]
    fn prefixes_only_for_patterns_anchored_at_the_start() {
        let some = |p: &str| Prefixes::of(p).0.is_some();
        assert!(some(r"^(?:Failed|Invalid) user \S+ from x$"));
        assert!(some(r"^(?:error: )?PAM: fail$"));
        // Not every match starts at offset 0.
        assert!(!some(r"^Failed|Invalid"));
        assert!(!some(r"(?m)^Failed"));
        assert!(!some(r"Failed"));
        // Open-ended or empty prefix.
        assert!(!some(r"^\S+ failed"));
        assert!(!some(r"^(?:x)?"));
        let p = Prefixes::of(r"^(?:\[ID \d+\] )?(?:[Ii]nvalid|Illegal) user");
        assert!(p.may_match(b"Invalid user bob"));
        assert!(p.may_match(b"invalid user bob"));
        assert!(p.may_match(b"[ID 123] Illegal user"));
        assert!(!p.may_match(b"Accepted publickey"));
        assert!(!p.may_match(b"Inv"));
        assert!(!p.may_match(b""));
        assert!(Prefixes(None).may_match(b""));
    }

    #[test]
    fn first_byte_table_lists_candidates_in_order() {
        let f = filter(
            &[
                r"^(?:Failed|Invalid) a <HOST>$",
                r"^\S+ b <HOST>$",
                r"^(?i)f c <HOST>$",
            ],
            &[],
        );
        assert_eq!(f.by_first_byte[usize::from(b'F')], [0, 1, 2]);
        assert_eq!(f.by_first_byte[usize::from(b'f')], [1, 2]);
        assert_eq!(f.by_first_byte[usize::from(b'I')], [0, 1]);
        assert_eq!(f.by_first_byte[usize::from(b'x')], [1]);
        assert_eq!(f.unprefixed, [1]);
    }

    /// The check without a set pass, against the obvious one with it.
    fn reference(f: &Filter, message: &str) -> FilterMatch {
        let set = RegexSet::new(f.expanded_failregex()).unwrap();
        let hit = set.matches(message).iter().find_map(|i| {
            let caps = f.fail[i].unicode.captures(message)?;
            let host: IpAddr = caps.name("host")?.as_str().parse().ok()?;
            let user = caps.name("user").map(|m| m.as_str().to_string());
            Some((i, host, user))
        });
        match hit {
            None => FilterMatch::None,
            Some((failregex, _, _)) if f.is_ignored(message) => FilterMatch::Ignored { failregex },
            Some((failregex, host, user)) => FilterMatch::Failure {
                host: normalize(host),
                identity: user
                    .as_deref()
                    .filter(|_| f.tracks_connections)
                    .map(|u| UserKey::new(u, "")),
                user,
                failregex,
                count: 1,
                port: None,
                followup: false,
                opens: false,
                gained: false,
            },
        }
    }

    #[test]
    fn ascii_form_and_prefix_check_agree_with_the_unicode_set_pass() {
        let f = filter(
            &[
                r"^(?:\[ID \d+ \w+\.\w+\] )?Failed (?:password|none) for (?:invalid user )?(?P<user>[^:]*?) from <HOST>(?: port \d+)?(?: ssh\d)?$",
                r"^(?i)invalid user (?P<user>.*?) from <HOST>\b.*$",
                r"^(?:error: )?bad \S+ for (?P<user>\w+) from <HOST>\s*$",
                r"^\S+ said <HOST>$",
                r"^(?:ab|cd)?x (?P<user>\p{L}+) <HOST>$",
            ],
            &[r"for monitor "],
        );
        let messages = [
            "Failed password for root from 198.51.100.1 port 22 ssh2",
            "Failed password for invalid user a b from 2001:db8::1 port 22 ssh2",
            "[ID 800047 auth.info] Failed none for x from 198.51.100.2",
            "Failed password for x from 10.0.0.1 port 1 ssh2 from 198.51.100.3 port 2 ssh2",
            "Failed password for monitor from 198.51.100.4 port 22 ssh2",
            "Failed password for bad: user from 198.51.100.5 port 22 ssh2",
            "Failed password for r\u{e9}my from 198.51.100.6 port 22 ssh2",
            "Failed password for root from \u{661}98.51.100.6 port 22 ssh2",
            "INVALID USER Bob from 198.51.100.7 extra",
            "invalid user \u{212a}elvin from 198.51.100.8",
            "error: bad key for b\u{f6}b from 198.51.100.9",
            "error: bad key for bob from 198.51.100.9 \u{2003}",
            "bad key for bob_1 from 198.51.100.10 \t",
            "anyone said 198.51.100.11",
            "x \u{e9}l\u{e8}ve 198.51.100.12",
            "cdx word 198.51.100.13",
            "Failed password for root from 999.1.1.1 port 22 ssh2",
            "Accepted publickey for root from 198.51.100.1 port 22 ssh2",
            "",
        ];
        for message in messages {
            assert_eq!(f.check(message), reference(&f, message), "{message:?}");
        }
        // Every pattern but the \p{L} one has an ASCII form.
        let ascii: Vec<bool> = f.fail.iter().map(|p| p.ascii.is_some()).collect();
        assert_eq!(ascii, [true, true, true, true, false]);
    }

    #[test]
    fn compile_errors_name_the_pattern() {
        let unanchored = Filter::compile(&["from <HOST>".into()], &[]).unwrap_err();
        assert_eq!(unanchored, FilterError::Unanchored { index: 0 });
        let no_host = Filter::compile(&["^x".into(), "^y".into()], &[]).unwrap_err();
        assert_eq!(no_host, FilterError::NoHost { index: 0 });
        let bad = Filter::compile(&["^<HOST>".into()], &["(".into()]).unwrap_err();
        assert!(
            bad.to_string().starts_with("ignoreregex[0]: invalid regex"),
            "{bad}"
        );
        assert_eq!(Filter::compile(&[], &[]).unwrap_err(), FilterError::Empty);
    }

    #[test]
    fn a_line_that_reports_attempts_counts_them() {
        let f = Filter::compile(
            &[r"^auth failed, (?P<count>\d+) attempts?: rip=<HOST>$".into()],
            &[],
        )
        .unwrap();
        let count = |line: &str| match f.check(line) {
            FilterMatch::Failure { count, .. } => count,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(count("auth failed, 3 attempts: rip=198.51.100.7"), 3);
        assert_eq!(count("auth failed, 1 attempt: rip=198.51.100.7"), 1);
        // Zero still counts once; a forged huge number is capped.
        assert_eq!(count("auth failed, 0 attempts: rip=198.51.100.7"), 1);
        assert_eq!(
            count("auth failed, 99999999999 attempts: rip=198.51.100.7"),
            MAX_COUNT_PER_LINE
        );
        assert_eq!(
            count("auth failed, 100000 attempts: rip=198.51.100.7"),
            MAX_COUNT_PER_LINE
        );
    }
}
