//! A queued event read back from its JSON body (the schema README documents), and the text
//! each template field stands for.
//!
//! Owns the reading and the plain-text rendering of an event's values. What is done with the
//! text (a mail, a chat message) is the notifiers'; every value from a log line or the
//! network is made a single line of printable text here or in `printable`.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::Field;

/// One event, as queued.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    /// `ban` or `unban`.
    pub event: String,
    /// The jail.
    pub jail: String,
    /// The address or prefix.
    pub address: String,
    /// Failures that led to the ban.
    #[serde(default)]
    pub failures: u32,
    /// Seconds; None when permanent.
    pub bantime: Option<u64>,
    /// The attacked host.
    #[serde(default)]
    pub origin: String,
    /// The matched lines.
    #[serde(default)]
    pub lines: Vec<String>,
    /// Unix seconds.
    #[serde(default)]
    pub started: u64,
    /// Unix seconds; None when permanent.
    pub expires: Option<u64>,
}

impl Event {
    /// Reads a queued body; Err says why it cannot be sent.
    pub fn parse(body: &str) -> Result<Event, String> {
        serde_json::from_str(body).map_err(|e| format!("the queued event is not readable: {e}"))
    }

    /// The text of `field`; `whois` is the summary of the address, if looked up.
    pub fn field(&self, field: Field, whois: &str) -> String {
        match field {
            Field::Event => self.event.clone(),
            Field::Ip => self.address.clone(),
            Field::Jail => self.jail.clone(),
            Field::Failures => self.failures.to_string(),
            Field::Bantime => match self.bantime {
                Some(s) => {
                    humantime::format_duration(std::time::Duration::from_secs(s)).to_string()
                }
                None => "permanent".into(),
            },
            Field::Origin => printable(&self.origin),
            Field::Started => time(self.started),
            Field::Expires => self.expires.map_or_else(|| "never".into(), time),
            Field::Lines => {
                let lines: Vec<String> = self.lines.iter().map(|l| printable(l)).collect();
                lines.join("\n")
            }
            Field::Whois => whois.to_string(),
        }
    }

    /// One line for a digest: `time event address jail (failures, origin)`.
    pub fn digest_line(&self) -> String {
        format!(
            "{} {} {} in {} ({} failures, from {})",
            time(self.started),
            self.event,
            self.address,
            self.jail,
            self.failures,
            printable(&self.origin)
        )
    }

    /// A one-line summary: `banned 198.51.100.7 in sshd after 5 failures (web1, 10m)`.
    pub fn summary(&self) -> String {
        let verb = if self.event == "ban" {
            "banned"
        } else {
            "unbanned"
        };
        format!(
            "{verb} {} in {} after {} failures (from {}, {})",
            self.address,
            self.jail,
            self.failures,
            printable(&self.origin),
            self.field(Field::Bantime, "")
        )
    }
}

/// RFC 3339 in UTC.
fn time(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .map_or_else(|| unix.to_string(), |t| t.to_rfc3339())
}

/// `text` as one line of printable characters: control characters (line breaks among them)
/// become spaces, so nothing in it can start a header or a line of its own.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_a_queued_event_are_plain_lines() {
        let event = Event::parse(
            r#"{"event":"ban","jail":"sshd","address":"198.51.100.7","failures":5,"bantime":600,
               "origin":"web1\r\nBcc: x@y","lines":["a\r\nSubject: z","b"],"started":1800000000,
               "expires":null}"#,
        )
        .unwrap();
        assert_eq!(event.field(Field::Origin, ""), "web1  Bcc: x@y");
        assert_eq!(event.field(Field::Lines, ""), "a  Subject: z\nb");
        assert_eq!(event.field(Field::Bantime, ""), "10m");
        assert_eq!(event.field(Field::Expires, ""), "never");
        assert_eq!(event.field(Field::Started, ""), "2027-01-15T08:00:00+00:00");
        assert_eq!(
            event.summary(),
            "banned 198.51.100.7 in sshd after 5 failures (from web1  Bcc: x@y, 10m)"
        );
        assert!(Event::parse("{}").is_err());
    }
}
