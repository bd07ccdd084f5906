//! Micro-benchmarks of the pieces on a request's path: the echo-upper
//! transform, a JSON header round trip, timing a request into the duration
//! histogram, and handing a request to the thread pool (a UDP round trip
//! through a threading server against one that handles on its serving
//! thread).
//!
//! `cargo bench --bench micro` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use socketserver::ops::histogram::Histogram;
use socketserver::services::EchoUpper;
use socketserver::{Options, ServerHandle, ThreadingUdpServer, UdpServer};

fn text(len: usize) -> Vec<u8> {
    b"Hello, World! the quick brown fox 0123456789 "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// What echo-upper does to every byte: in place, as the service does it,
/// and into a new vector, as a handler that allocates would.
fn echo_upper_transform(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo_upper_transform");
    for len in [64usize, 16 * 1024] {
        let input = text(len);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("in_place", len), &input, |b, input| {
            let mut buf = input.clone();
            b.iter(|| {
                buf.copy_from_slice(input);
                buf.make_ascii_uppercase();
                black_box(&buf);
            })
        });
        group.bench_with_input(BenchmarkId::new("allocating", len), &input, |b, input| {
            b.iter(|| black_box(input.to_ascii_uppercase()))
        });
    }
    group.finish();
}

/// A JSON header as the files service's put request carries it.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Header {
    op: String,
    file_name: String,
    file_size: u64,
    sha256: Option<String>,
}

/// A JSON-header message's head: the header encoded, behind a 4-byte
/// little-endian length (Python's `struct.pack('i', n)`), then read back.
fn json_header_round_trip(c: &mut Criterion) {
    let header = Header {
        op: "put".into(),
        file_name: "holiday-photo.jpg".into(),
        file_size: 1_234_567,
        sha256: Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
    };
    let mut group = c.benchmark_group("json_header");
    group.bench_function("encode_frame_decode", |b| {
        let mut wire = Vec::with_capacity(256);
        b.iter(|| {
            wire.clear();
            wire.extend_from_slice(&[0; 4]);
            serde_json::to_writer(&mut wire, black_box(&header)).unwrap();
            let len = (wire.len() - 4) as u32;
            wire[..4].copy_from_slice(&len.to_le_bytes());
            let len = u32::from_le_bytes(wire[..4].try_into().unwrap()) as usize;
            let back: Header = serde_json::from_slice(&wire[4..4 + len]).unwrap();
            black_box(back)
        })
    });
    group.bench_function("decode_value", |b| {
        let body = serde_json::to_vec(&header).unwrap();
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(&body).unwrap()))
    });
    group.finish();
}

/// A server on its own thread, shut down on drop.
struct Running(ServerHandle, Option<thread::JoinHandle<()>>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.shutdown();
        if let Some(thread) = self.1.take() {
            let _ = thread.join();
        }
    }
}

fn client(addr: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
}

fn round_trip(socket: &UdpSocket, request: &[u8], answer: &mut [u8]) {
    socket.send(request).unwrap();
    let n = socket.recv(answer).unwrap();
    assert_eq!(n, request.len());
}

/// One UDP echo-upper round trip: through the pool (the serving thread
/// receives, a worker handles and replies) and without it (the serving thread
/// does everything). The difference is what handing a request to the pool
/// costs, wake-up of the worker included.
fn pool_dispatch(c: &mut Criterion) {
    let request = text(64);
    let mut answer = [0u8; 128];
    let mut group = c.benchmark_group("udp_round_trip");

    let server = UdpServer::bind("127.0.0.1:0", EchoUpper).unwrap();
    let addr = server.local_addr().as_inet().unwrap();
    let running = Running(
        server.handle(),
        Some(thread::spawn(move || {
            server.serve_forever().unwrap();
        })),
    );
    let socket = client(addr);
    group.bench_function("serving_thread", |b| {
        b.iter(|| round_trip(&socket, &request, &mut answer))
    });
    drop(running);

    let options = Options::new().threads(1).max_threads(1);
    let server = ThreadingUdpServer::bind_with("127.0.0.1:0", EchoUpper, options).unwrap();
    let addr = server.local_addr().as_inet().unwrap();
    let running = Running(
        server.handle(),
        Some(thread::spawn(move || {
            server.serve_forever().unwrap();
        })),
    );
    let socket = client(addr);
    group.bench_function("thread_pool", |b| {
        b.iter(|| round_trip(&socket, &request, &mut answer))
    });
    drop(running);
    group.finish();
}

/// What every request pays for `socketserver_request_duration_seconds`: an
/// observation alone, and with the two clock reads around the request.
fn request_timing(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_timing");
    let histogram = Histogram::new();
    group.bench_function("observe", |b| {
        let mut micros = 0u64;
        b.iter(|| {
            micros = (micros + 37) % 200_000;
            histogram.observe(Duration::from_micros(black_box(micros)));
        })
    });
    group.bench_function("clock_and_observe", |b| {
        b.iter(|| {
            let started = std::time::Instant::now();
            histogram.observe(black_box(started).elapsed());
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    echo_upper_transform,
    json_header_round_trip,
    request_timing,
    pool_dispatch
);
criterion_main!(benches);
