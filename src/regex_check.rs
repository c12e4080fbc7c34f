//! The engine of `syslog2ban regex`: runs one jail's filter over log lines and reports, per
//! line, whether it matched, which address, and whether ignoreregex vetoed it.
//!
//! Owns the per-line result and the summary. Pure over its input: reading files, resolving
//! filter names and printing are the CLI's job.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::fail2ban::Fail2banMatcher;
use crate::jail::filter::{Filter, FilterMatch};
use crate::parse;

/// The result for one input line (the `--json` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineResult {
    /// 1-based line number.
    pub line: usize,
    /// A failregex matched and was not ignored.
    pub matched: bool,
    /// The captured address of a match.
    pub host: Option<IpAddr>,
    /// The `user` capture of a match.
    pub user: Option<String>,
    /// A failregex matched but ignoreregex vetoed it.
    pub ignored: bool,
    /// Which failregex matched (0-based), for matches and ignored lines.
    #[serde(skip)]
    pub failregex: Option<usize>,
}

/// The result for one input line under a fail2ban filter: the same JSON object, but the host
/// is text, because fail2ban filters may capture a host name or a failure id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fail2banLineResult {
    /// 1-based line number.
    pub line: usize,
    /// A failregex matched and was neither ignored nor a `<F-NOFAIL>` helper.
    pub matched: bool,
    /// The captured host (address, name or failure id).
    pub host: Option<String>,
    /// The `user` capture.
    pub user: Option<String>,
    /// A failregex matched but ignoreregex vetoed it.
    pub ignored: bool,
    /// Which failregex matched (0-based).
    #[serde(skip)]
    pub failregex: Option<usize>,
}

/// Checks one line of a log file with a fail2ban filter. Comment (`#`) and blank lines never
/// match and do not reach the filter (so they cannot disturb its multi-line state).
pub fn check_fail2ban_line(
    matcher: &mut Fail2banMatcher,
    number: usize,
    line: &str,
) -> Fail2banLineResult {
    let mut result = Fail2banLineResult {
        line: number,
        matched: false,
        host: None,
        user: None,
        ignored: false,
        failregex: None,
    };
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return result;
    }
    let out = matcher.file_line(line);
    result.matched = out.matched;
    result.host = out.host;
    result.user = out.user;
    result.ignored = out.ignored;
    result.failregex = out.failregex;
    result
}

/// Counts over a whole input.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Lines read (including comments and blanks).
    pub lines: usize,
    /// Lines that matched.
    pub matched: usize,
    /// Lines vetoed by ignoreregex.
    pub ignored: usize,
    /// Lines with content that did not match.
    pub missed: usize,
    /// Hits per failregex.
    pub per_regex: Vec<usize>,
}

/// Checks one line: a classic syslog file line, or a raw message with `<PRI>`. Comment
/// (`#`) and blank lines never match.
pub fn check_line(filter: &Filter, number: usize, line: &str, now: DateTime<Utc>) -> LineResult {
    let mut result = LineResult {
        line: number,
        matched: false,
        host: None,
        user: None,
        ignored: false,
        failregex: None,
    };
    if line.trim_start().starts_with('#') {
        return result;
    }
    let Ok(record) = parse::parse_line(line, now) else {
        return result;
    };
    match filter.check(&record.message) {
        FilterMatch::None => {}
        FilterMatch::Ignored { failregex } => {
            result.ignored = true;
            result.failregex = Some(failregex);
        }
        FilterMatch::Failure {
            host,
            user,
            failregex,
        } => {
            result.matched = true;
            result.host = Some(host);
            result.user = user;
            result.failregex = Some(failregex);
        }
    }
    result
}

/// What [`tally`] needs of a line result.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    /// The line matched.
    pub matched: bool,
    /// ignoreregex vetoed it.
    pub ignored: bool,
    /// Which failregex matched.
    pub failregex: Option<usize>,
}

impl From<&LineResult> for Verdict {
    fn from(r: &LineResult) -> Self {
        Verdict {
            matched: r.matched,
            ignored: r.ignored,
            failregex: r.failregex,
        }
    }
}

impl From<&Fail2banLineResult> for Verdict {
    fn from(r: &Fail2banLineResult) -> Self {
        Verdict {
            matched: r.matched,
            ignored: r.ignored,
            failregex: r.failregex,
        }
    }
}

/// Adds one result to the summary.
pub fn tally(summary: &mut Summary, result: Verdict, line: &str, regex_count: usize) {
    summary.per_regex.resize(regex_count, 0);
    summary.lines += 1;
    if result.matched {
        summary.matched += 1;
    } else if result.ignored {
        summary.ignored += 1;
    } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
        summary.missed += 1;
    }
    if let (true, Some(i)) = (result.matched, result.failregex) {
        if let Some(hits) = summary.per_regex.get_mut(i) {
            *hits += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_input_lines() {
        let filter = Filter::compile(
            &[r"^Failed password for (?P<user>\S+) from <HOST> port \d+ ssh2$".into()],
            &[r"for monitor ".into()],
        )
        .unwrap();
        let now = Utc::now();
        let lines = [
            "# comment",
            "",
            "Nov 25 08:32:44 web1 sshd[1]: Failed password for root from 198.51.100.66 port 22 ssh2",
            "Nov 25 08:32:44 web1 sshd[1]: Failed password for monitor from 198.51.100.67 port 22 ssh2",
            "Nov 25 08:32:44 web1 cron[2]: something else",
            "<38>1 2026-11-25T08:32:44Z web1 sshd 1 - - Failed password for bob from 2001:db8::1 port 2 ssh2",
        ];
        let mut summary = Summary::default();
        let results: Vec<LineResult> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let r = check_line(&filter, i + 1, l, now);
                tally(&mut summary, (&r).into(), l, filter.failregex_count());
                r
            })
            .collect();
        assert_eq!(results[2].host, Some("198.51.100.66".parse().unwrap()));
        assert_eq!(results[2].user.as_deref(), Some("root"));
        assert!(results[3].ignored && !results[3].matched);
        assert!(!results[4].matched);
        assert_eq!(results[5].host, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(
            summary,
            Summary {
                lines: 6,
                matched: 2,
                ignored: 1,
                missed: 1,
                per_regex: vec![2]
            }
        );
        let json = serde_json::to_string(&results[2]).unwrap();
        assert_eq!(
            json,
            r#"{"line":3,"matched":true,"host":"198.51.100.66","user":"root","ignored":false}"#
        );
    }
}
