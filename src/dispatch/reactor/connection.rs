//! [`Connection`]: one reactor connection as its loop keeps it, and the
//! handler's view of it during an inline call ([`LoopIo`]).

use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::Socket;

use super::mailbox::Notify;
use super::outlet::LoopOutlet;
use super::timers::Key;
use crate::request::{cannot_read, ConnHandle, ConnIo, Framer, MessageHandler, Outlet, Timeouts};
use crate::server::control::ServerHandle;
use crate::transport::Address;

/// How long a polite close waits for the client to take the last replies
/// and to end its input.
pub(super) const LINGER: Duration = Duration::from_secs(2);

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for the PROXY header, until the deadline.
    Proxy { until: Instant },
    /// In the TLS handshake, until the deadline (`None`: no limit).
    Handshake { until: Option<Instant> },
    /// Messages come and go.
    Open,
    /// Ending politely: the last replies go out, then the write side is shut
    /// and what the client still sends is read and discarded, until it ends
    /// its input, `linger` bytes, or the deadline.
    Lingering {
        until: Instant,
        discarded: usize,
        write_shut: bool,
    },
}

/// One connection of a loop.
pub(super) struct Connection<H: MessageHandler> {
    pub socket: Socket,
    pub peer: Address,
    pub key: Key,
    pub session: Option<H::Session>,
    pub framer: Framer,
    /// Bytes received and not used yet: kept only while a message is
    /// incomplete (or travels to the pool with the connection).
    pub input: Vec<u8>,
    /// Replies the client has not taken yet.
    pub out: Vec<u8>,
    pub outlet: Option<Arc<LoopOutlet>>,
    pub timeouts: Timeouts,
    pub last_active: Instant,
    pub message_started: Option<Instant>,
    /// The time of this connection's live entry in the deadline heap.
    pub scheduled: Option<Instant>,
    pub paused_until: Option<Instant>,
    pub phase: Phase,
    /// The client ended its input.
    pub eof: bool,
    /// What a polite close reads and discards at most.
    pub linger: usize,
    /// Close once the replies are out: the handler said so, or the server
    /// is shutting down and this connection's message is done.
    pub close_when_flushed: Option<crate::request::Closing>,
    /// The TLS session, when the connection speaks TLS.
    #[cfg(feature = "tls")]
    pub tls: Option<Box<crate::layer::tls::TlsSession>>,
}

/// What one receive brought.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Received {
    /// Bytes (plaintext) placed at the start of the caller's buffer.
    pub n: usize,
    /// The peer ended its input.
    pub eof: bool,
    /// Everything available was read: the next bytes bring a new edge.
    pub drained: bool,
}

impl<H: MessageHandler> Connection<H> {
    pub fn new(
        socket: Socket,
        peer: Address,
        key: Key,
        timeouts: Timeouts,
        framer: Framer,
    ) -> Self {
        Connection {
            socket,
            peer,
            key,
            session: None,
            framer,
            input: Vec::new(),
            out: Vec::new(),
            outlet: None,
            timeouts,
            last_active: Instant::now(),
            message_started: None,
            scheduled: None,
            paused_until: None,
            phase: Phase::Open,
            eof: false,
            linger: crate::request::DEFAULT_LINGER,
            close_when_flushed: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// True while the connection has TLS.
    pub fn has_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Receives without blocking into `buf` (plaintext, through TLS when
    /// there is TLS, once the PROXY header, which is plaintext, is in;
    /// `plain` is scratch space for it).
    pub fn receive(&mut self, buf: &mut [u8], plain: &mut Vec<u8>) -> io::Result<Received> {
        #[cfg(feature = "tls")]
        if let Some(session) = self
            .tls
            .as_mut()
            .filter(|_| !matches!(self.phase, Phase::Proxy { .. }))
        {
            plain.clear();
            let report = session
                .read_from(&mut &self.socket, plain, buf.len())
                .map_err(io::Error::from)?;
            let n = plain.len().min(buf.len());
            buf[..n].copy_from_slice(&plain[..n]);
            return Ok(Received {
                n,
                eof: report.peer_closed.is_some(),
                drained: report.drained,
            });
        }
        let _ = plain;
        Ok(match self.read_some(buf)? {
            Some(0) => Received {
                n: 0,
                eof: true,
                drained: true,
            },
            Some(n) => Received {
                n,
                eof: false,
                drained: n < buf.len(),
            },
            None => Received {
                n: 0,
                eof: false,
                drained: true,
            },
        })
    }

    /// Reads plaintext in blocking mode (a message on the pool): through
    /// TLS when there is TLS (`scratch` is space for it), else the socket.
    pub fn read_blocking(&mut self, buf: &mut [u8], scratch: &mut Vec<u8>) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(session) = self.tls.as_mut() {
            loop {
                scratch.clear();
                let mut once = ReadOnce {
                    socket: &self.socket,
                    done: false,
                };
                let report = session
                    .read_from(&mut once, scratch, buf.len())
                    .map_err(io::Error::from)?;
                if report.plaintext > 0 {
                    let n = report.plaintext.min(buf.len());
                    buf[..n].copy_from_slice(&scratch[..n]);
                    return Ok(n);
                }
                if report.peer_closed.is_some() {
                    return Ok(0);
                }
            }
        }
        let _ = scratch;
        (&self.socket).read(buf)
    }

    /// Writes in blocking mode (a message on the pool), through TLS when
    /// there is TLS; bounded by the socket's write timeout.
    pub fn write_all_blocking(&mut self, bytes: &[u8]) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(session) = self.tls.as_mut() {
            let mut rest = bytes;
            loop {
                let taken = session.send_plaintext(rest);
                rest = &rest[taken..];
                let report = session.write_to(&mut &self.socket)?;
                if !report.all_sent {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client took no reply within the write timeout",
                    ));
                }
                if rest.is_empty() {
                    return Ok(());
                }
                if taken == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the TLS session takes no more data",
                    ));
                }
            }
        }
        io::Write::write_all(&mut &self.socket, bytes)
    }

    /// True while the TLS handshake is still going on.
    pub fn handshaking(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(session) = &self.tls {
            return session.is_handshaking();
        }
        false
    }

    /// Queues TLS's `close_notify` (nothing without TLS).
    pub fn close_notify(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(session) = self.tls.as_mut() {
            session.close_notify();
        }
    }

    /// No message in progress: nothing received and unused, nothing to
    /// write, nothing queued by others.
    pub fn is_idle(&self) -> bool {
        self.input.is_empty()
            && self.out.is_empty()
            && self.phase == Phase::Open
            && self
                .outlet
                .as_ref()
                .is_none_or(|o| o.held.load(SeqCst) == 0)
    }

    /// Reads into `buf` without blocking; `Ok(None)` when nothing waits.
    pub fn read_some(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match (&self.socket).read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes `bytes` after what waits; keeps what the kernel does not take.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if !self.out.is_empty() || self.has_tls() {
            self.out.extend_from_slice(bytes);
            return self.write_out().map(drop);
        }
        let sent = write_nonblocking(&self.socket, bytes)?;
        if sent < bytes.len() {
            self.out.extend_from_slice(&bytes[sent..]);
        }
        self.note_held();
        Ok(())
    }

    /// Writes what waits; true when all of it went.
    pub fn write_out(&mut self) -> io::Result<bool> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            let done = self.write_out_tls()?;
            self.note_held();
            return Ok(done);
        }
        if self.out.is_empty() {
            return Ok(true);
        }
        let sent = write_nonblocking(&self.socket, &self.out)?;
        self.out.drain(..sent);
        if self.out.is_empty() && self.out.capacity() > 64 * 1024 {
            self.out = Vec::new();
        }
        self.note_held();
        Ok(self.out.is_empty())
    }

    /// Hands what waits to TLS as it takes it, and writes its records.
    #[cfg(feature = "tls")]
    fn write_out_tls(&mut self) -> io::Result<bool> {
        let Some(session) = self.tls.as_mut() else {
            return Ok(true);
        };
        loop {
            let taken = if self.out.is_empty() {
                0
            } else {
                session.send_plaintext(&self.out)
            };
            self.out.drain(..taken);
            let report = session.write_to(&mut &self.socket)?;
            if !report.all_sent {
                return Ok(false);
            }
            if self.out.is_empty() {
                return Ok(true);
            }
            if taken == 0 && report.written == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the TLS session takes no more data",
                ));
            }
        }
    }

    /// Tells the outlet how much waits here, for its backlog.
    fn note_held(&self) {
        if let Some(outlet) = &self.outlet {
            outlet.held.store(self.out.len(), SeqCst);
        }
    }

    /// When the loop must next look at this connection on its own.
    pub fn deadline(&self) -> Option<Instant> {
        let mut at: Option<Instant> = None;
        let mut earliest = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        match self.phase {
            Phase::Lingering { until, .. } | Phase::Proxy { until } => earliest(Some(until)),
            Phase::Handshake { until } => earliest(until),
            Phase::Open => {
                earliest(
                    self.timeouts
                        .idle
                        .map(|idle| crate::deadline::later(self.last_active, idle)),
                );
                earliest(self.timeouts.next_by);
                if let (Some(started), Some(limit)) = (self.message_started, self.timeouts.message)
                {
                    earliest(Some(crate::deadline::later(started, limit)));
                }
                earliest(self.paused_until);
            }
        }
        at
    }

    /// Shuts the sending side (the client reads the end of input).
    pub fn shut_write(&self) {
        let _ = self.socket.shutdown(Shutdown::Write);
    }
}

/// A reader that reads its socket once (blocking), then says
/// `WouldBlock`: so that TLS takes what one read brings and returns.
#[cfg(feature = "tls")]
struct ReadOnce<'a> {
    socket: &'a Socket,
    done: bool,
}

#[cfg(feature = "tls")]
impl Read for ReadOnce<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.done = true;
        match self.socket.read(buf) {
            // A read timeout is not "nothing more for now".
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "nothing received within the read timeout",
            )),
            other => other,
        }
    }
}

/// Writes without blocking; how many bytes went.
pub(super) fn write_nonblocking(socket: &Socket, bytes: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        match socket.send_with_flags(&bytes[sent..], libc::MSG_NOSIGNAL) {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// The reactor behind a [`Conn`](crate::request::Conn) during an inline
/// call: replies go to the loop's write buffer, sent when the call returns.
pub(super) struct LoopIo<'a, H: MessageHandler> {
    pub conn: &'a mut Connection<H>,
    pub out: &'a mut Vec<u8>,
    pub server: &'a ServerHandle,
    pub notify: &'a Notify,
}

impl<H: MessageHandler> ConnIo for LoopIo<'_, H> {
    fn peer(&self) -> &Address {
        &self.conn.peer
    }

    fn server(&self) -> &ServerHandle {
        self.server
    }

    fn is_blocking(&self) -> bool {
        false
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn output(&mut self) -> &mut Vec<u8> {
        self.out
    }

    fn flush_now(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(cannot_read())
    }

    fn handle(&mut self, max_backlog: usize) -> io::Result<ConnHandle> {
        let outlet = self.conn.outlet.get_or_insert_with(|| {
            Arc::new(LoopOutlet::new(
                self.conn.key,
                self.notify.clone(),
                max_backlog,
            ))
        });
        Ok(ConnHandle(Arc::clone(outlet) as Arc<dyn Outlet>))
    }

    fn set_timeouts(
        &mut self,
        idle: Option<Option<Duration>>,
        message: Option<(Option<Duration>, bool)>,
    ) {
        self.conn.timeouts.apply(self.server, idle, message);
    }

    fn set_linger(&mut self, max_discard: usize) {
        self.conn.linger = max_discard;
    }

    fn pause_reading(&mut self, pause: Duration) {
        self.conn.paused_until = Some(crate::deadline::after(pause));
    }

    fn raw_fd(&self) -> RawFd {
        self.conn.socket.as_raw_fd()
    }
}
