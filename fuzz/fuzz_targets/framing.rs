//! RFC 6587 stream framing (`input::framing::Framer`) fed in pieces, as a TCP or TLS
//! connection delivers them.
//!
//! Input: one control byte, then the stream. The control byte's low 5 bits give the read size
//! (1-32 bytes) and its top 3 bits the frame limit (0 bytes to 64 KiB), so small limits and
//! split reads are both reached. Each frame's sender is looked up as the fanout to the
//! matching workers does (`input::header_sender`). Asserts only that nothing panics or loops.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use syslog2ban::input::framing::Framer;
use syslog2ban::input::header_sender;

const MAX_FRAMES: [usize; 8] = [0, 1, 8, 64, 256, 1024, 8192, 65536];

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(ctl & 0x1f) + 1;
    let max_frame = MAX_FRAMES[usize::from(ctl >> 5)];
    let mut framer = Framer::new(max_frame);
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = framer.next_frame(&mut buf) {
            if let Ok(frame) = frame {
                let _ = header_sender(&frame);
            }
        }
    }
    let _ = framer.finish(&mut buf);
    // The whole stream in one read, as a datagram-sized buffer would give it.
    let mut framer = Framer::new(max_frame);
    let mut buf = BytesMut::from(stream);
    while framer.next_frame(&mut buf).is_some() {}
    // A datagram is one frame as it came.
    let _ = header_sender(stream);
    let _ = framer.finish(&mut buf);
});
