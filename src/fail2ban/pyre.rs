//! Python `re` patterns for Rust: syntax translation and the choice of engine.
//!
//! Owns the differences between Python's regex dialect and Rust's (`\Z`, literal `{`, `[` in
//! classes, `\<`, superfluous escapes, `(?#...)`, global flags in mid-pattern) and the rule
//! that patterns needing look-around, back-references or conditionals run on `fancy-regex`
//! with a backtracking limit while all others run on the linear-time `regex` crate. It knows
//! nothing about fail2ban tags.
//!
//! Classes need no translation: Python 3 `str` patterns and Rust's are both Unicode-aware
//! (`\d` is any decimal digit, `\w` any letter, digit or `_`, `\b` between those and the
//! rest); the remaining difference (Python's `\s` also takes the ASCII separators
//! `\x1c`-`\x1f`) does not occur in log text that matters.

use std::sync::Arc;

use thiserror::Error;

/// Steps a backtracking match may take before it gives up (and counts as no match): bounds the
/// time a hostile line can cost on a filter that needs the backtracking engine.
pub const BACKTRACK_LIMIT: usize = 200_000;

/// A pattern that neither engine accepts.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid regex {pattern:?}: {message}")]
pub struct PyRegexError {
    /// The translated pattern.
    pub pattern: String,
    /// The engine's explanation.
    pub message: String,
}

/// Which engine runs a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// The linear-time `regex` crate.
    Linear,
    /// `fancy-regex` (backtracking, bounded by [`BACKTRACK_LIMIT`]).
    Backtracking,
}

/// A compiled Python pattern.
#[derive(Debug, Clone)]
pub struct PyRegex {
    inner: Inner,
    source: String,
    /// A pattern for the linear engine that matches every text this one matches (the pattern
    /// itself when it is linear): what a [`Prefilter`] runs.
    superset: String,
    /// Named groups by index, resolved once (a match then shares the names, no new strings).
    names: Vec<(usize, Arc<str>)>,
}

#[derive(Debug, Clone)]
enum Inner {
    Linear(regex::Regex),
    Backtracking(fancy_regex::Regex),
}

/// One match: named group values and the overall span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PyMatch {
    /// Byte range of the whole match.
    pub start: usize,
    /// End of the whole match.
    pub end: usize,
    /// Named groups; `None` for groups that did not take part.
    pub groups: Groups,
    /// Spans of numbered groups (index 0 is the whole match).
    pub spans: Vec<Option<(usize, usize)>>,
}

/// Compile options.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    /// `re.MULTILINE`: `^`/`$` at line breaks.
    pub multiline: bool,
    /// `re.IGNORECASE`.
    pub ignore_case: bool,
}

impl PyRegex {
    /// Translates and compiles a Python pattern.
    pub fn new(pattern: &str, flags: Flags) -> Result<Self, PyRegexError> {
        let translated = translate(pattern);
        let mut prefix = String::new();
        if flags.multiline {
            prefix.push('m');
        }
        if flags.ignore_case {
            prefix.push('i');
        }
        let full = if prefix.is_empty() {
            translated.pattern
        } else {
            format!("(?{prefix}){}", translated.pattern)
        };
        let superset = if translated.needs_backtracking {
            relax(&full)
        } else {
            full.clone()
        };
        let inner = if translated.needs_backtracking {
            Inner::Backtracking(
                fancy_regex::RegexBuilder::new(&full)
                    .backtrack_limit(BACKTRACK_LIMIT)
                    .build()
                    .map_err(|e| PyRegexError {
                        pattern: full.clone(),
                        message: e.to_string(),
                    })?,
            )
        } else {
            Inner::Linear(
                regex::RegexBuilder::new(&full)
                    .size_limit(64 << 20)
                    .build()
                    .map_err(|e| PyRegexError {
                        pattern: full.clone(),
                        message: e.to_string(),
                    })?,
            )
        };
        let names = match &inner {
            Inner::Linear(re) => index_names(re.capture_names()),
            Inner::Backtracking(re) => index_names(re.capture_names()),
        };
        Ok(PyRegex {
            inner,
            source: pattern.to_string(),
            superset,
            names,
        })
    }

    /// The Python source pattern.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Which engine runs it.
    pub fn engine(&self) -> Engine {
        match self.inner {
            Inner::Linear(_) => Engine::Linear,
            Inner::Backtracking(_) => Engine::Backtracking,
        }
    }

    /// Python's `search`: the leftmost match anywhere in `text`. A backtracking pattern that
    /// hits its limit counts as no match.
    pub fn search(&self, text: &str) -> Option<PyMatch> {
        self.search_at(text, 0)
    }

    /// `search` starting at byte offset `start`.
    pub fn search_at(&self, text: &str, start: usize) -> Option<PyMatch> {
        let group = |span: Option<(usize, usize)>| {
            span.and_then(|(s, e)| text.get(s..e)).map(str::to_string)
        };
        let (spans, groups): (Vec<Option<(usize, usize)>>, Groups) = match &self.inner {
            Inner::Linear(re) => {
                let caps = re.captures_at(text, start)?;
                let spans: Vec<_> = caps
                    .iter()
                    .map(|m| m.map(|m| (m.start(), m.end())))
                    .collect();
                let groups = self.groups_from(&spans, group);
                (spans, groups)
            }
            Inner::Backtracking(re) => {
                let caps = re.captures_from_pos(text, start).ok()??;
                let spans: Vec<_> = caps
                    .iter()
                    .map(|m| m.map(|m| (m.start(), m.end())))
                    .collect();
                let groups = self.groups_from(&spans, group);
                (spans, groups)
            }
        };
        let (start, end) = spans.first().copied().flatten()?;
        Some(PyMatch {
            start,
            end,
            groups,
            spans,
        })
    }

    fn groups_from(
        &self,
        spans: &[Option<(usize, usize)>],
        group: impl Fn(Option<(usize, usize)>) -> Option<String>,
    ) -> Groups {
        Groups(
            self.names
                .iter()
                .map(|(i, name)| (Arc::clone(name), group(spans.get(*i).copied().flatten())))
                .collect(),
        )
    }

    /// Whether it matches anywhere.
    pub fn is_match(&self, text: &str) -> bool {
        match &self.inner {
            Inner::Linear(re) => re.is_match(text),
            Inner::Backtracking(re) => re.is_match(text).unwrap_or(false),
        }
    }
}

/// `(index, name)` of the named groups.
fn index_names<'a>(names: impl Iterator<Item = Option<&'a str>>) -> Vec<(usize, Arc<str>)> {
    names
        .enumerate()
        .filter_map(|(i, n)| Some((i, Arc::from(n?))))
        .collect()
}

/// Named group values in pattern order. A pattern has a dozen named groups at most, so a
/// vector searched in order beats a hash map (no hashing, one allocation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups(Vec<(Arc<str>, Option<String>)>);

impl Groups {
    /// The entry of `name`: `Some(None)` when the group did not take part.
    pub fn get(&self, name: &str) -> Option<&Option<String>> {
        self.0.iter().find(|(k, _)| &**k == name).map(|(_, v)| v)
    }

    /// The value of `name` if it took part.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.as_deref())
    }

    /// Whether `name` has an entry.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` (replacing its entry if it has one).
    pub fn insert(&mut self, name: Arc<str>, value: Option<String>) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }

    /// Takes the entry of `name` out.
    pub fn remove(&mut self, name: &str) -> Option<Option<String>> {
        let at = self.0.iter().position(|(k, _)| &**k == name)?;
        Some(self.0.remove(at).1)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Option<String>)> {
        self.0.iter().map(|(k, v)| (&**k, v))
    }
}

impl IntoIterator for Groups {
    type Item = (Arc<str>, Option<String>);
    type IntoIter = std::vec::IntoIter<(Arc<str>, Option<String>)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Which patterns of a list can match a text, found in one pass of the linear engine over all
/// of them, so that only those run in turn (with captures) and keep their order.
///
/// For linear patterns the answer is exact. A backtracking pattern is represented by a linear
/// superset of it (see [`relax`]): "no" is certain, "yes" needs the pattern itself. A pattern
/// whose superset does not compile is always a candidate, and so is every pattern when the set
/// as a whole exceeds the engine's size limit.
#[derive(Debug, Clone)]
pub struct Prefilter {
    /// Slot `i` holds pattern `i` (or an empty pattern, which matches everything).
    set: Option<regex::RegexSet>,
}

/// The answer of [`Prefilter::candidates`].
#[derive(Debug, Clone)]
pub struct Candidates(Option<regex::SetMatches>);

impl Candidates {
    /// Whether pattern `index` can match.
    pub fn may_match(&self, index: usize) -> bool {
        self.0.as_ref().is_none_or(|m| m.matched(index))
    }
}

impl Prefilter {
    /// A prefilter over `patterns` (in their order).
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a PyRegex>) -> Self {
        let mut supersets: Vec<&str> = patterns.into_iter().map(|p| p.superset.as_str()).collect();
        if supersets.len() < 2 {
            // One pattern: the set would cost a pass of its own for nothing.
            return Prefilter { set: None };
        }
        // The lazy DFA of a set of a few dozen fail2ban patterns needs more than the default
        // 2 MiB cache, or the engine gives up on it for the (much slower) PikeVM; 8 MiB is as
        // fast as any larger size on sshd.conf and bounds the memory per thread.
        let build = |supersets: &[&str]| {
            regex::RegexSetBuilder::new(supersets)
                .size_limit(64 << 20)
                .dfa_size_limit(8 << 20)
                .build()
        };
        if build(&supersets).is_err() {
            // Find the patterns at fault; they stay out (always candidates).
            for s in supersets.iter_mut() {
                if regex::RegexBuilder::new(s)
                    .size_limit(64 << 20)
                    .build()
                    .is_err()
                {
                    *s = "";
                }
            }
        }
        Prefilter {
            set: build(&supersets).ok(),
        }
    }

    /// The patterns that can match `text`.
    pub fn candidates(&self, text: &str) -> Candidates {
        Candidates(self.set.as_ref().map(|set| set.matches(text)))
    }
}

/// A linear pattern matching a superset of what the translated backtracking pattern `p`
/// matches: look-around assertions become empty groups, back-references become `(?s:.*)`,
/// conditionals `(?(c)yes|no)` become `(?:yes|no)?` and atomic groups plain groups. Each of
/// these only widens the language, so a text the result rejects cannot match `p`.
pub fn relax(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let mut out = String::with_capacity(p.len());
    // Per open group: what closes it in `out`, and whether it started a dropped stretch.
    let mut closers: Vec<(&'static str, bool)> = Vec::new();
    let mut dropping = false;
    let mut i = 0;
    let emit = |out: &mut String, dropping: bool, s: &str| {
        if !dropping {
            out.push_str(s);
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let rest = |n: usize| -> String { chars[i..].iter().take(n).collect() };
        match c {
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    emit(&mut out, dropping, r"\\");
                    i += 1;
                    continue;
                };
                if n.is_ascii_digit() && n != '0' {
                    // A back-reference (all its digits).
                    emit(&mut out, dropping, "(?s:.*)");
                    i += 2;
                    while chars.get(i).is_some_and(char::is_ascii_digit) {
                        i += 1;
                    }
                } else {
                    let mut s = String::from('\\');
                    s.push(n);
                    emit(&mut out, dropping, &s);
                    i += 2;
                }
            }
            '[' => {
                // Copied whole: `(`, `)` and `\1` in a class are not syntax.
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != ']' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i = (i + 1).min(chars.len());
                let class: String = chars[start..i].iter().collect();
                emit(&mut out, dropping, &class);
            }
            '(' => {
                let head = rest(4);
                let lookaround = head.starts_with("(?=")
                    || head.starts_with("(?!")
                    || head.starts_with("(?<=")
                    || head.starts_with("(?<!");
                if lookaround || head.starts_with("(?P=") {
                    // A group of its own, so that a quantifier after it still applies to it.
                    emit(
                        &mut out,
                        dropping,
                        if lookaround { "(?:)" } else { "(?s:.*)" },
                    );
                    closers.push(("", !dropping));
                    dropping = true;
                    i += 3;
                } else if head.starts_with("(?(") {
                    // Skip the condition `(?(name)` / `(?(<name>)`.
                    let close = chars[i + 3..].iter().position(|&c| c == ')');
                    emit(&mut out, dropping, "(?:");
                    closers.push((")?", false));
                    i += 3 + close.map_or(chars.len(), |p| p + 1);
                } else if head.starts_with("(?>") {
                    emit(&mut out, dropping, "(?:");
                    closers.push((")", false));
                    i += 3;
                } else {
                    emit(&mut out, dropping, "(");
                    closers.push((")", false));
                    i += 1;
                }
            }
            ')' => {
                let (close, ends_drop) = closers.pop().unwrap_or((")", false));
                emit(&mut out, dropping, close);
                if ends_drop {
                    dropping = false;
                }
                i += 1;
            }
            _ => {
                emit(&mut out, dropping, c.encode_utf8(&mut [0; 4]));
                i += 1;
            }
        }
    }
    out
}

/// The result of translating a Python pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// Pattern text for the Rust engines.
    pub pattern: String,
    /// It uses look-around, back-references or conditionals.
    pub needs_backtracking: bool,
}

/// Rewrites Python syntax that Rust reads differently or rejects.
pub fn translate(py: &str) -> Translated {
    let chars: Vec<char> = py.chars().collect();
    let mut out = String::with_capacity(py.len() + 8);
    let mut hoisted = String::new();
    let mut needs_backtracking = false;
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    // A trailing backslash is an error in Python; keep it literal.
                    out.push_str(r"\\");
                    i += 1;
                    continue;
                };
                i += 2;
                match n {
                    'Z' => out.push_str(r"\z"),
                    // Python's octal escape `\0`, `\012`: Rust has none.
                    '0' => {
                        let mut value = 0u32;
                        let mut digits = 0;
                        while digits < 2 && chars.get(i).is_some_and(|d| ('0'..='7').contains(d)) {
                            value = value * 8 + chars[i].to_digit(8).unwrap_or(0);
                            i += 1;
                            digits += 1;
                        }
                        out.push_str(&format!(r"\x{{{value:x}}}"));
                    }
                    '1'..='9' => {
                        needs_backtracking = true;
                        out.push('\\');
                        out.push(n);
                    }
                    'A' | 'b' | 'B' | 'd' | 'D' | 's' | 'S' | 'w' | 'W' | 'n' | 't' | 'r' | 'f'
                    | 'v' | 'x' | 'u' | 'U' | 'N' | 'a' => {
                        out.push('\\');
                        out.push(n);
                    }
                    _ => push_literal(&mut out, n),
                }
            }
            '[' => {
                let (class, next) = translate_class(&chars, i);
                out.push_str(&class);
                i = next;
            }
            '{' => {
                if let Some((q, next)) = quantifier(&chars, i) {
                    out.push_str(&q);
                    i = next;
                } else {
                    out.push_str(r"\{");
                    i += 1;
                }
            }
            '}' => {
                out.push_str(r"\}");
                i += 1;
            }
            '(' => {
                if chars.get(i + 1) == Some(&'?') {
                    let rest: String = chars[i + 2..].iter().take(3).collect();
                    if rest.starts_with('#') {
                        // (?#comment): drop it.
                        while i < chars.len() && chars[i] != ')' {
                            i += 1;
                        }
                        i += 1;
                        continue;
                    }
                    // Python's conditional on a named group `(?(name)yes|no)` is
                    // `(?(<name>)yes|no)` for fancy-regex.
                    if rest.starts_with('(') {
                        let close = chars[i + 3..].iter().position(|&c| c == ')');
                        if let Some(len) = close {
                            let name: String = chars[i + 3..i + 3 + len].iter().collect();
                            if !name.is_empty()
                                && name.chars().all(|c| c.is_alphanumeric() || c == '_')
                                && !name.chars().all(|c| c.is_ascii_digit())
                            {
                                needs_backtracking = true;
                                out.push_str(&format!("(?(<{name}>)"));
                                depth += 1;
                                i += 3 + len + 1;
                                continue;
                            }
                        }
                    }
                    if rest.starts_with('=')
                        || rest.starts_with('!')
                        || rest.starts_with("<=")
                        || rest.starts_with("<!")
                        || rest.starts_with("P=")
                        || rest.starts_with('(')
                        || rest.starts_with('>')
                    {
                        needs_backtracking = true;
                    }
                    // A bare global flag group `(?i)` in mid-pattern applies to the whole
                    // pattern in Python (before 3.11, which fail2ban's filters were written
                    // for); Rust would apply it from that point on. Hoist it.
                    let mut j = i + 2;
                    while j < chars.len() && chars[j].is_ascii_alphabetic() {
                        j += 1;
                    }
                    if j > i + 2 && chars.get(j) == Some(&')') {
                        let flags: String = chars[i + 2..j].iter().collect();
                        let flags: String = flags.chars().filter(|f| "imsx".contains(*f)).collect();
                        if depth == 0 || i == 0 {
                            hoisted.push_str(&flags);
                        } else if !flags.is_empty() {
                            out.push_str(&format!("(?{flags})"));
                        }
                        i = j + 1;
                        continue;
                    }
                    // Scoped flags `(?iu:...)`: drop the flags Rust lacks or that are defaults.
                    if j > i + 2 && chars.get(j) == Some(&':') {
                        let flags: String = chars[i + 2..j]
                            .iter()
                            .filter(|f| "imsx".contains(**f))
                            .collect();
                        out.push_str(&format!("(?{flags}:"));
                        depth += 1;
                        i = j + 1;
                        continue;
                    }
                }
                depth += 1;
                out.push('(');
                i += 1;
            }
            ')' => {
                depth = depth.saturating_sub(1);
                out.push(')');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    let pattern = if hoisted.is_empty() {
        out
    } else {
        format!("(?{hoisted}){out}")
    };
    Translated {
        pattern,
        needs_backtracking,
    }
}

/// A literal character, escaped so that neither Rust engine reads it as syntax (`\<` is a
/// word boundary in Rust but a plain `<` in Python).
fn push_literal(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        // An unknown letter escape is an error in Python; keep the letter.
        out.push(c);
    } else if c.is_ascii_punctuation() && c != '<' && c != '>' {
        out.push('\\');
        out.push(c);
    } else if c == ' ' {
        out.push_str(r"\x20");
    } else {
        out.push_str(&format!(r"\x{{{:x}}}", c as u32));
    }
}

/// `{m}`, `{m,}`, `{m,n}`, `{,n}` at `chars[i]`, or None when Python reads `{` literally.
fn quantifier(chars: &[char], i: usize) -> Option<(String, usize)> {
    let mut j = i + 1;
    let mut min = String::new();
    while j < chars.len() && chars[j].is_ascii_digit() {
        min.push(chars[j]);
        j += 1;
    }
    let mut max = None;
    if chars.get(j) == Some(&',') {
        j += 1;
        let mut m = String::new();
        while j < chars.len() && chars[j].is_ascii_digit() {
            m.push(chars[j]);
            j += 1;
        }
        max = Some(m);
    }
    if chars.get(j) != Some(&'}') {
        return None;
    }
    match (min.is_empty(), &max) {
        (true, None) => None,
        (true, Some(m)) if m.is_empty() => None,
        (true, Some(m)) => Some((format!("{{0,{m}}}"), j + 1)),
        (false, None) => Some((format!("{{{min}}}"), j + 1)),
        (false, Some(m)) => Some((format!("{{{min},{m}}}"), j + 1)),
    }
}

/// A character class starting at `chars[start] == '['`; returns it and the index after it.
fn translate_class(chars: &[char], start: usize) -> (String, usize) {
    let mut out = String::from("[");
    let mut i = start + 1;
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    // A ']' first in the class is literal in Python.
    if chars.get(i) == Some(&']') {
        out.push_str(r"\]");
        i += 1;
    }
    while i < chars.len() {
        let c = chars[i];
        match c {
            ']' => return (out + "]", i + 1),
            '\\' => {
                let Some(&n) = chars.get(i + 1) else {
                    out.push_str(r"\\");
                    i += 1;
                    continue;
                };
                i += 2;
                match n {
                    'd' | 'D' | 's' | 'S' | 'w' | 'W' | 'n' | 't' | 'r' | 'f' | 'v' | 'x' | 'u'
                    | 'U' | 'a' => {
                        out.push('\\');
                        out.push(n);
                    }
                    'b' => out.push_str(r"\x08"),
                    '0' => out.push_str(r"\x00"),
                    _ => push_literal(&mut out, n),
                }
            }
            // Rust reads these as nested classes or set operations; Python as literals.
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
                i += 1;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                out.push_str(r"\-");
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Unterminated: let the engine report it.
    (out, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(p: &str) -> String {
        translate(p).pattern
    }

    #[test]
    fn python_only_syntax_is_rewritten() {
        assert_eq!(tr(r"a\Z"), r"a\z");
        assert_eq!(tr(r"x{ y}"), r"x\{ y\}");
        assert_eq!(tr(r"a{,3}b{2}c{1,}"), r"a{0,3}b{2}c{1,}");
        assert_eq!(tr(r"[[]x[^]a]"), r"[\[]x[^\]a]");
        assert_eq!(tr(r"\<\>\_\ "), r"\x{3c}\x{3e}\_\x20");
        assert_eq!(tr(r"a(?#note)b"), "ab");
        assert_eq!(tr(r"^foo(?i)bar"), r"(?i)^foobar");
        assert_eq!(tr(r"(?iu)x"), r"(?i)x");
        assert_eq!(tr(r"((?i)x)"), r"((?i)x)");
        assert_eq!(tr(r"a\0b\012[\0]"), r"a\x{0}b\x{a}[\x00]");
    }

    #[test]
    fn engine_choice() {
        assert!(!translate(r"^(?P<user>\S+) from (?:a|b)$").needs_backtracking);
        for p in [
            r"a(?=b)",
            r"(?<!x)y",
            r"(a)\1",
            r"(?P<s>-)x(?P=s)",
            r"(?P<c>a)?(?(c)b|d)",
        ] {
            assert!(translate(p).needs_backtracking, "{p}");
            PyRegex::new(p, Flags::default()).unwrap();
        }
        let re = PyRegex::new(r"(?P<sep>[-/])x(?P=sep)", Flags::default()).unwrap();
        assert_eq!(re.engine(), Engine::Backtracking);
        assert!(re.is_match("-x-") && !re.is_match("-x/"));
        let re = PyRegex::new(r"^(?P<c>a)?(?(c)b|d)$", Flags::default()).unwrap();
        assert!(re.is_match("ab") && re.is_match("d") && !re.is_match("ad"));
    }

    #[test]
    fn search_reports_groups() {
        let re = PyRegex::new(
            r"user (?P<user>\w+)(?: from (?P<ip>\S+))?",
            Flags::default(),
        )
        .unwrap();
        assert_eq!(re.engine(), Engine::Linear);
        let m = re.search("x user bob").unwrap();
        assert_eq!(m.groups.value("user"), Some("bob"));
        assert_eq!(m.groups.get("ip"), Some(&None));
        assert_eq!(m.groups.get("nope"), None);
        assert_eq!((m.start, m.end), (2, 10));
        assert!(PyRegex::new("(", Flags::default()).is_err());
    }

    #[test]
    fn relaxed_patterns_are_linear_supersets() {
        assert_eq!(relax(r"a(?=b)c"), "a(?:)c");
        assert_eq!(relax(r"(?<!x(y))z[(?!]"), "(?:)z[(?!]");
        assert_eq!(relax(r"^a(?=b){0}$"), "^a(?:){0}$");
        assert_eq!(relax(r"(a)\12b"), "(a)(?s:.*)b");
        assert_eq!(relax(r"(?P<s>-)x(?P=s)"), "(?P<s>-)x(?s:.*)");
        assert_eq!(relax(r"(?P<c>a)?(?(<c>)b|d)e"), "(?P<c>a)?(?:b|d)?e");
        assert_eq!(relax(r"(?>a+)(?i)b"), "(?:a+)(?i)b");
        // Every text the backtracking pattern matches, the relaxed one matches too.
        for (p, texts) in [
            (r"^(?P<c>x )?(?(c)a|b)$", &["x a", "b"][..]),
            (r"^(?:(?! from ).)*?y$", &["a y"]),
            (r"^(?P<w>\w+) (?P=w)$", &["ab ab"]),
        ] {
            let exact = PyRegex::new(p, Flags::default()).unwrap();
            assert_eq!(exact.engine(), Engine::Backtracking);
            let relaxed = regex::Regex::new(&exact.superset).unwrap();
            for t in texts {
                assert!(exact.is_match(t) && relaxed.is_match(t), "{p} on {t:?}");
            }
        }
    }

    #[test]
    fn prefilter_keeps_order_and_rejects() {
        let patterns: Vec<PyRegex> = [r"^a(?=b)", r"^x", r"^(?P<u>\w+) (?P=u)$"]
            .iter()
            .map(|p| PyRegex::new(p, Flags::default()).unwrap())
            .collect();
        let pre = Prefilter::new(&patterns);
        assert!(pre.set.is_some());
        let c = pre.candidates("ac");
        assert!(c.may_match(0), "a superset: a candidate, not a match");
        assert!(!patterns[0].is_match("ac"));
        assert!(!c.may_match(1) && !c.may_match(2));
        let c = pre.candidates("xy xz");
        assert!(!c.may_match(0) && c.may_match(1) && c.may_match(2));
    }

    #[test]
    fn backtracking_limit_is_no_match() {
        let re = PyRegex::new(r"^(a+)+(?=b)", Flags::default()).unwrap();
        assert!(!re.is_match(&"a".repeat(40)));
    }
}
