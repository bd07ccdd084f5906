//! exec: remote command execution over length-prefixed frames, behind an
//! HMAC handshake.
//!
//! # The conversation
//!
//! 1. The [`auth`](crate::protocol::auth#the-handshake) handshake: the server sends a 32-byte
//!    challenge, the client answers HMAC-SHA256(key, challenge), the server
//!    sends the verdict `{"status":"ok"}` or `{"status":"denied"}` as a
//!    JSON-header message and closes on denial. Nothing runs before it.
//! 2. Then, as many times as the client likes: a [frame](crate::protocol::framing)
//!    holding a UTF-8 command line; the answer is a JSON-header message
//!
//!    ```text
//!    {"status":"ok","exit_code":0,"signal":null,"stdout_size":N,"stderr_size":M,"timed_out":false,"truncated":false}
//!    ```
//!
//!    followed by stdout's N bytes, then stderr's M bytes. A command that
//!    cannot start (not allowed, empty, unbalanced quotes, not UTF-8, no such
//!    program) is answered
//!    `{"status":"error","error":"<why>","stdout_size":0,"stderr_size":0}`
//!    with no body, and the connection stays usable.
//! 3. A frame over the limit is answered
//!    `{"status":"error","error":"frame of N bytes over the limit L","stdout_size":0,"stderr_size":0}`
//!    and the connection is closed.
//!
//! # Running a command
//!
//! The line is split into words with shell quoting rules (`'a b'`, `"a b"`,
//! `a\ b`) and run without a shell: no pipes, no globbing, no variables. Its
//! standard input is closed (`/dev/null`) and it runs in the
//! [working directory](Exec::workdir) in a process group of its own. Only the
//! [allowed](Exec::allow) programs run: the first word must equal an allowed
//! name exactly (`echo` does not allow `/bin/echo`), unless
//! [`allow_any`](Exec::allow_any) is set. With [`shell`](Exec::shell) the
//! line goes to `/bin/sh -c` as the course's server does, and the allow-list
//! checks only its first word.
//!
//! Standard output and error are read at the same time, each kept up to
//! [`max_output`](Exec::max_output) bytes (the rest is read and thrown away,
//! and `truncated` is set). After [`timeout`](Exec::timeout) the whole process
//! group is killed (children and grandchildren included), and the answer says
//! `timed_out` with what the command wrote until then. `exit_code` is null
//! when a signal ended the command, and `signal` then gives its number.
//!
//! The answer comes when the command has exited and its output pipes are
//! closed; a background process that keeps them open holds the answer until
//! the timeout. Background processes that close them are left alone.
//!
//! A command whose connection hangs up while it runs (cut at the server's
//! shutdown deadline, reset by the client, or, on a Unix socket, closed by
//! the client) is killed with its process group: no one is left to read its
//! answer. [`Exec::kill_running`] does the same for every command, for a
//! program on its way out.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;

use super::wire::{authenticate, is_gone};
use crate::protocol::auth::{FailureLimit, Key};
use crate::protocol::framing::{FrameError, Framing};
use crate::{Address, RequestHandler, StreamRequest};

/// How long the pipes of a killed command are still read.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// The longest pause between two checks of a command that closed its pipes
/// but has not exited.
const MAX_WAIT_STEP: Duration = Duration::from_millis(50);

/// The exec service: runs allowed commands for clients that know the key.
/// See the [module documentation](self) for the protocol.
///
/// ```no_run
/// use std::time::Duration;
/// use socketserver::protocol::auth::Key;
/// use socketserver::services::Exec;
/// use socketserver::ThreadingTcpServer;
///
/// let exec = Exec::new(Key::from_file("exec.key")?)
///     .allow("ls")
///     .allow("uname")
///     .workdir("/tmp")
///     .timeout(Duration::from_secs(5));
/// let server = ThreadingTcpServer::bind("127.0.0.1:9003", exec)?;
/// server.shutdown_on_ctrl_c()?;
/// server.serve_forever()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Exec {
    key: Key,
    framing: Framing,
    allowed: BTreeSet<String>,
    allow_any: bool,
    shell: bool,
    workdir: PathBuf,
    timeout: Duration,
    max_output: usize,
    auth_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    auth_limit: FailureLimit,
    /// Process groups of the commands running now (their leaders' pids).
    running: Mutex<HashSet<u32>>,
}

/// What a command did: the body of an `ok` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The exit status; `None` when a signal ended the command.
    pub exit_code: Option<i32>,
    /// The signal that ended the command, if one did.
    pub signal: Option<i32>,
    /// Standard output, at most the output limit.
    pub stdout: Vec<u8>,
    /// Standard error, at most the output limit.
    pub stderr: Vec<u8>,
    /// The command was killed at the timeout.
    pub timed_out: bool,
    /// Some output went over the limit and was thrown away.
    pub truncated: bool,
}

impl Exec {
    /// A server that authenticates clients with `key` and, until told
    /// otherwise, allows no program; runs in the current directory, with a
    /// 10 s timeout, 1 MiB of output kept per stream, default framing, 10 s
    /// for the handshake and no idle timeout after it; an address is refused
    /// for 60 s after 5 wrong answers ([`FailureLimit::default`]).
    pub fn new(key: Key) -> Self {
        Exec {
            key,
            framing: Framing::new(),
            allowed: BTreeSet::new(),
            allow_any: false,
            shell: false,
            workdir: PathBuf::from("."),
            timeout: Duration::from_secs(10),
            max_output: 1 << 20,
            auth_timeout: Some(Duration::from_secs(10)),
            idle_timeout: None,
            auth_limit: FailureLimit::default(),
            running: Mutex::new(HashSet::new()),
        }
    }

    /// Allows the program named `program` (compared with the first word of
    /// a command line, exactly).
    pub fn allow(mut self, program: impl Into<String>) -> Self {
        self.allowed.insert(program.into());
        self
    }

    /// Allows every program (`true`), or only the allowed ones (`false`, the
    /// default).
    pub fn allow_any(mut self, any: bool) -> Self {
        self.allow_any = any;
        self
    }

    /// Runs command lines through `/bin/sh -c` (`true`), as the course's
    /// server does: pipes, redirections and `;` then work, and the
    /// allow-list checks only the first word, so an allowed `echo` lets
    /// `echo; anything` through. Off by default; the program logs a warning
    /// when it is on.
    pub fn shell(mut self, shell: bool) -> Self {
        self.shell = shell;
        self
    }

    /// Runs commands in `dir` (default: the server's current directory).
    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = dir.into();
        self
    }

    /// Kills a command's process group after `timeout` (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keeps at most `bytes` of each of stdout and stderr (default 1 MiB).
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// Sets the byte order and the limits of frames (the command line's
    /// limit is the frame limit).
    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    /// Gives a client at most `timeout` to answer the challenge (default
    /// 10 s; `None`: no limit).
    pub fn auth_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.auth_timeout = timeout;
        self
    }

    /// The read timeout between commands once the client is in; set it to
    /// the server's [`idle_timeout`](crate::Options::idle_timeout) (default
    /// none).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the limit on failed handshakes per client address (default: 5
    /// failures, then refused for 60 s; [`FailureLimit::off`] for none).
    pub fn auth_limit(mut self, limit: FailureLimit) -> Self {
        self.auth_limit = limit;
        self
    }

    /// The allowed program names.
    pub fn allowed(&self) -> impl Iterator<Item = &str> {
        self.allowed.iter().map(String::as_str)
    }

    /// The framing in use.
    pub fn frame_settings(&self) -> &Framing {
        &self.framing
    }

    /// Kills the process groups of every command running now; returns how
    /// many. For a program that stops: commands of connections cut at the
    /// shutdown deadline would otherwise run until their timeout.
    pub fn kill_running(&self) -> usize {
        let running = self.running.lock();
        for &pid in running.iter() {
            kill_group(pid);
        }
        running.len()
    }

    /// Runs one command line as a client's frame would, and returns what it
    /// did, or why it did not start (the `error` of the answer).
    pub fn run(&self, line: &str) -> Result<Outcome, String> {
        self.run_watching(line, None)
    }

    /// Runs a command line for the client on `client` (a connection's
    /// descriptor): if that connection hangs up meanwhile, the command is
    /// killed, since no one is left to read its answer.
    fn run_watching(&self, line: &str, client: Option<RawFd>) -> Result<Outcome, String> {
        let words = split_command(line)?;
        let Some(program) = words.first() else {
            return Err("empty command".to_string());
        };
        if !self.allow_any && !self.allowed.contains(program) {
            return Err(format!("not allowed: {program}"));
        }
        let mut command = if self.shell {
            let mut sh = Command::new("/bin/sh");
            sh.arg("-c").arg(line);
            sh
        } else {
            let mut direct = Command::new(program);
            direct.args(&words[1..]);
            direct
        };
        command
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let child = command.spawn().map_err(|e| match e.kind() {
            io::ErrorKind::NotFound if !self.workdir_exists() => {
                format!(
                    "the working directory {} is missing",
                    self.workdir.display()
                )
            }
            io::ErrorKind::NotFound => format!("no such program: {program}"),
            io::ErrorKind::PermissionDenied => format!("permission denied: {program}"),
            _ => format!("cannot run {program}: {e}"),
        })?;
        self.collect(child, client)
    }

    fn workdir_exists(&self) -> bool {
        Path::new(&self.workdir).is_dir()
    }

    /// Reads a started command's output and waits for it, within the
    /// timeout.
    fn collect(&self, mut child: Child, client: Option<RawFd>) -> Result<Outcome, String> {
        let pid = child.id();
        self.running.lock().insert(pid);
        let deadline = Instant::now() + self.timeout;
        let mut streams = [
            Capture::new(child.stdout.take().map(OwnedFd::from)),
            Capture::new(child.stderr.take().map(OwnedFd::from)),
        ];
        let mut timed_out = false;
        let mut killed = false;
        let pumped = pump(&mut streams, deadline, self.max_output, client);
        if pumped != Pumped::Closed {
            timed_out = pumped == Pumped::Deadline;
            killed = true;
            // The child is not reaped yet, so its pid still names its group.
            kill_group(pid);
            pump(
                &mut streams,
                Instant::now() + KILL_GRACE,
                self.max_output,
                None,
            );
        }
        let status = self.wait(&mut child, pid, deadline, client, killed, &mut timed_out);
        let [stdout, stderr] = streams;
        let status = status.map_err(|e| format!("cannot wait for the command: {e}"))?;
        Ok(Outcome {
            exit_code: status.code(),
            signal: status.signal(),
            truncated: stdout.truncated || stderr.truncated,
            stdout: stdout.data,
            stderr: stderr.data,
            timed_out,
        })
    }

    /// Waits for a command whose pipes are done, killing its group at the
    /// deadline. The group is forgotten under the lock at the moment the
    /// child is reaped, so [`kill_running`](Exec::kill_running) never signals
    /// a reused pid.
    fn wait(
        &self,
        child: &mut Child,
        pid: u32,
        deadline: Instant,
        client: Option<RawFd>,
        mut killed: bool,
        timed_out: &mut bool,
    ) -> io::Result<ExitStatus> {
        let mut step = Duration::from_millis(1);
        loop {
            let mut running = self.running.lock();
            match child.try_wait() {
                Ok(Some(status)) => {
                    running.remove(&pid);
                    return Ok(status);
                }
                Ok(None) => {}
                Err(e) => {
                    running.remove(&pid);
                    return Err(e);
                }
            }
            if !killed && Instant::now() >= deadline {
                *timed_out = true;
                killed = true;
                kill_group(pid);
            }
            if killed {
                running.remove(&pid);
                drop(running);
                return child.wait(); // killed: returns at once
            }
            drop(running);
            let pause = step.min(deadline.saturating_duration_since(Instant::now()));
            if client.is_some_and(|fd| hung_up(fd, pause)) {
                killed = true;
                kill_group(pid); // still not reaped: the pid names the group
            } else if client.is_none() {
                std::thread::sleep(pause);
            }
            step = (step * 2).min(MAX_WAIT_STEP);
        }
    }

    fn send_outcome(&self, writer: &mut impl Write, outcome: &Outcome) -> io::Result<()> {
        let header = json!({
            "status": "ok",
            "exit_code": outcome.exit_code,
            "signal": outcome.signal,
            "stdout_size": outcome.stdout.len(),
            "stderr_size": outcome.stderr.len(),
            "timed_out": outcome.timed_out,
            "truncated": outcome.truncated,
        });
        self.framing.write_header(&mut *writer, &header)?;
        writer.write_all(&outcome.stdout)?;
        writer.write_all(&outcome.stderr)
    }

    fn send_error(&self, writer: &mut impl Write, why: &str) -> io::Result<()> {
        let header = json!({"status": "error", "error": why, "stdout_size": 0, "stderr_size": 0});
        self.framing.write_header(writer, &header)
    }

    /// Answers a frame that could not be read, when there is a way to.
    fn bad_frame(
        &self,
        req: &mut StreamRequest,
        peer: &Address,
        error: io::Error,
    ) -> io::Result<()> {
        match FrameError::from_io(&error) {
            Some(FrameError::TooLarge { .. }) => {
                log::warn!("{peer}: {error}; closing");
                let _ = self.send_error(req, &error.to_string());
                req.close_after_answer(super::wire::MAX_DISCARD);
                Ok(())
            }
            _ if is_gone(&error) => {
                log::debug!("{peer}: gone: {error}");
                Ok(())
            }
            _ => Err(error),
        }
    }
}

impl RequestHandler<StreamRequest> for Exec {
    fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
        let peer = req.peer_addr().clone();
        if !authenticate(
            req,
            &peer,
            &self.key,
            &self.framing,
            &self.auth_limit,
            self.auth_timeout,
            self.idle_timeout,
        )? {
            return Ok(());
        }
        let mut line = Vec::new();
        loop {
            match self.framing.read_frame_into(&mut *req, &mut line) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return self.bad_frame(req, &peer, e),
            }
            let started = Instant::now();
            let sent = match std::str::from_utf8(&line) {
                Err(_) => {
                    log::info!("{peer}: refused a command line that is not UTF-8");
                    self.send_error(req, "the command line is not UTF-8")
                }
                Ok(text) => match self.run_watching(text, Some(req.as_fd().as_raw_fd())) {
                    Ok(outcome) => {
                        log::info!(
                            "{peer}: {text:?}: {} in {:.3} s, {} + {} bytes of output{}{}",
                            match (outcome.exit_code, outcome.signal) {
                                (Some(code), _) => format!("exit {code}"),
                                (None, Some(signal)) => format!("signal {signal}"),
                                (None, None) => "ended".to_string(),
                            },
                            started.elapsed().as_secs_f64(),
                            outcome.stdout.len(),
                            outcome.stderr.len(),
                            if outcome.timed_out { ", timed out" } else { "" },
                            if outcome.truncated { ", truncated" } else { "" },
                        );
                        self.send_outcome(req, &outcome)
                    }
                    Err(why) => {
                        log::info!("{peer}: refused {text:?}: {why}");
                        self.send_error(req, &why)
                    }
                },
            };
            if let Err(e) = sent {
                if is_gone(&e) {
                    log::debug!("{peer}: gone before the answer: {e}");
                    return Ok(());
                }
                return Err(e);
            }
        }
    }
}

/// Splits a command line into words with shell quoting rules (`'a b'`,
/// `"a b"`, `a\ b`), as the server does before running it; the error is the
/// answer's `error`.
///
/// ```
/// use socketserver::services::exec::split_command;
/// assert_eq!(split_command(r#"echo 'a b' "c" d\ e"#).unwrap(), ["echo", "a b", "c", "d e"]);
/// assert_eq!(split_command("echo 'oops").unwrap_err(), "unbalanced quotes in the command line");
/// ```
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    shell_words::split(line).map_err(|_| "unbalanced quotes in the command line".to_string())
}

/// Sends SIGKILL to the process group `pgid`.
fn kill_group(pgid: u32) {
    if let Ok(pgid) = i32::try_from(pgid) {
        // SAFETY: kill(2) has no memory-safety requirements.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// One output pipe of a command and what was kept of it.
struct Capture {
    pipe: Option<File>,
    data: Vec<u8>,
    truncated: bool,
}

impl Capture {
    fn new(pipe: Option<OwnedFd>) -> Self {
        Capture {
            pipe: pipe.map(File::from),
            data: Vec::new(),
            truncated: false,
        }
    }

    /// Reads what is ready (poll said so: this does not block), keeping up
    /// to `limit` bytes in all.
    fn read_ready(&mut self, buf: &mut [u8], limit: usize) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        match pipe.read(buf) {
            Ok(0) => self.pipe = None,
            Ok(n) => {
                let keep = n.min(limit.saturating_sub(self.data.len()));
                self.data.extend_from_slice(&buf[..keep]);
                if keep < n {
                    self.truncated = true;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            Err(e) => {
                log::warn!("cannot read a command's output: {e}");
                self.pipe = None;
            }
        }
    }
}

/// How watching a command's output ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pumped {
    /// Both pipes reached end of file.
    Closed,
    /// The deadline came first.
    Deadline,
    /// The client's connection hung up (reset, or cut at shutdown).
    HungUp,
}

/// Poll flags that say a connection is over.
const HANGUP: libc::c_short = libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;

/// Reads both pipes as data comes, until both are closed or the deadline,
/// watching the client's connection (if given) for a hang-up.
fn pump(
    streams: &mut [Capture; 2],
    deadline: Instant,
    limit: usize,
    client: Option<RawFd>,
) -> Pumped {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = [libc::pollfd {
            fd: -1,
            events: libc::POLLIN,
            revents: 0,
        }; 3];
        let mut owners = [0usize; 2];
        let mut count = 0;
        for (i, stream) in streams.iter().enumerate() {
            if let Some(pipe) = &stream.pipe {
                fds[count].fd = pipe.as_raw_fd();
                owners[count] = i;
                count += 1;
            }
        }
        if count == 0 {
            return Pumped::Closed;
        }
        let mut watched = count;
        if let Some(fd) = client {
            // No events asked: poll still reports a hang-up or an error.
            fds[count] = libc::pollfd {
                fd,
                events: 0,
                revents: 0,
            };
            watched += 1;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Pumped::Deadline;
        }
        // SAFETY: `fds` holds `watched` initialised pollfd structures.
        let ready =
            unsafe { libc::poll(fds.as_mut_ptr(), watched as libc::nfds_t, poll_millis(left)) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::warn!("cannot watch a command's output: {e}");
            return Pumped::Deadline;
        }
        if watched > count && fds[count].revents & HANGUP != 0 {
            return Pumped::HungUp;
        }
        for (fd, &owner) in fds[..count].iter().zip(&owners) {
            if fd.revents != 0 {
                streams[owner].read_ready(&mut buf, limit);
            }
        }
    }
}

/// Waits up to `wait` for the connection `fd` to hang up; true if it did.
fn hung_up(fd: RawFd, wait: Duration) -> bool {
    let mut watch = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one initialised pollfd structure.
    let ready = unsafe { libc::poll(&mut watch, 1, poll_millis(wait)) };
    ready > 0 && watch.revents & HANGUP != 0
}

/// A poll timeout in milliseconds, rounded up.
fn poll_millis(wait: Duration) -> libc::c_int {
    let millis = wait.as_nanos().div_ceil(1_000_000);
    libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> Exec {
        Exec::new(Key::new(&b"k"[..]).unwrap())
            .allow("echo")
            .allow("sh")
            .allow("false")
            .allow("no-such-program-xyz")
    }

    #[test]
    fn runs_allowed_programs_without_a_shell() {
        let outcome = exec().run("echo 'a  b' \"c d\" e\\ f $HOME").unwrap();
        assert_eq!(outcome.stdout, b"a  b c d e f $HOME\n");
        assert_eq!(outcome.exit_code, Some(0));
        assert_eq!(outcome.signal, None);
        assert!(!outcome.timed_out && !outcome.truncated);
        let failed = exec().run("false").unwrap();
        assert_eq!(failed.exit_code, Some(1));
    }

    #[test]
    fn refuses_what_cannot_start() {
        let exec = exec();
        assert_eq!(exec.run("ls").unwrap_err(), "not allowed: ls");
        assert_eq!(
            exec.run("/bin/echo hi").unwrap_err(),
            "not allowed: /bin/echo"
        );
        assert_eq!(exec.run("   ").unwrap_err(), "empty command");
        assert_eq!(
            exec.run("echo 'oops").unwrap_err(),
            "unbalanced quotes in the command line"
        );
        assert_eq!(
            exec.run("no-such-program-xyz").unwrap_err(),
            "no such program: no-such-program-xyz"
        );
    }

    #[test]
    fn stdin_is_closed_and_stderr_is_kept_apart() {
        let outcome = exec()
            .run("sh -c 'cat; echo out; echo err >&2; exit 3'")
            .unwrap();
        assert_eq!(outcome.stdout, b"out\n");
        assert_eq!(outcome.stderr, b"err\n");
        assert_eq!(outcome.exit_code, Some(3));
    }

    #[test]
    fn a_signal_is_reported_instead_of_an_exit_code() {
        let outcome = exec().run("sh -c 'kill -TERM $$'").unwrap();
        assert_eq!(outcome.exit_code, None);
        assert_eq!(outcome.signal, Some(libc::SIGTERM));
    }

    #[test]
    fn output_over_the_limit_is_truncated_and_both_pipes_drain() {
        let outcome = exec()
            .max_output(1000)
            .run("sh -c 'head -c 300000 /dev/zero; head -c 300000 /dev/zero >&2; echo done >&2'")
            .unwrap();
        assert_eq!(outcome.stdout.len(), 1000);
        assert_eq!(outcome.stderr.len(), 1000);
        assert!(outcome.truncated);
        assert_eq!(outcome.exit_code, Some(0));
    }

    #[test]
    fn the_timeout_kills_the_process_group() {
        let started = Instant::now();
        let outcome = exec()
            .timeout(Duration::from_millis(300))
            .run("sh -c 'echo before; sleep 30 & sleep 30'")
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(outcome.timed_out);
        assert_eq!(outcome.stdout, b"before\n");
        assert_eq!(outcome.exit_code, None);
        assert_eq!(outcome.signal, Some(libc::SIGKILL));
    }

    #[test]
    fn shell_mode_checks_the_first_word() {
        let shell = exec().shell(true);
        assert_eq!(shell.run("tr a-z A-Z").unwrap_err(), "not allowed: tr");
        // The first word is allowed: the shell runs the whole line.
        let outcome = shell.run("echo abc | tr a-z A-Z; echo $((6 * 7))").unwrap();
        assert_eq!(outcome.stdout, b"ABC\n42\n");
        let outcome = shell.run("echo 'oops").unwrap_err();
        assert_eq!(outcome, "unbalanced quotes in the command line");
    }
}
