//! The threads mode of a [`MessageHandler`]: the connection's pool thread
//! reads, frames and calls the handler, blocking as a `RequestHandler` does.
//!
//! Every message handler is therefore a `RequestHandler<StreamRequest>`, and
//! runs on any stream server. Bytes are read straight into the loop's own
//! buffer (allocated once per connection; nothing is allocated per message),
//! every complete message in it is handled, and the replies of a batch go out
//! in one write. Between messages the connection counts as idle, so a
//! shutdown closes it at once.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::framing::{Found, Framer, FramingError};
use super::message::{
    cannot_read, read_kept, Closing, Conn, ConnHandle, ConnIo, MessageHandler, Next,
};
use super::outbox::Outbox;
use super::stream::StreamRequest;
use crate::server::control::ServerHandle;
use crate::transport::Address;

/// How much a connection's input buffer holds at first: little, since a
/// thread per idle connection is what a threads-mode server holds by the
/// thousand (its stack already takes two pages).
const FIRST_BUFFER: usize = 512;
/// A buffer that a read filled to the end doubles before the next read, up
/// to this: a connection that sends much reads it in few calls.
const GROWN_BUFFER: usize = 16 * 1024;
/// Replies beyond this are written at once instead of batched.
const WRITE_THROUGH: usize = 64 * 1024;
/// What a polite close reads and discards at most, by default.
pub(crate) const DEFAULT_LINGER: usize = 1 << 20;

/// The timeouts of a connection as its handler set them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// No byte for this long: close.
    pub idle: Option<Duration>,
    /// A message must be complete within this of its first byte.
    pub message: Option<Duration>,
    /// The next message must be complete by then.
    pub next_by: Option<Instant>,
}

impl Timeouts {
    pub fn of(server: &ServerHandle) -> Self {
        Timeouts {
            idle: server.options().idle_timeout,
            message: None,
            next_by: None,
        }
    }

    pub fn apply(
        &mut self,
        server: &ServerHandle,
        idle: Option<Option<Duration>>,
        message: Option<(Option<Duration>, bool)>,
    ) {
        if let Some(idle) = idle {
            self.idle = idle.or(server.options().idle_timeout);
        }
        if let Some((timeout, from_now)) = message {
            if from_now {
                self.next_by = timeout.map(crate::deadline::after);
            } else {
                self.message = timeout;
            }
        }
    }

    /// How long the next read may wait: the idle timeout, shortened by a
    /// message's deadline. `Err` when a deadline has passed.
    pub fn read_timeout(&self, message_started: Option<Instant>) -> Result<Option<Duration>, ()> {
        let deadline = match (message_started, self.message) {
            (Some(started), Some(limit)) => Some(crate::deadline::later(started, limit)),
            _ => None,
        };
        let deadline = match (deadline, self.next_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(deadline) = deadline else {
            return Ok(self.idle);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(());
        }
        Ok(Some(self.idle.map_or(left, |idle| idle.min(left))))
    }
}

/// Runs `handler` on `req` until the conversation ends.
pub(crate) fn run<H: MessageHandler>(handler: &H, req: &mut StreamRequest) -> io::Result<()> {
    let server = req.server().clone();
    let peer = req.peer_addr();
    let mut state = LoopState {
        out: Vec::new(),
        outbox: None,
        timeouts: Timeouts::of(&server),
        linger: DEFAULT_LINGER,
        write_timeout: server.options().write_timeout,
        pause: None,
    };
    let mut session = {
        let mut io = ThreadIo::new(req, &mut state, &peer, &[]);
        let session = handler.open(&mut Conn::new(&mut io));
        let used = io.rest_used;
        debug_assert_eq!(used, 0);
        session?
    };
    let mut input = Input::new();
    let mut framer = Framer::new(handler.framing(&session));
    let mut eof = false;
    let mut message_started: Option<Instant> = None;
    let mut socket_timeout: Option<Option<Duration>> = None;
    let idle_ends = handler.idle_ends_at_shutdown();
    let why = loop {
        framer.set_framing(handler.framing(&session));
        let found = framer.next(input.bytes(), eof);
        match found {
            Ok(Found::Message {
                start,
                end,
                consumed,
            }) => {
                message_started = None;
                state.timeouts.next_by = None;
                let (message, rest) = input.split(start, end, consumed);
                let mut io = ThreadIo::new(req, &mut state, &peer, rest);
                let next = handler.on_message(&mut session, message, &mut Conn::new(&mut io));
                let used = io.rest_used;
                input.consume(consumed + used);
                match next {
                    Ok(Next::Continue) => {}
                    Ok(Next::Close) => break Closing::Handler,
                    Err(e) => {
                        close(handler, session, Closing::Error, req, &mut state, &peer);
                        return Err(e);
                    }
                }
                if input.is_empty() {
                    state.flush(req)?;
                }
                if let Some(pause) = state.pause.take() {
                    state.flush(req)?;
                    if server.wait_for_shutdown(Some(pause)) && idle_ends {
                        break Closing::Shutdown;
                    }
                }
            }
            Ok(Found::NeedMore) => {
                state.flush(req)?;
                let between = input.is_empty() && !handler.in_request(&session);
                let waits_idle = between && idle_ends;
                if between {
                    message_started = None;
                } else if message_started.is_none() {
                    message_started = Some(Instant::now());
                }
                let timeout = match state.timeouts.read_timeout(message_started) {
                    Ok(timeout) => timeout,
                    Err(()) => break Closing::Timeout,
                };
                if socket_timeout != Some(timeout) {
                    req.set_read_timeout(timeout)?;
                    socket_timeout = Some(timeout);
                }
                if waits_idle && !req.mark_idle() {
                    break Closing::Shutdown;
                }
                let read = input.fill(req);
                if waits_idle && !req.mark_busy() {
                    break Closing::Shutdown;
                }
                if state.outbox.as_ref().is_some_and(|o| o.failed()) {
                    break Closing::Error;
                }
                match read {
                    Ok(0) => eof = true,
                    Ok(_) => {}
                    Err(e) if is_timeout(&e) => {
                        log::debug!("{peer}: nothing received in time; closing");
                        break Closing::Timeout;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        close(handler, session, Closing::Error, req, &mut state, &peer);
                        return Err(e);
                    }
                }
                if eof && state.outbox.as_ref().is_some_and(|o| o.close_asked()) {
                    break Closing::Handler;
                }
            }
            Ok(Found::End) => break Closing::Eof,
            Err(error) => {
                let mut io = ThreadIo::new(req, &mut state, &peer, &[]);
                let answered = handler.on_bad_message(&mut session, error, &mut Conn::new(&mut io));
                if let Err(e) = answered {
                    close(handler, session, Closing::Error, req, &mut state, &peer);
                    return Err(e);
                }
                break if matches!(error, FramingError::Truncated { .. }) {
                    Closing::Eof
                } else {
                    Closing::Handler
                };
            }
        }
    };
    close(handler, session, why, req, &mut state, &peer);
    Ok(())
}

/// Ends a conversation: the handler's `close`, the last replies, a polite
/// close when the handler chose to end, the outbox shut.
fn close<H: MessageHandler>(
    handler: &H,
    session: H::Session,
    why: Closing,
    req: &mut StreamRequest,
    state: &mut LoopState,
    peer: &Address,
) {
    let mut io = ThreadIo::new(req, state, peer, &[]);
    handler.close(session, why, &mut Conn::new(&mut io));
    let flushed = state.flush(req);
    if flushed.is_ok() && matches!(why, Closing::Handler | Closing::Shutdown) {
        req.close_after_answer(state.linger);
    }
    if let Some(outbox) = state.outbox.take() {
        outbox.shut();
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// What the loop keeps beside the input.
struct LoopState {
    out: Vec<u8>,
    outbox: Option<Arc<Outbox>>,
    timeouts: Timeouts,
    linger: usize,
    write_timeout: Option<Duration>,
    /// A pause of reading that the handler asked for.
    pause: Option<Duration>,
}

impl LoopState {
    /// Sends the batched replies.
    fn flush(&mut self, req: &mut StreamRequest) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let sent = match &self.outbox {
            Some(outbox) => {
                let deadline = self.write_timeout.map(crate::deadline::after);
                outbox.send_own(&self.out, deadline)
            }
            None => req.write_all(&self.out),
        };
        self.out.clear();
        if self.out.capacity() > 4 * WRITE_THROUGH {
            self.out = Vec::new();
        }
        sent
    }
}

/// The bytes received and not yet used.
struct Input {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The last read filled all the room it had: more was probably waiting.
    filled: bool,
}

impl Input {
    fn new() -> Self {
        Input {
            buf: Vec::new(),
            start: 0,
            end: 0,
            filled: false,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The message `start..end` and the bytes past `consumed`, relative to
    /// the unused bytes.
    fn split(&self, start: usize, end: usize, consumed: usize) -> (&[u8], &[u8]) {
        let bytes = self.bytes();
        (&bytes[start..end], &bytes[consumed..])
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more after the unused bytes, making room first (moving them to
    /// the front, or growing when a message is larger than the buffer).
    fn fill(&mut self, req: &mut StreamRequest) -> io::Result<usize> {
        if self.buf.is_empty() {
            self.buf = vec![0; FIRST_BUFFER];
        } else if self.filled && self.buf.len() < GROWN_BUFFER {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let grown = self.buf.len() * 2;
                self.buf.resize(grown, 0);
            }
        }
        let room = self.buf.len() - self.end;
        let n = req.read_unbuffered(&mut self.buf[self.end..])?;
        self.end += n;
        self.filled = n == room;
        Ok(n)
    }
}

/// The threads mode behind a [`Conn`].
struct ThreadIo<'a> {
    req: &'a mut StreamRequest,
    state: &'a mut LoopState,
    peer: &'a Address,
    rest: &'a [u8],
    rest_used: usize,
}

impl<'a> ThreadIo<'a> {
    fn new(
        req: &'a mut StreamRequest,
        state: &'a mut LoopState,
        peer: &'a Address,
        rest: &'a [u8],
    ) -> Self {
        ThreadIo {
            req,
            state,
            peer,
            rest,
            rest_used: 0,
        }
    }
}

impl ConnIo for ThreadIo<'_> {
    fn peer(&self) -> &Address {
        self.peer
    }

    fn server(&self) -> &ServerHandle {
        self.req.server()
    }

    fn is_blocking(&self) -> bool {
        true
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.state.out.len() + buf.len() > WRITE_THROUGH {
            self.state.flush(self.req)?;
            if buf.len() > WRITE_THROUGH && self.state.outbox.is_none() {
                return self.req.write(buf);
            }
        }
        self.state.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn output(&mut self) -> &mut Vec<u8> {
        &mut self.state.out
    }

    fn flush_now(&mut self) -> io::Result<()> {
        self.state.flush(self.req)
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(n) = read_kept(self.rest, &mut self.rest_used, buf) {
            return Ok(n);
        }
        if !self.is_blocking() {
            return Err(cannot_read());
        }
        self.req.read_unbuffered(buf)
    }

    fn handle(&mut self, max_backlog: usize) -> io::Result<ConnHandle> {
        if self.state.outbox.is_none() {
            let flusher = self.req.server().0.flusher()?;
            let outbox = Outbox::new(self.req.sink(), max_backlog, flusher);
            // What was written before goes first.
            self.state.outbox = Some(outbox);
            self.state.flush(self.req)?;
        }
        let outbox = self.state.outbox.as_ref().expect("made above");
        Ok(ConnHandle(
            Arc::clone(outbox) as Arc<dyn super::message::Outlet>
        ))
    }

    fn set_timeouts(
        &mut self,
        idle: Option<Option<Duration>>,
        message: Option<(Option<Duration>, bool)>,
    ) {
        let server = self.req.server().clone();
        self.state.timeouts.apply(&server, idle, message);
    }

    fn set_linger(&mut self, max_discard: usize) {
        self.state.linger = max_discard;
    }

    fn pause_reading(&mut self, pause: Duration) {
        self.state.pause = Some(pause);
    }

    fn raw_fd(&self) -> RawFd {
        self.req.as_fd().as_raw_fd()
    }
}

impl<H: MessageHandler> crate::request::handler::RequestHandler<StreamRequest> for H {
    fn handle(&self, request: &mut StreamRequest) -> io::Result<()> {
        run(self, request)
    }

    fn verify_request(&self, peer: &Address) -> bool {
        MessageHandler::verify_request(self, peer)
    }

    fn handle_error(&self, peer: &Address, error: &io::Error) {
        MessageHandler::handle_error(self, peer, error)
    }

    fn service_actions(&self) {
        MessageHandler::service_actions(self)
    }
}
