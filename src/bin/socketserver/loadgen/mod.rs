//! A load generator for echo-upper servers: the engine of
//! `socketserver bench`, in the spirit of `redis-benchmark`.
//!
//! It opens many connections (or UDP sockets) from a few threads, each driving
//! its share through one `epoll` instance (`mio`), so that one client thread
//! keeps thousands of connections busy and the client is not what limits the
//! measurement. Every reply is checked: a request is a run of lowercase
//! letters, digits and punctuation, and the only right answer is the same
//! bytes with the letters uppercased (Python's `bytes.upper()`), in full; any
//! other byte is counted as an error.
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
//!   checks that every one answers. With [`watch_pid`](Config::watch_pid) the
//!   server's memory and thread count are read from `/proc` while all the
//!   connections are still open.
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

mod payload;
mod tcp;
mod udp;

use std::fmt;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use payload::Payload;

/// The largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// The largest message the load generator sends.
pub const MAX_SIZE: usize = 16 << 20;
/// The most connections one run opens.
pub const MAX_CONNECTIONS: usize = 100_000;
/// How many connects may be in progress at once while connections open.
const CONNECT_BURST: usize = 512;

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
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::PingPong => "ping-pong",
            Mode::ConnectRate => "connect-rate",
            Mode::Hold => "hold",
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
    /// What to measure.
    pub mode: Mode,
    /// Connections (UDP: sockets) at once, 1 to [`MAX_CONNECTIONS`].
    pub connections: usize,
    /// Client threads, each with its own `epoll`; the connections are shared
    /// out between them. Default 1.
    pub threads: usize,
    /// Bytes per request, 1 to [`MAX_SIZE`] ([`MAX_DATAGRAM`] over UDP).
    pub size: usize,
    /// How long to run before counting.
    pub warmup: Duration,
    /// How long to count (in hold mode: how long to hold the connections).
    pub duration: Duration,
    /// How long to wait for an answer, or for a connect.
    pub timeout: Duration,
    /// A local process (the server) whose memory and thread count to report.
    pub watch_pid: Option<u32>,
}

impl Config {
    /// A ping-pong run against `target` over `transport`: 16 connections, one
    /// thread, 64-byte requests, 1 s of warm-up, 10 s counted, a 5 s timeout.
    pub fn new(target: SocketAddr, transport: Transport) -> Self {
        Config {
            target,
            transport,
            mode: Mode::PingPong,
            connections: 16,
            threads: 1,
            size: 64,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            watch_pid: None,
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
        let max_size = match self.transport {
            Transport::Tcp => MAX_SIZE,
            Transport::Udp => MAX_DATAGRAM,
        };
        if self.size == 0 || self.size > max_size {
            return Err(format!(
                "--size must be 1 to {max_size} bytes over {}, not {}",
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
        if self.mode != Mode::Hold && self.duration.is_zero() {
            return Err("--duration must be more than 0".into());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be more than 0".into());
        }
        Ok(())
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
    /// Any other I/O error.
    pub io: u64,
}

impl ErrorCounts {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.mismatch + self.timeout + self.closed + self.connect + self.io
    }

    fn add(&mut self, other: &ErrorCounts) {
        self.mismatch += other.mismatch;
        self.timeout += other.timeout;
        self.closed += other.closed;
        self.connect += other.connect;
        self.io += other.io;
    }

    fn bump(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::Mismatch => self.mismatch += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::Closed => self.closed += 1,
            ErrorKind::Connect => self.connect += 1,
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

/// The memory and thread count of a local process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    /// The process id.
    pub pid: u32,
    /// Resident memory now, in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// The most resident memory so far, in KiB (`VmHWM`).
    pub peak_rss_kib: u64,
    /// Threads (`Threads`).
    pub threads: u64,
}

impl ProcessSample {
    /// Reads `/proc/PID/status` (Linux).
    pub fn read(pid: u32) -> io::Result<ProcessSample> {
        let path = format!("/proc/{pid}/status");
        let status = fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot read {path}: {e}")))?;
        let field = |name: &str| -> io::Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
                .ok_or_else(|| io::Error::other(format!("{path} has no {name} field")))
        };
        Ok(ProcessSample {
            pid,
            rss_kib: field("VmRSS")?,
            peak_rss_kib: field("VmHWM")?,
            threads: field("Threads")?,
        })
    }
}

/// What a run measured; `Display` writes the human summary, and
/// [`Report::to_json`] the one-line JSON form.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The service whose answers were checked (`echo-upper`).
    pub service: &'static str,
    /// The server, as a URL.
    pub url: String,
    /// `tcp` or `udp`.
    pub transport: &'static str,
    /// `ping-pong`, `connect-rate` or `hold`.
    pub mode: &'static str,
    /// Connections (or sockets) asked for.
    pub connections: usize,
    /// Connections open (each answered once) when the run started: TCP
    /// ping-pong and hold.
    pub connected: usize,
    /// Client threads.
    pub threads: usize,
    /// Bytes per request.
    pub size: usize,
    /// Seconds of warm-up, not counted.
    pub warmup_s: f64,
    /// Seconds counted (hold: seconds the connections were held).
    pub duration_s: f64,
    /// Seconds it took to open the connections before the run.
    pub connect_s: f64,
    /// Requests answered correctly in the counted window.
    pub requests: u64,
    /// `requests / duration_s`; `None` in hold mode.
    pub requests_per_sec: Option<f64>,
    /// Every error, warm-up included.
    pub errors: u64,
    /// The errors by kind.
    pub error_kinds: ErrorCounts,
    /// UDP datagrams that got no answer within the timeout.
    pub lost: u64,
    /// Latency of the counted requests.
    pub latency_us: Latency,
    /// Hold mode: connections that were open when the hold ended.
    pub held: Option<usize>,
    /// Hold mode: held connections that then answered correctly.
    pub answered: Option<usize>,
    /// The watched process, sampled at the end of the run while every
    /// connection was still open.
    pub server: Option<ProcessSample>,
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
        writeln!(
            f,
            "{} {} {} against {}: {} connection(s), {}-byte requests, {} thread(s)",
            self.service,
            self.transport,
            self.mode,
            self.url,
            self.connections,
            self.size,
            self.threads
        )?;
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
            "  errors:    {} (wrong answer {}, timeout {}, closed {}, connect {}, other {})",
            self.errors, e.mismatch, e.timeout, e.closed, e.connect, e.io
        )?;
        if self.transport == Transport::Udp.name() {
            write!(f, "\n  lost:      {} datagram(s)", self.lost)?;
        }
        if let Some(server) = &self.server {
            write!(
                f,
                "\n  server:    pid {}: {:.1} MiB resident (peak {:.1} MiB), {} threads",
                server.pid,
                server.rss_kib as f64 / 1024.0,
                server.peak_rss_kib as f64 / 1024.0,
                server.threads
            )?;
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
/// with the thread that reports: the connections are open; the run is over
/// (the server is sampled now); the connections may close.
struct Phases(Arc<Barrier>);

impl Phases {
    fn connected(&self) {
        self.0.wait();
    }
    fn finished(&self) {
        self.0.wait();
    }
    fn released(&self) {
        self.0.wait();
    }
}

/// Runs the load that `config` describes and reports what it measured.
///
/// Fails only when the run cannot start (bad settings, too few file
/// descriptors, no threads); what goes wrong with the server during the run
/// is counted in the report.
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
    for index in 0..threads {
        let share =
            config.connections / threads + usize::from(index < config.connections % threads);
        let (start, go) = mpsc::channel::<Arc<Barrier>>();
        let config = config.clone();
        let payload = Arc::clone(&payload);
        let worker = thread::Builder::new()
            .name(format!("bench-{index}"))
            .spawn(move || -> Option<Tally> {
                let phases = Phases(go.recv().ok()?);
                Some(match (config.transport, config.mode) {
                    (Transport::Udp, _) => udp::ping_pong(&config, share, &payload, &phases),
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
    let phases = Phases(barrier);
    let opening = Instant::now();
    phases.connected();
    let connect_s = opening.elapsed().as_secs_f64();
    phases.finished();
    let server = config.watch_pid.map(ProcessSample::read);
    phases.released();

    let mut total = Tally::new();
    for worker in workers {
        match worker.join() {
            Ok(Some(tally)) => total.merge(tally),
            _ => return Err(io::Error::other("a client thread failed")),
        }
    }
    let server = server.transpose()?;
    let hold = config.mode == Mode::Hold;
    let duration_s = config.duration.as_secs_f64();
    Ok(Report {
        service: "echo-upper",
        url: format!("{}://{}", config.transport.name(), config.target),
        transport: config.transport.name(),
        mode: config.mode.name(),
        connections: config.connections,
        connected: total.connected,
        threads,
        size: config.size,
        warmup_s: if hold {
            0.0
        } else {
            config.warmup.as_secs_f64()
        },
        duration_s,
        connect_s,
        requests: total.requests,
        requests_per_sec: (!hold).then(|| total.requests as f64 / duration_s),
        errors: total.errors.total(),
        error_kinds: total.errors,
        lost: total.lost,
        latency_us: Latency::of(&total.latency),
        held: hold.then_some(total.held),
        answered: hold.then_some(total.answered),
        server,
    })
}

/// Raises the soft limit on open files to the hard limit when `connections`
/// need more, and fails with a clear message when even that is too low.
fn ensure_fd_limit(connections: usize) -> io::Result<()> {
    let needed = libc::rlim_t::try_from(connections)
        .unwrap_or(libc::rlim_t::MAX)
        .saturating_add(64);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur >= needed {
        return Ok(());
    }
    if limit.rlim_max >= needed {
        let raised = libc::rlimit {
            rlim_cur: needed,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(());
        }
    }
    Err(io::Error::other(format!(
        "{connections} connections need about {needed} open files, but the limit is {} \
         (hard limit {}): raise it with `ulimit -n`",
        limit.rlim_cur, limit.rlim_max
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::new("127.0.0.1:9".parse().unwrap(), Transport::Tcp)
    }

    #[test]
    fn settings_are_checked() {
        assert!(config().validate().is_ok());
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
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?} passed");
        }
        let hold = Config {
            mode: Mode::Hold,
            duration: Duration::ZERO,
            ..config()
        };
        assert!(hold.validate().is_ok());
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
    fn reads_this_process() {
        let sample = ProcessSample::read(std::process::id()).unwrap();
        assert!(sample.rss_kib > 0);
        assert!(sample.peak_rss_kib >= sample.rss_kib);
        assert!(sample.threads >= 1);
        assert!(ProcessSample::read(u32::MAX).is_err());
    }

    #[test]
    fn report_is_one_line_of_json() {
        let report = Report {
            service: "echo-upper",
            url: "tcp://127.0.0.1:9".into(),
            transport: "tcp",
            mode: "ping-pong",
            connections: 1,
            connected: 1,
            threads: 1,
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
            server: None,
        };
        let json = report.to_json();
        assert!(!json.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["requests"], 10);
        assert_eq!(value["error_kinds"]["mismatch"], 0);
        assert!(value["held"].is_null());
        assert!(report.to_string().contains("10 in 1.00 s"));
    }
}
