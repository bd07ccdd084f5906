//! [`Framing`]: how a connection's bytes are cut into the messages a
//! [`MessageHandler`](super::MessageHandler) is called with, and the
//! [`Framer`] that cuts them, the same in both dispatch modes.
//!
//! The framer is a pure function of the bytes received so far: it finds
//! where the next message is, or says that more bytes are needed, or that the
//! bytes broke the framing (a line or frame over its limit) as soon as a byte
//! rules it out. It never buffers anything itself and never allocates, so a
//! peer that announces 16 MiB and sends 10 bytes costs 10 bytes.
//!
//! ```
//! use socketserver::request::{Framer, Framing, Found};
//!
//! let mut framer = Framer::new(Framing::Line { max: 8 });
//! assert_eq!(framer.next(b"hel", false), Ok(Found::NeedMore));
//! assert_eq!(
//!     framer.next(b"hello\r\nworld", false),
//!     Ok(Found::Message { start: 0, end: 5, consumed: 7 })
//! );
//! ```

use std::fmt;
use std::str::FromStr;

/// The byte order of a length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Endian {
    /// Least significant byte first: Python's `struct.pack('i', n)` on x86
    /// and ARM. The default.
    #[default]
    Little,
    /// Network order, most significant byte first: `struct.pack('!I', n)`.
    Big,
}

impl Endian {
    /// The 4 bytes that carry `length`.
    pub fn encode(self, length: u32) -> [u8; 4] {
        match self {
            Endian::Little => length.to_le_bytes(),
            Endian::Big => length.to_be_bytes(),
        }
    }

    /// The length that 4 bytes carry.
    pub fn decode(self, bytes: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(bytes),
            Endian::Big => u32::from_be_bytes(bytes),
        }
    }
}

impl fmt::Display for Endian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endian::Little => "little",
            Endian::Big => "big",
        })
    }
}

impl FromStr for Endian {
    type Err = String;

    /// Parses `little` (or `le`) and `big` (or `be`, `network`), in any case.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "little" | "le" => Ok(Endian::Little),
            "big" | "be" | "network" => Ok(Endian::Big),
            _ => Err(format!("{text:?} is not a byte order (use little or big)")),
        }
    }
}

/// How a connection's bytes are cut into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Whatever has arrived, at most `max` bytes at a time: an unframed
    /// stream (echo).
    Chunk {
        /// The most bytes in one message.
        max: usize,
    },
    /// A line ending in `\n` (`\r\n` accepted); the message is the line
    /// without its terminator. A line is over the limit as soon as more than
    /// `max` bytes arrive without a newline (the terminator not counted). A
    /// last line that the end of input cuts short is a message too.
    Line {
        /// The longest line, its terminator not counted.
        max: usize,
    },
    /// A 4-byte length, then that many bytes; the message is the payload. A
    /// length over `max` breaks the framing as soon as its 4 bytes arrive.
    LengthPrefixed {
        /// The byte order of the length.
        endian: Endian,
        /// The largest payload.
        max: u32,
    },
    /// Exactly `len` bytes (a handshake's answer, say).
    Exact {
        /// The message's size.
        len: usize,
    },
    /// An HTTP/1.x request head: the request line and the header fields, up
    /// to and including the empty line that ends them. Empty lines before a
    /// request are skipped (at most [`MAX_LEADING_EMPTY_LINES`]); the first
    /// byte of a request must be a visible ASCII character, which turns away
    /// TLS and other binary protocols at once.
    HttpHead {
        /// The longest request line, its terminator not counted.
        max_line: usize,
        /// The largest head, terminators included.
        max_head: usize,
    },
}

/// How many empty lines may come before an HTTP request.
pub const MAX_LEADING_EMPTY_LINES: usize = 16;

/// How bytes broke their framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FramingError {
    /// More than `max` bytes arrived without a newline.
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// A length prefix announced more than the limit.
    FrameTooLarge {
        /// The announced length.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// An HTTP request line over its limit.
    RequestLineTooLong {
        /// The limit.
        max: usize,
    },
    /// An HTTP request head over its limit.
    HeadTooLarge {
        /// The limit.
        max: usize,
    },
    /// Bytes that cannot start an HTTP request (a TLS handshake, binary).
    NotHttp {
        /// The first byte.
        byte: u8,
    },
    /// Too many empty lines before an HTTP request.
    OnlyEmptyLines,
    /// The input ended inside a message.
    Truncated {
        /// How many bytes of the message had arrived.
        got: usize,
    },
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FramingError::LineTooLong { max } => write!(f, "a line over {max} bytes"),
            FramingError::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes over the limit {max}")
            }
            FramingError::RequestLineTooLong { max } => {
                write!(f, "request line over {max} bytes")
            }
            FramingError::HeadTooLarge { max } => write!(f, "request head over {max} bytes"),
            FramingError::NotHttp { byte: 0x16 } => {
                f.write_str("a TLS handshake on a plain HTTP port")
            }
            FramingError::NotHttp { byte } => {
                write!(f, "not an HTTP request (first byte 0x{byte:02x})")
            }
            FramingError::OnlyEmptyLines => f.write_str("only empty lines"),
            FramingError::Truncated { got } => {
                write!(f, "the input ended {got} byte(s) into a message")
            }
        }
    }
}

impl std::error::Error for FramingError {}

/// What [`Framer::next`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The next message is `bytes[start..end]`; `consumed` bytes (the
    /// message, its prefix or terminator, and empty lines skipped before it)
    /// are used up.
    Message {
        /// Where the message starts.
        start: usize,
        /// Where it ends.
        end: usize,
        /// How many bytes it uses up.
        consumed: usize,
    },
    /// The bytes so far are the start of a message: read more.
    NeedMore,
    /// The input ended cleanly, between messages.
    End,
}

/// Cuts bytes into messages with one [`Framing`], remembering how far it
/// has looked so that bytes that trickle in are scanned once.
#[derive(Debug, Clone)]
pub struct Framer {
    framing: Framing,
    /// How many bytes at the start of the input have been looked at without
    /// finding the end of the message.
    scanned: usize,
    /// For an HTTP head: where the line being scanned starts, and whether
    /// the request line has ended.
    line_start: usize,
    past_request_line: bool,
}

impl Framer {
    /// A framer for `framing`.
    pub fn new(framing: Framing) -> Self {
        Framer {
            framing,
            scanned: 0,
            line_start: 0,
            past_request_line: false,
        }
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Changes the framing for the next message (a handshake done, say).
    /// Call it between messages only.
    pub fn set_framing(&mut self, framing: Framing) {
        if framing != self.framing {
            *self = Framer::new(framing);
        }
    }

    /// Looks for the next message at the start of `bytes` (everything
    /// received and not yet consumed). `eof`: the peer will send nothing
    /// more. Call it again with the same bytes plus more after a
    /// [`Found::NeedMore`]; after a [`Found::Message`], the next call starts
    /// afresh with the bytes past `consumed`.
    pub fn next(&mut self, bytes: &[u8], eof: bool) -> Result<Found, FramingError> {
        if bytes.len() < self.scanned {
            // The caller started over with other bytes.
            self.reset();
        }
        let found = match self.framing {
            Framing::Chunk { max } => Ok(chunk(bytes, max)),
            Framing::Line { max } => self.line(bytes, max),
            Framing::LengthPrefixed { endian, max } => length_prefixed(bytes, endian, max),
            Framing::Exact { len } => Ok(exact(bytes, len)),
            Framing::HttpHead { max_line, max_head } => self.http_head(bytes, max_line, max_head),
        }
        .inspect_err(|_| self.reset())?;
        match found {
            Found::Message { .. } => {
                self.reset();
                Ok(found)
            }
            Found::NeedMore if eof => {
                self.reset();
                match self.framing {
                    Framing::Line { .. } if !bytes.is_empty() => {
                        // A last line without its newline.
                        let end = bytes.len() - usize::from(bytes.last() == Some(&b'\r'));
                        Ok(Found::Message {
                            start: 0,
                            end,
                            consumed: bytes.len(),
                        })
                    }
                    _ if bytes.is_empty() => Ok(Found::End),
                    Framing::HttpHead { .. } if bytes.iter().all(|&b| b == b'\r' || b == b'\n') => {
                        Ok(Found::End)
                    }
                    _ => Err(FramingError::Truncated { got: bytes.len() }),
                }
            }
            found => Ok(found),
        }
    }

    fn reset(&mut self) {
        self.scanned = 0;
        self.line_start = 0;
        self.past_request_line = false;
    }

    fn line(&mut self, bytes: &[u8], max: usize) -> Result<Found, FramingError> {
        let from = self.scanned.min(bytes.len());
        match memchr(b'\n', &bytes[from..]) {
            Some(i) => {
                let newline = from + i;
                let end = newline - usize::from(newline > 0 && bytes[newline - 1] == b'\r');
                if end > max {
                    return Err(FramingError::LineTooLong { max });
                }
                Ok(Found::Message {
                    start: 0,
                    end,
                    consumed: newline + 1,
                })
            }
            None => {
                self.scanned = bytes.len();
                // Room for the limit, plus a '\r' that may start the
                // terminator.
                let n = bytes.len();
                if n > max.saturating_add(1)
                    || (n == max.saturating_add(1) && bytes[n - 1] != b'\r')
                {
                    return Err(FramingError::LineTooLong { max });
                }
                Ok(Found::NeedMore)
            }
        }
    }

    fn http_head(
        &mut self,
        bytes: &[u8],
        max_line: usize,
        max_head: usize,
    ) -> Result<Found, FramingError> {
        // Empty lines before the request.
        let mut start = 0;
        let mut empty = 0;
        loop {
            match bytes.get(start) {
                Some(b'\r') if bytes.get(start + 1) == Some(&b'\n') => start += 2,
                Some(b'\r') if start + 1 == bytes.len() => return Ok(Found::NeedMore),
                Some(b'\n') => start += 1,
                Some(&byte) if !(0x21..=0x7e).contains(&byte) => {
                    return Err(FramingError::NotHttp { byte })
                }
                Some(_) => break,
                None => return Ok(Found::NeedMore),
            }
            empty += 1;
            if empty > MAX_LEADING_EMPTY_LINES {
                return Err(FramingError::OnlyEmptyLines);
            }
        }
        let head = &bytes[start..];
        if self.scanned < start {
            self.scanned = start;
            self.line_start = start;
        }
        let mut from = self.scanned;
        while let Some(i) = memchr(b'\n', &bytes[from..]) {
            let newline = from + i;
            let line_end =
                newline - usize::from(newline > self.line_start && bytes[newline - 1] == b'\r');
            if !self.past_request_line {
                if line_end - self.line_start > max_line {
                    return Err(FramingError::RequestLineTooLong { max: max_line });
                }
                self.past_request_line = true;
            } else if line_end == self.line_start {
                // The empty line: the head is complete.
                if newline + 1 - start > max_head {
                    return Err(FramingError::HeadTooLarge { max: max_head });
                }
                return Ok(Found::Message {
                    start,
                    end: newline + 1,
                    consumed: newline + 1,
                });
            }
            self.line_start = newline + 1;
            from = newline + 1;
        }
        self.scanned = bytes.len();
        if !self.past_request_line && bytes.len() - self.line_start > max_line.saturating_add(1) {
            return Err(FramingError::RequestLineTooLong { max: max_line });
        }
        if head.len() > max_head {
            return Err(FramingError::HeadTooLarge { max: max_head });
        }
        Ok(Found::NeedMore)
    }
}

fn chunk(bytes: &[u8], max: usize) -> Found {
    if bytes.is_empty() {
        return Found::NeedMore;
    }
    let end = bytes.len().min(max.max(1));
    Found::Message {
        start: 0,
        end,
        consumed: end,
    }
}

fn exact(bytes: &[u8], len: usize) -> Found {
    if bytes.len() < len {
        return Found::NeedMore;
    }
    Found::Message {
        start: 0,
        end: len,
        consumed: len,
    }
}

fn length_prefixed(bytes: &[u8], endian: Endian, max: u32) -> Result<Found, FramingError> {
    let Some(prefix) = bytes.first_chunk::<4>() else {
        return Ok(Found::NeedMore);
    };
    let len = endian.decode(*prefix);
    if len > max {
        return Err(FramingError::FrameTooLarge { len, max });
    }
    let end = 4 + len as usize;
    if bytes.len() < end {
        return Ok(Found::NeedMore);
    }
    Ok(Found::Message {
        start: 4,
        end,
        consumed: end,
    })
}

/// The index of the first `needle` in `haystack`.
fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(start: usize, end: usize, consumed: usize) -> Result<Found, FramingError> {
        Ok(Found::Message {
            start,
            end,
            consumed,
        })
    }

    #[test]
    fn lines_strip_their_terminator_and_keep_the_limit() {
        let mut f = Framer::new(Framing::Line { max: 5 });
        assert_eq!(f.next(b"hello\n", false), message(0, 5, 6));
        assert_eq!(f.next(b"hello\r\nx", false), message(0, 5, 7));
        assert_eq!(f.next(b"\n", false), message(0, 0, 1));
        assert_eq!(
            f.next(b"hello!", false),
            Err(FramingError::LineTooLong { max: 5 })
        );
        assert_eq!(
            f.next(b"hello!\n", false),
            Err(FramingError::LineTooLong { max: 5 })
        );
        // A '\r' at the limit may start the terminator: wait for the next byte.
        assert_eq!(f.next(b"hello\r", false), Ok(Found::NeedMore));
        assert_eq!(f.next(b"hello\r\n", false), message(0, 5, 7));
        // A last line without its newline, at the end of input.
        assert_eq!(f.next(b"bye", true), message(0, 3, 3));
        assert_eq!(f.next(b"bye\r", true), message(0, 3, 4));
        assert_eq!(f.next(b"", true), Ok(Found::End));
    }

    #[test]
    fn a_line_trickled_one_byte_at_a_time_is_scanned_once() {
        let mut f = Framer::new(Framing::Line { max: 100 });
        let text = b"one byte at a time\n";
        for n in 1..text.len() {
            assert_eq!(f.next(&text[..n], false), Ok(Found::NeedMore));
            assert_eq!(f.scanned, n);
        }
        assert_eq!(f.next(text, false), message(0, 18, 19));
    }

    #[test]
    fn frames_are_refused_as_soon_as_the_length_is_over() {
        let mut f = Framer::new(Framing::LengthPrefixed {
            endian: Endian::Little,
            max: 4,
        });
        assert_eq!(f.next(b"\x04\0\0", false), Ok(Found::NeedMore));
        assert_eq!(f.next(b"\x04\0\0\0abc", false), Ok(Found::NeedMore));
        assert_eq!(f.next(b"\x04\0\0\0abcdZ", false), message(4, 8, 8));
        assert_eq!(
            f.next(b"\x05\0\0\0", false),
            Err(FramingError::FrameTooLarge { len: 5, max: 4 })
        );
        assert_eq!(
            f.next(b"\x04\0\0\0ab", true),
            Err(FramingError::Truncated { got: 6 })
        );
        let mut big = Framer::new(Framing::LengthPrefixed {
            endian: Endian::Big,
            max: 4,
        });
        assert_eq!(big.next(b"\0\0\0\x02hi", false), message(4, 6, 6));
        assert_eq!(big.next(b"\0\0\0\0", false), message(4, 4, 4));
    }

    #[test]
    fn chunks_and_exact_sizes() {
        let mut f = Framer::new(Framing::Chunk { max: 4 });
        assert_eq!(f.next(b"abcdef", false), message(0, 4, 4));
        assert_eq!(f.next(b"", false), Ok(Found::NeedMore));
        assert_eq!(f.next(b"", true), Ok(Found::End));
        let mut f = Framer::new(Framing::Exact { len: 3 });
        assert_eq!(f.next(b"ab", false), Ok(Found::NeedMore));
        assert_eq!(f.next(b"abcd", false), message(0, 3, 3));
        assert_eq!(f.next(b"ab", true), Err(FramingError::Truncated { got: 2 }));
    }

    #[test]
    fn http_heads() {
        let framing = Framing::HttpHead {
            max_line: 16,
            max_head: 40,
        };
        let mut f = Framer::new(framing);
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY";
        for n in 0..head.len() - 4 {
            assert_eq!(f.next(&head[..n], false), Ok(Found::NeedMore), "{n}");
        }
        assert_eq!(f.next(head, false), message(0, 27, 27));
        // Bare line feeds end lines too; empty lines before are skipped.
        assert_eq!(
            f.next(b"\r\n\nGET / HTTP/1.0\n\n", false),
            message(3, 19, 19)
        );
        // The request line is checked first.
        let long_line = b"GET /aaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n";
        assert_eq!(
            f.next(long_line, false),
            Err(FramingError::RequestLineTooLong { max: 16 })
        );
        assert_eq!(
            f.next(&long_line[..20], false),
            Err(FramingError::RequestLineTooLong { max: 16 })
        );
        let big = b"GET / HTTP/1.1\r\nA: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        assert_eq!(
            f.next(big, false),
            Err(FramingError::HeadTooLarge { max: 40 })
        );
        assert_eq!(
            f.next(b"\x16\x03\x01", false),
            Err(FramingError::NotHttp { byte: 0x16 })
        );
        assert_eq!(f.next(b"\0", false), Err(FramingError::NotHttp { byte: 0 }));
        assert_eq!(
            f.next(&[b'\n'; 17], false),
            Err(FramingError::OnlyEmptyLines)
        );
        assert_eq!(
            f.next(b"GET / HT", true),
            Err(FramingError::Truncated { got: 8 })
        );
        assert_eq!(f.next(b"\r\n", true), Ok(Found::End));
        // A head exactly at the limit passes.
        let exact = b"GET / HTTP/1.1\r\nA: aaaaaaaaaaaaaaaaa\r\n\r\n";
        assert_eq!(exact.len(), 40);
        assert_eq!(f.next(exact, false), message(0, 40, 40));
    }
}
