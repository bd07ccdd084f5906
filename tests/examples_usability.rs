//! The examples as a new user meets them: a handler's error is logged with
//! its client and what it means, a failure in `main` is one readable line,
//! and the default addresses stay clear of the program's services.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;

use support::{run_with_input, ServerProcess, TempDir, STEP};

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
    let in_use = format!("error: cannot listen on {addr}: Address already in use (os error 98)\n");
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
