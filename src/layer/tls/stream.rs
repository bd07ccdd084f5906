//! [`TlsStream`]: a blocking TLS connection that one thread can read while
//! others write, for the threads dispatch mode and for clients.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use rustls::ServerConfig;
use socket2::Socket;

use super::handshake::{self, send_all, send_before, Incoming};
use super::session::{feed_connection, TlsSession, TlsSessionError};
use super::TlsInfo;

/// Capacity kept by the output buffer between writes; a larger one (after a
/// large write) is given back.
const KEPT_OUTPUT_CAPACITY: usize = 32 * 1024;

/// A TLS connection over a blocking TCP or Unix stream socket, handshaken:
/// [`Read`] and [`Write`] move plaintext.
///
/// It is full duplex. Reading and writing are independent: a thread blocked
/// in [`read`](Read::read) holds no lock that a writer needs (it waits on the
/// socket without the TLS session's lock, and takes that lock only to hand
/// rustls what arrived), so another thread can write at the same time
/// through `&TlsStream`, a [`try_clone`](TlsStream::try_clone) or a
/// [`TlsWriter`]. Reads are serialised with reads, writes with writes.
///
/// Writing is unbuffered, as on a plain socket: each `write` becomes TLS
/// records on the wire before it returns. After a write fails (a write
/// timeout included) records may have been cut, so every later write fails
/// too: close the connection.
///
/// Closing: [`close_notify`](TlsStream::close_notify) tells the peer that
/// nothing was cut off, bounded in time; if it was not called, dropping the
/// last handle sends `close_notify` when the socket takes it at once.
/// [`shutdown`](TlsStream::shutdown) ends the whole connection from any
/// thread and wakes a blocked reader, which then reads end of stream.
pub struct TlsStream {
    inner: Arc<Duplex>,
}

/// A writing handle to a [`TlsStream`] that another thread owns (from
/// [`TlsStream::try_clone_writer`]): for sending to a client while its own
/// thread blocks reading (a chat room's broadcast). Cloning it is cheap.
#[derive(Clone)]
pub struct TlsWriter {
    inner: Arc<Duplex>,
}

struct Duplex {
    socket: Socket,
    /// The rustls connection: locked briefly, never across a socket call.
    conn: Mutex<rustls::Connection>,
    /// The reader's state; held by a reader across its socket read.
    reading: Mutex<Reading>,
    /// The writers' state; held across socket writes, so that records go
    /// out in the order rustls made them.
    writing: Mutex<Writing>,
    /// `shutdown` was called: an end of stream is expected, not an error.
    shut_down: AtomicBool,
    info: TlsInfo,
}

#[derive(Default)]
struct Reading {
    incoming: Incoming,
    failure: Option<rustls::Error>,
}

#[derive(Default)]
struct Writing {
    /// Ciphertext taken from rustls and not yet sent.
    pending: Vec<u8>,
    /// Why writing is no longer possible.
    failure: Option<(io::ErrorKind, String)>,
    close_notify_sent: bool,
}

impl Writing {
    fn check(&self) -> io::Result<()> {
        match &self.failure {
            None => Ok(()),
            Some((kind, why)) => Err(io::Error::new(
                *kind,
                format!("an earlier write on this TLS connection failed ({why})"),
            )),
        }
    }

    fn fail(&mut self, e: &io::Error) {
        self.failure
            .get_or_insert_with(|| (e.kind(), e.to_string()));
    }

    fn give_back_memory(&mut self) {
        if self.pending.is_empty() && self.pending.capacity() > KEPT_OUTPUT_CAPACITY {
            self.pending = Vec::new();
        }
    }
}

impl TlsStream {
    /// Runs the server side of a handshake on an accepted socket and
    /// returns the connection once it is done.
    ///
    /// `already_read` are bytes read from the socket before TLS began (what
    /// followed a PROXY protocol header); they are the start of the
    /// client's first flight. The whole handshake must end by
    /// `handshake_deadline` (`None`: no limit): each socket read and write
    /// waits at most for the time left. A client that sends something that
    /// is not TLS (plaintext, garbage) or offers nothing the server accepts
    /// gets an alert and is refused as soon as its bytes arrive
    /// (`InvalidData`); one that sends nothing, or stops half-way, fails
    /// with `TimedOut` at the deadline; one that disconnects with
    /// `UnexpectedEof`. On failure the socket is closed.
    ///
    /// The stream comes back with no read or write timeout set.
    pub fn accept(
        socket: Socket,
        config: Arc<ServerConfig>,
        already_read: &[u8],
        handshake_deadline: Option<Instant>,
    ) -> io::Result<TlsStream> {
        socket.set_nonblocking(false)?;
        let mut session = TlsSession::new(config);
        let mut incoming = Incoming::with(already_read);
        handshake::drive(&mut session, &socket, &mut incoming, handshake_deadline).map_err(
            |e| match handshake::tls_error(&e) {
                Some(tls) => io::Error::new(e.kind(), format!("TLS handshake failed: {tls}")),
                None => e,
            },
        )?;
        socket.set_read_timeout(None)?;
        socket.set_write_timeout(None)?;
        let info = session
            .info()
            .ok_or_else(|| io::Error::other("the TLS handshake ended without a session"))?;
        let conn = session
            .into_connection()
            .ok_or_else(|| io::Error::other("the TLS handshake ended without a connection"))?;
        Ok(TlsStream::from_parts(
            socket,
            rustls::Connection::Server(conn),
            incoming,
            info,
        ))
    }

    pub(crate) fn from_parts(
        socket: Socket,
        conn: rustls::Connection,
        incoming: Incoming,
        info: TlsInfo,
    ) -> TlsStream {
        TlsStream {
            inner: Arc::new(Duplex {
                socket,
                conn: Mutex::new(conn),
                reading: Mutex::new(Reading {
                    incoming,
                    failure: None,
                }),
                writing: Mutex::new(Writing::default()),
                shut_down: AtomicBool::new(false),
                info,
            }),
        }
    }

    /// What the handshake agreed: protocol version, cipher suite, ALPN
    /// protocol, and the name the client asked for (SNI).
    pub fn info(&self) -> &TlsInfo {
        &self.inner.info
    }

    /// The socket, for its addresses and options. Reading or writing it
    /// directly would corrupt the TLS stream.
    pub fn socket(&self) -> &Socket {
        &self.inner.socket
    }

    /// Another handle to the same connection (reads and writes through
    /// either are serialised as for one).
    pub fn try_clone(&self) -> io::Result<TlsStream> {
        Ok(TlsStream {
            inner: Arc::clone(&self.inner),
        })
    }

    /// A writing handle for another thread.
    pub fn try_clone_writer(&self) -> io::Result<TlsWriter> {
        Ok(TlsWriter {
            inner: Arc::clone(&self.inner),
        })
    }

    /// Limits each blocking socket read to `timeout` (`None` or zero: wait
    /// for ever); a read that times out fails with `WouldBlock` or
    /// `TimedOut`, and can be retried.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner
            .socket
            .set_read_timeout(timeout.filter(|t| !t.is_zero()))
    }

    /// Limits each blocking socket write to `timeout` (`None` or zero: wait
    /// for ever). A write that times out ends writing on this connection.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_write_timeout(timeout)
    }

    /// Ends the whole connection, from any thread: a blocked reader wakes
    /// and reads end of stream, writes fail. Sends no `close_notify` (call
    /// [`close_notify`](TlsStream::close_notify) first for that).
    pub fn shutdown(&self) -> io::Result<()> {
        self.inner.shutdown()
    }

    /// Ends the sending direction: sends `close_notify` (blocking, under
    /// the write timeout), then a TCP half close. Reading goes on.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.inner.close_notify(None)?;
        self.inner.socket.shutdown(Shutdown::Write)
    }

    /// Sends `close_notify` (after what is already queued), waiting at most
    /// `within`: the peer learns that nothing was cut off. Best effort: a
    /// peer that does not read leaves it unsent, with a `TimedOut` error.
    /// Call it before closing; writes after it fail.
    pub fn close_notify(&self, within: Duration) -> io::Result<()> {
        self.inner
            .close_notify(Some(crate::deadline::after(within)))
    }
}

impl TlsWriter {
    /// Encrypts `plaintext` and sends what the socket takes at once,
    /// without waiting; the rest of the records stays queued here, in
    /// order, for [`try_flush`](TlsWriter::try_flush). Returns how many
    /// bytes of records are queued. For a sender that must never wait on a
    /// client (a broadcast to a slow reader).
    pub fn try_send(&self, plaintext: &[u8]) -> io::Result<usize> {
        self.inner.try_send(plaintext)
    }

    /// Sends queued records the socket takes at once; returns how many
    /// bytes are still queued.
    pub fn try_flush(&self) -> io::Result<usize> {
        self.inner.try_send(&[])
    }

    /// Ends the whole connection (see [`TlsStream::shutdown`]): the way to
    /// disconnect a client from another thread.
    pub fn shutdown(&self) -> io::Result<()> {
        self.inner.shutdown()
    }

    /// Limits each blocking socket write (see
    /// [`TlsStream::set_write_timeout`]).
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.set_write_timeout(timeout)
    }

    /// Sends `close_notify` (see [`TlsStream::close_notify`]).
    pub fn close_notify(&self, within: Duration) -> io::Result<()> {
        self.inner
            .close_notify(Some(crate::deadline::after(within)))
    }
}

impl Duplex {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut reading = self.reading.lock();
        loop {
            if let Some(e) = &reading.failure {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
            }
            let mut conn = self.conn.lock();
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return if self.shut_down.load(Ordering::Acquire) {
                        Ok(0)
                    } else {
                        Err(e)
                    };
                }
                Err(e) => return Err(e),
            }
            if !reading.incoming.pending().is_empty() {
                let fed = match &mut *conn {
                    rustls::Connection::Server(c) => {
                        feed_connection(&mut **c, reading.incoming.pending(), 1)
                    }
                    rustls::Connection::Client(c) => {
                        feed_connection(&mut **c, reading.incoming.pending(), 1)
                    }
                };
                let result = match fed {
                    Ok((n, _)) => {
                        reading.incoming.consume(n);
                        Ok(())
                    }
                    Err(TlsSessionError::Tls(e)) => {
                        reading.failure = Some(e.clone());
                        Err(io::Error::new(io::ErrorKind::InvalidData, e))
                    }
                    Err(TlsSessionError::Io(e)) => Err(e),
                };
                // An alert, a key update's answer: send it, unless a writer
                // is at work (it sends what is queued before it lets go).
                if conn.wants_write() {
                    if let Some(writing) = self.writing.try_lock() {
                        drop(conn);
                        let _ = self.flush(writing);
                    }
                }
                result?;
                continue;
            }
            drop(conn);
            if reading.incoming.read_from(&self.socket)? == 0 {
                // End of stream: rustls decides whether it was clean.
                let mut conn = self.conn.lock();
                let _ = conn.read_tls(&mut io::empty());
                let _ = conn.process_new_packets();
            }
        }
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut writing = self.writing.lock();
        writing.check()?;
        let n = {
            let mut conn = self.conn.lock();
            let n = conn.writer().write(buf)?;
            take_output(&mut conn, &mut writing.pending);
            n
        };
        self.flush(writing)?;
        Ok(n)
    }

    /// Sends what is pending and what rustls queued, until nothing is left.
    /// Lets go of the writing lock while holding the connection's, after
    /// seeing nothing queued: a reader that queues something later finds
    /// the writing lock free and sends it itself.
    fn flush(&self, mut writing: MutexGuard<'_, Writing>) -> io::Result<()> {
        loop {
            writing.check()?;
            if !writing.pending.is_empty() {
                if let Err(e) = send_all(&self.socket, &writing.pending) {
                    writing.fail(&e);
                    return Err(e);
                }
                writing.pending.clear();
                writing.give_back_memory();
            }
            let mut conn = self.conn.lock();
            if !conn.wants_write() {
                drop(writing);
                drop(conn);
                return Ok(());
            }
            take_output(&mut conn, &mut writing.pending);
        }
    }

    fn try_send(&self, plaintext: &[u8]) -> io::Result<usize> {
        let mut writing = self.writing.lock();
        writing.check()?;
        {
            let mut conn = self.conn.lock();
            if !plaintext.is_empty() {
                conn.writer().write_all(plaintext)?;
            }
            take_output(&mut conn, &mut writing.pending);
        }
        let (sent, result) = send_before(&self.socket, &writing.pending, Instant::now());
        writing.pending.drain(..sent);
        match result {
            Err(e) if e.kind() != io::ErrorKind::TimedOut => {
                writing.fail(&e);
                Err(e)
            }
            _ => {
                writing.give_back_memory();
                Ok(writing.pending.len())
            }
        }
    }

    fn close_notify(&self, deadline: Option<Instant>) -> io::Result<()> {
        let mut writing = match deadline {
            None => self.writing.lock(),
            Some(deadline) => self
                .writing
                .try_lock_until(deadline)
                .ok_or_else(|| handshake::timed_out("waiting for a writer to send close_notify"))?,
        };
        writing.check()?;
        if !writing.close_notify_sent {
            let mut conn = self.conn.lock();
            conn.send_close_notify();
            take_output(&mut conn, &mut writing.pending);
            writing.close_notify_sent = true;
        }
        match deadline {
            None => self.flush(writing),
            Some(deadline) => {
                let (sent, result) = send_before(&self.socket, &writing.pending, deadline);
                writing.pending.drain(..sent);
                if let Err(e) = &result {
                    writing.fail(e);
                }
                result
            }
        }
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket
            .set_write_timeout(timeout.filter(|t| !t.is_zero()))
    }

    fn shutdown(&self) -> io::Result<()> {
        self.shut_down.store(true, Ordering::Release);
        self.socket.shutdown(Shutdown::Both)
    }
}

/// Moves all the ciphertext rustls has queued into `out`.
fn take_output(conn: &mut rustls::Connection, out: &mut Vec<u8>) {
    while conn.wants_write() {
        // Writing into a Vec cannot fail.
        if conn.write_tls(out).is_err() {
            break;
        }
    }
}

impl Drop for Duplex {
    /// The last handle is gone: send `close_notify` if that was not done
    /// and the socket takes it without waiting.
    fn drop(&mut self) {
        let writing = self.writing.get_mut();
        if self.shut_down.load(Ordering::Acquire)
            || writing.close_notify_sent
            || writing.failure.is_some()
            || !writing.pending.is_empty()
        {
            return;
        }
        let conn = self.conn.get_mut();
        conn.send_close_notify();
        take_output(conn, &mut writing.pending);
        let _ = send_before(&self.socket, &writing.pending, Instant::now());
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Read for &TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// `Write` for the handles to a [`Duplex`] (and references to them): each
/// writes and flushes through the shared connection the same way.
macro_rules! write_through_duplex {
    ($($handle:ty),+) => {$(
        impl Write for $handle {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.inner.write(buf)
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.inner.write(first_nonempty(bufs))
            }
            fn flush(&mut self) -> io::Result<()> {
                self.inner.flush(self.inner.writing.lock())
            }
        }
    )+};
}

write_through_duplex!(TlsStream, &TlsStream, TlsWriter, &TlsWriter);

/// The descriptor of the handles to a [`Duplex`]: the shared socket.
macro_rules! socket_of_duplex {
    ($($handle:ty),+) => {$(
        impl AsFd for $handle {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.inner.socket.as_fd()
            }
        }

        impl AsRawFd for $handle {
            fn as_raw_fd(&self) -> RawFd {
                self.inner.socket.as_raw_fd()
            }
        }
    )+};
}

socket_of_duplex!(TlsStream, TlsWriter);

fn first_nonempty<'a>(bufs: &'a [IoSlice<'a>]) -> &'a [u8] {
    bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b)
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("socket", &self.inner.socket)
            .field("info", &self.inner.info)
            .finish()
    }
}

impl fmt::Debug for TlsWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsWriter")
            .field("socket", &self.inner.socket)
            .finish()
    }
}
