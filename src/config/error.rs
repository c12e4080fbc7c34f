//! Configuration errors: what is wrong, and where (file, line, key), as `check` prints them.

use std::fmt;
use std::path::{Path, PathBuf};

/// One configuration error, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file that holds the key, when known.
    pub file: Option<PathBuf>,
    /// The 1-based line of the key in that file, when it can be found.
    pub line: Option<usize>,
    /// Dotted key, e.g. `jail.sshd.maxretry`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, _) => {}
        }
        // An error of the whole file (not found, unreadable) has no key to name.
        if self.key.is_empty() || self.key == "-" {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every error found while loading, so a user can fix them all in one go.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// `["listen", "0", "address"]` → `listen[0].address`, the form every error uses.
pub(super) fn dotted(parts: &[&str]) -> String {
    let mut out = String::new();
    for part in parts {
        if part.bytes().all(|b| b.is_ascii_digit()) && !out.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// Best-effort line of `key` in `file`: tracks `[table]` and `[[array]]` headers (counting
/// array entries, so `listen[1].type` finds the second `[[listen]]`) and matches `name =`.
pub(super) fn find_line(file: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read_to_string(file).ok()?;
    // `jail.sshd.ignoreip[2]` → table `jail.sshd`, field `ignoreip`.
    let (table, field) = match key.rsplit_once('.') {
        Some((t, f)) => (t, f),
        None => ("", key),
    };
    let field = field.split('[').next().unwrap_or(field);
    let mut current = String::new();
    let mut array_counts: std::collections::HashMap<String, usize> =
        std::collections::HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix("[[") {
            let name = header.split("]]").next().unwrap_or("").trim().to_string();
            let count = array_counts.entry(name.clone()).or_insert(0);
            current = format!("{name}[{count}]");
            *count += 1;
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            current = header.split(']').next().unwrap_or("").trim().to_string();
            // A key that names a table is found at its header: `[bann]`, `[jail.sshd]`.
            if current == key || current.starts_with(&format!("{key}.")) {
                return Some(n + 1);
            }
            continue;
        }
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        if current == table && name.trim().trim_matches('"') == field {
            return Some(n + 1);
        }
    }
    None
}
