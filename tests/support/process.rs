//! A server as a child process: the `socketserver` program (feature
//! `cli`) started for a service in a mode, or an example; read the
//! addresses it announces, signal it, wait for it, and always clean up.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::{Mode, STEP};

/// The program under test.
#[cfg(feature = "cli")]
pub fn program() -> Command {
    Command::new(env!("CARGO_BIN_EXE_socketserver"))
}

/// `socketserver serve SERVICE --dispatch MODE ARGS...`, not started yet:
/// for a test that sets the environment or the working directory.
#[cfg(feature = "cli")]
pub fn serve_command(service: &str, mode: Mode, args: &[&str]) -> Command {
    let mut command = program();
    command
        .args(["serve", service])
        .args(mode.flag())
        .args(args);
    command
}

/// Starts `socketserver serve SERVICE --dispatch MODE ARGS...` and waits
/// for `binds` announced addresses.
#[cfg(feature = "cli")]
pub fn serve(service: &str, mode: Mode, args: &[&str], binds: usize) -> ServerProcess {
    ServerProcess::start_with(&mut serve_command(service, mode, args), binds)
}

/// A running `socketserver serve ...`, killed on drop.
pub struct ServerProcess {
    child: Child,
    /// The URLs from its `listening on URL` lines, in order.
    pub urls: Vec<String>,
    /// Every line of standard output read so far: up to the last
    /// `listening on` line waited for (the `admin on` and `agent-check on`
    /// lines come before them).
    pub stdout: Vec<String>,
    lines: mpsc::Receiver<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl ServerProcess {
    /// Starts `socketserver ARGS` and waits until it has announced `binds`
    /// addresses.
    #[cfg(feature = "cli")]
    pub fn start(args: &[&str], binds: usize) -> ServerProcess {
        Self::start_with(program().args(args), binds)
    }

    /// Starts a prepared command (environment, working directory...) and
    /// waits for `binds` announced addresses.
    pub fn start_with(command: &mut Command, binds: usize) -> ServerProcess {
        let mut child = dies_with_its_parent(command)
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
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut process = ServerProcess {
            child,
            urls: Vec::new(),
            stdout: Vec::new(),
            lines,
            stderr: Some(stderr),
        };
        while process.urls.len() < binds {
            match process.lines.recv_timeout(STEP) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        process.urls.push(url.to_string());
                    }
                    process.stdout.push(line);
                }
                Err(_) => {
                    let _ = process.child.kill();
                    let _ = process.child.wait();
                    let stderr = process.stderr_text();
                    panic!(
                        "the server announced {} of {binds} address(es); stdout {:?}; stderr:\n{stderr}",
                        process.urls.len(),
                        process.stdout,
                    )
                }
            }
        }
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

    /// The `HOST:PORT` of the `n`th announced URL (tcp:// or udp://).
    pub fn addr_of(&self, n: usize) -> String {
        self.urls[n]
            .split_once("://")
            .expect("an IP URL")
            .1
            .to_string()
    }

    /// The address of the line `PREFIX tcp://HOST:PORT` (`admin on`,
    /// `agent-check on`).
    pub fn announced(&self, prefix: &str) -> std::net::SocketAddr {
        self.stdout
            .iter()
            .find_map(|line| line.strip_prefix(prefix))
            .and_then(|url| url.strip_prefix(" tcp://"))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {:?}", self.stdout))
            .parse()
            .unwrap()
    }

    /// The admin listener's address (`--admin`).
    pub fn admin(&self) -> std::net::SocketAddr {
        self.announced("admin on")
    }

    /// The agent check's address (`--agent-check`).
    pub fn agent(&self) -> std::net::SocketAddr {
        self.announced("agent-check on")
    }

    /// Every line of standard output, once the process has exited (at most
    /// [`STEP`] more for the last ones to be read).
    pub fn stdout_to_the_end(&mut self) -> Vec<String> {
        let mut lines = self.stdout.clone();
        while let Ok(line) = self.lines.recv_timeout(STEP) {
            lines.push(line);
        }
        lines
    }

    /// The host and the port of the first announced URL, apart (for the
    /// Python clients).
    pub fn host_port(&self) -> (String, String) {
        let addr = self.addr();
        let (host, port) = addr.rsplit_once(':').expect("HOST:PORT");
        (host.to_string(), port.to_string())
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

    /// Sends SIGTERM and expects exit status 0 within [`STEP`]; returns
    /// everything the process wrote to standard error.
    pub fn terminate(&mut self) -> String {
        self.signal("TERM");
        let status = self.wait(STEP);
        let log = self.stderr_text();
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
        log
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

/// Has the child killed when the test that started it ends, even if the
/// test binary itself is killed or aborts before the child's owner is
/// dropped (Linux's parent-death signal: sent when the thread that started
/// the child ends, which is the test's own thread or a helper's that waits
/// for the child).
fn dies_with_its_parent(command: &mut Command) -> &mut Command {
    // SAFETY: prctl(2) is async-signal-safe, and the closure touches
    // nothing else between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Runs a command to the end with `input` on standard input, bounded by
/// [`STEP`] (killed after that); returns its status, stdout and stderr.
pub fn run_with_input(command: &mut Command, input: &[u8]) -> (ExitStatus, Vec<u8>, String) {
    run_with_input_within(command, input, STEP)
}

/// [`run_with_input`] with another bound, for a heavy program (a browser).
pub fn run_with_input_within(
    command: &mut Command,
    input: &[u8],
    limit: Duration,
) -> (ExitStatus, Vec<u8>, String) {
    let mut child = dies_with_its_parent(command)
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
    if rx.recv_timeout(limit).is_err() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        panic!("the command did not finish within {limit:?}");
    }
    let _ = writer.join();
    let output = waiter.join().unwrap().expect("collect the output");
    (
        output.status,
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// CPU time (user + system, in clock ticks) a process has used so far.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}
