//! Length-prefixed frames and JSON-header messages, the wire format of the
//! `exec` and `files` services.
//!
//! # Frames
//!
//! A frame is a 4-byte unsigned length, then that many payload bytes:
//!
//! ```text
//! +----------------+---------------------------+
//! | length: u32    | payload: `length` bytes   |
//! +----------------+---------------------------+
//! ```
//!
//! The length is little-endian by default, byte for byte what Python's
//! `struct.pack('i', n)` writes on x86 and ARM, so the course's clients work
//! unchanged; [`Endian::Big`] switches to network order (`struct.pack('!I', n)`).
//! A length above the limit ([`DEFAULT_MAX_FRAME`], 16 MiB) is refused with
//! [`FrameError::TooLarge`] as soon as the 4 length bytes are read: nothing of
//! the claimed size is ever allocated. Even under the limit, a payload buffer
//! grows only as bytes actually arrive, so a peer that claims 16 MiB and sends
//! 10 bytes costs 10 bytes.
//!
//! # JSON-header messages
//!
//! The course's "custom protocol 2": a frame whose payload is a UTF-8 JSON
//! object (the header, at most [`DEFAULT_MAX_HEADER`], 64 KiB), then a body
//! whose size the header gives (under a key that each protocol names, such as
//! `file_size`):
//!
//! ```text
//! | length | {"file_name":"a.jpg","file_size":5} | hello |
//! ```
//!
//! A Python client sends one like this:
//!
//! ```python
//! header = json.dumps({'file_name': 'a.jpg', 'file_size': 5}).encode('utf-8')
//! sock.send(struct.pack('i', len(header)))
//! sock.send(header)
//! sock.send(b'hello')
//! ```
//!
//! # Errors
//!
//! Every failure is an [`io::Error`] whose inner error is a [`FrameError`]
//! (find it with [`FrameError::from_io`]), with a kind that says what
//! happened: [`io::ErrorKind::InvalidData`] for an over-limit length or a bad
//! header, [`io::ErrorKind::UnexpectedEof`] for a connection that ended in the
//! middle of a frame or body, [`io::ErrorKind::InvalidInput`] for a frame too
//! large to send. The end of input exactly between two frames is not an error:
//! the read functions return `None` (or `false`).
//!
//! ```
//! use socketserver::protocol::framing::{Endian, FrameCodec};
//!
//! let framing = FrameCodec::new().endian(Endian::Big);
//! let mut wire = Vec::new();
//! framing.write_frame(&mut wire, b"ls -l")?;
//! assert_eq!(wire, b"\0\0\0\x05ls -l");
//!
//! let mut payload = Vec::new();
//! let mut input = &wire[..];
//! assert!(framing.read_frame_into(&mut input, &mut payload)?);
//! assert_eq!(payload, b"ls -l");
//! assert!(!framing.read_frame_into(&mut input, &mut payload)?); // end of input
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// The byte order of a frame's 4-byte length: the same type as the
/// [`Framing`](crate::request::Framing) of a message handler uses.
pub use crate::request::Endian;

/// The default largest frame payload: 16 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 16 << 20;

/// The default largest JSON header: 64 KiB.
pub const DEFAULT_MAX_HEADER: u32 = 64 << 10;

/// How much of a payload buffer is reserved before any byte arrives; past
/// this it grows with what the peer really sends.
const EAGER_RESERVE: usize = 64 << 10;

/// What went wrong with a frame, a header or a body. Carried inside an
/// [`io::Error`]; see the [module documentation](self) for the kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A length above the limit: `frame of N bytes over the limit L`.
    TooLarge {
        /// The length that was announced (or asked to be sent).
        len: u64,
        /// The limit it broke.
        limit: u32,
    },
    /// The input ended inside the 4 length bytes.
    TruncatedLength {
        /// How many of the 4 bytes arrived.
        got: usize,
    },
    /// The input ended inside a frame's payload.
    TruncatedPayload {
        /// How many payload bytes arrived.
        got: u64,
        /// How many the length announced.
        expected: u64,
    },
    /// The input ended inside a message body.
    TruncatedBody {
        /// How many body bytes arrived.
        got: u64,
        /// How many the header announced.
        expected: u64,
    },
    /// The header frame is not UTF-8.
    HeaderNotUtf8,
    /// The header frame is not JSON (with the parser's reason).
    HeaderNotJson(String),
    /// The header is JSON but not an object.
    HeaderNotObject,
    /// The header is an object that does not have the expected shape.
    BadHeader(String),
}

impl FrameError {
    /// The [`io::ErrorKind`] that an error of this sort travels with.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            FrameError::TruncatedLength { .. }
            | FrameError::TruncatedPayload { .. }
            | FrameError::TruncatedBody { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        }
    }

    /// The frame error inside an [`io::Error`] made by this module, if any.
    pub fn from_io(error: &io::Error) -> Option<&FrameError> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<FrameError>())
    }

    /// True for the three truncation errors: the peer went away mid-message.
    pub fn is_truncation(&self) -> bool {
        self.kind() == io::ErrorKind::UnexpectedEof
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { len, limit } => {
                write!(f, "frame of {len} bytes over the limit {limit}")
            }
            FrameError::TruncatedLength { got } => {
                write!(
                    f,
                    "truncated frame: the input ended after {got} of the 4 length bytes"
                )
            }
            FrameError::TruncatedPayload { got, expected } => {
                write!(
                    f,
                    "truncated frame: the input ended after {got} of {expected} bytes"
                )
            }
            FrameError::TruncatedBody { got, expected } => {
                write!(
                    f,
                    "truncated body: the input ended after {got} of {expected} bytes"
                )
            }
            FrameError::HeaderNotUtf8 => f.write_str("the header is not UTF-8"),
            FrameError::HeaderNotJson(why) => write!(f, "the header is not JSON: {why}"),
            FrameError::HeaderNotObject => f.write_str("the header is not a JSON object"),
            FrameError::BadHeader(why) => write!(f, "bad header: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<FrameError> for io::Error {
    fn from(error: FrameError) -> Self {
        io::Error::new(error.kind(), error)
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes came.
/// Unlike `read_exact`, it says how far a truncated read got.
pub fn read_full(mut reader: impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// How frames are read and written: the byte order of the length, and the
/// limits of a frame and of a JSON header. `Copy`, cheap to pass around.
///
/// The defaults: [`Endian::Little`], frames up to [`DEFAULT_MAX_FRAME`],
/// headers up to [`DEFAULT_MAX_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    endian: Endian,
    max_frame: u32,
    max_header: u32,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            endian: Endian::Little,
            max_frame: DEFAULT_MAX_FRAME,
            max_header: DEFAULT_MAX_HEADER,
        }
    }
}

impl FrameCodec {
    /// The defaults: little-endian, 16 MiB frames, 64 KiB headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the byte order of lengths.
    pub fn endian(mut self, endian: Endian) -> Self {
        self.endian = endian;
        self
    }

    /// Sets the largest frame payload, in bytes.
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Sets the largest JSON header, in bytes.
    pub fn max_header(mut self, bytes: u32) -> Self {
        self.max_header = bytes;
        self
    }

    /// The byte order of lengths.
    pub fn byte_order(&self) -> Endian {
        self.endian
    }

    /// The largest frame payload.
    pub fn frame_limit(&self) -> u32 {
        self.max_frame
    }

    /// The largest JSON header.
    pub fn header_limit(&self) -> u32 {
        self.max_header
    }

    /// Reads a frame's 4-byte length and checks it against `limit`: `None`
    /// when the input ends before the first length byte.
    pub fn read_length(&self, reader: impl Read, limit: u32) -> io::Result<Option<u32>> {
        let mut bytes = [0u8; 4];
        match read_full(reader, &mut bytes)? {
            0 => Ok(None),
            4 => {
                let len = self.endian.decode(bytes);
                if len > limit {
                    return Err(FrameError::TooLarge {
                        len: len.into(),
                        limit,
                    }
                    .into());
                }
                Ok(Some(len))
            }
            got => Err(FrameError::TruncatedLength { got }.into()),
        }
    }

    /// Reads one frame of at most the frame limit into `payload`, replacing
    /// its contents and reusing its capacity (no allocation per frame once it
    /// has grown). Returns `false`, with `payload` empty, when the input ends
    /// cleanly before the frame.
    pub fn read_frame_into(&self, reader: impl Read, payload: &mut Vec<u8>) -> io::Result<bool> {
        self.read_limited(reader, payload, self.max_frame)
    }

    /// Reads one frame into a new vector; `None` at the end of input.
    pub fn read_frame(&self, reader: impl Read) -> io::Result<Option<Vec<u8>>> {
        let mut payload = Vec::new();
        Ok(self
            .read_frame_into(reader, &mut payload)?
            .then_some(payload))
    }

    fn read_limited(
        &self,
        mut reader: impl Read,
        payload: &mut Vec<u8>,
        limit: u32,
    ) -> io::Result<bool> {
        payload.clear();
        let Some(len) = self.read_length(&mut reader, limit)? else {
            return Ok(false);
        };
        let len = len as usize;
        payload.reserve(len.min(EAGER_RESERVE));
        let got = reader.take(len as u64).read_to_end(payload)?;
        if got < len {
            return Err(FrameError::TruncatedPayload {
                got: got as u64,
                expected: len as u64,
            }
            .into());
        }
        Ok(true)
    }

    /// Writes one frame: the length, then `payload`. A payload over the frame
    /// limit is refused ([`io::ErrorKind::InvalidInput`]) before anything is
    /// written.
    pub fn write_frame(&self, mut writer: impl Write, payload: &[u8]) -> io::Result<()> {
        let prefix = self.prefix(payload.len(), self.max_frame)?;
        if payload.len() <= EAGER_RESERVE {
            // One write, so that a small frame leaves in one segment.
            let mut frame = Vec::with_capacity(4 + payload.len());
            frame.extend_from_slice(&prefix);
            frame.extend_from_slice(payload);
            writer.write_all(&frame)
        } else {
            writer.write_all(&prefix)?;
            writer.write_all(payload)
        }
    }

    fn prefix(&self, len: usize, limit: u32) -> io::Result<[u8; 4]> {
        match u32::try_from(len) {
            Ok(n) if n <= limit => Ok(self.endian.encode(n)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                FrameError::TooLarge {
                    len: len as u64,
                    limit,
                },
            )),
        }
    }

    /// The [`Framing`](crate::request::Framing) of a
    /// [`MessageHandler`](crate::request::MessageHandler) that receives
    /// frames of at most `limit` bytes in this byte order: pass
    /// [`frame_limit`](FrameCodec::frame_limit) for commands,
    /// [`header_limit`](FrameCodec::header_limit) for JSON headers.
    pub fn framing(&self, limit: u32) -> crate::request::Framing {
        crate::request::Framing::LengthPrefixed {
            endian: self.endian,
            max: limit,
        }
    }

    /// The largest answer header a client accepts and a server sends: the
    /// frame limit (or the header limit, if that is larger). The header limit
    /// bounds what a server accepts, not what it sends, so that an answer
    /// that must be one header (a long listing) can be.
    pub fn answer_limit(&self) -> u32 {
        self.max_frame.max(self.max_header)
    }

    /// Reads a JSON-header frame (at most the header limit) and returns the
    /// object; `None` when the input ends cleanly before it. `scratch` holds
    /// the raw bytes and is reused from call to call. For the requests a
    /// server reads; a client reads answers with
    /// [`read_answer`](FrameCodec::read_answer).
    pub fn read_header(
        &self,
        reader: impl Read,
        scratch: &mut Vec<u8>,
    ) -> io::Result<Option<Map<String, Value>>> {
        self.read_header_within(reader, scratch, self.max_header)
    }

    /// Reads an answer's JSON header, of at most the
    /// [`answer_limit`](FrameCodec::answer_limit); otherwise as
    /// [`read_header`](FrameCodec::read_header).
    pub fn read_answer(
        &self,
        reader: impl Read,
        scratch: &mut Vec<u8>,
    ) -> io::Result<Option<Map<String, Value>>> {
        self.read_header_within(reader, scratch, self.answer_limit())
    }

    fn read_header_within(
        &self,
        reader: impl Read,
        scratch: &mut Vec<u8>,
        limit: u32,
    ) -> io::Result<Option<Map<String, Value>>> {
        if !self.read_limited(reader, scratch, limit)? {
            return Ok(None);
        }
        parse_header(scratch).map(Some).map_err(io::Error::from)
    }

    /// Reads a JSON-header frame into a typed value (any `serde` type that
    /// deserializes from an object); `None` at a clean end of input. A header
    /// of the wrong shape is [`FrameError::BadHeader`].
    pub fn read_header_as<T: DeserializeOwned>(
        &self,
        reader: impl Read,
        scratch: &mut Vec<u8>,
    ) -> io::Result<Option<T>> {
        let header = self.read_header(reader, scratch)?;
        header.map(typed).transpose()
    }

    /// Reads an answer's JSON header (at most the
    /// [`answer_limit`](FrameCodec::answer_limit)) into a typed value; as
    /// [`read_header_as`](FrameCodec::read_header_as) otherwise.
    pub fn read_answer_as<T: DeserializeOwned>(
        &self,
        reader: impl Read,
        scratch: &mut Vec<u8>,
    ) -> io::Result<Option<T>> {
        let header = self.read_answer(reader, scratch)?;
        header.map(typed).transpose()
    }

    /// Writes a JSON header (any `serde` value that serializes to an object)
    /// of at most the header limit, in one frame. Its body, if any, is for
    /// the caller to write next. For requests and short answers; an answer
    /// that may be long goes with [`write_answer`](FrameCodec::write_answer).
    pub fn write_header<T: Serialize + ?Sized>(
        &self,
        writer: impl Write,
        header: &T,
    ) -> io::Result<()> {
        self.write_header_within(writer, header, self.max_header)
    }

    /// Writes an answer's JSON header, of at most the
    /// [`answer_limit`](FrameCodec::answer_limit); otherwise as
    /// [`write_header`](FrameCodec::write_header).
    pub fn write_answer<T: Serialize + ?Sized>(
        &self,
        writer: impl Write,
        header: &T,
    ) -> io::Result<()> {
        self.write_header_within(writer, header, self.answer_limit())
    }

    fn write_header_within<T: Serialize + ?Sized>(
        &self,
        mut writer: impl Write,
        header: &T,
        limit: u32,
    ) -> io::Result<()> {
        let mut frame = vec![0u8; 4];
        serde_json::to_writer(&mut frame, header).map_err(io::Error::other)?;
        if !frame[4..].starts_with(b"{") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                FrameError::HeaderNotObject,
            ));
        }
        let prefix = self.prefix(frame.len() - 4, limit)?;
        frame[..4].copy_from_slice(&prefix);
        writer.write_all(&frame)
    }
}

/// A header object as a typed value, or [`FrameError::BadHeader`].
fn typed<T: DeserializeOwned>(object: Map<String, Value>) -> io::Result<T> {
    serde_json::from_value(Value::Object(object))
        .map_err(|e| FrameError::BadHeader(e.to_string()).into())
}

/// Decodes a header frame's payload: UTF-8, JSON, an object.
pub fn parse_header(payload: &[u8]) -> Result<Map<String, Value>, FrameError> {
    let text = std::str::from_utf8(payload).map_err(|_| FrameError::HeaderNotUtf8)?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(FrameError::HeaderNotObject),
        Err(e) => Err(FrameError::HeaderNotJson(e.to_string())),
    }
}

/// A message body of a known size being read: reads at most `size` bytes,
/// and fails with [`FrameError::TruncatedBody`] if the input ends before.
/// Made by [`body`].
#[derive(Debug)]
pub struct Body<R> {
    inner: R,
    expected: u64,
    remaining: u64,
}

/// Reads the next `size` bytes of `reader` as a message body.
///
/// ```
/// use std::io::Read;
/// let mut input = &b"hello, and the next message"[..];
/// let mut text = String::new();
/// socketserver::protocol::framing::body(&mut input, 5).read_to_string(&mut text)?;
/// assert_eq!(text, "hello");
///
/// let mut short = &b"hel"[..];
/// let error = std::io::copy(&mut socketserver::protocol::framing::body(&mut short, 5), &mut std::io::sink()).unwrap_err();
/// assert_eq!(error.to_string(), "truncated body: the input ended after 3 of 5 bytes");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn body<R: Read>(reader: R, size: u64) -> Body<R> {
    Body {
        inner: reader,
        expected: size,
        remaining: size,
    }
}

impl<R: Read> Body<R> {
    /// How many body bytes are still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Reads and throws away the rest of the body.
    pub fn skip(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }

    /// The underlying reader, wherever the body is.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(FrameError::TruncatedBody {
                got: self.expected - self.remaining,
                expected: self.expected,
            }
            .into());
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Copies a body of exactly `size` bytes from `reader` to `writer`; fails
/// with [`FrameError::TruncatedBody`] if the input ends before.
pub fn copy_body(reader: impl Read, mut writer: impl Write, size: u64) -> io::Result<u64> {
    io::copy(&mut body(reader, size), &mut writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn frame_error(e: &io::Error) -> &FrameError {
        FrameError::from_io(e).unwrap_or_else(|| panic!("not a frame error: {e}"))
    }

    #[test]
    fn round_trips_in_both_byte_orders() {
        for endian in [Endian::Little, Endian::Big] {
            let framing = FrameCodec::new().endian(endian);
            let big = vec![7u8; 200_000];
            let mut wire = Vec::new();
            framing.write_frame(&mut wire, b"first").unwrap();
            framing.write_frame(&mut wire, b"").unwrap();
            framing.write_frame(&mut wire, &big).unwrap();
            let mut input = &wire[..];
            let mut payload = Vec::new();
            assert!(framing.read_frame_into(&mut input, &mut payload).unwrap());
            assert_eq!(payload, b"first");
            assert!(framing.read_frame_into(&mut input, &mut payload).unwrap());
            assert_eq!(payload, b"");
            assert_eq!(framing.read_frame(&mut input).unwrap().unwrap(), big);
            assert_eq!(framing.read_frame(&mut input).unwrap(), None);
        }
    }

    #[test]
    fn little_endian_is_what_python_struct_pack_i_writes() {
        // struct.pack('i', 5) == b'\x05\x00\x00\x00'; struct.pack('!I', 5) == b'\x00\x00\x00\x05'
        let mut wire = Vec::new();
        FrameCodec::new().write_frame(&mut wire, b"hello").unwrap();
        assert_eq!(wire, b"\x05\x00\x00\x00hello");
        let mut wire = Vec::new();
        FrameCodec::new()
            .endian(Endian::Big)
            .write_frame(&mut wire, b"hello")
            .unwrap();
        assert_eq!(wire, b"\x00\x00\x00\x05hello");
        assert_eq!(Endian::Little.decode([0x00, 0x01, 0x00, 0x00]), 256);
        assert_eq!(Endian::Big.decode([0x00, 0x00, 0x01, 0x00]), 256);
    }

    #[test]
    fn endian_parses_and_prints() {
        assert_eq!("little".parse::<Endian>(), Ok(Endian::Little));
        assert_eq!("BIG".parse::<Endian>(), Ok(Endian::Big));
        assert_eq!("network".parse::<Endian>(), Ok(Endian::Big));
        assert!("middle".parse::<Endian>().is_err());
        assert_eq!(Endian::Big.to_string(), "big");
    }

    #[test]
    fn an_over_limit_length_is_refused_before_any_allocation() {
        let framing = FrameCodec::new().max_frame(1024);
        // Announces 4 GiB - 1 and sends nothing more: refused from the length alone.
        let wire = [0xffu8, 0xff, 0xff, 0xff];
        let mut payload = Vec::new();
        let e = framing
            .read_frame_into(&wire[..], &mut payload)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            frame_error(&e),
            &FrameError::TooLarge {
                len: u32::MAX as u64,
                limit: 1024
            }
        );
        assert_eq!(
            e.to_string(),
            "frame of 4294967295 bytes over the limit 1024"
        );
        assert_eq!(payload.capacity(), 0, "nothing was allocated");
        // Exactly at the limit is fine.
        let mut wire = Vec::new();
        framing.write_frame(&mut wire, &[1u8; 1024]).unwrap();
        assert_eq!(framing.read_frame(&wire[..]).unwrap().unwrap().len(), 1024);
        // One more is refused on the way out too.
        let mut out = Vec::new();
        let e = framing.write_frame(&mut out, &[1u8; 1025]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "frame of 1025 bytes over the limit 1024");
        assert!(out.is_empty());
    }

    #[test]
    fn a_claimed_size_is_not_reserved_up_front() {
        let framing = FrameCodec::new();
        let mut wire = Vec::new();
        wire.extend_from_slice(&(DEFAULT_MAX_FRAME).to_le_bytes());
        wire.extend_from_slice(b"only ten b");
        let mut payload = Vec::new();
        let e = framing
            .read_frame_into(&wire[..], &mut payload)
            .unwrap_err();
        assert_eq!(
            frame_error(&e),
            &FrameError::TruncatedPayload {
                got: 10,
                expected: DEFAULT_MAX_FRAME as u64
            }
        );
        assert!(
            payload.capacity() < 1 << 20,
            "capacity {}",
            payload.capacity()
        );
    }

    #[test]
    fn the_payload_buffer_is_reused() {
        let framing = FrameCodec::new();
        let mut wire = Vec::new();
        for _ in 0..3 {
            framing.write_frame(&mut wire, &[9u8; 1000]).unwrap();
        }
        let mut input = &wire[..];
        let mut payload = Vec::new();
        assert!(framing.read_frame_into(&mut input, &mut payload).unwrap());
        let pointer = payload.as_ptr();
        assert!(framing.read_frame_into(&mut input, &mut payload).unwrap());
        assert!(framing.read_frame_into(&mut input, &mut payload).unwrap());
        assert_eq!(payload.as_ptr(), pointer, "no new allocation per frame");
    }

    #[test]
    fn truncation_at_every_byte_is_reported() {
        for endian in [Endian::Little, Endian::Big] {
            let framing = FrameCodec::new().endian(endian);
            let mut wire = Vec::new();
            framing.write_frame(&mut wire, b"0123456789").unwrap();
            for cut in 0..wire.len() {
                let result = framing.read_frame(&wire[..cut]);
                if cut == 0 {
                    assert_eq!(result.unwrap(), None, "nothing at all is a clean end");
                    continue;
                }
                let e = result.unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
                let expected = if cut < 4 {
                    FrameError::TruncatedLength { got: cut }
                } else {
                    FrameError::TruncatedPayload {
                        got: (cut - 4) as u64,
                        expected: 10,
                    }
                };
                assert_eq!(frame_error(&e), &expected, "cut at {cut}");
                assert!(frame_error(&e).is_truncation());
                assert!(e.to_string().starts_with("truncated frame: "), "{e}");
            }
            assert_eq!(
                framing.read_frame(&wire[..]).unwrap().unwrap(),
                b"0123456789"
            );
        }
    }

    #[test]
    fn headers_round_trip_as_maps_and_typed_values() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Put {
            file_name: String,
            file_size: u64,
        }
        for endian in [Endian::Little, Endian::Big] {
            let framing = FrameCodec::new().endian(endian);
            let mut wire = Vec::new();
            framing
                .write_header(
                    &mut wire,
                    &json!({"op": "put", "file_name": "a.jpg", "file_size": 5}),
                )
                .unwrap();
            wire.extend_from_slice(b"hello");
            framing
                .write_header(
                    &mut wire,
                    &Put {
                        file_name: "b".into(),
                        file_size: 0,
                    },
                )
                .unwrap();
            let mut input = &wire[..];
            let mut scratch = Vec::new();
            let header = framing
                .read_header(&mut input, &mut scratch)
                .unwrap()
                .unwrap();
            // Key order is kept on the wire and back.
            assert_eq!(
                header.keys().collect::<Vec<_>>(),
                ["op", "file_name", "file_size"]
            );
            let size = header["file_size"].as_u64().unwrap();
            let mut body_bytes = Vec::new();
            copy_body(&mut input, &mut body_bytes, size).unwrap();
            assert_eq!(body_bytes, b"hello");
            let typed: Put = framing
                .read_header_as(&mut input, &mut scratch)
                .unwrap()
                .unwrap();
            assert_eq!(
                typed,
                Put {
                    file_name: "b".into(),
                    file_size: 0
                }
            );
            assert!(framing
                .read_header(&mut input, &mut scratch)
                .unwrap()
                .is_none());
        }
    }

    #[test]
    fn the_exact_bytes_of_a_header() {
        let mut wire = Vec::new();
        FrameCodec::new()
            .write_header(&mut wire, &json!({"status": "ok"}))
            .unwrap();
        assert_eq!(wire, b"\x0f\x00\x00\x00{\"status\":\"ok\"}");
    }

    #[test]
    fn bad_headers_are_named() {
        let framing = FrameCodec::new();
        let cases: [(&[u8], FrameError); 5] = [
            (b"[1,2]", FrameError::HeaderNotObject),
            (b"\"text\"", FrameError::HeaderNotObject),
            (
                b"",
                FrameError::HeaderNotJson("EOF while parsing a value at line 1 column 0".into()),
            ),
            (
                b"{\"a\":",
                FrameError::HeaderNotJson("EOF while parsing a value at line 1 column 5".into()),
            ),
            (b"{\"a\":\"\xff\"}", FrameError::HeaderNotUtf8),
        ];
        for (payload, expected) in cases {
            let mut wire = Vec::new();
            framing.write_frame(&mut wire, payload).unwrap();
            let e = framing.read_header(&wire[..], &mut Vec::new()).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert_eq!(
                frame_error(&e),
                &expected,
                "{:?}",
                String::from_utf8_lossy(payload)
            );
        }
        let e = framing
            .read_header_as::<std::collections::HashMap<String, u64>>(
                &{
                    let mut wire = Vec::new();
                    framing.write_header(&mut wire, &json!({"a": "b"})).unwrap();
                    wire
                }[..],
                &mut Vec::new(),
            )
            .unwrap_err();
        assert!(matches!(frame_error(&e), FrameError::BadHeader(_)), "{e}");
        // Something that is not an object cannot be sent as a header.
        let e = framing
            .write_header(&mut Vec::new(), &json!([1]))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_header_has_its_own_limit() {
        let framing = FrameCodec::new().max_header(16);
        let mut wire = Vec::new();
        FrameCodec::new()
            .write_header(&mut wire, &json!({"file_name": "long enough"}))
            .unwrap();
        let e = framing.read_header(&wire[..], &mut Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), "frame of 27 bytes over the limit 16");
        // But a frame of that size is fine.
        assert!(framing.read_frame(&wire[..]).unwrap().is_some());
        assert!(framing
            .write_header(&mut Vec::new(), &json!({"file_name": "long enough"}))
            .is_err());
    }

    #[test]
    fn bodies_stop_at_their_size_and_report_truncation() {
        let mut input = &b"abcdefgh"[..];
        let mut part = body(&mut input, 3);
        let mut out = Vec::new();
        part.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(part.remaining(), 0);
        assert_eq!(input, b"defgh");

        for cut in 0..5 {
            let data = b"abcde";
            let mut short = body(&data[..cut], 5);
            let e = short.skip().unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            assert_eq!(
                frame_error(&e),
                &FrameError::TruncatedBody {
                    got: cut as u64,
                    expected: 5
                }
            );
        }
        assert_eq!(body(&b"abcde"[..], 5).skip().unwrap(), 5);
        assert_eq!(body(&b""[..], 0).skip().unwrap(), 0);
    }
}
