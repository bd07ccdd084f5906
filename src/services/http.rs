//! http: a static HTTP/1.1 file server.
//!
//! # Protocol
//!
//! HTTP/1.1 (RFC 9112) and HTTP/1.0, methods GET and HEAD, for the files under
//! a root directory ([`StaticHttp::with_root`]); without a root
//! ([`StaticHttp::builtin`]), a built-in page saying `hello world` (at `/` and
//! `/index.html`) and the picture it shows (`/hello.png`, drawn by
//! [`hello_png`]). What a request gets:
//!
//! | request | answer |
//! |---|---|
//! | a file | 200, `Content-Type` by extension, `Content-Length`, `Last-Modified`; the file is streamed, HEAD sends no body |
//! | a directory, `/dir/` | its `index.html` |
//! | a directory without its slash, `/dir` | 301 to `/dir/` (query kept) |
//! | `..` in the path, or a symlink whose target is outside the root | 403 |
//! | a file that cannot be read, or is not a regular file | 403 |
//! | nothing there | 404 |
//! | another method (POST, PUT...) | 405 with `Allow: GET, HEAD` |
//! | a request line over 8 KiB | 414 |
//! | a head over 64 KiB or with over 100 fields (after the request line) | 431 |
//! | garbage, a missing target, extra parts, a version other than `HTTP/1.0` and `HTTP/1.1`, a header line without a colon, TLS bytes | 400 |
//!
//! Every answer has `Date`, `Content-Length` and `Content-Type`. The path is
//! percent-decoded (an encoded `/` separates segments like a plain one);
//! the query and fragment are ignored. After a 400, 414 or 431 the connection
//! is closed. Otherwise HTTP/1.1 connections stay open for the next request
//! unless the client sends `Connection: close`; HTTP/1.0 connections close
//! unless it sends `Connection: keep-alive`. Pipelined requests are answered
//! in order. A request body (sent with GET, say) is read and discarded up to
//! 1 MiB; beyond that, or with `Transfer-Encoding`, the connection is closed
//! after the answer. A connection idle between requests for
//! [`StaticHttp::idle_timeout`] (60 s by default) is closed, and so is every
//! idle one when the server shuts down: open browser tabs do not hold the
//! shutdown up.
//!
//! ```text
//! > GET /notes/ HTTP/1.1
//! > Host: localhost
//! >
//! < HTTP/1.1 200 OK
//! < Date: Mon, 04 May 2026 10:00:00 GMT
//! < Server: socketserver/0.1.0
//! < Content-Type: text/html; charset=utf-8
//! < Content-Length: 120
//! < Last-Modified: Mon, 04 May 2026 09:58:12 GMT
//! <
//! < (120 bytes of notes/index.html)
//! ```

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use percent_encoding::percent_decode_str;

use crate::protocol::line::{read_line, Line};
use crate::{RequestHandler, StreamRequest};

/// The default longest request line, in bytes.
pub const DEFAULT_MAX_REQUEST_LINE: usize = 8 * 1024;
/// The default largest request head (request line and fields), in bytes.
pub const DEFAULT_MAX_HEAD: usize = 64 * 1024;
/// The default most header fields in a request.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// The default time a connection may stay idle between requests.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a connection waiting for its next request looks whether the
/// server is shutting down.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
/// The largest request body that is read and discarded to keep a connection.
const MAX_DISCARDED_BODY: u64 = 1 << 20;
/// How many empty lines may come before a request line (RFC 9112 asks servers
/// to ignore at least one).
const MAX_LEADING_EMPTY_LINES: usize = 16;

const SERVER: &str = concat!("socketserver/", env!("CARGO_PKG_VERSION"));

/// A static file server: a handler for stream servers (TCP, Unix).
///
/// ```no_run
/// use std::time::Duration;
/// use socketserver::services::StaticHttp;
/// use socketserver::{Options, ThreadingTcpServer};
///
/// let site = StaticHttp::with_root("./public")?;
/// let options = Options::new().idle_timeout(Some(Duration::from_secs(60)));
/// let server = ThreadingTcpServer::bind_with("127.0.0.1:8000", site, options)?;
/// server.shutdown_on_ctrl_c()?;
/// server.serve_forever()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct StaticHttp {
    /// The canonical root directory, or `None` for the built-in site.
    root: Option<PathBuf>,
    max_request_line: usize,
    max_head: usize,
    max_headers: usize,
    idle_timeout: Option<Duration>,
}

impl StaticHttp {
    /// Serves the built-in page and its picture.
    pub fn builtin() -> Self {
        StaticHttp {
            root: None,
            max_request_line: DEFAULT_MAX_REQUEST_LINE,
            max_head: DEFAULT_MAX_HEAD,
            max_headers: DEFAULT_MAX_HEADERS,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        }
    }

    /// Serves the files under `root`, which must be a directory.
    pub fn with_root(root: impl AsRef<Path>) -> io::Result<Self> {
        let root = fs::canonicalize(root)?;
        if !fs::metadata(&root)?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a directory",
            ));
        }
        Ok(StaticHttp {
            root: Some(root),
            ..Self::builtin()
        })
    }

    /// The root directory (canonical), or `None` for the built-in site.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Sets the longest request line; a longer one gets 414 (default 8 KiB).
    pub fn max_request_line(mut self, bytes: usize) -> Self {
        self.max_request_line = bytes;
        self
    }

    /// Sets the largest request head; a larger one gets 431 (default 64 KiB).
    pub fn max_head(mut self, bytes: usize) -> Self {
        self.max_head = bytes;
        self
    }

    /// Sets the most header fields; more get 431 (default 100).
    pub fn max_headers(mut self, fields: usize) -> Self {
        self.max_headers = fields;
        self
    }

    /// Sets how long a connection may wait idle for its next request, and
    /// each read within a request (default 60 s; `None`: no limit). This
    /// replaces the server's [`idle_timeout`](crate::Options::idle_timeout)
    /// on the connections it serves.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout.filter(|t| !t.is_zero());
        self
    }
}

impl RequestHandler<StreamRequest> for StaticHttp {
    fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
        let mut line = Vec::new();
        loop {
            if !self.await_request(req)? {
                return Ok(());
            }
            let request = match self.read_head(req, &mut line)? {
                Head::Closed => return Ok(()),
                Head::Bad(status, why) => {
                    log::info!("{}: {} {} ({why})", req.peer_addr(), status, reason(status));
                    let response = Response::error(status);
                    send(req, &response, false, Persistence::Close)?;
                    req.close_after_answer(1 << 20);
                    return Ok(());
                }
                Head::Request(request) => request,
            };
            // A body cannot be answered, but must be got out of the way.
            let mut persistence = request.persistence;
            if request.chunked || request.content_length > MAX_DISCARDED_BODY {
                persistence = Persistence::Close;
            } else if request.content_length > 0 {
                let skipped = io::copy(
                    &mut (&mut *req).take(request.content_length),
                    &mut io::sink(),
                )?;
                if skipped < request.content_length {
                    return Ok(());
                }
            }
            let response = self.respond(&request);
            if response.status == 400 {
                persistence = Persistence::Close;
            }
            log::info!(
                "{} \"{} {} {}\" {} {}",
                req.peer_addr(),
                request.method,
                request.target,
                request.version,
                response.status,
                response.length()
            );
            send(req, &response, request.method == "HEAD", persistence)?;
            if persistence == Persistence::Close {
                req.close_after_answer(1 << 20);
                return Ok(());
            }
        }
    }
}

/// A request head as [`StaticHttp::parse_head`] read it.
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

/// What reading a request head gave.
enum Head {
    /// The client closed the connection between requests.
    Closed,
    /// A malformed or oversized head: answer with this status and close.
    Bad(u16, &'static str),
    Request(Request),
}

/// A parsed request head.
#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    version: &'static str,
    persistence: Persistence,
    content_length: u64,
    chunked: bool,
}

/// Whether the connection stays open after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persistence {
    /// HTTP/1.1's default: nothing to say.
    KeepAlive,
    /// HTTP/1.0 asked for keep-alive: say `Connection: keep-alive`.
    KeepAliveAnnounced,
    /// `Connection: close`.
    Close,
}

impl StaticHttp {
    /// Waits for the first byte of the next request; false when the
    /// connection should close instead: the client closed it, it stayed idle
    /// for the idle timeout, or the server is shutting down. Waits in short
    /// slices so that a shutdown is noticed at once.
    fn await_request(&self, req: &mut StreamRequest) -> io::Result<bool> {
        let deadline = self.idle_timeout.map(|t| Instant::now() + t);
        loop {
            if req.server().is_shutdown() {
                return Ok(false);
            }
            let mut slice = SHUTDOWN_POLL;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    log::debug!(
                        "{}: idle for {:?}; closing",
                        req.peer_addr(),
                        self.idle_timeout.unwrap_or_default()
                    );
                    return Ok(false);
                }
                slice = slice.min(left);
            }
            req.set_read_timeout(Some(slice))?;
            let ready = match req.fill_buf() {
                Ok(bytes) => Some(!bytes.is_empty()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    None
                }
                Err(e) => return Err(e),
            };
            if let Some(ready) = ready {
                req.set_read_timeout(self.idle_timeout)?;
                return Ok(ready);
            }
        }
    }

    /// Reads one request head from `reader` exactly as the server does,
    /// with this server's limits, and nothing past it (a body and the next
    /// request stay unread). For tests and fuzzing of the parser.
    ///
    /// ```
    /// use socketserver::services::http::{ParsedHead, StaticHttp};
    ///
    /// let site = StaticHttp::builtin();
    /// let mut input = &b"GET /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"[..];
    /// let head = site.parse_head(&mut input)?;
    /// assert!(matches!(head, ParsedHead::Request { content_length: 2, keep_alive: true, .. }));
    /// assert_eq!(input, b"hi");
    /// let mut tls = &b"\x16\x03\x01"[..];
    /// assert!(matches!(site.parse_head(&mut tls)?, ParsedHead::Bad { status: 400, .. }));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn parse_head(&self, reader: &mut impl BufRead) -> io::Result<ParsedHead> {
        Ok(match self.read_head(reader, &mut Vec::new())? {
            Head::Closed => ParsedHead::Closed,
            Head::Bad(status, why) => ParsedHead::Bad { status, why },
            Head::Request(request) => ParsedHead::Request {
                keep_alive: request.persistence != Persistence::Close,
                method: request.method,
                target: request.target,
                version: request.version,
                content_length: request.content_length,
                chunked: request.chunked,
            },
        })
    }

    fn read_head(&self, req: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<Head> {
        // Empty lines before a request are ignored; the first byte of a
        // request must be a letter of its method, which turns away TLS and
        // other binary protocols at once instead of waiting for a newline.
        let mut empty_lines = 0;
        loop {
            let first = match req.fill_buf() {
                Ok([]) => return Ok(Head::Closed),
                Ok(bytes) => bytes[0],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            match first {
                b'\r' => req.consume(1),
                b'\n' => {
                    req.consume(1);
                    empty_lines += 1;
                    if empty_lines > MAX_LEADING_EMPTY_LINES {
                        return Ok(Head::Bad(400, "only empty lines"));
                    }
                }
                0x21..=0x7e => break,
                0x16 => return Ok(Head::Bad(400, "a TLS handshake on a plain HTTP port")),
                _ => return Ok(Head::Bad(400, "not an HTTP request")),
            }
        }

        let request_line = match read_line(req, line, self.max_request_line)? {
            Line::TooLong => return Ok(Head::Bad(414, "request line too long")),
            Line::Complete { terminated: true } => line.clone(),
            _ => return Ok(Head::Bad(400, "the request ended early")),
        };
        let (method, target, version) = match parse_request_line(&request_line) {
            Ok(parts) => parts,
            Err(why) => return Ok(Head::Bad(400, why)),
        };
        let mut request = Request {
            method: method.to_string(),
            target: target.to_string(),
            version,
            persistence: if version == "HTTP/1.1" {
                Persistence::KeepAlive
            } else {
                Persistence::Close
            },
            content_length: 0,
            chunked: false,
        };

        let mut budget = self.max_head.saturating_sub(request_line.len() + 2);
        let mut fields = 0;
        let mut close = false;
        let mut keep_alive = false;
        let mut content_length: Option<u64> = None;
        loop {
            match read_line(req, line, budget)? {
                Line::TooLong => return Ok(Head::Bad(431, "request head too large")),
                Line::Complete { terminated: true } => {}
                _ => return Ok(Head::Bad(400, "the request ended early")),
            }
            if line.is_empty() {
                break;
            }
            fields += 1;
            if fields > self.max_headers {
                return Ok(Head::Bad(431, "too many header fields"));
            }
            budget = budget.saturating_sub(line.len() + 2);
            let (name, value) = match parse_field(line) {
                Ok(field) => field,
                Err(why) => return Ok(Head::Bad(400, why)),
            };
            if name.eq_ignore_ascii_case(b"connection") {
                for option in value.split(|&b| b == b',') {
                    let option = trim(option);
                    close |= option.eq_ignore_ascii_case(b"close");
                    keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case(b"content-length") {
                let length = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok());
                match (length, content_length) {
                    (None, _) => return Ok(Head::Bad(400, "invalid Content-Length")),
                    (Some(new), Some(old)) if new != old => {
                        return Ok(Head::Bad(400, "conflicting Content-Length fields"))
                    }
                    (Some(new), _) => content_length = Some(new),
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                request.chunked = true;
            }
        }
        request.content_length = content_length.unwrap_or(0);
        request.persistence = if close {
            Persistence::Close
        } else if version == "HTTP/1.1" {
            Persistence::KeepAlive
        } else if keep_alive {
            Persistence::KeepAliveAnnounced
        } else {
            Persistence::Close
        };
        Ok(Head::Request(request))
    }

    /// The answer to a well-formed request.
    fn respond(&self, request: &Request) -> Response {
        if request.method != "GET" && request.method != "HEAD" {
            return Response::error(405);
        }
        let Some((raw_path, query)) = split_target(&request.target) else {
            return Response::error(400);
        };
        let decoded: Vec<u8> = percent_decode_str(raw_path).collect();
        if decoded.contains(&0) {
            return Response::error(400);
        }
        let segments: Vec<&[u8]> = decoded
            .split(|&b| b == b'/')
            .filter(|s| !s.is_empty() && *s != b".")
            .collect();
        if segments.iter().any(|s| *s == b"..") {
            return Response::error(403);
        }
        let wants_directory = decoded.ends_with(b"/");
        match &self.root {
            None => builtin_page(&segments, wants_directory),
            Some(root) => serve_file(root, &segments, wants_directory, raw_path, query),
        }
    }
}

/// Splits `METHOD SP TARGET SP VERSION`.
fn parse_request_line(line: &[u8]) -> Result<(&str, &str, &'static str), &'static str> {
    let text = std::str::from_utf8(line).map_err(|_| "the request line is not UTF-8")?;
    let mut parts = text.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the request line does not have three parts");
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err("invalid method");
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("invalid target");
    }
    let version = match version {
        "HTTP/1.1" => "HTTP/1.1",
        "HTTP/1.0" => "HTTP/1.0",
        _ => return Err("unsupported HTTP version"),
    };
    Ok((method, target, version))
}

/// Splits `name: value`, checking the name; the value is trimmed.
fn parse_field(line: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    if line[0] == b' ' || line[0] == b'\t' {
        return Err("a folded header line");
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or("a header line without a colon")?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().copied().all(is_token) {
        return Err("an invalid header name");
    }
    Ok((name, trim(&line[colon + 1..])))
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

/// A character of an HTTP token (RFC 9110 `tchar`).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The path and query of a target: origin form (`/a/b?q`) or absolute form
/// (`http://host/a/b?q`); the fragment is dropped. `None` for anything else.
fn split_target(target: &str) -> Option<(&str, Option<&str>)> {
    let path = if target.starts_with('/') {
        target
    } else {
        let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &target[7..]
        } else if lower.starts_with("https://") {
            &target[8..]
        } else {
            return None;
        };
        rest.find('/').map_or("/", |slash| &rest[slash..])
    };
    let path = path.split('#').next().unwrap_or("");
    Some(match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    })
}

/// The built-in site: the page and its picture.
fn builtin_page(segments: &[&[u8]], wants_directory: bool) -> Response {
    match segments {
        [] if wants_directory => {
            Response::bytes(200, "text/html; charset=utf-8", page().as_bytes().to_vec())
        }
        [b"index.html"] if !wants_directory => {
            Response::bytes(200, "text/html; charset=utf-8", page().as_bytes().to_vec())
        }
        [b"hello.png"] if !wants_directory => {
            Response::bytes(200, "image/png", hello_png().to_vec())
        }
        _ => Response::error(404),
    }
}

/// A file under the root, the index of a directory, or the reason why not.
fn serve_file(
    root: &Path,
    segments: &[&[u8]],
    wants_directory: bool,
    raw_path: &str,
    query: Option<&str>,
) -> Response {
    let mut real = match resolve(root, root, segments) {
        Ok(real) => real,
        Err(status) => return Response::error(status),
    };
    let mut name = segments.last().map_or(&b""[..], |s| s).to_vec();
    let is_dir = fs::metadata(&real).map(|m| m.is_dir()).unwrap_or(false);
    if is_dir {
        if !wants_directory {
            let mut location = format!("{raw_path}/");
            if let Some(query) = query {
                location.push('?');
                location.push_str(query);
            }
            return Response::redirect(location);
        }
        real = match resolve(root, &real, &[b"index.html"]) {
            Ok(real) => real,
            Err(status) => return Response::error(status),
        };
        name = b"index.html".to_vec();
    } else if wants_directory {
        return Response::error(404);
    }
    // Every symlink on the way was resolved, so O_NOFOLLOW only stops one
    // swapped in since; O_NONBLOCK keeps a FIFO from blocking the open.
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&real)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Response::error(404),
        Err(_) => return Response::error(403),
    };
    let metadata = match file.metadata() {
        Ok(m) if m.is_file() => m,
        _ => return Response::error(403),
    };
    Response {
        status: 200,
        content_type: content_type(&name),
        body: Body::File(file, metadata.len()),
        last_modified: metadata.modified().ok(),
        location: None,
    }
}

/// Walks `segments` down from `start` (a canonical directory inside `root`),
/// one component at a time, and returns the path it leads to, free of
/// symlinks. Every symlink met on the way must lead inside the root, or the
/// answer is 403 (even if later components would come back in); a missing
/// component is 404. Each component costs one `lstat`, plus a `canonicalize`
/// for a symlink.
fn resolve(root: &Path, start: &Path, segments: &[&[u8]]) -> Result<PathBuf, u16> {
    let mut current = start.to_path_buf();
    for segment in segments {
        current.push(OsStr::from_bytes(segment));
        let metadata = fs::symlink_metadata(&current).map_err(|e| status_of(&e))?;
        if metadata.file_type().is_symlink() {
            let target = fs::canonicalize(&current).map_err(|e| status_of(&e))?;
            if !target.starts_with(root) {
                log::info!("refused {}: a symlink out of the root", current.display());
                return Err(403);
            }
            current = target;
        }
    }
    Ok(current)
}

/// The status for a failure to look a path up.
fn status_of(error: &io::Error) -> u16 {
    match error.raw_os_error() {
        Some(libc::EACCES | libc::EPERM | libc::ELOOP) => 403,
        _ => 404,
    }
}

/// The media type of a file name, by its extension.
pub fn content_type(name: &[u8]) -> &'static str {
    let extension = name
        .rsplit(|&b| b == b'.')
        .next()
        .filter(|_| name.contains(&b'.'))
        .map(|e| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some(b"html" | b"htm") => "text/html; charset=utf-8",
        Some(b"txt") => "text/plain; charset=utf-8",
        Some(b"css") => "text/css; charset=utf-8",
        Some(b"js" | b"mjs") => "text/javascript; charset=utf-8",
        Some(b"json") => "application/json",
        Some(b"png") => "image/png",
        Some(b"jpg" | b"jpeg") => "image/jpeg",
        Some(b"gif") => "image/gif",
        Some(b"svg") => "image/svg+xml",
        Some(b"ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// An answer, before it is sent.
struct Response {
    status: u16,
    content_type: &'static str,
    body: Body,
    last_modified: Option<SystemTime>,
    location: Option<String>,
}

enum Body {
    Bytes(Vec<u8>),
    File(File, u64),
}

impl Response {
    fn bytes(status: u16, content_type: &'static str, bytes: Vec<u8>) -> Self {
        Response {
            status,
            content_type,
            body: Body::Bytes(bytes),
            last_modified: None,
            location: None,
        }
    }

    fn error(status: u16) -> Self {
        let text = format!("{status} {}", reason(status));
        let page = format!("<!DOCTYPE html>\n<title>{text}</title>\n<h1>{text}</h1>\n");
        Self::bytes(status, "text/html; charset=utf-8", page.into_bytes())
    }

    fn redirect(location: String) -> Self {
        let page = format!("<!DOCTYPE html>\n<title>301 Moved Permanently</title>\n<p>Moved to <a href=\"{location}\">{location}</a>.</p>\n");
        let mut response = Self::bytes(301, "text/html; charset=utf-8", page.into_bytes());
        response.location = Some(location);
        response
    }

    fn length(&self) -> u64 {
        match &self.body {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File(_, length) => *length,
        }
    }
}

/// The reason phrase of a status code.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

/// Writes the status line, the fields and (unless `head_only`) the body.
fn send(
    req: &mut StreamRequest,
    response: &Response,
    head_only: bool,
    persistence: Persistence,
) -> io::Result<()> {
    let mut head = String::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nDate: {}\r\nServer: {SERVER}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        response.status,
        reason(response.status),
        httpdate::fmt_http_date(SystemTime::now()),
        response.content_type,
        response.length()
    );
    if let Some(modified) = response.last_modified {
        let _ = write!(
            head,
            "Last-Modified: {}\r\n",
            httpdate::fmt_http_date(modified)
        );
    }
    if let Some(location) = &response.location {
        let _ = write!(head, "Location: {location}\r\n");
    }
    if response.status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    match persistence {
        Persistence::KeepAlive => {}
        Persistence::KeepAliveAnnounced => head.push_str("Connection: keep-alive\r\n"),
        Persistence::Close => head.push_str("Connection: close\r\n"),
    }
    head.push_str("\r\n");
    if head_only {
        return req.write_all(head.as_bytes());
    }
    match &response.body {
        Body::Bytes(bytes) => {
            let mut all = head.into_bytes();
            all.extend_from_slice(bytes);
            req.write_all(&all)
        }
        Body::File(file, length) => {
            req.write_all(head.as_bytes())?;
            let mut buffer = vec![0u8; 64 * 1024];
            let mut left = *length;
            let mut file = file;
            while left > 0 {
                let want = buffer
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = file.read(&mut buffer[..want])?;
                if n == 0 {
                    // The file shrank while being sent: the promised length
                    // cannot be kept, so the connection must end.
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while being sent",
                    ));
                }
                req.write_all(&buffer[..n])?;
                left -= n as u64;
            }
            Ok(())
        }
    }
}

/// The built-in page.
fn page() -> &'static str {
    concat!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hello world</title>
<style>
body { font-family: system-ui, sans-serif; text-align: center; margin: 3em auto; max-width: 40em; }
img { image-rendering: pixelated; width: 128px; height: 128px; }
</style>
</head>
<body>
<h1>hello world</h1>
<p><img id="picture" src="/hello.png" alt="a small globe drawn by the server"></p>
<p id="note">loading the picture…</p>
<p>Served by socketserver "#,
        env!("CARGO_PKG_VERSION"),
        r#". Start it with <code>--root DIR</code> to serve your own files.</p>
<script>
(function () {
  var picture = document.getElementById("picture");
  var note = document.getElementById("note");
  function report() {
    note.textContent = picture.naturalWidth > 0
      ? "picture loaded: " + picture.naturalWidth + "\u00d7" + picture.naturalHeight + " pixels"
      : "the picture did not load";
  }
  if (picture.complete) { report(); }
  else { picture.addEventListener("load", report); picture.addEventListener("error", report); }
})();
</script>
</body>
</html>
"#
    )
}

/// The built-in picture: a 64×64 PNG of a small globe, drawn and encoded here
/// (RGBA, one stored deflate block), once.
pub fn hello_png() -> &'static [u8] {
    static PNG: OnceLock<Vec<u8>> = OnceLock::new();
    PNG.get_or_init(|| encode_png(64, 64, &draw_globe(64)))
}

/// RGBA pixels of a globe: a shaded blue disc with green land.
fn draw_globe(size: usize) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(size * size * 4);
    let centre = (size as f64 - 1.0) / 2.0;
    let radius = size as f64 / 2.0 - 2.0;
    for y in 0..size {
        for x in 0..size {
            let (dx, dy) = ((x as f64 - centre) / radius, (y as f64 - centre) / radius);
            let distance = (dx * dx + dy * dy).sqrt();
            // Edge antialiasing over one pixel.
            let alpha = ((1.0 - distance) * radius + 0.5).clamp(0.0, 1.0);
            // Light from the upper left.
            let z = (1.0 - (dx * dx + dy * dy).min(1.0)).sqrt();
            let light = (0.35 + 0.65 * (-0.45 * dx - 0.55 * dy + 0.7 * z).max(0.0)).min(1.0);
            let land = (dx * 5.0).sin() + (dy * 4.0 + (dx * 3.0).cos()).cos() > 1.0;
            let (r, g, b) = if land {
                (70.0, 170.0, 80.0)
            } else {
                (40.0, 110.0, 220.0)
            };
            pixels.extend_from_slice(&[
                (r * light) as u8,
                (g * light) as u8,
                (b * light) as u8,
                (alpha * 255.0) as u8,
            ]);
        }
    }
    pixels
}

/// Encodes RGBA pixels as a PNG: signature, IHDR, one IDAT holding a zlib
/// stream of stored (uncompressed) deflate blocks, IEND.
fn encode_png(width: u32, height: u32, rgba: &[u8]) -> Vec<u8> {
    let row = width as usize * 4;
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for line in rgba.chunks(row) {
        raw.push(0); // filter: none
        raw.extend_from_slice(line);
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8 bits, RGBA, deflate, filter 0, no interlace

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (b"IHDR", &ihdr[..]),
        (b"IDAT", &zlib[..]),
        (b"IEND", &[][..]),
    ] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32(&png[start..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }
    png
}

/// CRC-32 (IEEE), as PNG chunks use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Adler-32, as zlib streams end with.
fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request_line(b"GET / HTTP/1.1"),
            Ok(("GET", "/", "HTTP/1.1"))
        );
        assert_eq!(
            parse_request_line(b"HEAD /a?b HTTP/1.0"),
            Ok(("HEAD", "/a?b", "HTTP/1.0"))
        );
        for bad in [
            &b"GET /"[..],
            b"GET HTTP/1.1",
            b"GET / HTTP/1.1 extra",
            b"GET  / HTTP/1.1",
            b"GET / HTTP/2.0",
            b"GET / http/1.1",
            b"G(T / HTTP/1.1",
            b"GET /\x7f HTTP/1.1",
            b"GET /\xff HTTP/1.1",
            b"",
        ] {
            assert!(
                parse_request_line(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn header_fields() {
        assert_eq!(parse_field(b"Host: a"), Ok((&b"Host"[..], &b"a"[..])));
        assert_eq!(parse_field(b"X-Empty:"), Ok((&b"X-Empty"[..], &b""[..])));
        assert!(parse_field(b"no colon").is_err());
        assert!(parse_field(b"Bad Name: x").is_err());
        assert!(parse_field(b": x").is_err());
        assert!(parse_field(b" folded").is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(split_target("/a/b?x=1#f"), Some(("/a/b", Some("x=1"))));
        assert_eq!(split_target("/a#f"), Some(("/a", None)));
        assert_eq!(
            split_target("http://host:8000/p?q"),
            Some(("/p", Some("q")))
        );
        assert_eq!(split_target("HTTPS://host"), Some(("/", None)));
        assert_eq!(split_target("*"), None);
        assert_eq!(split_target("a/b"), None);
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(b"index.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type(b"a.tar.gz"), "application/octet-stream");
        assert_eq!(content_type(b"README"), "application/octet-stream");
        assert_eq!(content_type(b"x.jpeg"), "image/jpeg");
        assert_eq!(content_type(b"x.svg"), "image/svg+xml");
        assert_eq!(content_type(b"favicon.ico"), "image/x-icon");
    }

    #[test]
    fn the_picture_is_a_valid_png() {
        let png = hello_png();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 64);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert!(
            png.ends_with(&[0xAE, 0x42, 0x60, 0x82]),
            "the IEND chunk's CRC"
        );
    }
}
