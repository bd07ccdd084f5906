//! The echo-upper hot path allocates nothing per request, over TCP (threads
//! and reactor modes) and UDP.
//!
//! This test binary counts every allocation of the process with a global
//! allocator (one per binary, hence a file of its own, with one test so that
//! nothing else runs meanwhile). A server runs `services::EchoUpper` on a
//! thread pool; after a warm-up (connection setup, worker start, buffer pools
//! filling), many round trips must add no allocation at all, on any thread:
//! the client's loop allocates nothing itself, so what is counted is the
//! server's accept loop, dispatch, pool and handler.
//!
//! With `ZERO_ALLOC_TRACE=1`, the first counted allocation's backtrace is
//! printed, to find where it comes from.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use socketserver::services::EchoUpper;
use socketserver::{
    handler_fn, Options, ReactorTcpServer, RequestHandler, StreamRequest, ThreadingTcpServer,
    ThreadingUdpServer,
};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static TRACE: AtomicBool = AtomicBool::new(false);
static FIRST: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

impl Counting {
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

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.count(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.count(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.count(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARM_UP: usize = 2_000;
const ROUNDS: usize = 20_000;
const BURSTS: usize = 10;
const BURST: usize = 16;
const STEP: Duration = Duration::from_secs(20);

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

fn tcp_allocations<H: RequestHandler<StreamRequest>>(handler: H, rounds: usize) -> (u64, u64) {
    let options = Options::new().threads(2);
    let server = ThreadingTcpServer::bind_with("127.0.0.1:0", handler, options).unwrap();
    let addr = server.local_addr().as_inet().unwrap();
    let handle = server.handle();
    let serving = thread::spawn(move || server.serve_forever());
    let counted = round_trips(addr, rounds);
    handle.shutdown();
    serving.join().unwrap().unwrap();
    counted
}

/// The same on event loops: the reactor's read, framing, inline handler
/// call and write.
fn reactor_allocations(rounds: usize) -> (u64, u64) {
    let options = Options::new().threads(1).reactor_threads(2);
    let server = ReactorTcpServer::bind_with("127.0.0.1:0", EchoUpper, options).unwrap();
    let addr = server.local_addr().as_inet().unwrap();
    let handle = server.handle();
    let serving = thread::spawn(move || server.serve_forever());
    let counted = round_trips(addr, rounds);
    handle.shutdown();
    serving.join().unwrap().unwrap();
    counted
}

/// Warms a connection up, then counts the allocations of `rounds` round
/// trips on it.
fn round_trips(addr: std::net::SocketAddr, rounds: usize) -> (u64, u64) {
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
    let counted = allocations_during(|| {
        for _ in 0..rounds {
            round_trip(&mut stream);
        }
    });
    drop(stream);
    counted
}

fn udp_allocations() -> (u64, u64) {
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
    let counted = allocations_during(|| {
        for _ in 0..ROUNDS {
            round_trip(&mut answer);
        }
    });
    handle.shutdown();
    serving.join().unwrap().unwrap();
    counted
}

#[test]
fn echo_upper_round_trips_allocate_nothing() {
    // The counter itself works: a boxed value is one allocation.
    let (count, _) = allocations_during(|| drop(std::hint::black_box(Box::new(7u64))));
    assert!(count >= 1, "the counting allocator counts nothing");

    // And it sees what a server's threads allocate: a handler that builds
    // each answer in a new vector is caught on every round trip.
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
    let (count, _) = tcp_allocations(allocating, 1_000);
    assert!(
        count >= 1_000,
        "{count} allocation(s) for 1000 allocating round trips"
    );

    let (tcp, tcp_bytes) = tcp_allocations(EchoUpper, ROUNDS);
    let (reactor, reactor_bytes) = reactor_allocations(ROUNDS);
    let (udp, udp_bytes) = udp_allocations();
    assert!(
        tcp == 0 && reactor == 0 && udp == 0,
        "over {ROUNDS} round trips each: TCP (threads) made {tcp} allocation(s) ({tcp_bytes} \
         bytes), TCP (reactor) {reactor} ({reactor_bytes} bytes), UDP {udp} ({udp_bytes} \
         bytes); run with ZERO_ALLOC_TRACE=1 to see where"
    );
}
