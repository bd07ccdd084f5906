//! [`EventLoop`]: one reactor thread, its `epoll` instance, its connections
//! and their deadlines.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use parking_lot::Mutex;

use super::blocking::Handoff;
use super::connection::{Connection, LoopIo, Phase, LINGER};
use super::mailbox::{Alarm, Command, LoopHandle, Mailbox, Notify, Signal};
use super::timers::{Deadlines, Key};
use crate::dispatch::Pool;
use crate::request::{Closing, Conn, Found, Framer, FramingError, MessageHandler, Next, Timeouts};
use crate::server::control::{full_of_connections, ACCEPT_BACKOFF};
use crate::server::lifecycle::{panic_message, Lifecycle};
use crate::server::stats::Counters;
use crate::transport::{Accepted, Listener};

const WAKE: Token = Token(usize::MAX);
/// The loop's own listening socket, when it accepts on one.
const LISTENER: Token = Token(usize::MAX - 1);
/// How many connections a loop accepts in one turn before its connections
/// get theirs.
const ACCEPT_BUDGET: usize = 64;
/// What one read brings at most; the loop's read buffer.
const READ_BUFFER: usize = 64 * 1024;
/// What a connection may read in one turn of the loop before the others get
/// theirs.
const READ_BUDGET: usize = 256 * 1024;
/// Past this many unsent bytes, a connection is not read until its client
/// takes some: its output stays bounded.
const HIGH_WATER: usize = 1 << 20;
/// How long after the shutdown deadline a loop waits for connections that a
/// pool thread still holds.
const CUT_GRACE: Duration = Duration::from_secs(2);

/// A place in a loop's table.
struct Slot<H: MessageHandler> {
    generation: u32,
    conn: Option<Box<Connection<H>>>,
    /// The connection is on a pool thread.
    in_pool: bool,
}

/// One event loop.
pub(super) struct EventLoop<H: MessageHandler> {
    poll: Poll,
    lifecycle: Arc<Lifecycle<H>>,
    pool: Arc<Mutex<Option<Pool<Handoff<H>>>>>,
    commands: Receiver<Command<Box<Connection<H>>>>,
    signals: Receiver<Signal>,
    alarm: Arc<Alarm>,
    handle: LoopHandle<Box<Connection<H>>>,
    notify: Notify,
    slots: Vec<Slot<H>>,
    free: Vec<usize>,
    /// Connections in the table or on the pool.
    open: usize,
    deadlines: Deadlines,
    /// Connections with more to read after their budget ran out.
    ready: VecDeque<Key>,
    /// Connections whose blocking message found the pool full.
    waiting_for_thread: VecDeque<Key>,
    /// How many wait so in all the loops (the pool wakes them when a thread
    /// frees up).
    waiting_total: Arc<std::sync::atomic::AtomicUsize>,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    /// Plaintext on its way out of TLS.
    tls_plain: Vec<u8>,
    /// The shutdown deadline, once shutting down.
    shutdown_deadline: Option<Instant>,
    /// The loop's own listening socket, when it accepts on one.
    listener: Option<Arc<Listener>>,
    /// How accepting on it goes.
    accepting: Accepting,
}

/// How a loop's accepting on its own listener goes.
#[derive(Debug, Default)]
struct Accepting {
    /// Since when the server has been full, for the log.
    full_since: Option<Instant>,
    /// Accepting failed: when to try again.
    retry_at: Option<Instant>,
    /// Accepting has failed since the last connection accepted (the error
    /// is logged once).
    failing: bool,
    /// The budget ran out with connections perhaps still waiting: accept
    /// again next turn (no new edge will say so).
    more: bool,
    /// Serving has begun: the listener is watched.
    listening: bool,
}

impl<H: MessageHandler> EventLoop<H> {
    pub fn new(
        lifecycle: Arc<Lifecycle<H>>,
        pool: Arc<Mutex<Option<Pool<Handoff<H>>>>>,
        waiting_total: Arc<std::sync::atomic::AtomicUsize>,
        listener: Option<Arc<Listener>>,
    ) -> io::Result<(Self, LoopHandle<Box<Connection<H>>>)> {
        let poll = Poll::new()?;
        let mailbox = Mailbox::new(poll.registry(), WAKE)?;
        let handle = mailbox.handle.clone();
        let event_loop = EventLoop {
            poll,
            lifecycle,
            pool,
            commands: mailbox.commands,
            signals: mailbox.signals,
            alarm: mailbox.alarm,
            handle: mailbox.handle,
            notify: mailbox.notify,
            slots: Vec::new(),
            free: Vec::new(),
            open: 0,
            deadlines: Deadlines::default(),
            ready: VecDeque::new(),
            waiting_for_thread: VecDeque::new(),
            waiting_total,
            read_buf: vec![0; READ_BUFFER],
            write_buf: Vec::new(),
            tls_plain: Vec::new(),
            shutdown_deadline: None,
            listener,
            accepting: Accepting::default(),
        };
        Ok((event_loop, handle))
    }

    /// Runs until the server has shut down and every connection is closed
    /// (or the shutdown deadline has long passed).
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            if let Some(deadline) = self.shutdown_deadline {
                if self.open == 0 || Instant::now() >= crate::deadline::later(deadline, CUT_GRACE) {
                    break;
                }
            }
            // Announce the sleep, then look once more for work sent in
            // between: a sender who saw the loop awake did not ring.
            self.alarm.sleeping.store(true, SeqCst);
            let timeout = if !self.commands.is_empty()
                || !self.signals.is_empty()
                || !self.ready.is_empty()
                || self.accepting.more
            {
                Some(Duration::ZERO)
            } else {
                let next = match (self.deadlines.next(), self.accepting.retry_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                next.map(|at| at.saturating_duration_since(Instant::now()))
            };
            let polled = self.poll.poll(&mut events, timeout);
            self.alarm.sleeping.store(false, SeqCst);
            if let Err(e) = polled {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("an event loop cannot wait for its sockets: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            while let Ok(command) = self.commands.try_recv() {
                self.command(command);
            }
            while let Ok(signal) = self.signals.try_recv() {
                self.signal(signal);
            }
            for event in events.iter() {
                let token = event.token();
                if token == WAKE {
                    continue;
                }
                if token == LISTENER {
                    self.accept_waiting();
                    continue;
                }
                let Some(key) = self.key_of(token.0) else {
                    continue;
                };
                if event.is_writable() || event.is_write_closed() || event.is_error() {
                    self.writable(key);
                }
                if event.is_read_closed() || event.is_error() {
                    // The end of input came with the data: read to it.
                    self.readable_to_end(key);
                } else if event.is_readable() {
                    self.readable(key);
                }
            }
            for _ in 0..self.ready.len() {
                if let Some(key) = self.ready.pop_front() {
                    self.readable_to_end(key);
                }
            }
            for _ in 0..self.waiting_for_thread.len() {
                if let Some(key) = self.waiting_for_thread.pop_front() {
                    self.waiting_total.fetch_sub(1, SeqCst);
                    self.resume(key);
                }
            }
            if self.accepting.more
                || self
                    .accepting
                    .retry_at
                    .is_some_and(|at| at <= Instant::now())
            {
                self.accept_waiting();
            }
            self.expire();
        }
        // Whatever is left at the end is cut.
        for slot in 0..self.slots.len() {
            if let Some(key) = self.key_of(slot) {
                self.cut(key);
            }
        }
    }

    fn key_of(&self, slot: usize) -> Option<Key> {
        let entry = self.slots.get(slot)?;
        entry.conn.as_ref().map(|_| Key {
            slot,
            generation: entry.generation,
        })
    }

    fn conn(&mut self, key: Key) -> Option<&mut Connection<H>> {
        conn_in(&mut self.slots, key)
    }

    fn command(&mut self, command: Command<Box<Connection<H>>>) {
        match command {
            Command::Accept(accepted) => self.accept(accepted),
            Command::Listen => self.listen(),
            Command::Room => self.accept_waiting(),
            Command::Return(conn) => self.returned(conn),
            Command::Shutdown => self.begin_shutdown(),
        }
    }

    fn signal(&mut self, signal: Signal) {
        match signal {
            Signal::Flush(key) => {
                if let Some(conn) = self.conn(key) {
                    if let Some(outlet) = conn.outlet.clone() {
                        outlet.take_into(&mut conn.out);
                    }
                    self.writable(key);
                }
            }
            Signal::Disconnect(key) => {
                if let Some(conn) = self.conn(key) {
                    conn.out.clear();
                    self.close(key, Closing::Error);
                }
            }
            Signal::CloseAfterFlush(key) => {
                if let Some(conn) = self.conn(key) {
                    conn.close_when_flushed = Some(Closing::Handler);
                    self.writable(key);
                }
            }
        }
    }

    /// Serving begins: watches the loop's own listener, if it has one, and
    /// accepts what already waits there.
    fn listen(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        if self.accepting.listening || self.shutdown_deadline.is_some() {
            return;
        }
        let registered = self.poll.registry().register(
            &mut SourceFd(&listener.socket.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        );
        match registered {
            Ok(()) => {
                self.accepting.listening = true;
                self.accept_waiting();
            }
            Err(e) => log::error!(
                "{}: an event loop cannot watch its listener: {e}",
                self.lifecycle.control().url()
            ),
        }
    }

    /// Accepts what waits on the loop's own listener while the server's
    /// limits allow, as the server's accept loop does for one listener:
    /// when full, it leaves the rest in the listen backlog and says so, and
    /// the server sends [`Command::Room`] once a connection has closed.
    fn accept_waiting(&mut self) {
        let Some(listener) = self.listener.clone() else {
            return;
        };
        if !self.accepting.listening {
            return;
        }
        self.accepting.retry_at = None;
        self.accepting.more = false;
        let lifecycle = Arc::clone(&self.lifecycle);
        let control = lifecycle.control();
        let in_flight = &control.counters.in_flight;
        let max = control.options.max_connections;
        let mut budget = ACCEPT_BUDGET;
        while !control.is_shutdown() && self.shutdown_deadline.is_none() {
            if budget == 0 {
                self.accepting.more = true;
                return;
            }
            if in_flight.load(SeqCst) >= max {
                // Announce the pause, then look once more: room freed in
                // between is not missed.
                control.paused.store(true, SeqCst);
                if in_flight.load(SeqCst) < max {
                    continue;
                }
                if self.accepting.full_since.is_none() {
                    self.accepting.full_since = Some(Instant::now());
                    log::warn!(
                        "{}: {}",
                        control.url(),
                        full_of_connections(in_flight.load(SeqCst))
                    );
                }
                return;
            }
            match listener.accept() {
                Ok(Some(accepted)) => {
                    if std::mem::take(&mut self.accepting.failing) {
                        log::warn!("{}: accepting again", control.url());
                    }
                    if let Some(since) = self.accepting.full_since.take() {
                        log::warn!(
                            "{}: accepting again after {} ms full",
                            control.url(),
                            since.elapsed().as_millis()
                        );
                    }
                    in_flight.fetch_add(1, SeqCst);
                    control.note_arrival();
                    self.accept(accepted);
                    budget -= 1;
                }
                Ok(None) => return,
                Err(e) => {
                    // Out of descriptors, say: retry later, without
                    // spinning a core or flooding the log.
                    if !std::mem::replace(&mut self.accepting.failing, true) {
                        log::error!(
                            "cannot accept on {}: {e}; retrying every {} ms",
                            control.url(),
                            ACCEPT_BACKOFF.as_millis()
                        );
                    }
                    self.accepting.retry_at = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// A new connection: set it up, register it; then its layers (a PROXY
    /// header, a TLS handshake) as its bytes come, or at once its handler.
    fn accept(&mut self, accepted: Accepted) {
        let control = self.lifecycle.control();
        let Accepted { socket, peer } = accepted;
        if self.shutdown_deadline.is_some() {
            drop(socket);
            control.request_done();
            return;
        }
        let options = &control.options;
        let prepared = socket.set_nonblocking(true).and_then(|()| {
            if options.nodelay && peer.as_inet().is_some() {
                socket.set_tcp_nodelay(true)?;
            }
            Ok(())
        });
        if let Err(e) = prepared {
            self.lifecycle.handler.handle_error(&peer, &e);
            control.request_done();
            return;
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                    in_pool: false,
                });
                self.slots.len() - 1
            }
        };
        let generation = self.slots[slot].generation.wrapping_add(1);
        self.slots[slot].generation = generation;
        let key = Key { slot, generation };
        let registered = self.poll.registry().register(
            &mut SourceFd(&socket.as_raw_fd()),
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(e) = registered {
            self.lifecycle.handler.handle_error(&peer, &e);
            self.free.push(slot);
            control.request_done();
            return;
        }
        let timeouts = Timeouts::of(self.lifecycle.server());
        let framer = Framer::new(crate::request::Framing::Chunk { max: 1 });
        let mut conn = Connection::new(socket, peer, key, timeouts, framer);
        let layers = &options.layers;
        #[cfg(feature = "tls")]
        if let Some(config) = &layers.tls {
            conn.tls = Some(Box::new(crate::layer::tls::TlsSession::new(Arc::clone(
                config,
            ))));
        }
        conn.phase = if layers.proxy {
            Phase::Proxy {
                until: crate::deadline::after(layers.proxy_timeout),
            }
        } else if conn.has_tls() {
            Phase::Handshake {
                until: layers.tls_timeout.map(crate::deadline::after),
            }
        } else {
            Phase::Open
        };
        let open = conn.phase == Phase::Open;
        self.slots[slot].conn = Some(Box::new(conn));
        self.open += 1;
        if open && !self.open_session(key) {
            return;
        }
        self.reschedule(key);
        // Bytes may have come with the connection.
        self.readable(key);
    }

    /// The layers are done: the handler's `verify_request` judges the peer
    /// (the PROXY header's client), then its `open` starts the session.
    /// False when the connection was closed instead.
    fn open_session(&mut self, key: Key) -> bool {
        let lifecycle = Arc::clone(&self.lifecycle);
        let server = lifecycle.server();
        let notify = self.notify.clone();
        let Some(conn) = conn_in(&mut self.slots, key) else {
            return false;
        };
        let peer = conn.peer.clone();
        if !lifecycle.handler.verify_request(&peer) {
            log::debug!("{peer}: refused by verify_request");
            self.refuse(key);
            return false;
        }
        let out = &mut self.write_buf;
        let opened = catch_unwind(AssertUnwindSafe(|| {
            let mut io = LoopIo {
                conn: &mut *conn,
                out,
                server,
                notify: &notify,
            };
            lifecycle.handler.open(&mut Conn::new(&mut io))
        }));
        match opened {
            Ok(Ok(session)) => {
                let framing = lifecycle.handler.framing(&session);
                conn.framer = Framer::new(framing);
                conn.session = Some(session);
                self.flush_replies(key);
                self.conn(key).is_some()
            }
            Ok(Err(e)) => {
                Counters::bump(&lifecycle.control().counters.failed);
                lifecycle.handler.handle_error(&peer, &e);
                self.write_buf.clear();
                self.finish(key);
                false
            }
            Err(panic) => {
                Counters::bump(&lifecycle.control().counters.panicked);
                log::error!("{peer}: handler panicked: {}", panic_message(&*panic));
                self.write_buf.clear();
                self.finish(key);
                false
            }
        }
    }

    /// Turned away before its handler: a layer failed or `verify_request`
    /// said no. Counted as rejected; a TLS alert goes if it can.
    fn refuse(&mut self, key: Key) {
        Counters::bump(&self.lifecycle.control().counters.rejected);
        if let Some(conn) = self.conn(key) {
            let _ = conn.write_out();
        }
        self.finish(key);
    }

    /// Sends what the handler wrote to the loop's write buffer.
    fn flush_replies(&mut self, key: Key) {
        if self.write_buf.is_empty() {
            return;
        }
        let mut replies = std::mem::take(&mut self.write_buf);
        let sent = match self.conn(key) {
            Some(conn) => conn.send(&replies),
            None => Ok(()),
        };
        replies.clear();
        self.write_buf = replies;
        if let Err(e) = sent {
            self.failed(key, e);
        }
    }

    /// The socket may take more: write what waits.
    fn writable(&mut self, key: Key) {
        let Some(conn) = self.conn(key) else {
            return;
        };
        let was_full = conn.out.len() >= HIGH_WATER;
        let written = conn.write_out();
        match written {
            Err(e) => self.failed(key, e),
            Ok(false) => {}
            Ok(true) => {
                let Some(conn) = conn_in(&mut self.slots, key) else {
                    return;
                };
                if let Phase::Lingering { write_shut, .. } = &mut conn.phase {
                    if !*write_shut {
                        *write_shut = true;
                        conn.shut_write();
                    }
                    if conn.eof {
                        self.finish(key);
                    }
                    return;
                }
                if let Some(why) = conn.close_when_flushed.take() {
                    let between =
                        conn.input.is_empty() && !in_request(&self.lifecycle.handler, conn);
                    if between || why == Closing::Handler {
                        self.close(key, why);
                        return;
                    }
                    conn.close_when_flushed = Some(why);
                }
                if was_full {
                    // Reading stopped while the output was full.
                    self.readable(key);
                }
            }
        }
    }

    /// Reads what the socket has, within the budget, and handles the
    /// messages it completes. A read shorter than the buffer emptied the
    /// socket: what comes later brings a new edge.
    fn readable(&mut self, key: Key) {
        self.read_input(key, false)
    }

    /// As [`readable`](Self::readable), reading until the end of input
    /// whatever the size of the reads.
    fn readable_to_end(&mut self, key: Key) {
        self.read_input(key, true)
    }

    fn read_input(&mut self, key: Key, to_end: bool) {
        let mut budget = READ_BUDGET;
        loop {
            let Some(slot) = self.slots.get(key.slot) else {
                return;
            };
            if slot.generation != key.generation || slot.in_pool {
                return;
            }
            let Some(conn) = self.slots[key.slot].conn.as_deref_mut() else {
                return;
            };
            match conn.phase {
                Phase::Lingering { .. } => return self.discard(key),
                Phase::Open => {
                    if conn.paused_until.is_some() || conn.out.len() >= HIGH_WATER {
                        return;
                    }
                    if conn.eof {
                        // Only what was received is left to handle.
                        self.handle_input(key, 0);
                        return;
                    }
                }
                Phase::Proxy { .. } | Phase::Handshake { .. } => {}
            }
            let received = conn.receive(&mut self.read_buf, &mut self.tls_plain);
            let received = match received {
                Ok(received) => received,
                Err(e) => {
                    if conn.phase == Phase::Open {
                        return self.failed(key, e);
                    }
                    log::debug!("{}: refused by a stream layer: {e}", conn.peer);
                    return self.refuse(key);
                }
            };
            let n = received.n;
            if n > 0 {
                conn.last_active = Instant::now();
            }
            conn.eof |= received.eof;
            if conn.has_tls() {
                // A handshake's messages, a key update's answer.
                if let Err(e) = conn.write_out() {
                    return self.failed(key, e);
                }
            }
            let more = match conn.phase {
                Phase::Open => {
                    if n == 0 && !conn.eof {
                        if !conn.input.is_empty() && conn.message_started.is_none() {
                            conn.message_started = Some(Instant::now());
                        }
                        return;
                    }
                    self.handle_input(key, n)
                }
                Phase::Proxy { .. } => self.proxy_input(key, n),
                Phase::Handshake { .. } => self.handshake_progress(key, n),
                Phase::Lingering { .. } => false,
            };
            if !more || (received.drained && !to_end) {
                // A short read emptied the socket: the next bytes bring a
                // new edge.
                return;
            }
            budget = budget.saturating_sub(n.max(1));
            if budget == 0 {
                self.ready.push_back(key);
                return;
            }
        }
    }

    /// Bytes of a PROXY header: when it is whole, the peer becomes the
    /// client it names, and what follows goes to TLS or to the handler.
    fn proxy_input(&mut self, key: Key, n: usize) -> bool {
        let Some(conn) = conn_in(&mut self.slots, key) else {
            return false;
        };
        conn.input.extend_from_slice(&self.read_buf[..n]);
        let (header, length) = match crate::layer::proxy::parse(&conn.input) {
            Ok(crate::layer::proxy::Parsed::Complete { header, length }) => (header, length),
            Ok(crate::layer::proxy::Parsed::Incomplete) => {
                if conn.eof {
                    log::debug!(
                        "{}: the connection ended inside its PROXY header",
                        conn.peer
                    );
                    self.refuse(key);
                    return false;
                }
                return true;
            }
            Err(e) => {
                log::debug!("{}: refused by a stream layer: {e}", conn.peer);
                self.refuse(key);
                return false;
            }
        };
        conn.peer = header.peer_or(conn.peer.clone());
        let rest = conn.input.split_off(length);
        conn.input = Vec::new();
        #[cfg(feature = "tls")]
        if let Some(session) = conn.tls.as_mut() {
            let layers = &self.lifecycle.control().options.layers;
            conn.phase = Phase::Handshake {
                until: layers.tls_timeout.map(crate::deadline::after),
            };
            if let Err(e) = session.feed(&rest) {
                log::debug!("{}: refused by a stream layer: {e}", conn.peer);
                self.refuse(key);
                return false;
            }
            if let Err(e) = conn.write_out() {
                self.failed(key, e);
                return false;
            }
            self.reschedule(key);
            return self.handshake_progress(key, 0);
        }
        conn.phase = Phase::Open;
        conn.input = rest;
        if !self.open_session(key) {
            return false;
        }
        self.reschedule(key);
        self.handle_input(key, 0)
    }

    /// After TLS bytes: once the handshake is done, the handler's turn,
    /// with whatever plaintext came already (`n` bytes in the read buffer,
    /// plus what TLS still holds).
    fn handshake_progress(&mut self, key: Key, n: usize) -> bool {
        let Some(conn) = conn_in(&mut self.slots, key) else {
            return false;
        };
        if conn.handshaking() {
            if conn.eof {
                log::debug!("{}: the connection ended in its TLS handshake", conn.peer);
                self.refuse(key);
                return false;
            }
            return true;
        }
        conn.phase = Phase::Open;
        conn.scheduled = None;
        if !self.open_session(key) {
            return false;
        }
        self.reschedule(key);
        self.handle_input(key, n)
    }

    /// Handles the complete messages in the connection's unused bytes plus
    /// the `n` just read into the read buffer; keeps the rest. False when
    /// the connection is done here (closed, or gone to the pool).
    fn handle_input(&mut self, key: Key, n: usize) -> bool {
        let lifecycle = Arc::clone(&self.lifecycle);
        let handler = &lifecycle.handler;
        let notify = self.notify.clone();
        let Some(conn) = self.slots[key.slot].conn.as_deref_mut() else {
            return false;
        };
        // The bytes to frame: the read buffer alone when nothing was kept
        // (no copy), else the kept bytes with the new ones after them.
        let mut kept = std::mem::take(&mut conn.input);
        let from_buffer = kept.is_empty();
        if !from_buffer {
            kept.extend_from_slice(&self.read_buf[..n]);
        }
        let data: &[u8] = if from_buffer {
            &self.read_buf[..n]
        } else {
            &kept
        };
        let mut at = 0;
        let mut outcome = Outcome::More;
        while outcome == Outcome::More {
            let Some(session) = conn.session.as_mut() else {
                outcome = Outcome::Closed;
                break;
            };
            conn.framer.set_framing(handler.framing(session));
            let found = conn.framer.next(&data[at..], conn.eof);
            match found {
                Ok(Found::Message {
                    start,
                    end,
                    consumed,
                }) => {
                    if handler.blocking(session) {
                        outcome = Outcome::ToPool;
                        break;
                    }
                    let message = &data[at + start..at + end];
                    let next = run_session_call(
                        &lifecycle,
                        conn,
                        &mut self.write_buf,
                        &notify,
                        |session, io| handler.on_message(session, message, io),
                    );
                    at += consumed;
                    conn.message_started = None;
                    conn.timeouts.next_by = None;
                    match next {
                        Some(Next::Continue) => {}
                        Some(Next::Close) => outcome = Outcome::Close(Closing::Handler),
                        None => outcome = Outcome::Close(Closing::Error),
                    }
                    if conn.paused_until.is_some() && outcome == Outcome::More {
                        outcome = Outcome::Paused;
                    }
                }
                Ok(Found::NeedMore) => outcome = Outcome::NeedMore,
                Ok(Found::End) => outcome = Outcome::Close(Closing::Eof),
                Err(error) => {
                    let answered = run_session_call(
                        &lifecycle,
                        conn,
                        &mut self.write_buf,
                        &notify,
                        |session, io| handler.on_bad_message(session, error, io),
                    );
                    at = data.len();
                    outcome = match (answered, error) {
                        (None, _) => Outcome::Close(Closing::Error),
                        (_, FramingError::Truncated { .. }) => Outcome::Close(Closing::Eof),
                        _ => Outcome::Close(Closing::Handler),
                    };
                }
            }
        }
        // Keep what was not used.
        let rest = &data[at..];
        if from_buffer {
            conn.input.extend_from_slice(rest);
        } else {
            kept.drain(..at);
            conn.input = kept;
        }
        if conn.input.is_empty() {
            conn.message_started = None;
        } else if conn.message_started.is_none() {
            conn.message_started = Some(Instant::now());
        }
        if conn.input.is_empty() && conn.input.capacity() > 0 {
            conn.input = Vec::new();
        }
        self.flush_replies(key);
        if self.conn(key).is_none() {
            return false;
        }
        match outcome {
            Outcome::Close(why) => {
                self.close(key, why);
                false
            }
            Outcome::ToPool => {
                self.hand_to_pool(key);
                false
            }
            Outcome::Paused | Outcome::Closed => {
                self.reschedule(key);
                false
            }
            Outcome::More | Outcome::NeedMore => {
                let Some(conn) = conn_in(&mut self.slots, key) else {
                    return false;
                };
                if let Some(why) = conn.close_when_flushed {
                    let between =
                        conn.input.is_empty() && !in_request(&self.lifecycle.handler, conn);
                    if conn.out.is_empty() && between {
                        conn.close_when_flushed = None;
                        self.close(key, why);
                        return false;
                    }
                }
                self.reschedule(key);
                true
            }
        }
    }

    /// Sends a connection whose next message may block to the pool.
    fn hand_to_pool(&mut self, key: Key) {
        let handoff_conn = {
            let slot = &mut self.slots[key.slot];
            if slot.in_pool {
                return;
            }
            match slot.conn.take() {
                Some(conn) => conn,
                None => return,
            }
        };
        let handoff = Handoff::new(handoff_conn, self.handle.clone());
        let submitted = match self.pool.lock().as_ref() {
            Some(pool) => pool.submit(handoff).map_err(|back| (back, true)),
            None => Err((handoff, false)),
        };
        match submitted {
            Ok(()) => self.slots[key.slot].in_pool = true,
            Err((handoff, pool_running)) => {
                self.slots[key.slot].conn = Some(handoff.into_connection());
                if pool_running {
                    // Full: try again on the next turn of the loop.
                    self.waiting_for_thread.push_back(key);
                    self.waiting_total.fetch_add(1, SeqCst);
                } else {
                    // The server is going away: nobody can run the message.
                    self.close(key, Closing::Error);
                }
            }
        }
    }

    /// A connection back from the pool.
    fn returned(&mut self, conn: Box<Connection<H>>) {
        let key = conn.key;
        let slot = &mut self.slots[key.slot];
        slot.in_pool = false;
        slot.conn = Some(conn);
        let Some(conn) = conn_in(&mut self.slots, key) else {
            return;
        };
        if let Some(why) = conn.close_when_flushed.take() {
            let between = conn.input.is_empty() && !in_request(&self.lifecycle.handler, conn);
            if conn.session.is_none() || why != Closing::Shutdown || between {
                self.close(key, why);
                return;
            }
            conn.close_when_flushed = Some(why);
        }
        if conn.session.is_none() {
            self.finish(key);
            return;
        }
        let idle = conn.is_idle();
        if self.shutdown_deadline.is_some() && idle {
            self.close(key, Closing::Shutdown);
            return;
        }
        self.writable(key);
        self.resume(key);
    }

    /// Handles what a connection kept (received while it was away, or
    /// while its blocking message waited for a thread), then reads on:
    /// bytes that arrived meanwhile brought no edge.
    fn resume(&mut self, key: Key) {
        if self.conn(key).is_some_and(|conn| !conn.input.is_empty()) && !self.handle_input(key, 0) {
            return;
        }
        self.readable(key);
        self.reschedule(key);
    }

    /// Reads and discards during a polite close; finishes when the client
    /// has ended its input (or sent too much) and the replies are out.
    fn discard(&mut self, key: Key) {
        loop {
            let Some(conn) = conn_in(&mut self.slots, key) else {
                return;
            };
            let linger = conn.linger;
            match conn.read_some(&mut self.read_buf) {
                Ok(Some(0)) => {
                    conn.eof = true;
                    break;
                }
                Err(_) => return self.finish(key),
                Ok(Some(n)) => {
                    if let Phase::Lingering { discarded, .. } = &mut conn.phase {
                        *discarded += n;
                        if *discarded >= linger {
                            return self.finish(key);
                        }
                    }
                }
                Ok(None) => break,
            }
        }
        if let Some(conn) = self.conn(key) {
            if conn.eof && conn.out.is_empty() {
                self.finish(key);
            }
        }
    }

    /// Ends a conversation: the handler's `close`, then politely (the last
    /// replies, the write side shut, the client's input drained) when the
    /// handler chose to end, at once otherwise.
    fn close(&mut self, key: Key, why: Closing) {
        let lifecycle = Arc::clone(&self.lifecycle);
        let server = lifecycle.server();
        let notify = self.notify.clone();
        let Some(conn) = conn_in(&mut self.slots, key) else {
            return;
        };
        if let Some(outlet) = &conn.outlet {
            outlet.closed.store(true, SeqCst);
        }
        if let Some(session) = conn.session.take() {
            let mut io = LoopIo {
                conn,
                out: &mut self.write_buf,
                server,
                notify: &notify,
            };
            let peer = io.conn.peer.clone();
            let closed = catch_unwind(AssertUnwindSafe(|| {
                lifecycle
                    .handler
                    .close(session, why, &mut Conn::new(&mut io))
            }));
            if let Err(panic) = closed {
                log::error!("{peer}: handler panicked: {}", panic_message(&*panic));
            }
        }
        if why == Closing::Error {
            self.write_buf.clear();
            return self.finish(key);
        }
        self.flush_replies(key);
        let Some(conn) = self.conn(key) else {
            return;
        };
        // TLS tells the client that nothing was cut off.
        conn.close_notify();
        match why {
            Closing::Handler | Closing::Eof => {
                conn.phase = Phase::Lingering {
                    until: Instant::now() + LINGER,
                    discarded: 0,
                    write_shut: false,
                };
                self.writable(key);
                if self.conn(key).is_some() {
                    self.discard(key);
                    self.reschedule(key);
                }
            }
            _ => {
                // A last word goes if the socket takes it now.
                let _ = conn.write_out();
                self.finish(key);
            }
        }
    }

    /// Closes the socket and frees the slot.
    fn finish(&mut self, key: Key) {
        let slot = &mut self.slots[key.slot];
        if slot.generation != key.generation {
            return;
        }
        let Some(conn) = slot.conn.take() else {
            return;
        };
        if let Some(outlet) = &conn.outlet {
            outlet.closed.store(true, SeqCst);
        }
        // Closing the socket (never duplicated) removes it from the epoll
        // set: no deregistration call needed.
        drop(conn);
        self.free.push(key.slot);
        self.open -= 1;
        self.lifecycle.control().request_done();
    }

    /// A connection failed: reported, closed at once.
    fn failed(&mut self, key: Key, error: io::Error) {
        if let Some(conn) = self.conn(key) {
            let peer = conn.peer.clone();
            self.lifecycle.handler.handle_error(&peer, &error);
        }
        self.close(key, Closing::Error);
    }

    /// Cut at the shutdown deadline.
    fn cut(&mut self, key: Key) {
        Counters::bump(&self.lifecycle.control().counters.cut);
        self.write_buf.clear();
        if let Some(conn) = self.conn(key) {
            conn.session = None;
        }
        self.finish(key);
    }

    fn begin_shutdown(&mut self) {
        // New connections are refused from here on.
        if let Some(listener) = self.listener.take() {
            if self.accepting.listening {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&listener.socket.as_raw_fd()));
            }
        }
        self.accepting = Accepting::default();
        let timeout = self.lifecycle.control().options.shutdown_timeout;
        self.shutdown_deadline = Some(crate::deadline::after(timeout));
        // What the shutdown waits for here: the connections with a message
        // on the pool, and those with a message or a reply in progress.
        let mut waiting = self.slots.iter().filter(|slot| slot.in_pool).count();
        for slot in 0..self.slots.len() {
            let Some(key) = self.key_of(slot) else {
                continue;
            };
            let Some(conn) = conn_in(&mut self.slots, key) else {
                continue;
            };
            match conn.phase {
                Phase::Proxy { .. } | Phase::Handshake { .. } => {
                    // Not yet a client of the handler: nothing to finish.
                    self.finish(key);
                    continue;
                }
                Phase::Lingering { .. } => continue,
                Phase::Open => {}
            }
            if conn.is_idle() && !in_request(&self.lifecycle.handler, conn) {
                self.close(key, Closing::Shutdown);
            } else {
                conn.close_when_flushed = Some(Closing::Shutdown);
                waiting += 1;
            }
        }
        self.lifecycle.control().census.report(waiting);
        if let Some(deadline) = self.shutdown_deadline {
            self.deadlines.push(
                deadline,
                Key {
                    slot: usize::MAX,
                    generation: 0,
                },
            );
        }
    }

    /// Puts the connection's next deadline in the heap if it moved earlier.
    fn reschedule(&mut self, key: Key) {
        let Some(conn) = self.conn(key) else {
            return;
        };
        let Some(at) = conn.deadline() else {
            return;
        };
        if conn.scheduled.is_none_or(|scheduled| at < scheduled) {
            conn.scheduled = Some(at);
            self.deadlines.push(at, key);
        }
    }

    /// Handles the deadlines that have come.
    fn expire(&mut self) {
        let now = Instant::now();
        while let Some((at, key)) = self.deadlines.pop_due(now) {
            if key.slot == usize::MAX {
                // The shutdown deadline: cut what is left in the loop.
                for slot in 0..self.slots.len() {
                    if let Some(key) = self.key_of(slot) {
                        self.cut(key);
                    }
                }
                continue;
            }
            let Some(conn) = self.conn(key) else {
                continue;
            };
            if conn.scheduled != Some(at) {
                continue; // stale
            }
            conn.scheduled = None;
            match conn.phase {
                Phase::Lingering { until, .. } => {
                    if until <= now {
                        self.finish(key);
                    } else {
                        self.reschedule(key);
                    }
                    continue;
                }
                Phase::Proxy { until } | Phase::Handshake { until: Some(until) } => {
                    if until <= now {
                        log::debug!(
                            "{}: its PROXY header or TLS handshake took too long",
                            conn.peer
                        );
                        self.refuse(key);
                    } else {
                        self.reschedule(key);
                    }
                    continue;
                }
                Phase::Handshake { until: None } | Phase::Open => {}
            }
            if conn.paused_until.is_some_and(|until| until <= now) {
                conn.paused_until = None;
                // What was read before the pause comes first: reading on
                // while it holds whole messages would pile input up faster
                // than a paced sender is handled (a flooder's bytes grew
                // the kept input by a read buffer per pause).
                if self.handle_input(key, 0) {
                    self.readable(key);
                }
                self.reschedule(key);
                continue;
            }
            let Some(due) = conn.deadline() else {
                continue;
            };
            if due > now {
                self.reschedule(key);
                continue;
            }
            if conn.paused_until.is_none() {
                log::debug!("{}: nothing received in time; closing", conn.peer);
                self.close(key, Closing::Timeout);
            }
        }
    }
}

/// The connection at `key`, if it is still there and in the loop.
/// Runs one message call of the handler (`on_message`, `on_bad_message`) on
/// `conn`'s session, through [`Lifecycle::run_message`], with a [`Conn`] that
/// writes into the loop's write buffer `out`. `None` when the call failed or
/// panicked: the connection must close. The caller has checked that the
/// session is there.
fn run_session_call<H: MessageHandler, T>(
    lifecycle: &Lifecycle<H>,
    conn: &mut Connection<H>,
    out: &mut Vec<u8>,
    notify: &Notify,
    call: impl FnOnce(&mut H::Session, &mut Conn<'_>) -> io::Result<T>,
) -> Option<T> {
    let mut session = conn.session.take().expect("checked by the caller");
    let peer = conn.peer.clone();
    let mut io = LoopIo {
        conn: &mut *conn,
        out,
        server: lifecycle.server(),
        notify,
    };
    let result = lifecycle.run_message(&peer, || call(&mut session, &mut Conn::new(&mut io)));
    conn.session = Some(session);
    result
}

fn conn_in<H: MessageHandler>(slots: &mut [Slot<H>], key: Key) -> Option<&mut Connection<H>> {
    let slot = slots.get_mut(key.slot)?;
    if slot.generation != key.generation {
        return None;
    }
    slot.conn.as_deref_mut()
}

/// True while the connection's session is inside a request that spans
/// several messages (its handler says so).
fn in_request<H: MessageHandler>(handler: &H, conn: &Connection<H>) -> bool {
    conn.session
        .as_ref()
        .is_some_and(|session| handler.in_request(session))
}

/// How handling a connection's input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Look for another message.
    More,
    /// The next message is incomplete.
    NeedMore,
    /// The handler asked for a pause in reading.
    Paused,
    /// The next message may block: to the pool.
    ToPool,
    /// End the conversation.
    Close(Closing),
    /// Already closed.
    Closed,
}
