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

mod usability {
    //! The examples as a new user meets them: a handler's error is logged with
    //! its client and what it means, a failure in `main` is one readable line,
    //! and the default addresses stay clear of the program's services.

    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::path::PathBuf;
    use std::process::Command;

    use crate::support::{run_with_input, ServerProcess, TempDir, STEP};

    /// An example's binary, built once per run (`cargo test --test NAME` does
    /// not build the examples, and an old binary would test old code). With the
    /// features CI tests with, after a plain `cargo test --all-features` the
    /// build finds nothing to do.
    fn example(name: &str) -> Command {
        static BUILT: std::sync::Once = std::sync::Once::new();
        BUILT.call_once(|| {
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .args(["build", "--quiet", "--examples", "--all-features"])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            // What cargo sets for a test process, not for a build: a build
            // script that watches one of these (ring's) would run again, and
            // everything after it be rebuilt.
            for (name, _) in std::env::vars() {
                let for_the_test = [
                    "CARGO_PKG_",
                    "CARGO_MANIFEST_",
                    "CARGO_CRATE_",
                    "CARGO_BIN_",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ];
                if for_the_test.iter().any(|prefix| name.starts_with(prefix)) {
                    cargo.env_remove(name);
                }
            }
            let built = cargo.status().expect("run cargo build --examples");
            assert!(built.success(), "cargo build --examples failed");
        });
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_socketserver"));
        let mut command = Command::new(bin.parent().unwrap().join("examples").join(name));
        command.env_remove("RUST_LOG");
        command
    }

    #[test]
    fn a_handler_error_is_logged_with_its_client_and_what_it_means() {
        let dir = TempDir::new("examples-log");
        let mut server = ServerProcess::start_with(
            example("records")
                .arg("127.0.0.1:0")
                .arg(dir.join("records.txt")),
            1,
        );
        let mut client = TcpStream::connect(server.addr()).unwrap();
        client.set_read_timeout(Some(STEP)).unwrap();
        let me = client.local_addr().unwrap();
        // A line over the example's 64 KiB limit: its handler returns an error.
        client.write_all(&vec![b'x'; 70 * 1024]).unwrap();
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        server.signal("INT");
        assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
        let log = server.stderr_text();
        let line = log
            .lines()
            .find(|l| l.contains("handler error"))
            .unwrap_or_else(|| panic!("no handler error logged: {log}"));
        assert!(line.contains(" WARN "), "{line}");
        assert!(
            line.ends_with(&format!(
                "{me}: handler error: line too long (invalid data); request abandoned"
            )),
            "{line}"
        );
        // The default level shows the server's life too.
        assert!(log.contains("listening on tcp://127.0.0.1:"), "{log}");
        assert!(log.contains("shut down: served 1 request"), "{log}");
    }

    #[test]
    fn rust_log_still_chooses_the_level() {
        let mut command = example("echo_upper_tcp");
        command.arg("127.0.0.1:0").env("RUST_LOG", "warn");
        let mut server = ServerProcess::start_with(&mut command, 1);
        server.signal("INT");
        assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
        let log = server.stderr_text();
        assert!(!log.contains("INFO"), "{log}");
    }

    /// Runs an example to the end; its exit code and standard error.
    fn fails(command: &mut Command) -> (Option<i32>, String) {
        let (status, stdout, stderr) = run_with_input(command, b"");
        assert!(stdout.is_empty(), "{}", String::from_utf8_lossy(&stdout));
        (status.code(), stderr)
    }

    #[test]
    fn a_failure_in_main_is_one_readable_line() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let in_use =
            format!("error: cannot listen on {addr}: Address already in use (os error 98)\n");
        for name in ["echo_upper_tcp", "per_connection_state", "records"] {
            let dir = TempDir::new("examples-main");
            let (code, stderr) = fails(
                example(name)
                    .arg(&addr)
                    .arg(dir.join("records.txt"))
                    .current_dir(&dir.0),
            );
            assert_eq!(code, Some(1), "{name}");
            assert_eq!(stderr, in_use, "{name}");
        }
        let taken_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken_udp.local_addr().unwrap().to_string();
        let (code, stderr) = fails(example("echo_upper_udp").arg(&addr));
        assert_eq!(code, Some(1));
        assert_eq!(
            stderr,
            format!("error: cannot listen on {addr}: Address already in use (os error 98)\n")
        );
        let dir = TempDir::new("examples-unix");
        let path = dir.join("missing").join("reverse.sock");
        let (code, stderr) = fails(example("unix_socket").arg(&path));
        assert_eq!(code, Some(1));
        assert_eq!(
            stderr,
            format!(
                "error: cannot listen on {}: No such file or directory (os error 2)\n",
                path.display()
            )
        );
    }

    #[test]
    fn the_examples_default_ports_are_not_the_programs() {
        // The program's services listen on 9000 to 9005 and 8000 by default;
        // an example started beside them must not collide.
        let program_ports: Vec<u16> = (9000..=9005).chain([8000]).collect();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&root).unwrap() {
            let path = entry.unwrap().path();
            let source = std::fs::read_to_string(&path).unwrap();
            for default in source.split("\"127.0.0.1:").skip(1) {
                let port: u16 = default
                    .split('"')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("{}: an address without a port", path.display()));
                assert!(
                    !program_ports.contains(&port),
                    "{} defaults to port {port}, a service's",
                    path.display()
                );
                seen += 1;
            }
        }
        assert!(seen >= 4, "every IP example has a default address: {seen}");
    }
}
