//! The line reassembler: WebSocket messages in, complete lines out (PROTOCOL.md §3,
//! D12).
//!
//! Text and binary messages share one byte buffer per connection, so a multi-byte
//! character split across messages is whole again before a line is decoded. The
//! buffer never holds more than `max_line_bytes` of an unfinished line: an overlong
//! line is reported once and discarded up to and including its `\n`, also when it
//! spans many messages.

use crate::json::py_strip;

/// One item the reassembler yields, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A complete, non-blank line without its `\n`.
    Data(Vec<u8>),
    /// A line longer than the limit was (or is being) discarded.
    TooLarge {
        /// Bytes of the line seen when it crossed the limit.
        seen: usize,
    },
}

/// One item of [`LineBuffer::next_piece`], borrowing instead of copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A complete, non-blank line lying wholly inside the message: `message[range]`.
    /// A line of a text message is then a `&str` without validating it again.
    Within(std::ops::Range<usize>),
    /// A complete, non-blank line joined with bytes of earlier messages.
    Joined(&'a [u8]),
    /// A line longer than the limit was (or is being) discarded.
    TooLarge {
        /// Bytes of the line seen when it crossed the limit.
        seen: usize,
    },
}

/// Per-connection reassembly state.
#[derive(Debug, Clone)]
pub struct LineBuffer {
    buf: Vec<u8>,
    max_line_bytes: usize,
    discarding: bool,
    /// `buf` holds the line last handed out as [`Piece::Joined`]; it is released
    /// on the next call (a partial line never keeps its memory once complete).
    handed_out: bool,
}

impl LineBuffer {
    /// A buffer for lines of at most `max_line_bytes` bytes (without the `\n`).
    pub fn new(max_line_bytes: usize) -> Self {
        LineBuffer {
            buf: Vec::new(),
            max_line_bytes,
            discarding: false,
            handed_out: false,
        }
    }

    /// Bytes of the unfinished line currently held.
    pub fn pending(&self) -> usize {
        if self.handed_out {
            0
        } else {
            self.buf.len()
        }
    }

    /// Forgets everything (the connection closed: a partial line is never processed).
    pub fn clear(&mut self) {
        self.buf = Vec::new();
        self.discarding = false;
        self.handed_out = false;
    }

    /// Appends one message and returns the lines it completed, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Line> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(piece) = self.next_piece(bytes, &mut pos) {
            out.push(match piece {
                Piece::Within(range) => Line::Data(bytes[range].to_vec()),
                Piece::Joined(line) => Line::Data(line.to_vec()),
                Piece::TooLarge { seen } => Line::TooLarge { seen },
            });
        }
        out
    }

    /// The next item of `message` from byte `*pos` on, advancing `*pos`; `None`
    /// once the message is used up (its unfinished tail is then buffered). Call it
    /// until `None` for every message, in order: this is [`LineBuffer::push`]
    /// without copying lines that lie within the message.
    pub fn next_piece(&mut self, message: &[u8], pos: &mut usize) -> Option<Piece<'_>> {
        if std::mem::take(&mut self.handed_out) {
            self.buf = Vec::new();
        }
        while let Some(bytes) = message.get(*pos..).filter(|b| !b.is_empty()) {
            let start = *pos;
            let newline = memchr::memchr(b'\n', bytes);
            let (chunk, complete) = match newline {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            *pos += chunk.len() + usize::from(complete);
            if self.discarding {
                if complete {
                    self.discarding = false;
                }
                continue;
            }
            if self.buf.len() + chunk.len() > self.max_line_bytes {
                let seen = self.buf.len() + chunk.len();
                self.buf = Vec::new();
                self.discarding = !complete;
                return Some(Piece::TooLarge { seen });
            }
            if !complete {
                self.buf.extend_from_slice(chunk);
                continue;
            }
            if self.buf.is_empty() {
                if !is_blank(chunk) {
                    return Some(Piece::Within(start..start + chunk.len()));
                }
                continue;
            }
            self.buf.extend_from_slice(chunk);
            if is_blank(&self.buf) {
                self.buf = Vec::new();
                continue;
            }
            self.handed_out = true;
            return Some(Piece::Joined(&self.buf));
        }
        None
    }
}

/// Blank or whitespace-only lines (Python whitespace) are skipped silently.
fn is_blank(line: &[u8]) -> bool {
    // Fast path: a frame starts with `{` after at most a little ASCII space, so
    // the first other byte settles it without validating the whole line.
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        None => true,
        Some(b) if b.is_ascii() => false,
        Some(_) => match std::str::from_utf8(line) {
            Ok(s) => py_strip(s).is_empty(),
            Err(_) => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| match l {
                Line::Data(d) => String::from_utf8_lossy(d).into_owned(),
                Line::TooLarge { .. } => "<too large>".into(),
            })
            .collect()
    }

    #[test]
    fn every_chunking_gives_the_same_lines() {
        let input = "{\"a\":1}\n\n  \r\n{\"b\":\"ü\"}\r\n{\"c\":3}\npartial";
        let bytes = input.as_bytes();
        let mut whole = LineBuffer::new(1024);
        let want = data(&whole.push(bytes));
        assert_eq!(want, vec!["{\"a\":1}", "{\"b\":\"ü\"}\r", "{\"c\":3}"]);
        // Every split into two or three pieces yields the same lines.
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut lb = LineBuffer::new(1024);
                let mut got = data(&lb.push(&bytes[..i]));
                got.extend(data(&lb.push(&bytes[i..j])));
                got.extend(data(&lb.push(&bytes[j..])));
                assert_eq!(got, want, "split at {i},{j}");
                assert_eq!(lb.pending(), "partial".len());
            }
        }
    }

    #[test]
    fn overlong_line_is_discarded_through_its_newline() {
        let mut lb = LineBuffer::new(4);
        let mut got = data(&lb.push(b"abc"));
        got.extend(data(&lb.push(b"defg")));
        assert!(lb.pending() <= 4);
        got.extend(data(&lb.push(b"hij\nok\n")));
        assert_eq!(got, vec!["<too large>", "ok"]);
    }

    #[test]
    fn pieces_borrow_lines_within_a_message() {
        let mut lb = LineBuffer::new(100);
        let msg = b"ab\n\ncd\nef";
        let mut pos = 0;
        assert_eq!(lb.next_piece(msg, &mut pos), Some(Piece::Within(0..2)));
        assert_eq!(lb.next_piece(msg, &mut pos), Some(Piece::Within(4..6)));
        assert_eq!(lb.next_piece(msg, &mut pos), None);
        assert_eq!((pos, lb.pending()), (msg.len(), 2));
        let mut pos = 0;
        assert_eq!(
            lb.next_piece(b"g\nh", &mut pos),
            Some(Piece::Joined(b"efg"))
        );
        assert_eq!(lb.next_piece(b"g\nh", &mut pos), None);
        assert_eq!(lb.pending(), 1);
    }

    #[test]
    fn line_at_the_limit_is_kept() {
        let mut lb = LineBuffer::new(4);
        assert_eq!(
            data(&lb.push(b"abcd\nabcde\nx\n")),
            vec!["abcd", "<too large>", "x"]
        );
    }
}
