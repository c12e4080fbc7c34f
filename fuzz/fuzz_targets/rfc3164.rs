//! RFC 3164 / classic syslog file lines: `parse::parse_syslog` (socket frames) and
//! `parse::parse_line` (file lines), on the raw input and behind a `<13>` PRI.
//!
//! Two fixed receive times: one in December and one on 1 January, so that the year
//! inference of BSD timestamps takes both branches. Asserts only that nothing panics.
#![no_main]

use chrono::{DateTime, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use syslog2ban::parse::{parse_line, parse_syslog};

fn nows() -> [DateTime<Utc>; 2] {
    [
        Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 30).unwrap(),
    ]
}

fuzz_target!(|data: &[u8]| {
    let mut framed = b"<13>".to_vec();
    framed.extend_from_slice(data);
    let text = String::from_utf8_lossy(data);
    let framed_text = format!("<13>{text}");
    for now in nows() {
        let _ = parse_syslog(data, now);
        let _ = parse_syslog(&framed, now);
        let _ = parse_line(&text, now);
        let _ = parse_line(&framed_text, now);
    }
});
