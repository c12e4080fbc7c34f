//! Finding the timestamp in a log line, so it can be cut out before the regexes run.
//!
//! Owns fail2ban's `datepattern` language (strptime directives with fail2ban's `%Ex...`
//! extensions, `{^LN-BEG}`, `{DATE}`, `{UNB}`, `{NONE}`, `EPOCH`, `LEPOCH`, `TAI64N`) and a
//! default set of common log date formats written for this project. It only locates the date;
//! it does not compute times (the daemon uses the syslog header's time).

use thiserror::Error;

use super::pyre::{Engine, Flags, PyRegex, PyRegexError};

/// A datepattern that does not compile.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("datepattern {pattern:?}: {cause}")]
pub struct DateError {
    /// The datepattern line.
    pub pattern: String,
    /// Why it failed.
    pub cause: PyRegexError,
}

/// Common date layouts, most specific first (strptime-style, converted by [`directives`]).
const DEFAULT_FORMATS: &[&str] = &[
    // ISO 8601 and simple dates: 2005-01-23T21:59:59.981746+01:00, 2005/01/23 21:59:59
    r"%ExY(?:-%m-|/%m/|\.%m\.)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
    // asctime: [Sun ]Jan 23 21:59:59[.011][ 2005]
    r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    // Sun Jan 23 2005 21:59:59
    r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?",
    // 23/01/2005 21:59:59, 23-01-05 21:59:59
    r"%d(?:-%m-|/%m/)(?:%ExY|%Exy) %k:%M:%S",
    // Apache: 22/Jan/2005:21:59:59 +0100
    r"%d(?:-%b-|/%b/)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?",
    // 05/20/2008:01:57:39
    r"%m/%d/%ExY:%H:%M:%S",
    // 01-27-2012 16:22:44.252
    r"%m-%d-%ExY %k:%M:%S(?:\.%f)?",
    // <09/16/08@05:03:30>
    r"^<%m/%d/%Exy@%H:%M:%S>",
    // MySQL: 130322 11:46:11
    r"%Exy%Exm%Exd  ?%H:%M:%S",
    // Apr 16, 2005 1:05:29 PM
    r"%b %d, %ExY %I:%M:%S %p",
    // Apr-27-13 02:33:06
    r"^%b-%d-%Exy %k:%M:%S",
    // 20050123T215959, 20050123 215959
    r"%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?",
    // PDT Apr 16 21:05:29, +0100 Apr 16 21:05:29
    r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    // Time of day only.
    r"^%H:%M:%S",
];

/// Epoch seconds (10-11 digits, optional fraction), at the start (optionally in `[`), and the
/// audit form `audit(1234567890.123:45)`.
const EPOCH_START: &str = r"^\[?(\d{10,11}(?:\.\d{3,6})?)(?:\b|$)";
const EPOCH_AUDIT: &str = r"\baudit\((\d{10,11}(?:\.\d{3,6})?):\d+\)";
const LEPOCH_START: &str = r"^\[?(\d{13}(?:\.\d{3,6})?)(?:\b|$)";
const TAI64N: &str = r"(@[0-9a-fA-F]{24})";

/// One compiled template.
#[derive(Debug, Clone)]
struct Template {
    regex: PyRegex,
    /// Check fail2ban's end-of-word condition after the date by hand (no look-ahead needed).
    word_end: bool,
}

/// The date finder of one filter.
#[derive(Debug, Clone)]
pub struct DateDetector {
    templates: Vec<Template>,
}

/// Where a date was found: the byte range to cut out.
pub type DateSpan = (usize, usize);

impl DateDetector {
    /// Fail2ban's behaviour without a datepattern: the default formats, those at the line
    /// start first.
    pub fn default_templates() -> Result<Self, DateError> {
        Self::from_patterns(&["{DEFAULT}".to_string()])
    }

    /// Builds a detector from `datepattern` lines.
    pub fn from_patterns(patterns: &[String]) -> Result<Self, DateError> {
        let mut templates = Vec::new();
        for pattern in patterns {
            let pattern = pattern.trim();
            if pattern.is_empty() {
                continue;
            }
            add_pattern(&mut templates, pattern)?;
        }
        if templates.is_empty() {
            add_pattern(&mut templates, "{DEFAULT}")?;
        }
        Ok(DateDetector { templates })
    }

    /// A detector that finds no date (`datepattern = {NONE}`).
    pub fn none() -> Self {
        DateDetector {
            templates: Vec::new(),
        }
    }

    /// `(index, pattern)` of the templates that run on the backtracking engine (patterns with
    /// back-references such as `(?P=_sep)`).
    pub fn backtracking_templates(&self) -> Vec<(usize, &str)> {
        self.templates
            .iter()
            .enumerate()
            .filter(|(_, t)| t.regex.engine() == Engine::Backtracking)
            .map(|(i, t)| (i, t.regex.source()))
            .collect()
    }

    /// The first template's date in `line`.
    pub fn find(&self, line: &str) -> Option<DateSpan> {
        for t in &self.templates {
            // Most templates do not match a given line; telling so without captures saves
            // their allocation (a search with captures allocates its slots first).
            if t.regex.engine() == Engine::Linear && !t.regex.is_match(line) {
                continue;
            }
            let mut from = 0;
            while let Some(m) = t.regex.search_at(line, from) {
                let span = m
                    .spans
                    .get(1)
                    .copied()
                    .flatten()
                    .unwrap_or((m.start, m.end));
                if !t.word_end || word_end_ok(line, span) {
                    return Some(span);
                }
                // Try again further on (the anchored templates cannot match further on).
                from = next_char(line, m.start);
                if from > line.len() {
                    break;
                }
            }
        }
        None
    }
}

fn next_char(s: &str, i: usize) -> usize {
    s.get(i..)
        .and_then(|rest| rest.chars().next())
        .map_or(s.len() + 1, |c| i + c.len_utf8())
}

/// fail2ban's `(?=\b|\W|$)` after the date.
fn word_end_ok(line: &str, (start, end): DateSpan) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    match line.get(end..).and_then(|rest| rest.chars().next()) {
        None => true,
        Some(next) if !is_word(next) => true,
        Some(_) => line
            .get(start..end)
            .and_then(|date| date.chars().last())
            .is_some_and(|c| !is_word(c)),
    }
}

fn add_pattern(out: &mut Vec<Template>, pattern: &str) -> Result<(), DateError> {
    let err = |cause| DateError {
        pattern: pattern.to_string(),
        cause,
    };
    let upper = pattern.to_ascii_uppercase();
    let (line_begin, rest) = match pattern.strip_prefix("{^LN-BEG}") {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let rest_upper = rest.to_ascii_uppercase();
    match rest_upper.as_str() {
        "" | "{DEFAULT}" => {
            // Line-start variants first (as fail2ban prefers them); {^LN-BEG} allows only those.
            for f in DEFAULT_FORMATS {
                out.push(template(&directives(f), Bound::Start).map_err(err)?);
            }
            if !line_begin {
                for f in DEFAULT_FORMATS {
                    out.push(template(&directives(f), Bound::Word).map_err(err)?);
                }
                push_special(out, EPOCH_AUDIT, false).map_err(err)?;
            }
            push_special(out, EPOCH_START, false).map_err(err)?;
            push_special(out, &format!("^(?:\\W{{0,2}})?{TAI64N}"), false).map_err(err)?;
            return Ok(());
        }
        "{NONE}" => return Ok(()),
        "EPOCH" => {
            push_special(out, EPOCH_START, false).map_err(err)?;
            if !line_begin {
                push_special(out, EPOCH_AUDIT, false).map_err(err)?;
            }
            return Ok(());
        }
        "LEPOCH" => return push_special(out, LEPOCH_START, false).map_err(err),
        "TAI64N" => {
            let re = if line_begin {
                format!("^(?:\\W{{0,2}})?{TAI64N}")
            } else {
                TAI64N.to_string()
            };
            return push_special(out, &re, false).map_err(err);
        }
        _ => {}
    }
    let _ = upper;
    if rest.contains("{DATE}") {
        for f in DEFAULT_FORMATS {
            let inner = directives(f.trim_start_matches('^'));
            let full = rest.replace("{DATE}", &inner);
            let bound = if line_begin {
                Bound::Start
            } else {
                Bound::Word
            };
            out.push(template(&full, bound).map_err(err)?);
        }
        return Ok(());
    }
    let (bound, body) = match rest.strip_prefix("{UNB}") {
        Some(body) => (Bound::None, body),
        None if line_begin => (Bound::Start, rest),
        None => (Bound::Word, rest),
    };
    out.push(template(&directives(body), bound).map_err(err)?);
    Ok(())
}

fn push_special(out: &mut Vec<Template>, re: &str, word_end: bool) -> Result<(), PyRegexError> {
    out.push(Template {
        regex: PyRegex::new(
            re,
            Flags {
                ignore_case: true,
                ..Flags::default()
            },
        )?,
        word_end,
    });
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    /// At the line start, after at most two non-word characters.
    Start,
    /// At a word boundary anywhere.
    Word,
    /// No boundaries (`{UNB}`).
    None,
}

/// Wraps a converted pattern: group 1 is the date, boundaries are added unless the pattern
/// anchors itself (`^...`, `...$`, `**`).
fn template(regex: &str, bound: Bound) -> Result<Template, PyRegexError> {
    let mut regex = regex.trim().to_string();
    let mut bound_begin = bound != Bound::None;
    let mut word_end = bound != Bound::None;
    let stripped = regex.trim_start_matches('(');
    if stripped.starts_with('^') || stripped.starts_with("**") || stripped.starts_with("?:^") {
        bound_begin = false;
    }
    if regex.ends_with('$')
        || regex.ends_with(r"\b")
        || regex.ends_with(r"\s")
        || regex.ends_with("**")
    {
        word_end = false;
    }
    regex = regex.replace("**", "");
    if !has_capturing_group(&regex) {
        regex = format!("({regex})");
    }
    if bound_begin {
        regex = match bound {
            Bound::Start => format!(r"^(?:\W{{0,2}})?{regex}"),
            _ => format!(r"(?:^|\b|\W){regex}"),
        };
    }
    Ok(Template {
        regex: PyRegex::new(
            &regex,
            Flags {
                ignore_case: true,
                ..Flags::default()
            },
        )?,
        word_end,
    })
}

/// Whether the pattern has a plain `(` group (not `(?...`), outside classes and escapes.
fn has_capturing_group(re: &str) -> bool {
    let b = re.as_bytes();
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'(' if !in_class && b.get(i + 1) != Some(&b'?') => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

const MONTHS: &str = "Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:tember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?";
const DAYS: &str =
    "Mon(?:day)?|Tue(?:sday)?|Wed(?:nesday)?|Thu(?:rsday)?|Fri(?:day)?|Sat(?:urday)?|Sun(?:day)?";

/// Replaces strptime directives by regex fragments (non-capturing: only the span matters).
pub fn directives(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() * 3);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut d = match chars.next() {
            Some(d) => d.to_string(),
            None => {
                out.push('%');
                break;
            }
        };
        if d == "E" && chars.peek() == Some(&'x') {
            chars.next();
            d = format!("Ex{}", chars.next().map(String::from).unwrap_or_default());
        }
        let frag: String = match d.as_str() {
            "%" => "%".into(),
            "Y" => r"\d{4}".into(),
            "ExY" => r"(?:19|20)\d\d".into(),
            "y" | "Exy" => r"\d\d".into(),
            "m" => r"(?:1[0-2]|0[1-9]|[1-9])".into(),
            "Exm" => r"(?:1[0-2]|0[1-9])".into(),
            "d" | "e" => r"(?:3[01]|[12]\d|0[1-9]|[1-9]| [1-9])".into(),
            "Exd" => r"(?:3[01]|[12]\d|0[1-9])".into(),
            "H" => r"(?:2[0-3]|[01]\d|\d)".into(),
            "ExH" => r"(?:2[0-3]|[01]\d)".into(),
            "k" => r"(?:2[0-3]|[01]\d| ?\d)".into(),
            "I" | "l" => r"(?:1[0-2]|0[1-9]| ?[1-9])".into(),
            "M" => r"(?:[0-5]\d|\d)".into(),
            "ExM" => r"[0-5]\d".into(),
            "S" => r"(?:6[01]|[0-5]\d|\d)".into(),
            "ExS" => r"(?:6[01]|[0-5]\d)".into(),
            "f" => r"\d+".into(),
            "b" | "B" | "h" => format!("(?:{MONTHS})"),
            "a" | "A" => format!("(?:{DAYS})"),
            "p" => "(?:AM|PM)".into(),
            "z" => r"(?:Z|UTC|GMT|[+-][01]\d(?::?\d{2})?)".into(),
            "Z" => r"(?:Z|UTC|GMT|[A-Z]{3,5})".into(),
            "s" => r"\d{1,11}".into(),
            "j" => r"(?:36[0-6]|3[0-5]\d|[12]\d\d|0?[1-9]\d|0{0,2}[1-9])".into(),
            "w" | "u" => r"[0-7]".into(),
            "U" | "W" | "V" => r"(?:[0-4]\d|5[0-3]|\d)".into(),
            "T" => directives("%H:%M:%S"),
            other => format!("%{other}"),
        };
        out.push_str(&frag);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(d: &DateDetector, line: &str) -> Option<String> {
        d.find(line)
            .map(|(s, e)| format!("{}|{}", line.get(..s).unwrap(), line.get(e..).unwrap()))
    }

    #[test]
    fn default_formats() {
        let d = DateDetector::default_templates().unwrap();
        assert_eq!(
            cut(&d, "Jan 23 21:59:59 host sshd[1]: x").as_deref(),
            Some("| host sshd[1]: x")
        );
        assert_eq!(
            cut(&d, "[Sun Jan 23 21:59:59.011 2005] [error] x").as_deref(),
            Some("[|] [error] x")
        );
        assert_eq!(
            cut(&d, "1.2.3.4 - - [22/Jan/2005:21:59:59 +0100] \"GET /\"").as_deref(),
            Some("1.2.3.4 - - [|] \"GET /\"")
        );
        assert_eq!(
            cut(&d, "2005-01-23T21:59:59.981746+01:00 x").as_deref(),
            Some("| x")
        );
        assert_eq!(cut(&d, "no date here 12345"), None);
    }

    #[test]
    fn line_begin_and_custom_patterns() {
        let d = DateDetector::from_patterns(&["{^LN-BEG}".into()]).unwrap();
        assert_eq!(cut(&d, "x Jan 23 21:59:59 y"), None);
        let d = DateDetector::from_patterns(&[r"^[^\[]*\[({DATE})".into()]).unwrap();
        assert_eq!(
            cut(&d, "host [23/Jan/2005:21:59:59 +0100] x").as_deref(),
            Some("host [|] x")
        );
        let d = DateDetector::from_patterns(&["^%Y-%m-%d %H:%M:%S".into()]).unwrap();
        assert_eq!(cut(&d, "2005-01-23 21:59:59 x").as_deref(), Some("| x"));
        let d = DateDetector::from_patterns(&["{^LN-BEG}Epoch".into()]).unwrap();
        assert_eq!(cut(&d, "1106513999.123 x").as_deref(), Some("| x"));
        let d = DateDetector::from_patterns(&["{^LN-BEG}TAI64N".into()]).unwrap();
        assert_eq!(
            cut(&d, "@4000000041f4104f00000000 x").as_deref(),
            Some("| x")
        );
        assert!(DateDetector::from_patterns(&["(".into()]).is_err());
    }
}
