//! echo-upper (SPEC section 4, rule 12) through the program: every
//! transport at once, the client command, datagrams up to the largest, and a
//! client that never reads. Stream tests run in both dispatch modes; the
//! server's lifecycle (signals, drain, limits) is in `server_lifecycle.rs`,
//! the load generator in `program.rs`.

mod support;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::time::Duration;

use support::{program, run_with_input, serve, TempDir, STEP};

crate::both_modes! {
    fn serves_tcp_udp_and_unix_at_once(mode) {
        let dir = TempDir::new("echo-upper");
        let sock = dir.join("echo.sock");
        let unix = format!("unix:{}", sock.display());
        let server = serve(
            "echo-upper",
            mode,
            &[
                "--bind",
                "tcp://127.0.0.1:0",
                "--bind",
                "udp://127.0.0.1:0",
                "--bind",
                &unix,
            ],
            3,
        );
        assert!(server.urls[0].starts_with("tcp://127.0.0.1:"));
        assert!(server.urls[1].starts_with("udp://127.0.0.1:"));
        assert_eq!(server.urls[2], unix);

        let (status, out, _) = run_with_input(
            program().args(["client", "echo-upper", "--connect", &server.urls[0]]),
            b"hello, World 123\n",
        );
        assert!(status.success());
        assert_eq!(out, b"HELLO, WORLD 123\n");

        let (status, out, _) = run_with_input(
            program().args([
                "client",
                "echo-upper",
                "--connect",
                &server.urls[1],
                "abc",
                "dEf",
            ]),
            b"",
        );
        assert!(status.success());
        assert_eq!(out, b"ABC\nDEF\n");

        let (status, out, _) = run_with_input(
            program().args(["client", "echo-upper", "--connect", &unix]),
            b"unix\n",
        );
        assert!(status.success());
        assert_eq!(out, b"UNIX\n");
    }

    /// A client that sends and never reads holds the only worker (threads)
    /// or fills its own output (reactor) until the write timeout, never
    /// another client's answer.
    fn a_client_that_never_reads_does_not_keep_another_out(mode) {
        let echo = serve(
            "echo-upper",
            mode,
            &[
                "--bind",
                "tcp://127.0.0.1:0",
                "--threads",
                "1",
                "--max-threads",
                "1",
                "--write-timeout",
                "1",
            ],
            1,
        );
        let mut flooder = support::connect(echo.addr());
        flooder
            .set_write_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let chunk = vec![b'a'; 1 << 16];
        // Writes until both directions' buffers are full (the server stops
        // reading while its own write is blocked), then gives up.
        let mut sent = 0usize;
        while flooder.write_all(&chunk).is_ok() && sent < 256 << 20 {
            sent += chunk.len();
        }
        let mut honest = support::connect(echo.addr());
        honest.write_all(b"served").unwrap();
        let mut answer = [0u8; 6];
        honest.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"SERVED");
        drop(flooder);
    }
}

// Datagrams: `--dispatch` changes nothing for them (SPEC rule 21), so
// these run once.

/// `--listener-per-loop`: every TCP loop accepts on its own listener
/// (the Unix one keeps a single listener), the same bytes come back, and
/// SIGTERM still exits 0.
#[test]
fn a_listener_per_loop_serves_tcp_and_unix_alike() {
    let dir = TempDir::new("echo-upper-per-loop");
    let sock = dir.join("echo.sock");
    let unix = format!("unix:{}", sock.display());
    let mut server = serve(
        "echo-upper",
        support::Mode::Reactor,
        &[
            "--bind",
            "tcp://127.0.0.1:0",
            "--bind",
            &unix,
            "--reactor-threads",
            "2",
            "--listener-per-loop",
        ],
        2,
    );
    let port: u16 = server.urls[0].rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(support::net::listening_on(port), 2, "one listener per loop");
    for url in [&server.urls[0], &unix] {
        for _ in 0..4 {
            let (status, out, _) = run_with_input(
                program().args(["client", "echo-upper", "--connect", url]),
                b"per loop\n",
            );
            assert!(status.success(), "{url}");
            assert_eq!(out, b"PER LOOP\n", "{url}");
        }
    }
    server.terminate();
    assert_eq!(support::net::listening_on(port), 0);
}

#[test]
fn udp_empty_datagram_gets_empty_reply_and_the_largest_is_whole() {
    let server =
        support::ServerProcess::start(&["serve", "echo-upper", "--bind", "udp://127.0.0.1:0"], 1);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    socket.connect(server.addr()).unwrap();
    socket.send(b"").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(socket.recv(&mut buf).unwrap(), 0);
    let big = vec![b'a'; 65_507];
    socket.send(&big).unwrap();
    let mut buf = vec![0u8; 70_000];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(n, 65_507);
    assert!(buf[..n].iter().all(|&b| b == b'A'));
}
