//! TCP load: ping-pong, connect rate and hold, many connections per thread
//! on one edge-triggered `epoll` (`mio`), over TLS when the run asks.

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::payload::Payload;
use super::wire::Wire;
use super::{
    connect, could_not_start, poll_ready, Config, ErrorKind, Mode, Phases, Tally, Window,
    CONNECT_BURST,
};

/// The longest a thread waits in `epoll` before it checks its timers.
const TICK: Duration = Duration::from_millis(20);
/// How long a connection waits before connecting again after a connect (or
/// a TLS handshake) failed.
const BACKOFF: Duration = Duration::from_millis(50);
/// Scratch space for reading answers (they are compared, not kept).
const SCRATCH: usize = 64 * 1024;
/// The longest the opening of the connections may take, however slowly they
/// keep opening.
const OPENING_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not opened yet.
    New,
    /// No socket; connects again at `deadline`.
    Down,
    /// A connect is in progress.
    Connecting,
    /// The TLS handshake is in progress.
    Handshaking,
    /// Open, nothing in flight.
    Idle,
    /// Sending request `seq`.
    Writing,
    /// Reading the answer to request `seq`.
    Reading,
    /// Connect rate: the answer is in; waiting for the server to close.
    Closing,
    /// Out of the run (hold: verified, or failed).
    Done,
}

/// One connection and the request in flight on it.
struct Conn {
    stream: Option<Wire>,
    state: State,
    /// Connect rate: the sending direction is closed.
    half_closed: bool,
    seq: usize,
    written: usize,
    read: usize,
    /// A byte of the current answer differed from the expected one.
    wrong: bool,
    /// When the request started (connect rate: when the connect started).
    started: Instant,
    /// When the current step times out, or when a `Down` connection reopens.
    deadline: Instant,
}

/// What driving a connection produced.
enum Step {
    /// Waiting for the socket.
    Pending,
    /// The connect completed.
    Connected,
    /// The whole answer is in (right or wrong).
    Answered { right: bool, at: Instant },
    /// Connect rate: the server closed after its answer.
    Closed { at: Instant },
    /// The connection failed.
    Failed(ErrorKind),
}

/// Where a thread is in its run.
#[derive(Clone, Copy)]
enum Phase {
    /// Opening every connection (ping-pong and hold).
    Opening,
    /// Counting requests.
    Running(Window),
    /// Hold: connections idle.
    Holding,
    /// Hold: one request on each.
    Verifying(Window),
}

/// One client thread's connections.
struct Client<'a> {
    config: &'a Config,
    mode: Mode,
    payload: &'a Payload,
    poll: Poll,
    scratch: Box<[u8]>,
    conns: Vec<Conn>,
    /// The next `New` connection to open.
    next_new: usize,
    phase: Phase,
    tally: Tally,
}

/// Runs one thread's share of a TCP run.
pub(super) fn run(
    config: &Config,
    mode: Mode,
    share: usize,
    payload: &Payload,
    phases: &Phases,
) -> Tally {
    let mut client = match Client::new(config, mode, share, payload) {
        Ok(client) => client,
        Err(_) => return could_not_start(share, phases),
    };
    let mut events = Events::with_capacity(1024);
    match mode {
        Mode::PingPong => {
            client.open_all(&mut events);
            let window = phases.connected();
            client.phase = Phase::Running(window);
            let now = Instant::now();
            for i in 0..share {
                if client.conns[i].state == State::Idle {
                    client.start_request(i, now);
                    client.react(i);
                }
            }
            client.run_until(&mut events, window.end);
        }
        Mode::ConnectRate => {
            let window = phases.connected();
            client.phase = Phase::Running(window);
            for i in 0..share {
                client.open(i);
                client.react(i);
            }
            client.run_until(&mut events, window.end);
        }
        Mode::Hold => {
            client.open_all(&mut events);
            let window = phases.connected();
            client.phase = Phase::Holding;
            client.run_until(&mut events, window.end);
            client.verify(&mut events);
        }
        // Chat runs in its own module.
        Mode::FanOut => {
            phases.connected();
        }
    }
    phases.finished();
    phases.released();
    client.tally
}

impl<'a> Client<'a> {
    fn new(config: &'a Config, mode: Mode, share: usize, payload: &'a Payload) -> io::Result<Self> {
        let now = Instant::now();
        let conns = (0..share)
            .map(|i| Conn {
                stream: None,
                state: State::New,
                half_closed: false,
                // Spread the requests over the pattern from the start.
                seq: i,
                written: 0,
                read: 0,
                wrong: false,
                started: now,
                deadline: now,
            })
            .collect();
        Ok(Client {
            config,
            mode,
            payload,
            poll: Poll::new()?,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            conns,
            next_new: 0,
            phase: Phase::Opening,
            tally: Tally::new(),
        })
    }

    /// Opens every connection, at most [`CONNECT_BURST`] connects at a time,
    /// retrying failed ones. A connection is open when it has answered one
    /// request: a server whose accept queue overflowed may have let the
    /// client's handshake complete long before it takes the connection, and
    /// that wait belongs to no measurement. Gives up when none has opened for
    /// the timeout, or after [`OPENING_LIMIT`]; those still not open then are
    /// counted as errors.
    fn open_all(&mut self, events: &mut Events) {
        self.phase = Phase::Opening;
        let started = Instant::now();
        let mut last_progress = started;
        let mut opened = 0;
        loop {
            self.top_up();
            if self.tally.connected == self.conns.len() {
                return;
            }
            let now = Instant::now();
            if self.tally.connected > opened {
                opened = self.tally.connected;
                last_progress = now;
            } else if now.duration_since(last_progress) >= self.config.timeout {
                break;
            }
            if now.duration_since(started) >= OPENING_LIMIT {
                break;
            }
            self.wait(events, TICK);
            self.check_timers();
        }
        let hold = self.mode == Mode::Hold;
        for i in 0..self.conns.len() {
            let state = self.conns[i].state;
            match state {
                State::Idle | State::Down => {}
                State::Writing | State::Reading => self.tally.error(ErrorKind::Timeout),
                _ => self.tally.error(ErrorKind::Connect),
            }
            if state == State::Idle {
                continue;
            }
            self.conns[i].stream = None;
            self.set_state(i, if hold { State::Done } else { State::Down });
        }
    }

    /// Opens `New` connections while fewer than [`CONNECT_BURST`] are on
    /// their way to open (connecting, or waiting for their first answer), so
    /// that the server's accept queue does not overflow.
    fn top_up(&mut self) {
        if self.next_new == self.conns.len() {
            return;
        }
        let mut opening = self
            .conns
            .iter()
            .filter(|conn| {
                matches!(
                    conn.state,
                    State::Connecting | State::Handshaking | State::Writing | State::Reading
                )
            })
            .count();
        while self.next_new < self.conns.len() && opening < CONNECT_BURST {
            let i = self.next_new;
            self.next_new += 1;
            self.open(i);
            self.react(i);
            opening += 1;
        }
    }

    /// Serves events and timers until `end`.
    fn run_until(&mut self, events: &mut Events, end: Instant) {
        loop {
            let now = Instant::now();
            if now >= end {
                return;
            }
            self.wait(events, (end - now).min(TICK));
            self.check_timers();
        }
    }

    /// Hold: sends one request on every open connection and waits for the
    /// answers, at most the timeout.
    fn verify(&mut self, events: &mut Events) {
        let now = Instant::now();
        self.phase = Phase::Verifying(Window {
            start: now,
            end: now + self.config.timeout + Duration::from_secs(1),
        });
        self.tally.held = self
            .conns
            .iter()
            .filter(|conn| conn.state == State::Idle)
            .count();
        for i in 0..self.conns.len() {
            if self.conns[i].state == State::Idle {
                self.start_request(i, now);
                self.react(i);
            }
        }
        while self
            .conns
            .iter()
            .any(|conn| matches!(conn.state, State::Writing | State::Reading))
        {
            self.wait(events, TICK);
            self.check_timers();
        }
    }

    /// Waits for readiness at most `timeout` and drives what is ready.
    fn wait(&mut self, events: &mut Events, timeout: Duration) {
        if !poll_ready(&mut self.poll, events, timeout, &mut self.tally) {
            return;
        }
        for event in events.iter() {
            self.react(event.token().0);
        }
    }

    /// Times out connects and requests; reopens `Down` connections whose
    /// back-off is over (except in hold mode after the opening).
    fn check_timers(&mut self) {
        let now = Instant::now();
        let reopen = matches!(self.phase, Phase::Opening | Phase::Running(_));
        for i in 0..self.conns.len() {
            let conn = &self.conns[i];
            if conn.deadline > now {
                continue;
            }
            match conn.state {
                State::Connecting => self.fail(i, ErrorKind::Connect),
                State::Handshaking => self.fail(i, ErrorKind::Handshake),
                State::Writing | State::Reading | State::Closing => {
                    self.fail(i, ErrorKind::Timeout)
                }
                State::Down if reopen => {
                    self.open(i);
                    self.react(i);
                }
                _ => {}
            }
        }
    }

    /// Starts a connect on connection `i`.
    fn open(&mut self, i: usize) {
        let now = Instant::now();
        let token = Token(i);
        let opened = connect(self.config.target, self.config.source(i)).and_then(|stream| {
            let mut wire = Wire::new(stream, self.config.tls.as_ref())?;
            self.poll.registry().register(
                wire.stream(),
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(wire)
        });
        match opened {
            Ok(stream) => {
                let conn = &mut self.conns[i];
                conn.stream = Some(stream);
                conn.half_closed = false;
                conn.started = now;
                conn.deadline = now + self.config.timeout;
                self.set_state(i, State::Connecting);
            }
            Err(_) => {
                self.conns[i].stream = None;
                self.set_state(i, State::Down);
                self.fail(i, ErrorKind::Connect);
            }
        }
    }

    /// Counts a failure of connection `i` and closes it; it reopens later
    /// unless the run is holding or verifying. A held connection that timed
    /// out stays open until the end, so that the server is sampled with every
    /// connection it holds.
    fn fail(&mut self, i: usize, kind: ErrorKind) {
        self.tally.error(kind);
        let now = Instant::now();
        let holding = matches!(self.phase, Phase::Holding | Phase::Verifying(_));
        let conn = &mut self.conns[i];
        if !(holding && kind == ErrorKind::Timeout) {
            conn.stream = None;
        }
        conn.deadline = match kind {
            ErrorKind::Connect | ErrorKind::Handshake => now + BACKOFF,
            _ => now,
        };
        let next = match self.phase {
            Phase::Opening | Phase::Running(_) => State::Down,
            Phase::Holding | Phase::Verifying(_) => State::Done,
        };
        self.set_state(i, next);
    }

    fn set_state(&mut self, i: usize, state: State) {
        self.conns[i].state = state;
    }

    /// Starts the next request on connection `i` at `now`.
    fn start_request(&mut self, i: usize, now: Instant) {
        let keep_connect_time = self.mode == Mode::ConnectRate;
        let conn = &mut self.conns[i];
        conn.seq = conn.seq.wrapping_add(1);
        conn.written = 0;
        conn.read = 0;
        conn.wrong = false;
        if !keep_connect_time {
            conn.started = now;
        }
        conn.deadline = now + self.config.timeout;
        conn.state = State::Writing;
    }

    /// Drives connection `i` as far as its socket allows, and moves the run
    /// on: the next request, the next connection, or the verdict.
    fn react(&mut self, i: usize) {
        loop {
            match self.drive(i) {
                Step::Pending => return,
                Step::Failed(kind) => {
                    self.fail(i, kind);
                    return;
                }
                Step::Connected => {
                    if self.tally.tls.is_none() {
                        self.tally.tls = self.conns[i].stream.as_ref().and_then(Wire::protocol);
                    }
                    self.set_state(i, State::Idle);
                    match self.phase {
                        Phase::Running(_) | Phase::Opening => self.start_request(i, Instant::now()),
                        Phase::Holding | Phase::Verifying(_) => return,
                    }
                }
                Step::Answered { right, at } => {
                    if !right {
                        self.tally.error(ErrorKind::Mismatch);
                    }
                    match (self.mode, self.phase) {
                        (_, Phase::Opening) => {
                            self.tally.connected += 1;
                            return;
                        }
                        (Mode::PingPong, Phase::Running(window)) => {
                            if right {
                                self.tally.answered(&window, self.conns[i].started, at);
                            }
                            self.start_request(i, at);
                        }
                        (Mode::ConnectRate, _) => {
                            let conn = &mut self.conns[i];
                            conn.state = State::Closing;
                        }
                        (Mode::Hold, Phase::Verifying(window)) => {
                            if right {
                                self.tally.answered += 1;
                                self.tally.answered(&window, self.conns[i].started, at);
                            }
                            // Kept open until the server has been sampled.
                            self.conns[i].state = State::Done;
                            return;
                        }
                        _ => return,
                    }
                }
                Step::Closed { at } => {
                    if let Phase::Running(window) = self.phase {
                        if !self.conns[i].wrong {
                            self.tally.answered(&window, self.conns[i].started, at);
                        }
                    }
                    self.conns[i].stream = None;
                    self.conns[i].state = State::Down;
                    self.open(i);
                }
            }
        }
    }

    /// Reads and writes on connection `i` until the socket would block or
    /// something happens that the run must react to.
    fn drive(&mut self, i: usize) -> Step {
        let size = self.payload.size();
        let half_close = self.mode == Mode::ConnectRate;
        let conn = &mut self.conns[i];
        let Some(stream) = conn.stream.as_mut() else {
            return Step::Pending;
        };
        loop {
            match conn.state {
                State::Connecting => {
                    if !matches!(stream.stream().take_error(), Ok(None)) {
                        return Step::Failed(ErrorKind::Connect);
                    }
                    match stream.stream().peer_addr() {
                        Ok(_) => conn.state = State::Handshaking,
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => return Step::Pending,
                        Err(_) => return Step::Failed(ErrorKind::Connect),
                    }
                }
                // (At once without TLS.)
                State::Handshaking => {
                    return match stream.handshake() {
                        Ok(true) => Step::Connected,
                        Ok(false) => Step::Pending,
                        Err(_) => Step::Failed(ErrorKind::Handshake),
                    };
                }
                // Sending and receiving at once: a server echoes while the
                // request is still arriving, and a client that only wrote
                // until it had sent a large request would deadlock with it
                // once both sides' socket buffers were full.
                State::Writing | State::Reading => {
                    let mut write_blocked = true;
                    if conn.written < size {
                        let request = &self.payload.request(conn.seq)[conn.written..];
                        match stream.write(request) {
                            Ok(0) => return Step::Failed(ErrorKind::Closed),
                            Ok(n) => {
                                write_blocked = false;
                                conn.written += n;
                                if conn.written == size {
                                    conn.state = State::Reading;
                                }
                            }
                            Err(e) => match e.kind() {
                                io::ErrorKind::WouldBlock => {}
                                io::ErrorKind::Interrupted => write_blocked = false,
                                _ => return Step::Failed(ErrorKind::of(&e)),
                            },
                        }
                    }
                    // Connect rate: the request is out, close the sending
                    // direction (over TLS, once the records have gone).
                    if half_close && conn.written == size && !conn.half_closed {
                        match stream.shutdown_write() {
                            Ok(done) => conn.half_closed = done,
                            Err(e) => return Step::Failed(ErrorKind::of(&e)),
                        }
                    }
                    let want = (size - conn.read).min(self.scratch.len());
                    match stream.read(&mut self.scratch[..want]) {
                        Ok(0) => return Step::Failed(ErrorKind::Closed),
                        Ok(n) => {
                            let expected =
                                &self.payload.expected(conn.seq)[conn.read..conn.read + n];
                            if self.scratch[..n] != *expected {
                                conn.wrong = true;
                            }
                            conn.read += n;
                            if conn.read > conn.written {
                                // More answer than request: not an echo.
                                return Step::Failed(ErrorKind::Mismatch);
                            }
                            if conn.read == size {
                                conn.state = State::Idle;
                                return Step::Answered {
                                    right: !conn.wrong,
                                    at: Instant::now(),
                                };
                            }
                        }
                        Err(e) => match e.kind() {
                            io::ErrorKind::WouldBlock if write_blocked => return Step::Pending,
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {}
                            _ => return Step::Failed(ErrorKind::of(&e)),
                        },
                    }
                }
                // Nothing is expected from the server: its close, or bytes
                // it should not have sent.
                State::Idle | State::Closing => {
                    // Connect rate over TLS: the half close may have waited
                    // for the request's records to go.
                    if conn.state == State::Closing && !conn.half_closed {
                        match stream.shutdown_write() {
                            Ok(done) => conn.half_closed = done,
                            Err(e) => return Step::Failed(ErrorKind::of(&e)),
                        }
                    }
                    match stream.read(&mut self.scratch[..1]) {
                        Ok(0) if conn.state == State::Closing => {
                            return Step::Closed { at: Instant::now() }
                        }
                        Ok(0) => return Step::Failed(ErrorKind::Closed),
                        Ok(_) => return Step::Failed(ErrorKind::Mismatch),
                        Err(e) => match e.kind() {
                            io::ErrorKind::WouldBlock => return Step::Pending,
                            io::ErrorKind::Interrupted => {}
                            _ => return Step::Failed(ErrorKind::of(&e)),
                        },
                    }
                }
                State::New | State::Down | State::Done => return Step::Pending,
            }
        }
    }
}
