//! [`Handoff`]: a reactor connection on a pool thread, for messages that may
//! block, and the handler's view of it there ([`BlockingIo`]).
//!
//! The socket goes to blocking mode with the connection's timeouts, is
//! registered with the server so that the shutdown deadline can cut it, and
//! the handler is called for every complete blocking message already
//! received; it may read more (a body) through the [`Conn`]. Then the socket
//! goes back to non-blocking mode and the connection back to its loop.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use super::connection::Connection;
use super::mailbox::{Command, LoopHandle};
use crate::request::{read_kept, Closing, Conn, ConnHandle, ConnIo, Found, MessageHandler, Next};
use crate::server::control::ServerHandle;
use crate::server::lifecycle::Lifecycle;
use crate::transport::Address;

/// A connection on its way to, or on, a pool thread.
pub(crate) struct Handoff<H: MessageHandler> {
    conn: Box<Connection<H>>,
    home: LoopHandle<Box<Connection<H>>>,
}

impl<H: MessageHandler> Handoff<H> {
    pub(super) fn new(conn: Box<Connection<H>>, home: LoopHandle<Box<Connection<H>>>) -> Self {
        Handoff { conn, home }
    }

    pub(super) fn into_connection(self) -> Box<Connection<H>> {
        self.conn
    }

    /// Runs the blocking messages, then sends the connection home.
    pub fn run(self, lifecycle: &Lifecycle<H>) {
        let Handoff { mut conn, home } = self;
        let control = lifecycle.control();
        let tracked = control.registry.insert(conn.socket.as_raw_fd());
        if let Err(e) = conn.socket.set_nonblocking(false) {
            lifecycle.handler.handle_error(&conn.peer, &e);
            conn.session = None;
        } else {
            serve(lifecycle, &mut conn);
        }
        control.registry.remove(&tracked);
        if let Err(e) = conn.socket.set_nonblocking(true) {
            lifecycle.handler.handle_error(&conn.peer, &e);
            conn.session = None;
        }
        if let Some(Command::Return(conn)) = home.send(Command::Return(conn)) {
            // The loop has ended (long past the shutdown deadline).
            drop(conn);
            control.request_done();
        }
    }
}

/// Handles every complete blocking message already received.
fn serve<H: MessageHandler>(lifecycle: &Lifecycle<H>, conn: &mut Connection<H>) {
    let handler = &lifecycle.handler;
    let server = lifecycle.server();
    let write_timeout = server.options().write_timeout;
    let _ = conn.socket.set_write_timeout(write_timeout);
    loop {
        let Some(mut session) = conn.session.take() else {
            return;
        };
        if !handler.blocking(&session) {
            conn.session = Some(session);
            return;
        }
        conn.framer.set_framing(handler.framing(&session));
        let found = conn.framer.next(&conn.input, false);
        let Ok(Found::Message {
            start,
            end,
            consumed,
        }) = found
        else {
            conn.session = Some(session);
            return;
        };
        let input = std::mem::take(&mut conn.input);
        let peer = conn.peer.clone();
        let mut out = std::mem::take(&mut conn.out);
        let mut scratch = Vec::new();
        let mut io = BlockingIo {
            conn: &mut *conn,
            out: &mut out,
            scratch: &mut scratch,
            rest: &input[consumed..],
            rest_used: 0,
            server,
        };
        let message = &input[start..end];
        let next = lifecycle.run_message(&peer, || {
            let next = handler.on_message(&mut session, message, &mut Conn::new(&mut io))?;
            io.flush()?;
            Ok(next)
        });
        let used = consumed + io.rest_used;
        conn.input = input[used..].to_vec();
        conn.out = out;
        conn.message_started = None;
        conn.timeouts.next_by = None;
        conn.last_active = std::time::Instant::now();
        conn.session = Some(session);
        match next {
            Some(Next::Continue) => {}
            Some(Next::Close) => {
                conn.close_when_flushed = Some(Closing::Handler);
                return;
            }
            None => {
                // Failed or panicked: reported; the loop closes it.
                conn.session = None;
                return;
            }
        }
    }
}

/// The reactor behind a [`Conn`] on a pool thread.
struct BlockingIo<'a, H: MessageHandler> {
    conn: &'a mut Connection<H>,
    out: &'a mut Vec<u8>,
    /// Space for plaintext on its way out of TLS.
    scratch: &'a mut Vec<u8>,
    rest: &'a [u8],
    rest_used: usize,
    server: &'a ServerHandle,
}

/// Replies beyond this are written at once.
const WRITE_THROUGH: usize = 64 * 1024;

impl<H: MessageHandler> BlockingIo<'_, H> {
    fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let written = self.conn.write_all_blocking(self.out);
        self.out.clear();
        written
    }
}

impl<H: MessageHandler> ConnIo for BlockingIo<'_, H> {
    fn peer(&self) -> &Address {
        &self.conn.peer
    }

    fn server(&self) -> &ServerHandle {
        self.server
    }

    fn is_blocking(&self) -> bool {
        true
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.out.len() + buf.len() > WRITE_THROUGH {
            self.flush()?;
            if buf.len() > WRITE_THROUGH {
                self.conn.write_all_blocking(buf)?;
                return Ok(buf.len());
            }
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn output(&mut self) -> &mut Vec<u8> {
        self.out
    }

    fn flush_now(&mut self) -> io::Result<()> {
        self.flush()
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(n) = read_kept(self.rest, &mut self.rest_used, buf) {
            return Ok(n);
        }
        let timeout = self.conn.timeouts.idle;
        self.conn.socket.set_read_timeout(timeout)?;
        self.conn.read_blocking(buf, self.scratch)
    }

    fn handle(&mut self, _max_backlog: usize) -> io::Result<ConnHandle> {
        match &self.conn.outlet {
            Some(outlet) => Ok(ConnHandle(
                Arc::clone(outlet) as Arc<dyn crate::request::Outlet>
            )),
            None => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a reactor connection gets its handle in a non-blocking call (open, say)",
            )),
        }
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
