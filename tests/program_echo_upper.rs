//! The program: `serve echo-upper` and `client echo-upper`, exit codes and
//! signals.

mod support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use support::{program, run_with_input, ServerProcess, TempDir, STEP};

#[test]
fn serves_tcp_udp_and_unix_at_once() {
    let dir = TempDir::new("echo-upper");
    let sock = dir.join("echo.sock");
    let unix = format!("unix:{}", sock.display());
    let server = ServerProcess::start(
        &[
            "serve",
            "echo-upper",
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

#[test]
fn sigterm_drains_and_exits_zero_and_removes_the_socket_file() {
    let dir = TempDir::new("echo-upper-term");
    let sock = dir.join("e.sock");
    let unix = format!("unix:{}", sock.display());
    let mut server = ServerProcess::start(
        &[
            "serve",
            "echo-upper",
            "--bind",
            "tcp://127.0.0.1:0",
            "--bind",
            &unix,
        ],
        2,
    );
    let addr = server.addr();
    // A client in the middle of a conversation when the signal comes.
    let mut client = TcpStream::connect(&addr).unwrap();
    client.set_read_timeout(Some(STEP)).unwrap();
    client.write_all(b"before").unwrap();
    let mut buf = [0u8; 6];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"BEFORE");
    server.signal("TERM");
    // New connections are refused once the listener is closed.
    let deadline = std::time::Instant::now() + STEP;
    while TcpStream::connect(&addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The in-flight client is still served, then ends its input.
    client.write_all(b"after").unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"AFTER");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let status = server.wait(STEP).expect("the server exits");
    assert_eq!(status.code(), Some(0));
    assert!(!sock.exists(), "the Unix socket file is removed on exit");
}

#[test]
fn second_interrupt_exits_130() {
    let mut server = ServerProcess::start(
        &[
            "serve",
            "echo-upper",
            "--bind",
            "tcp://127.0.0.1:0",
            "--shutdown-timeout",
            "30",
        ],
        1,
    );
    // A connection that never ends keeps the drain waiting.
    let client = TcpStream::connect(server.addr()).unwrap();
    let mut probe = TcpStream::connect(server.addr()).unwrap();
    probe.set_read_timeout(Some(STEP)).unwrap();
    probe.write_all(b"x").unwrap();
    let mut one = [0u8; 1];
    probe.read_exact(&mut one).unwrap(); // the server is up and serving
    server.signal("INT");
    let first = std::time::Instant::now();
    // Wait until the first signal took effect: the listener is closed.
    let deadline = std::time::Instant::now() + STEP;
    while TcpStream::connect(server.addr()).is_ok() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    // Signals within 100 ms of the first count as the first (SPEC rule 1):
    // the second Ctrl-C comes later than that.
    std::thread::sleep(Duration::from_millis(200).saturating_sub(first.elapsed()));
    server.signal("INT");
    let status = server.wait(STEP).expect("the server exits");
    assert_eq!(status.code(), Some(130));
    drop(client);
}

#[test]
fn udp_empty_datagram_gets_empty_reply() {
    let server = ServerProcess::start(&["serve", "echo-upper", "--bind", "udp://127.0.0.1:0"], 1);
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

#[test]
fn usage_errors_exit_2_and_bind_errors_exit_1() {
    for args in [
        vec!["serve", "echo-upper", "--bind", "http://127.0.0.1:80"],
        vec!["serve", "echo-upper", "--bind", "tcp://127.0.0.1:99999"],
        vec!["serve", "echo-upper", "--threads", "many"],
        vec!["serve", "no-such-service"],
        vec!["frobnicate"],
    ] {
        let (status, _, err) = run_with_input(program().args(&args), b"");
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", taken.local_addr().unwrap());
    let (status, _, err) = run_with_input(
        program()
            .args(["serve", "echo-upper", "--bind", &url])
            .env("RUST_LOG", "off"),
        b"",
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        err.starts_with(&format!("error: cannot bind {url}: ")),
        "{err}"
    );
}
