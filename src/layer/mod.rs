//! Stream layers: what a connection passes through between its socket and
//! its handler, run on the connection's own thread (or event loop), never on
//! the accepting thread, so that a slow or hostile peer costs only its own
//! connection.
//!
//! - [`proxy`]: the PROXY protocol header (versions 1 and 2) that a load
//!   balancer such as HAProxy sends before the client's bytes, carrying the
//!   client's address ([`Options::proxy_protocol`](crate::Options::proxy_protocol)).
//! - `tls` (feature `tls`): TLS 1.2 and 1.3 on rustls
//!   (`Options::tls`).
//!
//! The PROXY header comes first, in plaintext, then the TLS handshake, as
//! HAProxy's `send-proxy` sends them; only then does the handler's
//! `verify_request` judge the peer, which is the header's client.
//!
//! ```
//! use socketserver::layer::proxy::{self, Parsed};
//!
//! let wire = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\nhello";
//! let Parsed::Complete { header, length } = proxy::parse(wire)? else {
//!     unreachable!("the whole header is there")
//! };
//! assert_eq!(header.source, Some("192.0.2.7:40000".parse().unwrap()));
//! assert_eq!(&wire[length..], b"hello");
//! # Ok::<(), proxy::ProxyError>(())
//! ```

use std::fmt;
use std::io;
use std::time::Duration;

use socket2::Socket;

use crate::transport::address::Address;

pub mod proxy;
#[cfg(feature = "tls")]
pub mod tls;

/// The default time a PROXY header has to arrive, from accept.
pub const DEFAULT_PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The default time a TLS handshake has, from the end of the PROXY header
/// (or from accept).
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which layers a server's stream connections pass through.
#[derive(Clone)]
pub(crate) struct Layers {
    /// Expect a PROXY header.
    pub proxy: bool,
    /// How long it has, from accept.
    pub proxy_timeout: Duration,
    /// Speak TLS with this configuration.
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// How long a handshake has (`None`: no limit).
    pub tls_timeout: Option<Duration>,
}

impl Default for Layers {
    fn default() -> Self {
        Layers {
            proxy: false,
            proxy_timeout: DEFAULT_PROXY_HEADER_TIMEOUT,
            #[cfg(feature = "tls")]
            tls: None,
            tls_timeout: Some(DEFAULT_TLS_HANDSHAKE_TIMEOUT),
        }
    }
}

impl std::fmt::Debug for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Layers");
        d.field("proxy", &self.proxy);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.is_some());
        d.finish()
    }
}

/// A connection past its layers, in blocking mode: what the handler's
/// stream reads and writes through.
pub(crate) enum Layered {
    /// The socket itself.
    Plain(Socket),
    /// TLS over the socket.
    #[cfg(feature = "tls")]
    Tls(tls::TlsStream),
}

impl Layered {
    /// The socket under the layers, for its addresses, options and
    /// timeouts. Reading or writing it directly would bypass TLS.
    pub fn socket(&self) -> &Socket {
        match self {
            Layered::Plain(socket) => socket,
            #[cfg(feature = "tls")]
            Layered::Tls(stream) => stream.socket(),
        }
    }

    /// Ends the sending direction (after a TLS `close_notify`).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Layered::Plain(socket) => socket.shutdown(std::net::Shutdown::Write),
            #[cfg(feature = "tls")]
            Layered::Tls(stream) => stream.shutdown_write(),
        }
    }

    /// A writer for another thread.
    pub fn try_clone_writer(&self) -> io::Result<LayeredWriter> {
        Ok(match self {
            Layered::Plain(socket) => LayeredWriter::Plain(socket.try_clone()?),
            #[cfg(feature = "tls")]
            Layered::Tls(stream) => LayeredWriter::Tls(stream.try_clone_writer()?),
        })
    }

    /// A way for other threads to send without waiting, sharing no
    /// descriptor: the socket's own number for a plain connection (valid
    /// while the connection is open), the TLS writer for TLS.
    pub fn sink(&self) -> Sink {
        match self {
            Layered::Plain(socket) => Sink::Fd(std::os::fd::AsRawFd::as_raw_fd(socket)),
            #[cfg(feature = "tls")]
            Layered::Tls(stream) => Sink::Tls(
                stream
                    .try_clone_writer()
                    .expect("cloning a TLS writer only shares it"),
            ),
        }
    }

    /// TLS details, when the connection speaks TLS.
    #[cfg(feature = "tls")]
    pub fn tls_info(&self) -> Option<&tls::TlsInfo> {
        match self {
            Layered::Plain(_) => None,
            Layered::Tls(stream) => Some(stream.info()),
        }
    }
}

impl io::Read for &Layered {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Layered::Plain(socket) => (&*socket).read(buf),
            #[cfg(feature = "tls")]
            Layered::Tls(stream) => (&*stream).read(buf),
        }
    }
}

impl io::Write for &Layered {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Layered::Plain(socket) => (&*socket).write(buf),
            #[cfg(feature = "tls")]
            Layered::Tls(stream) => (&*stream).write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Layered::Plain(socket) => (&*socket).write_vectored(bufs),
            #[cfg(feature = "tls")]
            Layered::Tls(stream) => (&*stream).write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Layered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layered::Plain(socket) => f.debug_tuple("Plain").field(socket).finish(),
            #[cfg(feature = "tls")]
            Layered::Tls(stream) => f.debug_tuple("Tls").field(stream).finish(),
        }
    }
}

/// Where other threads' bytes for a connection go, without waiting.
pub(crate) enum Sink {
    /// A plain socket's descriptor; the owner guarantees it stays open
    /// while the sink is used.
    Fd(std::os::fd::RawFd),
    /// A TLS connection's writer.
    #[cfg(feature = "tls")]
    Tls(tls::TlsWriter),
}

impl Sink {
    /// Sends `bytes` (none: only what is queued) without waiting. A plain
    /// socket answers how many of `bytes` went; TLS takes all of them (as
    /// records queued beside the socket).
    pub fn offer(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Fd(fd) => {
                // SAFETY: the owner keeps the descriptor open while the
                // sink is used (see `Outbox`).
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) };
                let socket = socket2::SockRef::from(&fd);
                let mut sent = 0;
                while sent < bytes.len() {
                    match socket
                        .send_with_flags(&bytes[sent..], libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                    {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(sent)
            }
            #[cfg(feature = "tls")]
            Sink::Tls(writer) => writer.try_send(bytes).map(|_| bytes.len()),
        }
    }

    /// Bytes queued beside the socket (TLS records not yet sent), after
    /// sending what goes without waiting.
    pub fn held(&self) -> io::Result<usize> {
        match self {
            Sink::Fd(_) => Ok(0),
            #[cfg(feature = "tls")]
            Sink::Tls(writer) => writer.try_flush(),
        }
    }

    /// The descriptor, for the flusher to watch and to shut down.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Sink::Fd(fd) => *fd,
            #[cfg(feature = "tls")]
            Sink::Tls(writer) => std::os::fd::AsRawFd::as_raw_fd(writer),
        }
    }
}

/// A writing handle to a [`Layered`] connection, for another thread.
#[derive(Debug)]
pub(crate) enum LayeredWriter {
    Plain(Socket),
    #[cfg(feature = "tls")]
    Tls(tls::TlsWriter),
}

impl LayeredWriter {
    /// Shuts the whole connection down, which ends the owner's read.
    pub fn shutdown(&self) -> io::Result<()> {
        match self {
            LayeredWriter::Plain(socket) => socket.shutdown(std::net::Shutdown::Both),
            #[cfg(feature = "tls")]
            LayeredWriter::Tls(writer) => writer.shutdown(),
        }
    }

    /// Limits each blocking write.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            LayeredWriter::Plain(socket) => {
                socket.set_write_timeout(timeout.filter(|t| !t.is_zero()))
            }
            #[cfg(feature = "tls")]
            LayeredWriter::Tls(writer) => writer.set_write_timeout(timeout),
        }
    }
}

impl io::Write for LayeredWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LayeredWriter::Plain(socket) => (&*socket).write(buf),
            #[cfg(feature = "tls")]
            LayeredWriter::Tls(writer) => writer.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Layers {
    /// Runs the layers on a blocking socket: reads the PROXY header (the
    /// peer becomes the one it names) and does the TLS handshake, each
    /// within its deadline. Returns the stream, the peer, and bytes read
    /// past the layers that belong to the handler. An error means the
    /// connection is refused (and counted so).
    pub fn apply(&self, socket: Socket, peer: Address) -> io::Result<(Layered, Address, Vec<u8>)> {
        let mut peer = peer;
        let mut rest = Vec::new();
        if self.proxy {
            let mut deadline_reader = DeadlineReader {
                socket: &socket,
                deadline: crate::deadline::after(self.proxy_timeout),
            };
            let (header, length) = proxy::read_header(&mut deadline_reader, &mut rest)?;
            rest.drain(..length);
            peer = header.peer_or(peer);
            socket.set_read_timeout(None)?;
        }
        #[cfg(feature = "tls")]
        if let Some(config) = &self.tls {
            let deadline = self.tls_timeout.map(crate::deadline::after);
            let stream =
                tls::TlsStream::accept(socket, std::sync::Arc::clone(config), &rest, deadline)?;
            return Ok((Layered::Tls(stream), peer, Vec::new()));
        }
        Ok((Layered::Plain(socket), peer, rest))
    }
}

/// Reads from a socket, each read bounded by what is left of a deadline.
struct DeadlineReader<'a> {
    socket: &'a Socket,
    deadline: std::time::Instant,
}

impl io::Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the PROXY header did not arrive in time",
            ));
        }
        self.socket.set_read_timeout(Some(left))?;
        (&*self.socket).read(buf)
    }
}
