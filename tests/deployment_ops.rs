//! The operations side of `serve`, against the program (rules 33 to 36, 38,
//! 39, 47 to 49, 51): the admin listener's probes and its `/metrics` page as
//! Prometheus' Python client parses it, the agent check, the drain delay,
//! SO_REUSEPORT, and systemd's notification socket read by the test.
//!
//! `cargo test --all-features --test deployment_ops`

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::http::{get, request};
use support::ops::{agent_says, parse_metrics, Family, FAMILIES};
use support::{eventually, program, Mode, ServerProcess, TempDir, Tool, STEP};

/// `serve SERVICE --dispatch MODE ARGS...`, waiting for `listening` lines.
fn serve(service: &str, mode: Mode, args: &[&str], listening: usize) -> ServerProcess {
    ServerProcess::start_with(
        program()
            .args(["serve", service])
            .args(mode.flag())
            .args(args),
        listening,
    )
}

/// One round trip of echo-upper on a new connection, then a clean close.
fn echo_once(addr: &str, text: &str) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    let mut answer = vec![0u8; text.len()];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(answer, text.to_ascii_uppercase().as_bytes());
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

fn metrics(python: &Path, served: &ServerProcess) -> std::collections::BTreeMap<String, Family> {
    let (status, page) = get(served.admin(), "/metrics");
    assert_eq!(status, 200);
    parse_metrics(python, &page)
}

/// A sample of `family` for the listener `url`.
fn sample(
    families: &std::collections::BTreeMap<String, Family>,
    family: &str,
    name: &str,
    url: &str,
) -> f64 {
    families[family]
        .value(name, &[("listener", url)])
        .unwrap_or_else(|| panic!("no {name} for {url}"))
}

both_modes! {
    fn the_admin_listener_answers_probes_and_metrics(mode) {
        let Some(python) = support::tool(Tool::PrometheusClient) else {
            return;
        };
        let server = serve(
            "echo-upper",
            mode,
            &[
                "--bind", "tcp://127.0.0.1:0",
                "--bind", "udp://127.0.0.1:0",
                "--admin", "tcp://127.0.0.1:0",
                "--agent-check", "tcp://127.0.0.1:0",
            ],
            2,
        );
        // The ops lines come first, then the listening lines (rule 33, 34).
        assert!(server.stdout[0].starts_with("admin on tcp://127.0.0.1:"), "{:?}", server.stdout);
        assert!(server.stdout[1].starts_with("agent-check on tcp://127.0.0.1:"), "{:?}", server.stdout);
        assert!(server.stdout[2].starts_with("listening on tcp://"));
        assert!(server.stdout[3].starts_with("listening on udp://"));
        let admin = server.admin();

        assert_eq!(get(admin, "/healthz"), (200, "ok\n".to_string()));
        assert_eq!(get(admin, "/readyz"), (200, "ready\n".to_string()));
        assert_eq!(get(admin, "/nowhere").0, 404);
        let head = request(admin, "HEAD", "/healthz");
        assert_eq!((head.status, head.body.as_slice()), (200, &b""[..]));
        assert_eq!(head.header("Content-Length"), Some("3"), "{head:?}");
        let post = request(admin, "POST", "/readyz");
        assert_eq!(post.status, 405);
        assert_eq!(post.header("Allow"), Some("GET, HEAD"), "{post:?}");
        assert_eq!(agent_says(server.agent()), "ready\n");

        let (tcp_url, udp_url) = (server.urls[0].clone(), server.urls[1].clone());
        let page = request(admin, "GET", "/metrics");
        assert_eq!(
            page.header("Content-Type"),
            Some("text/plain; version=0.0.4"),
            "{page:?}"
        );
        let before = metrics(&python, &server);
        for (family, kind) in FAMILIES {
            let found = before.get(family).unwrap_or_else(|| panic!("no family {family}"));
            assert_eq!(found.kind, kind, "{family}");
            assert!(found.has_help, "{family} has no HELP");
            if family != "socketserver_build_info" {
                for url in [&tcp_url, &udp_url] {
                    assert!(
                        found.samples.iter().any(|(_, labels, _)| labels.get("listener") == Some(url)),
                        "{family} has no series for {url}"
                    );
                }
            }
        }
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            before["socketserver_build_info"].value("socketserver_build_info", &[("version", version)]),
            Some(1.0)
        );
        let requests = |m: &_, url: &str| sample(m, "socketserver_requests", "socketserver_requests_total", url);
        let tcp_before = requests(&before, &tcp_url);
        let udp_before = requests(&before, &udp_url);

        // 7 connections of one message each (a request in either mode), 5
        // datagrams.
        for n in 0..7 {
            echo_once(&server.addr_of(0), &format!("message {n}"));
        }
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(STEP)).unwrap();
        udp.connect(server.addr_of(1)).unwrap();
        for n in 0..5 {
            udp.send(format!("datagram {n}").as_bytes()).unwrap();
            let mut answer = [0u8; 64];
            let got = udp.recv(&mut answer).unwrap();
            assert_eq!(&answer[..got], format!("DATAGRAM {n}").as_bytes());
        }
        // Everything is over once nothing is open or in flight.
        let mut after = metrics(&python, &server);
        eventually("the requests to end", || {
            after = metrics(&python, &server);
            sample(&after, "socketserver_connections_open", "socketserver_connections_open", &tcp_url) == 0.0
                && sample(&after, "socketserver_requests_in_flight", "socketserver_requests_in_flight", &tcp_url) == 0.0
                && sample(&after, "socketserver_requests_in_flight", "socketserver_requests_in_flight", &udp_url) == 0.0
        });
        assert_eq!(requests(&after, &tcp_url) - tcp_before, 7.0);
        assert_eq!(requests(&after, &udp_url) - udp_before, 5.0);
        // The histogram counts what requests_total counts (rule 47).
        for url in [&tcp_url, &udp_url] {
            let histogram = &after["socketserver_request_duration_seconds"];
            let count = histogram.value("socketserver_request_duration_seconds_count", &[("listener", url)]);
            let inf = histogram.value("socketserver_request_duration_seconds_bucket", &[("listener", url), ("le", "+Inf")]);
            assert_eq!(count, Some(requests(&after, url)));
            assert_eq!(inf, count);
            let buckets = histogram.samples.iter()
                .filter(|(name, labels, _)| name.ends_with("_bucket") && labels.get("listener") == Some(url))
                .count();
            assert_eq!(buckets, 17, "16 bounds and +Inf");
        }
        for family in ["socketserver_rejected", "socketserver_failed", "socketserver_panicked", "socketserver_cut"] {
            assert_eq!(sample(&after, family, &format!("{family}_total"), &tcp_url), 0.0, "{family}");
        }
        assert!(sample(&after, "socketserver_threads", "socketserver_threads", &tcp_url) >= 1.0);
    }

    fn the_drain_delay_keeps_serving_then_shuts_down(mode) {
        let delay = 1.5;
        let mut server = serve(
            "echo-upper",
            mode,
            &[
                "--bind", "tcp://127.0.0.1:0",
                "--admin", "tcp://127.0.0.1:0",
                "--agent-check", "tcp://127.0.0.1:0",
                "--drain-delay", "1.5",
            ],
            1,
        );
        let addr = server.addr_of(0);
        echo_once(&addr, "before");
        let signalled = Instant::now();
        server.signal("TERM");
        // Readiness turns at once (rule 49)...
        eventually("/readyz to say draining", || get(server.admin(), "/readyz") == (503, "draining\n".to_string()));
        assert_eq!(agent_says(server.agent()), "drain\n");
        assert_eq!(get(server.admin(), "/healthz"), (200, "ok\n".to_string()));
        // ...while new clients are still served.
        echo_once(&addr, "during the drain");
        assert!(
            signalled.elapsed() < Duration::from_secs_f64(delay),
            "the checks took longer than the delay: inconclusive"
        );
        let status = server.wait(STEP).expect("the server exits after the delay");
        assert_eq!(status.code(), Some(0));
        assert!(signalled.elapsed() >= Duration::from_secs_f64(delay));
        assert!(TcpStream::connect(&addr).is_err(), "the listener is closed");
    }

    fn reuse_port_shares_one_address_between_processes(mode) {
        let first = serve(
            "echo-upper",
            mode,
            &["--bind", "tcp://127.0.0.1:0", "--reuse-port", "--admin", "tcp://127.0.0.1:0"],
            1,
        );
        let url = first.urls[0].clone();
        let second = serve(
            "echo-upper",
            mode,
            &["--bind", &url, "--reuse-port", "--admin", "tcp://127.0.0.1:0"],
            1,
        );
        assert_eq!(second.urls[0], url);
        // Without the option the address is taken (exit 1, rule 3).
        let refused = program()
            .args(["serve", "echo-upper", "--bind", &url])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(refused.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&refused.stderr).starts_with(&format!("error: cannot bind {url}: ")));
        // The kernel spreads 40 connections over both processes.
        for n in 0..40 {
            echo_once(&first.addr_of(0), &format!("c{n}"));
        }
        let served_by = |process: &ServerProcess| {
            let (_, page) = get(process.admin(), "/metrics");
            let line = page
                .lines()
                .find(|l| l.starts_with(&format!("socketserver_requests_total{{listener=\"{url}\"}}")))
                .expect("a requests_total line")
                .to_string();
            line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
        };
        eventually("all 40 counted", || served_by(&first) + served_by(&second) == 40);
        assert!(served_by(&first) > 0 && served_by(&second) > 0);
    }

    fn systemd_hears_ready_watchdog_and_stopping(mode) {
        let dir = TempDir::new("notify");
        let path = dir.join("notify.sock");
        let manager = UnixDatagram::bind(&path).unwrap();
        manager.set_read_timeout(Some(STEP)).unwrap();
        let mut child = KillOnDrop(program()
            .args(["serve", "echo-upper", "--bind", "tcp://127.0.0.1:0"])
            .args(mode.flag())
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "1000000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap());
        let next = |want: &str| -> (String, Instant) {
            let mut buf = [0u8; 512];
            loop {
                let n = manager.recv(&mut buf).unwrap_or_else(|e| panic!("no {want}: {e}"));
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if message.starts_with(want) {
                    return (message, Instant::now());
                }
            }
        };
        let (ready, _) = next("READY=");
        assert_eq!(ready, "READY=1\n");
        // The listening line was written before READY=1: it waits in the
        // pipe already.
        let stdout = child.0.stdout.take().unwrap();
        let mut poll = libc::pollfd { fd: stdout.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, for a descriptor this test owns.
        assert_eq!(unsafe { libc::poll(&mut poll, 1, 0) }, 1, "READY=1 came before the listening line");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(line.starts_with("listening on tcp://127.0.0.1:"), "{line}");

        // WATCHDOG=1 every half of WATCHDOG_USEC (1 s): never more than the
        // period apart, and not a flood.
        let mut times = Vec::new();
        while times.len() < 4 {
            times.push(next("WATCHDOG=").1);
        }
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap < Duration::from_millis(1000), "{gap:?} between watchdog messages");
            assert!(gap > Duration::from_millis(350), "{gap:?} between watchdog messages");
        }
        let status = std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
        assert!(status.success());
        assert_eq!(next("STOPPING=").0, "STOPPING=1\n");
        assert!(child.0.wait().unwrap().success());
    }
}

/// A child process killed and reaped on drop, in case the test fails first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_missing_notify_socket_is_logged_once_and_serving_goes_on() {
    let dir = TempDir::new("no-notify");
    let mut server = ServerProcess::start_with(
        program()
            .args(["serve", "echo-upper", "--bind", "tcp://127.0.0.1:0"])
            .env("NOTIFY_SOCKET", dir.join("nobody-listens-here"))
            .env("WATCHDOG_USEC", "100000")
            .env_remove("RUST_LOG"),
        1,
    );
    echo_once(&server.addr_of(0), "still served");
    // A few watchdog periods, each a failed send.
    std::thread::sleep(Duration::from_millis(300));
    echo_once(&server.addr_of(0), "still served");
    server.signal("TERM");
    assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
    let stderr = server.stderr_text();
    assert_eq!(
        stderr.matches("cannot notify systemd").count(),
        1,
        "logged once: {stderr}"
    );
    assert!(stderr.contains("nobody-listens-here"), "{stderr}");
}

#[test]
fn garbage_and_huge_admin_requests_cost_only_their_connection() {
    let server = serve(
        "echo-upper",
        Mode::Threads,
        &[
            "--bind",
            "tcp://127.0.0.1:0",
            "--admin",
            "tcp://127.0.0.1:0",
        ],
        1,
    );
    let admin = server.admin();
    // A client that connects and says nothing holds up no probe.
    let _silent = TcpStream::connect(admin).unwrap();
    let answer_to = |bytes: &[u8]| -> String {
        let mut stream = TcpStream::connect(admin).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        // The server may answer and close before taking it all.
        let _ = stream.write_all(bytes);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    assert!(answer_to(b"\x16\x03\x01\x02\x00garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(answer_to(b"GET /healthz HTTP/1.1\nHost: x\n\n").starts_with("HTTP/1.1 200 "));
    let long_line = vec![b'a'; 1 << 20];
    assert!(answer_to(&long_line).starts_with("HTTP/1.1 414 "));
    let mut huge_head = b"GET /healthz HTTP/1.1\r\n".to_vec();
    while huge_head.len() < 1 << 20 {
        huge_head
            .extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    assert!(answer_to(&huge_head).starts_with("HTTP/1.1 431 "));
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".to_string()));
    echo_once(&server.addr_of(0), "the service is untouched");
}

#[test]
fn ops_urls_are_tcp_only_and_their_bind_failures_exit_1() {
    for (flag, url) in [
        ("--admin", "unix:/tmp/socketserver-admin.sock"),
        ("--agent-check", "udp://127.0.0.1:0"),
        ("--admin", "tcp://127.0.0.1"),
    ] {
        let output = program()
            .args([
                "serve",
                "echo-upper",
                "--bind",
                "tcp://127.0.0.1:0",
                flag,
                url,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{flag} {url}");
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", taken.local_addr().unwrap());
    for flag in ["--admin", "--agent-check"] {
        let output = program()
            .args([
                "serve",
                "echo-upper",
                "--bind",
                "tcp://127.0.0.1:0",
                flag,
                &url,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{flag}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with(&format!("error: cannot bind {url}: ")),
            "{stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&output.stdout).contains("listening on"),
            "nothing is announced before a bind failure"
        );
    }
}
