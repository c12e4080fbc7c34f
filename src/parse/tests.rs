use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn parse(s: &str) -> LogRecord {
    parse_syslog(s.as_bytes(), now()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn rfc5424_from_rsyslog_keeps_fields_and_drops_leading_space() {
    let r = parse("<38>1 2026-11-25T08:32:44.640342+00:00 nl-server sshd 16313 - -  Failed password for nltest from 198.51.100.66 port 54290 ssh2\n");
    assert_eq!(r.priority, Some(38));
    assert_eq!(r.host.as_deref(), Some("nl-server"));
    assert_eq!(r.program, "sshd");
    assert_eq!(r.pid, Some(16313));
    assert_eq!(
        r.message,
        "Failed password for nltest from 198.51.100.66 port 54290 ssh2"
    );
    assert!(r.timestamp.is_some());
}

#[test]
fn rfc5424_with_structured_data_and_nil_fields() {
    let r = parse(
        r#"<13>1 2026-11-25T08:36:06.735228+00:00 vm sshd - AUTHFAIL [timeQuality tzKnown="1" isSynced="0"][ex@32473 ip="198.51.100.66"] udp rfc5424 with SD"#,
    );
    assert_eq!(r.program, "sshd");
    assert_eq!(r.pid, None);
    assert_eq!(r.message, "udp rfc5424 with SD");
    let r = parse("<38>1 - vm sshd - - - rfc5424 notq notime");
    assert_eq!(r.program, "sshd");
    assert_eq!(r.timestamp, None);
    assert_eq!(r.message, "rfc5424 notq notime");
}

#[test]
fn rfc5424_fallback_for_what_syslog_loose_rejects() {
    // Host ending in "::" and a timestamp without offset.
    let r = parse("<38>1 2026-11-25T08:32:44 fe80:: sshd 7 - - Failed password for x from 198.51.100.9 port 1 ssh2");
    assert_eq!(r.host.as_deref(), Some("fe80::"));
    assert_eq!(r.program, "sshd");
    assert_eq!(r.pid, Some(7));
    assert_eq!(
        r.message,
        "Failed password for x from 198.51.100.9 port 1 ssh2"
    );
    assert!(r.timestamp.is_some());
    let r = parse(r#"<38>1 2026-11-25T08:32:44Z h app - - [a b="x\]y"] msg"#);
    assert_eq!(r.message, "msg");
    assert_eq!(r.program, "app");
}

#[test]
fn rfc5424_bom_is_stripped() {
    let r = parse("<38>1 2026-11-25T08:32:44Z h sshd 1 - - \u{feff}Failed password");
    assert_eq!(r.message, "Failed password");
}

#[test]
fn rfc3164_with_host_and_pid() {
    let r = parse("<38>Nov 25 08:32:44 nl-server sshd[16313]: Failed password for nltest from 198.51.100.66 port 54290 ssh2");
    assert_eq!(r.host.as_deref(), Some("nl-server"));
    assert_eq!(r.program, "sshd");
    assert_eq!(r.pid, Some(16313));
    assert_eq!(
        r.message,
        "Failed password for nltest from 198.51.100.66 port 54290 ssh2"
    );
    let ts = r.timestamp.expect("timestamp");
    assert_eq!(ts.to_rfc3339(), "2026-11-25T08:32:44+00:00");
}

#[test]
fn rfc3164_hostless_local_socket_forms() {
    let r = parse("<38>Nov 25 08:33:27 sshd[18458]: Failed password for nltest from 198.51.100.66 port 53290 ssh2");
    assert_eq!(r.host, None);
    assert_eq!(r.program, "sshd");
    assert_eq!(r.pid, Some(18458));
    // syslog_loose's trap: no host and no pid must still route to "su".
    let r = parse("<38>Nov 25 08:30:01 su: msg");
    assert_eq!(r.host, None);
    assert_eq!(r.program, "su");
    assert_eq!(r.message, "msg");
}

#[test]
fn rfc3164_variants_real_senders_use() {
    // Fractional seconds.
    let r = parse("<38>Nov 25 08:35:56.497297 vm sshd[1]: x");
    assert_eq!(r.program, "sshd");
    assert_eq!(r.host.as_deref(), Some("vm"));
    // rsyslog high-precision RFC 3339 timestamp in a 3164 frame.
    let r = parse("<85>2026-11-25T08:35:56.497297+00:00 vm sudo multi line#012second line");
    assert_eq!(r.program, "sudo");
    assert_eq!(r.message, "multi line#012second line");
    // Space-padded day.
    let r = parse("<38>Nov  5 08:35:56 vm sshd: y");
    assert_eq!(r.program, "sshd");
    assert_eq!(
        r.timestamp.expect("ts").to_rfc3339(),
        "2026-11-05T08:35:56+00:00"
    );
    // Message starting with '[' is not structured data in 3164.
    let r = parse("<38>Nov 25 08:35:56 vm kernel: [12345.678] nft drop");
    assert_eq!(r.program, "kernel");
    assert_eq!(r.message, "[12345.678] nft drop");
    // Slash in program names (postfix).
    let r = parse("<22>Nov 25 08:35:56 mx postfix/submission/smtpd[42]: warning: x");
    assert_eq!(r.program, "postfix/submission/smtpd");
}

#[test]
fn december_message_in_january_is_last_year() {
    let jan = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 5).unwrap();
    let r = parse_syslog(b"<38>Dec 31 23:59:59 h sshd: x", jan).expect("parses");
    assert_eq!(
        r.timestamp.expect("ts").to_rfc3339(),
        "2026-12-31T23:59:59+00:00"
    );
}

#[test]
fn garbage_never_panics_and_bad_priority_is_an_error() {
    assert_eq!(parse_syslog(b"", now()), Err(ParseError::Empty));
    assert_eq!(parse_syslog(b"\n\r\0", now()), Err(ParseError::Empty));
    assert_eq!(parse_syslog(b"<999>x", now()), Err(ParseError::BadPriority));
    assert_eq!(parse_syslog(b"no pri", now()), Err(ParseError::BadPriority));
    assert_eq!(parse_syslog(b"<>x", now()), Err(ParseError::BadPriority));
    for junk in [
        &b"<38>1"[..],
        b"<38>1 ",
        b"<38>1 2026",
        b"<38>1 - - - - - [unterminated",
        b"<38>Nov",
        b"<38>Nov 99 99:99:99 h p: m",
        b"<38>\xff\xfe sshd: x",
        b"<0>",
    ] {
        let _ = parse_syslog(junk, now());
    }
    let r = parse_syslog(b"<38>\xff sshd[1]: caf\xe9", now()).expect("lossy utf-8 parses");
    assert_eq!(r.message, "caf\u{fffd}");
}

#[test]
fn file_lines_parse_like_3164() {
    let r = parse_line(
        "Nov 25 08:32:44 web1 sshd-session[16313]: Failed password for root from 2001:db8::66 port 22 ssh2\n",
        now(),
    )
    .expect("parses");
    assert_eq!(r.program, "sshd-session");
    assert_eq!(r.host.as_deref(), Some("web1"));
    assert_eq!(r.priority, None);
    assert_eq!(parse_line("   ", now()), Err(ParseError::Empty));
}

#[test]
fn borrowed_line_record_points_into_the_line() {
    for line in [
        "Nov 25 08:32:44 web1 sshd[1]: Failed password for root from 198.51.100.1 port 22 ssh2",
        "<38>1 2026-11-25T08:32:47Z web1 sshd 1 - -  \u{feff}Failed password for x",
        "<38>1 2026-11-25T08:32:47 web1:: sshd 1 - [a b=\"]\"] msg",
    ] {
        let r = parse_line_ref(line, now()).expect("parses");
        assert_eq!(r.to_owned(), parse_line(line, now()).unwrap(), "{line}");
        assert_eq!(r.program, "sshd", "{line}");
        let inside = line.as_bytes().as_ptr_range();
        assert!(inside.contains(&r.message.as_ptr()), "{line}");
        assert!(!r.message.starts_with([' ', '\u{feff}']), "{line}");
    }
}

#[test]
fn bracketed_tag_without_host() {
    for line in [
        "<38>Mar  3 00:17:22 [sshd]: User root from 198.51.100.66 not allowed because not listed in AllowUsers",
        "<38>Jun 25 23:53:34 [sshd] User root from 198.51.100.66 not allowed because not listed in AllowUsers",
    ] {
        let r = parse(line);
        assert_eq!(r.program, "sshd", "{line}");
        assert_eq!(r.host, None);
        assert!(r.message.starts_with("User root from 198.51.100.66"), "{line}");
    }
    // A bracketed word that is not a tag name is not taken for one.
    assert_ne!(parse("<38>Mar  3 00:17:22 [a;b]: x").program, "a;b");
}

/// Headers of every shape the parsers take; each byte position gets foreign bytes inserted.
const HEADER_SHAPES: [&[u8]; 8] = [
    b"<13>Dec  3 10:00:00 host sshd[1]: x",
    b"<13>Dec 13 10:00:00.123456 2026 host sshd[1]: x",
    b"<13>2026-12-03T10:00:00.5+01:00 host sshd: x",
    b"<13>Dec  3 10:00:00 [sshd]: x",
    b"<13>Dec  3 10:00:00 su: x",
    b"<13>1 2026-12-03T10:00:00Z host sshd 12 ID [a b=\"c\\\"]\"] x",
    b"<13>1 2026-12-03T10:00:00 host:: sshd - - - x",
    b"<13>1 - - - - - -",
];

#[test]
fn the_reported_datagram_parses_instead_of_panicking() {
    // A non-ASCII hostname right after a BSD timestamp once panicked a matching worker.
    let r = parse_syslog(b"<13>Dec  3 10:00:00 h\xc3\xa9\xc3\xa9 sshd[1]: x", now()).unwrap();
    assert_eq!(r.host.as_deref(), Some("h\u{e9}\u{e9}"));
    assert_eq!(r.program, "sshd");
    assert_eq!(r.message, "x");
}

#[test]
fn foreign_bytes_anywhere_in_a_header_never_panic() {
    // Multi-byte characters (2, 3, 4 bytes), invalid UTF-8 and NUL, at every offset.
    let inserts: [&[u8]; 6] = [
        b"\xc3\xa9",
        b"\xe2\x82\xac",
        b"\xf0\x9f\x92\xa9",
        b"\xff\xfe",
        b"\x00",
        b"\xc3",
    ];
    let mut parsed = 0;
    for shape in HEADER_SHAPES {
        for at in 0..=shape.len() {
            for insert in inserts {
                let mut frame = shape[..at].to_vec();
                frame.extend_from_slice(insert);
                frame.extend_from_slice(&shape[at..]);
                if parse_syslog(&frame, now()).is_ok() {
                    parsed += 1;
                }
                // The same bytes as a file line (what `regex` reads).
                let _ = parse_line(&String::from_utf8_lossy(&frame[4..]), now());
            }
        }
    }
    // Most variants still parse: only a broken <PRI> is refused.
    assert!(parsed > 1000, "only {parsed} variants parsed");
}

#[test]
fn truncated_headers_never_panic() {
    for shape in HEADER_SHAPES {
        for end in 0..=shape.len() {
            let _ = parse_syslog(&shape[..end], now());
        }
    }
}

#[test]
fn a_host_name_taken_for_the_tag_gives_way_to_the_real_tag() {
    let now = Utc::now();
    // nginx through rsyslog: HOST and APP-NAME are the host, MSG starts with `nginx: `.
    let r = parse_syslog(
        b"<187>1 2026-12-03T21:00:25.076222+00:00 lab-server lab-server - - -  nginx: 2026/12/03 21:00:25 [error] 15057#15057: *1 user \"alice\": password mismatch, client: 198.51.100.66",
        now,
    )
    .unwrap();
    assert_eq!(r.program, "nginx");
    assert!(
        r.message.starts_with("2026/12/03 21:00:25 [error]"),
        "{}",
        r.message
    );
    let r = parse_syslog(b"<187>Dec  3 21:00:25 web1 web1 nginx[42]: hello", now).unwrap();
    assert_eq!(
        (r.program.as_str(), r.pid, r.message.as_str()),
        ("nginx", Some(42), "hello")
    );
    // A program named like its host, whose message starts with no tag, stays.
    let r = parse_syslog(b"<13>Dec  3 21:00:25 backup backup: done in 3 s", now).unwrap();
    assert_eq!(r.program, "backup");
    let r = parse_syslog(b"<13>Dec  3 21:00:25 web1 web1: key: value", now).unwrap();
    assert_eq!((r.program.as_str(), r.message.as_str()), ("key", "value"));
    // Another host's message is never touched.
    let r = parse_syslog(b"<13>Dec  3 21:00:25 web1 cron: nginx: x", now).unwrap();
    assert_eq!(r.program, "cron");
}

#[test]
fn a_host_with_control_characters_is_no_host() {
    // A sender's host name becomes a ban's origin, in the `Banned` line and notifications:
    // a forged one must not carry a line break or a terminal escape into them.
    for forged in [
        "<38>1 2026-12-06T07:00:00Z web1\nINFO sshd 1 - - Failed password",
        "<38>1 2026-12-06T07:00:00Z web1\u{1b}[2J sshd 1 - - Failed password",
        "<38>Dec  6 07:00:00 web1\rX sshd[1]: Failed password",
        "<38>Dec  6 07:00:00 web1\u{9b}2J sshd[1]: Failed password",
    ] {
        let record = parse(forged);
        assert_eq!(record.host, None, "{forged:?}");
        assert_eq!(record.program, "sshd", "{forged:?}");
    }
    assert_eq!(
        parse("<38>Dec  6 07:00:00 wéb-1.example sshd[1]: x")
            .host
            .as_deref(),
        Some("wéb-1.example")
    );
}
