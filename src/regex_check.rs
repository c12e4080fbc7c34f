//! The engine of `syslog2ban regex`: runs one jail's filter over log lines and reports, per
//! line, whether it matched, which address, and whether ignoreregex vetoed it.
//!
//! Owns the per-line result and the summary. Pure over its input: reading files, resolving
//! filter names and printing are the CLI's job.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;

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

/// Adds one result to the summary.
pub fn tally(summary: &mut Summary, result: &LineResult, line: &str, regex_count: usize) {
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
                tally(&mut summary, &r, l, filter.failregex_count());
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
