//! What a blocklist feed fetch reads from the network: the HTTP answer (`http_client::
//! parse_answer`: status line, headers, capped body) and the list in it (`feed::parse`).
//! Input: one control byte, then the bytes. Bit 0 clear: the bytes are an HTTP answer whose
//! body, if it parses, is then read as a list; set: the bytes are a list. Asserts only that
//! nothing panics, and that a parsed list holds no more than `max_entries`.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use syslog2ban::config::{default_placement, BanTime, FeedConfig, FeedSource, JailName};
use syslog2ban::feed::parse;
use syslog2ban::http_client::parse_answer;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, bytes)) = data.split_first() else {
        return;
    };
    let feed = FeedConfig {
        name: "fuzz".into(),
        jail: JailName::new("feed-fuzz").expect("valid"),
        source: FeedSource::File("/dev/null".into()),
        interval: Duration::from_secs(60),
        bantime: BanTime::Permanent,
        placement: default_placement(),
        max_entries: 64,
        timeout: Duration::from_secs(1),
        ignoreip: vec!["127.0.0.0/8".parse().expect("valid")],
    };
    let list = if ctl & 1 == 0 {
        let Ok(answer) = parse_answer(bytes, 1 << 16) else {
            return;
        };
        let _ = answer.header("etag");
        parse(&String::from_utf8_lossy(&answer.body), &feed)
    } else {
        parse(&String::from_utf8_lossy(bytes), &feed)
    };
    assert!(list.entries.len() <= feed.max_entries);
});
