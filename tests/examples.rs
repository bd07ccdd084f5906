//! The examples, as a user runs them: each prints `listening on URL`,
//! serves, and stops on SIGINT with status 0; and `examples/records.rs`'s
//! handler, compiled into this test and served in-process. (The examples
//! are request handlers on thread pools: threads mode is theirs.)

#[allow(dead_code)] // its `main` is for `cargo run --example records`
#[path = "../examples/records.rs"]
mod records;

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::thread;

use records::Records;
use socketserver::ThreadingTcpServer;
use support::{ServerProcess, TempDir, STEP};

/// An example's binary, next to this test's own directory
/// (`target/debug/examples/`). A plain `cargo test` builds the examples
/// before the tests; when only this test was asked for, it builds them
/// itself.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test's own path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/PROFILE/deps")
        .join("examples")
        .join(name);
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

/// Sends `input` as one session and returns the server's answer.
fn session(addr: std::net::SocketAddr, input: &[u8]) -> String {
    let mut stream = support::connect(addr);
    stream.write_all(input).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn echo_upper_tcp() {
    let server = ServerProcess::start_with(example("echo_upper_tcp").arg("127.0.0.1:0"), 1);
    let mut stream = support::connect(server.addr());
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
        let mut stream = support::connect(server.addr());
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

#[test]
fn records_appends_lines_and_answers_the_count_after_syncing() {
    let dir = TempDir::new("records");
    let path = dir.join("records.txt");
    let server = ThreadingTcpServer::bind("127.0.0.1:0", Records { path: path.clone() }).unwrap();
    let addr = server.local_addr().as_inet().unwrap();
    let handle = server.handle();
    let serving = thread::spawn(move || server.serve_forever());

    assert_eq!(session(addr, b"first\nsecond\r\nthird\n#\n"), "3\n");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "first\nsecond\nthird\n"
    );
    assert_eq!(session(addr, b"fourth\n#\n"), "1\n");
    assert_eq!(session(addr, b"#\n"), "0\n");
    // A client that leaves without '#' keeps what it sent, and gets no count.
    let mut stream = support::connect(addr);
    stream.write_all(b"fifth\n").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut nothing = String::new();
    stream.read_to_string(&mut nothing).unwrap();
    assert_eq!(nothing, "");
    // Sessions at once each count their own lines; lines never interleave.
    let workers: Vec<_> = (0..4)
        .map(|w| {
            thread::spawn(move || {
                let lines: String = (0..50).map(|i| format!("worker{w} line{i}\n")).collect();
                session(addr, format!("{lines}#\n").as_bytes())
            })
        })
        .collect();
    for worker in workers {
        assert_eq!(worker.join().unwrap(), "50\n");
    }
    // A line over the limit ends the session (the handler returns an error,
    // which the server logs); nothing of it is recorded.
    let mut stream = support::connect(addr);
    let _ = stream.write_all(&vec![b'x'; 100_000]); // may be cut short by the close
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty()),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }

    handle.shutdown();
    serving.join().unwrap().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3 + 1 + 1 + 200);
    assert!(lines.iter().all(|l| *l == "first"
        || l.starts_with("worker")
        || ["second", "third", "fourth", "fifth"].contains(l)));
    for w in 0..4 {
        let mine: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("worker{w} ")))
            .collect();
        assert_eq!(mine.len(), 50);
        assert!(
            mine.iter()
                .enumerate()
                .all(|(i, l)| **l == format!("worker{w} line{i}")),
            "in order"
        );
    }
}

#[test]
fn the_records_binary_serves_and_stops_on_ctrl_c() {
    let dir = TempDir::new("records-bin");
    let path = dir.join("saved.txt");
    let mut server = ServerProcess::start_with(
        example("records").args(["127.0.0.1:0", path.to_str().unwrap()]),
        1,
    );
    let addr = server.addr().parse().unwrap();
    assert_eq!(session(addr, b"alpha\nbeta\n#\n"), "2\n");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "alpha\nbeta\n");
    server.signal("INT");
    let status = server.wait(STEP).expect("the example exits");
    assert_eq!(status.code(), Some(0));
}
