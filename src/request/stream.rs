//! [`StreamRequest`]: one connection of a TCP or Unix stream server.

use std::io::{self, BufRead, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use std::sync::Arc;

use socket2::Socket;

use crate::layer::{Layered, LayeredWriter};
use crate::server::control::ServerHandle;
use crate::server::registry::Tracked;
use crate::transport::address::Address;

/// One connection of a TCP or Unix stream server: Python's
/// `StreamRequestHandler` with its `rfile` and `wfile`.
///
/// Reading is buffered ([`BufRead`]: `read_line`, `lines`, `fill_buf`);
/// writing is not, as in Python (`wfile` is unbuffered), so a reply is on the
/// wire when `write_all` returns and there is nothing to flush. To batch many
/// small writes, wrap the writer half of [`split`](StreamRequest::split) in a
/// [`std::io::BufWriter`].
///
/// ```
/// use std::io::{self, BufRead, Write};
/// use socketserver::{RequestHandler, StreamRequest};
///
/// struct Greeter;
///
/// impl RequestHandler<StreamRequest> for Greeter {
///     fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
///         let mut name = String::new();
///         req.read_line(&mut name)?;
///         let peer = req.peer_addr().clone();
///         writeln!(req, "hello, {} from {peer}", name.trim())
///     }
/// }
/// ```
#[derive(Debug)]
pub struct StreamRequest {
    io: Layered,
    buffer: ReadBuffer,
    peer: Address,
    server: ServerHandle,
    /// The connection's entry in the server's registry, through which it
    /// says when it waits idle.
    tracked: Option<Arc<Tracked>>,
}

impl StreamRequest {
    /// A request for an accepted connection: the server's options applied
    /// (TCP_NODELAY, idle and write timeouts), `buffered` (bytes read before
    /// the handler's turn, past a PROXY header say) first in the read
    /// buffer; with `register`, in the server's registry until it is
    /// dropped, so that a shutdown can close it.
    pub(crate) fn new(
        io: Layered,
        peer: Address,
        buffered: Vec<u8>,
        server: ServerHandle,
        register: bool,
    ) -> io::Result<Self> {
        let options = server.options();
        let socket = io.socket();
        if options.nodelay && matches!(peer, Address::Inet(_)) {
            socket.set_tcp_nodelay(true)?;
        }
        if options.idle_timeout.is_some() {
            socket.set_read_timeout(options.idle_timeout)?;
        }
        if options.write_timeout.is_some() {
            socket.set_write_timeout(options.write_timeout)?;
        }
        let mut buffer = ReadBuffer::new(options.read_buffer);
        buffer.prefill(buffered);
        let tracked = register.then(|| server.0.registry.insert(socket.as_raw_fd()));
        Ok(StreamRequest {
            io,
            buffer,
            peer,
            server,
            tracked,
        })
    }

    /// Waits, idle, for the first byte of the client's next message (an
    /// HTTP request on a kept-alive connection, a chat line): true when it
    /// has arrived (it waits in the read buffer), false when the client
    /// closed the connection or the server began shutting down.
    ///
    /// While a connection waits here it counts as idle: a shutdown closes it
    /// at once instead of waiting for its deadline (the handler can still
    /// write a last word), and a busy one, between its first byte and its
    /// answer, gets until the deadline. The read timeout (the server's
    /// [`idle_timeout`](crate::Options::idle_timeout)) still applies and ends
    /// the wait with an error of kind `WouldBlock` or `TimedOut`.
    pub fn wait_for_input(&mut self) -> io::Result<bool> {
        if self.buffer.has_bytes() {
            return Ok(true);
        }
        if !self.mark_idle() {
            return Ok(false);
        }
        let filled = self.fill_buf().map(|bytes| !bytes.is_empty());
        if !self.mark_busy() {
            return Ok(false);
        }
        filled
    }

    /// Says the connection waits for its next message; false when the
    /// server is already shutting down (the wait should not begin).
    pub(crate) fn mark_idle(&self) -> bool {
        match &self.tracked {
            Some(tracked) => {
                tracked.set_idle();
                // A shutdown that began before the mark did not see it idle.
                !self.server.is_shutdown()
            }
            None => true,
        }
    }

    /// Says a message is in progress; false when a shutdown closed the
    /// connection while it waited.
    pub(crate) fn mark_busy(&self) -> bool {
        self.tracked
            .as_ref()
            .is_none_or(|tracked| tracked.set_busy())
    }

    /// Reads what the read buffer holds, or else straight from the socket
    /// into `out`: for a reader with buffers of its own.
    pub(crate) fn read_unbuffered(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.buffer.has_bytes() {
            return self.buffer.read(&self.io, out);
        }
        (&self.io).read(out)
    }

    /// True when a shutdown closed this connection while it waited idle
    /// (see [`wait_for_input`](StreamRequest::wait_for_input)): the end of
    /// input it read was the server's doing, not the client's.
    pub fn closed_by_shutdown(&self) -> bool {
        self.tracked.as_ref().is_some_and(|t| t.is_cut())
    }
    /// The client's address.
    pub fn peer_addr(&self) -> Address {
        self.peer.clone()
    }

    /// The server-side address of this connection.
    pub fn local_addr(&self) -> io::Result<Address> {
        Ok(Address::from_sockaddr(&self.socket().local_addr()?))
    }

    /// The server this request belongs to: ask it to shut down, or read its
    /// counters.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// Limits each blocking read to `timeout` (`None`: wait for ever); a read
    /// that times out fails with [`io::ErrorKind::WouldBlock`] or
    /// [`io::ErrorKind::TimedOut`]. Starts as the server's
    /// [`idle_timeout`](crate::Options::idle_timeout).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket()
            .set_read_timeout(timeout.filter(|t| !t.is_zero()))
    }

    /// Limits each blocking write to `timeout` (`None`: wait for ever). Starts
    /// as the server's [`write_timeout`](crate::Options::write_timeout).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket()
            .set_write_timeout(timeout.filter(|t| !t.is_zero()))
    }

    /// Turns Nagle's algorithm off (`true`) or on, on a TCP connection. Starts
    /// as the server's [`nodelay`](crate::Options::nodelay). A no-op on Unix
    /// sockets.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self.peer {
            Address::Inet(_) => self.socket().set_tcp_nodelay(nodelay),
            Address::Unix(_) => Ok(()),
        }
    }

    /// Tells the client that no more data will come (a half close), while the
    /// request can still read.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.io.shutdown_write()
    }

    /// The buffered reader and the writer as two halves, to use both at once
    /// (say, copy from one to the other, or wrap the writer in a `BufWriter`).
    pub fn split(&mut self) -> (impl BufRead + '_, impl Write + '_) {
        let reader = Reader {
            io: &self.io,
            buffer: &mut self.buffer,
        };
        (reader, Writer(&self.io))
    }

    /// Ends the conversation after a final answer without losing that
    /// answer: sends end of input, then reads and discards what the client
    /// still sends (for at most 2 s and `max_discard` bytes) before the
    /// connection closes.
    ///
    /// Closing a socket that still has unread input makes the kernel send a
    /// reset, which can destroy an answer the client has not read yet (a
    /// client still sending a refused body, say).
    ///
    /// `max_discard` says how much of what the client still sends is worth
    /// reading to let it see the answer: a line service stops reading a line
    /// that is too long (1 MiB, say), a file service lets a refused upload
    /// run on for longer.
    pub fn close_after_answer(&mut self, max_discard: usize) {
        const LINGER: Duration = Duration::from_secs(2);
        if self.shutdown_write().is_err() {
            return;
        }
        let deadline = std::time::Instant::now() + LINGER;
        let mut scratch = [0u8; 16 * 1024];
        let mut discarded = 0;
        while discarded < max_discard {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || self.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.read(&mut scratch) {
                Ok(0) => return,
                Ok(n) => discarded += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Where other threads' bytes go without waiting (see `Outbox`).
    pub(crate) fn sink(&self) -> crate::layer::Sink {
        self.io.sink()
    }

    /// A writer for this connection that can move to another thread: for a
    /// handler that must send while it blocks in a read (a chat room).
    pub fn try_clone_writer(&self) -> io::Result<StreamWriter> {
        Ok(StreamWriter(self.io.try_clone_writer()?))
    }

    fn socket(&self) -> &Socket {
        self.io.socket()
    }

    /// What TLS agreed on (protocol version, ALPN, the name the client
    /// asked for), when this connection speaks TLS.
    #[cfg(feature = "tls")]
    pub fn tls_info(&self) -> Option<&crate::layer::tls::TlsInfo> {
        self.io.tls_info()
    }
}

impl Drop for StreamRequest {
    fn drop(&mut self) {
        // Out of the registry before the socket closes (the fields drop
        // after this), so that a cut never touches a reused descriptor.
        if let Some(tracked) = self.tracked.take() {
            self.server.0.registry.remove(&tracked);
        }
    }
}

impl Read for StreamRequest {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.buffer.read(&self.io, buf)
    }
}

impl BufRead for StreamRequest {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.buffer.fill(&self.io)
    }
    fn consume(&mut self, amount: usize) {
        self.buffer.consume(amount)
    }
}

/// The read buffer of a connection, kept apart from its socket so that the
/// reader and the writer can be borrowed at once.
#[derive(Debug)]
struct ReadBuffer {
    /// Empty until the first buffered read: a handler that only reads into
    /// its own large buffers never pays for it.
    bytes: Box<[u8]>,
    capacity: usize,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    fn new(capacity: usize) -> Self {
        ReadBuffer {
            bytes: Box::default(),
            capacity,
            start: 0,
            end: 0,
        }
    }

    /// Starts with `bytes` already read.
    fn prefill(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.end = bytes.len();
            self.capacity = self.capacity.max(bytes.len());
            let mut boxed = bytes;
            boxed.resize(self.capacity, 0);
            self.bytes = boxed.into_boxed_slice();
        }
    }

    fn has_bytes(&self) -> bool {
        self.start < self.end
    }

    fn fill(&mut self, mut socket: &Layered) -> io::Result<&[u8]> {
        if self.start >= self.end {
            if self.bytes.is_empty() {
                self.bytes = vec![0; self.capacity].into_boxed_slice();
            }
            self.end = socket.read(&mut self.bytes)?;
            self.start = 0;
        }
        Ok(&self.bytes[self.start..self.end])
    }

    fn consume(&mut self, amount: usize) {
        self.start = (self.start + amount).min(self.end);
    }

    fn read(&mut self, mut socket: &Layered, out: &mut [u8]) -> io::Result<usize> {
        // A large read with nothing buffered skips the copy.
        if self.start >= self.end && out.len() >= self.capacity {
            return socket.read(out);
        }
        let available = self.fill(socket)?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The reading half of a [`StreamRequest`], from [`StreamRequest::split`].
struct Reader<'a> {
    io: &'a Layered,
    buffer: &'a mut ReadBuffer,
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.buffer.read(self.io, buf)
    }
}

impl BufRead for Reader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.buffer.fill(self.io)
    }
    fn consume(&mut self, amount: usize) {
        self.buffer.consume(amount)
    }
}

impl AsFd for StreamRequest {
    /// The connection's socket, to wait on it with `poll` together with
    /// other descriptors (a handler watching a child process and its client
    /// at once). Reading through it would bypass the read buffer.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket().as_fd()
    }
}

impl Write for StreamRequest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.io).write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.io).write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The writing half of a [`StreamRequest`], from [`StreamRequest::split`].
struct Writer<'a>(&'a Layered);

impl Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self.0).write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer for a connection that another thread owns, from
/// [`StreamRequest::try_clone_writer`]. Unbuffered, like the request itself.
#[derive(Debug)]
pub struct StreamWriter(LayeredWriter);

impl StreamWriter {
    /// Shuts the whole connection down, which also ends the owner's blocking
    /// read: the way to disconnect a client from another thread.
    pub fn shutdown(&self) -> io::Result<()> {
        self.0.shutdown()
    }

    /// Limits each blocking write to `timeout` (`None`: wait for ever).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.0.set_write_timeout(timeout)
    }
}

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
