//! The request head: cut from the stream by the [`Framer`] (request line and
//! head limits, leading empty lines, TLS bytes), parsed by `httparse`, then
//! held to the rules of RFC 9112 that the service enforces (one `Host` in
//! HTTP/1.1, one `Content-Length`, a graphic ASCII target).
//!
//! `httparse` replaces the hand-written parser of earlier versions: it is the
//! parser of hyper and reqwest, fuzzed there, and it already refuses a bare
//! CR or a NUL in a field, obsolete line folding and spaces before a colon.

use std::io::{self, BufRead};

use httparse::{Header, Status, EMPTY_HEADER};

use crate::request::{Found, Framer, Framing, FramingError};

/// Header slots kept on the stack; a larger `max_headers` takes the rest
/// from the heap (at most one slot per line of the head).
const STACK_HEADERS: usize = 128;

/// How many bytes [`read`] takes from its reader at a time: the head it
/// keeps grows with what arrives, never by a reader's whole buffer.
const READ_PIECE: usize = 4 * 1024;

/// A head the server answers with an error status, then closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refusal {
    /// 400, 414 or 431.
    pub status: u16,
    /// Why, as the log says it.
    pub why: &'static str,
}

const fn refusal(status: u16, why: &'static str) -> Refusal {
    Refusal { status, why }
}

/// Whether the connection stays open after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Persistence {
    /// HTTP/1.1's default: nothing to say.
    KeepAlive,
    /// HTTP/1.0 asked for keep-alive: say `Connection: keep-alive`.
    KeepAliveAnnounced,
    /// `Connection: close`.
    Close,
}

/// A well-formed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    pub method: String,
    pub target: String,
    pub version: &'static str,
    pub persistence: Persistence,
    /// The body's `Content-Length` (0 without one).
    pub content_length: u64,
    /// A `Transfer-Encoding` was given: the body cannot be skipped.
    pub chunked: bool,
}

/// A request head as [`StaticHttp::parse_head`](super::StaticHttp::parse_head)
/// read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedHead {
    /// The input ended before a request (between requests).
    Closed,
    /// A head the server answers with an error status and a close.
    Bad {
        /// 400, 414 or 431.
        status: u16,
        /// Why, as the access log says it.
        why: &'static str,
    },
    /// A well-formed head.
    Request {
        /// The method, as sent.
        method: String,
        /// The request target, as sent.
        target: String,
        /// `HTTP/1.1` or `HTTP/1.0`.
        version: &'static str,
        /// Whether the connection stays open after the answer (before any
        /// body is considered).
        keep_alive: bool,
        /// The body's `Content-Length` (0 without one).
        content_length: u64,
        /// A `Transfer-Encoding` was given: the body cannot be skipped, so
        /// the connection closes after the answer.
        chunked: bool,
    },
}

impl From<Result<Request, Refusal>> for ParsedHead {
    fn from(parsed: Result<Request, Refusal>) -> Self {
        match parsed {
            Ok(request) => ParsedHead::Request {
                keep_alive: request.persistence != Persistence::Close,
                method: request.method,
                target: request.target,
                version: request.version,
                content_length: request.content_length,
                chunked: request.chunked,
            },
            Err(Refusal { status, why }) => ParsedHead::Bad { status, why },
        }
    }
}

/// The answer to bytes that broke the head's framing.
pub(super) fn framing_refusal(error: FramingError) -> Refusal {
    match error {
        FramingError::RequestLineTooLong { .. } => refusal(414, "request line too long"),
        FramingError::HeadTooLarge { .. } => refusal(431, "request head too large"),
        FramingError::NotHttp { byte: 0x16 } => {
            refusal(400, "a TLS handshake on a plain HTTP port")
        }
        FramingError::NotHttp { .. } => refusal(400, "not an HTTP request"),
        FramingError::OnlyEmptyLines => refusal(400, "only empty lines"),
        FramingError::Truncated { .. } => refusal(400, "the request ended early"),
        _ => refusal(400, "a malformed request"),
    }
}

/// Parses a whole head as the framer cut it (from the request line to the
/// empty line, both included), with at most `max_headers` fields.
pub(super) fn parse(head: &[u8], max_headers: usize) -> Result<Request, Refusal> {
    // A field takes a line: the slots needed are bounded by the head itself,
    // whatever `max_headers` says.
    let lines = head.iter().filter(|&&b| b == b'\n').count();
    let slots = lines.saturating_sub(1).min(max_headers);
    let mut on_stack = [EMPTY_HEADER; STACK_HEADERS];
    let mut on_heap: Vec<Header<'_>> = Vec::new();
    let headers: &mut [Header<'_>] = if slots <= STACK_HEADERS {
        &mut on_stack[..slots]
    } else {
        on_heap.resize(slots, EMPTY_HEADER);
        &mut on_heap
    };
    let mut parsed = httparse::Request::new(headers);
    match parsed.parse(head) {
        Ok(Status::Complete(used)) if used == head.len() => {}
        Ok(_) => return Err(refusal(400, "a malformed head")),
        Err(error) => return Err(refusal_of(error)),
    }
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(refusal(400, "a malformed request line"));
    };
    // httparse lets UTF-8 through in a target; RFC 9112 does not.
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(refusal(400, "invalid target"));
    }
    let version = match version {
        1 => "HTTP/1.1",
        0 => "HTTP/1.0",
        _ => return Err(refusal(400, "unsupported HTTP version")),
    };

    let mut close = false;
    let mut keep_alive = false;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut hosts = 0;
    for field in parsed.headers.iter() {
        let name = field.name;
        let value = trim(field.value);
        if name.eq_ignore_ascii_case("connection") {
            for option in value.split(|&b| b == b',') {
                let option = trim(option);
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (length, content_length) {
                (None, _) => return Err(refusal(400, "invalid Content-Length")),
                (Some(new), Some(old)) if new != old => {
                    return Err(refusal(400, "conflicting Content-Length fields"))
                }
                (Some(new), _) => content_length = Some(new),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
    }
    // RFC 9112, section 3.2.
    if hosts > 1 {
        return Err(refusal(400, "more than one Host field"));
    }
    if hosts == 0 && version == "HTTP/1.1" {
        return Err(refusal(400, "an HTTP/1.1 request without a Host field"));
    }
    let persistence = if close {
        Persistence::Close
    } else if version == "HTTP/1.1" {
        Persistence::KeepAlive
    } else if keep_alive {
        Persistence::KeepAliveAnnounced
    } else {
        Persistence::Close
    };
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        version,
        persistence,
        content_length: content_length.unwrap_or(0),
        chunked,
    })
}

/// Why `httparse` refused a head.
fn refusal_of(error: httparse::Error) -> Refusal {
    match error {
        httparse::Error::TooManyHeaders => refusal(431, "too many header fields"),
        httparse::Error::Version => refusal(400, "unsupported HTTP version"),
        httparse::Error::HeaderName => refusal(
            400,
            "an invalid header name, or a header line without a colon",
        ),
        httparse::Error::HeaderValue => refusal(
            400,
            "an invalid header value (a control character, a NUL or a bare CR)",
        ),
        httparse::Error::NewLine => refusal(400, "an invalid line ending"),
        httparse::Error::Token | httparse::Error::Status => {
            refusal(400, "a malformed request line")
        }
    }
}

/// Reads one head from `reader` as the server frames and parses it, and
/// nothing past it.
pub(super) fn read(
    reader: &mut impl BufRead,
    framing: Framing,
    max_headers: usize,
) -> io::Result<ParsedHead> {
    let mut framer = Framer::new(framing);
    let mut head = Vec::new();
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let eof = available.is_empty();
        let before = head.len();
        let taken = available.len().min(READ_PIECE);
        head.extend_from_slice(&available[..taken]);
        match framer.next(&head, eof) {
            Ok(Found::Message {
                start,
                end,
                consumed,
            }) => {
                // The head ends in the bytes just taken: leave the rest.
                reader.consume(consumed.saturating_sub(before));
                return Ok(parse(&head[start..end], max_headers).into());
            }
            Ok(Found::NeedMore) => reader.consume(taken),
            Ok(Found::End) => {
                reader.consume(taken);
                return Ok(ParsedHead::Closed);
            }
            Err(error) => {
                reader.consume(taken);
                return Ok(Err(framing_refusal(error)).into());
            }
        }
    }
}

/// `bytes` without leading and trailing spaces and tabs.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_100(head: &str) -> Result<Request, Refusal> {
        parse(head.as_bytes(), 100)
    }

    fn status(head: &[u8]) -> u16 {
        match parse(head, 100) {
            Ok(_) => 200,
            Err(refusal) => refusal.status,
        }
    }

    #[test]
    fn a_request_parses_to_what_it_says() {
        let request =
            parse_100("GET /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n").unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.target, "/a?b");
        assert_eq!(request.version, "HTTP/1.1");
        assert_eq!(request.persistence, Persistence::KeepAlive);
        assert_eq!(request.content_length, 2);
        let old = parse_100("GET / HTTP/1.0\nConnection: Keep-Alive\n\n").unwrap();
        assert_eq!(old.persistence, Persistence::KeepAliveAnnounced);
        let closing = parse_100("GET / HTTP/1.1\r\nHost: x\r\nConnection: te, close\r\n\r\n");
        assert_eq!(closing.unwrap().persistence, Persistence::Close);
    }

    #[test]
    fn http_1_1_needs_exactly_one_host() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHOST: a\r\n\r\n"), 200);
        assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn a_bare_cr_or_a_nul_in_a_field_is_400() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: \0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX\0: a\r\n\r\n",
        ] {
            assert_eq!(status(head), 400, "{:?}", String::from_utf8_lossy(head));
        }
        // A tab and obs-text stay allowed in a value.
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\xff\r\n\r\n"),
            200
        );
    }

    #[test]
    fn malformed_request_lines_and_fields() {
        for head in [
            &b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            b"GET / http/1.1\r\nHost: a\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
        ] {
            assert_eq!(status(head), 400, "{:?}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn fields_over_the_limit_are_431_whatever_the_storage() {
        let head = |n: usize| {
            let mut text = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
            for i in 1..n {
                text.push_str(&format!("X{i}: {i}\r\n"));
            }
            text + "\r\n"
        };
        for max in [0, 1, 5, STACK_HEADERS, STACK_HEADERS + 1, 500] {
            if max > 0 {
                assert!(parse(head(max).as_bytes(), max).is_ok(), "{max} fields");
            }
            let over = parse(head(max + 1).as_bytes(), max).unwrap_err();
            assert_eq!(over.status, 431, "{max} + 1 fields");
        }
    }

    #[test]
    fn reading_takes_the_head_and_nothing_more() {
        let framing = Framing::HttpHead {
            max_line: 100,
            max_head: 1000,
        };
        let mut input = &b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nBODY"[..];
        let head = read(&mut input, framing, 10).unwrap();
        assert!(matches!(head, ParsedHead::Request { .. }), "{head:?}");
        assert_eq!(input, b"BODY");
        let mut empty = &b"\r\n\r\n"[..];
        assert_eq!(read(&mut empty, framing, 10).unwrap(), ParsedHead::Closed);
        let mut cut = &b"GET / HT"[..];
        assert_eq!(
            read(&mut cut, framing, 10).unwrap(),
            ParsedHead::Bad {
                status: 400,
                why: "the request ended early"
            }
        );
    }
}
