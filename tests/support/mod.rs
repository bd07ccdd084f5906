//! Shared by the integration tests: run the `socketserver` program as a
//! child process, read the addresses it announces, and always clean up.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long any single step of a test may take before it fails.
pub const STEP: Duration = Duration::from_secs(20);

/// The program under test.
pub fn program() -> Command {
    Command::new(env!("CARGO_BIN_EXE_socketserver"))
}

/// A running `socketserver serve ...`, killed on drop.
pub struct ServerProcess {
    child: Child,
    /// The URLs from its `listening on URL` lines, in order.
    pub urls: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl ServerProcess {
    /// Starts `socketserver ARGS` and waits until it has announced `binds`
    /// addresses.
    pub fn start(args: &[&str], binds: usize) -> ServerProcess {
        Self::start_with(program().args(args), binds)
    }

    /// Starts a prepared command (environment, working directory...) and
    /// waits for `binds` announced addresses.
    pub fn start_with(command: &mut Command, binds: usize) -> ServerProcess {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the socketserver program");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut process = ServerProcess {
            child,
            urls: Vec::new(),
            stderr: Some(stderr),
        };
        process.urls = read_urls(stdout, binds).unwrap_or_else(|| {
            let _ = process.child.kill();
            let _ = process.child.wait();
            panic!(
                "the server announced no address; stderr:\n{}",
                process.stderr_text()
            )
        });
        process
    }

    /// The first announced URL.
    pub fn url(&self) -> &str {
        &self.urls[0]
    }

    /// The `HOST:PORT` of the first announced URL (for tcp:// and udp://).
    pub fn addr(&self) -> String {
        self.url()
            .split_once("://")
            .expect("an IP URL")
            .1
            .to_string()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`"INT"`, `"TERM"`, `"KILL"`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the process wrote to standard error (after it exited).
    pub fn stderr_text(&mut self) -> String {
        self.stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `count` `listening on URL` lines, or gives up after [`STEP`].
fn read_urls(stdout: ChildStdout, count: usize) -> Option<Vec<String>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            if let Some(url) = line.strip_prefix("listening on ") {
                if tx.send(url.to_string()).is_err() {
                    return;
                }
            }
        }
    });
    (0..count).map(|_| rx.recv_timeout(STEP).ok()).collect()
}

/// A fresh empty directory for one test, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "socketserver-test-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command to the end with `input` on standard input, bounded by
/// [`STEP`]; returns its status, stdout and stderr.
pub fn run_with_input(command: &mut Command, input: &[u8]) -> (ExitStatus, Vec<u8>, String) {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = tx.send(());
        output
    });
    if rx.recv_timeout(STEP).is_err() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("the command did not finish within {STEP:?}");
    }
    let _ = writer.join();
    let output = waiter.join().unwrap().expect("collect the output");
    (
        output.status,
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A library server running `serve_forever` on its own thread.
pub struct Running {
    pub handle: socketserver::ServerHandle,
    pub addr: socketserver::Address,
    thread: Option<thread::JoinHandle<std::io::Result<socketserver::Summary>>>,
}

impl Running {
    /// Starts `serve_forever` on a new thread.
    pub fn start<T, H, D>(server: socketserver::Server<T, H, D>) -> Running
    where
        T: socketserver::transport::Transport,
        H: Send + Sync + 'static,
        D: socketserver::dispatch::Dispatch<T, H>,
    {
        let handle = server.handle();
        let addr = server.local_addr().clone();
        let thread = thread::spawn(move || server.serve_forever());
        Running {
            handle,
            addr,
            thread: Some(thread),
        }
    }

    /// The IP address the server listens on.
    pub fn inet(&self) -> std::net::SocketAddr {
        self.addr.as_inet().expect("an IP server")
    }

    /// Asks for a shutdown and waits (at most [`STEP`]) for `serve_forever`'s
    /// summary.
    pub fn stop(mut self) -> socketserver::Summary {
        self.handle.shutdown();
        self.join()
    }

    /// Waits (at most [`STEP`]) for `serve_forever` to return by itself.
    pub fn join(&mut self) -> socketserver::Summary {
        let thread = self.thread.take().expect("joined once");
        let deadline = Instant::now() + STEP;
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "serve_forever did not return within {STEP:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
        thread
            .join()
            .expect("serve_forever panicked")
            .expect("serve_forever failed")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Polls `condition` until it holds, failing after [`STEP`]: for states that
/// nothing announces (a thread retiring, a counter moving).
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(5));
    }
}
