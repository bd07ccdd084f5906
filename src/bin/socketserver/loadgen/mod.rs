//! A load generator for echo-upper and chat servers: the engine of
//! `socketserver bench`, in the spirit of `redis-benchmark`.
//!
//! It opens many connections (or UDP sockets) from a few threads, each driving
//! its share through one `epoll` instance (`mio`), so that one client thread
//! keeps thousands of connections busy and the client is not what limits the
//! measurement. Every reply is checked: an echo-upper request is a run of
//! lowercase letters, digits and punctuation, and the only right answer is the
//! same bytes with the letters uppercased (Python's `bytes.upper()`), in full;
//! any other byte is counted as an error.
//!
//! # Modes
//!
//! - [`Mode::PingPong`]: every connection sends a request of
//!   [`size`](Config::size) bytes, waits for the whole answer, checks it, and
//!   sends the next. Over TCP the connections are opened first, each counting
//!   as open once it has answered one request (not timed; the opening gives
//!   up after a minute, or when none has opened for the timeout);
//!   over UDP each socket is connected to the server and sends one datagram at
//!   a time. The run lasts [`warmup`](Config::warmup) (not counted) plus
//!   [`duration`](Config::duration) (counted).
//! - [`Mode::ConnectRate`]: [`connections`](Config::connections) clients at
//!   once each connect, send one request, half-close, read the answer and the
//!   server's close, and start again. The latency of one request is the whole
//!   cycle, connect to close.
//! - [`Mode::Hold`]: opens every connection (as above), holds them idle for
//!   [`duration`](Config::duration), then sends one request on each and
//!   checks that every one answers. With [`watch_pids`](Config::watch_pids)
//!   the server's memory and thread count are read from `/proc` while all the
//!   connections are still open. [`processes`] spreads a hold over several
//!   processes of the program (each with its own open-file limit), and
//!   [`sources`](Config::sources) over several loopback source addresses
//!   (each with its own ephemeral ports).
//! - [`Mode::FanOut`], the chat room's: every connection joins the room and
//!   reads, until every join has been announced to every member; then one
//!   member says one line, and every other member must receive exactly
//!   `NAME: LINE`. The latency of a member is from the send to its copy's
//!   last byte; the report has the time to the last member.
//!
//! # TLS
//!
//! With [`tls`](Config::tls), every TCP connection (ping-pong, connect rate,
//! hold) runs a TLS handshake after its connect, driven without blocking
//! like the rest; a connection counts as open once its handshake is done
//! and it has answered one request. The client resumes no session, so in
//! connect-rate mode every cycle is a full handshake: the rate is
//! handshakes per second, and a cycle ends only with the server's
//! `close_notify` (an end without one is an error). A handshake that fails
//! (a certificate that does not verify, say) is counted as a `handshake`
//! error.
//!
//! # What is counted
//!
//! A request counts when its answer completes inside the measured window;
//! latency is from the first byte sent (the connect, in connect-rate mode) to
//! the last byte received, in a [`hdrhistogram`] with three significant
//! digits. Errors are counted by kind ([`ErrorCounts`]): a wrong answer, no
//! answer within [`timeout`](Config::timeout), a connection the server closed
//! or reset, a failed connect, any other I/O error. A broken connection is
//! opened again, so one failure costs one request, not the run. A UDP
//! datagram that gets no answer in time is counted as lost, not as an error,
//! and the socket moves on.
//!
//! With [`watch_pids`](Config::watch_pids), the server's CPU time
//! (`utime + stime`, all its threads) is read at the start and the end of
//! the measured window: the counted window (ping-pong, connect rate), the
//! hold and the check that follows it (hold), or the send to the last
//! member's copy (fan-out). Divided by the requests answered in it, it is
//! the server's CPU per request.
//!
//! # Example
//!
//! ```text
//! let config = Config {
//!     mode: Mode::Hold,
//!     connections: 1000,
//!     duration: Duration::from_secs(5),
//!     watch_pids: vec![server_pid],
//!     ..Config::new("127.0.0.1:9000".parse()?, Transport::Tcp)
//! };
//! let report = loadgen::run(&config)?;
//! assert_eq!(report.answered, Some(1000));
//! println!("{report}");
//! ```

mod chat;
mod payload;
mod process;
pub mod processes;
mod tcp;
mod udp;
mod wire;

use std::fmt;
use std::io::{self, BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Poll};
use serde::Serialize;

use payload::Payload;
pub use process::ServerSample;
pub use wire::TlsTarget;

/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// The largest message the load generator sends.
pub const MAX_SIZE: usize = 16 << 20;
/// The most connections one run opens.
pub const MAX_CONNECTIONS: usize = 100_000;
/// The longest chat line the load generator sends.
pub const MAX_CHAT_LINE: usize = 64 * 1024;
/// How many connects may be in progress at once while connections open.
const CONNECT_BURST: usize = 512;
/// File descriptors a process needs besides its connections.
const SPARE_FILES: usize = 64;

/// The service whose answers are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Every request must come back uppercased.
    EchoUpper,
    /// A chat room: a member's line must reach every other member.
    Chat,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::EchoUpper => "echo-upper",
            Service::Chat => "chat",
        }
    }
}

/// The transport the load goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP connections.
    Tcp,
    /// UDP sockets, one datagram in flight on each.
    Udp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// What a run measures; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Request, answer, next request, on every connection at once.
    PingPong,
    /// Connect, one request, close, again (TCP only).
    ConnectRate,
    /// Open every connection, hold them idle, then check that each answers
    /// (TCP only).
    Hold,
    /// Chat: every member joins, then one line goes to all (TCP only).
    FanOut,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::PingPong => "ping-pong",
            Mode::ConnectRate => "connect-rate",
            Mode::Hold => "hold",
            Mode::FanOut => "fan-out",
        }
    }
}

/// Everything a run needs. Build it with [`Config::new`] and change the
/// public fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server's address.
    pub target: SocketAddr,
    /// TCP or UDP.
    pub transport: Transport,
    /// The service whose answers are checked.
    pub service: Service,
    /// What to measure.
    pub mode: Mode,
    /// Connections (UDP: sockets; chat: members) at once, 1 to
    /// [`MAX_CONNECTIONS`].
    pub connections: usize,
    /// Client threads, each with its own `epoll`; the connections are shared
    /// out between them. Default 1; a chat run has one.
    pub threads: usize,
    /// Bytes per request, 1 to [`MAX_SIZE`] ([`MAX_DATAGRAM`] over UDP,
    /// [`MAX_CHAT_LINE`] for a chat line).
    pub size: usize,
    /// How long to run before counting.
    pub warmup: Duration,
    /// How long to count (in hold mode: how long to hold the connections).
    pub duration: Duration,
    /// How long to wait for an answer, or for a connect.
    pub timeout: Duration,
    /// Local processes (the server's) whose memory, threads and CPU time to
    /// report, summed.
    pub watch_pids: Vec<u32>,
    /// Local addresses to connect from, taken in turn by the connections
    /// (TCP); empty: the system chooses. Each source address has its own
    /// ephemeral ports, so that more connections than one address's ports
    /// (about 28,000 on Linux) can reach one server port.
    pub sources: Vec<IpAddr>,
    /// Run as one of [`processes`]' children: announce the phases of a hold
    /// on standard output and wait for a line on standard input before
    /// going on (see [`processes`]).
    pub coordinated: bool,
    /// Speak TLS on every TCP connection (echo-upper only).
    pub tls: Option<TlsTarget>,
}

impl Config {
    /// A ping-pong run against `target` over `transport`: 16 connections, one
    /// thread, 64-byte requests, 1 s of warm-up, 10 s counted, a 5 s timeout.
    pub fn new(target: SocketAddr, transport: Transport) -> Self {
        Config {
            target,
            transport,
            service: Service::EchoUpper,
            mode: Mode::PingPong,
            connections: 16,
            threads: 1,
            size: 64,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            watch_pids: Vec::new(),
            sources: Vec::new(),
            coordinated: false,
            tls: None,
        }
    }

    /// Checks the settings; the error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return Err(format!(
                "--connections must be 1 to {MAX_CONNECTIONS}, not {}",
                self.connections
            ));
        }
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        let max_size = match (self.service, self.transport) {
            (Service::Chat, _) => MAX_CHAT_LINE,
            (_, Transport::Tcp) => MAX_SIZE,
            (_, Transport::Udp) => MAX_DATAGRAM,
        };
        if self.size == 0 || self.size > max_size {
            return Err(format!(
                "--size must be 1 to {max_size} bytes for {} over {}, not {}",
                self.service.name(),
                self.transport.name(),
                self.size
            ));
        }
        if self.transport == Transport::Udp && self.mode != Mode::PingPong {
            return Err(format!(
                "--mode {} needs TCP; over UDP only ping-pong runs",
                self.mode.name()
            ));
        }
        match (self.service, self.mode) {
            (Service::Chat, Mode::FanOut) => {
                if self.connections < 2 {
                    return Err("a chat run needs at least 2 members (--connections)".into());
                }
                if self.threads != 1 {
                    return Err("a chat run drives every member from one thread: \
                                --threads must be 1"
                        .into());
                }
            }
            (Service::Chat, mode) => {
                return Err(format!(
                    "the chat bench measures one line's fan-out; --mode {} is for echo-upper",
                    mode.name()
                ))
            }
            (Service::EchoUpper, Mode::FanOut) => {
                return Err("fan-out is the chat bench's measure, not echo-upper's".into())
            }
            _ => {}
        }
        if self.tls.is_some() && (self.transport == Transport::Udp || self.service == Service::Chat)
        {
            return Err(
                "--tls is for echo-upper over TCP: datagrams stay plaintext, and the \
                        chat bench speaks plain TCP"
                    .into(),
            );
        }
        if self.transport == Transport::Udp && !self.sources.is_empty() {
            return Err("--sources is for TCP".into());
        }
        if let Some(source) = self
            .sources
            .iter()
            .find(|source| source.is_ipv4() != self.target.is_ipv4())
        {
            return Err(format!(
                "--sources {source} is not of the server's address family ({})",
                self.target.ip()
            ));
        }
        if self.coordinated && self.mode != Mode::Hold {
            return Err("only a hold runs in several processes".into());
        }
        if !matches!(self.mode, Mode::Hold | Mode::FanOut) && self.duration.is_zero() {
            return Err("--duration must be more than 0".into());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be more than 0".into());
        }
        Ok(())
    }

    /// The source address of connection `index`, if any were given.
    fn source(&self, index: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[index % self.sources.len()])
    }
}
/// Errors by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Answers that differ from the uppercased request.
    pub mismatch: u64,
    /// Requests with no complete answer within the timeout.
    pub timeout: u64,
    /// Connections the server closed or reset in the middle of a request.
    pub closed: u64,
    /// Connects that failed or timed out.
    pub connect: u64,
    /// TLS handshakes that failed (a certificate that does not verify, a
    /// server that does not speak TLS) or did not finish within the timeout.
    pub handshake: u64,
    /// Any other I/O error.
    pub io: u64,
}

impl ErrorCounts {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.mismatch + self.timeout + self.closed + self.connect + self.handshake + self.io
    }

    fn add(&mut self, other: &ErrorCounts) {
        self.mismatch += other.mismatch;
        self.timeout += other.timeout;
        self.closed += other.closed;
        self.connect += other.connect;
        self.handshake += other.handshake;
        self.io += other.io;
    }

    fn bump(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::Mismatch => self.mismatch += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::Closed => self.closed += 1,
            ErrorKind::Connect => self.connect += 1,
            ErrorKind::Handshake => self.handshake += 1,
            ErrorKind::Io => self.io += 1,
        }
    }
}

/// One failure, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    Mismatch,
    Timeout,
    Closed,
    Connect,
    Handshake,
    Io,
}

impl ErrorKind {
    /// The kind of an I/O error on an established connection.
    fn of(error: &io::Error) -> ErrorKind {
        match error.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
            io::ErrorKind::ConnectionRefused => ErrorKind::Connect,
            _ => ErrorKind::Io,
        }
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The 99.9th percentile.
    pub p999: f64,
    /// The slowest request.
    pub max: f64,
    /// The mean.
    pub mean: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            p999: us(histogram.value_at_quantile(0.999)),
            max: us(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }
}

/// What a run measured; `Display` writes the human summary, and
/// [`Report::to_json`] the one-line JSON form.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The service whose answers were checked (`echo-upper`, `chat`).
    pub service: &'static str,
    /// The server, as a URL.
    pub url: String,
    /// `tcp` or `udp`.
    pub transport: &'static str,
    /// The TLS protocol version the first handshake agreed (`TLSv1.3`);
    /// `None` without TLS.
    pub tls: Option<&'static str>,
    /// `ping-pong`, `connect-rate`, `hold` or `fan-out`.
    pub mode: &'static str,
    /// Connections (or sockets, or chat members) asked for.
    pub connections: usize,
    /// Connections open (each answered once; chat: in the room) when the
    /// run started: TCP ping-pong, hold and fan-out.
    pub connected: usize,
    /// Client threads, all processes together.
    pub threads: usize,
    /// Client processes (see [`processes`]).
    pub processes: usize,
    /// The local addresses connected from, in turn; empty: the system's
    /// choice.
    pub sources: Vec<IpAddr>,
    /// Bytes per request (chat: of the line).
    pub size: usize,
    /// Seconds of warm-up, not counted.
    pub warmup_s: f64,
    /// Seconds counted (hold: seconds the connections were held).
    pub duration_s: f64,
    /// Seconds it took to open the connections before the run (chat: until
    /// every join had been announced to every member).
    pub connect_s: f64,
    /// Requests answered correctly in the counted window (chat: members
    /// that received the line).
    pub requests: u64,
    /// `requests / duration_s`; `None` in hold and fan-out mode.
    pub requests_per_sec: Option<f64>,
    /// Every error, warm-up included.
    pub errors: u64,
    /// The errors by kind.
    pub error_kinds: ErrorCounts,
    /// UDP datagrams that got no answer within the timeout.
    pub lost: u64,
    /// Latency of the counted requests (chat: from the send to each member's
    /// copy).
    pub latency_us: Latency,
    /// Hold mode: connections that were open when the hold ended.
    pub held: Option<usize>,
    /// Hold mode: held connections that then answered correctly.
    pub answered: Option<usize>,
    /// Fan-out: members that received exactly `NAME: LINE`.
    pub delivered: Option<usize>,
    /// Fan-out: milliseconds from the send until the last member had its
    /// copy (`None` when none arrived).
    pub fanout_ms: Option<f64>,
    /// The watched processes, sampled at the end of the run while every
    /// connection was still open.
    pub server: Option<ServerSample>,
    /// Why the watched processes could not be read at the end of the run
    /// (one had exited, say).
    pub server_error: Option<String>,
    /// Hold mode: the watched processes' resident memory divided by the
    /// connections held, in KiB.
    pub server_kib_per_connection: Option<f64>,
    /// CPU seconds the watched processes used in the measured window (see
    /// the [module documentation](self)).
    pub server_cpu_s: Option<f64>,
    /// `server_cpu_s` per request answered in that window, in microseconds;
    /// `None` in hold mode.
    pub server_cpu_us_per_request: Option<f64>,
    /// The latency histogram as `[nanoseconds, count]` pairs, for the parent
    /// of a run in several processes to merge; only in a coordinated child's
    /// report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_histogram: Option<Vec<[u64; 2]>>,
}

impl Report {
    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report serializes")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |us: f64| us / 1000.0;
        write!(
            f,
            "{} {}{} {} against {}: {} connection(s), {}-byte requests, {} thread(s)",
            self.service,
            self.transport,
            self.tls.map(|v| format!(" over {v}")).unwrap_or_default(),
            self.mode,
            self.url,
            self.connections,
            self.size,
            self.threads
        )?;
        if self.processes > 1 {
            write!(f, " in {} processes", self.processes)?;
        }
        writeln!(f)?;
        if !self.sources.is_empty() {
            let sources: Vec<String> = self.sources.iter().map(IpAddr::to_string).collect();
            writeln!(f, "  sources:   {}", sources.join(", "))?;
        }
        if self.mode == Mode::Hold.name() {
            writeln!(
                f,
                "  held:      {} of {} open after {:.1} s idle ({:.2} s to open)",
                self.held.unwrap_or(0),
                self.connections,
                self.duration_s,
                self.connect_s
            )?;
            writeln!(
                f,
                "  answered:  {} of {}",
                self.answered.unwrap_or(0),
                self.held.unwrap_or(0)
            )?;
        } else if self.mode == Mode::FanOut.name() {
            writeln!(
                f,
                "  members:   {} of {} in the room ({:.2} s until every join was announced)",
                self.connected, self.connections, self.connect_s
            )?;
            writeln!(
                f,
                "  delivered: {} of {}, the last after {}",
                self.delivered.unwrap_or(0),
                self.connections.saturating_sub(1),
                self.fanout_ms
                    .map_or_else(|| "—".to_string(), |ms| format!("{ms:.3} ms"))
            )?;
        } else {
            writeln!(
                f,
                "  requests:  {} in {:.2} s ({:.1} per second), after {:.2} s of warm-up",
                self.requests,
                self.duration_s,
                self.requests_per_sec.unwrap_or(0.0),
                self.warmup_s
            )?;
        }
        let l = &self.latency_us;
        writeln!(
            f,
            "  latency:   p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max)
        )?;
        let e = &self.error_kinds;
        write!(
            f,
            "  errors:    {} (wrong answer {}, timeout {}, closed {}, connect {}, handshake {}, other {})",
            self.errors, e.mismatch, e.timeout, e.closed, e.connect, e.handshake, e.io
        )?;
        if self.transport == Transport::Udp.name() {
            write!(f, "\n  lost:      {} datagram(s)", self.lost)?;
        }
        if let Some(server) = &self.server {
            let pids: Vec<String> = server.pids.iter().map(u32::to_string).collect();
            write!(
                f,
                "\n  server:    pid {}: {:.1} MiB resident (peak {:.1} MiB), {} threads",
                pids.join(", "),
                server.rss_kib as f64 / 1024.0,
                server.peak_rss_kib as f64 / 1024.0,
                server.threads
            )?;
            if let Some(kib) = self.server_kib_per_connection {
                write!(f, ", {kib:.1} KiB per connection held")?;
            }
        }
        if let Some(why) = &self.server_error {
            write!(f, "\n  server:    not read at the end of the run: {why}")?;
        }
        if let Some(cpu) = self.server_cpu_s {
            write!(f, "\n  server CPU: {cpu:.2} s in the measured window")?;
            if let Some(us) = self.server_cpu_us_per_request {
                write!(f, ", {us:.1} µs per request")?;
            }
        }
        Ok(())
    }
}

/// What one client thread counted.
struct Tally {
    requests: u64,
    latency: Histogram<u64>,
    errors: ErrorCounts,
    lost: u64,
    connected: usize,
    held: usize,
    answered: usize,
    /// Fan-out: members that received the line.
    delivered: usize,
    /// Fan-out: the latest copy, from the send.
    slowest: Option<Duration>,
    /// The protocol version of the first TLS handshake.
    tls: Option<&'static str>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            requests: 0,
            // Nanoseconds, 1 ns to an hour, three significant digits.
            latency: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("valid histogram bounds"),
            errors: ErrorCounts::default(),
            lost: 0,
            connected: 0,
            held: 0,
            answered: 0,
            delivered: 0,
            slowest: None,
            tls: None,
        }
    }

    /// Counts an answered request if it completed inside `window`.
    fn answered(&mut self, window: &Window, started: Instant, done: Instant) {
        if window.counts(done) {
            self.requests += 1;
            let ns = done.saturating_duration_since(started).as_nanos();
            self.latency
                .saturating_record(u64::try_from(ns).unwrap_or(u64::MAX).max(1));
        }
    }

    fn error(&mut self, kind: ErrorKind) {
        self.errors.bump(kind);
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds merge");
        self.errors.add(&other.errors);
        self.lost += other.lost;
        self.connected += other.connected;
        self.held += other.held;
        self.answered += other.answered;
        self.delivered += other.delivered;
        self.slowest = self.slowest.max(other.slowest);
        self.tls = self.tls.or(other.tls);
    }

    /// The latency histogram as `[nanoseconds, count]` pairs.
    fn histogram_pairs(&self) -> Vec<[u64; 2]> {
        self.latency
            .iter_recorded()
            .map(|value| [value.value_iterated_to(), value.count_at_value()])
            .collect()
    }
}

/// The counted part of a run: answers completing in `[start, end)` count.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    /// A window that opens after `warmup` from now and lasts `duration`.
    fn after(warmup: Duration, duration: Duration) -> Window {
        let start = Instant::now() + warmup;
        Window {
            start,
            end: start + duration,
        }
    }

    fn counts(&self, at: Instant) -> bool {
        at >= self.start && at < self.end
    }
}

/// The phases every client thread goes through in step with the others and
/// with the thread that reports: the connections are open; the run starts
/// (the reporting thread has set its window); the run is over (the server is
/// sampled now); the connections may close.
struct Phases {
    barrier: Arc<Barrier>,
    window: Arc<OnceLock<Window>>,
}

impl Phases {
    /// Every connection of this thread is open: waits for the others, then
    /// for the start, and returns the window of the run.
    fn connected(&self) -> Window {
        self.barrier.wait();
        self.barrier.wait();
        *self
            .window
            .get()
            .expect("the reporting thread sets the window before the start")
    }
    fn finished(&self) {
        self.barrier.wait();
    }
    fn released(&self) {
        self.barrier.wait();
    }
}

/// What a client thread that could not start reports: every one of its
/// `share` connections failed. It still goes through every phase, so that the
/// other threads are not left waiting.
fn could_not_start(share: usize, phases: &Phases) -> Tally {
    let mut tally = Tally::new();
    for _ in 0..share {
        tally.error(ErrorKind::Io);
    }
    phases.connected();
    phases.finished();
    phases.released();
    tally
}

/// Waits at most `timeout` for readiness on `poll`, into `events`. False
/// when the wait failed, and then nothing is ready; a failure other than an
/// interruption counts as an I/O error in `tally`.
fn poll_ready(poll: &mut Poll, events: &mut Events, timeout: Duration, tally: &mut Tally) -> bool {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => true,
        Err(e) => {
            if e.kind() != io::ErrorKind::Interrupted {
                tally.error(ErrorKind::Io);
            }
            false
        }
    }
}

/// How a coordinated child tells its parent where it is, and waits for it
/// (see [`processes`]).
struct Coordinator {
    enabled: bool,
}

impl Coordinator {
    /// Writes `line` on standard output and waits for a line on standard
    /// input; does nothing when not coordinated. A parent that went away (end
    /// of input) lets the run go on, to its end.
    fn announce_and_wait(&self, line: &str) -> io::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
        drop(stdout);
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        Ok(())
    }
}

/// The watched processes' CPU time, read at the start and the end of the
/// measured window.
struct CpuWindow<'a> {
    pids: &'a [u32],
    start: Option<f64>,
    end: Option<f64>,
}

impl<'a> CpuWindow<'a> {
    fn new(pids: &'a [u32]) -> Self {
        CpuWindow {
            pids,
            start: None,
            end: None,
        }
    }

    fn start(&mut self) {
        if !self.pids.is_empty() {
            self.start = process::total_cpu_seconds(self.pids);
        }
    }

    fn end(&mut self) {
        if !self.pids.is_empty() && self.end.is_none() {
            self.end = process::total_cpu_seconds(self.pids);
        }
    }

    /// CPU seconds in the window, when both ends were read.
    fn seconds(&self) -> Option<f64> {
        Some((self.end? - self.start?).max(0.0))
    }
}

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        thread::sleep(at - now);
    }
}

/// Runs the load that `config` describes and reports what it measured.
///
/// Fails only when the run cannot start (bad settings, too few file
/// descriptors, no threads); what goes wrong with the server during the run
/// is counted in the report, its death included (`server_error`).
pub fn run(config: &Config) -> io::Result<Report> {
    config
        .validate()
        .map_err(|why| io::Error::new(io::ErrorKind::InvalidInput, why))?;
    ensure_fd_limit(config.connections)?;
    let threads = config.threads.min(config.connections);
    let payload = Arc::new(Payload::new(config.size));

    // Start every thread before the first barrier exists, so that a thread
    // that cannot start leaves no other one waiting for it.
    let mut starts = Vec::with_capacity(threads);
    let mut workers = Vec::with_capacity(threads);
    let window = Arc::new(OnceLock::new());
    for index in 0..threads {
        let share =
            config.connections / threads + usize::from(index < config.connections % threads);
        let (start, go) = mpsc::channel::<Arc<Barrier>>();
        let config = config.clone();
        let payload = Arc::clone(&payload);
        let window = Arc::clone(&window);
        let worker = thread::Builder::new()
            .name(format!("bench-{index}"))
            .spawn(move || -> Option<Tally> {
                let phases = Phases {
                    barrier: go.recv().ok()?,
                    window,
                };
                Some(match (config.transport, config.mode) {
                    (Transport::Udp, _) => udp::ping_pong(&config, share, &payload, &phases),
                    (Transport::Tcp, Mode::FanOut) => chat::fan_out(&config, share, &phases),
                    (Transport::Tcp, mode) => tcp::run(&config, mode, share, &payload, &phases),
                })
            })?;
        starts.push(start);
        workers.push(worker);
    }
    let barrier = Arc::new(Barrier::new(threads + 1));
    for start in &starts {
        start
            .send(Arc::clone(&barrier))
            .map_err(|_| io::Error::other("a client thread stopped before the run"))?;
    }
    let coordinator = Coordinator {
        enabled: config.coordinated,
    };
    let mut cpu = CpuWindow::new(&config.watch_pids);
    let opening = Instant::now();
    barrier.wait();
    let connect_s = opening.elapsed().as_secs_f64();
    let announced = coordinator.announce_and_wait("open");
    let run_window = match config.mode {
        Mode::PingPong | Mode::ConnectRate => Window::after(config.warmup, config.duration),
        Mode::Hold => Window::after(Duration::ZERO, config.duration),
        Mode::FanOut => Window::after(Duration::ZERO, config.timeout),
    };
    window
        .set(run_window)
        .expect("the window is set once, here");
    barrier.wait();
    match config.mode {
        Mode::PingPong | Mode::ConnectRate => {
            sleep_until(run_window.start);
            cpu.start();
            sleep_until(run_window.end);
            cpu.end();
        }
        Mode::Hold | Mode::FanOut => cpu.start(),
    }
    barrier.wait();
    cpu.end();
    let server = (!config.watch_pids.is_empty()).then(|| ServerSample::read(&config.watch_pids));
    let verified = announced.and_then(|()| coordinator.announce_and_wait("verified"));
    barrier.wait();

    let mut total = Tally::new();
    for worker in workers {
        match worker.join() {
            Ok(Some(tally)) => total.merge(tally),
            _ => return Err(io::Error::other("a client thread failed")),
        }
    }
    verified?;
    let (server, server_error) = split_sample(server);
    let hold = config.mode == Mode::Hold;
    let fan_out = config.mode == Mode::FanOut;
    let duration_s = match config.mode {
        Mode::FanOut => total.slowest.map_or(0.0, |d| d.as_secs_f64()),
        _ => config.duration.as_secs_f64(),
    };
    let server_cpu_s = cpu.seconds();
    Ok(Report {
        service: config.service.name(),
        url: format!("{}://{}", config.transport.name(), config.target),
        transport: config.transport.name(),
        tls: total.tls,
        mode: config.mode.name(),
        connections: config.connections,
        connected: total.connected,
        threads,
        processes: 1,
        sources: config.sources.clone(),
        size: config.size,
        warmup_s: match config.mode {
            Mode::PingPong | Mode::ConnectRate => config.warmup.as_secs_f64(),
            Mode::Hold | Mode::FanOut => 0.0,
        },
        duration_s,
        connect_s,
        requests: total.requests,
        requests_per_sec: (!hold && !fan_out).then(|| total.requests as f64 / duration_s),
        errors: total.errors.total(),
        error_kinds: total.errors,
        lost: total.lost,
        latency_us: Latency::of(&total.latency),
        held: hold.then_some(total.held),
        answered: hold.then_some(total.answered),
        delivered: fan_out.then_some(total.delivered),
        fanout_ms: total.slowest.map(|d| d.as_secs_f64() * 1000.0),
        server_kib_per_connection: per_connection(hold, server.as_ref(), total.held),
        server,
        server_error,
        server_cpu_s,
        server_cpu_us_per_request: per_request(hold, server_cpu_s, total.requests),
        latency_histogram: config.coordinated.then(|| total.histogram_pairs()),
    })
}

/// The sample of the watched processes, or why there is none: a server
/// that died (or went away) during the run is in the report, not an end to
/// it.
fn split_sample(
    sample: Option<io::Result<ServerSample>>,
) -> (Option<ServerSample>, Option<String>) {
    match sample {
        None => (None, None),
        Some(Ok(sample)) => (Some(sample), None),
        Some(Err(e)) => (None, Some(e.to_string())),
    }
}

/// Hold: the server's resident memory per held connection, in KiB.
fn per_connection(hold: bool, server: Option<&ServerSample>, held: usize) -> Option<f64> {
    (hold && held > 0).then_some(())?;
    Some(server?.rss_kib as f64 / held as f64)
}

/// The server's CPU per request, in microseconds (not for a hold, whose
/// window is mostly idle).
fn per_request(hold: bool, cpu_s: Option<f64>, requests: u64) -> Option<f64> {
    (!hold && requests > 0).then_some(())?;
    Some(cpu_s? * 1e6 / requests as f64)
}

/// Raises the soft limit on open files to the hard limit when `connections`
/// need more, and fails with a clear message when even that is too low.
fn ensure_fd_limit(connections: usize) -> io::Result<()> {
    let needed = u64::try_from(connections)
        .unwrap_or(u64::MAX)
        .saturating_add(SPARE_FILES as u64);
    let limit = crate::common::raise_open_file_limit()?;
    if limit >= needed {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{connections} connections need about {needed} open files, but the limit is {limit} \
         even raised to the hard limit: raise it with `ulimit -n`, or spread the connections \
         over processes (--processes)"
    )))
}

/// Opens a non-blocking TCP connection to `target`, from `source` when
/// given (bound before the connect; the port is chosen at the connect, so
/// that one source's ports are shared between servers), with `TCP_NODELAY`.
/// The connect completes later: the socket turns writable.
fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<mio::net::TcpStream> {
    let Some(source) = source else {
        let stream = mio::net::TcpStream::connect(target)?;
        stream.set_nodelay(true)?;
        return Ok(stream);
    };
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::os::fd::AsRawFd;
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    let yes: libc::c_int = 1;
    // SAFETY: the option value is a c_int that lives across the call. A
    // kernel without IP_BIND_ADDRESS_NO_PORT (before 4.2) chooses the port at
    // the bind instead, which works too, with fewer ports.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&yes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    socket.set_tcp_nodelay(true)?;
    socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
    match socket.connect(&SockAddr::from(target)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new("127.0.0.1:9".parse().unwrap(), Transport::Tcp)
    }

    fn chat() -> Config {
        Config {
            service: Service::Chat,
            mode: Mode::FanOut,
            ..config()
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(config().validate().is_ok());
        assert!(chat().validate().is_ok());
        let v6 = "::1".parse().unwrap();
        let two = vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()];
        let bad = [
            Config {
                connections: 0,
                ..config()
            },
            Config {
                size: 0,
                ..config()
            },
            Config {
                size: MAX_SIZE + 1,
                ..config()
            },
            Config {
                threads: 0,
                ..config()
            },
            Config {
                transport: Transport::Udp,
                size: MAX_DATAGRAM + 1,
                ..config()
            },
            Config {
                transport: Transport::Udp,
                mode: Mode::Hold,
                ..config()
            },
            Config {
                duration: Duration::ZERO,
                ..config()
            },
            Config {
                mode: Mode::FanOut,
                ..config()
            },
            Config {
                mode: Mode::Hold,
                ..chat()
            },
            Config {
                connections: 1,
                ..chat()
            },
            Config {
                threads: 2,
                ..chat()
            },
            Config {
                size: MAX_CHAT_LINE + 1,
                ..chat()
            },
            Config {
                sources: vec![v6],
                ..config()
            },
            Config {
                transport: Transport::Udp,
                sources: two.clone(),
                ..config()
            },
            Config {
                coordinated: true,
                ..config()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?} passed");
        }
        let hold = Config {
            mode: Mode::Hold,
            duration: Duration::ZERO,
            sources: two,
            coordinated: true,
            ..config()
        };
        assert!(hold.validate().is_ok());
    }

    #[test]
    fn sources_are_taken_in_turn() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(config().source(3), None);
        let config = Config {
            sources: vec![a, b],
            ..config()
        };
        let taken: Vec<_> = (0..5).map(|i| config.source(i)).collect();
        assert_eq!(taken, [Some(a), Some(b), Some(a), Some(b), Some(a)]);
    }

    #[test]
    fn window_counts_only_inside() {
        let window = Window::after(Duration::from_millis(100), Duration::from_millis(100));
        assert!(!window.counts(Instant::now()));
        assert!(window.counts(window.start));
        assert!(!window.counts(window.end));
    }

    #[test]
    fn latency_percentiles_come_from_the_histogram() {
        let mut tally = Tally::new();
        let window = Window {
            start: Instant::now(),
            end: Instant::now() + Duration::from_secs(60),
        };
        let t0 = window.start;
        for us in 1..=100u64 {
            tally.answered(&window, t0, t0 + Duration::from_micros(us));
        }
        assert_eq!(tally.requests, 100);
        let latency = Latency::of(&tally.latency);
        assert!((latency.p50 - 50.0).abs() < 0.1, "{latency:?}");
        assert!((latency.p99 - 99.0).abs() < 0.1, "{latency:?}");
        assert!((latency.max - 100.0).abs() < 0.1, "{latency:?}");
    }

    #[test]
    fn histogram_pairs_rebuild_the_same_percentiles() {
        let mut tally = Tally::new();
        let window = Window::after(Duration::ZERO, Duration::from_secs(60));
        let t0 = window.start;
        for us in [3u64, 3, 17, 250, 250, 250, 9_999, 123_456] {
            tally.answered(&window, t0, t0 + Duration::from_micros(us));
        }
        let pairs = tally.histogram_pairs();
        assert_eq!(pairs.iter().map(|p| p[1]).sum::<u64>(), 8);
        let mut rebuilt = Tally::new();
        for [ns, count] in pairs {
            rebuilt.latency.record_n(ns, count).unwrap();
        }
        assert_eq!(Latency::of(&rebuilt.latency), Latency::of(&tally.latency));
    }

    #[test]
    fn tallies_merge() {
        let mut a = Tally::new();
        let mut b = Tally::new();
        a.delivered = 2;
        a.slowest = Some(Duration::from_millis(5));
        b.delivered = 3;
        b.slowest = Some(Duration::from_millis(7));
        b.error(ErrorKind::Timeout);
        a.merge(b);
        assert_eq!(a.delivered, 5);
        assert_eq!(a.slowest, Some(Duration::from_millis(7)));
        assert_eq!(a.errors.timeout, 1);
    }

    #[test]
    fn per_connection_and_per_request() {
        let server = ServerSample {
            pids: vec![1],
            rss_kib: 1000,
            peak_rss_kib: 1000,
            threads: 1,
            processes: Vec::new(),
        };
        assert_eq!(per_connection(true, Some(&server), 100), Some(10.0));
        assert_eq!(per_connection(false, Some(&server), 100), None);
        assert_eq!(per_connection(true, Some(&server), 0), None);
        assert_eq!(per_connection(true, None, 100), None);
        assert_eq!(per_request(false, Some(2.0), 1_000_000), Some(2.0));
        assert_eq!(per_request(true, Some(2.0), 1_000_000), None);
        assert_eq!(per_request(false, None, 10), None);
        assert_eq!(per_request(false, Some(2.0), 0), None);
    }

    #[test]
    fn a_server_that_cannot_be_read_is_reported_not_fatal() {
        assert_eq!(split_sample(None), (None, None));
        let (sample, why) = split_sample(Some(ServerSample::read(&[u32::MAX])));
        assert!(sample.is_none());
        assert!(why.unwrap().contains(&u32::MAX.to_string()));
        let (sample, why) = split_sample(Some(ServerSample::read(&[std::process::id()])));
        assert!(sample.is_some());
        assert!(why.is_none());
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let limit = crate::common::raise_open_file_limit().unwrap();
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert_eq!(now.rlim_cur, now.rlim_max);
        assert_eq!(now.rlim_cur, limit);
        assert!(ensure_fd_limit(10).is_ok());
        let err = ensure_fd_limit(usize::MAX).unwrap_err().to_string();
        assert!(err.contains("--processes"), "{err}");
    }

    fn report() -> Report {
        Report {
            service: "echo-upper",
            url: "tcp://127.0.0.1:9".into(),
            transport: "tcp",
            tls: None,
            mode: "ping-pong",
            connections: 1,
            connected: 1,
            threads: 1,
            processes: 1,
            sources: Vec::new(),
            size: 64,
            warmup_s: 0.0,
            duration_s: 1.0,
            connect_s: 0.0,
            requests: 10,
            requests_per_sec: Some(10.0),
            errors: 0,
            error_kinds: ErrorCounts::default(),
            lost: 0,
            latency_us: Latency::default(),
            held: None,
            answered: None,
            delivered: None,
            fanout_ms: None,
            server: None,
            server_error: None,
            server_kib_per_connection: None,
            server_cpu_s: Some(0.5),
            server_cpu_us_per_request: Some(50_000.0),
            latency_histogram: None,
        }
    }

    #[test]
    fn report_is_one_line_of_json() {
        let report = report();
        let json = report.to_json();
        assert!(!json.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["requests"], 10);
        assert_eq!(value["error_kinds"]["mismatch"], 0);
        assert!(value["held"].is_null());
        assert_eq!(value["server_cpu_us_per_request"], 50_000.0);
        // Only a coordinated child sends its histogram.
        assert!(value.get("latency_histogram").is_none());
        let summary = report.to_string();
        assert!(summary.contains("10 in 1.00 s"), "{summary}");
        assert!(summary.contains("50000.0 µs per request"), "{summary}");
    }

    #[test]
    fn fan_out_summary() {
        let report = Report {
            service: "chat",
            mode: "fan-out",
            connections: 20,
            connected: 20,
            requests: 19,
            requests_per_sec: None,
            delivered: Some(19),
            fanout_ms: Some(1.5),
            latency_histogram: Some(vec![[1000, 19]]),
            ..report()
        };
        let summary = report.to_string();
        assert!(
            summary.contains("delivered: 19 of 19, the last after 1.500 ms"),
            "{summary}"
        );
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(value["latency_histogram"][0][1], 19);
    }
}
