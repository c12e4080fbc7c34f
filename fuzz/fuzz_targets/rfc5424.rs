//! RFC 5424 messages: `parse::parse_syslog` and `parse::parse_line` on the raw input and
//! behind a `<13>1 ` header start (so syslog_loose and the hand-written fallback both run).
//! Asserts only that nothing panics.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use syslog2ban::parse::{parse_line, parse_syslog};

fuzz_target!(|data: &[u8]| {
    let now = Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap();
    let mut framed = b"<13>1 ".to_vec();
    framed.extend_from_slice(data);
    let _ = parse_syslog(data, now);
    let _ = parse_syslog(&framed, now);
    let text = String::from_utf8_lossy(data);
    let _ = parse_line(&text, now);
    let _ = parse_line(&format!("<13>1 {text}"), now);
});
