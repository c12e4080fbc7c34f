//! Every capture in `tests/fixtures/captures/` (raw bytes from real rsyslog, sshd via glibc,
//! logger) goes through the real framer and parser and yields the right program, pid, host and
//! message.

use std::path::PathBuf;

use bytes::BytesMut;
use chrono::Utc;
use syslog2ban::input::framing::Framer;
use syslog2ban::parse::{parse_syslog, LogRecord};

fn capture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/captures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Frames a TCP capture the way a connection would, including the end-of-stream flush.
fn tcp_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut framer = Framer::new(64 * 1024);
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = framer.next_frame(&mut buf) {
        frames.push(frame.expect("no oversize frames in captures").to_vec());
    }
    frames.extend(framer.finish(&mut buf).map(|b| b.to_vec()));
    frames
}

/// `FROM addr LEN n` headers followed by the datagram on the next line.
fn datagrams(text: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        if header.starts_with("FROM ") {
            out.push(
                lines
                    .next()
                    .expect("datagram after header")
                    .as_bytes()
                    .to_vec(),
            );
        }
    }
    out
}

fn parse(frame: &[u8]) -> LogRecord {
    parse_syslog(frame, Utc::now())
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(frame)))
}

fn assert_sshd(r: &LogRecord, host: Option<&str>) {
    assert_eq!(r.program, "sshd", "{r:?}");
    assert_eq!(r.host.as_deref(), host, "{r:?}");
    assert!(
        !r.message.starts_with(' ') && !r.message.ends_with('\n'),
        "{r:?}"
    );
    assert!(!r.message.is_empty(), "{r:?}");
}

#[test]
fn rsyslog_rfc5424_octet_counted_tcp() {
    let frames = tcp_frames(&capture("sshd-rsyslog-rfc5424-octet-counted.bin"));
    assert!(frames.len() > 30, "{} frames", frames.len());
    for frame in &frames {
        let r = parse(frame);
        assert_sshd(&r, Some("nl-server"));
        assert!(r.pid.is_some(), "{r:?}");
        assert!(r.timestamp.is_some());
    }
    let first = parse(&frames[1]);
    assert_eq!(first.pid, Some(16313));
    assert_eq!(
        first.message,
        "Failed password for nltest from 198.51.100.66 port 54290 ssh2"
    );
}

#[test]
fn rsyslog_rfc3164_udp() {
    let frames = datagrams(&capture("sshd-rsyslog-rfc3164-udp.txt"));
    assert!(frames.len() > 30);
    for frame in &frames {
        let r = parse(frame);
        assert_sshd(&r, Some("nl-server"));
        assert!(r.pid.is_some());
    }
    let r = parse(&frames[1]);
    assert_eq!(r.pid, Some(16313));
    assert_eq!(
        r.message,
        "Failed password for nltest from 198.51.100.66 port 54290 ssh2"
    );
}

#[test]
fn glibc_devlog_datagrams_have_no_host() {
    let bytes = capture("sshd-glibc-devlog-datagrams-concatenated.bin");
    // The capture concatenates datagrams; each starts at "<NN>".
    let text = String::from_utf8_lossy(&bytes);
    let starts: Vec<usize> = text
        .match_indices("<3")
        .chain(text.match_indices("<8"))
        .map(|(i, _)| i)
        .collect();
    let mut starts = starts;
    starts.sort();
    starts.push(text.len());
    let frames: Vec<&str> = starts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
    assert_eq!(frames.len(), 5);
    for frame in &frames {
        let r = parse(frame.as_bytes());
        assert_sshd(&r, None);
    }
    let r = parse(frames[3].as_bytes());
    assert_eq!(r.pid, Some(18458));
    assert_eq!(
        r.message,
        "Failed password for nltest from 198.51.100.66 port 53290 ssh2"
    );
}

#[test]
fn rsyslog_tls_decrypted_stream() {
    let frames = tcp_frames(&capture("rsyslog-gtls-octet-counted-decrypted.bin"));
    assert_eq!(frames.len(), 3);
    let r = parse(&frames[0]);
    assert_sshd(&r, Some("nl-server"));
    assert_eq!(r.pid, Some(29055));
    assert_eq!(
        r.message,
        "Failed password for invalid user tlsuser from 198.51.100.66 port 4444 ssh2"
    );
    assert_eq!(parse(&frames[1]).message, "second message");
}

#[test]
fn logger_tcp_mixed_framing() {
    let frames = tcp_frames(&capture("logger-tcp.bin"));
    let records: Vec<LogRecord> = frames.iter().map(|f| parse(f)).collect();
    let messages: Vec<&str> = records.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "Failed password for root from 198.51.100.66 port 1234 ssh2",
            "rfc5424 notq notime, no octet-count",
            "rfc3164 over tcp",
            "short options, default format over tcp",
        ]
    );
    for r in &records {
        assert_sshd(r, Some("vm"));
    }
}

#[test]
fn logger_udp_variants() {
    let frames = datagrams(&capture("logger-udp.txt"));
    let records: Vec<LogRecord> = frames.iter().map(|f| parse(f)).collect();
    assert_eq!(records.len(), 3);
    for r in &records {
        assert_sshd(r, Some("vm"));
    }
    assert_eq!(records[1].pid, Some(29909));
    assert_eq!(records[1].message, "udp rfc3164 with pid");
    assert_eq!(records[2].message, "udp rfc5424 with SD");
}

#[test]
fn rsyslog_omfwd_formats() {
    // Each line: PORT b'...python bytes repr...'; only \n escapes occur.
    let text = String::from_utf8_lossy(&capture("rsyslog-omfwd-captures.txt")).to_string();
    let mut seen = 0;
    for line in text.lines() {
        let (port, repr) = line.split_once(' ').expect("port and bytes");
        let body = repr
            .trim_start_matches("b'")
            .trim_end_matches('\'')
            .replace("\\n", "\n");
        let frames: Vec<Vec<u8>> = if port == "15144" {
            body.split(" || ").map(|d| d.as_bytes().to_vec()).collect()
        } else {
            tcp_frames(body.as_bytes())
        };
        assert_eq!(frames.len(), 2, "{port}");
        let sshd = parse(&frames[0]);
        assert_sshd(&sshd, Some("vm"));
        assert_eq!(sshd.pid, Some(29553));
        assert_eq!(
            sshd.message,
            "Failed password for root from 203.0.113.5 port 4242 ssh2"
        );
        let sudo = parse(&frames[1]);
        assert_eq!(sudo.program, "sudo");
        assert_eq!(sudo.message, "multi line#012second line");
        seen += 1;
    }
    assert_eq!(seen, 4);
}
