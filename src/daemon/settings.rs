//! `get` and `set` of a jail's maxretry, findtime and bantime at run time (fail2ban-client's
//! habit): reading and validating a value, and, when asked to persist, writing it to
//! `conf.d/zz-set.toml` so the next start and reload keep it.
//!
//! Pure but for that one file; applying a changed jail is the daemon's (`Running::set`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::Figment;

use crate::config::{BanTime, JailConfig, ParsedDuration, RawDuration};

/// The keys `get` and `set` know.
pub const KEYS: &[&str] = &["maxretry", "findtime", "bantime"];

/// The file `set --persist` writes, last in conf.d's name order so it wins.
pub const PERSIST_FILE: &str = "zz-set.toml";

/// A key's current value as `set` would accept it back.
pub fn get(jail: &JailConfig, key: &str) -> Result<String, String> {
    match key {
        "maxretry" => Ok(jail.maxretry.to_string()),
        "findtime" => Ok(short_duration(jail.findtime)),
        "bantime" => Ok(match jail.bantime {
            BanTime::Permanent => "-1".into(),
            BanTime::For(d) => short_duration(d),
        }),
        other => Err(unknown_key(other)),
    }
}

/// Sets `key` of `jail` from `value` (validated as the config file's value would be).
pub fn set(jail: &mut JailConfig, key: &str, value: &str) -> Result<(), String> {
    let duration = |value: &str| RawDuration::Text(value.to_string()).parse();
    match key {
        "maxretry" => match value.trim().parse::<u32>() {
            Ok(n) if n >= 1 => jail.maxretry = n,
            _ => return Err(format!("maxretry: \"{value}\" is not a whole number >= 1")),
        },
        "findtime" => match duration(value)? {
            ParsedDuration::Finite(d) if !d.is_zero() => jail.findtime = d,
            _ => return Err(format!("findtime: \"{value}\" must be a duration > 0")),
        },
        "bantime" => match duration(value)? {
            ParsedDuration::Forever => jail.bantime = BanTime::Permanent,
            ParsedDuration::Finite(d) if !d.is_zero() => jail.bantime = BanTime::For(d),
            _ => return Err(format!("bantime: \"{value}\" must be a duration > 0 or -1")),
        },
        other => return Err(unknown_key(other)),
    }
    Ok(())
}

fn unknown_key(key: &str) -> String {
    format!(
        "unknown key \"{key}\"; get and set know {}",
        KEYS.join(", ")
    )
}

/// `90s`, `10m`, `1d 2h`: the largest units first, in the config's duration grammar.
pub fn short_duration(d: Duration) -> String {
    let mut left = d.as_secs();
    if left == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, secs) in [
        ("w", 7 * 86400),
        ("d", 86400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    ] {
        if left >= secs {
            let _ = write!(out, "{}{unit} ", left / secs);
            left %= secs;
        }
    }
    out.trim_end().to_string()
}

/// Records `jail.key = value` in conf.d/zz-set.toml (kept with the other keys it already
/// holds); returns the file. `config_path` is what the daemon was started with.
pub fn persist(config_path: &Path, jail: &str, key: &str, value: &str) -> Result<PathBuf, String> {
    let (_, conf_d) = crate::config::locate(config_path);
    let file = conf_d.join(PERSIST_FILE);
    let mut settings: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    if file.exists() {
        let existing: BTreeMap<String, BTreeMap<String, figment::value::Value>> =
            Figment::from(Toml::file_exact(&file))
                .extract_inner("jail")
                .map_err(|e| format!("{}: {e}", file.display()))?;
        for (name, keys) in existing {
            for (k, v) in keys {
                let text = match v {
                    figment::value::Value::Num(_, n) => n.to_i128().map(|n| n.to_string()),
                    figment::value::Value::String(_, s) => Some(s),
                    _ => None,
                };
                if let Some(text) = text {
                    settings.entry(name.clone()).or_default().insert(k, text);
                }
            }
        }
    }
    settings
        .entry(jail.to_string())
        .or_default()
        .insert(key.to_string(), value.trim().to_string());
    let mut text = String::from(
        "# Written by `syslog2ban set --persist`: run-time changes kept across restarts.\n\
         # Sorts last in conf.d, so these win; delete a line to go back to the jail's own value.\n",
    );
    for (name, keys) in &settings {
        let _ = write!(text, "\n[jail.{name}]\n");
        for (k, v) in keys {
            // maxretry is a number; durations are strings in the config's grammar (checked
            // before they get here, so they hold no quote or backslash).
            if k == "maxretry" || v == "-1" {
                let _ = writeln!(text, "{k} = {v}");
            } else {
                let _ = writeln!(text, "{k} = \"{v}\"");
            }
        }
    }
    let tmp = file.with_extension("toml.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &file))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_read_back() {
        for secs in [1, 59, 60, 90, 600, 3600, 5400, 86400, 93_600, 1_209_600] {
            let text = short_duration(Duration::from_secs(secs));
            assert_eq!(
                RawDuration::Text(text.clone()).parse(),
                Ok(ParsedDuration::Finite(Duration::from_secs(secs))),
                "{text}"
            );
        }
        assert_eq!(short_duration(Duration::from_secs(93_600)), "1d 2h");
    }

    #[test]
    fn persisted_settings_merge_and_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        persist(dir.path(), "sshd", "maxretry", "3").unwrap();
        persist(dir.path(), "sshd", "bantime", "2h").unwrap();
        let file = persist(dir.path(), "nginx", "bantime", "-1").unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("[jail.sshd]\nbantime = \"2h\"\nmaxretry = 3\n"),
            "{text}"
        );
        assert!(text.contains("[jail.nginx]\nbantime = -1\n"), "{text}");
    }
}
