//! The Journal Export Format parser (`input::journal::export::Parser`) fed in pieces, and
//! `to_record` and the cluster's `shared_key` on every entry it yields.
//!
//! Input: one control byte, then the stream. Low 5 bits: read size (1-32 bytes, 31 = the
//! whole stream at once); top 3 bits pick the limits, from tiny (so fields and entries go over
//! them and are skipped) to the largest the configuration accepts, and none. Feeding goes on
//! after an error, as a careless caller might. Asserts only that nothing panics or loops.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syslog2ban::input::journal::export::{Entry, Limits, Parser};
use syslog2ban::input::journal::shared_key;
use syslog2ban::parse::journal::to_record;

const LIMITS: [Limits; 8] = [
    Limits { max_field: 0, max_fields: 0, max_entry: 0 },
    Limits { max_field: 1, max_fields: 1, max_entry: 8 },
    Limits { max_field: 8, max_fields: 4, max_entry: 64 },
    // No limits at all (a library caller's choice): once overflowed `max_field + MAX_NAME + 1`
    // in `Parser::step`, which now saturates (see fuzz/README.md).
    Limits { max_field: usize::MAX, max_fields: usize::MAX, max_entry: usize::MAX },
    Limits { max_field: 64, max_fields: 8, max_entry: 1024 },
    Limits { max_field: 4096, max_fields: 64, max_entry: 16 * 1024 },
    Limits { max_field: 64 * 1024, max_fields: 1024, max_entry: 64 * 1024 },
    // The most the configuration allows (max_frame 16 MiB, max_entry 256 MiB).
    Limits { max_field: 16 << 20, max_fields: 1024, max_entry: 256 << 20 },
];

fn use_entry(entry: &Entry) {
    let _ = to_record(entry);
    let _ = entry.text("MESSAGE");
    let _ = shared_key(entry);
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let piece = match ctl & 0x1f {
        31 => stream.len().max(1),
        n => usize::from(n) + 1,
    };
    let mut parser = Parser::new(LIMITS[usize::from(ctl >> 5)]);
    for chunk in stream.chunks(piece) {
        let mut input = chunk;
        while let Ok(Some(entry)) = parser.feed(&mut input) {
            use_entry(&entry);
        }
    }
    if let Ok(Some(entry)) = parser.finish() {
        use_entry(&entry);
    }
    let _ = parser.skipped_fields();
    // A call after the end must not panic either.
    let _ = parser.feed(&mut &b"A=b\n\n"[..]);
});
