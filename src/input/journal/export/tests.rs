use super::*;

const LIMITS: Limits = Limits {
    max_field: 4096,
    max_fields: 64,
    max_entry: 16 * 1024,
};

use crate::testing::capture;

/// Feeds `data` in pieces of `piece` bytes; all entries and the final result.
fn parse_in_pieces(data: &[u8], piece: usize, limits: Limits) -> Result<Vec<Entry>, JournalError> {
    let mut parser = Parser::new(limits);
    let mut entries = Vec::new();
    for chunk in data.chunks(piece.max(1)) {
        let mut rest = chunk;
        while let Some(entry) = parser.feed(&mut rest)? {
            entries.push(entry);
        }
        assert!(rest.is_empty());
    }
    entries.extend(parser.finish()?);
    Ok(entries)
}

fn parse_all(data: &[u8]) -> Result<Vec<Entry>, JournalError> {
    parse_in_pieces(data, data.len(), LIMITS)
}

#[test]
fn sample_export_has_three_sshd_entries_at_any_split() {
    let data = capture("sample.export");
    let whole = parse_all(&data).unwrap();
    assert_eq!(whole.len(), 3);
    for piece in [1, 2, 7, 8, 9, 64, 333] {
        assert_eq!(
            parse_in_pieces(&data, piece, LIMITS).unwrap(),
            whole,
            "piece {piece}"
        );
    }
    assert_eq!(whole[0].text("SYSLOG_IDENTIFIER").as_deref(), Some("sshd"));
    assert_eq!(
        whole[2].text("MESSAGE").as_deref(),
        Some("Invalid user test from 198.51.100.67 port 50000")
    );
}

#[test]
fn binary_message_field_at_any_split() {
    let data = capture("bin.export");
    for piece in [1, 3, 8, 13, data.len()] {
        let entries = parse_in_pieces(&data, piece, LIMITS).unwrap();
        assert_eq!(entries.len(), 1, "piece {piece}");
        assert_eq!(
            entries[0].get("MESSAGE"),
            Some(&b"Failed password for root from 198.51.100.66 port 1 ssh2\nsecond line"[..])
        );
    }
}

#[test]
fn blank_lines_between_entries_and_missing_final_blank_line() {
    let entries = parse_all(b"\n\nA=1\n\n\n\nB=2\n").unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].get("B"), Some(&b"2"[..]));
    assert_eq!(entries[0].text("A").as_deref(), Some("1"));
}

#[test]
fn value_may_contain_equals_signs() {
    let entries = parse_all(b"MESSAGE=a=b=c\n\n").unwrap();
    assert_eq!(entries[0].get("MESSAGE"), Some(&b"a=b=c"[..]));
}

fn binary(name: &str, len: u64, data: &[u8], end: &[u8]) -> Vec<u8> {
    let mut out = format!("{name}\n").into_bytes();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(end);
    out
}

#[test]
fn binary_length_that_lies_is_an_error() {
    let data = binary("MESSAGE", 3, b"hello", b"\n\n");
    assert_eq!(
        parse_all(&data),
        Err(JournalError::BadBinaryLength { len: 3 })
    );
}

#[test]
fn truncated_binary_field_is_an_error() {
    for cut in [b"MESSAGE\n".len() + 3, b"MESSAGE\n".len() + 8 + 2] {
        let data = binary("MESSAGE", 5, b"hello", b"\n\n");
        assert_eq!(
            parse_all(&data[..cut]),
            Err(JournalError::Truncated),
            "cut {cut}"
        );
    }
    assert_eq!(
        parse_all(b"MESSAGE=unterminated"),
        Err(JournalError::Truncated)
    );
}

/// Parses with a fresh parser; the entries and the count of skipped fields.
fn parse_counting(data: &[u8], limits: Limits) -> (Vec<Entry>, u64) {
    let mut parser = Parser::new(limits);
    let mut entries = Vec::new();
    let mut rest = data;
    while let Some(entry) = parser.feed(&mut rest).unwrap() {
        entries.push(entry);
    }
    entries.extend(parser.finish().unwrap());
    (entries, parser.skipped_fields())
}

fn names(entries: &[Entry]) -> Vec<Vec<&str>> {
    entries
        .iter()
        .map(|e| e.fields.iter().map(|f| f.name.as_str()).collect())
        .collect()
}

#[test]
fn oversize_binary_field_is_skipped_without_buffering_it() {
    // A core dump's worth of binary data between two ordinary fields, at any split.
    let dump = vec![0u8; 100_000];
    let data = [
        b"A=1\n".as_slice(),
        &binary("COREDUMP", dump.len() as u64, &dump, b"\n"),
        b"MESSAGE=after\n\nB=2\n\n",
    ]
    .concat();
    let (entries, skipped) = parse_counting(&data, LIMITS);
    assert_eq!(names(&entries), [vec!["A", "MESSAGE"], vec!["B"]]);
    assert_eq!(skipped, 1);
    for piece in [1, 7, 4096] {
        let parsed = parse_in_pieces(&data, piece, LIMITS).unwrap();
        assert_eq!(parsed, entries, "piece {piece}");
    }
    let mut parser = Parser::new(LIMITS);
    let mut rest = &data[..50_000];
    assert_eq!(parser.feed(&mut rest), Ok(None));
    assert!(
        parser.value.capacity() <= LIMITS.max_field,
        "nothing of it was kept"
    );
    // A length beyond the stream is read to the end, which is inside the field.
    let lying = binary("MESSAGE", u64::MAX, b"", b"");
    assert_eq!(parse_all(&lying), Err(JournalError::Truncated));
    // Its closing newline is still checked.
    let bad = binary("COREDUMP", 5000, &[0u8; 5001], b"\n");
    assert_eq!(
        parse_all(&bad),
        Err(JournalError::BadBinaryLength { len: 5000 })
    );
}

#[test]
fn long_text_line_is_skipped_without_buffering_it() {
    let mut parser = Parser::new(LIMITS);
    let mut first = &b"MESSAGE="[..];
    assert_eq!(parser.feed(&mut first), Ok(None));
    let block = vec![b'x'; 1000];
    for _ in 0..10 {
        assert_eq!(parser.feed(&mut &block[..]), Ok(None));
        assert!(parser.line.len() <= 4096 + MAX_NAME + 1);
    }
    let mut end = &b"\nB=2\n\n"[..];
    let entry = parser.feed(&mut end).unwrap().unwrap();
    assert_eq!(names(&[entry]), [vec!["B"]]);
    assert_eq!(parser.skipped_fields(), 1);
    // A line that long with no `=` in a name's reach is not a field at all.
    let garbage = vec![b'x'; 5000];
    assert_eq!(parse_all(&garbage), Err(JournalError::BadFieldName));
    let mut bad_name = b"lower=".to_vec();
    bad_name.extend_from_slice(&garbage);
    assert_eq!(parse_all(&bad_name), Err(JournalError::BadFieldName));
}

#[test]
fn field_and_entry_caps_skip_fields_and_keep_the_entry() {
    let limits = Limits {
        max_field: 10,
        max_fields: 3,
        max_entry: 20,
    };
    let run = |d: &[u8]| {
        let counted = parse_counting(d, limits);
        for piece in [1, 4] {
            assert_eq!(parse_in_pieces(d, piece, limits).unwrap(), counted.0);
        }
        counted
    };
    assert_eq!(names(&run(b"A=1\nB=2\nC=3\n\n").0), [vec!["A", "B", "C"]]);
    let (entries, skipped) = run(b"A=1\nB=2\nC=3\nD=4\n\n");
    assert_eq!((names(&entries), skipped), (vec![vec!["A", "B", "C"]], 1));
    // A value over max_field (but short enough to be read as a line).
    let (entries, skipped) = run(b"A=12345678901\nB=1\n\n");
    assert_eq!((names(&entries), skipped), (vec![vec!["B"]], 1));
    // An entry whose only field was skipped is no entry.
    assert_eq!(run(b"A=12345678901\n\n"), (vec![], 1));
    let (entries, skipped) = run(b"AAAA=123456789\nBBBB=123456789\n\n");
    assert_eq!((names(&entries), skipped), (vec![vec!["AAAA"]], 1));
    // The entry size restarts with each entry.
    assert_eq!(run(b"AAAA=123456789\n\nBBBB=123456789\n\n").0.len(), 2);
    assert_eq!(
        run(&binary("AAAAAAAAAA", 10, b"0123456789", b"\n\n")).0,
        vec![Entry {
            fields: vec![Field {
                name: "AAAAAAAAAA".into(),
                value: b"0123456789".to_vec()
            }]
        }]
    );
    let (entries, skipped) = run(&[
        b"BBBBBBBBBBBB=1\n".as_slice(),
        &binary("AAAAAAAAAA", 10, b"0123456789", b"\n\n"),
    ]
    .concat());
    assert_eq!((names(&entries), skipped), (vec![vec!["BBBBBBBBBBBB"]], 1));
}

#[test]
fn bad_field_names() {
    for data in [
        &b"GET /upload HTTP/1.1\r\n\r\n"[..],
        b"=value\n\n",
        b"lower=x\n\n",
        b"1ABC=x\n\n",
        b"MESSAGE\r\n",
    ] {
        assert_eq!(
            parse_all(data),
            Err(JournalError::BadFieldName),
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
    let long = format!("{}=x\n\n", "A".repeat(65));
    assert_eq!(parse_all(long.as_bytes()), Err(JournalError::BadFieldName));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic fuzz: every prefix and a few mutations of the captures.
    let mut corpus = vec![capture("sample.export"), capture("bin.export")];
    let base = capture("bin.export");
    for i in 0..base.len() {
        let mut m = base.clone();
        m[i] ^= 0xff;
        corpus.push(m);
    }
    for data in &corpus {
        for cut in 0..data.len() {
            let _ = parse_in_pieces(&data[..cut], 5, LIMITS);
        }
    }
}

#[test]
fn limits_near_usize_max_mean_no_limit_instead_of_overflowing() {
    // Found by the `journal` fuzz target: max_field + name length overflowed.
    let mut parser = Parser::new(Limits {
        max_field: usize::MAX,
        max_fields: 1,
        max_entry: 1,
    });
    let _ = parser.feed(&mut &b"A=b\n"[..]);
    // A binary field whose claimed length is near u64::MAX (found by the same target).
    let mut parser = Parser::new(Limits {
        max_field: usize::MAX,
        max_fields: usize::MAX,
        max_entry: usize::MAX,
    });
    let mut input = b"NAME\n".to_vec();
    input.extend_from_slice(&u64::MAX.to_le_bytes());
    input.extend_from_slice(b"xyz");
    let _ = parser.feed(&mut &input[..]);
}
