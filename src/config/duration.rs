//! Human durations in config values: `"10m"`, `"1h"`, `"1d"`, `"90s"`, or an integer of seconds.
//!
//! Owns only the text → `Duration` conversion; knows nothing about which key it is parsing.

use std::time::Duration;

use serde::Deserialize;

/// A duration as written in TOML: a string like `"10m"` or a number of seconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawDuration {
    /// Whole seconds; negative values are only meaningful for `bantime` (-1 = permanent).
    Seconds(i64),
    /// Text with a unit suffix.
    Text(String),
}

/// A parsed config duration: either a length or "forever" (`-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParsedDuration {
    /// A finite length.
    Finite(Duration),
    /// `-1`: no end.
    Forever,
}

impl RawDuration {
    /// Parses the value; the error text says what was wrong and what is accepted.
    pub fn parse(&self) -> Result<ParsedDuration, String> {
        match self {
            RawDuration::Seconds(-1) => Ok(ParsedDuration::Forever),
            RawDuration::Seconds(s) if *s >= 0 => {
                Ok(ParsedDuration::Finite(Duration::from_secs(*s as u64)))
            }
            RawDuration::Seconds(s) => Err(format!(
                "{s} is not a duration (use seconds >= 0, -1 for permanent, or text like \"10m\")"
            )),
            RawDuration::Text(text) => parse_text(text),
        }
    }
}

fn parse_text(text: &str) -> Result<ParsedDuration, String> {
    let trimmed = text.trim();
    if trimmed == "-1" {
        return Ok(ParsedDuration::Forever);
    }
    // A bare number in a string means seconds, as in fail2ban.
    if let Ok(secs) = trimmed.parse::<u64>() {
        return Ok(ParsedDuration::Finite(Duration::from_secs(secs)));
    }
    humantime::parse_duration(trimmed)
        .map(ParsedDuration::Finite)
        .map_err(|e| {
            format!(
                "\"{text}\" is not a duration ({e}); write e.g. \"30s\", \"10m\", \"1h\", \"1d\""
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<ParsedDuration, String> {
        RawDuration::Text(s.to_string()).parse()
    }

    #[test]
    fn units_and_seconds() {
        assert_eq!(
            text("10m"),
            Ok(ParsedDuration::Finite(Duration::from_secs(600)))
        );
        assert_eq!(
            text("1h"),
            Ok(ParsedDuration::Finite(Duration::from_secs(3600)))
        );
        assert_eq!(
            text("1d"),
            Ok(ParsedDuration::Finite(Duration::from_secs(86400)))
        );
        assert_eq!(
            text("600"),
            Ok(ParsedDuration::Finite(Duration::from_secs(600)))
        );
        assert_eq!(
            RawDuration::Seconds(90).parse(),
            Ok(ParsedDuration::Finite(Duration::from_secs(90)))
        );
    }

    #[test]
    fn minus_one_is_forever() {
        assert_eq!(
            RawDuration::Seconds(-1).parse(),
            Ok(ParsedDuration::Forever)
        );
        assert_eq!(text("-1"), Ok(ParsedDuration::Forever));
    }

    #[test]
    fn garbage_is_rejected_with_hint() {
        let err = text("ten minutes").unwrap_err();
        assert!(err.contains("\"10m\""), "{err}");
        assert!(RawDuration::Seconds(-5).parse().is_err());
    }
}
