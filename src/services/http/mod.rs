//! http: a static HTTP/1.1 file server.
//!
//! # Protocol
//!
//! HTTP/1.1 (RFC 9112) and HTTP/1.0, methods GET and HEAD, for the files under
//! a root directory ([`StaticHttp::with_root`]); without a root
//! ([`StaticHttp::builtin`]), a built-in page saying `hello world` (at `/` and
//! `/index.html`) and the picture it shows (`/hello.png`, [`hello_png`]).
//! What a request gets:
//!
//! | request | answer |
//! |---|---|
//! | a file | 200, `Content-Type` by extension, `Content-Length`, `Last-Modified`; the file is streamed, HEAD sends no body |
//! | a directory, `/dir/` | its `index.html`; without one, 404, or a listing with [`StaticHttp::list_directories`] |
//! | a directory without its slash, `/dir` | 301 to `/dir/` (query kept; the `Location` is a path with a single leading `/`) |
//! | `..` in the path, or a symlink whose target is outside the root | 403 |
//! | a file that cannot be read, or is not a regular file | 403 |
//! | nothing there | 404 |
//! | another method (POST, PUT...) | 405 with `Allow: GET, HEAD` |
//! | a request line over 8 KiB | 414 |
//! | a head over 64 KiB or with over 100 fields (after the request line) | 431 |
//! | garbage, a missing target, extra parts, a version other than `HTTP/1.0` and `HTTP/1.1`, a header line without a colon, a bare CR or a NUL in a field, an HTTP/1.1 request without exactly one `Host`, TLS bytes | 400 |
//!
//! Every answer has `Date`, `Content-Length` and `Content-Type`. The path is
//! percent-decoded (an encoded `/` separates segments like a plain one);
//! the query and fragment are ignored. After a 400, 414 or 431 the connection
//! is closed. Otherwise HTTP/1.1 connections stay open for the next request
//! unless the client sends `Connection: close`; HTTP/1.0 connections close
//! unless it sends `Connection: keep-alive`. Pipelined requests are answered
//! in order. A request body (sent with GET, say) is read and discarded up to
//! 1 MiB before the answer; beyond that, or with `Transfer-Encoding`, the
//! connection is closed after the answer.
//!
//! A request head must be complete within [`StaticHttp::head_timeout`]
//! (10 s) of its first byte, or the connection is closed: a client that
//! trickles its head (slowloris) holds a connection for that long at most. A
//! connection idle between requests is closed after the server's
//! [`idle_timeout`](crate::Options::idle_timeout) (`serve http`: 60 s), and
//! every idle one at once when the server shuts down: open browser tabs do
//! not hold the shutdown up.
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
//!
//! # As a message handler
//!
//! [`StaticHttp`] is a [`MessageHandler`]: it runs on a thread per
//! connection or on an event loop, with the same bytes on the wire. Its
//! messages are request heads ([`Framing::HttpHead`]); a body to discard
//! comes as the next messages, in exact pieces, after which the request is
//! answered. Answers from a root read the disk, so they are
//! [blocking](MessageHandler::blocking); the built-in page never blocks.
//!
//! ```
//! use std::time::Duration;
//! use socketserver::services::StaticHttp;
//! use socketserver::{Options, ThreadingTcpServer};
//!
//! let site = StaticHttp::builtin().head_timeout(Some(Duration::from_secs(5)));
//! let options = Options::new().idle_timeout(Some(Duration::from_secs(60)));
//! let server = ThreadingTcpServer::bind_with("127.0.0.1:0", site, options)?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod head;
mod response;
mod site;

use std::fs;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::request::{Closing, Conn, Framing, FramingError, MessageHandler, Next};

pub use head::ParsedHead;
pub use site::{content_type, hello_png};

use head::{Persistence, Refusal, Request};
use response::Response;
use site::Site;

/// The default longest request line, in bytes.
pub const DEFAULT_MAX_REQUEST_LINE: usize = 8 * 1024;
/// The default largest request head (request line and fields), in bytes.
pub const DEFAULT_MAX_HEAD: usize = 64 * 1024;
/// The default most header fields in a request.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// The default time a request head may take from its first byte to its end.
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The idle timeout that `serve http` gives its server unless
/// `--idle-timeout` says otherwise. A library user sets the server's
/// [`Options::idle_timeout`](crate::Options::idle_timeout).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest request body that is read and discarded to keep a connection.
const MAX_DISCARDED_BODY: u64 = 1 << 20;
/// The most body bytes taken as one message.
const BODY_PIECE: usize = 64 * 1024;

/// A static file server: a [`MessageHandler`] for stream servers (TCP,
/// Unix); see the [module documentation](self).
///
/// ```no_run
/// use std::time::Duration;
/// use socketserver::services::StaticHttp;
/// use socketserver::{Options, ThreadingTcpServer};
///
/// let site = StaticHttp::with_root("./public")?.list_directories(true);
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
    head_timeout: Option<Duration>,
    list_directories: bool,
}

impl StaticHttp {
    /// Serves the built-in page and its picture.
    pub fn builtin() -> Self {
        StaticHttp {
            root: None,
            max_request_line: DEFAULT_MAX_REQUEST_LINE,
            max_head: DEFAULT_MAX_HEAD,
            max_headers: DEFAULT_MAX_HEADERS,
            head_timeout: Some(DEFAULT_HEAD_TIMEOUT),
            list_directories: false,
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

    /// Sets how long a request head may take from its first byte to its
    /// end, as nginx's `client_header_timeout`: a client that is slower is
    /// disconnected (default 10 s; `None` or zero: no limit but the server's
    /// idle timeout). A body is not held to it.
    pub fn head_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.head_timeout = timeout.filter(|t| !t.is_zero());
        self
    }

    /// Whether a directory without `index.html` is answered with a listing
    /// of its files and directories (default false: 404).
    pub fn list_directories(mut self, list: bool) -> Self {
        self.list_directories = list;
        self
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
        head::read(reader, self.head_framing(), self.max_headers)
    }

    fn head_framing(&self) -> Framing {
        Framing::HttpHead {
            max_line: self.max_request_line,
            max_head: self.max_head,
        }
    }

    fn site(&self) -> Site<'_> {
        Site {
            root: self.root.as_deref(),
            list_directories: self.list_directories,
        }
    }

    /// A request head arrived: answer it, or wait for its body first.
    fn on_head(
        &self,
        session: &mut HttpSession,
        head: &[u8],
        conn: &mut Conn<'_>,
    ) -> io::Result<Next> {
        let request = match head::parse(head, self.max_headers) {
            Ok(request) => request,
            Err(refusal) => {
                self.refuse(refusal, conn)?;
                return Ok(Next::Close);
            }
        };
        // A body cannot be answered, but must be got out of the way.
        let mut persistence = request.persistence;
        if request.chunked || request.content_length > MAX_DISCARDED_BODY {
            persistence = Persistence::Close;
        } else if request.content_length > 0 {
            session.body = Some(PendingBody {
                left: request.content_length,
                request,
                persistence,
            });
            // A body is held to the idle timeout between reads, as nginx's
            // client_body_timeout, not to the head's deadline.
            conn.set_message_timeout(None, false);
            return Ok(Next::Continue);
        }
        self.answer(&request, persistence, conn)
    }

    /// Answers a request whose body (if any) is out of the way.
    fn answer(
        &self,
        request: &Request,
        mut persistence: Persistence,
        conn: &mut Conn<'_>,
    ) -> io::Result<Next> {
        let response = self.site().respond(request);
        if response.status == 400 {
            persistence = Persistence::Close;
        }
        log::info!(
            "{} \"{} {} {}\" {} {}",
            conn.peer(),
            request.method,
            request.target,
            request.version,
            response.status,
            response.length()
        );
        response.send(conn, request.method == "HEAD", persistence)?;
        Ok(match persistence {
            Persistence::Close => Next::Close,
            _ => Next::Continue,
        })
    }

    /// Answers a head that broke the rules with its error status; the
    /// connection closes afterwards.
    fn refuse(&self, refusal: Refusal, conn: &mut Conn<'_>) -> io::Result<()> {
        let Refusal { status, why } = refusal;
        log::info!(
            "{}: {status} {} ({why})",
            conn.peer(),
            response::reason(status)
        );
        Response::error(status).send(conn, false, Persistence::Close)
    }
}

/// What a connection of [`StaticHttp`] keeps between its messages: the
/// request whose body is being read and discarded, if any.
#[derive(Debug, Default)]
pub struct HttpSession {
    body: Option<PendingBody>,
}

/// A request waiting for the end of its body to be answered.
#[derive(Debug)]
struct PendingBody {
    request: Request,
    persistence: Persistence,
    /// Body bytes still to come.
    left: u64,
}

impl PendingBody {
    /// The size of the next piece of the body.
    fn next_piece(&self) -> usize {
        usize::try_from(self.left).map_or(BODY_PIECE, |left| left.min(BODY_PIECE))
    }
}

impl MessageHandler for StaticHttp {
    type Session = HttpSession;

    fn framing(&self, session: &HttpSession) -> Framing {
        match &session.body {
            Some(body) => Framing::Exact {
                len: body.next_piece(),
            },
            None => self.head_framing(),
        }
    }

    /// Only an answer from a root touches the disk: after a head (which may
    /// be answered at once) or a body's last piece.
    fn blocking(&self, session: &HttpSession) -> bool {
        self.root.is_some()
            && session
                .body
                .as_ref()
                .is_none_or(|body| body.left <= BODY_PIECE as u64)
    }

    fn in_request(&self, session: &HttpSession) -> bool {
        session.body.is_some()
    }

    fn idle_ends_at_shutdown(&self) -> bool {
        true
    }

    fn open(&self, conn: &mut Conn<'_>) -> io::Result<HttpSession> {
        conn.set_message_timeout(self.head_timeout, false);
        Ok(HttpSession::default())
    }

    fn on_message(
        &self,
        session: &mut HttpSession,
        message: &[u8],
        conn: &mut Conn<'_>,
    ) -> io::Result<Next> {
        let Some(mut body) = session.body.take() else {
            return self.on_head(session, message, conn);
        };
        body.left -= message.len() as u64;
        if body.left > 0 {
            session.body = Some(body);
            return Ok(Next::Continue);
        }
        conn.set_message_timeout(self.head_timeout, false);
        self.answer(&body.request, body.persistence, conn)
    }

    fn on_bad_message(
        &self,
        session: &mut HttpSession,
        error: FramingError,
        conn: &mut Conn<'_>,
    ) -> io::Result<()> {
        if session.body.is_some() {
            // The client ended its input inside a body: nobody to answer.
            log::debug!("{}: the request body ended early", conn.peer());
            return Ok(());
        }
        self.refuse(head::framing_refusal(error), conn)
    }

    fn close(&self, _: HttpSession, why: Closing, conn: &mut Conn<'_>) {
        if why == Closing::Timeout {
            log::debug!(
                "{}: idle, or a head not complete in time; closing",
                conn.peer()
            );
        }
    }
}
