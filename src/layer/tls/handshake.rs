//! The blocking handshake shared by the server ([`TlsStream::accept`]) and
//! the client ([`TlsStream::connect`]), and the socket helpers the blocking
//! stream uses.
//!
//! [`TlsStream::accept`]: super::TlsStream::accept
//! [`TlsStream::connect`]: super::TlsStream::connect

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::Socket;

use super::session::{feed_connection, TlsSession, TlsSessionError};

/// How many bytes one read from the socket takes at most: a whole TLS
/// record (16 KiB of plaintext) in one or two reads.
pub(crate) const RAW_READ: usize = 16 * 1024;

/// `send` flags for a write that must not raise `SIGPIPE`.
const NO_SIGNAL: libc::c_int = libc::MSG_NOSIGNAL;

/// One side of a handshake, driven over a blocking socket.
pub(crate) trait Handshake {
    /// Processes ciphertext; returns how much was taken.
    fn feed(&mut self, bytes: &[u8]) -> Result<usize, TlsSessionError>;
    /// Writes queued ciphertext; `Ok(false)`: the socket would block.
    fn write_to(&mut self, sink: &mut dyn Write) -> io::Result<bool>;
    /// Whether the handshake goes on.
    fn is_handshaking(&self) -> bool;
}

impl Handshake for TlsSession {
    fn feed(&mut self, bytes: &[u8]) -> Result<usize, TlsSessionError> {
        TlsSession::feed(self, bytes)
    }
    fn write_to(&mut self, sink: &mut dyn Write) -> io::Result<bool> {
        Ok(TlsSession::write_to(self, sink)?.all_sent)
    }
    fn is_handshaking(&self) -> bool {
        TlsSession::is_handshaking(self)
    }
}

impl Handshake for rustls::ClientConnection {
    fn feed(&mut self, bytes: &[u8]) -> Result<usize, TlsSessionError> {
        Ok(feed_connection(&mut **self, bytes, usize::MAX)?.0)
    }
    fn write_to(&mut self, sink: &mut dyn Write) -> io::Result<bool> {
        while self.wants_write() {
            match self.write_tls(sink) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
    fn is_handshaking(&self) -> bool {
        rustls::CommonState::is_handshaking(self)
    }
}

/// Bytes read from the socket and not yet given to rustls.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Incoming {
    /// Starts with bytes read before TLS began.
    pub(crate) fn with(already_read: &[u8]) -> Self {
        Incoming {
            buf: already_read.to_vec(),
            start: 0,
            end: already_read.len(),
        }
    }

    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once from the socket into the free space (blocking, under the
    /// socket's read timeout). Only called with nothing pending.
    pub(crate) fn read_from(&mut self, socket: &Socket) -> io::Result<usize> {
        debug_assert!(self.pending().is_empty());
        self.start = 0;
        self.end = 0;
        if self.buf.len() < RAW_READ {
            self.buf.resize(RAW_READ, 0);
        }
        let n = read_socket(socket, &mut self.buf[..RAW_READ])?;
        self.end = n;
        Ok(n)
    }
}

/// A blocking read that retries when interrupted.
pub(crate) fn read_socket(socket: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match io::Read::read(&mut &*socket, buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Sends all of `bytes` (blocking, under the socket's write timeout).
pub(crate) fn send_all(socket: &Socket, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket.send_with_flags(bytes, NO_SIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends as much of `bytes` as goes before `deadline` (the socket's
/// timeouts left alone); returns how much went, or an error of kind
/// `TimedOut` when not all did.
pub(crate) fn send_before(
    socket: &Socket,
    bytes: &[u8],
    deadline: Instant,
) -> (usize, io::Result<()>) {
    let mut sent = 0;
    while sent < bytes.len() {
        match socket.send_with_flags(&bytes[sent..], NO_SIGNAL | libc::MSG_DONTWAIT) {
            Ok(0) => return (sent, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (sent, Err(timed_out("sending close_notify")));
                }
                if let Err(e) = wait_writable(socket, left) {
                    return (sent, Err(e));
                }
            }
            Err(e) => return (sent, Err(e)),
        }
    }
    (sent, Ok(()))
}

fn wait_writable(socket: &Socket, within: Duration) -> io::Result<()> {
    let mut pollfd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let millis = within.as_millis().clamp(1, libc::c_int::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, and its count.
    let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
    match ready {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            }
        }
        _ => Ok(()),
    }
}

/// A `Write` over a socket that never blocks.
struct NonBlocking<'a>(&'a Socket);

impl Write for NonBlocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send_with_flags(buf, NO_SIGNAL | libc::MSG_DONTWAIT)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A `Write` over a socket that blocks under its write timeout.
pub(crate) struct Blocking<'a>(pub(crate) &'a Socket);

impl Write for Blocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send_with_flags(buf, NO_SIGNAL)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub(crate) fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("timed out {what}"))
}

/// The time left before `deadline`, for a socket timeout (`None`: no
/// deadline); an error once it has passed.
fn left(deadline: Option<Instant>) -> io::Result<Option<Duration>> {
    match deadline {
        None => Ok(None),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(timed_out("in the TLS handshake"))
            } else {
                Ok(Some(left.max(Duration::from_millis(1))))
            }
        }
    }
}

/// Runs a handshake to its end over a blocking socket, by `deadline`, first
/// feeding what `incoming` holds. What arrives after the handshake's last
/// message stays in the connection (plaintext) or in `incoming`.
///
/// A protocol error sends the peer its alert (without waiting), ends the
/// sending direction and fails with `InvalidData`, carrying the rustls error
/// (see [`tls_error`]). A deadline that passes fails with `TimedOut`; an
/// early end of stream with `UnexpectedEof`.
pub(crate) fn drive(
    hs: &mut dyn Handshake,
    socket: &Socket,
    incoming: &mut Incoming,
    deadline: Option<Instant>,
) -> io::Result<()> {
    loop {
        while hs.is_handshaking() && !incoming.pending().is_empty() {
            match hs.feed(incoming.pending()) {
                Ok(0) => break,
                Ok(n) => incoming.consume(n),
                Err(TlsSessionError::Tls(e)) => {
                    refuse(hs, socket);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
                Err(TlsSessionError::Io(e)) => {
                    refuse(hs, socket);
                    return Err(e);
                }
            }
        }
        socket.set_write_timeout(left(deadline)?)?;
        match hs.write_to(&mut Blocking(socket)) {
            Ok(true) => {}
            Ok(false) => return Err(timed_out("in the TLS handshake")),
            Err(e) if is_timeout(&e) => return Err(timed_out("in the TLS handshake")),
            Err(e) => return Err(e),
        }
        if !hs.is_handshaking() {
            return Ok(());
        }
        socket.set_read_timeout(left(deadline)?)?;
        match incoming.read_from(socket) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the TLS handshake",
                ))
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => return Err(timed_out("in the TLS handshake")),
            Err(e) => return Err(e),
        }
    }
}

/// Whether a socket error is a timeout (`WouldBlock` on Unix).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sends the queued alert without waiting, ends the sending direction, and
/// discards input that already arrived, so that closing sends a FIN rather
/// than a reset (which could destroy the alert before the peer reads it).
fn refuse(hs: &mut dyn Handshake, socket: &Socket) {
    let _ = hs.write_to(&mut NonBlocking(socket));
    let _ = socket.shutdown(std::net::Shutdown::Write);
    // The socket is about to close: it may as well stop blocking.
    if socket.set_nonblocking(true).is_err() {
        return;
    }
    let mut scratch = [0u8; 4096];
    for _ in 0..16 {
        match io::Read::read(&mut &*socket, &mut scratch) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// The rustls error inside an error from [`drive`], if there is one.
pub(crate) fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}
