//! The examples, run as a user runs them: each prints `listening on URL`,
//! serves, and stops on SIGINT with status 0.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;

use support::{ServerProcess, TempDir, STEP};

/// An example's binary. A plain `cargo test` builds the examples before the
/// tests; when only this test was asked for, it builds them itself.
fn example(name: &str) -> Command {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_socketserver"));
    let path = bin.parent().unwrap().join("examples").join(name);
    if !path.exists() {
        let built = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--examples"])
            .status()
            .expect("run cargo build --examples");
        assert!(built.success(), "cargo build --examples failed");
    }
    Command::new(path)
}

fn stops_cleanly(mut server: ServerProcess) {
    server.signal("INT");
    let status = server.wait(STEP).expect("the example exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn echo_upper_tcp() {
    let server = ServerProcess::start_with(example("echo_upper_tcp").arg("127.0.0.1:0"), 1);
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.write_all(b"Hello").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "HELLO");
    stops_cleanly(server);
}

#[test]
fn echo_upper_udp() {
    let server = ServerProcess::start_with(example("echo_upper_udp").arg("127.0.0.1:0"), 1);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    socket.send_to(b"datagram", server.addr()).unwrap();
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"DATAGRAM");
    stops_cleanly(server);
}

#[test]
fn per_connection_state() {
    let server = ServerProcess::start_with(example("per_connection_state").arg("127.0.0.1:0"), 1);
    let talk = |lines: &[&str]| -> Vec<String> {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        lines
            .iter()
            .map(|line| {
                writeln!(stream, "{line}").unwrap();
                let mut answer = String::new();
                reader.read_line(&mut answer).unwrap();
                answer.trim_end().to_string()
            })
            .collect()
    };
    assert_eq!(
        talk(&["a", "b", "bye"]),
        [
            "line 1 here, 1 in all",
            "line 2 here, 2 in all",
            "you sent 2 line(s)"
        ]
    );
    assert_eq!(
        talk(&["c", "bye"]),
        ["line 1 here, 3 in all", "you sent 1 line(s)"]
    );
    stops_cleanly(server);
}

#[test]
fn unix_socket() {
    let dir = TempDir::new("example-unix");
    let path = dir.join("reverse.sock");
    let server = ServerProcess::start_with(example("unix_socket").arg(&path), 1);
    assert_eq!(server.url(), format!("unix:{}", path.display()));
    let mut stream = UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.write_all(b"stressed\n").unwrap();
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).unwrap();
    assert_eq!(answer, "desserts\n");
    stops_cleanly(server);
    assert!(!path.exists(), "the socket file is removed on exit");
}
