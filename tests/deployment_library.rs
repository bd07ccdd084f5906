//! The deployment capabilities as a Rust program uses them, in both
//! dispatch modes: `ServerHandle::metrics`, `Readiness` with
//! `Options::drain_delay` and `ServerHandle::drain`, and
//! `Server::from_listener`.
//!
//! `cargo test --all-features --test deployment_library`

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socketserver::services::EchoUpper;
use socketserver::{Options, ReactorTcpServer, Readiness, ReadinessState, ThreadingTcpServer};
use support::{eventually, run_messages, Mode, Running, STEP};

fn round_trip(server: &Running, text: &str) {
    let mut stream = TcpStream::connect(server.inet()).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    let mut answer = vec![0u8; text.len()];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(answer, text.to_ascii_uppercase().as_bytes());
}

both_modes! {
    fn metrics_count_each_request_once(mode) {
        let server = run_messages(mode, EchoUpper, Options::new());
        let empty = server.handle.metrics();
        assert_eq!(empty.durations.count, 0);
        assert_eq!(empty.url, format!("tcp://{}", server.inet()));

        // One open connection with one message answered.
        let mut open = TcpStream::connect(server.inet()).unwrap();
        open.set_read_timeout(Some(STEP)).unwrap();
        open.write_all(b"one").unwrap();
        let mut three = [0u8; 3];
        open.read_exact(&mut three).unwrap();
        let metrics = server.handle.metrics();
        assert_eq!(metrics.connections_open, 1);
        match mode {
            // A request is the connection: in flight until it ends.
            Mode::Threads => assert_eq!(metrics.requests_in_flight, 1),
            // A request is the message: answered, so none in flight.
            Mode::Reactor => {
                assert_eq!(metrics.requests_in_flight, 0);
                assert_eq!(metrics.durations.count, 1);
            }
        }
        open.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        open.read_to_end(&mut rest).unwrap();
        for n in 0..4 {
            round_trip(&server, &format!("request {n}"));
        }
        eventually("every connection to end", || server.handle.metrics().connections_open == 0);
        let metrics = server.handle.metrics();
        assert_eq!(metrics.durations.count, 5);
        assert_eq!(metrics.stats.served, 5);
        assert_eq!(metrics.requests_in_flight, 0);
        // Each duration is in the buckets, and the sum is positive.
        assert_eq!(metrics.durations.cumulative_counts[15] , 5);
        assert!(metrics.durations.sum_seconds > 0.0);
    }

    fn drain_turns_readiness_then_shuts_down_after_the_delay(mode) {
        let delay = Duration::from_millis(400);
        let readiness = Readiness::new();
        let hooks = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hooks);
        readiness.on_drain(move || {
            counted.fetch_add(1, SeqCst);
        });
        let options = Options::new().drain_delay(delay).readiness(readiness.clone());
        let mut server = run_messages(mode, EchoUpper, options);
        assert!(server.handle.is_ready());
        round_trip(&server, "before");
        let drained = Instant::now();
        server.handle.drain();
        assert_eq!(readiness.state(), ReadinessState::Draining);
        assert!(!server.handle.is_ready());
        assert!(server.handle.readiness().same_as(&readiness));
        assert_eq!(hooks.load(SeqCst), 1);
        // Still accepting and serving during the delay.
        round_trip(&server, "during the delay");
        assert!(drained.elapsed() < delay, "inconclusive: the round trip outlasted the delay");
        assert!(!server.handle.is_shutdown());
        let summary = server.join();
        assert!(drained.elapsed() >= delay, "shut down after {:?}", drained.elapsed());
        assert!(server.handle.is_shutdown());
        assert_eq!(summary.rejected, 0);
        assert_eq!(hooks.load(SeqCst), 1, "the hooks run once");
    }

    fn a_shutdown_turns_readiness_too(mode) {
        let server = run_messages(mode, EchoUpper, Options::new());
        let readiness = server.handle.readiness().clone();
        assert!(readiness.is_ready());
        server.stop();
        assert_eq!(readiness.state(), ReadinessState::Draining);
    }

    fn a_server_serves_on_a_socket_it_was_given(mode) {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let server = match mode {
            Mode::Threads => Running::start(
                ThreadingTcpServer::from_listener(socket, EchoUpper, Options::new()).unwrap(),
            ),
            Mode::Reactor => Running::start(
                ReactorTcpServer::from_listener(socket, EchoUpper, Options::new()).unwrap(),
            ),
        };
        assert_eq!(server.inet(), addr);
        round_trip(&server, "given");
        assert_eq!(server.handle.url(), format!("tcp://{addr}"));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let refused = ThreadingTcpServer::from_listener(udp, EchoUpper, Options::new()).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
    }
}
