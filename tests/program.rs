//! The program as a whole (SPEC section 3, rules 3, 6, 8): usage errors
//! exit 2, bind errors exit 1, with no panic; and `bench echo-upper`, the
//! load generator, against `serve echo-upper` over TCP (in both dispatch
//! modes) and UDP, and against wrong servers, whose errors it must catch.
//! Each service's own flags and errors are in its `service_*.rs` file.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::{program, run_with_input, serve, Mode, ServerProcess, STEP};

#[test]
fn usage_errors_exit_2_and_bind_errors_exit_1() {
    for args in [
        vec!["serve", "echo-upper", "--bind", "http://127.0.0.1:80"],
        vec!["serve", "echo-upper", "--bind", "tcp://127.0.0.1:99999"],
        vec!["serve", "echo-upper", "--threads", "many"],
        vec!["serve", "no-such-service"],
        vec!["serve", "echo-upper", "--dispatch", "forks"],
        vec!["frobnicate"],
    ] {
        let (status, _, err) = run_with_input(program().args(&args), b"");
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", taken.local_addr().unwrap());
    for mode in Mode::BOTH {
        let (status, _, err) = run_with_input(
            support::serve_command("echo-upper", mode, &["--bind", &url]).env("RUST_LOG", "off"),
            b"",
        );
        assert_eq!(status.code(), Some(1), "{mode:?}");
        assert!(
            err.starts_with(&format!("error: cannot bind {url}: ")),
            "{mode:?}: {err}"
        );
    }
}

/// Runs `socketserver bench echo-upper ARGS` (bounded by `STEP`); returns its
/// status, its final JSON line, and its whole standard output and error.
fn bench(args: &[&str]) -> (ExitStatus, Value, String, String) {
    let (status, stdout, stderr) =
        run_with_input(program().args(["bench", "echo-upper"]).args(args), b"");
    let stdout = String::from_utf8(stdout).expect("UTF-8 output");
    let last = stdout.lines().last().unwrap_or_default();
    let json: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line is not JSON ({e}): {stdout}\n{stderr}"));
    assert!(json.is_object(), "{last}");
    (status, json, stdout, stderr)
}

/// The fields every report has, with the right types.
fn assert_well_formed(json: &Value) {
    for field in ["service", "url", "transport", "mode"] {
        assert!(json[field].is_string(), "{field} in {json}");
    }
    for field in [
        "connections",
        "connected",
        "threads",
        "size",
        "requests",
        "errors",
        "lost",
    ] {
        assert!(json[field].is_u64(), "{field} in {json}");
    }
    for field in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(json["latency_us"][field].is_number(), "{field} in {json}");
    }
    for field in ["mismatch", "timeout", "closed", "connect", "io"] {
        assert!(json["error_kinds"][field].is_u64(), "{field} in {json}");
    }
    assert_eq!(json["service"], "echo-upper");
}

fn u64_of(json: &Value, field: &str) -> u64 {
    json[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {json}"))
}

const SHORT: [&str; 4] = ["--duration", "0.5", "--warmup", "0.1"];

crate::both_modes! {
    fn tcp_ping_pong_against_the_real_server(mode) {
        let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let (status, json, stdout, stderr) = bench(
            &[
                &["--connect", server.url(), "--connections", "8"][..],
                &SHORT,
            ]
            .concat(),
        );
        assert!(status.success(), "{stdout}\n{stderr}");
        assert_well_formed(&json);
        assert_eq!(json["transport"], "tcp");
        assert_eq!(json["mode"], "ping-pong");
        assert_eq!(u64_of(&json, "connected"), 8);
        assert_eq!(u64_of(&json, "errors"), 0, "{json}");
        assert!(u64_of(&json, "requests") > 0, "{json}");
        assert!(json["requests_per_sec"].as_f64().unwrap() > 0.0);
        let p50 = json["latency_us"]["p50"].as_f64().unwrap();
        let max = json["latency_us"]["max"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 <= max, "{json}");
        // The human summary comes first.
        assert!(stdout.contains("requests:"), "{stdout}");
        assert!(stdout.contains("p99"), "{stdout}");
    }

    fn large_messages_and_several_threads(mode) {
        let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let (status, json, stdout, stderr) = bench(
            &[
                &[
                    "--connect",
                    server.url(),
                    "-c",
                    "4",
                    "--threads",
                    "2",
                    "--size",
                    "100KiB",
                ][..],
                &SHORT,
            ]
            .concat(),
        );
        assert!(status.success(), "{stdout}\n{stderr}");
        assert_eq!(u64_of(&json, "size"), 100 * 1024);
        assert_eq!(u64_of(&json, "threads"), 2);
        assert_eq!(u64_of(&json, "errors"), 0, "{json}");
        assert!(u64_of(&json, "requests") > 0, "{json}");
    }

    fn connect_rate_against_the_real_server(mode) {
        let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let (status, json, stdout, stderr) = bench(
            &[
                &[
                    "--connect",
                    server.url(),
                    "--mode",
                    "connect-rate",
                    "-c",
                    "4",
                ][..],
                &SHORT,
            ]
            .concat(),
        );
        assert!(status.success(), "{stdout}\n{stderr}");
        assert_well_formed(&json);
        assert_eq!(json["mode"], "connect-rate");
        assert_eq!(u64_of(&json, "errors"), 0, "{json}");
        assert!(u64_of(&json, "requests") > 0, "{json}");
    }

    fn hold_checks_every_connection_and_watches_the_server(mode) {
        let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let pid = server.pid().to_string();
        let (status, json, stdout, stderr) = bench(&[
            "--connect",
            server.url(),
            "--mode",
            "hold",
            "-c",
            "200",
            "--duration",
            "0.2",
            "--watch-pid",
            &pid,
        ]);
        assert!(status.success(), "{stdout}\n{stderr}");
        assert_well_formed(&json);
        assert_eq!(json["mode"], "hold");
        assert_eq!(u64_of(&json, "errors"), 0, "{json}");
        assert_eq!(json["held"], 200, "{json}");
        assert_eq!(json["answered"], 200, "{json}");
        assert_eq!(u64_of(&json, "requests"), 200, "{json}");
        assert!(json["requests_per_sec"].is_null());
        let watched = &json["server"];
        assert_eq!(watched["pid"], server.pid());
        assert!(watched["rss_kib"].as_u64().unwrap() > 0, "{json}");
        let threads = watched["threads"].as_u64().unwrap();
        match mode {
            // A thread per held connection, at least.
            Mode::Threads => assert!(threads >= 200, "{json}"),
            // Event loops (one per CPU), the pool's core (one per CPU), and a
            // few threads of the server's own: none per connection.
            Mode::Reactor => {
                let cpus = thread::available_parallelism().map_or(1, |n| n.get()) as u64;
                assert!(threads <= 2 * cpus + cpus + 8, "{threads} threads: {json}");
            }
        }
    }
}

/// Datagrams: `--dispatch` changes nothing for them (SPEC rule 21), so
/// this runs once.
#[test]
fn udp_ping_pong_against_the_real_server() {
    let server = ServerProcess::start(&["serve", "echo-upper", "--bind", "udp://127.0.0.1:0"], 1);
    let (status, json, stdout, stderr) = bench(
        &[
            &["--connect", server.url(), "--connections", "4"][..],
            &SHORT,
        ]
        .concat(),
    );
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_well_formed(&json);
    assert_eq!(json["transport"], "udp");
    assert_eq!(u64_of(&json, "errors"), 0, "{json}");
    assert!(u64_of(&json, "requests") > 0, "{json}");
    assert!(stdout.contains("lost:"), "{stdout}");
}

/// A TCP server that echoes without uppercasing, for `connections`
/// connections; each ends when its client closes.
fn wrong_tcp_server(connections: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for _ in 0..connections {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            thread::spawn(move || {
                stream.set_read_timeout(Some(STEP)).unwrap();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("tcp://{addr}")
}

#[test]
fn wrong_answers_over_tcp_are_errors() {
    let url = wrong_tcp_server(2);
    let (status, json, stdout, stderr) =
        bench(&[&["--connect", &url, "-c", "2"][..], &SHORT].concat());
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    assert_well_formed(&json);
    let mismatches = json["error_kinds"]["mismatch"].as_u64().unwrap();
    assert!(mismatches > 0, "{json}");
    assert_eq!(u64_of(&json, "errors"), mismatches, "{json}");
    assert_eq!(u64_of(&json, "requests"), 0, "{json}");
    assert!(stderr.contains("error:"), "{stderr}");
}

#[test]
fn wrong_answers_over_udp_are_errors() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let url = format!("udp://{}", socket.local_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let echo = thread::spawn(move || {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = [0u8; 2048];
        while !stopped.load(Ordering::SeqCst) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                // Answers, but with one byte short.
                let _ = socket.send_to(&buf[..n.saturating_sub(1)], from);
            }
        }
    });
    let (status, json, stdout, stderr) =
        bench(&[&["--connect", &url, "-c", "2"][..], &SHORT].concat());
    stop.store(true, Ordering::SeqCst);
    echo.join().unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    let mismatches = json["error_kinds"]["mismatch"].as_u64().unwrap();
    assert!(mismatches > 0, "{json}");
    assert_eq!(u64_of(&json, "requests"), 0, "{json}");
}

#[test]
fn a_server_that_hangs_up_is_caught() {
    // Accepts and closes at once, without answering, until told to stop.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let closer = thread::spawn(move || {
        while let Ok((stream, _)) = listener.accept() {
            drop(stream);
            if stopped.load(Ordering::SeqCst) {
                return;
            }
        }
    });
    let url = format!("tcp://{addr}");
    let (status, json, stdout, stderr) = bench(&[
        "--connect",
        &url,
        "-c",
        "1",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--timeout",
        "1",
    ]);
    stop.store(true, Ordering::SeqCst);
    // Wakes the accept so that the thread sees the flag.
    let _ = TcpStream::connect_timeout(&addr, STEP);
    closer.join().unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        json["error_kinds"]["closed"].as_u64().unwrap() > 0,
        "{json}"
    );
    assert_eq!(u64_of(&json, "requests"), 0, "{json}");
}

#[test]
fn bench_usage_errors_exit_2() {
    for args in [
        &["--connect", "unix:/tmp/nowhere.sock"][..],
        &["--connect", "udp://127.0.0.1:9", "--mode", "hold"],
        &["--connect", "tcp://127.0.0.1:9", "--connections", "0"],
        &["--connect", "tcp://127.0.0.1:9", "--size", "0"],
        &["--connect", "udp://127.0.0.1:9", "--size", "70000"],
        &["--connect", "tcp://127.0.0.1:9", "--duration", "soon"],
    ] {
        let (status, _, stderr) =
            run_with_input(program().args(["bench", "echo-upper"]).args(args), b"");
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
