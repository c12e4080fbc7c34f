//! Parsing: one frame → LogRecord, for each capture shape in tests/fixtures/captures/
//! (the frames below are copied byte for byte from those files), plus the classic file line
//! that `syslog2ban regex` reads.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use syslog2ban::parse::{parse_line, parse_syslog};

const SHAPES: &[(&str, &str)] = &[
    // sshd-rsyslog-rfc5424-octet-counted.bin (rsyslog omfwd, RSYSLOG_SyslogProtocol23Format)
    (
        "rsyslog_rfc5424",
        "<38>1 2026-11-25T08:32:44.640342+00:00 nl-server sshd 16313 - -  Failed password for nltest from 198.51.100.66 port 54290 ssh2",
    ),
    // sshd-rsyslog-rfc3164-udp.txt (rsyslog omfwd default, with host)
    (
        "rfc3164_host",
        "<38>Nov 25 08:32:44 nl-server sshd[16313]: Failed password for nltest from 198.51.100.66 port 54290 ssh2",
    ),
    // sshd-glibc-devlog-datagrams-concatenated.bin (glibc syslog(3) to /dev/log, no host)
    (
        "glibc_hostless",
        "<38>Nov 25 08:33:27 sshd[18458]: Failed password for nltest from 198.51.100.66 port 53290 ssh2",
    ),
    // logger-tcp.bin (util-linux logger --rfc5424, structured data timeQuality)
    (
        "logger_rfc5424_sd",
        "<38>1 2026-11-25T08:36:11.999714+00:00 vm sshd - - [timeQuality tzKnown=\"1\" isSynced=\"0\"] Failed password for root from 198.51.100.66 port 1234 ssh2",
    ),
    // logger-tcp.bin (logger --rfc5424=notq,notime)
    ("logger_rfc5424_notime", "<38>1 - vm sshd - - - rfc5424 notq notime, no octet-count"),
    // logger-udp.txt (logger --rfc3164 with pid)
    ("logger_rfc3164_pid", "<36>Nov 25 08:36:06 vm sshd[29909]: udp rfc3164 with pid"),
    // logger-udp.txt (logger --rfc5424 with msgid and two SD elements)
    (
        "logger_rfc5424_msgid_sd",
        "<13>1 2026-11-25T08:36:06.735228+00:00 vm sshd - AUTHFAIL [timeQuality tzKnown=\"1\" isSynced=\"0\"][ex@32473 ip=\"198.51.100.66\"] udp rfc5424 with SD",
    ),
    // rsyslog-omfwd-captures.txt (RSYSLOG_ForwardFormat: ISO timestamp in an RFC 3164 frame)
    (
        "rsyslog_forward_iso",
        "<38>2026-11-25T08:35:56+00:00 vm sshd[29553]: Failed password for root from 203.0.113.5 port 4242 ssh2",
    ),
];

fn bench(c: &mut Criterion) {
    let now = Utc::now();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    for (name, frame) in SHAPES {
        let record = parse_syslog(frame.as_bytes(), now).expect("capture shape parses");
        assert!(!record.program.is_empty(), "{name}: {record:?}");
        group.bench_function(*name, |b| {
            b.iter(|| parse_syslog(std::hint::black_box(frame.as_bytes()), now))
        });
    }
    let line = "Nov 25 08:32:44 nl-server sshd[16313]: Failed password for nltest from 198.51.100.66 port 54290 ssh2";
    assert_eq!(
        parse_line(line, now).map(|r| r.program).as_deref(),
        Ok("sshd")
    );
    group.bench_function("file_line", |b| {
        b.iter(|| parse_line(std::hint::black_box(line), now))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
