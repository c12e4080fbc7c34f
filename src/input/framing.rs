//! RFC 6587 stream framing, decided per frame: a first byte 1-9 followed by digits and a space
//! is an octet count (§3.4.1); anything else is non-transparent framing ended by LF, NUL or
//! CRLF (§3.4.2). This is what rsyslog and Vector do, and it lets one connection mix both.
//!
//! Owns only byte boundaries: it never looks inside a message. An oversize frame is skipped
//! (reported once) without closing the connection; a length that lies can at worst make the
//! connection wait for bytes that never come, which the idle timeout ends.

use bytes::{Buf, Bytes, BytesMut};

/// Longest accepted octet count prefix: 10 digits is far beyond any sane max_frame.
const MAX_LENGTH_DIGITS: usize = 10;

/// A frame the framer refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The frame was larger than the limit; its bytes are being skipped.
    Oversize,
}

/// What remains to skip of an oversize frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    None,
    /// An octet-counted frame: skip this many more bytes.
    Bytes(usize),
    /// An LF-framed frame: skip up to and including the next trailer.
    ToTrailer,
}

/// Incremental framer for one connection.
#[derive(Debug)]
pub struct Framer {
    max_frame: usize,
    skip: Skip,
}

impl Framer {
    /// A framer refusing frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Framer {
            max_frame,
            skip: Skip::None,
        }
    }

    /// Takes the next complete frame out of `buf`. `None` means more bytes are needed.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Option<Result<Bytes, FrameError>> {
        match self.skip {
            Skip::Bytes(n) => {
                let take = n.min(buf.len());
                buf.advance(take);
                if take < n {
                    self.skip = Skip::Bytes(n - take);
                    return None;
                }
                self.skip = Skip::None;
            }
            Skip::ToTrailer => match find_trailer(buf) {
                Some(i) => {
                    buf.advance(i + 1);
                    self.skip = Skip::None;
                }
                None => {
                    buf.clear();
                    return None;
                }
            },
            Skip::None => {}
        }
        // Stray trailers between frames (rsyslog puts an LF inside octet-counted frames,
        // others after them) are not frames.
        let leading = buf
            .iter()
            .take_while(|b| matches!(b, b'\n' | b'\r' | b'\0'))
            .count();
        buf.advance(leading);
        if buf.is_empty() {
            return None;
        }
        match octet_count(buf) {
            Prefix::Count { digits, length } => {
                if length > self.max_frame {
                    buf.advance(digits + 1);
                    self.skip = Skip::Bytes(length);
                    return Some(Err(FrameError::Oversize));
                }
                if buf.len() < digits + 1 + length {
                    return None;
                }
                buf.advance(digits + 1);
                return Some(Ok(buf.split_to(length).freeze()));
            }
            Prefix::Incomplete => return None,
            Prefix::NotCounted => {}
        }
        match find_trailer(buf) {
            Some(i) if i > self.max_frame => {
                buf.advance(i + 1);
                Some(Err(FrameError::Oversize))
            }
            Some(i) => {
                let mut frame = buf.split_to(i + 1);
                frame.truncate(i);
                if frame.last() == Some(&b'\r') {
                    frame.truncate(i - 1);
                }
                Some(Ok(frame.freeze()))
            }
            None if buf.len() > self.max_frame => {
                buf.clear();
                self.skip = Skip::ToTrailer;
                Some(Err(FrameError::Oversize))
            }
            None => None,
        }
    }

    /// At end of stream: an unterminated LF-mode message is still a message.
    pub fn finish(&mut self, buf: &mut BytesMut) -> Option<Bytes> {
        if self.skip != Skip::None {
            buf.clear();
            return None;
        }
        let text = buf.split().freeze();
        let trimmed_len = text
            .iter()
            .rposition(|b| !matches!(b, b'\n' | b'\r' | b'\0'))
            .map_or(0, |i| i + 1);
        let start = text[..trimmed_len]
            .iter()
            .position(|b| !matches!(b, b'\n' | b'\r' | b'\0'))
            .unwrap_or(trimmed_len);
        (start < trimmed_len).then(|| text.slice(start..trimmed_len))
    }
}

enum Prefix {
    Count { digits: usize, length: usize },
    Incomplete,
    NotCounted,
}

fn octet_count(buf: &[u8]) -> Prefix {
    if !matches!(buf[0], b'1'..=b'9') {
        return Prefix::NotCounted;
    }
    let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > MAX_LENGTH_DIGITS {
        return Prefix::NotCounted;
    }
    match buf.get(digits) {
        None => Prefix::Incomplete,
        Some(b' ') => {
            // At most 10 ASCII digits: parse cannot fail or overflow usize on 64-bit.
            let length = std::str::from_utf8(&buf[..digits])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(usize::MAX);
            Prefix::Count { digits, length }
        }
        Some(_) => Prefix::NotCounted,
    }
}

fn find_trailer(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|b| *b == b'\n' || *b == b'\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framer: &mut Framer, buf: &mut BytesMut) -> Vec<Result<Vec<u8>, FrameError>> {
        std::iter::from_fn(|| framer.next_frame(buf))
            .map(|r| r.map(|b| b.to_vec()))
            .collect()
    }

    fn ok(s: &str) -> Result<Vec<u8>, FrameError> {
        Ok(s.as_bytes().to_vec())
    }

    #[test]
    fn octet_counted_with_and_without_inner_lf() {
        let mut f = Framer::new(1024);
        let mut buf = BytesMut::from(&b"6 <38>a\n5 <38>b3 <1>"[..]);
        assert_eq!(
            frames(&mut f, &mut buf),
            vec![ok("<38>a\n"), ok("<38>b"), ok("<1>")]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn lf_nul_and_crlf_trailers() {
        let mut f = Framer::new(1024);
        let mut buf = BytesMut::from(&b"<38>a\n<38>b\0<38>c\r\n\n\n<38>d"[..]);
        assert_eq!(
            frames(&mut f, &mut buf),
            vec![ok("<38>a"), ok("<38>b"), ok("<38>c")]
        );
        assert_eq!(f.finish(&mut buf).as_deref(), Some(&b"<38>d"[..]));
    }

    #[test]
    fn modes_mix_on_one_connection() {
        let mut f = Framer::new(1024);
        let mut buf = BytesMut::from(&b"<38>lf one\n9 <38>count<38>lf two\n"[..]);
        assert_eq!(
            frames(&mut f, &mut buf),
            vec![ok("<38>lf one"), ok("<38>count"), ok("<38>lf two")]
        );
    }

    #[test]
    fn split_reads_reassemble() {
        let whole = b"12 <38>hello wo<38>next line\n";
        for cut in 0..whole.len() {
            let mut f = Framer::new(1024);
            let mut buf = BytesMut::from(&whole[..cut]);
            let mut got = frames(&mut f, &mut buf);
            buf.extend_from_slice(&whole[cut..]);
            got.extend(frames(&mut f, &mut buf));
            assert_eq!(
                got,
                vec![ok("<38>hello wo"), ok("<38>next line")],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn oversize_counted_frame_is_skipped_and_next_frame_survives() {
        let mut f = Framer::new(8);
        let mut buf = BytesMut::from(&b"20 <38>0123456789abcdef4 <1>x"[..]);
        assert_eq!(
            frames(&mut f, &mut buf),
            vec![Err(FrameError::Oversize), ok("<1>x")]
        );
        // Skipping across reads.
        let mut buf = BytesMut::from(&b"20 <38>01234"[..]);
        assert_eq!(frames(&mut f, &mut buf), vec![Err(FrameError::Oversize)]);
        buf.extend_from_slice(b"56789abcdef4 <1>y");
        assert_eq!(frames(&mut f, &mut buf), vec![ok("<1>y")]);
    }

    #[test]
    fn oversize_lf_frame_is_skipped_to_its_trailer() {
        let mut f = Framer::new(8);
        let mut buf = BytesMut::from(&b"<38>0123456789"[..]);
        assert_eq!(frames(&mut f, &mut buf), vec![Err(FrameError::Oversize)]);
        buf.extend_from_slice(b"more junk\n<1>ok\n");
        assert_eq!(frames(&mut f, &mut buf), vec![ok("<1>ok")]);
        let mut buf = BytesMut::from(&b"<38>0123456789\n<1>ok\n"[..]);
        assert_eq!(
            frames(&mut f, &mut buf),
            vec![Err(FrameError::Oversize), ok("<1>ok")]
        );
    }

    #[test]
    fn a_length_that_lies_short_resynchronises_on_the_next_trailer() {
        let mut f = Framer::new(1024);
        // Claims 4 bytes but the message is longer: the rest becomes an LF-framed frame.
        let mut buf = BytesMut::from(&b"4 <38>abc\n<1>next\n"[..]);
        assert_eq!(
            frames(&mut f, &mut buf),
            vec![ok("<38>"), ok("abc"), ok("<1>next")]
        );
    }

    #[test]
    fn a_length_that_lies_long_only_waits() {
        let mut f = Framer::new(1024);
        let mut buf = BytesMut::from(&b"900 <38>short"[..]);
        assert_eq!(frames(&mut f, &mut buf), vec![]);
        assert_eq!(buf.len(), 13, "nothing consumed while waiting");
        // Absurd lengths are oversize, not an allocation.
        let mut buf = BytesMut::from(&b"9999999999 <38>x"[..]);
        assert_eq!(frames(&mut f, &mut buf), vec![Err(FrameError::Oversize)]);
    }

    #[test]
    fn digits_without_space_are_lf_framed() {
        let mut f = Framer::new(1024);
        let mut buf = BytesMut::from(&b"2026-11-25 message\n"[..]);
        assert_eq!(frames(&mut f, &mut buf), vec![ok("2026-11-25 message")]);
    }
}
