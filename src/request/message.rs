//! [`MessageHandler`]: a handler called once per whole message.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use super::framing::{Framing, FramingError};
use super::handler::log_request_error;
use crate::server::control::ServerHandle;
use crate::transport::Address;

/// What a handler says after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for the next message.
    Continue,
    /// Send what was written, then end the conversation politely: the
    /// client reads the end of input after the last reply, and what it still
    /// sends is read and discarded for a moment so that the replies are not
    /// lost to a reset.
    Close,
}

/// Why a connection is closing, as [`MessageHandler::close`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The client ended its input between messages.
    Eof,
    /// The handler returned [`Next::Close`], or broke off after a bad
    /// message.
    Handler,
    /// The connection sent nothing for its idle timeout, or a message was not
    /// complete within its message timeout.
    Timeout,
    /// The server is shutting down and the connection had no message in
    /// progress. The handler can still write a last word.
    Shutdown,
    /// An error: the client reset the connection, a reply could not be
    /// sent, or the handler failed.
    Error,
}

/// A handler called once per whole message, with per-connection state.
///
///
/// A [`RequestHandler`](crate::RequestHandler) owns its connection for its
/// whole life: its `handle` is a blocking loop, as in Python. A message
/// handler instead declares how its messages are [framed](Framing) and is
/// called with each whole message, with the connection's state kept between
/// calls in its [`Session`](MessageHandler::Session). The same handler then
/// runs on a pool thread per connection (the threads mode: every message
/// handler is a `RequestHandler<StreamRequest>` too) or on an event loop that
/// parks idle connections without a thread or a buffer (the reactor mode).
///
/// Replies written to the [`Conn`] are buffered and sent when the handler
/// returns. A handler whose messages may block (running a program, reading a
/// file) says so with [`blocking`](MessageHandler::blocking): in reactor mode
/// it then runs on a pool thread with the connection in blocking mode, and
/// can read more bytes itself (a body whose size the message gave).
///
/// ```
/// use std::io::{self, Write};
/// use socketserver::request::{Conn, Framing, MessageHandler, Next};
/// use socketserver::ThreadingTcpServer;
///
/// /// Answers every line with its length.
/// struct LineLength;
///
/// impl MessageHandler for LineLength {
///     type Session = ();
///
///     fn framing(&self, _: &()) -> Framing {
///         Framing::Line { max: 1024 }
///     }
///
///     fn open(&self, _: &mut Conn<'_>) -> io::Result<()> {
///         Ok(())
///     }
///
///     fn on_message(&self, _: &mut (), line: &[u8], conn: &mut Conn<'_>) -> io::Result<Next> {
///         writeln!(conn, "{}", line.len())?;
///         Ok(Next::Continue)
///     }
/// }
///
/// let server = ThreadingTcpServer::bind("127.0.0.1:0", LineLength)?;
/// # Ok::<(), io::Error>(())
/// ```
///
/// One handler value serves every connection, so methods take `&self`;
/// what belongs to one connection lives in its
/// [`Session`](MessageHandler::Session).
pub trait MessageHandler: Send + Sync + 'static {
    /// What a connection keeps between its messages.
    type Session: Send + 'static;

    /// How the connection's next message is framed. Asked before each
    /// message, so a session can change it (a handshake's fixed-size answer,
    /// then frames).
    fn framing(&self, session: &Self::Session) -> Framing;

    /// Whether the session's next message may block: run a program, touch a
    /// file, read a body itself. In reactor mode such a message runs on a
    /// pool thread, the connection in blocking mode; others run inline on
    /// the event loop, which must never block. Default: never blocks.
    fn blocking(&self, session: &Self::Session) -> bool {
        let _ = session;
        false
    }

    /// Whether the session is in the middle of a request that spans
    /// several framed messages (an HTTP head, then its body in pieces):
    /// such a connection is not idle between them, so a shutdown lets the
    /// request finish (until the deadline) instead of closing it at once.
    /// Default false.
    fn in_request(&self, session: &Self::Session) -> bool {
        let _ = session;
        false
    }

    /// Whether, in threads mode, a connection waiting between messages is
    /// closed at once when the server shuts down (its handler's
    /// [`close`](MessageHandler::close) told [`Closing::Shutdown`]), as it
    /// always is in reactor mode. Default false: in threads mode a
    /// connection is one request, which finishes or is cut at the shutdown
    /// deadline, as with a [`RequestHandler`](crate::RequestHandler). A
    /// service whose connections idle for long (HTTP keep-alive, a chat
    /// room) says true.
    fn idle_ends_at_shutdown(&self) -> bool {
        false
    }

    /// A new connection (Python's `setup`): greet the client, start its
    /// session. An error closes the connection.
    fn open(&self, conn: &mut Conn<'_>) -> io::Result<Self::Session>;

    /// One whole message; replies written to `conn` are sent when it
    /// returns. An error closes the connection and goes to
    /// [`handle_error`](MessageHandler::handle_error).
    fn on_message(
        &self,
        session: &mut Self::Session,
        message: &[u8],
        conn: &mut Conn<'_>,
    ) -> io::Result<Next>;

    /// The bytes broke the framing (a line or a frame over its limit, or
    /// the input ended inside a message); the connection closes afterwards,
    /// politely. Answer here if the protocol has a way to. By default it is
    /// logged (truncations at debug level, the rest at info).
    fn on_bad_message(
        &self,
        session: &mut Self::Session,
        error: FramingError,
        conn: &mut Conn<'_>,
    ) -> io::Result<()> {
        let _ = session;
        match error {
            FramingError::Truncated { .. } => log::debug!("{}: {error}", conn.peer()),
            _ => log::info!("{}: {error}; closing", conn.peer()),
        }
        Ok(())
    }

    /// The connection is closing (Python's `finish`): leave a room, write a
    /// last word at a shutdown. What is written here is sent if the client
    /// still reads. Does nothing by default.
    fn close(&self, session: Self::Session, why: Closing, conn: &mut Conn<'_>) {
        let _ = (session, why, conn);
    }

    /// Decides, before anything else, whether to serve a client (after the
    /// stream layers, so behind a PROXY header the address is the client's).
    /// Accepts everyone by default.
    fn verify_request(&self, peer: &Address) -> bool {
        let _ = peer;
        true
    }

    /// Reports an error that ended a connection. By default it logs through
    /// `log` (see [`log_request_error`]).
    fn handle_error(&self, peer: &Address, error: &io::Error) {
        log_request_error(peer, error);
    }

    /// Called by the server's loop on every turn, and at least once per
    /// [`poll_interval`](crate::Options::poll_interval). Does nothing by
    /// default.
    fn service_actions(&self) {}
}

/// The handler's view of its connection during a call: write replies (they
/// are buffered and sent when the call returns), read more bytes (blocking
/// messages only), learn the peer, reach the server, get a [`ConnHandle`]
/// to send from elsewhere.
pub struct Conn<'a> {
    io: &'a mut dyn ConnIo,
}

impl<'a> Conn<'a> {
    pub(crate) fn new(io: &'a mut dyn ConnIo) -> Self {
        Conn { io }
    }

    /// The client's address (behind a PROXY header, the one it gave).
    pub fn peer(&self) -> &Address {
        self.io.peer()
    }

    /// The server this connection belongs to.
    pub fn server(&self) -> &ServerHandle {
        self.io.server()
    }

    /// True when this call may block: the threads mode, or a
    /// [`blocking`](MessageHandler::blocking) message in reactor mode.
    /// Only then can the handler [read](Read) from the connection.
    pub fn is_blocking(&self) -> bool {
        self.io.is_blocking()
    }

    /// The buffer that replies collect in before they are sent: append to
    /// it to build a reply in place, without a copy (uppercasing an echo,
    /// say).
    pub fn output(&mut self) -> &mut Vec<u8> {
        self.io.output()
    }

    /// Sends what was written so far now, waiting for the client if it must
    /// (blocking calls only; elsewhere the event loop sends it when the call
    /// returns).
    pub fn flush_now(&mut self) -> io::Result<()> {
        self.io.flush_now()
    }

    /// A handle to send to this connection from any thread (another
    /// connection's handler, a timer). Bytes sent through it go out after
    /// what was written before, in order. Each connection has at most
    /// `max_backlog` bytes waiting for a client that does not read; past
    /// that, it is disconnected.
    pub fn handle(&mut self, max_backlog: usize) -> io::Result<ConnHandle> {
        self.io.handle(max_backlog)
    }

    /// Closes the connection for anything but the last word when a client
    /// sends nothing for `timeout` between or within messages; `None`: the
    /// server's [`idle_timeout`](crate::Options::idle_timeout). Applies from
    /// the next wait on.
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        self.io.set_timeouts(Some(timeout), None)
    }

    /// Requires every message to be complete within `timeout` of its first
    /// byte (an HTTP head's deadline against clients that trickle it), or
    /// within `timeout` from now for the next one when `from_now` (a
    /// handshake's answer). `None`: no such limit.
    pub fn set_message_timeout(&mut self, timeout: Option<Duration>, from_now: bool) {
        self.io.set_timeouts(None, Some((timeout, from_now)))
    }

    /// Reads nothing more from this connection for `pause` after this call:
    /// its client is slowed down by the transport's flow control (flood
    /// control). A shutdown ends the pause.
    pub fn pause_reading(&mut self, pause: Duration) {
        self.io.pause_reading(pause)
    }

    /// How much of what the client still sends is read and discarded when
    /// the connection closes politely (after [`Next::Close`] or a bad
    /// message), so that it sees the last replies: default 1 MiB, for at
    /// most 2 s. A service that refuses large uploads raises it.
    pub fn set_linger(&mut self, max_discard: usize) {
        self.io.set_linger(max_discard)
    }

    /// The connection's descriptor, to watch it (for a hang-up, say) while a
    /// blocking message runs. Reading from it directly would bypass the
    /// bytes already buffered.
    pub fn as_raw_fd(&self) -> RawFd {
        self.io.raw_fd()
    }
}

impl Write for Conn<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Conn<'_> {
    /// Reads bytes past the message: those already received first, then
    /// from the socket. Only in a blocking call; elsewhere an error of kind
    /// [`io::ErrorKind::Unsupported`].
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.read(buf)
    }
}

impl fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("peer", self.peer())
            .field("blocking", &self.is_blocking())
            .finish()
    }
}

/// What a dispatcher provides behind a [`Conn`].
pub(crate) trait ConnIo {
    fn peer(&self) -> &Address;
    fn server(&self) -> &ServerHandle;
    fn is_blocking(&self) -> bool;
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    fn output(&mut self) -> &mut Vec<u8>;
    fn flush_now(&mut self) -> io::Result<()>;
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    fn handle(&mut self, max_backlog: usize) -> io::Result<ConnHandle>;
    /// `idle`: a new idle timeout (`Some(None)`: the server's); `message`: a
    /// new message timeout and whether it counts from now.
    fn set_timeouts(
        &mut self,
        idle: Option<Option<Duration>>,
        message: Option<(Option<Duration>, bool)>,
    );
    fn set_linger(&mut self, max_discard: usize);
    fn pause_reading(&mut self, pause: Duration);
    fn raw_fd(&self) -> RawFd;
}

/// Reads from `kept` (bytes that came after the message being handled)
/// before the socket: copies what fits into `buf` and counts it in `used`;
/// `None` once every kept byte was read.
pub(crate) fn read_kept(kept: &[u8], used: &mut usize, buf: &mut [u8]) -> Option<usize> {
    let rest = &kept[*used..];
    if rest.is_empty() {
        return None;
    }
    let n = rest.len().min(buf.len());
    buf[..n].copy_from_slice(&rest[..n]);
    *used += n;
    Some(n)
}

/// The error of a [`Conn::read`] outside a blocking call.
pub(crate) fn cannot_read() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a message handler reads only in blocking calls (see MessageHandler::blocking)",
    )
}

/// Sends to one connection from any thread; from [`Conn::handle`]. Cheap to
/// clone.
#[derive(Clone)]
pub struct ConnHandle(pub(crate) Arc<dyn Outlet>);

impl ConnHandle {
    /// Queues `bytes` for the connection, after everything queued before,
    /// without waiting for the client. False when the connection is gone or
    /// was just disconnected because its backlog overflowed.
    pub fn send(&self, bytes: &[u8]) -> bool {
        self.0.send(bytes)
    }

    /// Closes the connection after what is queued, as if its handler had
    /// returned [`Next::Close`].
    pub fn close(&self) {
        self.0.close()
    }

    /// True once the connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

impl fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnHandle")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Where a [`ConnHandle`]'s bytes go: each dispatch mode has its own.
pub(crate) trait Outlet: Send + Sync {
    fn send(&self, bytes: &[u8]) -> bool;
    fn close(&self);
    fn is_closed(&self) -> bool;
}

/// One message handler shared by several servers (a service on TCP and on a
/// Unix socket at once, say): cloning it is cheap, and every clone calls the
/// same handler, whose state they share. Dereferences to the handler.
///
/// ```
/// use socketserver::request::Shared;
/// use socketserver::services::ChatRoom;
/// use socketserver::{ReactorTcpServer, ThreadingUnixStreamServer};
///
/// let room = Shared::new(ChatRoom::new());
/// let tcp = ReactorTcpServer::bind("127.0.0.1:0", room.clone())?;
/// # let dir = std::env::temp_dir().join(format!("shared-doc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let unix = ThreadingUnixStreamServer::bind(dir.join("chat.sock"), room.clone())?;
/// assert!(room.members().is_empty()); // one room behind both
/// # drop(unix); std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Shared<H>(Arc<H>);

impl<H> Shared<H> {
    /// Shares `handler`.
    pub fn new(handler: H) -> Self {
        Shared(Arc::new(handler))
    }
}

impl<H> Clone for Shared<H> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<H> From<Arc<H>> for Shared<H> {
    fn from(handler: Arc<H>) -> Self {
        Shared(handler)
    }
}

impl<H> std::ops::Deref for Shared<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.0
    }
}

impl<H: MessageHandler> MessageHandler for Shared<H> {
    type Session = H::Session;

    fn framing(&self, session: &Self::Session) -> Framing {
        self.0.framing(session)
    }

    fn blocking(&self, session: &Self::Session) -> bool {
        self.0.blocking(session)
    }

    fn in_request(&self, session: &Self::Session) -> bool {
        self.0.in_request(session)
    }

    fn idle_ends_at_shutdown(&self) -> bool {
        self.0.idle_ends_at_shutdown()
    }

    fn open(&self, conn: &mut Conn<'_>) -> io::Result<Self::Session> {
        self.0.open(conn)
    }

    fn on_message(
        &self,
        session: &mut Self::Session,
        message: &[u8],
        conn: &mut Conn<'_>,
    ) -> io::Result<Next> {
        self.0.on_message(session, message, conn)
    }

    fn on_bad_message(
        &self,
        session: &mut Self::Session,
        error: FramingError,
        conn: &mut Conn<'_>,
    ) -> io::Result<()> {
        self.0.on_bad_message(session, error, conn)
    }

    fn close(&self, session: Self::Session, why: Closing, conn: &mut Conn<'_>) {
        self.0.close(session, why, conn)
    }

    fn verify_request(&self, peer: &Address) -> bool {
        self.0.verify_request(peer)
    }

    fn handle_error(&self, peer: &Address, error: &io::Error) {
        self.0.handle_error(peer, error)
    }

    fn service_actions(&self) {
        self.0.service_actions()
    }
}
