//! exec: remote command execution over length-prefixed frames, behind an
//! HMAC handshake.
//!
//! # The conversation
//!
//! 1. The [handshake](crate::protocol::auth#the-handshake), run by the
//!    [`Authenticated`] wrapper: the server sends a 32-byte challenge, the
//!    client answers HMAC-SHA256(key, challenge), the server sends the
//!    verdict `{"status":"ok"}` or `{"status":"denied"}` as a JSON-header
//!    message and closes on denial. Nothing runs before it.
//! 2. Then, as many times as the client likes: a
//!    [frame](crate::protocol::framing) holding a UTF-8 command line; the
//!    answer is a JSON-header message ([`protocol::exec`](crate::protocol::exec))
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
//! [`Exec`] is a [`MessageHandler`] of the commands only: serve it wrapped,
//! `Exec::new()...authenticated(config)`, or anyone who can connect runs
//! commands. Its messages block (they run programs): in reactor mode they run
//! on a pool thread.
//!
//! # Running a command
//!
//! The line is split into words with shell quoting rules (`'a b'`, `"a b"`,
//! `a\ b`) and run without a shell: no pipes, no globbing, no variables. Its
//! standard input is closed (`/dev/null`) and it runs in the
//! [working directory](Exec::workdir). Only the [allowed](Exec::allow)
//! programs run: the first word must equal an allowed name exactly (`echo`
//! does not allow `/bin/echo`), unless [`allow_any`](Exec::allow_any) is
//! set. With [`shell`](Exec::shell) the line goes to `/bin/sh -c` as the
//! course's server does, and the allow-list checks only its first word.
//!
//! Standard output and error are read at the same time, each kept up to
//! [`max_output`](Exec::max_output) bytes (the rest is read and thrown away,
//! and `truncated` is set). `exit_code` is null when a signal ended the
//! command, and `signal` then gives its number. The answer comes when the
//! command has exited and its output pipes are closed; a background process
//! that keeps them open holds the answer until the timeout.
//!
//! # Nothing a command starts outlives it
//!
//! Everything a command starts is killed when the command ends, when it
//! times out ([`timeout`](Exec::timeout): the answer then says `timed_out`,
//! with what the command wrote until then), when its client hangs up (cut at
//! the server's shutdown deadline, reset, or, on a Unix socket, closed), and
//! when the program stops ([`Exec::kill_running`]). How the processes are
//! found depends on the [`Containment`]:
//!
//! - **a cgroup per command** (cgroup v2, where the server may create
//!   cgroups below its own: root, or a delegated systemd unit): everything
//!   the command starts stays in its cgroup, whatever it does to its process
//!   group or session (`setsid`, double forks, daemons), and is killed at
//!   once through `cgroup.kill` (or process by process on kernels before
//!   5.14). Only a process that writes itself into another cgroup escapes.
//! - **a process group per command**, elsewhere: the group is killed once
//!   the command has exited (before it is reaped, so the group's number
//!   cannot have been reused). A process that leaves the group (`setsid`)
//!   escapes the group kill; with [`adopt_orphans`](Exec::adopt_orphans)
//!   (what the `socketserver` program does) the server is a child subreaper
//!   (`PR_SET_CHILD_SUBREAPER`), so such a process is reparented to the
//!   server when its parent ends, and is then killed and reaped: at the end
//!   of its command if it was reparented by then, otherwise within about a
//!   second. Each command's processes carry `SOCKETSERVER_EXEC_COMMAND` in
//!   their environment, so that those of a command still running are left
//!   alone; one that clears its environment and leaves its group is killed
//!   the first time it is found.
//!
//! A server killed with SIGKILL kills nothing: in the cgroup mode the next
//! server started in the same cgroup kills what the dead one's commands left
//! and removes their cgroups.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::auth::{AuthConfig, Authenticated, MAX_DISCARD};
use crate::protocol::exec::{Answer, Status};
use crate::protocol::framing::FrameCodec;
use crate::request::{Conn, Framing, FramingError, MessageHandler, Next};

/// How long the pipes of a killed command are still read.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// The longest pause between two checks of a command that closed its pipes
/// but has not exited.
const MAX_WAIT_STEP: Duration = Duration::from_millis(50);
/// The environment variable that marks every process of a command:
/// `SERVER_PID.COMMAND_NUMBER`.
pub const COMMAND_MARKER: &str = "SOCKETSERVER_EXEC_COMMAND";
/// How often [`MessageHandler::service_actions`] looks for escaped processes
/// and leftover cgroups.
const TIDY_EVERY: Duration = Duration::from_secs(1);
/// How long a command's cgroup may take to empty after its kill before its
/// removal is left for later.
const CGROUP_EMPTY_WAIT: Duration = Duration::from_secs(2);

/// The exec service: runs allowed commands. See the
/// [module documentation](self) for the protocol.
///
/// ```no_run
/// use std::time::Duration;
/// use socketserver::protocol::auth::Key;
/// use socketserver::services::{AuthConfig, Exec};
/// use socketserver::ThreadingTcpServer;
///
/// let exec = Exec::new()
///     .allow("ls")
///     .allow("uname")
///     .workdir("/tmp")
///     .timeout(Duration::from_secs(5));
/// exec.prepare()?; // decides how commands are contained, cleans up
/// let exec = exec.authenticated(AuthConfig::new(Key::from_file("exec.key")?));
/// let server = ThreadingTcpServer::bind("127.0.0.1:9003", exec)?;
/// server.shutdown_on_ctrl_c()?;
/// server.serve_forever()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Exec {
    codec: FrameCodec,
    allowed: BTreeSet<String>,
    allow_any: bool,
    shell: bool,
    workdir: PathBuf,
    timeout: Duration,
    max_output: usize,
    processes: Processes,
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

impl Outcome {
    /// The header of the answer that carries this outcome.
    pub fn status(&self) -> Status {
        Status {
            exit_code: self.exit_code,
            signal: self.signal,
            stdout_size: self.stdout.len() as u64,
            stderr_size: self.stderr.len() as u64,
            timed_out: self.timed_out,
            truncated: self.truncated,
        }
    }
}

/// How the processes of a command are found, to be killed; see the
/// [module documentation](self#nothing-a-command-starts-outlives-it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Containment {
    /// A cgroup per command where the server may create cgroups, a process
    /// group per command elsewhere. The default.
    #[default]
    Auto,
    /// A cgroup per command, or no server at all
    /// ([`Exec::prepare`] fails).
    Cgroup,
    /// A process group per command (plus the subreaper with
    /// [`Exec::adopt_orphans`]).
    ProcessGroup,
}

impl fmt::Display for Containment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Containment::Auto => "auto",
            Containment::Cgroup => "cgroup",
            Containment::ProcessGroup => "process-group",
        })
    }
}

impl FromStr for Containment {
    type Err = String;

    /// Parses `auto`, `cgroup` or `process-group` (also `group`).
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Containment::Auto),
            "cgroup" => Ok(Containment::Cgroup),
            "process-group" | "group" => Ok(Containment::ProcessGroup),
            _ => Err(format!(
                "{text:?} is not a containment (use auto, cgroup or process-group)"
            )),
        }
    }
}

impl Default for Exec {
    fn default() -> Self {
        Exec::new()
    }
}

impl Exec {
    /// A service that, until told otherwise, allows no program; runs in the
    /// current directory, with a 10 s timeout, 1 MiB of output kept per
    /// stream, default frames (16 MiB) and [`Containment::Auto`].
    pub fn new() -> Self {
        Exec {
            codec: FrameCodec::new(),
            allowed: BTreeSet::new(),
            allow_any: false,
            shell: false,
            workdir: PathBuf::from("."),
            timeout: Duration::from_secs(10),
            max_output: 1 << 20,
            processes: Processes::new(),
        }
    }

    /// This service behind the HMAC handshake of `config`, whose verdict
    /// follows this service's byte order.
    pub fn authenticated(self, config: AuthConfig) -> Authenticated<Exec> {
        let endian = self.codec.byte_order();
        Authenticated::new(self, config.endian(endian))
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

    /// Kills a command and everything it started after `timeout` (default
    /// 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keeps at most `bytes` of each of stdout and stderr (default 1 MiB).
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// Sets the byte order and the limit of frames (the command line's
    /// limit is the frame limit).
    pub fn codec(mut self, codec: FrameCodec) -> Self {
        self.codec = codec;
        self
    }

    /// Sets how a command's processes are found
    /// (default [`Containment::Auto`]).
    pub fn containment(mut self, containment: Containment) -> Self {
        self.processes.requested = containment;
        self
    }

    /// In the process-group mode, makes this process a child subreaper so
    /// that processes that leave their command's group are reparented to it
    /// and killed and reaped (default off). Only for a process that has no
    /// children of its own besides the commands (the `socketserver`
    /// program): every other child that is not a running command's is
    /// reaped, or killed.
    pub fn adopt_orphans(mut self, adopt: bool) -> Self {
        self.processes.adopt = adopt;
        self
    }

    /// The allowed program names.
    pub fn allowed(&self) -> impl Iterator<Item = &str> {
        self.allowed.iter().map(String::as_str)
    }

    /// The byte order and the frame limit.
    pub fn frame_codec(&self) -> FrameCodec {
        self.codec
    }

    /// Decides how commands are contained (see [`Containment`]), once, and
    /// removes what a server killed with SIGKILL left in the cgroups; says
    /// what was decided, for a log line. Runs by itself with the first
    /// command otherwise. An error: [`Containment::Cgroup`] was asked and no
    /// cgroup can be made.
    pub fn prepare(&self) -> io::Result<String> {
        self.processes.mode().map(|mode| mode.to_string())
    }

    /// Kills every command running now and everything it started; returns
    /// how many commands. For a program on its way out: commands of
    /// connections cut at the shutdown deadline would otherwise run until
    /// their timeout.
    pub fn kill_running(&self) -> usize {
        self.processes.kill_running()
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
        let make = || {
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
            command
        };
        let started = self.processes.spawn(make).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound if !self.workdir.is_dir() => {
                format!(
                    "the working directory {} is missing",
                    self.workdir.display()
                )
            }
            io::ErrorKind::NotFound => format!("no such program: {program}"),
            io::ErrorKind::PermissionDenied => format!("permission denied: {program}"),
            _ => format!("cannot run {program}: {e}"),
        })?;
        self.collect(started, client)
    }

    /// Reads a started command's output and waits for it, within the
    /// timeout; then kills what it left.
    fn collect(&self, mut started: Started, client: Option<RawFd>) -> Result<Outcome, String> {
        let deadline = crate::deadline::after(self.timeout);
        let mut streams = [
            Capture::new(started.child.stdout.take().map(OwnedFd::from)),
            Capture::new(started.child.stderr.take().map(OwnedFd::from)),
        ];
        let mut timed_out = false;
        let mut killed = false;
        let pumped = pump(&mut streams, deadline, self.max_output, client);
        if pumped != Pumped::Closed {
            timed_out = pumped == Pumped::Deadline;
            killed = true;
            // The leader is not reaped yet, so its pid still names its group.
            started.kill();
            pump(
                &mut streams,
                Instant::now() + KILL_GRACE,
                self.max_output,
                None,
            );
        }
        let exited = self.wait(&started, deadline, client, killed, &mut timed_out);
        // Whatever the command left behind goes with it.
        started.kill();
        let status = self.processes.reap(started);
        let [stdout, stderr] = streams;
        let status = exited
            .and(status)
            .map_err(|e| format!("cannot wait for the command: {e}"))?;
        Ok(Outcome {
            exit_code: status.code(),
            signal: status.signal(),
            truncated: stdout.truncated || stderr.truncated,
            stdout: stdout.data,
            stderr: stderr.data,
            timed_out,
        })
    }

    /// Waits for a command whose pipes are done to exit, killing it at the
    /// deadline or when the client hangs up. The leader is left unreaped
    /// (a zombie), so that its pid keeps naming its group.
    fn wait(
        &self,
        started: &Started,
        deadline: Instant,
        client: Option<RawFd>,
        mut killed: bool,
        timed_out: &mut bool,
    ) -> io::Result<()> {
        let mut step = Duration::from_millis(1);
        loop {
            if has_exited(started.pid)? {
                return Ok(());
            }
            if !killed && Instant::now() >= deadline {
                *timed_out = true;
                killed = true;
                started.kill();
            }
            let pause = if killed {
                Duration::from_millis(1)
            } else {
                step.min(deadline.saturating_duration_since(Instant::now()))
            };
            match client {
                Some(fd) if !killed && hung_up(fd, pause) => {
                    killed = true;
                    started.kill();
                }
                Some(_) if !killed => {}
                _ => std::thread::sleep(pause),
            }
            step = (step * 2).min(MAX_WAIT_STEP);
        }
    }

    fn send_outcome(&self, conn: &mut Conn<'_>, outcome: &Outcome) -> io::Result<()> {
        self.codec
            .write_answer(&mut *conn, &Answer::Ok(outcome.status()))?;
        conn.write_all(&outcome.stdout)?;
        conn.write_all(&outcome.stderr)
    }

    fn send_error(&self, conn: &mut Conn<'_>, why: &str) -> io::Result<()> {
        // An answer may be larger than the header limit (a long name quoted).
        self.codec.write_answer(conn, &Answer::refused(why))
    }
}

impl MessageHandler for Exec {
    type Session = ();

    fn framing(&self, _: &()) -> Framing {
        self.codec.framing(self.codec.frame_limit())
    }

    /// Every command blocks: it runs a program.
    fn blocking(&self, _: &()) -> bool {
        true
    }

    fn open(&self, _: &mut Conn<'_>) -> io::Result<()> {
        Ok(())
    }

    fn on_message(&self, _: &mut (), line: &[u8], conn: &mut Conn<'_>) -> io::Result<Next> {
        let peer = conn.peer().clone();
        let started = Instant::now();
        match std::str::from_utf8(line) {
            Err(_) => {
                log::info!("{peer}: refused a command line that is not UTF-8");
                self.send_error(conn, "the command line is not UTF-8")?;
            }
            Ok(text) => match self.run_watching(text, Some(conn.as_raw_fd())) {
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
                    self.send_outcome(conn, &outcome)?;
                }
                Err(why) => {
                    log::info!("{peer}: refused {text:?}: {why}");
                    self.send_error(conn, &why)?;
                }
            },
        }
        Ok(Next::Continue)
    }

    /// A frame over the limit is answered (rule 10), then the connection
    /// closes; a frame cut short just ends it.
    fn on_bad_message(
        &self,
        _: &mut (),
        error: FramingError,
        conn: &mut Conn<'_>,
    ) -> io::Result<()> {
        match error {
            FramingError::FrameTooLarge { .. } => {
                log::warn!("{}: {error}; closing", conn.peer());
                conn.set_linger(MAX_DISCARD);
                self.send_error(conn, &error.to_string())
            }
            _ => {
                log::debug!("{}: {error}", conn.peer());
                Ok(())
            }
        }
    }

    fn service_actions(&self) {
        self.processes.tidy();
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

/// Sends SIGKILL to the process `pid`.
fn kill_process(pid: i32) {
    // SAFETY: kill(2) has no memory-safety requirements.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Whether the child `pid` has exited, without reaping it.
fn has_exited(pid: u32) -> io::Result<bool> {
    let id: libc::id_t = pid;
    loop {
        // SAFETY: an all-zero siginfo_t is a valid value of the plain C
        // struct; waitid only writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t.
        let done = unsafe {
            libc::waitid(
                libc::P_PID,
                id,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if done < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled `info` (or left it zeroed: no state change).
        return Ok(unsafe { info.si_pid() } != 0);
    }
}

/// Reaps the child `pid` if it has exited; true if it was reaped (or is
/// not a child).
fn reap_if_exited(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid writes only into `status`.
    let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    done != 0
}

/// The errno a command's first instruction reports when it could not move
/// itself into its cgroup: one that starting a program never gives, so that
/// it tells the two apart.
const CGROUP_MOVE_FAILED: i32 = libc::ENOTRECOVERABLE;

/// Why a command did not start in a cgroup.
enum CgroupSpawn {
    /// No cgroup could be made for it: start it in a process group.
    Unavailable(String),
    /// It could not move into its cgroup: cgroups do not work here.
    MoveFailed,
    /// It did not start (no such program...).
    Failed(io::Error),
}

/// A command being run.
struct Started {
    child: Child,
    pid: u32,
    id: u64,
    cgroup: Option<PathBuf>,
}

impl Started {
    /// Kills the command and everything it started: its cgroup, or its
    /// process group (the leader must not be reaped yet).
    fn kill(&self) {
        match &self.cgroup {
            Some(cgroup) => {
                if let Err(e) = kill_cgroup(cgroup) {
                    log::warn!("cannot kill the cgroup {}: {e}", cgroup.display());
                    kill_group(self.pid);
                }
            }
            None => kill_group(self.pid),
        }
    }
}

/// How commands are contained, once decided.
#[derive(Debug)]
enum Mode {
    /// A cgroup per command below `root`; `broken` once moving a command
    /// into one failed (then process groups).
    Cgroup { root: PathBuf, broken: AtomicBool },
    /// A process group per command; `adopting` when this process is a
    /// subreaper and reaps (or kills) every child that is not a command.
    ProcessGroup { adopting: bool },
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Cgroup { root, .. } => write!(
                f,
                "each command runs in a cgroup of its own below {}",
                root.display()
            ),
            Mode::ProcessGroup { adopting: true } => f.write_str(
                "each command runs in a process group of its own; processes that leave it are \
                 adopted (child subreaper) and killed",
            ),
            Mode::ProcessGroup { adopting: false } => f.write_str(
                "each command runs in a process group of its own; a process that leaves it \
                 (setsid) is not killed",
            ),
        }
    }
}

/// The commands running now.
#[derive(Debug, Default)]
struct Table {
    /// Leaders' pids, and their commands' numbers.
    leaders: HashMap<u32, u64>,
    /// The numbers of the commands running, and their cgroups.
    running: HashMap<u64, Option<PathBuf>>,
}

/// The processes of every command: how they are contained, which run.
#[derive(Debug)]
struct Processes {
    requested: Containment,
    adopt: bool,
    mode: OnceLock<Result<Mode, String>>,
    table: Mutex<Table>,
    next_id: AtomicU64,
    /// Cgroups whose removal failed (not empty yet), to try again.
    leftovers: Mutex<Vec<PathBuf>>,
    last_tidy: Mutex<Option<Instant>>,
}

impl Processes {
    fn new() -> Self {
        Processes {
            requested: Containment::Auto,
            adopt: false,
            mode: OnceLock::new(),
            table: Mutex::new(Table::default()),
            next_id: AtomicU64::new(1),
            leftovers: Mutex::new(Vec::new()),
            last_tidy: Mutex::new(None),
        }
    }

    fn mode(&self) -> io::Result<&Mode> {
        self.mode
            .get_or_init(|| self.decide())
            .as_ref()
            .map_err(|why| io::Error::other(why.clone()))
    }

    fn decide(&self) -> Result<Mode, String> {
        let cgroup = match self.requested {
            Containment::ProcessGroup => None,
            Containment::Auto | Containment::Cgroup => match cgroup_root() {
                Ok(root) => Some(root),
                Err(e) if self.requested == Containment::Cgroup => {
                    return Err(format!("cannot run commands in cgroups: {e}"))
                }
                Err(e) => {
                    log::info!("commands run in process groups: no cgroup of their own ({e})");
                    None
                }
            },
        };
        if let Some(root) = cgroup {
            return Ok(Mode::Cgroup {
                root,
                broken: AtomicBool::new(false),
            });
        }
        let mut adopting = false;
        if self.adopt {
            // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer.
            let done = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            if done == 0 {
                adopting = true;
            } else {
                log::warn!(
                    "cannot become a child subreaper ({}): processes that leave their \
                     command's group survive it",
                    io::Error::last_os_error()
                );
            }
        }
        Ok(Mode::ProcessGroup { adopting })
    }

    /// Starts the command that `make` builds, in its cgroup when there is
    /// one, marked with its number.
    fn spawn(&self, make: impl Fn() -> Command) -> io::Result<Started> {
        let mode = match self.mode() {
            Ok(mode) => Some(mode),
            Err(e) => {
                log::error!("{e}");
                return Err(e);
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let marker = format!("{}.{id}", std::process::id());
        if let Some(Mode::Cgroup { root, broken }) = mode {
            if !broken.load(Ordering::Relaxed) {
                match self.spawn_in_cgroup(&make, root, id, &marker) {
                    Ok(started) => return Ok(started),
                    Err(CgroupSpawn::MoveFailed) => {
                        log::warn!(
                            "cannot move commands into cgroups below {}; they run in process \
                             groups from now on",
                            root.display()
                        );
                        broken.store(true, Ordering::Relaxed);
                    }
                    Err(CgroupSpawn::Unavailable(why)) => {
                        log::warn!("{why}; this command runs in a process group");
                    }
                    Err(CgroupSpawn::Failed(e)) => return Err(e),
                }
            }
        }
        let mut command = make();
        command.env(COMMAND_MARKER, &marker);
        self.start(command, id, None)
    }

    /// Starts a command in a new cgroup of its own below `root`. The root
    /// exists only while commands run (see [`reap`](Self::reap)), so that a
    /// server killed with SIGKILL while idle leaves nothing behind; it is
    /// made and removed under the table's lock.
    fn spawn_in_cgroup(
        &self,
        make: &impl Fn() -> Command,
        root: &Path,
        id: u64,
        marker: &str,
    ) -> Result<Started, CgroupSpawn> {
        let path = root.join(format!("cmd-{id}"));
        let mut table = self.table.lock();
        fs::create_dir_all(root)
            .and_then(|()| fs::create_dir(&path))
            .map_err(|e| {
                CgroupSpawn::Unavailable(format!(
                    "cannot create the cgroup {}: {e}",
                    path.display()
                ))
            })?;
        let procs = match OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))
        {
            Ok(procs) => procs,
            Err(e) => {
                let _ = fs::remove_dir(&path);
                return Err(CgroupSpawn::Unavailable(format!(
                    "cannot open {}/cgroup.procs: {e}",
                    path.display()
                )));
            }
        };
        let fd = procs.as_raw_fd();
        let mut command = make();
        command.env(COMMAND_MARKER, marker);
        // SAFETY: the closure runs in the child between fork and exec, and
        // only calls write(2), which is async-signal-safe; `procs` outlives
        // the spawn (the descriptor is close-on-exec).
        unsafe {
            command.pre_exec(move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) == 1 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(CGROUP_MOVE_FAILED))
                }
            });
        }
        let started = Self::start_locked(&mut table, command, id, Some(path.clone()));
        drop(procs);
        started.map_err(|e| {
            let _ = fs::remove_dir(&path);
            if table.running.is_empty() {
                let _ = fs::remove_dir(root);
            }
            if e.raw_os_error() == Some(CGROUP_MOVE_FAILED) {
                CgroupSpawn::MoveFailed
            } else {
                CgroupSpawn::Failed(e)
            }
        })
    }

    /// Spawns under the table's lock, so that a sweep never sees a leader
    /// that is not in the table yet.
    fn start(&self, command: Command, id: u64, cgroup: Option<PathBuf>) -> io::Result<Started> {
        Self::start_locked(&mut self.table.lock(), command, id, cgroup)
    }

    fn start_locked(
        table: &mut Table,
        mut command: Command,
        id: u64,
        cgroup: Option<PathBuf>,
    ) -> io::Result<Started> {
        let child = command.spawn()?;
        let pid = child.id();
        table.leaders.insert(pid, id);
        table.running.insert(id, cgroup.clone());
        Ok(Started {
            child,
            pid,
            id,
            cgroup,
        })
    }

    /// Removes the cgroup root when no command runs and no cgroup is left
    /// to remove.
    fn remove_idle_root(&self) {
        if let Some(Ok(Mode::Cgroup { root, .. })) = self.mode.get() {
            let table = self.table.lock();
            if table.running.is_empty() && self.leftovers.lock().is_empty() {
                let _ = fs::remove_dir(root);
            }
        }
    }

    /// Reaps an exited command (already killed with what it left) and
    /// forgets it; removes its cgroup, and adopted strays.
    fn reap(&self, mut started: Started) -> io::Result<ExitStatus> {
        let status = {
            let mut table = self.table.lock();
            // Under the lock: kill_running never signals a reused pid.
            let status = started.child.wait();
            table.leaders.remove(&started.pid);
            table.running.remove(&started.id);
            status
        };
        if let Some(cgroup) = started.cgroup.take() {
            if !remove_cgroup(&cgroup, CGROUP_EMPTY_WAIT) {
                self.leftovers.lock().push(cgroup);
            }
            self.remove_idle_root();
        }
        if self.adopting() {
            self.sweep();
        }
        status
    }

    fn adopting(&self) -> bool {
        matches!(
            self.mode.get(),
            Some(Ok(Mode::ProcessGroup { adopting: true }))
        )
    }

    /// Kills and reaps the children of this process that are neither a
    /// running command's leader nor marked as a running command's; repeats
    /// while that makes new orphans (a killed process's children are
    /// reparented to this one).
    fn sweep(&self) {
        let me = std::process::id();
        for _ in 0..64 {
            let mut killed = Vec::new();
            {
                let table = self.table.lock();
                for (pid, zombie) in children_of(me) {
                    if u32::try_from(pid).is_ok_and(|pid| table.leaders.contains_key(&pid)) {
                        continue;
                    }
                    if zombie {
                        reap_if_exited(pid);
                        continue;
                    }
                    let running =
                        command_of(pid, me).is_some_and(|id| table.running.contains_key(&id));
                    if !running {
                        log::info!("killed process {pid}, left behind by a command");
                        kill_process(pid);
                        killed.push(pid);
                    }
                }
            }
            if killed.is_empty() {
                return;
            }
            let deadline = Instant::now() + Duration::from_secs(1);
            killed.retain(|&pid| !reap_if_exited(pid));
            while !killed.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
                killed.retain(|&pid| !reap_if_exited(pid));
            }
        }
    }

    fn kill_running(&self) -> usize {
        let count = {
            let table = self.table.lock();
            for (&pid, id) in &table.leaders {
                match table.running.get(id) {
                    Some(Some(cgroup)) if kill_cgroup(cgroup).is_ok() => {}
                    _ => kill_group(pid),
                }
            }
            table.leaders.len()
        };
        if self.adopting() {
            self.sweep();
        }
        count
    }

    /// Every second at most: kills adopted strays, and removes the cgroups
    /// that were not empty yet.
    fn tidy(&self) {
        {
            let Some(mut last) = self.last_tidy.try_lock() else {
                return;
            };
            if last.is_some_and(|at| at.elapsed() < TIDY_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        if self.adopting() {
            self.sweep();
        }
        let leftovers = std::mem::take(&mut *self.leftovers.lock());
        if leftovers.is_empty() {
            return;
        }
        for cgroup in leftovers {
            let _ = kill_cgroup(&cgroup);
            if !remove_cgroup(&cgroup, Duration::ZERO) {
                self.leftovers.lock().push(cgroup);
            }
        }
        self.remove_idle_root();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        if let Some(Ok(Mode::Cgroup { root, .. })) = self.mode.get() {
            for cgroup in self.leftovers.get_mut().drain(..) {
                let _ = kill_cgroup(&cgroup);
                remove_cgroup(&cgroup, CGROUP_EMPTY_WAIT);
            }
            let _ = fs::remove_dir(root);
        }
    }
}

/// The children of process `parent`, and whether each is a zombie, from
/// `/proc`.
fn children_of(parent: u32) -> Vec<(i32, bool)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold anything, even ')'.
        let Some((_, after)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let state = fields.next().unwrap_or("");
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            children.push((pid, state == "Z"));
        }
    }
    children
}

/// The number of the command that process `pid` belongs to, from the
/// marker in its environment, if it is one of this server's.
fn command_of(pid: i32, me: u32) -> Option<u64> {
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{COMMAND_MARKER}={me}.");
    environ
        .split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(prefix.as_bytes()))
        .and_then(|id| std::str::from_utf8(id).ok()?.parse().ok())
}

/// Makes this server's cgroup for commands, below its own cgroup on the
/// cgroup v2 hierarchy, after removing those of dead servers.
fn cgroup_root() -> io::Result<PathBuf> {
    let own = own_cgroup()?;
    clean_dead_servers(&own);
    // One per Exec value: several may serve in one process.
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let root = own.join(format!(
        "socketserver-exec-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    // A probe: the root is made again for each command (and removed when
    // none runs).
    match fs::create_dir(&root) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", root.display()))),
    }
    let is_cgroup = root.join("cgroup.procs").exists();
    let _ = fs::remove_dir(&root);
    if !is_cgroup {
        return Err(io::Error::other(format!(
            "{} is not a cgroup",
            root.display()
        )));
    }
    Ok(root)
}

/// The directory of this process's cgroup on the cgroup v2 hierarchy.
fn own_cgroup() -> io::Result<PathBuf> {
    let cgroups = fs::read_to_string("/proc/self/cgroup")?;
    let path = cgroups
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or_else(|| io::Error::other("no cgroup v2 hierarchy"))?;
    let mounts = fs::read_to_string("/proc/self/mountinfo")?;
    for line in mounts.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        if after.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = before.split_whitespace().collect();
        let (Some(mount_root), Some(mount_point)) = (fields.get(3), fields.get(4)) else {
            continue;
        };
        let mount_root = unescape_mount_field(mount_root);
        let Some(relative) = path.strip_prefix(mount_root.trim_end_matches('/')) else {
            continue;
        };
        let mut dir = PathBuf::from(unescape_mount_field(mount_point));
        dir.push(relative.trim_start_matches('/'));
        return Ok(dir);
    }
    Err(io::Error::other("the cgroup v2 hierarchy is not mounted"))
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mountinfo.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let digits = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let Some(digits) = digits {
            let value = digits
                .iter()
                .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes the command cgroups of servers that are gone (killed with
/// SIGKILL), killing what their commands left.
fn clean_dead_servers(own: &Path) {
    let Ok(entries) = fs::read_dir(own) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("socketserver-exec-"))
            .and_then(|rest| rest.split('-').next()?.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        if pid == std::process::id() || owner_alive(pid, &dir) {
            continue;
        }
        if let Ok(commands) = fs::read_dir(&dir) {
            for command in commands.flatten().filter(|c| c.path().is_dir()) {
                let path = command.path();
                if cgroup_populated(&path) {
                    log::warn!(
                        "killing what the commands of a dead server left in {}",
                        path.display()
                    );
                }
                let _ = kill_cgroup(&path);
                remove_cgroup(&path, CGROUP_EMPTY_WAIT);
            }
        }
        let _ = fs::remove_dir(&dir);
    }
}

/// Whether the server that made `dir` (a `socketserver-exec-PID-N` root)
/// still runs: a process `pid` exists, and started before the directory
/// last changed (otherwise the pid was reused by another process).
fn owner_alive(pid: u32, dir: &Path) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let started_ticks = stat
        .rsplit_once(')')
        .and_then(|(_, after)| after.split_whitespace().nth(19)?.parse::<u64>().ok());
    let boot = fs::read_to_string("/proc/stat").ok().and_then(|text| {
        text.lines()
            .find_map(|line| line.strip_prefix("btime "))
            .and_then(|secs| secs.trim().parse::<u64>().ok())
    });
    // SAFETY: sysconf has no memory-safety requirements.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let changed = fs::metadata(dir)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok());
    match (
        started_ticks,
        boot,
        u64::try_from(ticks_per_second),
        changed,
    ) {
        (Some(ticks), Some(boot), Ok(per_second), Some(changed)) if per_second > 0 => {
            // A second of slack for the clocks' granularity.
            boot + ticks / per_second <= changed.as_secs() + 1
        }
        // Cannot tell: assume it runs.
        _ => true,
    }
}

/// Kills every process of a cgroup: `cgroup.kill` (Linux 5.14), or each
/// process of `cgroup.procs` until none is left.
fn kill_cgroup(cgroup: &Path) -> io::Result<()> {
    match fs::write(cgroup.join("cgroup.kill"), b"1") {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound && cgroup.is_dir() => {}
        Err(e) => return Err(e),
    }
    // Frozen, a cgroup's processes cannot fork while they are killed.
    let _ = fs::write(cgroup.join("cgroup.freeze"), b"1");
    for _ in 0..100 {
        let procs = fs::read_to_string(cgroup.join("cgroup.procs"))?;
        let pids: Vec<i32> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            kill_process(pid);
        }
    }
    let _ = fs::write(cgroup.join("cgroup.freeze"), b"0");
    Ok(())
}

/// Whether a cgroup still has live processes.
fn cgroup_populated(cgroup: &Path) -> bool {
    fs::read_to_string(cgroup.join("cgroup.events"))
        .map(|events| events.lines().any(|l| l.trim() == "populated 1"))
        .unwrap_or(false)
}

/// Waits up to `wait` for a killed cgroup to empty, then removes it; true
/// when it is gone.
fn remove_cgroup(cgroup: &Path, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        match fs::remove_dir(cgroup) {
            Ok(()) => return true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return true,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => {
                log::debug!("cannot remove the cgroup {} yet: {e}", cgroup.display());
                return false;
            }
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
        Exec::new()
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
    fn a_timeout_too_long_for_an_instant_means_none() {
        // Issue 14 item 5: `Instant + Duration::MAX` panicked after the spawn.
        let outcome = exec()
            .timeout(Duration::MAX)
            .run("echo still here")
            .unwrap();
        assert_eq!(outcome.stdout, b"still here\n");
        assert!(!outcome.timed_out);
    }

    #[test]
    fn the_timeout_kills_the_process_group() {
        let started = Instant::now();
        let outcome = exec()
            .containment(Containment::ProcessGroup)
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
    fn the_marker_names_the_command_in_its_environment() {
        let exec = exec().containment(Containment::ProcessGroup);
        let outcome = exec
            .run(&format!("sh -c 'echo ${COMMAND_MARKER}'"))
            .unwrap();
        let text = String::from_utf8(outcome.stdout).unwrap();
        let (pid, id) = text.trim().split_once('.').unwrap();
        assert_eq!(pid, std::process::id().to_string());
        assert!(id.parse::<u64>().is_ok(), "{text}");
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

    #[test]
    fn containments_parse_and_print() {
        for (text, containment) in [
            ("auto", Containment::Auto),
            ("cgroup", Containment::Cgroup),
            ("process-group", Containment::ProcessGroup),
            ("GROUP", Containment::ProcessGroup),
        ] {
            assert_eq!(text.parse::<Containment>(), Ok(containment));
        }
        assert!("jail".parse::<Containment>().is_err());
        assert_eq!(Containment::ProcessGroup.to_string(), "process-group");
    }

    #[test]
    fn a_dead_or_reused_pid_owns_no_cgroup() {
        let dir =
            std::env::temp_dir().join(format!("socketserver-exec-owner-{}", std::process::id()));
        let _ = fs::remove_dir(&dir);
        fs::create_dir(&dir).unwrap();
        // This process started before the directory was made: its owner.
        assert!(owner_alive(std::process::id(), &dir));
        // A directory last changed before this process started: the pid
        // was reused.
        File::open(&dir)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1_000_000))
            .unwrap();
        assert!(!owner_alive(std::process::id(), &dir));
        // No such process (pids are below 2^22 on Linux).
        assert!(!owner_alive(1 << 23, &dir));
        fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn mount_fields_are_unescaped() {
        assert_eq!(unescape_mount_field(r"/a\040b"), "/a b");
        assert_eq!(unescape_mount_field(r"/plain"), "/plain");
        assert_eq!(unescape_mount_field(r"/odd\\"), r"/odd\\");
        assert_eq!(unescape_mount_field(r"/x\04"), r"/x\04");
    }
}
