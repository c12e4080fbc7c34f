//! What notifiers are told about bans: which notifiers hear which jail's events (`Routes`,
//! from config), and each event's body, the documented webhook JSON.
//!
//! Pure data and rendering. The store writes these bodies to its outbox in the ban's own
//! transaction, so a ban and its notifications are committed together (a restored ban is
//! never written again, so it is never announced again); the notify stage delivers them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::record::BanRecord;

/// One notifier's interest in a jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The notifier's name.
    pub notifier: String,
    /// It hears bans.
    pub ban: bool,
    /// It hears ends of bans.
    pub unban: bool,
}

/// Per jail name, the notifiers that hear it.
pub type Routes = HashMap<String, Vec<Route>>;

/// Routes shared with the store thread; a reload replaces them.
pub type SharedRoutes = Arc<RwLock<Routes>>;

/// The JSON body of one event (the schema README documents).
#[derive(Debug, Serialize)]
struct Body<'a> {
    event: &'a str,
    jail: &'a str,
    address: String,
    failures: u32,
    /// Seconds; null when permanent.
    bantime: Option<u64>,
    origin: &'a str,
    /// The matched lines that led to the ban.
    lines: Vec<&'a str>,
    /// When the ban started (Unix seconds).
    started: u64,
    /// When it ends or ended (Unix seconds); null when permanent.
    expires: Option<u64>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The body of `event` ("ban" or "unban") for `record`.
pub fn body(event: &str, record: &BanRecord) -> String {
    let body = Body {
        event,
        jail: &record.jail,
        address: record.address.to_string(),
        failures: record.failures,
        bantime: record
            .expires
            .and_then(|end| end.duration_since(record.started).ok())
            .map(|d| d.as_secs()),
        origin: &record.origin,
        lines: if !record.lines.is_empty() {
            record.lines.iter().map(String::as_str).collect()
        } else if record.sample.is_empty() {
            Vec::new()
        } else {
            vec![record.sample.as_str()]
        },
        started: unix(record.started),
        expires: record.expires.map(unix),
    };
    serde_json::to_string(&body).expect("a body of strings and numbers serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_body_has_the_documented_fields_and_keeps_log_text_as_data() {
        let started = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let record = BanRecord {
            address: "198.51.100.7".parse().unwrap(),
            jail: "sshd".into(),
            origin: "web1\"; rm -rf /".into(),
            started,
            expires: Some(started + Duration::from_secs(600)),
            failures: 3,
            sample: "Failed password for \"$(id)\" from 198.51.100.7 port 22 ssh2\r\nX: y".into(),
            lines: Vec::new(),
            decided_by: None,
            more_origins: Vec::new(),
            placement: None,
        };
        let v: serde_json::Value = serde_json::from_str(&body("ban", &record)).unwrap();
        assert_eq!(v["event"], "ban");
        assert_eq!(v["jail"], "sshd");
        assert_eq!(v["address"], "198.51.100.7");
        assert_eq!(v["failures"], 3);
        assert_eq!(v["bantime"], 600);
        assert_eq!(v["origin"], "web1\"; rm -rf /");
        assert_eq!(v["lines"][0], record.sample.as_str());
        assert_eq!(v["expires"], 1_800_000_600u64);
        let permanent = BanRecord {
            expires: None,
            ..record
        };
        let v: serde_json::Value = serde_json::from_str(&body("unban", &permanent)).unwrap();
        assert!(v["bantime"].is_null() && v["expires"].is_null());
    }
}
