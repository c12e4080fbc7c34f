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

mod translate;

pub use translate::{relax, translate, Translated};

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

#[cfg(test)]
mod tests;
