//! fail2ban's INI dialect: the file format of `filter.d/*.conf`, `jail.conf` and `jail.local`.
//!
//! Owns reading (Python `configparser` rules: `key = value` / `key: value`, indented
//! continuation lines, `#`/`;` comments, inline `;` comments after whitespace, `[DEFAULT]`),
//! includes (`[INCLUDES] before/after`, relative to the including file, and a `.local` beside
//! every `.conf`, read after it), and `%(name)s` interpolation with fail2ban's extensions
//! (`%(section/name)s`, `%(known/name)s`, `%(default/name)s`). It knows nothing of filters,
//! regexes or `<tag>` substitution; those belong to the rest of `fail2ban`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The section whose options every other section inherits.
pub const DEFAULT_SECTION: &str = "DEFAULT";
/// The section holding `before` / `after` include lists.
pub const INCLUDES_SECTION: &str = "INCLUDES";

/// Python's configparser stops after this many nested interpolations.
const MAX_INTERPOLATION_DEPTH: usize = 10;
/// Longest value an interpolation may expand to.
const MAX_EXPANDED: usize = 1024 * 1024;
/// Includes deeper than this are a loop or a mistake.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Errors of reading or interpolating a fail2ban INI file.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IniError {
    /// The file cannot be read.
    #[error("{file}: cannot read: {message}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The OS error.
        message: String,
    },
    /// A line outside any section, or a line that is neither a section, option nor comment.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// `%(name)s` names an option that does not exist.
    #[error("[{section}] {key}: %({name})s refers to an option that is not defined")]
    MissingOption {
        /// Section being read.
        section: String,
        /// Option being read.
        key: String,
        /// The missing name.
        name: String,
    },
    /// A bad `%` sequence, or interpolation nested too deeply (a loop).
    #[error("[{section}] {key}: {message}")]
    Interpolation {
        /// Section being read.
        section: String,
        /// Option being read.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The includes nest too deeply (a cycle through different names).
    #[error("{file}: includes nest deeper than {MAX_INCLUDE_DEPTH} levels")]
    IncludeDepth {
        /// The file at which the limit was hit.
        file: PathBuf,
    },
}

/// One section's options, in file order of first definition.
pub type Options = BTreeMap<String, String>;

/// A parsed single file: its sections in order, DEFAULT kept apart.
#[derive(Debug, Default, Clone)]
struct RawFile {
    defaults: Options,
    sections: Vec<(String, Options)>,
}

/// A set of fail2ban INI files merged the way fail2ban merges them (includes first, then the
/// file, then its `after` includes, then its `.local`).
#[derive(Debug, Default, Clone)]
pub struct Ini {
    defaults: Options,
    sections: BTreeMap<String, Options>,
    /// Section order of first appearance (for callers that list jails).
    order: Vec<String>,
    /// Previous values of options that a later file overrode, per section: what
    /// `%(known/name)s` refers to.
    known: HashMap<String, Options>,
    files: Vec<PathBuf>,
}

impl Ini {
    /// Reads `path` with its includes and `.local` overrides.
    pub fn load(path: &Path) -> Result<Self, IniError> {
        let mut ini = Ini::default();
        let mut chain = Vec::new();
        ini.collect(path, 0, &mut chain)?;
        for file in chain {
            let raw = parse_file(&file)?;
            ini.merge(raw);
            ini.files.push(file);
        }
        Ok(ini)
    }

    /// Reads several files in order, each with its includes and `.local`, later ones
    /// overriding earlier ones (fail2ban's `jail.conf`, `jail.d/*.conf`, `jail.local`,
    /// `jail.d/*.local`). Missing files after the first are skipped.
    pub fn load_all(paths: &[PathBuf]) -> Result<Self, IniError> {
        let mut ini = Ini::default();
        let mut chain = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            if i > 0 && !path.is_file() {
                continue;
            }
            ini.collect(path, 0, &mut chain)?;
        }
        for file in chain {
            let raw = parse_file(&file)?;
            ini.merge(raw);
            ini.files.push(file);
        }
        Ok(ini)
    }

    /// Parses INI text (no includes are followed): for tests and for in-memory sources.
    pub fn parse_str(text: &str, name: &Path) -> Result<Self, IniError> {
        let mut ini = Ini::default();
        ini.merge(parse_text(text, name)?);
        Ok(ini)
    }

    /// Merges another file's content over this one (what `.local` files do).
    pub fn merge_str(&mut self, text: &str, name: &Path) -> Result<(), IniError> {
        self.merge(parse_text(text, name)?);
        Ok(())
    }

    /// The files that were read, in merge order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Section names (DEFAULT excluded) in order of first appearance.
    pub fn sections(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    /// Whether a section exists (DEFAULT always does).
    pub fn has_section(&self, section: &str) -> bool {
        section == DEFAULT_SECTION || self.sections.contains_key(section)
    }

    /// The DEFAULT section's raw options.
    pub fn defaults(&self) -> &Options {
        &self.defaults
    }

    /// A section's own raw options (without DEFAULT).
    pub fn section(&self, section: &str) -> Option<&Options> {
        if section == DEFAULT_SECTION {
            return Some(&self.defaults);
        }
        self.sections.get(section)
    }

    /// Option names visible in a section: its own and DEFAULT's.
    pub fn options(&self, section: &str) -> Vec<String> {
        let mut names: Vec<String> = self.defaults.keys().cloned().collect();
        if let Some(own) = self.sections.get(section) {
            names.extend(own.keys().cloned());
        }
        names.sort();
        names.dedup();
        names
    }

    /// The raw (uninterpolated) value: vars, then the section, then DEFAULT.
    pub fn get_raw<'a>(&'a self, section: &str, key: &str, vars: &'a Options) -> Option<&'a str> {
        let key = key.to_lowercase();
        vars.get(&key)
            .or_else(|| self.sections.get(section).and_then(|s| s.get(&key)))
            .or_else(|| self.defaults.get(&key))
            .map(String::as_str)
    }

    /// The interpolated value of `key` in `section`, or `None` when it is not defined.
    pub fn get(&self, section: &str, key: &str) -> Result<Option<String>, IniError> {
        self.get_with(section, key, &Options::new())
    }

    /// Like [`Ini::get`], with `vars` taking precedence over the file (as Python's
    /// `get(section, option, vars=...)`): fail2ban passes `filter[name=value]` options this way.
    pub fn get_with(
        &self,
        section: &str,
        key: &str,
        vars: &Options,
    ) -> Result<Option<String>, IniError> {
        let Some(raw) = self.get_raw(section, key, vars) else {
            return Ok(None);
        };
        self.interpolate(section, key, raw, vars, 0).map(Some)
    }

    /// Like [`Ini::get_with`], but `key` may name another section as `section/key`,
    /// `known/key` (the value before the last override) or `default/key`, as fail2ban's
    /// `get_ex` does for `<section/key>` tags.
    pub fn get_ex(
        &self,
        section: &str,
        key: &str,
        vars: &Options,
    ) -> Result<Option<String>, IniError> {
        if let Some((sec, opt)) = split_section_key(key) {
            let candidates: Vec<String> = match sec.to_lowercase().as_str() {
                "known" => vec![format!("KNOWN/{section}"), section.to_string()],
                "default" => vec![DEFAULT_SECTION.to_string()],
                _ => vec![sec.to_string()],
            };
            for candidate in candidates {
                if let Some(v) = self.lookup_in(&candidate, opt) {
                    return self
                        .interpolate(&candidate, opt, v, &Options::new(), 0)
                        .map(Some);
                }
            }
        }
        self.get_with(section, key, vars)
    }

    /// Raw value of `key` in `section` (or in the saved "known" values), no vars.
    fn lookup_in(&self, section: &str, key: &str) -> Option<&str> {
        let key = key.to_lowercase();
        if let Some(sec) = section.strip_prefix("KNOWN/") {
            return self
                .known
                .get(sec)
                .and_then(|s| s.get(&key))
                .map(String::as_str);
        }
        if section == DEFAULT_SECTION {
            return self.defaults.get(&key).map(String::as_str);
        }
        let own = self.sections.get(section)?;
        own.get(&key)
            .or_else(|| self.defaults.get(&key))
            .map(String::as_str)
    }

    /// Expands `%(name)s` and `%%` in `value`, read in the context of `section`.
    fn interpolate(
        &self,
        section: &str,
        key: &str,
        value: &str,
        vars: &Options,
        depth: usize,
    ) -> Result<String, IniError> {
        if !value.contains('%') {
            return Ok(value.to_string());
        }
        if depth > MAX_INTERPOLATION_DEPTH {
            return Err(IniError::Interpolation {
                section: section.into(),
                key: key.into(),
                message: format!(
                    "interpolation nests deeper than {MAX_INTERPOLATION_DEPTH} levels (a loop?)"
                ),
            });
        }
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some((before, from)) = rest.find('%').and_then(|pos| rest.split_at_checked(pos)) {
            out.push_str(before);
            rest = from;
            if let Some(after) = rest.strip_prefix("%%") {
                out.push('%');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("%(") {
                let Some((name, tail)) = after.split_once(")s") else {
                    return Err(IniError::Interpolation {
                        section: section.into(),
                        key: key.into(),
                        message: format!("bad interpolation syntax in {value:?}"),
                    });
                };
                rest = tail;
                // `%(__name__)s` is the section's own name (jail.conf builds action
                // arguments with it).
                let raw = if name.trim() == "__name__" {
                    section
                } else {
                    self.resolve_name(section, name, vars).ok_or_else(|| {
                        IniError::MissingOption {
                            section: section.into(),
                            key: key.into(),
                            name: name.into(),
                        }
                    })?
                };
                // Referenced values are expanded in the referencing section's context: that
                // late binding is how common.conf's DEFAULT values pick up each filter's
                // `_daemon`.
                out.push_str(&self.interpolate(section, key, raw, vars, depth + 1)?);
                // Ten levels of eight references each would expand to gigabytes.
                if out.len() > MAX_EXPANDED {
                    return Err(IniError::Interpolation {
                        section: section.into(),
                        key: key.into(),
                        message: format!(
                            "expands past {} KiB (references that fan out?)",
                            MAX_EXPANDED / 1024
                        ),
                    });
                }
            } else {
                return Err(IniError::Interpolation {
                    section: section.into(),
                    key: key.into(),
                    message: format!("'%' must be followed by '%' or '(' in {value:?}"),
                });
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The raw value a `%(name)s` reference stands for.
    fn resolve_name<'a>(&'a self, section: &str, name: &str, vars: &'a Options) -> Option<&'a str> {
        let lname = name.trim().to_lowercase();
        if let Some(v) = vars.get(&lname) {
            return Some(v);
        }
        if let Some((sec, opt)) = split_section_key(name.trim()) {
            let opt = opt.to_lowercase();
            let found = match sec.to_lowercase().as_str() {
                "known" => self
                    .known
                    .get(section)
                    .and_then(|s| s.get(&opt))
                    .or_else(|| self.defaults.get(&opt)),
                "default" => self.defaults.get(&opt),
                _ => self
                    .sections
                    .get(sec)
                    .and_then(|s| s.get(&opt))
                    .or_else(|| self.defaults.get(&opt)),
            };
            if found.is_some() {
                return found.map(String::as_str);
            }
        }
        self.sections
            .get(section)
            .and_then(|s| s.get(&lname))
            .or_else(|| self.defaults.get(&lname))
            .map(String::as_str)
    }

    /// Lists `path`, its includes and `.local` files in reading order.
    fn collect(&self, path: &Path, depth: usize, chain: &mut Vec<PathBuf>) -> Result<(), IniError> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(IniError::IncludeDepth { file: path.into() });
        }
        let mut files = vec![path.to_path_buf()];
        if path.extension().is_some_and(|e| e == "conf") {
            let local = path.with_extension("local");
            if local.is_file() {
                files.push(local);
            }
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for (i, file) in files.into_iter().enumerate() {
            if chain.contains(&file) {
                continue;
            }
            // The main file must exist; includes and .local files are optional.
            if i > 0 && !file.is_file() {
                continue;
            }
            let raw = parse_file(&file)?;
            let includes = raw
                .sections
                .iter()
                .rev()
                .find(|(name, _)| name == INCLUDES_SECTION)
                .map(|(_, opts)| opts.clone())
                .unwrap_or_default();
            let list = |key: &str| -> Vec<PathBuf> {
                includes
                    .get(key)
                    .map(|v| {
                        v.split('\n')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(|s| dir.join(s))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for before in list("before") {
                if before.is_file() {
                    self.collect(&before, depth + 1, chain)?;
                }
            }
            if !chain.contains(&file) {
                chain.push(file.clone());
            }
            for after in list("after") {
                if after.is_file() {
                    self.collect(&after, depth + 1, chain)?;
                }
            }
        }
        Ok(())
    }

    /// Overlays one file: DEFAULT options update DEFAULT; a section's options update the
    /// section, saving the values they replace as the section's "known" values.
    fn merge(&mut self, raw: RawFile) {
        self.defaults.extend(raw.defaults);
        for (name, opts) in raw.sections {
            match self.sections.get_mut(&name) {
                Some(existing) => {
                    let known = self.known.entry(name.clone()).or_default();
                    for (k, v) in opts {
                        if let Some(old) = existing.insert(k.clone(), v) {
                            known.insert(k, old);
                        }
                    }
                }
                None => {
                    self.order.push(name.clone());
                    self.sections.insert(name, opts);
                }
            }
        }
    }
}

/// `section/key` split, as fail2ban's `SECTION_OPTNAME_CRE` (`^([\w\-]+)/([^\s>]+)$`).
fn split_section_key(name: &str) -> Option<(&str, &str)> {
    let (sec, opt) = name.split_once('/')?;
    let sec_ok = !sec.is_empty()
        && sec
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
    let opt_ok = !opt.is_empty() && !opt.chars().any(|c| c.is_whitespace() || c == '>');
    (sec_ok && opt_ok).then_some((sec, opt))
}

fn parse_file(path: &Path) -> Result<RawFile, IniError> {
    let bytes = std::fs::read(path).map_err(|e| IniError::Io {
        file: path.into(),
        message: e.to_string(),
    })?;
    // fail2ban reads as UTF-8; a stray byte in a comment must not make a filter unusable.
    let text = String::from_utf8_lossy(&bytes);
    parse_text(&text, path)
}

/// Python configparser's `_read`, with `inline_comment_prefixes=(';',)` as fail2ban sets it.
fn parse_text(text: &str, file: &Path) -> Result<RawFile, IniError> {
    let mut raw = RawFile::default();
    // Current target: None before any section; Some(None) is DEFAULT; Some(Some(i)) a section.
    let mut current: Option<Option<usize>> = None;
    let mut option: Option<String> = None;
    let mut indent_level = usize::MAX;
    // Multi-line values are collected as lines and joined at the end of the file.
    let mut pending: Vec<(Option<usize>, String, Vec<String>)> = Vec::new();
    let mut pending_index: Option<usize> = None;

    for (lineno, line) in text.lines().enumerate() {
        let lineno = lineno + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut comment_start = None;
        // Inline comments: ';' at the start or after whitespace.
        let mut search = 0;
        while let Some(i) = line.get(search..).and_then(|rest| rest.find(';')) {
            let at = search + i;
            if at == 0
                || line
                    .get(..at)
                    .is_some_and(|before| before.ends_with(char::is_whitespace))
            {
                comment_start = Some(at);
                break;
            }
            search = at + 1;
        }
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            comment_start = Some(0);
        }
        let value = match comment_start {
            Some(at) => line.get(..at).unwrap_or_default().trim(),
            None => trimmed,
        };
        if value.is_empty() {
            // An empty line inside a value is kept (configparser's empty_lines_in_values);
            // a comment line is not.
            if comment_start.is_none() && option.is_some() {
                if let Some(p) = pending_index.and_then(|i| pending.get_mut(i)) {
                    p.2.push(String::new());
                }
            }
            continue;
        }
        let cur_indent = line.len() - line.trim_start().len();
        if current.is_some() && option.is_some() && cur_indent > indent_level {
            if let Some(p) = pending_index.and_then(|i| pending.get_mut(i)) {
                p.2.push(value.to_string());
            }
            continue;
        }
        indent_level = cur_indent;
        if let Some(header) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            if header == DEFAULT_SECTION {
                current = Some(None);
            } else {
                let idx = match raw.sections.iter().position(|(n, _)| n == header) {
                    Some(i) => i,
                    None => {
                        raw.sections.push((header.to_string(), Options::new()));
                        raw.sections.len() - 1
                    }
                };
                current = Some(Some(idx));
            }
            option = None;
            continue;
        }
        let Some(target) = current else {
            return Err(IniError::Syntax {
                file: file.into(),
                line: lineno,
                message: "option outside any [section]".into(),
            });
        };
        let delim = value.find(['=', ':']);
        let Some(delim) = delim else {
            return Err(IniError::Syntax {
                file: file.into(),
                line: lineno,
                message: format!("expected 'key = value', found {value:?}"),
            });
        };
        // The delimiter is ASCII: both sides start on a character boundary.
        let (key, delimited) = value.split_at_checked(delim).unwrap_or((value, ""));
        let key = key.trim().to_lowercase();
        if key.is_empty() {
            return Err(IniError::Syntax {
                file: file.into(),
                line: lineno,
                message: "option without a name".into(),
            });
        }
        let first = delimited.get(1..).unwrap_or_default().trim().to_string();
        // A repeated key replaces the earlier one (fail2ban reads non-strict).
        pending.retain(|(t, k, _)| !(*t == target && *k == key));
        pending.push((target, key.clone(), vec![first]));
        pending_index = Some(pending.len() - 1);
        option = Some(key);
    }
    for (target, key, lines) in pending {
        let joined = lines.join("\n").trim_end().to_string();
        match target {
            None => {
                raw.defaults.insert(key, joined);
            }
            Some(i) => {
                if let Some((_, opts)) = raw.sections.get_mut(i) {
                    opts.insert(key, joined);
                }
            }
        }
    }
    Ok(raw)
}

#[cfg(test)]
mod tests;
