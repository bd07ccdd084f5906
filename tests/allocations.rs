//! What the server and its parsers allocate, measured by a counting
//! allocator (this test binary's own global allocator).
//!
//! - The parsers: a claimed size is never allocated, and what any input
//!   costs is bounded by the input, not by what it claims. These counts are
//!   per thread (tests run in parallel), so each measurement sees only the
//!   parser it runs.
//! - The echo-upper hot path allocates nothing per request, over TCP in
//!   both dispatch modes and over UDP. That count is of the whole process:
//!   it runs in a child process of its own (this binary, running only that
//!   test), so that nothing else runs meanwhile. A server runs
//!   `services::EchoUpper`; after a warm-up (connection setup, worker
//!   start, buffer pools filling), a window of 20,000 round trips must add
//!   no allocation at all, on any thread: the client's loop allocates
//!   nothing itself, so what is counted is the server's accept loop,
//!   dispatch, pool, event loops and handler. (Up to three windows are
//!   measured, until one counts nothing: a cost per request shows in every
//!   window, a one-off cost that a loaded machine pushed past the warm-up in
//!   one only.) With `ZERO_ALLOC_TRACE=1`, the first counted allocation's
//!   backtrace is printed, to find where it comes from.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use proptest::prelude::*;
use socketserver::protocol::framing::{body, parse_header, Endian, FrameCodec, DEFAULT_MAX_FRAME};
use socketserver::protocol::line::{read_line, Line};
use socketserver::request::{Conn, Framing, MessageHandler, Next};
use socketserver::services::exec::split_command;
use socketserver::services::files::check_file_name;
use socketserver::services::http::StaticHttp;
use socketserver::services::EchoUpper;
use socketserver::{
    handler_fn, Options, ReactorTcpServer, SocketUrl, StreamRequest, ThreadingTcpServer,
    ThreadingUdpServer,
};
use support::{run_with_input, Mode};

// ---------------------------------------------------------------------------
// The counting allocator: live bytes and their peak per thread (for the
// parsers), allocations of the whole process (for the hot path).

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);
static FIRST: Mutex<Option<String>> = Mutex::new(None);

fn grew(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + bytes;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

impl Counting {
    /// One allocation of the process.
    fn count(&self, size: usize) {
        // The tracer's own allocations are not counted.
        if TRACING.try_with(Cell::get).unwrap_or(true) {
            return;
        }
        ALLOCATIONS.fetch_add(1, SeqCst);
        BYTES.fetch_add(size as u64, SeqCst);
        if TRACE.load(SeqCst) {
            Self::trace();
        }
    }

    /// Keeps the backtrace of the first allocation while tracing.
    #[cold]
    fn trace() {
        let _ = TRACING.try_with(|tracing| {
            if tracing.replace(true) {
                return;
            }
            if let Ok(mut first) = FIRST.try_lock() {
                if first.is_none() {
                    let thread = thread::current();
                    *first = Some(format!(
                        "on thread {:?}:\n{}",
                        thread.name().unwrap_or("?"),
                        std::backtrace::Backtrace::force_capture()
                    ));
                }
            }
            tracing.set(false);
        });
    }
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counting touches only thread-local cells and atomics, which never
// allocate (the tracer's backtrace is not counted).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        self.count(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        self.count(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        shrank(layout.size());
        self.count(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------
// The parsers: peak allocation per thread.

/// The most bytes this thread had allocated at once, above what it had when
/// `work` started.
fn peak_of<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let out = work();
    let peak = PEAK.with(Cell::get);
    (out, peak - base)
}

const KIB: usize = 1024;

#[test]
fn the_counter_counts() {
    let (_, peak) = peak_of(|| vec![0u8; 1 << 20]);
    assert!(peak >= 1 << 20, "peak {peak}");
}

#[test]
fn an_over_limit_length_allocates_nothing_large() {
    for order in [Endian::Little, Endian::Big] {
        let framing = FrameCodec::new().endian(order);
        let wire = order.encode(u32::MAX);
        let (result, peak) = peak_of(|| framing.read_frame(&wire[..]));
        assert!(result.is_err());
        assert!(peak < KIB, "{peak} bytes for a refused 4 GiB frame");
    }
}

#[test]
fn a_claimed_frame_costs_what_arrives() {
    // 16 MiB claimed (the limit), 10 bytes sent.
    let mut wire = DEFAULT_MAX_FRAME.to_le_bytes().to_vec();
    wire.extend_from_slice(b"0123456789");
    let (result, peak) = peak_of(|| FrameCodec::new().read_frame(&wire[..]));
    assert!(result.is_err());
    assert!(peak <= 65 * KIB, "{peak} bytes for a 10-byte frame");
    // 1 MiB claimed and 300 KiB sent: what grows is what arrived (a
    // doubling vector, old and new buffers both alive while it moves).
    let mut wire = (1u32 << 20).to_le_bytes().to_vec();
    wire.extend(std::iter::repeat_n(7u8, 300 * KIB));
    let (result, peak) = peak_of(|| FrameCodec::new().read_frame(&wire[..]));
    assert!(result.is_err());
    assert!(peak <= 3 * 300 * KIB, "{peak} bytes for 300 KiB");
}

#[test]
fn a_claimed_header_costs_what_arrives() {
    let mut wire = (64u32 << 10).to_le_bytes().to_vec();
    wire.extend_from_slice(br#"{"op":"put"#);
    let (result, peak) = peak_of(|| FrameCodec::new().read_header(&wire[..], &mut Vec::new()));
    assert!(result.is_err());
    assert!(peak <= 65 * KIB, "{peak} bytes for a 10-byte header");
}

#[test]
fn a_claimed_body_allocates_nothing() {
    let data = [1u8; 100];
    let (result, peak) = peak_of(|| body(&data[..], u64::MAX).skip());
    assert!(result.is_err());
    assert!(peak < KIB, "{peak} bytes to skip a short body");
}

#[test]
fn a_huge_file_name_costs_no_copy() {
    let name = "a".repeat(1 << 20);
    let (result, peak) = peak_of(|| check_file_name(&name));
    assert!(result.is_err());
    assert!(peak < KIB, "{peak} bytes to refuse a long name");
}

#[test]
fn a_megabyte_without_a_newline_costs_the_line_limit() {
    let input = vec![b'x'; 1 << 20];
    let (outcome, peak) = peak_of(|| {
        let mut reader = std::io::BufReader::with_capacity(4096, &input[..]);
        read_line(&mut reader, &mut Vec::new(), 8 * KIB).unwrap()
    });
    assert_eq!(outcome, Line::TooLong);
    assert!(
        peak <= 8 * KIB * 3 + 8 * KIB,
        "{peak} bytes for an 8 KiB limit"
    );
    // The same through the HTTP head parser: a request line, then a field.
    let site = StaticHttp::builtin();
    let (_, peak) = peak_of(|| site.parse_head(&mut &input[..]).unwrap());
    assert!(peak <= 64 * KIB, "{peak} bytes for a 1 MiB request line");
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.extend_from_slice(&input);
    let (_, peak) = peak_of(|| site.parse_head(&mut &head[..]).unwrap());
    assert!(peak <= 4 * 64 * KIB, "{peak} bytes for a 1 MiB field");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_frame_input_costs_at_most_a_few_times_its_size(
        input in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let framing = FrameCodec::new();
        let (_, peak) = peak_of(|| {
            let mut rest = &input[..];
            let mut payload = Vec::new();
            while let Ok(true) = framing.read_frame_into(&mut rest, &mut payload) {}
        });
        prop_assert!(peak <= 64 * KIB + 3 * input.len() + KIB, "{} bytes for {}", peak, input.len());
        let (_, peak) = peak_of(|| framing.read_header(&input[..], &mut Vec::new()));
        prop_assert!(peak <= 64 * KIB + 16 * input.len() + 4 * KIB, "{} bytes for {}", peak, input.len());
    }

    #[test]
    fn header_text_costs_at_most_a_few_times_its_size(text in r#"[{}\[\]":,0-9a-z ]{0,2000}"#) {
        let (_, peak) = peak_of(|| parse_header(text.as_bytes()));
        prop_assert!(peak <= 16 * text.len() + 4 * KIB, "{} bytes for {}", peak, text.len());
    }

    #[test]
    fn any_head_costs_at_most_a_few_times_its_size(
        input in "[A-Z: /\r\n\x00-\x7f]{0,3000}".prop_map(String::into_bytes),
    ) {
        let site = StaticHttp::builtin();
        let (_, peak) = peak_of(|| site.parse_head(&mut &input[..]).unwrap());
        prop_assert!(peak <= 8 * input.len() + 4 * KIB, "{} bytes for {}", peak, input.len());
    }

    #[test]
    fn command_lines_and_urls_cost_at_most_a_few_times_their_size(text in r#"(.|['"\\ :/\[\]]){0,500}"#) {
        let (_, peak) = peak_of(|| split_command(&text));
        prop_assert!(peak <= 8 * text.len() + KIB, "{} bytes for {}", peak, text.len());
        let (_, peak) = peak_of(|| text.parse::<SocketUrl>());
        prop_assert!(peak <= 8 * text.len() + KIB, "{} bytes for {}", peak, text.len());
    }
}

// ---------------------------------------------------------------------------
// The echo-upper hot path: allocations of the whole process, in a child
// process of its own.

const WARM_UP: usize = 2_000;
const ROUNDS: usize = 20_000;
/// Windows of `ROUNDS` round trips measured at most, until one counts
/// nothing. A cost per request shows in every window; a one-off cost (a
/// pool worker that parks for the first time, and so makes its channel's
/// thread-local context, after a warm-up on a loaded machine gave it no
/// chance to) shows in one window only.
const WINDOWS: usize = 3;
const BURSTS: usize = 10;
const BURST: usize = 16;
const STEP: Duration = support::STEP;

/// Allocations (count, bytes) made anywhere in the process while `work` runs,
/// with tracing switched on for it when `ZERO_ALLOC_TRACE` is set.
fn allocations_during(work: impl FnOnce()) -> (u64, u64) {
    let trace = std::env::var_os("ZERO_ALLOC_TRACE").is_some();
    let (count, bytes) = (ALLOCATIONS.load(SeqCst), BYTES.load(SeqCst));
    TRACE.store(trace, SeqCst);
    work();
    TRACE.store(false, SeqCst);
    let counted = (ALLOCATIONS.load(SeqCst) - count, BYTES.load(SeqCst) - bytes);
    if let Some(first) = FIRST.lock().unwrap().take() {
        eprintln!("first allocation {first}");
    }
    counted
}

/// Counts the allocations of `work`, run again (at most `windows` times in
/// all) until a run counts nothing; the counts of every run.
fn measure_windows(windows: usize, mut work: impl FnMut()) -> Vec<(u64, u64)> {
    let mut counts = Vec::new();
    for _ in 0..windows {
        counts.push(allocations_during(&mut work));
        if counts.last() == Some(&(0, 0)) {
            break;
        }
    }
    counts
}

/// Whether the last window counted nothing.
fn none_in_the_end(counts: &[(u64, u64)]) -> bool {
    counts.last().is_some_and(|&(count, _)| count == 0)
}

/// One request of `len` bytes, its expected answer, and a buffer for the
/// answer, all made before counting starts.
fn messages(len: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let request: Vec<u8> = b"hello, world 0123456789 "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect();
    let expected = request.to_ascii_uppercase();
    (request, expected, vec![0; len])
}

/// Allocations (count, bytes) over windows of `rounds` round trips with a
/// TCP server (already bound), after the warm-up: at most `windows`
/// windows, until one counts nothing.
fn tcp_allocations<H, D>(
    server: socketserver::Server<socketserver::transport::Tcp, H, D>,
    rounds: usize,
    windows: usize,
) -> Vec<(u64, u64)>
where
    H: Send + Sync + 'static,
    D: socketserver::dispatch::Dispatch<socketserver::transport::Tcp, H>,
{
    let addr = server.local_addr().as_inet().unwrap();
    let handle = server.handle();
    let serving = thread::spawn(move || server.serve_forever());

    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.set_write_timeout(Some(STEP)).unwrap();
    let (request, expected, mut answer) = messages(64);
    let mut round_trip = |stream: &mut TcpStream| {
        stream.write_all(&request).unwrap();
        stream.read_exact(&mut answer).unwrap();
        assert!(answer == expected, "a wrong answer");
    };
    for _ in 0..WARM_UP {
        round_trip(&mut stream);
    }
    let counted = measure_windows(windows, || {
        for _ in 0..rounds {
            round_trip(&mut stream);
        }
    });
    drop(stream);
    handle.shutdown();
    serving.join().unwrap().unwrap();
    counted
}

/// Allocations (count, bytes) over windows of [`ROUNDS`] round trips with
/// a UDP server, after the warm-up, until one counts nothing.
fn udp_allocations() -> Vec<(u64, u64)> {
    // A fixed pool: an elastic one starts a thread (which allocates) when a
    // datagram arrives while no worker is idle yet, which is pool growth,
    // not a cost of the request.
    let options = Options::new().threads(2).max_threads(2);
    let server = ThreadingUdpServer::bind_with("127.0.0.1:0", EchoUpper, options).unwrap();
    let addr = server.local_addr().as_inet().unwrap();
    let handle = server.handle();
    let serving = thread::spawn(move || server.serve_forever());

    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(addr).unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    let (request, expected, mut answer) = messages(64);
    let round_trip = |answer: &mut [u8]| {
        socket.send(&request).unwrap();
        let n = socket.recv(answer).unwrap();
        assert!(answer[..n] == expected[..], "a wrong answer");
    };
    for _ in 0..WARM_UP {
        round_trip(&mut answer);
    }
    // Bursts fill the server's store of packet buffers: it keeps every
    // buffer it ever made, and a datagram that arrives while all of them
    // are out (a worker has replied but not yet given its buffer back) gets
    // a new one. One client in flight needs at most one per worker, plus one.
    for _ in 0..BURSTS {
        for _ in 0..BURST {
            socket.send(&request).unwrap();
        }
        for _ in 0..BURST {
            let n = socket.recv(&mut answer).unwrap();
            assert!(answer[..n] == expected[..], "a wrong answer");
        }
    }
    let counted = measure_windows(WINDOWS, || {
        for _ in 0..ROUNDS {
            round_trip(&mut answer);
        }
    });
    handle.shutdown();
    serving.join().unwrap().unwrap();
    counted
}

/// Answers in upper case with a new vector per message: a message handler
/// that allocates, which the count must catch on an event loop's thread.
struct AllocatingUpper;

impl MessageHandler for AllocatingUpper {
    type Session = ();

    fn framing(&self, _: &()) -> Framing {
        Framing::Chunk { max: 4096 }
    }

    fn open(&self, _: &mut Conn<'_>) -> io::Result<()> {
        Ok(())
    }

    fn on_message(&self, _: &mut (), chunk: &[u8], conn: &mut Conn<'_>) -> io::Result<Next> {
        conn.write_all(&chunk.to_ascii_uppercase())?;
        Ok(Next::Continue)
    }
}

/// The measurement itself, in the child process (see
/// `echo_upper_round_trips_allocate_nothing`).
fn zero_alloc_in_this_process(mode: Mode) {
    // The counter itself works: a boxed value is one allocation.
    let (count, _) = allocations_during(|| drop(std::hint::black_box(Box::new(7u64))));
    assert!(count >= 1, "the counting allocator counts nothing");

    let options = Options::new().threads(2);
    match mode {
        Mode::Threads => {
            // It sees what a server's threads allocate: a handler that
            // builds each answer in a new vector is caught on every round
            // trip.
            let allocating = handler_fn(|req: &mut StreamRequest| {
                let mut buf = [0u8; 4096];
                loop {
                    let n = req.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    req.write_all(&buf[..n].to_ascii_uppercase())?;
                }
            });
            let server =
                ThreadingTcpServer::bind_with("127.0.0.1:0", allocating, options.clone()).unwrap();
            let (count, _) = tcp_allocations(server, 1_000, 1)[0];
            assert!(
                count >= 1_000,
                "{count} allocation(s) for 1000 allocating round trips"
            );
            let server = ThreadingTcpServer::bind_with("127.0.0.1:0", EchoUpper, options).unwrap();
            let tcp = tcp_allocations(server, ROUNDS, WINDOWS);
            let udp = udp_allocations();
            assert!(
                none_in_the_end(&tcp) && none_in_the_end(&udp),
                "(allocations, bytes) per window of {ROUNDS} round trips: TCP {tcp:?}, UDP \
                 {udp:?}; run with ZERO_ALLOC_TRACE=1 to see where"
            );
            eprintln!("allocations per window of {ROUNDS} round trips: TCP {tcp:?}, UDP {udp:?}");
        }
        Mode::Reactor => {
            // It sees what an event loop allocates.
            let server =
                ReactorTcpServer::bind_with("127.0.0.1:0", AllocatingUpper, options.clone())
                    .unwrap();
            let (count, _) = tcp_allocations(server, 1_000, 1)[0];
            assert!(
                count >= 1_000,
                "{count} allocation(s) for 1000 allocating round trips"
            );
            // (Datagrams run on the pool whatever the mode: measured in
            // threads mode.) The reactor's read, framing, inline handler
            // call and write, on two loops.
            let options = Options::new().threads(1).reactor_threads(2);
            let server = ReactorTcpServer::bind_with("127.0.0.1:0", EchoUpper, options).unwrap();
            let tcp = tcp_allocations(server, ROUNDS, WINDOWS);
            assert!(
                none_in_the_end(&tcp),
                "(allocations, bytes) per window of {ROUNDS} round trips: TCP {tcp:?}; run with \
                 ZERO_ALLOC_TRACE=1 to see where"
            );
            eprintln!("allocations per window of {ROUNDS} round trips: TCP {tcp:?}");
        }
    }
}

#[test]
#[ignore = "run by echo_upper_round_trips_allocate_nothing::threads in a child process"]
fn zero_alloc_child_threads() {
    zero_alloc_in_this_process(Mode::Threads);
}

#[test]
#[ignore = "run by echo_upper_round_trips_allocate_nothing::reactor in a child process"]
fn zero_alloc_child_reactor() {
    zero_alloc_in_this_process(Mode::Reactor);
}

crate::both_modes! {
    /// Runs the measurement in a child process, this binary running only
    /// `zero_alloc_child_MODE`: the count is of the whole process, and the
    /// other tests of this file run in parallel with this one.
    fn echo_upper_round_trips_allocate_nothing(mode) {
        let child = format!("zero_alloc_child_{}", mode.name());
        let (status, stdout, stderr) = run_with_input(
            Command::new(std::env::current_exe().unwrap()).args([
                "--exact",
                &child,
                "--ignored",
                "--test-threads=1",
            ]),
            b"",
        );
        let stdout = String::from_utf8_lossy(&stdout);
        assert!(status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}");
    }
}
