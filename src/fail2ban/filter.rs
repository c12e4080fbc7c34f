//! A loaded fail2ban filter (`Fail2banFilter`): its compiled regexes, date detector and the
//! settings that drive matching, as `load` leaves them. Data and accessors only; loading is in
//! the module root, matching lines in `matcher`.

use std::path::{Path, PathBuf};

use super::date::DateDetector;
use super::pyre::{Engine, Prefilter, PyRegex};

/// How lines reach the filter, which decides the line prefix the filter expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogType {
    /// Syslog files: a date, host and `prog[pid]:` before the message.
    File,
    /// systemd journal entries (`host prog[pid]: message`, the date comes separately).
    Journal,
    /// Short journal-like lines.
    Short,
    /// RFC 5424 lines.
    Rfc5424,
    /// Any other value the filter's files define.
    Other(String),
}

/// A loaded fail2ban filter: compiled regexes and the settings that drive matching.
#[derive(Debug, Clone)]
pub struct Fail2banFilter {
    pub(super) path: PathBuf,
    pub(super) prefregex: Option<PyRegex>,
    pub(super) failregex: Vec<PyRegex>,
    /// Which failregex can match a line, in one pass (so the others are not run).
    pub(super) failset: Prefilter,
    pub(super) ignoreregex: Vec<PyRegex>,
    pub(super) maxlines: usize,
    pub(super) dates: DateDetector,
    pub(super) logtype: LogType,
    pub(super) journalmatch: Vec<Vec<String>>,
    pub(super) programs: Option<Vec<String>>,
    pub(super) daemon: Option<String>,
}

impl Fail2banFilter {
    /// The filter file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Program names from `_daemon`, for routing; None when `_daemon` is open-ended.
    pub fn programs(&self) -> Option<&[String]> {
        self.programs.as_deref()
    }

    /// The raw `_daemon` regex, if the filter defines one.
    pub fn daemon(&self) -> Option<&str> {
        self.daemon.as_deref()
    }

    /// `journalmatch`: groups of `FIELD=value` terms, any group may match.
    pub fn journalmatch(&self) -> &[Vec<String>] {
        &self.journalmatch
    }

    /// The `logtype` in force.
    pub fn logtype(&self) -> &LogType {
        &self.logtype
    }

    /// `maxlines`: how many lines a multi-line regex may span.
    pub fn maxlines(&self) -> usize {
        self.maxlines
    }

    /// Number of failregex lines.
    pub fn failregex_count(&self) -> usize {
        self.failregex.len()
    }

    /// The Python source of failregex `index` (after tag substitution).
    pub fn failregex_source(&self, index: usize) -> Option<&str> {
        self.failregex.get(index).map(PyRegex::source)
    }

    /// `(option, index, source)` of each regex that runs on the backtracking engine (the
    /// daemon logs these at start-up: they cost more per line).
    pub fn backtracking_regexes(&self) -> Vec<(&'static str, usize, &str)> {
        let mut out = Vec::new();
        if let Some(p) = &self.prefregex {
            if p.engine() == Engine::Backtracking {
                out.push(("prefregex", 0, p.source()));
            }
        }
        for (key, list) in [
            ("failregex", &self.failregex),
            ("ignoreregex", &self.ignoreregex),
        ] {
            for (i, re) in list.iter().enumerate() {
                if re.engine() == Engine::Backtracking {
                    out.push((key, i, re.source()));
                }
            }
        }
        out.extend(
            self.dates
                .backtracking_templates()
                .into_iter()
                .map(|(i, source)| ("datepattern", i, source)),
        );
        out
    }
}
