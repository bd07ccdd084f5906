//! [`AdminServer`]: the operators' HTTP/1.1 listener, answering `/healthz`,
//! `/readyz` and `/metrics` from an [`OpsState`].
//!
//! The listener runs on its own thread, an event loop on `mio` that serves
//! many admin connections at once, so that a slow or hostile client never
//! holds up a probe:
//!
//! - the request head must arrive within [`HEAD_TIMEOUT`] and fit in
//!   [`MAX_HEAD`] bytes; a request line over [`MAX_REQUEST_LINE`] bytes gets
//!   414, a head that does not fit 431, anything malformed 400;
//! - each connection gets one answer, with `Connection: close`, and is closed;
//!   an answer that the client does not read is dropped after a deadline;
//! - at most a few hundred admin connections are kept: past that, the oldest
//!   is closed to make room for the newest.
//!
//! GET and HEAD are answered: `/healthz` 200 `ok\n`; `/readyz` 200 `ready\n`
//! or 503 `draining\n`; `/metrics` 200 with
//! [`OpsState::render_metrics`]'s page as `text/plain; version=0.0.4`; other
//! paths 404. Other methods get 405 with `Allow: GET, HEAD`.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use socketserver::ops::admin::{AdminServer, OpsState};
//!
//! struct Process {
//!     draining: AtomicBool,
//! }
//!
//! impl OpsState for Process {
//!     fn ready(&self) -> bool {
//!         !self.draining.load(Ordering::Relaxed)
//!     }
//!     fn render_metrics(&self, out: &mut String) {
//!         out.push_str("# nothing counted yet\n");
//!     }
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! let process = Arc::new(Process { draining: AtomicBool::new(false) });
//! let admin = AdminServer::bind("127.0.0.1:0".parse().unwrap(), process.clone())?;
//!
//! let get = |path: &str| -> std::io::Result<String> {
//!     let mut stream = TcpStream::connect(admin.local_addr())?;
//!     write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
//!     let mut answer = String::new();
//!     stream.read_to_string(&mut answer)?;
//!     Ok(answer)
//! };
//! assert!(get("/readyz")?.starts_with("HTTP/1.1 200 OK\r\n"));
//! process.draining.store(true, Ordering::Relaxed); // a shutdown begins
//! let answer = get("/readyz")?;
//! assert!(answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
//! assert!(answer.ends_with("\r\n\r\ndraining\n"));
//!
//! admin.shutdown(); // stops and joins its thread; dropping it does the same
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use crate::transport::listener::gave_up_before_accept;

/// What the admin and agent listeners ask of the process they report on.
///
/// Both methods are called on the listener's thread while a connection
/// waits, so they should be quick: read a flag, snapshot some counters. A
/// panic in either is caught, logged, and answered with 500.
pub trait OpsState: Send + Sync {
    /// Whether the process accepts new clients: `false` from the moment a
    /// shutdown begins (`/readyz` 503, the agent says `drain`).
    fn ready(&self) -> bool;

    /// Appends the Prometheus text page to `out` (see
    /// [`metrics::render`](super::metrics::render)).
    fn render_metrics(&self, out: &mut String);
}

/// The longest request line answered, in bytes without its line end; a
/// longer one gets 414.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

/// The most bytes of a request head read from one connection; a head that
/// has not ended by then gets 431.
pub const MAX_HEAD: usize = 16 * 1024;

/// The most header fields in a request head; more gets 431.
pub const MAX_HEADERS: usize = 64;

/// How long a client has, from its connection, to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The statuses an admin answer can have.
pub const STATUSES: [u16; 8] = [200, 400, 404, 405, 414, 431, 500, 503];

/// One answer of the admin listener: its status and the bytes to send (the
/// whole HTTP/1.1 response, head and body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    /// The status code, one of [`STATUSES`].
    pub status: u16,
    /// The response as sent on the wire.
    pub bytes: Vec<u8>,
}

/// Turns the bytes a client has sent so far into the admin listener's
/// answer, or `None` while the request head may still be incomplete.
///
/// Never panics, whatever `received` holds, and always answers once
/// `received` is [`MAX_HEAD`] bytes or longer. Bytes after the head (a body,
/// a second request) are ignored: the connection closes after one answer.
pub fn respond(received: &[u8], state: &dyn OpsState) -> Option<AdminResponse> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(received);
    if request_line_too_long(received) {
        return Some(error_response(414));
    }
    match parsed {
        Ok(httparse::Status::Complete(_)) => {
            let (Some(method), Some(path)) = (request.method, request.path) else {
                return Some(error_response(400));
            };
            Some(route(method, path, state))
        }
        Ok(httparse::Status::Partial) if received.len() >= MAX_HEAD => Some(error_response(431)),
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => Some(error_response(431)),
        Err(_) => Some(error_response(400)),
    }
}

/// Whether the request line, after the empty lines a client may send first,
/// is longer than [`MAX_REQUEST_LINE`] (ended or not).
fn request_line_too_long(received: &[u8]) -> bool {
    let start = received
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(received.len());
    let line = &received[start..];
    let length = match line.iter().position(|&b| b == b'\n') {
        Some(end) if end > 0 && line[end - 1] == b'\r' => end - 1,
        Some(end) => end,
        None => line.len(),
    };
    length > MAX_REQUEST_LINE
}

/// The answer to a well-formed request.
fn route(method: &str, target: &str, state: &dyn OpsState) -> AdminResponse {
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return error_response(405),
    };
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    let answer = catch_unwind(AssertUnwindSafe(|| match path {
        "/healthz" => (200, TEXT, b"ok\n".to_vec()),
        "/readyz" if state.ready() => (200, TEXT, b"ready\n".to_vec()),
        "/readyz" => (503, TEXT, b"draining\n".to_vec()),
        "/metrics" => {
            let mut page = String::new();
            state.render_metrics(&mut page);
            (200, METRICS_CONTENT_TYPE, page.into_bytes())
        }
        _ => (404, TEXT, b"not found\n".to_vec()),
    }));
    match answer {
        Ok((status, content_type, body)) => response(status, content_type, "", &body, head_only),
        Err(_) => {
            log::error!("admin: answering {path} panicked");
            error_response(500)
        }
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// An error answer, with a one-line body naming it.
fn error_response(status: u16) -> AdminResponse {
    let (body, extra): (&[u8], &str) = match status {
        400 => (b"bad request\n", ""),
        405 => (b"method not allowed\n", "Allow: GET, HEAD\r\n"),
        414 => (b"request line too long\n", ""),
        431 => (b"request head too large\n", ""),
        _ => (b"internal error\n", ""),
    };
    response(status, TEXT, extra, body, false)
}

/// A whole HTTP/1.1 response; `head_only` leaves the body out (HEAD) but
/// keeps its `Content-Length`.
fn response(
    status: u16,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    head_only: bool,
) -> AdminResponse {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let mut bytes = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    AdminResponse { status, bytes }
}

/// The admin HTTP listener, serving on its own thread until
/// [`shutdown`](AdminServer::shutdown) or drop.
#[derive(Debug)]
pub struct AdminServer {
    server: OneShotServer,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port) and starts answering from
    /// `state`. Fails only if the address cannot be bound.
    pub fn bind(addr: SocketAddr, state: Arc<dyn OpsState>) -> io::Result<AdminServer> {
        AdminServer::bind_with_limits(addr, state, Limits::ADMIN)
    }

    fn bind_with_limits(
        addr: SocketAddr,
        state: Arc<dyn OpsState>,
        limits: Limits,
    ) -> io::Result<AdminServer> {
        let answer = move |received: &[u8]| respond(received, &*state).map(|r| r.bytes);
        let server = OneShotServer::bind(addr, "socketserver-admin", limits, answer)?;
        Ok(AdminServer { server })
    }

    /// The address it listens on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr
    }

    /// Stops listening, closes every admin connection and joins the thread.
    pub fn shutdown(mut self) {
        self.server.stop();
    }
}

// ---------------------------------------------------------------------------
// The event loop shared by the admin and agent listeners: each connection
// gets one answer, computed from the bytes it sent, and is closed.

/// Computes a connection's answer from the bytes it has sent so far (none,
/// right after accept), or `None` to wait for more. It must answer once
/// [`MAX_HEAD`] bytes have arrived, or the connection is closed unanswered.
pub(crate) trait Answer: Send + 'static {
    fn answer(&self, received: &[u8]) -> Option<Vec<u8>>;
}

impl<F: Fn(&[u8]) -> Option<Vec<u8>> + Send + 'static> Answer for F {
    fn answer(&self, received: &[u8]) -> Option<Vec<u8>> {
        self(received)
    }
}

/// The bounds a [`OneShotServer`] holds each connection to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// From accept to a complete request.
    pub head_timeout: Duration,
    /// From the answer's start to its last byte written.
    pub write_timeout: Duration,
    /// After the answer: how long to wait for the client to close, reading
    /// and discarding what it sends, so that closing does not reset the
    /// connection before the client has read the answer.
    pub linger_timeout: Duration,
    /// The most bytes discarded while lingering.
    pub linger_max_bytes: usize,
    /// Connections kept at once; past that the oldest is closed.
    pub max_connections: usize,
}

impl Limits {
    pub(crate) const ADMIN: Limits = Limits {
        head_timeout: HEAD_TIMEOUT,
        write_timeout: Duration::from_secs(10),
        linger_timeout: Duration::from_secs(2),
        linger_max_bytes: 2 * 1024 * 1024,
        max_connections: 256,
    };
}

/// A listener thread answering each connection once; stops on drop.
#[derive(Debug)]
pub(crate) struct OneShotServer {
    pub local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONNECTION: usize = 2;
/// How long to wait before accepting again after an accept error such as
/// running out of descriptors.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

impl OneShotServer {
    pub(crate) fn bind(
        addr: SocketAddr,
        name: &str,
        limits: Limits,
        answer: impl Answer,
    ) -> io::Result<OneShotServer> {
        let mut listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let event_loop = EventLoop {
            poll,
            listener,
            answer,
            limits,
            stop: Arc::clone(&stop),
            connections: HashMap::new(),
            next_token: FIRST_CONNECTION,
            accept_retry_at: None,
            name: name.to_string(),
        };
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || event_loop.run())?;
        Ok(OneShotServer {
            local_addr,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// Stops the loop and joins its thread; does nothing the second time.
    pub(crate) fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::Release);
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the {} thread: {e}", thread_name(&thread));
            }
            if thread.join().is_err() {
                log::error!("an ops listener thread panicked");
            }
        }
    }
}

fn thread_name(thread: &JoinHandle<()>) -> String {
    thread.thread().name().unwrap_or("ops").to_string()
}

impl Drop for OneShotServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct EventLoop<A> {
    poll: Poll,
    listener: TcpListener,
    answer: A,
    limits: Limits,
    stop: Arc<AtomicBool>,
    connections: HashMap<Token, Connection>,
    next_token: usize,
    accept_retry_at: Option<Instant>,
    name: String,
}

struct Connection {
    stream: TcpStream,
    deadline: Instant,
    phase: Phase,
}

enum Phase {
    /// Waiting for the request; holds what has arrived.
    Reading(Vec<u8>),
    /// Sending the answer.
    Writing { bytes: Vec<u8>, written: usize },
    /// Answer sent and write side shut: discarding input until the client
    /// closes.
    Lingering { discarded: usize },
}

impl<A: Answer> EventLoop<A> {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            let timeout = self
                .next_deadline()
                .map(|deadline| deadline.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                log::error!("{}: polling failed, listener stopped: {e}", self.name);
                return;
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(now),
                    WAKER => {}
                    token => self.drive(token, now),
                }
            }
            if self.accept_retry_at.is_some_and(|at| at <= now) {
                self.accept_retry_at = None;
                self.accept_all(now);
            }
            self.expire(now);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.connections
            .values()
            .map(|c| c.deadline)
            .chain(self.accept_retry_at)
            .min()
    }

    fn accept_all(&mut self, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((stream, _peer)) => self.admit(stream, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if gave_up_before_accept(&e) => {}
                Err(e) => {
                    // Out of descriptors or memory: the pending connections
                    // stay queued; try again shortly rather than spin.
                    log::warn!("{}: accept failed: {e}", self.name);
                    self.accept_retry_at = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, now: Instant) {
        if self.connections.len() >= self.limits.max_connections {
            // Tokens are handed out in increasing order: the smallest is
            // the oldest connection.
            let oldest = self.connections.keys().min().copied();
            if let Some(token) = oldest {
                log::debug!("{}: full, closing the oldest connection", self.name);
                self.close(token);
            }
        }
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("{}: cannot watch a connection: {e}", self.name);
            return;
        }
        let mut connection = Connection {
            stream,
            deadline: crate::deadline::later(now, self.limits.head_timeout),
            phase: Phase::Reading(Vec::new()),
        };
        if let Some(bytes) = self.answer.answer(&[]) {
            connection.start_writing(bytes, now, &self.limits);
        }
        self.connections.insert(token, connection);
        self.drive(token, now);
    }

    /// Moves one connection on as far as it goes without blocking; closes
    /// it when it is done or has failed.
    fn drive(&mut self, token: Token, now: Instant) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        if !connection.advance(&self.answer, &self.limits, now) {
            self.close(token);
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut connection) = self.connections.remove(&token) {
            let _ = self.poll.registry().deregister(&mut connection.stream);
        }
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<Token> = self
            .connections
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            log::debug!("{}: a connection passed its deadline", self.name);
            self.close(token);
        }
    }
}

impl Connection {
    fn start_writing(&mut self, bytes: Vec<u8>, now: Instant, limits: &Limits) {
        self.phase = Phase::Writing { bytes, written: 0 };
        self.deadline = crate::deadline::later(now, limits.write_timeout);
    }

    /// Reads, answers and writes until the socket would block. Returns
    /// whether the connection is still wanted.
    fn advance(&mut self, answer: &impl Answer, limits: &Limits, now: Instant) -> bool {
        let mut scratch = [0u8; 4096];
        loop {
            match &mut self.phase {
                Phase::Reading(received) => {
                    let room = (MAX_HEAD - received.len()).min(scratch.len());
                    match self.stream.read(&mut scratch[..room]) {
                        Ok(0) => return false,
                        Ok(n) => {
                            let before = received.len();
                            received.extend_from_slice(&scratch[..n]);
                            // Parse again only when the head may have ended
                            // (a line feed arrived) or a bound was reached:
                            // a client sending a byte at a time costs one
                            // parse per line, not per byte.
                            let worth_parsing = scratch[..n].contains(&b'\n')
                                || (before <= MAX_REQUEST_LINE
                                    && received.len() > MAX_REQUEST_LINE)
                                || received.len() >= MAX_HEAD;
                            if !worth_parsing {
                                continue;
                            }
                            match answer.answer(received) {
                                Some(bytes) => self.start_writing(bytes, now, limits),
                                None if received.len() >= MAX_HEAD => return false,
                                None => {}
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return false,
                    }
                }
                Phase::Writing { bytes, written } => match self.stream.write(&bytes[*written..]) {
                    Ok(0) => return false,
                    Ok(n) => {
                        *written += n;
                        if *written == bytes.len() {
                            let _ = self.stream.shutdown(Shutdown::Write);
                            self.phase = Phase::Lingering { discarded: 0 };
                            self.deadline = crate::deadline::later(now, limits.linger_timeout);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return false,
                },
                Phase::Lingering { discarded } => match self.stream.read(&mut scratch) {
                    Ok(0) => return false,
                    Ok(n) => {
                        *discarded += n;
                        if *discarded > limits.linger_max_bytes {
                            return false;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return false,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::TcpStream as StdTcpStream;
    use std::sync::atomic::AtomicUsize;

    /// A process whose readiness the test sets, with a fixed metrics page.
    struct TestState {
        ready: AtomicBool,
        page: String,
        renders: AtomicUsize,
    }

    impl OpsState for TestState {
        fn ready(&self) -> bool {
            self.ready.load(Ordering::Relaxed)
        }
        fn render_metrics(&self, out: &mut String) {
            self.renders.fetch_add(1, Ordering::Relaxed);
            out.push_str(&self.page);
        }
    }

    fn state_with_page(page: String) -> Arc<TestState> {
        Arc::new(TestState {
            ready: AtomicBool::new(true),
            page,
            renders: AtomicUsize::new(0),
        })
    }

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// Limits short enough for tests to see the deadlines pass.
    const QUICK: Limits = Limits {
        head_timeout: Duration::from_millis(400),
        write_timeout: Duration::from_millis(400),
        linger_timeout: Duration::from_millis(400),
        linger_max_bytes: 2 * 1024 * 1024,
        max_connections: 256,
    };

    fn connect(addr: SocketAddr) -> StdTcpStream {
        let stream = StdTcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// A parsed answer: status, header lines, body.
    struct Answer {
        status: u16,
        head: String,
        body: Vec<u8>,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().skip(1).find_map(|line| {
                let (n, v) = line.split_once(": ")?;
                n.eq_ignore_ascii_case(name).then_some(v)
            })
        }
    }

    fn parse_answer(raw: &[u8]) -> Answer {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8(raw[..end].to_vec()).unwrap();
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        Answer {
            status,
            head,
            body: raw[end + 4..].to_vec(),
        }
    }

    /// Sends `request` on a new connection and reads the answer to its end.
    fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
        let mut stream = connect(addr);
        stream.write_all(request).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        parse_answer(&raw)
    }

    fn get(addr: SocketAddr, path: &str) -> Answer {
        exchange(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        )
    }

    #[test]
    fn healthz_readyz_and_metrics() {
        let state = state_with_page("# a page\nx 1\n".to_string());
        let admin = AdminServer::bind(loopback(), state.clone()).unwrap();
        let addr = admin.local_addr();

        let health = get(addr, "/healthz");
        assert_eq!(health.status, 200);
        assert_eq!(health.body, b"ok\n");
        assert_eq!(health.header("Content-Length"), Some("3"));
        assert_eq!(health.header("Connection"), Some("close"));

        let ready = get(addr, "/readyz");
        assert_eq!(
            (ready.status, ready.body.as_slice()),
            (200, &b"ready\n"[..])
        );

        let metrics = get(addr, "/metrics");
        assert_eq!(metrics.status, 200);
        assert_eq!(
            metrics.header("Content-Type"),
            Some("text/plain; version=0.0.4")
        );
        assert_eq!(metrics.body, b"# a page\nx 1\n");
        assert_eq!(state.renders.load(Ordering::Relaxed), 1);

        // A shutdown begins: not ready, still healthy.
        state.ready.store(false, Ordering::Relaxed);
        let draining = get(addr, "/readyz");
        assert_eq!(draining.status, 503);
        assert_eq!(draining.body, b"draining\n");
        assert_eq!(get(addr, "/healthz").status, 200);

        // A query string does not change the path; HTTP/1.0 is answered too.
        assert_eq!(get(addr, "/healthz?verbose=1").status, 200);
        let old = exchange(addr, b"GET /healthz HTTP/1.0\r\n\r\n");
        assert_eq!((old.status, old.body.as_slice()), (200, &b"ok\n"[..]));
        admin.shutdown();
    }

    #[test]
    fn head_has_the_headers_and_no_body() {
        let state = state_with_page("m 1\n".repeat(100));
        let admin = AdminServer::bind(loopback(), state).unwrap();
        for (path, length) in [("/healthz", "3"), ("/readyz", "6"), ("/metrics", "400")] {
            let answer = exchange(
                admin.local_addr(),
                format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
            );
            assert_eq!(answer.status, 200, "{path}");
            assert_eq!(answer.header("Content-Length"), Some(length), "{path}");
            assert!(answer.body.is_empty(), "{path}");
        }
    }

    #[test]
    fn errors_get_their_status_and_close() {
        let admin = AdminServer::bind(loopback(), state_with_page(String::new())).unwrap();
        let addr = admin.local_addr();

        let missing = get(addr, "/nope");
        assert_eq!(
            (missing.status, missing.body.as_slice()),
            (404, &b"not found\n"[..])
        );

        for method in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
            let answer = exchange(
                addr,
                format!("{method} /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n").as_bytes(),
            );
            assert_eq!(answer.status, 405, "{method}");
            assert_eq!(answer.header("Allow"), Some("GET, HEAD"), "{method}");
        }

        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
            b"GET /healthz HTTP/2.0\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET\r\n\r\n",
        ] {
            assert_eq!(exchange(addr, garbage).status, 400, "{garbage:?}");
        }

        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST_LINE));
        assert_eq!(exchange(addr, long_line.as_bytes()).status, 414);

        let big_head = format!(
            "GET /healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n",
            "b".repeat(MAX_HEAD)
        );
        assert_eq!(exchange(addr, big_head.as_bytes()).status, 431);

        let many_headers = format!(
            "GET /healthz HTTP/1.1\r\n{}\r\n",
            "X: y\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(exchange(addr, many_headers.as_bytes()).status, 431);
    }

    #[test]
    fn a_request_in_pieces_is_answered_once_whole() {
        let admin = AdminServer::bind(loopback(), state_with_page(String::new())).unwrap();
        let mut stream = connect(admin.local_addr());
        for piece in [
            &b"GE"[..],
            b"T /hea",
            b"lthz HTTP/1.1\r\n",
            b"Host: t\r",
            b"\n\r\n",
        ] {
            stream.write_all(piece).unwrap();
            stream.flush().unwrap();
        }
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        assert_eq!(parse_answer(&raw).body, b"ok\n");
    }

    #[test]
    fn huge_and_unfinished_requests_do_not_delay_a_probe() {
        let admin = AdminServer::bind(loopback(), state_with_page(String::new())).unwrap();
        let addr = admin.local_addr();

        // A request head that never ends.
        let mut unfinished = connect(addr);
        unfinished
            .write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
            .unwrap();
        // A 1 MiB request line, sent by another thread as fast as it goes.
        let huge = std::thread::spawn(move || {
            let mut stream = connect(addr);
            let mut request = b"GET /".to_vec();
            request.resize(1024 * 1024, b'a');
            // The server answers after 8 KiB and reads the rest only to
            // discard it, so the write completes or fails: never hangs.
            let _ = stream.write_all(&request);
            let mut raw = Vec::new();
            let _ = stream.read_to_end(&mut raw);
            raw
        });
        // A 1 MiB header block on a third connection.
        let huge_head = std::thread::spawn(move || {
            let mut stream = connect(addr);
            let mut request = b"GET /healthz HTTP/1.1\r\nX-Big: ".to_vec();
            request.resize(1024 * 1024, b'b');
            let _ = stream.write_all(&request);
            let mut raw = Vec::new();
            let _ = stream.read_to_end(&mut raw);
            raw
        });

        let started = Instant::now();
        for _ in 0..5 {
            assert_eq!(get(addr, "/healthz").status, 200);
        }
        // Well under the 5 s head deadline that the unfinished request has.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "probes took {:?}",
            started.elapsed()
        );

        assert!(huge.join().unwrap().starts_with(b"HTTP/1.1 414 "));
        assert!(huge_head.join().unwrap().starts_with(b"HTTP/1.1 431 "));
        // The unfinished request is still waiting (its deadline is 5 s off).
        unfinished.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(
            unfinished.read(&mut byte).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    }

    #[test]
    fn an_unfinished_request_is_closed_at_its_deadline() {
        let admin =
            AdminServer::bind_with_limits(loopback(), state_with_page(String::new()), QUICK)
                .unwrap();
        let mut unfinished = connect(admin.local_addr());
        unfinished.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        // Closed without an answer once the head deadline passes.
        assert_eq!(unfinished.read_to_end(&mut rest).unwrap(), 0);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300),
            "closed after {waited:?}"
        );
        assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    }

    #[test]
    fn a_client_that_never_reads_blocks_no_one() {
        // A page far larger than the socket buffers on both sides can hold.
        const PAGE: usize = 32 * 1024 * 1024;
        let state = state_with_page("x".repeat(PAGE));
        let admin = AdminServer::bind_with_limits(loopback(), state, QUICK).unwrap();
        let addr = admin.local_addr();
        let mut stalled = connect(addr);
        stalled
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();

        let started = Instant::now();
        assert_eq!(get(addr, "/healthz").status, 200);
        assert!(started.elapsed() < Duration::from_secs(2));

        // Nothing to wait on but time: once the write deadline has passed,
        // the server drops the answer it could not send. Reading then gets
        // what the socket buffers held, and the end.
        std::thread::sleep(QUICK.write_timeout * 2);
        let mut raw = Vec::new();
        let _ = stalled.read_to_end(&mut raw);
        assert!(raw.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(raw.len() < PAGE, "read {} bytes", raw.len());
    }

    #[test]
    fn the_oldest_connection_makes_room_when_full() {
        let limits = Limits {
            max_connections: 4,
            ..Limits::ADMIN
        };
        let admin =
            AdminServer::bind_with_limits(loopback(), state_with_page(String::new()), limits)
                .unwrap();
        let addr = admin.local_addr();
        // The listen queue is first in, first out: the server admits the
        // four idle connections before the probe, so the probe finds it full.
        let mut idle: Vec<StdTcpStream> = (0..4).map(|_| connect(addr)).collect();
        assert_eq!(get(addr, "/healthz").status, 200);
        // The oldest was closed to make room; the others still wait.
        let mut rest = Vec::new();
        assert_eq!(idle[0].read_to_end(&mut rest).unwrap(), 0);
        for stream in &mut idle[1..] {
            stream.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            assert_eq!(
                stream.read(&mut byte).unwrap_err().kind(),
                ErrorKind::WouldBlock
            );
        }
    }

    #[test]
    fn a_panicking_state_costs_one_answer() {
        struct Broken;
        impl OpsState for Broken {
            fn ready(&self) -> bool {
                panic!("broken readiness")
            }
            fn render_metrics(&self, _out: &mut String) {
                panic!("broken metrics")
            }
        }
        let admin = AdminServer::bind(loopback(), Arc::new(Broken)).unwrap();
        assert_eq!(get(admin.local_addr(), "/readyz").status, 500);
        assert_eq!(get(admin.local_addr(), "/metrics").status, 500);
        assert_eq!(get(admin.local_addr(), "/healthz").status, 200);
    }

    #[test]
    fn shutdown_closes_the_listener_and_its_connections() {
        let admin = AdminServer::bind(loopback(), state_with_page(String::new())).unwrap();
        let addr = admin.local_addr();
        let mut waiting = connect(addr);
        waiting.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
        assert_eq!(get(addr, "/healthz").status, 200);
        let started = Instant::now();
        admin.shutdown();
        assert!(started.elapsed() < Duration::from_secs(2));
        let mut rest = Vec::new();
        assert_eq!(waiting.read_to_end(&mut rest).unwrap(), 0);
        assert_eq!(
            StdTcpStream::connect(addr).unwrap_err().kind(),
            ErrorKind::ConnectionRefused
        );
    }

    #[test]
    fn the_listeners_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<AdminServer>();
        shareable::<crate::ops::agent::AgentCheck>();
    }

    #[test]
    fn binding_a_taken_port_fails() {
        let admin = AdminServer::bind(loopback(), state_with_page(String::new())).unwrap();
        let taken = AdminServer::bind(admin.local_addr(), state_with_page(String::new()));
        assert_eq!(taken.unwrap_err().kind(), ErrorKind::AddrInUse);
    }

    /// The answer's status, checked to be well-formed.
    fn status_of(received: &[u8], state: &TestState) -> Option<u16> {
        let response = respond(received, state)?;
        assert!(STATUSES.contains(&response.status));
        let prefix = format!("HTTP/1.1 {} ", response.status);
        assert!(response.bytes.starts_with(prefix.as_bytes()));
        Some(response.status)
    }

    proptest! {
        #[test]
        fn any_bytes_get_an_allowed_status_or_wait(received in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let state = state_with_page(String::new());
            let _ = status_of(&received, &state);
        }

        #[test]
        fn a_full_buffer_is_always_answered(
            prefix in proptest::collection::vec(any::<u8>(), 0..64),
            fill in any::<u8>(),
        ) {
            let state = state_with_page(String::new());
            let mut received = prefix;
            received.resize(MAX_HEAD, fill);
            prop_assert!(status_of(&received, &state).is_some());
        }

        #[test]
        fn requests_are_routed_by_method_and_path(
            method in prop_oneof![
                Just("GET".to_string()),
                Just("HEAD".to_string()),
                Just("POST".to_string()),
                "[A-Z]{1,8}",
            ],
            path in prop_oneof![
                Just("/healthz".to_string()),
                Just("/readyz".to_string()),
                Just("/metrics".to_string()),
                "/[a-z]{0,12}",
            ],
            query in proptest::option::of("[a-z=&]{0,10}"),
            ready in any::<bool>(),
            headers in proptest::collection::vec(("[A-Za-z-]{1,10}", "[ -~]{0,20}"), 0..5),
        ) {
            let state = state_with_page("p 1\n".to_string());
            state.ready.store(ready, Ordering::Relaxed);
            let mut request = format!("{method} {path}");
            if let Some(query) = &query {
                request.push('?');
                request.push_str(query);
            }
            request.push_str(" HTTP/1.1\r\n");
            for (name, value) in &headers {
                request.push_str(&format!("{name}: {}\r\n", value.trim()));
            }
            request.push_str("\r\n");
            let expected = match (method.as_str(), path.as_str()) {
                (m, _) if m != "GET" && m != "HEAD" => 405,
                (_, "/healthz" | "/metrics") => 200,
                (_, "/readyz") if ready => 200,
                (_, "/readyz") => 503,
                _ => 404,
            };
            let bytes = request.as_bytes();
            prop_assert_eq!(status_of(bytes, &state), Some(expected));
            // No proper prefix of a well-formed head is answered early.
            for end in 0..bytes.len() - 1 {
                prop_assert_eq!(status_of(&bytes[..end], &state), None, "prefix {}", end);
            }
        }
    }
}
