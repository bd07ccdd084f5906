//! What the framed services (`exec`, `files`) share in the program: the
//! frame options, the key file, the handshake's options, and the progress
//! bar.

use std::io::{self, IsTerminal};
use std::path::Path;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use socketserver::protocol::auth::{FailureLimit, Key, NoChallenge};
use socketserver::protocol::framing::Endian;
use socketserver::services::auth::{AuthConfig, StartupLimit};
use socketserver::SocketUrl;

use crate::common::{parse_duration, CliError};

/// `--frame-endian`.
#[derive(Args, Debug)]
pub struct EndianArg {
    /// Byte order of frame lengths: little (Python's struct.pack('i', n)) or big (network order)
    #[arg(long, value_name = "ORDER", default_value = "little")]
    pub frame_endian: Endian,
}

/// The options of the HMAC handshake: its timeout, the failure limits and
/// the startup limit.
#[derive(Args, Debug)]
pub struct AuthArgs {
    /// Give a client SECS to answer the challenge (0: no limit); a client that lets it pass counts as a failed handshake
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "10")]
    pub auth_timeout: Duration,
    /// Refuse a client address after N wrong or missing handshake answers in a row (0: no failure limit at all)
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub auth_max_failures: u32,
    /// How long a refused address waits after its last failure; failures further apart start the count again (network and global counts drain over SECS)
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "60")]
    pub auth_failure_window: Duration,
    /// Refuse a whole IPv4 /24 or IPv6 /64 after N recent failed handshakes from its addresses (0: no limit) [default: 4 × --auth-max-failures]
    #[arg(long, value_name = "N")]
    pub auth_network_max_failures: Option<u32>,
    /// Refuse every client after N recent failed handshakes from all of them (0: no limit) [default: 20 × --auth-max-failures]
    #[arg(long, value_name = "N")]
    pub auth_global_max_failures: Option<u32>,
    /// Cap the connections in the handshake (OpenSSH's MaxStartups): past START of them, refuse new ones with a chance rising from RATE % to 100 % at FULL
    #[arg(long, value_name = "START:RATE:FULL", default_value = "10:30:100")]
    pub max_startups: StartupLimit,
}

impl AuthArgs {
    /// The handshake these options ask for, with `key`.
    pub fn config(&self, key: Key) -> AuthConfig {
        let mut limit = FailureLimit::new(self.auth_max_failures, self.auth_failure_window);
        if let Some(n) = self.auth_network_max_failures {
            limit = limit.per_prefix(n);
        }
        if let Some(n) = self.auth_global_max_failures {
            limit = limit.global(n);
        }
        AuthConfig::new(key)
            .timeout(Some(self.auth_timeout).filter(|t| !t.is_zero()))
            .failure_limit(limit)
            .max_startups(self.max_startups)
    }
}

/// Reads `--key-file FILE`, or says why it cannot.
pub fn load_key(path: &Path) -> Result<Key, CliError> {
    Key::from_file(path)
        .map_err(|e| CliError::Failed(format!("cannot load --key-file {}: {e}", path.display())))
}

/// A size option that must fit a frame length.
pub fn frame_size(option: &str, bytes: u64) -> Result<u32, CliError> {
    u32::try_from(bytes).map_err(|_| {
        CliError::Usage(format!(
            "{option} {bytes} is over the 4 GiB - 1 a frame can carry"
        ))
    })
}

/// The error of a client that could not start its session: a server that
/// sent no challenge is named as it is; anything else is prefixed with
/// where the client connected.
pub fn session_error(url: &SocketUrl, error: io::Error) -> CliError {
    if NoChallenge::from_io(&error).is_some() {
        CliError::Failed(error.to_string())
    } else {
        CliError::Failed(format!("cannot start a session with {url}: {error}"))
    }
}

/// A progress bar on standard error, only when it is a terminal.
pub fn progress_bar(total: u64, message: String) -> Option<ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .map(|style| style.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(message);
    Some(bar)
}
