//! A jail's filter: failregex / ignoreregex with `<HOST>`, applied to one message text.
//!
//! Owns pattern compilation and matching. It is pure: no I/O, no clock, no counting. It must
//! not know about routing (the router already chose the jail) or about bans.

use std::net::IpAddr;

use regex::{Regex, RegexSet};
use thiserror::Error;

/// What `<HOST>` expands to: an IPv4 address, or an IPv6 address (possibly with an embedded
/// IPv4 tail), optionally in brackets. The capture is validated with `IpAddr::from_str`, so the
/// pattern only needs to be a tight superset.
const HOST_PATTERN: &str = r"\[?(?P<host>(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]*(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})?)\]?";

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
        /// Which failregex matched.
        failregex: usize,
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

/// Compiled failregex and ignoreregex of one jail.
#[derive(Debug, Clone)]
pub struct Filter {
    fail_set: RegexSet,
    fail: Vec<Regex>,
    ignore: Option<RegexSet>,
    sources: Vec<String>,
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
            expanded.push(regex);
        }
        let fail_set =
            RegexSet::new(expanded.iter().map(Regex::as_str)).map_err(|e| FilterError::Regex {
                list: "failregex",
                index: 0,
                message: e.to_string(),
            })?;
        let ignore = compile_ignore(ignoreregex)?;
        Ok(Filter {
            fail_set,
            fail: expanded,
            ignore,
            sources: failregex.to_vec(),
        })
    }

    /// A filter with no failregex of its own, only ignoreregex: for jails whose failures come
    /// from a fail2ban filter file, to which the jail's ignoreregex adds.
    pub fn ignore_only(ignoreregex: &[String]) -> Result<Self, FilterError> {
        let ignore = compile_ignore(ignoreregex)?;
        Ok(Filter {
            fail_set: RegexSet::empty(),
            fail: Vec::new(),
            ignore,
            sources: Vec::new(),
        })
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
        // One pass over the set tells which patterns match; only those run with captures.
        self.check_hits(message, self.fail_set.matches(message).iter())
    }

    /// The failregex after expansion, for a matcher shared by several jails.
    pub fn expanded_failregex(&self) -> impl Iterator<Item = &str> {
        self.fail.iter().map(Regex::as_str)
    }

    /// Like `check`, with the failregex hits already known (from a shared multi-pattern pass
    /// over the message); `hits` are indexes into this filter's failregex, ascending.
    pub fn check_hits(&self, message: &str, hits: impl Iterator<Item = usize>) -> FilterMatch {
        let mut hits = hits;
        let Some(failregex) = hits.find_map(|index| {
            let caps = self.fail[index].captures(message)?;
            let host = caps.name("host")?.as_str().parse::<IpAddr>().ok()?;
            let user = caps.name("user").map(|m| m.as_str().to_string());
            Some((index, host, user))
        }) else {
            return FilterMatch::None;
        };
        if self
            .ignore
            .as_ref()
            .is_some_and(|set| set.is_match(message))
        {
            return FilterMatch::Ignored {
                failregex: failregex.0,
            };
        }
        let (failregex, host, user) = failregex;
        FilterMatch::Failure {
            host: normalize(host),
            user,
            failregex,
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
                failregex: 1
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
}
