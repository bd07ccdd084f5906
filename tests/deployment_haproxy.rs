//! A rolling restart behind a real HAProxy (Debian's `haproxy`; skipped
//! unless `CI` is set when it is not installed), in both dispatch modes.
//!
//! Three echo-upper and three http backends on loopback ports, each with
//! `--proxy-protocol`, `--agent-check` and `--drain-delay`; HAProxy in front
//! with `send-proxy-v2`, `check` and `agent-check`. While clients of both
//! services run through HAProxy, each backend in turn gets SIGTERM, drains
//! (HAProxy's stats show `DRAIN`), exits, and is started again on the same
//! ports (HAProxy's stats show `UP` again). No request may fail, and the
//! http backends' access logs must show each client's own address (the
//! PROXY header's), not HAProxy's.
//!
//! `cargo test --all-features --test deployment_haproxy`

mod support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{program, Mode, ServerProcess, TempDir, Tool, STEP};

/// How long a backend keeps serving after SIGTERM: many agent-check
/// intervals (100 ms), so HAProxy has stopped sending it clients before its
/// listener closes.
const DRAIN_DELAY: &str = "1";
/// The whole test's bound.
const BUDGET: Duration = Duration::from_secs(60);

/// One backend process and the ports it keeps across restarts.
struct Backend {
    service: &'static str,
    name: String,
    port: u16,
    agent_port: u16,
    process: ServerProcess,
    /// Standard error of its earlier lives (the access logs).
    logs: String,
}

impl Backend {
    fn start(
        service: &'static str,
        name: String,
        mode: Mode,
        ports: Option<(u16, u16)>,
    ) -> Backend {
        let (bind, agent) = match ports {
            Some((port, agent)) => (
                format!("tcp://127.0.0.1:{port}"),
                format!("tcp://127.0.0.1:{agent}"),
            ),
            None => (
                "tcp://127.0.0.1:0".to_string(),
                "tcp://127.0.0.1:0".to_string(),
            ),
        };
        let process = ServerProcess::start_with(
            program()
                .args(["serve", service, "--proxy-protocol"])
                .args(mode.flag())
                .args(["--bind", &bind, "--agent-check", &agent])
                .args(["--drain-delay", DRAIN_DELAY, "--shutdown-timeout", "5"])
                .env("RUST_LOG", "info"),
            1,
        );
        let port = process
            .addr_of(0)
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let agent_port = process.agent().port();
        Backend {
            service,
            name,
            port,
            agent_port,
            process,
            logs: String::new(),
        }
    }

    /// SIGTERM, then the exit (status 0); keeps its log.
    fn stop(&mut self) {
        self.process.signal("TERM");
        let status = self.process.wait(STEP).expect("the backend exits");
        assert_eq!(status.code(), Some(0), "{} exited with {status}", self.name);
        self.logs.push_str(&self.process.stderr_text());
    }

    fn restart(&mut self, mode: Mode) {
        let again = Backend::start(
            self.service,
            self.name.clone(),
            mode,
            Some((self.port, self.agent_port)),
        );
        self.process = again.process;
    }
}

/// HAProxy in the foreground, killed on drop.
struct Haproxy {
    child: Child,
    stats: PathBuf,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    fn start(dir: &Path, echo_port: u16, http_port: u16, backends: &[Backend]) -> Haproxy {
        let stats = dir.join("haproxy.sock");
        let mut config = format!(
            "global\n    stats socket {} mode 600 level admin\n    maxconn 4000\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 20s\n    timeout server 20s\n\
             frontend echo\n    bind 127.0.0.1:{echo_port}\n    default_backend echo_servers\n\
             frontend web\n    bind 127.0.0.1:{http_port}\n    default_backend web_servers\n",
            stats.display()
        );
        for (backend, service) in [("echo_servers", "echo-upper"), ("web_servers", "http")] {
            writeln!(config, "backend {backend}").unwrap();
            writeln!(
                config,
                "    default-server send-proxy-v2 check inter 100 fall 1 rise 2 agent-check agent-inter 100"
            )
            .unwrap();
            for b in backends.iter().filter(|b| b.service == service) {
                writeln!(
                    config,
                    "    server {} 127.0.0.1:{} agent-port {}",
                    b.name, b.port, b.agent_port
                )
                .unwrap();
            }
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        Haproxy { child, stats }
    }

    /// Each server's status, by `backend/server`, from `show stat`.
    fn statuses(&self) -> Vec<(String, String)> {
        let Ok(mut socket) = UnixStream::connect(&self.stats) else {
            return Vec::new();
        };
        socket.set_read_timeout(Some(STEP)).unwrap();
        socket.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        socket.read_to_string(&mut csv).unwrap();
        let mut lines = csv.lines();
        let Some(header) = lines.next() else {
            return Vec::new();
        };
        let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let column = |name: &str| columns.iter().position(|c| *c == name).unwrap();
        let (px, sv, status) = (column("pxname"), column("svname"), column("status"));
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > status && f[sv] != "FRONTEND" && f[sv] != "BACKEND")
            .map(|f| (format!("{}/{}", f[px], f[sv]), f[status].to_string()))
            .collect()
    }

    fn status_of(&self, server: &str) -> String {
        self.statuses()
            .into_iter()
            .find(|(name, _)| name.ends_with(&format!("/{server}")))
            .map(|(_, status)| status)
            .unwrap_or_default()
    }
}

/// A free loopback port (bound, then released for HAProxy to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the clients did.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    errors: Mutex<Vec<String>>,
    /// The local address of every http client whose request succeeded.
    http_clients: Mutex<BTreeSet<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, SeqCst);
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 10 {
            errors.push(what);
        }
    }
}

fn echo_request(port: u16, n: u64) -> Result<(), String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(STEP)).unwrap();
    let text = format!("hello {n}\n");
    stream
        .write_all(text.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    if answer != text.to_uppercase() {
        return Err(format!("echo answered {answer:?} to {text:?}"));
    }
    Ok(())
}

fn http_request(port: u16) -> Result<String, String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(STEP)).unwrap();
    let local = stream.local_addr().unwrap().to_string();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    if !answer.starts_with("HTTP/1.1 200 OK\r\n") || !answer.ends_with("</html>\n") {
        return Err(format!(
            "http answered {:?}",
            &answer[..answer.len().min(80)]
        ));
    }
    Ok(local)
}

/// Waits until `condition` holds of HAProxy's statuses.
fn until(
    haproxy: &Haproxy,
    what: &str,
    started: Instant,
    mut condition: impl FnMut(&Haproxy) -> bool,
) {
    while !condition(haproxy) {
        assert!(
            started.elapsed() < BUDGET,
            "timed out waiting for {what}: {:?}",
            haproxy.statuses()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

both_modes! {
    fn a_rolling_restart_behind_haproxy_fails_no_request(mode) {
        if support::tool(Tool::Haproxy).is_none() {
            return;
        }
        let started = Instant::now();
        let dir = TempDir::new("haproxy");
        let mut backends: Vec<Backend> = (1..=3)
            .map(|n| Backend::start("echo-upper", format!("echo{n}"), mode, None))
            .chain((1..=3).map(|n| Backend::start("http", format!("web{n}"), mode, None)))
            .collect();
        let (echo_port, http_port) = (free_port(), free_port());
        let haproxy = Haproxy::start(&dir.0, echo_port, http_port, &backends);
        until(&haproxy, "every server UP", started, |h| {
            let statuses = h.statuses();
            statuses.len() == 6 && statuses.iter().all(|(_, s)| s == "UP")
        });

        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let clients: Vec<_> = (0..6)
            .map(|i| {
                let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
                thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(SeqCst) {
                        n += 1;
                        let result = if i % 2 == 0 {
                            echo_request(echo_port, n).map(|()| None)
                        } else {
                            http_request(http_port).map(Some)
                        };
                        match result {
                            Ok(local) => {
                                tally.ok.fetch_add(1, SeqCst);
                                if let Some(local) = local {
                                    tally.http_clients.lock().unwrap().insert(local);
                                }
                            }
                            Err(e) => tally.fail(e),
                        }
                    }
                })
            })
            .collect();

        for backend in backends.iter_mut() {
            let name = backend.name.clone();
            let before = tally.ok.load(SeqCst);
            backend.process.signal("TERM");
            until(&haproxy, &format!("{name} to drain"), started, |h| h.status_of(&name).starts_with("DRAIN"));
            let status = backend.process.wait(STEP).expect("the backend exits");
            assert_eq!(status.code(), Some(0), "{name}");
            backend.logs.push_str(&backend.process.stderr_text());
            backend.restart(mode);
            until(&haproxy, &format!("{name} to be UP again"), started, |h| h.status_of(&name) == "UP");
            assert!(tally.ok.load(SeqCst) > before, "no request went through while {name} restarted");
        }
        // Some load on the restarted set, then stop.
        let settled = tally.ok.load(SeqCst);
        while tally.ok.load(SeqCst) < settled + 50 {
            assert!(started.elapsed() < BUDGET);
            thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, SeqCst);
        for client in clients {
            client.join().unwrap();
        }
        for backend in backends.iter_mut() {
            backend.stop();
        }
        let (ok, failed) = (tally.ok.load(SeqCst), tally.failed.load(SeqCst));
        eprintln!("rolling restart ({mode:?}): {ok} requests, {failed} failed, {:.1} s", started.elapsed().as_secs_f64());
        assert_eq!(failed, 0, "failed requests: {:?}", tally.errors.lock().unwrap());
        assert!(ok > 100, "only {ok} requests");

        // Each http client's own address (the PROXY header's) is in a
        // backend's access log; HAProxy's side of the connection is not
        // what the backends saw.
        let logged: BTreeSet<&str> = backends
            .iter()
            .filter(|b| b.service == "http")
            .flat_map(|b| b.logs.lines())
            .filter_map(|line| line.split_once(" \"GET / HTTP/1.1\" 200 "))
            .filter_map(|(before, _)| before.rsplit(' ').next())
            .collect();
        let clients = tally.http_clients.lock().unwrap();
        assert!(!clients.is_empty());
        for local in clients.iter() {
            assert!(logged.contains(local.as_str()), "{local} is in no access log");
        }
        assert!(started.elapsed() < BUDGET);
    }
}
