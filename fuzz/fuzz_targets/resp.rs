//! Replies from the cluster's engine (`cluster::resp`): the bytes a Redis-compatible server,
//! or whoever answers on its address, sends back. Every whole reply at the start of the
//! input is read both ways the connection reads them (built for calls, indexed in place for
//! the follower), and each is walked as the follower walks an XREAD reply: its entries, their
//! fields, and the shared ban or lift they make.
//!
//! Input: the bytes as they arrive. Asserts only that nothing panics or loops.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syslog2ban::cluster::resp::{read_whole, Frame};
use syslog2ban::cluster::{from_node, read_entry, stream_entries, Published};

fn walk(entries: Frame<'_>) {
    let mut fields = Vec::new();
    for entry in entries.items() {
        if read_entry(entry, &mut fields).is_some() {
            let _ = from_node(&fields, "a");
            let _ = Published::from_fields(&fields);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = read_whole(data, |reply| {
        // As an XREAD reply, and as a list of entries itself (a fuzzer finds both shapes).
        if let Some(entries) = stream_entries(reply) {
            walk(entries);
        }
        walk(reply);
        let _ = reply.text();
    });
});
