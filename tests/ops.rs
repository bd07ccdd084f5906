//! Operations (SPEC section 10, rules 33 to 36, 38, 39, 47 to 49, 51): the
//! admin listener's probes and `/metrics` page (as Python's
//! `prometheus_client` parses it), the agent check, the drain delay,
//! SO_REUSEPORT, systemd's notification socket, through the program in both
//! dispatch modes; the same capabilities as a Rust program uses them
//! (`ServerHandle::metrics`, `Readiness`, `Server::from_listener`), in both
//! modes; and the metrics page's format on its own.
//!
//! `cargo test --all-features --test ops`

mod support;

mod through_the_program {
    //! The operations side of `serve`, against the program (rules 33 to 36, 38,
    //! 39, 47 to 49, 51): the admin listener's probes and its `/metrics` page as
    //! Prometheus' Python client parses it, the agent check, the drain delay,
    //! SO_REUSEPORT, and systemd's notification socket read by the test.
    //!
    //! `cargo test --all-features --test ops through_the_program`

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{Shutdown, TcpStream, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;
    use std::path::Path;
    use std::process::{Output, Stdio};
    use std::time::{Duration, Instant};

    use crate::support::http::{get, request};
    use crate::support::ops::{agent_says, parse_metrics, Family, FAMILIES};
    use crate::support::{eventually, program, Mode, ServerProcess, TempDir, Tool, STEP};

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

    fn metrics(
        python: &Path,
        served: &ServerProcess,
    ) -> std::collections::BTreeMap<String, Family> {
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

    crate::both_modes! {
        fn the_admin_listener_answers_probes_and_metrics(mode) {
            let Some(python) = crate::support::tool(Tool::PrometheusClient) else {
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
            huge_head.extend_from_slice(
                b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        assert!(answer_to(&huge_head).starts_with("HTTP/1.1 431 "));
        assert_eq!(get(admin, "/healthz"), (200, "ok\n".to_string()));
        echo_once(&server.addr_of(0), "the service is untouched");
    }

    /// What `serve echo-upper` on a free port does with `flag url` added.
    fn serve_echo_upper_with(flag: &str, url: &str) -> Output {
        program()
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
            .unwrap()
    }

    #[test]
    fn ops_urls_are_tcp_only_and_their_bind_failures_exit_1() {
        for (flag, url) in [
            ("--admin", "unix:/tmp/socketserver-admin.sock"),
            ("--agent-check", "udp://127.0.0.1:0"),
            ("--admin", "tcp://127.0.0.1"),
        ] {
            let output = serve_echo_upper_with(flag, url);
            assert_eq!(output.status.code(), Some(2), "{flag} {url}");
        }
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("tcp://{}", taken.local_addr().unwrap());
        for flag in ["--admin", "--agent-check"] {
            let output = serve_echo_upper_with(flag, &url);
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
}

mod library {
    //! The deployment capabilities as a Rust program uses them, in both
    //! dispatch modes: `ServerHandle::metrics`, `Readiness` with
    //! `Options::drain_delay` and `ServerHandle::drain`, and
    //! `Server::from_listener`.
    //!
    //! `cargo test --all-features --test ops library`

    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::support::{eventually, run_messages, Mode, Running, STEP};
    use socketserver::services::EchoUpper;
    use socketserver::{Options, ReactorTcpServer, Readiness, ReadinessState, ThreadingTcpServer};

    fn round_trip(server: &Running, text: &str) {
        let mut stream = TcpStream::connect(server.inet()).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.write_all(text.as_bytes()).unwrap();
        let mut answer = vec![0u8; text.len()];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(answer, text.to_ascii_uppercase().as_bytes());
    }

    crate::both_modes! {
        fn metrics_count_each_request_once(mode) {
            let server = run_messages(mode, EchoUpper, Options::new());
            let empty = server.handle.metrics();
            assert_eq!(empty.durations.count, 0);
            assert_eq!(empty.url, format!("tcp://{}", server.inet()));

            // One open connection with one message answered.
            let mut open = TcpStream::connect(server.inet()).unwrap();
            open.set_read_timeout(Some(STEP)).unwrap();
            open.write_all(b"one").unwrap();
            let mut three = [0u8; 3];
            open.read_exact(&mut three).unwrap();
            let metrics = server.handle.metrics();
            assert_eq!(metrics.connections_open, 1);
            match mode {
                // A request is the connection: in flight until it ends.
                Mode::Threads => assert_eq!(metrics.requests_in_flight, 1),
                // A request is the message: answered, so none in flight.
                Mode::Reactor => {
                    assert_eq!(metrics.requests_in_flight, 0);
                    assert_eq!(metrics.durations.count, 1);
                }
            }
            open.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            open.read_to_end(&mut rest).unwrap();
            for n in 0..4 {
                round_trip(&server, &format!("request {n}"));
            }
            eventually("every connection to end", || server.handle.metrics().connections_open == 0);
            let metrics = server.handle.metrics();
            assert_eq!(metrics.durations.count, 5);
            assert_eq!(metrics.stats.served, 5);
            assert_eq!(metrics.requests_in_flight, 0);
            // Each duration is in the buckets, and the sum is positive.
            assert_eq!(metrics.durations.cumulative_counts[15] , 5);
            assert!(metrics.durations.sum_seconds > 0.0);
        }

        fn drain_turns_readiness_then_shuts_down_after_the_delay(mode) {
            let delay = Duration::from_millis(400);
            let readiness = Readiness::new();
            let hooks = Arc::new(AtomicUsize::new(0));
            let counted = Arc::clone(&hooks);
            readiness.on_drain(move || {
                counted.fetch_add(1, SeqCst);
            });
            let options = Options::new().drain_delay(delay).readiness(readiness.clone());
            let mut server = run_messages(mode, EchoUpper, options);
            assert!(server.handle.is_ready());
            round_trip(&server, "before");
            let drained = Instant::now();
            server.handle.drain();
            assert_eq!(readiness.state(), ReadinessState::Draining);
            assert!(!server.handle.is_ready());
            assert!(server.handle.readiness().same_as(&readiness));
            assert_eq!(hooks.load(SeqCst), 1);
            // Still accepting and serving during the delay.
            round_trip(&server, "during the delay");
            assert!(drained.elapsed() < delay, "inconclusive: the round trip outlasted the delay");
            assert!(!server.handle.is_shutdown());
            let summary = server.join();
            assert!(drained.elapsed() >= delay, "shut down after {:?}", drained.elapsed());
            assert!(server.handle.is_shutdown());
            assert_eq!(summary.rejected, 0);
            assert_eq!(hooks.load(SeqCst), 1, "the hooks run once");
        }

        fn a_shutdown_turns_readiness_too(mode) {
            let server = run_messages(mode, EchoUpper, Options::new());
            let readiness = server.handle.readiness().clone();
            assert!(readiness.is_ready());
            server.stop();
            assert_eq!(readiness.state(), ReadinessState::Draining);
        }

        fn a_server_serves_on_a_socket_it_was_given(mode) {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = socket.local_addr().unwrap();
            let server = match mode {
                Mode::Threads => Running::start(
                    ThreadingTcpServer::from_listener(socket, EchoUpper, Options::new()).unwrap(),
                ),
                Mode::Reactor => Running::start(
                    ReactorTcpServer::from_listener(socket, EchoUpper, Options::new()).unwrap(),
                ),
            };
            assert_eq!(server.inet(), addr);
            round_trip(&server, "given");
            assert_eq!(server.handle.url(), format!("tcp://{addr}"));
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let refused = ThreadingTcpServer::from_listener(udp, EchoUpper, Options::new()).unwrap_err();
            assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
        }
    }
}

mod metrics_page {
    //! `/metrics` as a real Prometheus parser reads it: Python's
    //! `prometheus_client` parses the page that the admin listener serves, and
    //! every family, its type, its help and each value is checked against what
    //! was put in.
    //!
    //! Needs `python3` with `prometheus_client` (`pip install prometheus_client`;
    //! `.ci/run` installs it). Without it the test fails when `CI` is set, and
    //! otherwise prints a SKIPPED line saying why and passes without checking.

    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::support::ops::{parse_metrics, Family, FAMILIES};
    use crate::support::Tool;
    use socketserver::ops::admin::{AdminServer, OpsState};
    use socketserver::ops::histogram::{Histogram, BUCKET_LABELS};
    use socketserver::ops::metrics::{render, ListenerMetrics};

    struct Listeners(Vec<ListenerMetrics>);

    impl OpsState for Listeners {
        fn ready(&self) -> bool {
            true
        }
        fn render_metrics(&self, out: &mut String) {
            render(&self.0, out);
        }
    }

    fn listener(url: &str, base: u64, durations_micros: &[u64]) -> ListenerMetrics {
        let histogram = Histogram::new();
        for &micros in durations_micros {
            histogram.observe(Duration::from_micros(micros));
        }
        ListenerMetrics {
            listener: url.to_string(),
            connections_open: base + 1,
            requests_in_flight: base + 2,
            rejected_total: base + 3,
            dropped_total: base + 4,
            failed_total: base + 5,
            panicked_total: base + 6,
            cut_total: base + 7,
            threads: base + 8,
            queued: base + 9,
            duration: histogram.snapshot(),
        }
    }

    /// `GET /metrics` from an admin listener serving `state`: the page.
    fn fetch_metrics(state: Arc<Listeners>) -> String {
        let admin = AdminServer::bind("127.0.0.1:0".parse().unwrap(), state).unwrap();
        let page = crate::support::http::request(admin.local_addr(), "GET", "/metrics");
        assert_eq!(page.status, 200, "{page:?}");
        assert_eq!(
            page.header("Content-Type"),
            Some("text/plain; version=0.0.4"),
            "{page:?}"
        );
        page.text()
    }

    /// Every sample of the parsed families by name and labels (each once).
    fn samples_of(families: &BTreeMap<String, Family>) -> BTreeMap<SampleKey, f64> {
        let mut samples = BTreeMap::new();
        for (name, labels, value) in families.values().flat_map(|f| f.samples.iter()) {
            let key = (name.clone(), labels.clone());
            assert!(
                samples.insert(key, *value).is_none(),
                "{name} {labels:?} twice"
            );
        }
        samples
    }

    /// A sample's name and labels, the key of the parsed values.
    type SampleKey = (String, BTreeMap<String, String>);

    #[test]
    fn prometheus_client_reads_every_family_and_value() {
        let Some(python) = crate::support::tool(Tool::PrometheusClient) else {
            return;
        };
        let weird = "unix:///tmp/odd \"name\"\\with\nline";
        let listeners = vec![
            listener("tcp://127.0.0.1:7000", 10, &[100, 800, 3_000, 70_000_000]),
            listener(weird, 20, &[]),
            listener("udp://[::1]:53", 30, &[2_500, 2_500, 59_999_999]),
        ];
        let page = fetch_metrics(Arc::new(Listeners(listeners.clone())));
        let parsed = parse_metrics(&python, &page);
        let mut families = BTreeMap::new();
        for (name, family) in &parsed {
            assert!(family.has_help, "{name} has no HELP");
            families.insert(name.clone(), family.kind.clone());
        }
        let samples = samples_of(&parsed);

        // The parser names counter families without `_total`.
        let expected: BTreeMap<String, String> = FAMILIES
            .into_iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(families, expected);

        let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
            let labels = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let key = (name.to_string(), labels);
            *samples
                .get(&key)
                .unwrap_or_else(|| panic!("no sample {key:?}"))
        };

        assert_eq!(
            value(
                "socketserver_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            1.0
        );

        let mut expected_samples = 1;
        for m in &listeners {
            let l = [("listener", m.listener.as_str())];
            for (name, put_in) in [
                ("socketserver_connections_open", m.connections_open),
                ("socketserver_requests_in_flight", m.requests_in_flight),
                ("socketserver_requests_total", m.duration.count),
                ("socketserver_rejected_total", m.rejected_total),
                ("socketserver_dropped_total", m.dropped_total),
                ("socketserver_failed_total", m.failed_total),
                ("socketserver_panicked_total", m.panicked_total),
                ("socketserver_cut_total", m.cut_total),
                ("socketserver_threads", m.threads),
                ("socketserver_queued", m.queued),
            ] {
                assert_eq!(value(name, &l), put_in as f64, "{name} of {}", m.listener);
            }
            let histogram = "socketserver_request_duration_seconds";
            for (i, le) in BUCKET_LABELS.iter().enumerate() {
                let bucket = value(
                    &format!("{histogram}_bucket"),
                    &[("le", le), ("listener", &m.listener)],
                );
                assert_eq!(bucket, m.duration.cumulative_counts[i] as f64, "le={le}");
            }
            let inf = value(
                &format!("{histogram}_bucket"),
                &[("le", "+Inf"), ("listener", &m.listener)],
            );
            assert_eq!(inf, m.duration.count as f64);
            assert_eq!(
                value(&format!("{histogram}_count"), &l),
                m.duration.count as f64
            );
            let sum = value(&format!("{histogram}_sum"), &l);
            assert!((sum - m.duration.sum_seconds).abs() < 1e-9, "sum {sum}");
            expected_samples += 10 + BUCKET_LABELS.len() + 3;
        }
        assert_eq!(samples.len(), expected_samples);

        // The cumulative counts of the first listener, worked out by hand:
        // 100 µs and 800 µs and 3 ms and 70 s.
        let first = [("le", "0.001"), ("listener", "tcp://127.0.0.1:7000")];
        assert_eq!(
            value("socketserver_request_duration_seconds_bucket", &first),
            2.0
        );
        let sixty = [("le", "60"), ("listener", "tcp://127.0.0.1:7000")];
        assert_eq!(
            value("socketserver_request_duration_seconds_bucket", &sixty),
            3.0
        );
    }

    #[test]
    fn prometheus_client_reads_a_page_without_listeners() {
        let Some(python) = crate::support::tool(Tool::PrometheusClient) else {
            return;
        };
        let page = fetch_metrics(Arc::new(Listeners(Vec::new())));
        let parsed = parse_metrics(&python, &page);
        assert_eq!(parsed.len(), 12);
        let samples: Vec<_> = samples_of(&parsed).into_keys().collect();
        assert_eq!(samples.len(), 1, "{samples:?}");
        assert_eq!(samples[0].0, "socketserver_build_info");
    }
}
