//! Human durations in config values: an integer of seconds, or numbers with units `ms`, `s`,
//! `m`, `h`, `d`, `w`, `mo` (30 days), `y` (365 days), one after another (`"1h 30m"`,
//! `"1d12h"`, `"250ms"`).
//! Nothing else: `"10 minutes"`, `"1hr"` and the ambiguous `"1M"` are errors.
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

/// The units a duration may use, in milliseconds.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("mo", 30 * 86_400_000),
    ("s", 1000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 7 * 86_400_000),
    ("y", 365 * 86_400_000),
];

/// The grammar, for error messages.
const GRAMMAR: &str = "write a number of seconds, or numbers with units ms, s, m, h, d, w, \
                       mo (30 d) or y (365 d), e.g. \"30s\", \"10m\", \"1h 30m\", \"2w\"";

fn parse_text(text: &str) -> Result<ParsedDuration, String> {
    let trimmed = text.trim();
    if trimmed == "-1" {
        return Ok(ParsedDuration::Forever);
    }
    // A bare number in a string means seconds, as in fail2ban.
    if let Ok(secs) = trimmed.parse::<u64>() {
        return Ok(ParsedDuration::Finite(Duration::from_secs(secs)));
    }
    let mut total: u64 = 0;
    let mut rest = trimmed;
    if rest.is_empty() {
        return Err(format!("an empty duration; {GRAMMAR}"));
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, after) = rest.split_at(digits);
        let Ok(number) = number.parse::<u64>() else {
            return Err(format!("\"{text}\" is not a duration; {GRAMMAR}"));
        };
        let after = after.trim_start();
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        let Some(&(_, millis)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            if unit == "M" {
                return Err(format!(
                    "\"{text}\": \"M\" is ambiguous; write \"m\" for minutes or \"mo\" for months"
                ));
            }
            return Err(format!(
                "\"{text}\" is not a duration: unknown unit \"{unit}\"; {GRAMMAR}"
            ));
        };
        total = number
            .checked_mul(millis)
            .and_then(|n| total.checked_add(n))
            .ok_or_else(|| format!("\"{text}\" is too long a duration"))?;
        rest = after.trim_start();
    }
    Ok(ParsedDuration::Finite(Duration::from_millis(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<ParsedDuration, String> {
        RawDuration::Text(s.to_string()).parse()
    }

    #[test]
    fn milliseconds_for_short_timeouts() {
        assert_eq!(
            text("250ms"),
            Ok(ParsedDuration::Finite(Duration::from_millis(250)))
        );
        assert_eq!(
            text("1s 500ms"),
            Ok(ParsedDuration::Finite(Duration::from_millis(1500)))
        );
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
    fn one_grammar_of_short_units() {
        let secs = |n: u64| Ok(ParsedDuration::Finite(Duration::from_secs(n)));
        assert_eq!(text("1h 30m"), secs(5400));
        assert_eq!(text("1d12h"), secs(129_600));
        assert_eq!(text("2w"), secs(1_209_600));
        assert_eq!(text("1mo"), secs(2_592_000));
        assert_eq!(text("1y"), secs(31_536_000));
        assert_eq!(text(" 90 s "), secs(90));
        for refused in [
            "10 minutes",
            "1hr",
            "1H",
            "1.5h",
            "h",
            "1h x",
            "m5",
            "",
            "99999999999999y",
        ] {
            assert!(text(refused).is_err(), "{refused:?} was accepted");
        }
        let err = text("1M").unwrap_err();
        assert!(err.contains("ambiguous") && err.contains("\"mo\""), "{err}");
        let err = text("10 minutes").unwrap_err();
        assert!(err.contains("unknown unit \"minutes\""), "{err}");
    }

    #[test]
    fn garbage_is_rejected_with_hint() {
        let err = text("ten minutes").unwrap_err();
        assert!(err.contains("\"10m\""), "{err}");
        assert!(RawDuration::Seconds(-5).parse().is_err());
    }
}
