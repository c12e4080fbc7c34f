//! fail2ban compatibility: loads fail2ban filter `.conf` files unchanged and runs them.
//!
//! Owns fail2ban's configuration language (INI, includes, interpolation, `<tags>`), the
//! translation of Python regexes for Rust, date stripping and the stateful line matcher. It is
//! a filter source for the jail stage: it must not import anything from ban, enforce or daemon.
//!
//! ```text
//! FilterSpec::parse("filter.d/sshd.conf[mode=aggressive]")
//!   → load(): ini (files, %(x)s) → [Definition] options → [Init] + options → <tag> substitution
//!   → regex tags (<HOST>, <F-USER>) → Python→Rust translation → Fail2banFilter
//!   → Fail2banMatcher (per input stream: maxlines buffer, <F-MLFID> cache) → LineOutcome
//! ```

// Reads network or config input: a byte index inside a UTF-8 character would panic.
#![deny(clippy::string_slice)]

pub mod date;
mod filter;
pub mod firewall;
pub mod import;
pub mod ini;
mod matcher;
pub mod pyre;
pub mod tags;

use std::collections::BTreeMap;
use std::path::PathBuf;

use thiserror::Error;

pub use filter::{Fail2banFilter, LogType};
pub use matcher::{Fail2banMatcher, LineOutcome};

use date::{DateDetector, DateError};
use ini::{Ini, IniError, Options};
use pyre::{Flags, Prefilter, PyRegex, PyRegexError};

/// The section holding a filter's definitions.
const DEFINITION: &str = "Definition";
/// The section holding a filter's parameters (overridable by `name[key=value]`).
const INIT: &str = "Init";
/// The options fail2ban's filter reader takes from `[Definition]`.
const DEFINITION_OPTIONS: &[&str] = &[
    "usedns",
    "prefregex",
    "ignoreregex",
    "failregex",
    "maxlines",
    "datepattern",
    "journalmatch",
];

/// Errors of loading a fail2ban filter. Each names the file, and the section and key where
/// one is at fault.
#[derive(Debug, Error)]
pub enum Fail2banError {
    /// The `path[options]` text is malformed.
    #[error("{spec}: bad filter options: {message}")]
    Spec {
        /// The text given.
        spec: String,
        /// What is wrong.
        message: String,
    },
    /// Reading or interpolating the INI files failed.
    #[error("{file}: {cause}")]
    Ini {
        /// The filter file.
        file: PathBuf,
        /// The INI error (it names the section and key).
        cause: IniError,
    },
    /// The file has no `[Definition]` section.
    #[error("{file}: no [Definition] section (is this a fail2ban filter?)")]
    NoDefinition {
        /// The filter file.
        file: PathBuf,
    },
    /// An option has an unusable value.
    #[error("{file}: [{section}] {key}: {message}")]
    Option {
        /// The filter file.
        file: PathBuf,
        /// The section.
        section: &'static str,
        /// The option.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A regex does not compile.
    #[error("{file}: [Definition] {key}[{index}]: {cause}")]
    Regex {
        /// The filter file.
        file: PathBuf,
        /// `failregex`, `ignoreregex` or `prefregex`.
        key: &'static str,
        /// Position in the list.
        index: usize,
        /// Why.
        cause: PyRegexError,
    },
    /// The datepattern does not compile.
    #[error("{file}: [Definition] {cause}")]
    Date {
        /// The filter file.
        file: PathBuf,
        /// Why.
        cause: DateError,
    },
}

/// A filter reference as fail2ban writes it: `path/sshd.conf[mode=aggressive, x="a,b"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSpec {
    /// The filter file.
    pub path: PathBuf,
    /// Options in the order given (keys lower-cased, as fail2ban reads them).
    pub options: Vec<(String, String)>,
}

impl FilterSpec {
    /// Parses `path` or `path[key=value, key="v,w", key='x']`.
    pub fn parse(text: &str) -> Result<Self, Fail2banError> {
        let text = text.trim();
        let bad = |message: &str| Fail2banError::Spec {
            spec: text.to_string(),
            message: message.to_string(),
        };
        let Some(open) = text.find('[') else {
            if text.is_empty() {
                return Err(bad("empty filter path"));
            }
            return Ok(FilterSpec {
                path: PathBuf::from(text),
                options: Vec::new(),
            });
        };
        let (path, options) = text.split_at_checked(open).unwrap_or((text, ""));
        let path = path.trim();
        let inner = options
            .strip_prefix('[')
            .and_then(|o| o.strip_suffix(']'))
            .ok_or_else(|| bad("missing closing ']'"))?;
        if path.is_empty() {
            return Err(bad("empty filter path"));
        }
        let mut options = Vec::new();
        let chars: Vec<char> = inner.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                i += 1;
            }
            if i >= chars.len() {
                break;
            }
            let key_start = i;
            while i < chars.len() && chars[i] != '=' && chars[i] != ',' {
                i += 1;
            }
            let key: String = chars[key_start..i].iter().collect();
            let key = key.trim().to_lowercase();
            if key.is_empty() || chars.get(i) != Some(&'=') {
                return Err(bad("expected key=value"));
            }
            if !key
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
            {
                return Err(bad(&format!("bad option name {key:?}")));
            }
            i += 1;
            while i < chars.len() && chars[i] == ' ' {
                i += 1;
            }
            let value = match chars.get(i) {
                Some(&q @ ('"' | '\'')) => {
                    let start = i + 1;
                    let end = chars[start..]
                        .iter()
                        .position(|&c| c == q)
                        .map(|p| start + p)
                        .ok_or_else(|| bad("unterminated quote"))?;
                    i = end + 1;
                    chars[start..end].iter().collect::<String>()
                }
                _ => {
                    let start = i;
                    while i < chars.len() && chars[i] != ',' {
                        i += 1;
                    }
                    chars[start..i]
                        .iter()
                        .collect::<String>()
                        .trim()
                        .to_string()
                }
            };
            options.push((key, value));
        }
        Ok(FilterSpec {
            path: PathBuf::from(path),
            options,
        })
    }
}

/// Loads and compiles a fail2ban filter.
pub fn load(spec: &FilterSpec) -> Result<Fail2banFilter, Fail2banError> {
    let file = spec.path.clone();
    let ini_err = |cause| Fail2banError::Ini {
        file: file.clone(),
        cause,
    };
    let ini = Ini::load(&spec.path).map_err(ini_err)?;
    if !ini.has_section(DEFINITION) {
        return Err(Fail2banError::NoDefinition { file });
    }
    // Options given as `name[key=value]`: they win over [Init] and [Definition], and are
    // visible to %(key)s interpolation (Python's `vars=`).
    let vars: Options = spec.options.iter().cloned().collect();

    let mut combined: BTreeMap<String, String> = BTreeMap::new();
    for key in DEFINITION_OPTIONS {
        if vars.contains_key(*key) {
            continue;
        }
        if let Some(v) = ini.get_with(DEFINITION, key, &vars).map_err(ini_err)? {
            combined.insert((*key).to_string(), v);
        }
    }
    let mut init = vars.clone();
    if let Some(own) = ini.section(INIT).cloned() {
        for key in own.keys() {
            let v = ini.get(INIT, key).map_err(ini_err)?.unwrap_or_default();
            if !key.starts_with("known/") {
                init.insert(format!("known/{key}"), v.clone());
            }
            init.entry(key.clone()).or_insert(v);
        }
    }
    combined.extend(init);
    let lookup = |name: &str| -> Option<String> {
        // Like fail2ban's getCombOption: a failed lookup leaves the tag as it is.
        ini.get_ex(DEFINITION, name, &vars).ok().flatten()
    };
    tags::substitute_recursive(&mut combined, &lookup).map_err(|e| Fail2banError::Option {
        file: file.clone(),
        section: DEFINITION,
        key: e.option.clone(),
        message: e.to_string(),
    })?;

    let opt_err = |key: &str, message: String| Fail2banError::Option {
        file: file.clone(),
        section: DEFINITION,
        key: key.to_string(),
        message,
    };
    let use_dns = combined
        .get("usedns")
        .is_none_or(|v| !v.trim().eq_ignore_ascii_case("no"));
    let maxlines = match combined.get("maxlines").map(|v| v.trim()) {
        None | Some("") => 1,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| opt_err("maxlines", format!("{v:?} is not a number from 1 to 1000")))?,
    };
    let flags = Flags {
        multiline: maxlines > 1,
        ignore_case: false,
    };
    let compile_list = |key: &'static str| -> Result<Vec<PyRegex>, Fail2banError> {
        let Some(value) = combined.get(key) else {
            return Ok(Vec::new());
        };
        value
            .split('\n')
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(index, line)| {
                PyRegex::new(&tags::expand_regex_tags(line, use_dns), flags).map_err(|cause| {
                    Fail2banError::Regex {
                        file: file.clone(),
                        key,
                        index,
                        cause,
                    }
                })
            })
            .collect()
    };
    let failregex = compile_list("failregex")?;
    if failregex.is_empty() {
        return Err(opt_err("failregex", "no regex defined".into()));
    }
    let ignoreregex = compile_list("ignoreregex")?;
    let prefregex = compile_list("prefregex")?.into_iter().next();

    let logtype = vars
        .get("logtype")
        .cloned()
        .or_else(|| lookup("logtype"))
        .unwrap_or_else(|| "file".into());
    let logtype = match logtype.trim().to_lowercase().as_str() {
        "file" => LogType::File,
        "journal" => LogType::Journal,
        "short" => LogType::Short,
        "rfc5424" => LogType::Rfc5424,
        other => LogType::Other(other.to_string()),
    };
    let dates = match combined.get("datepattern") {
        Some(p) if !p.trim().is_empty() => {
            let lines: Vec<String> = p.split('\n').map(str::to_string).collect();
            DateDetector::from_patterns(&lines)
        }
        _ => DateDetector::default_templates(),
    }
    .map_err(|cause| Fail2banError::Date {
        file: file.clone(),
        cause,
    })?;
    let journalmatch = combined
        .get("journalmatch")
        .map(|v| parse_journalmatch(v))
        .unwrap_or_default();
    let daemon = lookup("_daemon");
    let programs = daemon.as_deref().and_then(literal_alternatives);
    Ok(Fail2banFilter {
        path: spec.path.clone(),
        prefregex,
        failset: Prefilter::new(&failregex),
        failregex,
        ignoreregex,
        maxlines,
        dates,
        logtype,
        journalmatch,
        programs,
        daemon,
    })
}

/// `_SYSTEMD_UNIT=demo.service + _COMM=demod`: groups of field matches joined by `+` (OR).
fn parse_journalmatch(value: &str) -> Vec<Vec<String>> {
    let mut groups = vec![Vec::new()];
    for word in value.split_whitespace() {
        if word == "+" {
            groups.push(Vec::new());
        } else if let Some(last) = groups.last_mut() {
            last.push(word.to_string());
        }
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// The finite set of program names a `_daemon` regex matches (`demod(?:-auth)?` → demod,
/// demod-auth), or None when it matches open-ended names (`\S*`).
fn literal_alternatives(daemon: &str) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let translated = pyre::translate(daemon.trim());
    if translated.needs_backtracking {
        return None;
    }
    let hir = regex_syntax::Parser::new()
        .parse(&translated.pattern)
        .ok()?;
    let mut extractor = Extractor::new();
    extractor.kind(ExtractKind::Prefix).limit_total(256);
    let seq = extractor.extract(&hir);
    if !seq.is_exact() {
        return None;
    }
    let literals = seq.literals()?;
    let mut names: Vec<String> = literals
        .iter()
        .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    (!names.is_empty()).then_some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parsing() {
        let s =
            FilterSpec::parse(r#"/x/sshd.conf[mode=aggressive, a="b,c", B='d e', e=]"#).unwrap();
        assert_eq!(s.path, PathBuf::from("/x/sshd.conf"));
        assert_eq!(
            s.options,
            vec![
                ("mode".into(), "aggressive".into()),
                ("a".into(), "b,c".into()),
                ("b".into(), "d e".into()),
                ("e".into(), "".into()),
            ]
        );
        assert!(FilterSpec::parse("x.conf").unwrap().options.is_empty());
        assert!(FilterSpec::parse("x.conf[mode=a").is_err());
        assert!(FilterSpec::parse("x.conf[mode]").is_err());
        assert!(FilterSpec::parse(r#"x.conf[a="b]"#).is_err());
    }

    #[test]
    fn programs_from_daemon() {
        assert_eq!(
            literal_alternatives(r"demod(?:-auth)?"),
            Some(vec!["demod".into(), "demod-auth".into()])
        );
        assert_eq!(literal_alternatives(r"\S*"), None);
        assert_eq!(
            parse_journalmatch("_SYSTEMD_UNIT=a.service + _COMM=a _X=1"),
            vec![
                vec!["_SYSTEMD_UNIT=a.service".to_string()],
                vec!["_COMM=a".into(), "_X=1".into()]
            ]
        );
    }

    fn write_filter(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn load_resolves_options_tags_and_init() {
        let dir = tempfile::tempdir().unwrap();
        write_filter(
            dir.path(),
            "common.conf",
            "[DEFAULT]\n_daemon = \\S*\n_lead_in = \\s*\\S+ %(_daemon)s(?:\\[\\d+\\])?:\\s+\n",
        );
        let p = write_filter(
            dir.path(),
            "demo.conf",
            "[INCLUDES]\nbefore = common.conf\n[DEFAULT]\n_daemon = demo\n[Definition]\nfailregex = ^%(_lead_in)sbad <what> from <HOST>$\n            <extra-<mode>>\nextra-normal =\nextra-more = ^%(_lead_in)sworse user <F-USER>\\S+</F-USER> at <HOST>\nmode = normal\nignoreregex = from 10\\.\n[Init]\nwhat = login\n",
        );
        let f = load(&FilterSpec::parse(&p.display().to_string()).unwrap()).unwrap();
        assert_eq!(f.failregex_count(), 1);
        assert_eq!(f.programs(), Some(&["demo".to_string()][..]));
        assert!(f.backtracking_regexes().is_empty());
        let spec = format!("{}[mode=more, what=attempt]", p.display());
        let f = load(&FilterSpec::parse(&spec).unwrap()).unwrap();
        assert_eq!(f.failregex_count(), 2);
        assert!(f.failregex_source(0).unwrap().contains("bad attempt from"));
        let mut m = Fail2banMatcher::new(std::sync::Arc::new(f));
        let out = m.file_line("Jan 23 21:59:59 h demo[1]: worse user bob at 192.0.2.7");
        assert!(out.matched);
        assert_eq!(out.host.as_deref(), Some("192.0.2.7"));
        assert_eq!(out.user.as_deref(), Some("bob"));
        let out = m.file_line("Jan 23 21:59:59 h demo[1]: bad attempt from 10.0.0.1");
        assert!(out.ignored && !out.matched);
    }

    #[test]
    fn load_errors_name_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_filter(dir.path(), "a.conf", "[Definition]\nfailregex = ^(<HOST>\n");
        let e = load(&FilterSpec::parse(&p.display().to_string()).unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("a.conf: [Definition] failregex[0]"),
            "{e}"
        );
        let p = write_filter(dir.path(), "b.conf", "[Definition]\nfailregex = %(nope)s\n");
        let e = load(&FilterSpec::parse(&p.display().to_string()).unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("b.conf") && e.to_string().contains("nope"),
            "{e}"
        );
        let p = write_filter(dir.path(), "c.conf", "[Init]\nx = 1\n");
        assert!(matches!(
            load(&FilterSpec::parse(&p.display().to_string()).unwrap()),
            Err(Fail2banError::NoDefinition { .. })
        ));
        let p = write_filter(
            dir.path(),
            "d.conf",
            "[Definition]\nfailregex = <HOST>\nmaxlines = lots\n",
        );
        let e = load(&FilterSpec::parse(&p.display().to_string()).unwrap()).unwrap_err();
        assert!(
            e.to_string().contains("d.conf: [Definition] maxlines"),
            "{e}"
        );
    }
}
