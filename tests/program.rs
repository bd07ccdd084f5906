//! The program as a whole (SPEC section 3, rules 3, 6, 8): usage errors
//! exit 2, bind errors exit 1, with no panic; and the load generator,
//! `bench echo-upper` and `bench chat`, against the real servers over TCP
//! (in both dispatch modes) and UDP, and against wrong servers, whose
//! errors it must catch. Each service's own flags and errors are in its
//! `service_*.rs` file.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
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

/// Runs `socketserver bench SERVICE ARGS --json` (bounded by `STEP`);
/// returns its status, its JSON report (the whole of its standard output),
/// and its standard output and error.
fn bench_service(service: &str, args: &[&str]) -> (ExitStatus, Value, String, String) {
    let (status, stdout, stderr) = run_with_input(
        program().args(["bench", service]).args(args).arg("--json"),
        b"",
    );
    let stdout = String::from_utf8(stdout).expect("UTF-8 output");
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout}\n{stderr}");
    let json: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the output is not JSON ({e}): {stdout}\n{stderr}"));
    assert!(json.is_object(), "{stdout}");
    (status, json, stdout, stderr)
}

/// `bench_service` for echo-upper.
fn bench(args: &[&str]) -> (ExitStatus, Value, String, String) {
    bench_service("echo-upper", args)
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
        "processes",
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
    assert!(json["sources"].is_array(), "{json}");
    // Only a coordinated child sends its histogram.
    assert!(json.get("latency_histogram").is_none(), "{json}");
}

fn u64_of(json: &Value, field: &str) -> u64 {
    json[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {json}"))
}

const SHORT: [&str; 4] = ["--duration", "0.5", "--warmup", "0.1"];

/// The server's threads while `connections` were held: a thread per
/// connection at least in threads mode; in reactor mode the event loops (one
/// per CPU), the pool's core (one per CPU) and a few threads of the
/// server's own, none per connection.
fn assert_thread_count(mode: Mode, threads: u64, connections: u64, json: &Value) {
    match mode {
        Mode::Threads => assert!(threads >= connections, "{threads} threads: {json}"),
        Mode::Reactor => {
            let cpus = thread::available_parallelism().map_or(1, |n| n.get()) as u64;
            assert!(
                threads <= 2 * cpus + cpus + 8 && threads < connections,
                "{threads} threads: {json}"
            );
        }
    }
}

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
        assert_eq!(json["service"], "echo-upper");
        // Nothing watched, nothing read.
        assert!(json["server"].is_null(), "{json}");
        assert!(json["server_cpu_s"].is_null(), "{json}");
    }

    fn without_json_the_summary_alone_is_printed(mode) {
        let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let pid = server.pid().to_string();
        let (status, stdout, stderr) = run_with_input(
            program()
                .args(["bench", "echo-upper", "--connect", server.url(), "-c", "2"])
                .args(["--watch-pid", &pid])
                .args(SHORT),
            b"",
        );
        let stdout = String::from_utf8(stdout).unwrap();
        assert!(status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("requests:"), "{stdout}");
        assert!(stdout.contains("p99"), "{stdout}");
        assert!(stdout.contains("server CPU:"), "{stdout}");
        assert!(stdout.contains("per request"), "{stdout}");
        assert!(
            stdout.lines().all(|line| !line.starts_with('{')),
            "{stdout}"
        );
    }

    fn the_server_cpu_per_request_is_measured(mode) {
        let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let pid = server.pid().to_string();
        let (status, json, stdout, stderr) = bench(&[
            "--connect",
            server.url(),
            "-c",
            "4",
            "--duration",
            "1",
            "--warmup",
            "0.1",
            "--watch-pid",
            &pid,
        ]);
        assert!(status.success(), "{stdout}\n{stderr}");
        assert_eq!(u64_of(&json, "errors"), 0, "{json}");
        let cpu = json["server_cpu_s"].as_f64().expect("server CPU seconds");
        // The server answered thousands of requests in a second: it used some
        // CPU, and no more than the two cores of the window.
        assert!(cpu > 0.0 && cpu < 4.0, "{json}");
        let per_request = json["server_cpu_us_per_request"].as_f64().unwrap();
        let requests = u64_of(&json, "requests") as f64;
        assert!(
            (per_request - cpu * 1e6 / requests).abs() < 1e-6 * per_request.max(1.0),
            "{json}"
        );
        let process = &json["server"]["processes"][0];
        assert_eq!(process["pid"], server.pid());
        assert!(process["cpu_s"].as_f64().unwrap() >= cpu, "{json}");
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
        assert_eq!(watched["pids"][0], server.pid());
        let rss = watched["rss_kib"].as_u64().unwrap();
        assert!(rss > 0, "{json}");
        assert_thread_count(mode, watched["threads"].as_u64().unwrap(), 200, &json);
        let per_connection = json["server_kib_per_connection"].as_f64().unwrap();
        assert!((per_connection - rss as f64 / 200.0).abs() < 1e-9, "{json}");
        // CPU over the hold and the check, none per request.
        assert!(json["server_cpu_s"].as_f64().unwrap() >= 0.0, "{json}");
        assert!(json["server_cpu_us_per_request"].is_null(), "{json}");
    }

    fn a_watched_process_that_is_gone_is_reported_not_fatal(mode) {
        let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        // A process that has exited (and been reaped): its /proc entry is gone.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let pid = gone.id().to_string();
        let (status, json, stdout, stderr) = bench(&[
            "--connect",
            server.url(),
            "--mode",
            "hold",
            "-c",
            "5",
            "--duration",
            "0",
            "--watch-pid",
            &pid,
        ]);
        assert!(status.success(), "{stdout}\n{stderr}");
        assert_eq!(json["answered"], 5, "{json}");
        assert!(json["server"].is_null(), "{json}");
        assert!(json["server_cpu_s"].is_null(), "{json}");
        let why = json["server_error"].as_str().unwrap();
        assert!(why.contains(&pid), "{json}");
    }

    fn hold_from_two_sources_in_two_processes(mode) {
        let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let pid = server.pid().to_string();
        let (status, json, stdout, stderr) = bench(&[
            "--connect",
            server.url(),
            "--mode",
            "hold",
            "-c",
            "50",
            "--duration",
            "0.2",
            "--sources",
            "127.0.0.1,127.0.0.2",
            "--processes",
            "2",
            "--watch-pid",
            &pid,
        ]);
        assert!(status.success(), "{stdout}\n{stderr}");
        assert_well_formed(&json);
        assert_eq!(u64_of(&json, "processes"), 2, "{json}");
        assert_eq!(u64_of(&json, "threads"), 2, "{json}");
        assert_eq!(
            json["sources"],
            serde_json::json!(["127.0.0.1", "127.0.0.2"])
        );
        assert_eq!(u64_of(&json, "connected"), 50, "{json}");
        assert_eq!(json["held"], 50, "{json}");
        assert_eq!(json["answered"], 50, "{json}");
        assert_eq!(u64_of(&json, "requests"), 50, "{json}");
        assert_eq!(u64_of(&json, "errors"), 0, "{json}");
        // The percentiles come from the children's merged histograms.
        let p50 = json["latency_us"]["p50"].as_f64().unwrap();
        let max = json["latency_us"]["max"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 <= max, "{json}");
        // The server was read once, while both processes held all 50.
        assert_thread_count(mode, json["server"]["threads"].as_u64().unwrap(), 50, &json);
        assert!(json["server_cpu_s"].as_f64().is_some(), "{json}");
    }

    fn chat_fan_out_reaches_every_member(mode) {
        let server = serve("chat", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let pid = server.pid().to_string();
        let (status, json, stdout, stderr) = bench_service(
            "chat",
            &["--connect", server.url(), "-c", "20", "--watch-pid", &pid],
        );
        assert!(status.success(), "{stdout}\n{stderr}");
        assert_eq!(json["service"], "chat");
        assert_eq!(json["mode"], "fan-out");
        assert_eq!(u64_of(&json, "connected"), 20, "{json}");
        assert_eq!(json["delivered"], 19, "{json}");
        assert_eq!(u64_of(&json, "requests"), 19, "{json}");
        assert_eq!(u64_of(&json, "errors"), 0, "{json}");
        let fanout_ms = json["fanout_ms"].as_f64().unwrap();
        let max_us = json["latency_us"]["max"].as_f64().unwrap();
        // The time to the last member is the slowest copy (the histogram keeps
        // three significant digits).
        assert!(fanout_ms > 0.0, "{json}");
        assert!(
            (max_us / 1000.0 - fanout_ms).abs() <= fanout_ms * 0.01,
            "{json}"
        );
        assert!(
            json["latency_us"]["p50"].as_f64().unwrap() <= max_us,
            "{json}"
        );
        assert_thread_count(mode, json["server"]["threads"].as_u64().unwrap(), 20, &json);
        assert!(json["server_cpu_s"].as_f64().is_some(), "{json}");
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
    // Datagrams lost on loopback are rare, and never more than were sent.
    assert!(
        u64_of(&json, "lost") <= u64_of(&json, "requests") + 4,
        "{json}"
    );
}

/// An echo-upper server written here, for `connections` connections, that
/// also tells which address each connection came from.
fn recording_tcp_server(connections: usize) -> (String, mpsc::Receiver<IpAddr>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for _ in 0..connections {
            let Ok((mut stream, peer)) = listener.accept() else {
                return;
            };
            let _ = tx.send(peer.ip());
            thread::spawn(move || {
                stream.set_read_timeout(Some(STEP)).unwrap();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    buf[..n].make_ascii_uppercase();
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("tcp://{addr}"), rx)
}

#[test]
fn connections_come_from_each_source_in_turn() {
    let (url, peers) = recording_tcp_server(6);
    let (status, json, stdout, stderr) = bench(&[
        "--connect",
        &url,
        "--mode",
        "hold",
        "-c",
        "6",
        "--duration",
        "0",
        "--sources",
        "127.0.0.2,127.0.0.3,127.0.0.4",
    ]);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(json["answered"], 6, "{json}");
    let mut seen: Vec<IpAddr> = (0..6).map(|_| peers.recv_timeout(STEP).unwrap()).collect();
    seen.sort();
    let expected: Vec<IpAddr> = [
        "127.0.0.2",
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.4",
    ]
    .iter()
    .map(|ip| ip.parse().unwrap())
    .collect();
    assert_eq!(seen, expected);
}

/// A "chat room" that gets the protocol wrong in the way `mangle` says: it
/// announces each join to the members before it, as a room does, and then
/// sends each member `mangle(NAME: LINE)` for the line a member says.
fn wrong_chat_room(members: usize, mangle: fn(&str) -> String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let mut streams: Vec<TcpStream> = Vec::new();
        let mut names = Vec::new();
        for _ in 0..members {
            let Ok((stream, peer)) = listener.accept() else {
                return;
            };
            for earlier in &mut streams {
                let _ = writeln!(earlier, "* {peer} joined");
            }
            streams.push(stream);
            names.push(peer.to_string());
        }
        let (tx, rx) = mpsc::channel();
        for (i, stream) in streams.iter().enumerate() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let tx = tx.clone();
            let name = names[i].clone();
            thread::spawn(move || {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let _ = tx.send((i, format!("{name}: {}", line.trim_end())));
                }
            });
        }
        // Only the readers send from here on: when the bench has closed
        // every member, the channel is closed too.
        drop(tx);
        if let Ok((from, said)) = rx.recv_timeout(STEP) {
            for (i, stream) in streams.iter_mut().enumerate() {
                if i != from {
                    let _ = writeln!(stream, "{}", mangle(&said));
                }
            }
        }
        // Held open until the bench has closed every member.
        while rx.recv_timeout(STEP).is_ok() {}
    });
    format!("tcp://{addr}")
}

#[test]
fn a_chat_room_that_mangles_the_line_is_caught() {
    let mangles: [fn(&str) -> String; 3] = [
        |said| said.to_uppercase(),
        |said| format!("{said}\n{said}"),
        |said| format!("* someone left\n{said}"),
    ];
    for mangle in mangles {
        let url = wrong_chat_room(4, mangle);
        let (status, json, stdout, stderr) =
            bench_service("chat", &["--connect", &url, "-c", "4", "--timeout", "2"]);
        assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
        let mismatches = json["error_kinds"]["mismatch"].as_u64().unwrap();
        assert!(mismatches > 0, "{json}");
        assert!(stderr.contains("error:"), "{stderr}");
    }
    // The right room, written the same way, passes.
    let url = wrong_chat_room(4, |said| said.to_string());
    let (status, json, stdout, stderr) =
        bench_service("chat", &["--connect", &url, "-c", "4", "--timeout", "2"]);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_eq!(json["delivered"], 3, "{json}");
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
        &["--connect", "tcp://127.0.0.1:9", "--processes", "2"],
        &[
            "--connect",
            "tcp://127.0.0.1:9",
            "--mode",
            "hold",
            "-c",
            "2",
            "--processes",
            "3",
        ],
        &[
            "--connect",
            "tcp://127.0.0.1:9",
            "--mode",
            "hold",
            "--processes",
            "0",
        ],
        &["--connect", "tcp://127.0.0.1:9", "--sources", "::1"],
        &["--connect", "tcp://127.0.0.1:9", "--sources", "nowhere"],
        &["--connect", "udp://127.0.0.1:9", "--sources", "127.0.0.1"],
    ] {
        let (status, _, stderr) =
            run_with_input(program().args(["bench", "echo-upper"]).args(args), b"");
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    for args in [
        &["--connect", "udp://127.0.0.1:9"][..],
        &["--connect", "tcp://127.0.0.1:9", "--mode", "hold"],
        &["--connect", "tcp://127.0.0.1:9", "-c", "1"],
        &["--connect", "tcp://127.0.0.1:9", "--threads", "2"],
    ] {
        let (status, _, stderr) = run_with_input(program().args(["bench", "chat"]).args(args), b"");
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("error"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
