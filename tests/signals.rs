//! Signals against the program (SPEC rule 1; issue 15 items 1 and 6; issue
//! 14 item 15): the first signal is announced at once with what the
//! shutdown waits for; signals within 100 ms of the first are the first (GNU
//! `timeout` signals the process, then its process group); a later one exits
//! 130; SIGHUP drains like SIGTERM.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use support::STEP;

/// A `socketserver serve qa` (possibly under a wrapper such as `timeout`)
/// whose standard error is read line by line as it comes.
struct Watched {
    child: Child,
    addr: String,
    /// The admin listener (`/metrics`).
    admin: String,
    stderr: Receiver<String>,
    seen: Vec<String>,
}

impl Watched {
    /// Runs `wrapper... socketserver serve qa --bind tcp://127.0.0.1:0
    /// --admin tcp://127.0.0.1:0 ARGS`.
    fn start(wrapper: &[&str], args: &[&str]) -> Watched {
        let program = env!("CARGO_BIN_EXE_socketserver");
        let mut command = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut command = Command::new(first);
                command.args(rest).arg(program);
                command
            }
            None => Command::new(program),
        };
        let mut child = command
            .args(["serve", "qa", "--bind", "tcp://127.0.0.1:0"])
            .args(["--admin", "tcp://127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the program");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut announced = || {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim().to_string()
        };
        let line = announced();
        let admin = line
            .strip_prefix("admin on tcp://")
            .unwrap_or_else(|| panic!("no admin address: {line:?}"))
            .to_string();
        let line = announced();
        let addr = line
            .strip_prefix("listening on tcp://")
            .unwrap_or_else(|| panic!("no address: {line:?}"))
            .to_string();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watched {
            child,
            addr,
            admin,
            stderr: rx,
            seen: Vec::new(),
        }
    }

    /// A connection with a message in progress (half a line): what a
    /// shutdown waits for.
    fn busy_connection(&self) -> TcpStream {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream.write_all(b"half a ques").unwrap();
        // The server has it once it answers a question on another
        // connection sent after it (the listener is served in order).
        let mut probe = TcpStream::connect(&self.addr).unwrap();
        probe.set_read_timeout(Some(STEP)).unwrap();
        probe.write_all(b"what?\n").unwrap();
        let mut answer = String::new();
        BufReader::new(probe).read_line(&mut answer).unwrap();
        assert!(!answer.is_empty());
        // The probe is closed; once the server has seen it go, the busy
        // connection is the only one open.
        support::eventually("the probe's connection to close", || {
            self.connections_open() == Some(1)
        });
        stream
    }

    /// `socketserver_connections_open` of the served listener, from
    /// `/metrics`.
    fn connections_open(&self) -> Option<u64> {
        let (status, page) = support::http::get(&self.admin, "/metrics");
        assert_eq!(status, 200, "{page}");
        page.lines()
            .find(|line| line.starts_with("socketserver_connections_open{"))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    /// Waits (at most `limit`) for a line of standard error containing
    /// `text`; returns when it came.
    fn wait_for_line(&mut self, text: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let left = limit.saturating_sub(started.elapsed());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.seen.push(line);
                    if found {
                        return started.elapsed();
                    }
                }
                Err(_) => panic!(
                    "no line with {text:?} within {limit:?}; standard error:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit; returns its status code and how long it took.
    fn exit(&mut self) -> (Option<i32>, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), started.elapsed());
            }
            assert!(started.elapsed() < STEP, "the program did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything standard error said, once the program has exited.
    fn rest_of_stderr(&mut self) -> String {
        while let Ok(line) = self.stderr.recv_timeout(STEP) {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

crate::both_modes! {
    // The count in the announcement is the connections with something in
    // progress: in reactor mode too, where the loops say which are idle.
    fn the_first_signal_is_announced_at_once_and_a_second_exits_130(mode) {
        let mut server =
            Watched::start(&[], &["--shutdown-timeout", "30", "--dispatch", mode.name()]);
        let _busy = server.busy_connection();
        let _idle: Vec<TcpStream> =
            (0..2).map(|_| TcpStream::connect(&server.addr).unwrap()).collect();
        support::eventually("the idle connections to be taken in", || {
            server.connections_open() == Some(3)
        });
        // What the shutdown waits for: the reactor's loops close idle
        // connections at once; in threads mode a qa connection is one
        // request (its handler does not end idle ones at the shutdown), so
        // all three are waited for.
        let waited_for = match mode {
            support::Mode::Reactor => "1 connection",
            support::Mode::Threads => "3 connections",
        };
        server.signal("INT");
        let took = server.wait_for_line(
            &format!("shutting down: waiting up to 30 s for {waited_for} (Ctrl-C again to stop now)"),
            STEP,
        );
        assert!(took < Duration::from_secs(5), "announced after {took:?}");
        assert!(
            server.seen.last().unwrap().contains(" WARN "),
            "{:?}",
            server.seen
        );
        // Past the 100 ms in which signals count as the first: exit now.
        thread::sleep(Duration::from_millis(200));
        server.signal("INT");
        let (code, took) = server.exit();
        assert_eq!(code, Some(130));
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    fn signals_within_100_ms_of_the_first_are_the_first(mode) {
        // GNU timeout signals the program, then its own process group, which
        // the program is in: two deliveries of one request to stop. The drain
        // must still happen: the busy connection is cut at the 2 s deadline and
        // the program exits 0 (it exited 130 at once before).
        let mut server = Watched::start(
            &["timeout", "--preserve-status", "-s", "INT", "1"],
            &["--shutdown-timeout", "2", "--dispatch", mode.name()],
        );
        let _busy = server.busy_connection();
        server.wait_for_line("shutting down: waiting up to 2 s for 1 connection", STEP);
        // From the announcement on, the drain waits for the busy connection
        // until the 2 s deadline (less what reading the line took).
        let announced = Instant::now();
        let (code, _) = server.exit();
        let elapsed = announced.elapsed();
        let log = server.rest_of_stderr();
        assert_eq!(code, Some(0), "{log}");
        assert!(
            elapsed >= Duration::from_millis(1500),
            "exited {elapsed:?} after the announcement: the drain was skipped\n{log}"
        );
        assert!(!log.contains("second interrupt"), "{log}");
        assert_eq!(log.matches("shutting down:").count(), 1, "{log}");
        assert!(log.contains("cut 1 connection"), "{log}");
    }

    fn sighup_drains_like_sigterm(mode) {
        let mut server =
            Watched::start(&[], &["--shutdown-timeout", "1", "--dispatch", mode.name()]);
        let _busy = server.busy_connection();
        server.signal("HUP");
        server.wait_for_line("shutting down: waiting up to 1 s for 1 connection", STEP);
        let (code, _) = server.exit();
        let log = server.rest_of_stderr();
        assert_eq!(code, Some(0), "{log}");
        assert!(log.contains("cut 1 connection"), "{log}");
    }

    fn nothing_in_progress_is_said_too(mode) {
        let mut server = Watched::start(&[], &mode.flag());
        server.signal("TERM");
        server.wait_for_line("shutting down: nothing in progress", STEP);
        assert_eq!(server.exit().0, Some(0));
    }
}
