//! [`Outbox`]: the output of a threads-mode connection that other threads
//! send to (through a [`ConnHandle`](super::ConnHandle)).
//!
//! Whoever has bytes for the connection (its own thread or another) appends
//! them under the outbox's lock and writes what the kernel takes at once,
//! without blocking; the rest waits in the outbox, bounded by the
//! connection's backlog, and the server's [`Flusher`] writes it when the
//! client reads. The connection's own thread, which must not run ahead of its
//! client, waits until its replies are out; a sender never waits. The
//! descriptor is only written under the lock, and the owner closes the outbox
//! under the lock before the descriptor closes, so no write ever reaches a
//! descriptor that was closed and reused.

use std::io;
use std::net::Shutdown;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use socket2::SockRef;

use super::message::Outlet;
use crate::layer::Sink;
use crate::server::flusher::{Flushable, Flusher};

/// A connection's shared output.
pub(crate) struct Outbox {
    fd: RawFd,
    sink: Sink,
    max_backlog: usize,
    flusher: Arc<Flusher>,
    myself: Weak<Outbox>,
    state: Mutex<State>,
    drained: Condvar,
}

#[derive(Default)]
struct State {
    queue: Vec<u8>,
    /// Where the unwritten part of `queue` starts.
    written: usize,
    /// What the sink held after its last try (TLS records not sent).
    held: usize,
    /// The flusher's slot while it watches the socket.
    watched: Option<usize>,
    /// No more bytes are taken: the owner closed, or the backlog overflowed.
    closed: bool,
    /// A handle asked to close the connection.
    close_asked: bool,
    /// The connection was given up (its backlog overflowed, or a write
    /// failed).
    failed: bool,
}

impl State {
    /// Bytes the sink has not taken yet.
    fn unsent(&self) -> usize {
        self.queue.len() - self.written
    }

    /// Everything that waits for the client: bytes not taken, and what
    /// the sink holds (TLS records).
    fn waiting(&self) -> usize {
        self.unsent() + self.held
    }
}

impl Outbox {
    pub fn new(sink: Sink, max_backlog: usize, flusher: Arc<Flusher>) -> Arc<Outbox> {
        Arc::new_cyclic(|myself| Outbox {
            fd: sink.raw_fd(),
            sink,
            max_backlog: max_backlog.max(1),
            flusher,
            myself: myself.clone(),
            state: Mutex::new(State::default()),
            drained: Condvar::new(),
        })
    }

    fn shutdown(&self, how: Shutdown) {
        // SAFETY: the descriptor is open while the outbox is not closed, and
        // every caller holds the lock and checked that.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = SockRef::from(&fd).shutdown(how);
    }

    /// Appends `bytes` and writes what goes at once; when some wait, makes
    /// sure the flusher watches.
    fn push(&self, state: &mut State, bytes: &[u8]) -> io::Result<()> {
        if state.unsent() == 0 {
            state.queue.clear();
            state.written = 0;
            let sent = self.sink.offer(bytes)?;
            if sent < bytes.len() {
                state.queue.extend_from_slice(&bytes[sent..]);
            }
        } else {
            state.queue.extend_from_slice(bytes);
        }
        state.held = self.sink.held()?;
        if state.waiting() == 0 {
            return Ok(());
        }
        if state.watched.is_none() {
            let me: Weak<dyn Flushable> = self.myself.clone();
            state.watched = Some(self.flusher.watch(self.fd, me)?);
        }
        Ok(())
    }

    /// Writes the waiting bytes the kernel takes now; true when none wait.
    fn drain(&self, state: &mut State) -> io::Result<bool> {
        state.held = self.sink.held()?;
        if state.held == 0 && state.unsent() > 0 {
            let sent = self.sink.offer(&state.queue[state.written..])?;
            state.written += sent;
            state.held = self.sink.held()?;
        }
        if state.waiting() > 0 {
            return Ok(false);
        }
        state.queue.clear();
        state.written = 0;
        if state.queue.capacity() > 64 * 1024 {
            state.queue = Vec::new();
        }
        if let Some(slot) = state.watched.take() {
            self.flusher.forget(slot);
        }
        Ok(true)
    }

    /// Gives up on the connection: drops what waits and shuts the socket
    /// down, which ends the owner's read.
    fn fail(&self, state: &mut State) {
        state.closed = true;
        state.failed = true;
        state.queue = Vec::new();
        state.written = 0;
        if let Some(slot) = state.watched.take() {
            self.flusher.forget(slot);
        }
        self.shutdown(Shutdown::Both);
        self.drained.notify_all();
    }

    /// The owner's replies: sent in order after what others queued, waiting
    /// (until `deadline`) for the client to take them.
    pub fn send_own(&self, bytes: &[u8], deadline: Option<Instant>) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the connection was disconnected",
            ));
        }
        if let Err(e) = self.push(&mut state, bytes) {
            self.fail(&mut state);
            return Err(e);
        }
        while state.waiting() > 0 && !state.closed {
            match deadline {
                Some(deadline) => {
                    if self.drained.wait_until(&mut state, deadline).timed_out() {
                        self.fail(&mut state);
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client took no reply within the write timeout",
                        ));
                    }
                }
                None => self.drained.wait(&mut state),
            }
        }
        if state.closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the connection was disconnected",
            ));
        }
        Ok(())
    }

    /// True when the connection was given up: its backlog overflowed or a
    /// write failed.
    pub fn failed(&self) -> bool {
        self.state.lock().failed
    }

    /// True when a handle asked to close the connection.
    pub fn close_asked(&self) -> bool {
        self.state.lock().close_asked
    }

    /// The owner is done: nothing more is taken, nothing is written any
    /// more. Called before the descriptor closes.
    pub fn shut(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        if let Some(slot) = state.watched.take() {
            self.flusher.forget(slot);
        }
        state.queue = Vec::new();
        self.drained.notify_all();
    }
}

impl Outlet for Outbox {
    fn send(&self, bytes: &[u8]) -> bool {
        let mut state = self.state.lock();
        if state.closed {
            return false;
        }
        if state.waiting() + bytes.len() > self.max_backlog {
            log::info!(
                "a client is not reading: over {} bytes wait for it; disconnecting it",
                self.max_backlog
            );
            self.fail(&mut state);
            return false;
        }
        match self.push(&mut state, bytes) {
            Ok(()) => true,
            Err(_) => {
                self.fail(&mut state);
                false
            }
        }
    }

    fn close(&self) {
        let mut state = self.state.lock();
        if !state.closed && !state.close_asked {
            state.close_asked = true;
            // Ends the owner's wait for input; its replies can still go.
            self.shutdown(Shutdown::Read);
        }
    }

    fn is_closed(&self) -> bool {
        let state = self.state.lock();
        state.closed || state.close_asked
    }
}

impl Flushable for Outbox {
    fn flush_ready(&self) -> bool {
        let mut state = self.state.lock();
        if state.closed {
            return true;
        }
        match self.drain(&mut state) {
            Ok(done) => {
                if done {
                    self.drained.notify_all();
                }
                done
            }
            Err(_) => {
                self.fail(&mut state);
                true
            }
        }
    }
}
