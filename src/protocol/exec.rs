//! The messages of the exec service: a command line in a frame, answered by
//! a JSON header ([`Answer`]) and the command's output.
//!
//! After the [handshake](super::auth#the-handshake), the client sends a
//! [frame](super::framing) holding a UTF-8 command line; the server answers
//! with a JSON-header message whose body is `stdout_size` bytes of standard
//! output, then `stderr_size` bytes of standard error:
//!
//! ```text
//! {"status":"ok","exit_code":0,"signal":null,"stdout_size":N,"stderr_size":M,"timed_out":false,"truncated":false}
//! {"status":"error","error":"<why>","stdout_size":0,"stderr_size":0}
//! ```
//!
//! Server and client both use [`Answer`], so the bytes (the order of the
//! keys included) are the same on both sides:
//!
//! ```
//! use socketserver::protocol::exec::{Answer, Status};
//!
//! let ok = Answer::Ok(Status { exit_code: Some(0), stdout_size: 6, ..Status::default() });
//! assert_eq!(
//!     serde_json::to_string(&ok).unwrap(),
//!     r#"{"status":"ok","exit_code":0,"signal":null,"stdout_size":6,"stderr_size":0,"timed_out":false,"truncated":false}"#
//! );
//! let refused = Answer::refused("not allowed: rm");
//! assert_eq!(
//!     serde_json::to_string(&refused).unwrap(),
//!     r#"{"status":"error","error":"not allowed: rm","stdout_size":0,"stderr_size":0}"#
//! );
//! let back: Answer = serde_json::from_str(r#"{"status":"ok","exit_code":null,"signal":9}"#).unwrap();
//! assert_eq!(back.body_size(), 0);
//! ```

use serde::{Deserialize, Serialize};

/// The header of an exec answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Answer {
    /// The command ran (whatever its exit status); its output follows.
    Ok(Status),
    /// The command did not start; no output follows (the sizes are zero).
    Error(Failure),
}

/// How a command ended: the header of an `ok` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The exit status; `None` when a signal ended the command.
    pub exit_code: Option<i32>,
    /// The signal that ended the command, if one did.
    pub signal: Option<i32>,
    /// How many bytes of standard output the answer carries.
    #[serde(default)]
    pub stdout_size: u64,
    /// How many bytes of standard error the answer carries.
    #[serde(default)]
    pub stderr_size: u64,
    /// The server killed the command at its timeout.
    #[serde(default)]
    pub timed_out: bool,
    /// The server threw away output over its limit.
    #[serde(default)]
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

/// Why a command did not start: the header of an `error` answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The reason (`not allowed: rm`, `no such program: x`...).
    pub error: String,
    /// Always 0 from this crate's server; a client skips what it announces.
    #[serde(default)]
    pub stdout_size: u64,
    /// Always 0 from this crate's server; a client skips what it announces.
    #[serde(default)]
    pub stderr_size: u64,
}

impl Answer {
    /// The answer to a command that did not start.
    pub fn refused(why: impl Into<String>) -> Answer {
        Answer::Error(Failure {
            error: why.into(),
            stdout_size: 0,
            stderr_size: 0,
        })
    }

    /// How many body bytes follow the header.
    pub fn body_size(&self) -> u64 {
        let (stdout, stderr) = match self {
            Answer::Ok(status) => (status.stdout_size, status.stderr_size),
            Answer::Error(failure) => (failure.stdout_size, failure.stderr_size),
        };
        stdout.saturating_add(stderr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exact_bytes_of_every_answer() {
        let status = Status {
            exit_code: None,
            signal: Some(9),
            stdout_size: 8,
            stderr_size: 0,
            timed_out: true,
            truncated: false,
        };
        let text = serde_json::to_string(&Answer::Ok(status.clone())).unwrap();
        assert_eq!(
            text,
            r#"{"status":"ok","exit_code":null,"signal":9,"stdout_size":8,"stderr_size":0,"timed_out":true,"truncated":false}"#
        );
        assert_eq!(
            serde_json::from_str::<Answer>(&text).unwrap(),
            Answer::Ok(status.clone())
        );
        assert_eq!(status.shell_status(), 137);
        let frame = "frame of 5000 bytes over the limit 1024";
        assert_eq!(
            serde_json::to_string(&Answer::refused(frame)).unwrap(),
            format!(r#"{{"status":"error","error":"{frame}","stdout_size":0,"stderr_size":0}}"#)
        );
    }

    #[test]
    fn answers_of_other_servers_are_read_leniently_or_refused() {
        // Missing sizes and flags are zero and false; unknown keys are ignored.
        let answer: Answer =
            serde_json::from_str(r#"{"status":"error","error":"nope","extra":1}"#).unwrap();
        assert_eq!(answer, Answer::refused("nope"));
        let answer: Answer =
            serde_json::from_str(r#"{"exit_code":3,"status":"ok","stdout_size":2}"#).unwrap();
        assert_eq!(answer.body_size(), 2);
        for bad in [
            r#"{"status":"maybe"}"#,
            r#"{"exit_code":0}"#,
            r#"{"status":"ok","exit_code":"0"}"#,
            r#"{"status":"ok","exit_code":4294967296}"#,
            r#"{"status":"ok","stdout_size":-1}"#,
            r#"{"status":"error"}"#,
        ] {
            assert!(serde_json::from_str::<Answer>(bad).is_err(), "{bad}");
        }
    }
}
