use super::*;

#[test]
fn mixed_input_lines() {
    let filter = Filter::compile(
        &[r"^Failed password for (?P<user>\S+) from <HOST> port \d+ ssh2$".into()],
        &[r"for monitor ".into()],
    )
    .unwrap();
    let now = Utc::now();
    let lines = [
        "# comment",
        "",
        "Nov 25 08:32:44 web1 sshd[1]: Failed password for root from 198.51.100.66 port 22 ssh2",
        "Nov 25 08:32:44 web1 sshd[1]: Failed password for monitor from 198.51.100.67 port 22 ssh2",
        "Nov 25 08:32:44 web1 cron[2]: something else",
        "<38>1 2026-11-25T08:32:44Z web1 sshd 1 - - Failed password for bob from 2001:db8::1 port 2 ssh2",
    ];
    let mut summary = Summary::default();
    let results: Vec<LineResult> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let r = check_line(&filter, i + 1, l, now);
            tally(&mut summary, (&r).into(), l, filter.failregex_count());
            r
        })
        .collect();
    assert_eq!(results[2].host, Some("198.51.100.66".parse().unwrap()));
    assert_eq!(results[2].user.as_deref(), Some("root"));
    assert!(results[3].ignored && !results[3].matched);
    assert!(!results[4].matched);
    assert_eq!(results[5].host, Some("2001:db8::1".parse().unwrap()));
    assert_eq!(
        summary,
        Summary {
            lines: 6,
            matched: 2,
            ignored: 1,
            missed: 1,
            per_regex: vec![2]
        }
    );
    let json = serde_json::to_string(&results[2]).unwrap();
    assert_eq!(
        json,
        r#"{"line":3,"matched":true,"host":"198.51.100.66","user":"root","ignored":false}"#
    );
}

#[test]
fn lines_like_bufread_split() {
    let split = |text: &[u8]| -> Vec<Vec<u8>> {
        std::io::BufRead::split(text, b'\n')
            .map(|l| l.unwrap())
            .collect()
    };
    for text in [
        &b""[..],
        b"\n",
        b"\n\n",
        b"a",
        b"a\n",
        b"a\nb",
        b"a\n\nb\n",
        b"a\r\nb\r\n",
        b"\na\n\n\n",
    ] {
        let ours: Vec<Vec<u8>> = lines(text).map(<[u8]>::to_vec).collect();
        assert_eq!(ours, split(text), "{text:?}");
    }
}

fn test_filter() -> Filter {
    Filter::compile(
        &[
            r"^Failed password for (?P<user>\S+) from <HOST> port \d+ ssh2$".into(),
            r"^Invalid user (?P<user>\S*) from <HOST>$".into(),
        ],
        &[r"for monitor ".into()],
    )
    .unwrap()
}

/// Lines of every kind: matches, ignored, comments, blanks, CRLF, invalid UTF-8, and a
/// last line without newline.
fn test_text() -> Vec<u8> {
    let mut text = Vec::new();
    for i in 0..300 {
        let line = match i % 7 {
            0 => format!("Nov 25 08:32:44 web1 sshd[1]: Failed password for u{i} from 198.51.100.{} port 22 ssh2\n", i % 250),
            1 => format!("Nov 25 08:32:44 web1 sshd[1]: Invalid user x{i} from 2001:db8::{i:x}\n"),
            2 => "Nov 25 08:32:44 web1 sshd[1]: Failed password for monitor from 198.51.100.1 port 22 ssh2\n".into(),
            3 => "# comment\n".into(),
            4 => "\n".into(),
            5 => "Nov 25 08:32:44 web1 cron[2]: caf\u{e9} \r\n".into(),
            // Invalid UTF-8 goes through the lossy conversion.
            _ => "Nov 25 08:32:44 web1 sshd[1]: bad byte\n".into(),
        };
        text.extend_from_slice(line.as_bytes());
        if i % 7 == 6 {
            text.pop();
            text.extend_from_slice(b"\xff\n");
        }
    }
    text.extend_from_slice(b"Nov 25 08:32:44 web1 sshd[1]: Invalid user  from 198.51.100.9");
    text
}

/// A reader that hands out a few bytes per call, as a pipe may.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.1.min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn parallel_reader_equals_one_sequential_chunk() {
    let filter = test_filter();
    let now = Utc::now();
    let text = test_text();
    for listing in [
        Listing::default(),
        Listing {
            json: true,
            ..Listing::default()
        },
        Listing {
            json: false,
            matched: true,
            missed: true,
        },
    ] {
        let mut whole = check_chunk(&filter, &text, 1, now, listing).unwrap();
        assert_eq!(whole.summary.lines, 301);
        let json = std::mem::take(&mut whole.json);
        for threads in [1, 2, 3] {
            // Pieces smaller than a line, of a few lines, and bigger than the input.
            for piece in [1, 7, 100, 1000, 1 << 20] {
                for trickle in [3, 4096] {
                    let mut out = Vec::new();
                    let report = check_reader(
                        &filter,
                        Trickle(&text, trickle),
                        &mut out,
                        now,
                        listing,
                        Parallel { threads, piece },
                    )
                    .unwrap();
                    let case =
                        format!("{listing:?} {threads} threads, piece {piece}, reads of {trickle}");
                    assert_eq!(report, whole, "{case}");
                    assert!(out == json, "{case}");
                }
            }
        }
    }
}

#[test]
fn parallel_reader_on_empty_input_and_read_errors() {
    let filter = test_filter();
    let parallel = Parallel {
        threads: 2,
        piece: 16,
    };
    let mut out = Vec::new();
    let empty = check_reader(
        &filter,
        &b""[..],
        &mut out,
        Utc::now(),
        Listing::default(),
        parallel,
    );
    assert_eq!(empty.unwrap(), ChunkReport::default());

    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            self.0 -= 1;
            let line = b"a line\n";
            let n = line.len().min(buf.len());
            buf[..n].copy_from_slice(&line[..n]);
            Ok(n)
        }
    }
    let broken = check_reader(
        &filter,
        Broken(50),
        &mut out,
        Utc::now(),
        Listing::default(),
        parallel,
    );
    assert!(matches!(broken, Err(CheckError::Read(_))), "{broken:?}");
}

#[test]
fn merge_adds_counts_and_tolerates_empty_parts() {
    let mut a = Summary {
        lines: 3,
        matched: 1,
        ignored: 1,
        missed: 1,
        per_regex: vec![1, 0],
    };
    a.merge(&Summary::default());
    let b = Summary {
        lines: 2,
        matched: 2,
        ignored: 0,
        missed: 0,
        per_regex: vec![0, 2],
    };
    let mut empty = Summary::default();
    empty.merge(&a);
    empty.merge(&b);
    assert_eq!(
        empty,
        Summary {
            lines: 5,
            matched: 3,
            ignored: 1,
            missed: 1,
            per_regex: vec![1, 2]
        }
    );
}
