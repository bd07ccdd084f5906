//! The client of the [exec](crate::services::exec) service.

use std::io::{self, Write};
use std::time::Duration;

use serde_json::{Map, Value};

use super::Connection;
use crate::protocol::auth::{client_handshake, Key};
use crate::protocol::framing::{body, Framing};
use crate::SocketUrl;

/// A connection to an exec server, authenticated, ready to run commands
/// one after another.
///
/// Each run returns `io::Result<Result<_, String>>`: the outer error is the
/// connection's (it is then unusable), the inner one is the server's refusal
/// (`not allowed: rm`, `no such program: x`...), after which the connection
/// can go on.
///
/// ```no_run
/// use std::time::Duration;
/// use socketserver::protocol::auth::Key;
/// use socketserver::client::exec::ExecClient;
/// use socketserver::protocol::framing::Framing;
///
/// let url = "tcp://127.0.0.1:9003".parse().unwrap();
/// let key = Key::from_file("exec.key")?;
/// let mut client = ExecClient::connect(&url, &key, Framing::new(), Some(Duration::from_secs(30)))?;
/// match client.run("uname -s")? {
///     Ok(output) => print!("{}", String::from_utf8_lossy(&output.stdout)),
///     Err(why) => eprintln!("refused: {why}"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ExecClient {
    connection: Connection,
    framing: Framing,
    scratch: Vec<u8>,
}

/// How a command ended: the header of an `ok` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The exit status; `None` when a signal ended the command.
    pub exit_code: Option<i32>,
    /// The signal that ended the command, if one did.
    pub signal: Option<i32>,
    /// How many bytes of standard output the answer carries.
    pub stdout_size: u64,
    /// How many bytes of standard error the answer carries.
    pub stderr_size: u64,
    /// The server killed the command at its timeout.
    pub timed_out: bool,
    /// The server threw away output over its limit.
    pub truncated: bool,
}

impl Status {
    /// The status a shell would report: the exit code, or 128 + the signal
    /// number.
    pub fn shell_status(&self) -> i32 {
        match (self.exit_code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 1,
        }
    }
}

/// A command's whole answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: Status,
    /// What it wrote to standard output.
    pub stdout: Vec<u8>,
    /// What it wrote to standard error.
    pub stderr: Vec<u8>,
}

impl ExecClient {
    /// Connects to `url` and authenticates with `key`; `timeout` bounds the
    /// connection and every read (an answer comes when the command ends, so
    /// leave room for the server's command timeout).
    pub fn connect(
        url: &SocketUrl,
        key: &Key,
        framing: Framing,
        timeout: Option<Duration>,
    ) -> io::Result<Self> {
        let connection = Connection::connect(url, timeout)?;
        connection.set_read_timeout(timeout)?;
        Self::handshake(connection, key, framing)
    }

    /// Authenticates on a connection made elsewhere.
    pub fn handshake(mut connection: Connection, key: &Key, framing: Framing) -> io::Result<Self> {
        client_handshake(&mut connection, key, &framing)?;
        Ok(ExecClient {
            connection,
            framing,
            scratch: Vec::new(),
        })
    }

    /// Runs a command line and collects its output.
    pub fn run(&mut self, line: &str) -> io::Result<Result<Output, String>> {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        Ok(self
            .run_to(line, &mut stdout, &mut stderr)?
            .map(|status| Output {
                status,
                stdout,
                stderr,
            }))
    }

    /// Runs a command line and copies its output to `stdout` and `stderr` as
    /// it is read, without holding it in memory.
    pub fn run_to(
        &mut self,
        line: &str,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> io::Result<Result<Status, String>> {
        self.framing
            .write_frame(&mut self.connection, line.as_bytes())?;
        let header = self
            .framing
            .read_header(&mut self.connection, &mut self.scratch)?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )
            })?;
        let stdout_size = size(&header, "stdout_size")?;
        let stderr_size = size(&header, "stderr_size")?;
        match header.get("status").and_then(Value::as_str) {
            Some("ok") => {}
            Some("error") => {
                // An error answer has no body; skip one anyway if announced.
                body(&mut self.connection, stdout_size + stderr_size).skip()?;
                let why = header
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                return Ok(Err(why.to_string()));
            }
            _ => return Err(bad_answer(&header)),
        }
        let status = Status {
            exit_code: optional_i32(&header, "exit_code")?,
            signal: optional_i32(&header, "signal")?,
            stdout_size,
            stderr_size,
            timed_out: header
                .get("timed_out")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            truncated: header
                .get("truncated")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        io::copy(&mut body(&mut self.connection, stdout_size), stdout)?;
        io::copy(&mut body(&mut self.connection, stderr_size), stderr)?;
        Ok(Ok(status))
    }

    /// The connection, to set timeouts or close it.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }
}

fn size(header: &Map<String, Value>, key: &str) -> io::Result<u64> {
    match header.get(key) {
        None => Ok(0),
        Some(value) => value.as_u64().ok_or_else(|| bad_answer(header)),
    }
}

fn optional_i32(header: &Map<String, Value>, key: &str) -> io::Result<Option<i32>> {
    match header.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad_answer(header)),
    }
}

fn bad_answer(header: &Map<String, Value>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected answer: {}", Value::Object(header.clone())),
    )
}
