//! The client of the [exec](crate::services::exec) service.

use std::io::{self, Write};
use std::time::Duration;

use super::Connection;
use crate::protocol::auth::{client_handshake, Key, NoChallenge};
use crate::protocol::exec::Answer;
pub use crate::protocol::exec::Status;
use crate::protocol::framing::{body, FrameCodec};
use crate::transport::url::SocketUrl;

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
/// use socketserver::protocol::framing::FrameCodec;
///
/// let url = "tcp://127.0.0.1:9003".parse().unwrap();
/// let key = Key::from_file("exec.key")?;
/// let mut client = ExecClient::connect(&url, &key, FrameCodec::new(), Some(Duration::from_secs(30)))?;
/// match client.run("uname -s")? {
///     Ok(output) => print!("{}", String::from_utf8_lossy(&output.stdout)),
///     Err(why) => eprintln!("refused: {why}"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ExecClient {
    connection: Connection,
    codec: FrameCodec,
    scratch: Vec<u8>,
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
    /// leave room for the server's command timeout). A server that sends no
    /// challenge within `timeout` is not an exec server: the error (a
    /// [`NoChallenge`]) says so.
    pub fn connect(
        url: &SocketUrl,
        key: &Key,
        codec: FrameCodec,
        timeout: Option<Duration>,
    ) -> io::Result<Self> {
        let connection = Connection::connect(url, timeout)?;
        connection.set_read_timeout(timeout)?;
        Self::handshake(connection, key, codec)
            .map_err(|e| NoChallenge::explain(e, url, timeout, "an exec server"))
    }

    /// Authenticates on a connection made elsewhere.
    pub fn handshake(mut connection: Connection, key: &Key, codec: FrameCodec) -> io::Result<Self> {
        client_handshake(&mut connection, key, &codec)?;
        Ok(ExecClient {
            connection,
            codec,
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
        self.codec
            .write_frame(&mut self.connection, line.as_bytes())?;
        let answer: Answer = self
            .codec
            .read_answer_as(&mut self.connection, &mut self.scratch)
            .map_err(|e| unexpected(e, &self.scratch))?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )
            })?;
        match answer {
            Answer::Ok(status) => {
                io::copy(&mut body(&mut self.connection, status.stdout_size), stdout)?;
                io::copy(&mut body(&mut self.connection, status.stderr_size), stderr)?;
                Ok(Ok(status))
            }
            Answer::Error(failure) => {
                // An error answer has no body; skip one anyway if announced.
                body(
                    &mut self.connection,
                    failure.stdout_size.saturating_add(failure.stderr_size),
                )
                .skip()?;
                Ok(Err(failure.error))
            }
        }
    }

    /// The connection, to set timeouts or close it.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }
}

/// An answer header of the wrong shape, quoted.
fn unexpected(error: io::Error, raw: &[u8]) -> io::Error {
    match crate::protocol::framing::FrameError::from_io(&error) {
        Some(crate::protocol::framing::FrameError::BadHeader(why)) => io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "unexpected answer: {} ({why})",
                String::from_utf8_lossy(raw)
            ),
        ),
        _ => error,
    }
}
