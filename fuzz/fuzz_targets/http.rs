//! The journal-upload HTTP parser (`input::http`): the request head, then the body as the
//! upload handler delimits it (chunked or Content-Length), fed into a journal parser.
//!
//! Input: one control byte, then the connection's bytes. Low 5 bits: read size (1-32 bytes,
//! 31 = everything at once). Bit 7 set: the bytes are a chunked body only (no head), to reach
//! the chunk decoder directly. Asserts only that nothing panics or loops.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use syslog2ban::input::http::{parse_head, Body, BodyEvent};
use syslog2ban::input::journal::export::{Limits, Parser};
use syslog2ban::parse::journal::to_record;

const LIMITS: Limits = Limits {
    max_field: 4096,
    max_fields: 64,
    max_entry: 16 * 1024,
};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let piece = match ctl & 0x1f {
        31 => stream.len().max(1),
        n => usize::from(n) + 1,
    };
    let mut reads = stream.chunks(piece);
    let mut buf = BytesMut::new();
    let mut body = if ctl & 0x80 != 0 {
        Body::chunked()
    } else {
        let request = loop {
            match parse_head(&mut buf) {
                Ok(Some(request)) => break request,
                Ok(None) => match reads.next() {
                    Some(read) => buf.extend_from_slice(read),
                    None => return,
                },
                Err(_) => return,
            }
        };
        let _ = request.keep_alive();
        let _ = request.header("content-type");
        // As `input::journal::upload` chooses.
        match (
            request.header("transfer-encoding"),
            request.header("content-length"),
        ) {
            (Some(te), _) if te.eq_ignore_ascii_case("chunked") => Body::chunked(),
            (Some(_), _) => return,
            (None, Some(len)) => match len.parse::<u64>() {
                Ok(len) => Body::Length(len),
                Err(_) => return,
            },
            (None, None) => return,
        }
    };
    let mut journal = Parser::new(LIMITS);
    loop {
        match body.next(&mut buf) {
            Ok(BodyEvent::Data(bytes)) => {
                let mut input = &bytes[..];
                while let Ok(Some(entry)) = journal.feed(&mut input) {
                    let _ = to_record(&entry);
                }
            }
            Ok(BodyEvent::NeedMore) => match reads.next() {
                Some(read) => buf.extend_from_slice(read),
                None => break,
            },
            Ok(BodyEvent::End) => break,
            Err(_) => break,
        }
    }
    let _ = journal.finish();
    // What follows the body is the next request on a kept-alive connection.
    for read in reads {
        buf.extend_from_slice(read);
    }
    let _ = parse_head(&mut buf);
});
