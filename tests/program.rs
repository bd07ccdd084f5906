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
use support::{program, run_with_input, run_with_input_within, serve, Mode, ServerProcess, STEP};

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

/// Runs `socketserver bench SERVICE ARGS --json` (bounded by a minute);
/// returns its status, its JSON report (the whole of its standard output),
/// and its standard output and error. Unless `args` set one, an answer may
/// take 15 s (not the bench's 5 s): these tests check what is answered, and
/// a loaded CI machine is slow.
fn bench_service(service: &str, args: &[&str]) -> (ExitStatus, Value, String, String) {
    let mut command = program();
    command.args(["bench", service]).args(args).arg("--json");
    if !args.contains(&"--timeout") {
        command.args(["--timeout", "15"]);
    }
    let (status, stdout, stderr) =
        run_with_input_within(&mut command, b"", Duration::from_secs(60));
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

/// The report of an echo-upper `bench` run that must succeed, checked for
/// the fields every report has.
fn successful_bench(args: &[&str]) -> Value {
    let (status, json, stdout, stderr) = bench(args);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert_well_formed(&json);
    json
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
        let json = successful_bench(
            &[
                &["--connect", server.url(), "--connections", "8"][..],
                &SHORT,
            ]
            .concat(),
        );
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
        let json = successful_bench(&[
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
        let json = successful_bench(
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
        assert_eq!(u64_of(&json, "size"), 100 * 1024);
        assert_eq!(u64_of(&json, "threads"), 2);
        assert_eq!(u64_of(&json, "errors"), 0, "{json}");
        assert!(u64_of(&json, "requests") > 0, "{json}");
    }

    fn connect_rate_against_the_real_server(mode) {
        let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let json = successful_bench(
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
        assert_eq!(json["mode"], "connect-rate");
        assert_eq!(u64_of(&json, "errors"), 0, "{json}");
        assert!(u64_of(&json, "requests") > 0, "{json}");
    }

    fn hold_checks_every_connection_and_watches_the_server(mode) {
        let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let pid = server.pid().to_string();
        let json = successful_bench(&[
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
        let json = successful_bench(&[
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
        assert_eq!(json["answered"], 5, "{json}");
        assert!(json["server"].is_null(), "{json}");
        assert!(json["server_cpu_s"].is_null(), "{json}");
        let why = json["server_error"].as_str().unwrap();
        assert!(why.contains(&pid), "{json}");
    }

    fn hold_from_two_sources_in_two_processes(mode) {
        let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let pid = server.pid().to_string();
        let json = successful_bench(&[
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
    let json = successful_bench(
        &[
            &["--connect", server.url(), "--connections", "4"][..],
            &SHORT,
        ]
        .concat(),
    );
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
    let json = successful_bench(&[
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

mod usability {
    //! What a new user of the program trips on: clients pointed at the wrong
    //! service, sends that fail, flags on the wrong side, the log level and
    //! format, completions and manual pages, and `client chat` on a terminal
    //! (the line being typed kept whole, nothing printed that could move the
    //! terminal, and why the server closed).

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::process::{Child, Stdio};
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    use crate::support::{program, run_with_input, serve, ServerProcess, TempDir, STEP};

    /// Runs `socketserver ARGS` to the end with no input.
    fn run(args: &[&str]) -> (i32, String, String) {
        let (status, stdout, stderr) = run_with_input(program().args(args), b"");
        (
            status.code().expect("exited"),
            String::from_utf8_lossy(&stdout).into_owned(),
            stderr,
        )
    }

    crate::both_modes! {
        fn line_clients_against_echo_upper_say_what_they_expected(mode) {
            let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
            let url = server.url();
            let cases: [(&[&str], &str); 4] = [
                (&["client", "qa", "--connect", url, "hello"], "received the question back: \"HELLO\": is it a qa server?"),
                (&["client", "qa", "--connect", url, "你好"], "received the question back: \"你好\": is it a qa server?"),
                (&["client", "dict", "--connect", url, "hello"], "expected \"hello: DEFINITION\", received \"HELLO\": is it a dict server?"),
                (&["client", "chat", "--connect", url, "--nick", "alice"], "received our own line back: \"/NICK ALICE\": is it a chat server?"),
            ];
            for (args, says) in cases {
                let started = Instant::now();
                let (code, stdout, stderr) = run(args);
                assert_eq!(code, 1, "{args:?}: {stderr}");
                assert_eq!(stdout, "", "{args:?}: nothing of the echo is printed as an answer");
                assert!(stderr.starts_with(&format!("error: {url}: ")), "{args:?}: {stderr}");
                assert!(stderr.contains(says), "{args:?}: {stderr}");
                assert!(started.elapsed() < Duration::from_secs(5), "{args:?} took {:?}", started.elapsed());
            }
            // A chat member typing a line gets it back uppercased: not a room.
            let (status, stdout, stderr) = run_with_input(
                program().args(["client", "chat", "--connect", url]),
                b"hi there\n",
            );
            assert_eq!(status.code(), Some(1), "{stderr}");
            assert_eq!(stdout, b"");
            assert!(stderr.contains("received our own line back: \"HI THERE\""), "{stderr}");
        }

        fn a_qa_client_facing_a_silent_server_gives_up_at_its_timeout(mode) {
            // A chat room never answers a member's own line.
            let server = serve("chat", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
            let started = Instant::now();
            let (code, _, stderr) = run(&["client", "qa", "--connect", server.url(), "--timeout", "1", "hello"]);
            let took = started.elapsed();
            assert_eq!(code, 1);
            assert_eq!(
                stderr.trim_end(),
                format!("error: no answer from {} within 1 s: is it a qa server?", server.url())
            );
            assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(10), "took {took:?}");
        }

        fn a_chat_client_says_why_the_server_closed(mode) {
            let mut server = serve("chat", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
            let mut watcher = TcpStream::connect(server.addr()).unwrap();
            watcher.set_read_timeout(Some(STEP)).unwrap();
            // The watcher is in the room before the client comes: an empty
            // /nick is refused to members only.
            watcher.write_all(b"/nick\n").unwrap();
            let mut reader = BufReader::new(watcher.try_clone().unwrap());
            let mut seen = String::new();
            while !seen.contains("(use /nick NAME)") {
                assert_ne!(reader.read_line(&mut seen).unwrap(), 0, "{seen}");
            }
            let mut child = program()
                .args(["client", "chat", "--connect", server.url(), "--nick", "cli"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // The client is in the room once the watcher sees its new name.
            while !seen.contains("is now cli") {
                assert_ne!(reader.read_line(&mut seen).unwrap(), 0, "{seen}");
            }
            server.signal("TERM");
            let output = wait_output(&mut child);
            assert_eq!(output.0, Some(1), "{output:?}");
            assert!(output.1.ends_with("* the server is shutting down\n"), "{output:?}");
            assert_eq!(
                output.2,
                "error: disconnected by the server: the server is shutting down\n"
            );
            assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
            drop(watcher);
        }
    }

    /// Waits for a child (at most [`STEP`]) and collects its exit code,
    /// standard output and standard error.
    fn wait_output(child: &mut Child) -> (Option<i32>, String, String) {
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let err = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + STEP;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("the client did not exit within {STEP:?}");
            }
            thread::sleep(Duration::from_millis(10));
        };
        (status.code(), out.join().unwrap(), err.join().unwrap())
    }

    #[test]
    fn a_datagram_too_large_is_reported_as_a_failed_send() {
        let server =
            ServerProcess::start(&["serve", "echo-upper", "--bind", "udp://127.0.0.1:0"], 1);
        let message = "a".repeat(70_000);
        let (code, stdout, stderr) =
            run(&["client", "echo-upper", "--connect", server.url(), &message]);
        assert_eq!(code, 1);
        assert_eq!(stdout, "");
        assert_eq!(
        stderr,
        format!(
            "error: cannot send to {}: message of 70000 bytes is too large for a datagram (UDP carries at most 65507)\n",
            server.url()
        )
    );
        // The largest datagram goes, and comes back.
        let largest = "b".repeat(65_507);
        let (code, stdout, stderr) =
            run(&["client", "echo-upper", "--connect", server.url(), &largest]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout.len(), 65_508);
    }

    #[test]
    fn bind_and_connect_on_the_wrong_side_say_which_flag_is_meant() {
        let (code, _, stderr) = run(&["client", "echo-upper", "--bind", "tcp://127.0.0.1:9"]);
        assert_eq!(code, 2);
        assert!(
            stderr.starts_with("error: a client connects to a server: use --connect URL"),
            "{stderr}"
        );
        assert!(!stderr.contains("-- --bind"), "{stderr}");
        let (code, _, stderr) = run(&["serve", "qa", "--connect", "tcp://127.0.0.1:9"]);
        assert_eq!(code, 2);
        assert!(
            stderr.starts_with("error: a server listens: use --bind URL"),
            "{stderr}"
        );
        // Other unknown flags keep clap's report.
        let (code, _, stderr) = run(&["client", "qa", "--frobnicate"]);
        assert_eq!(code, 2);
        assert!(
            stderr.contains("unexpected argument '--frobnicate'"),
            "{stderr}"
        );
    }

    /// Serves echo-upper with `flags` (and `RUST_LOG` when given), stops it with
    /// SIGINT and returns what it logged.
    fn logged(flags: &[&str], rust_log: Option<&str>) -> String {
        let mut command = program();
        command
            .args(["serve", "echo-upper", "--bind", "tcp://127.0.0.1:0"])
            .args(flags);
        command.env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let mut server = ServerProcess::start_with(&mut command, 1);
        server.signal("INT");
        assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
        server.stderr_text()
    }

    #[test]
    fn v_and_q_set_the_log_level_unless_rust_log_is_set() {
        const SUMMARY: &str = "shut down: served 0 request(s)";
        assert!(
            !logged(&[], None).contains(SUMMARY),
            "info is hidden by default"
        );
        let verbose = logged(&["-v"], None);
        assert!(
            verbose.contains(" INFO ") && verbose.contains(SUMMARY),
            "{verbose}"
        );
        let debug = logged(&["-vv"], None);
        assert!(debug.contains(SUMMARY), "{debug}");
        assert!(
            !logged(&["-v"], Some("error")).contains(SUMMARY),
            "RUST_LOG wins"
        );
        assert!(logged(&[], Some("info")).contains(SUMMARY));
        assert!(
            logged(&["-qq", "-v"], None).is_empty(),
            "-qq -v is -q: errors only"
        );

        // A warning at start, hidden by -q.
        let dir = TempDir::new("usability-quiet");
        let key = dir.join("key");
        std::fs::write(&key, "secret").unwrap();
        let key = key.to_str().unwrap();
        let exec = ["--key-file", key, "--allow", "echo", "--shell"];
        let shell = |flags: &[&str]| {
            let mut args = vec!["serve", "exec", "--bind", "tcp://127.0.0.1:0"];
            args.extend_from_slice(&exec);
            args.extend_from_slice(flags);
            let mut command = program();
            command.args(&args).env_remove("RUST_LOG");
            let mut server = ServerProcess::start_with(&mut command, 1);
            server.signal("INT");
            assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
            server.stderr_text()
        };
        assert!(
            shell(&[]).contains("WARN"),
            "the --shell warning shows by default"
        );
        assert!(!shell(&["-q"]).contains("--shell"), "-q hides warnings");
    }

    #[test]
    fn json_logs_are_one_object_per_line() {
        let text = logged(&["--log-format", "json", "-v"], None);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() >= 2, "{text}");
        for line in &lines {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let object = value.as_object().expect("an object");
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            assert_eq!(keys, ["time", "level", "target", "message"], "{line}");
            assert!(object["time"].as_str().unwrap().ends_with('Z'), "{line}");
        }
        assert!(
            lines
                .iter()
                .any(|l| l.contains(r#""level":"INFO""#) && l.contains("shut down: served 0")),
            "{text}"
        );
    }

    #[test]
    fn completions_and_manual_pages_for_packagers() {
        for (shell, marker) in [
            ("bash", "complete -F _socketserver"),
            ("zsh", "#compdef socketserver"),
            ("fish", "complete -c socketserver"),
        ] {
            let (code, script, stderr) = run(&["completions", shell]);
            assert_eq!(code, 0, "{stderr}");
            assert!(script.contains(marker), "{shell}: {marker} missing");
            assert!(
                script.contains("echo-upper") && script.contains("connect"),
                "{shell}"
            );
        }
        let (code, page, _) = run(&["man"]);
        assert_eq!(code, 0);
        assert!(page.contains(".TH socketserver 1"), "{page}");
        assert!(
            page.contains("serve") && page.contains("\\-\\-log\\-format"),
            "{page}"
        );

        let dir = TempDir::new("usability-man");
        let (code, _, stderr) = run(&["man", "--dir", dir.0.to_str().unwrap()]);
        assert_eq!(code, 0, "{stderr}");
        let qa = std::fs::read_to_string(dir.join("socketserver-serve-qa.1"))
            .expect("a page per subcommand");
        assert!(
            qa.contains("tcp://127.0.0.1:9001"),
            "the page shows the default address"
        );
        assert!(dir.join("socketserver-client-chat.1").exists());
        assert!(dir.join("socketserver.1").exists());
    }

    /// A program run on a pseudo-terminal, as by a person: its standard input,
    /// output and error are the terminal; what it writes is collected.
    struct OnTerminal {
        child: Child,
        master: std::fs::File,
        output: mpsc::Receiver<Vec<u8>>,
        seen: Vec<u8>,
    }

    impl OnTerminal {
        fn start(args: &[&str]) -> OnTerminal {
            let (mut master, mut slave) = (0, 0);
            let size = libc::winsize {
                ws_row: 24,
                ws_col: 80,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: openpty writes two descriptors; the name and termios
            // pointers may be null.
            let opened = unsafe {
                libc::openpty(
                    &mut master,
                    &mut slave,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    &size,
                )
            };
            assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
            // SAFETY: both descriptors are new and ours.
            let (master, slave) =
                unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
            let child = program()
                .args(args)
                .env_remove("RUST_LOG")
                .stdin(Stdio::from(slave.try_clone().unwrap()))
                .stdout(Stdio::from(slave.try_clone().unwrap()))
                .stderr(Stdio::from(slave))
                .spawn()
                .unwrap();
            let master = std::fs::File::from(master);
            let mut reader = master.try_clone().unwrap();
            let (tx, output) = mpsc::channel();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // Ends with EIO once the child and its terminal are gone.
                while let Ok(n @ 1..) = reader.read(&mut buf) {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            });
            OnTerminal {
                child,
                master,
                output,
                seen: Vec::new(),
            }
        }

        fn type_keys(&mut self, keys: &[u8]) {
            self.master.write_all(keys).unwrap();
        }

        /// Waits until the terminal shows `text` after what earlier waits saw;
        /// returns everything it showed up to the end of `text`.
        fn wait_for(&mut self, text: &[u8]) -> Vec<u8> {
            let deadline = Instant::now() + STEP;
            loop {
                if let Some(at) = self.seen.windows(text.len()).position(|w| w == text) {
                    let rest = self.seen.split_off(at + text.len());
                    return std::mem::replace(&mut self.seen, rest);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match self.output.recv_timeout(left) {
                    Ok(bytes) => self.seen.extend(bytes),
                    Err(_) => panic!(
                        "the terminal never showed {:?}; it showed {:?}",
                        String::from_utf8_lossy(text),
                        String::from_utf8_lossy(&self.seen)
                    ),
                }
            }
        }

        fn wait(&mut self) -> Option<i32> {
            let deadline = Instant::now() + STEP;
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    return status.code();
                }
                assert!(Instant::now() < deadline, "the program did not exit");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }

    impl Drop for OnTerminal {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// `client chat` on a terminal, connected to a listener of this test
    /// that stands for the room, once its prompt shows: the client and the
    /// room's end of the connection.
    fn chat_client_in_a_fake_room() -> (OnTerminal, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", listener.local_addr().unwrap());
        let mut alice = OnTerminal::start(&["client", "chat", "--connect", &url]);
        let (room, _) = listener.accept().unwrap();
        alice.wait_for(b"> ");
        (alice, room)
    }

    crate::both_modes! {
        fn a_line_from_the_room_never_breaks_the_line_being_typed(mode) {
            let server = serve("chat", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
            let bob = TcpStream::connect(server.addr()).unwrap();
            bob.set_read_timeout(Some(STEP)).unwrap();
            let mut bob_reads = BufReader::new(bob.try_clone().unwrap());
            let mut bob_writes = bob;
            // Bob is in the room before alice comes (the server's loops may
            // take the two connections in either order): an empty /nick is
            // refused to its sender, after the /nick before it took effect.
            bob_writes.write_all(b"/nick bob\n/nick\n").unwrap();
            let mut line = String::new();
            while !line.contains("(use /nick NAME)") {
                line.clear();
                assert_ne!(bob_reads.read_line(&mut line).unwrap(), 0);
            }

            let mut alice = OnTerminal::start(&["client", "chat", "--connect", server.url(), "--nick", "alice"]);
            while !line.contains("is now alice") {
                line.clear();
                assert_ne!(bob_reads.read_line(&mut line).unwrap(), 0);
            }
            alice.wait_for(b"> ");
            // Half a word typed, then a line arrives from the room.
            alice.type_keys("hel".as_bytes());
            alice.wait_for(b"> hel");
            bob_writes.write_all(b"are you there?\n").unwrap();
            let shown = alice.wait_for(b"bob: are you there?\r\n> hel");
            assert!(
                shown.ends_with(b"\r\x1b[Kbob: are you there?\r\n> hel"),
                "the input row is erased, the line printed, the input drawn again: {:?}",
                String::from_utf8_lossy(&shown)
            );
            // The rest of the word completes the same line: nothing was lost.
            alice.type_keys("lo, 你好\x7f\x7f!\r".as_bytes());
            alice.wait_for("> hello, !\r\n".as_bytes());
            line.clear();
            bob_reads.read_line(&mut line).unwrap();
            assert_eq!(line, "alice: hello, !\n");

            // Ctrl-D on an empty line leaves the room; the terminal is given back.
            alice.type_keys(b"\x04");
            line.clear();
            bob_reads.read_line(&mut line).unwrap();
            assert_eq!(line, "* alice left\n");
            assert_eq!(alice.wait(), Some(0));
        }
    }

    #[test]
    fn the_chat_client_prints_nothing_that_could_move_the_terminal() {
        // A hostile "room" that sends raw escapes, then closes.
        let (mut alice, mut room) = chat_client_in_a_fake_room();
        room.write_all(b"mallory: \x1b]0;owned\x07\x1b[2J\rhi\x9b\xc2\x9bthere\x08\n")
            .unwrap();
        let shown = alice.wait_for("there\u{fffd}\r\n> ".as_bytes());
        let text = String::from_utf8(shown).expect("UTF-8 only");
        // The only control sequences are the editor's own: erase the row, CR LF.
        let without_own = text.replace("\r\x1b[K", "").replace("\r\n", "");
        assert!(
            !without_own.chars().any(|c| c.is_control()),
            "{without_own:?}"
        );
        assert!(
        text.contains(
            "mallory: \u{fffd}]0;owned\u{fffd}\u{fffd}[2J\u{fffd}hi\u{fffd}\u{fffd}there\u{fffd}"
        ),
        "{text:?}"
    );
        drop(room);
        let shown = alice.wait_for(b"disconnected by the server");
        assert!(String::from_utf8_lossy(&shown).ends_with("error: disconnected by the server"));
        assert_eq!(alice.wait(), Some(1));
    }

    #[test]
    fn ctrl_c_on_the_chat_terminal_quits_at_once() {
        let (mut alice, room) = chat_client_in_a_fake_room();
        alice.type_keys(b"half a line\x03");
        assert_eq!(alice.wait(), Some(130));
        drop(room);
    }
}

mod open_files {
    //! The open-file limit (SPEC rule 23, 43), in both dispatch modes: the
    //! program raises its soft limit to the hard one, fits its default
    //! connection cap under it silently, and warns when an operator asks for
    //! more than it allows.

    use crate::support::{serve, ServerProcess};

    /// The hard limit of open files, which the program raises its soft limit to.
    fn hard_limit() -> u64 {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the struct it is given.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        limit.rlim_max
    }

    fn stderr_after_stop(mut server: ServerProcess) -> String {
        server.signal("TERM");
        server.wait(crate::support::STEP).expect("the server exits");
        server.stderr_text()
    }

    crate::both_modes! {
        fn a_cap_beyond_the_limit_is_kept_with_a_warning_and_defaults_fit_silently(mode) {
            let hard = hard_limit();
            if hard == libc::RLIM_INFINITY || hard > 1_000_000 {
                crate::support::skipped(&format!(
                    "the open-file limit ({hard}) is above every default here"
                ));
                return;
            }
            let over = (hard * 2).to_string();
            let server = serve(
                "echo-upper",
                mode,
                &["--bind", "tcp://127.0.0.1:0", "--max-connections", &over],
                1,
            );
            let stderr = stderr_after_stop(server);
            assert!(
                stderr.contains(&format!(
                    "--max-connections {over} is more than the open-file limit {hard} allows"
                )),
                "{stderr}"
            );
            // The default cap (the reactor's 100,000, the threads' 10,000) is
            // lowered without a word when the limit cannot hold it.
            let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
            let stderr = stderr_after_stop(server);
            assert!(!stderr.contains("open-file limit"), "{stderr}");
        }
    }
}
