//! What the framed services (`exec`, `files`) share in the program: the
//! frame options, the key file, and the progress bar.

use std::io::{self, IsTerminal};
use std::path::Path;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use socketserver::protocol::auth::{FailureLimit, Key};
use socketserver::protocol::framing::Endian;

use crate::common::{parse_duration, CliError};

/// `--frame-endian`.
#[derive(Args, Debug)]
pub struct EndianArg {
    /// Byte order of frame lengths: little (Python's struct.pack('i', n)) or big (network order)
    #[arg(long, value_name = "ORDER", default_value = "little")]
    pub frame_endian: Endian,
}

/// `--auth-max-failures` and `--auth-failure-window`.
#[derive(Args, Debug)]
pub struct AuthLimitArgs {
    /// Refuse a client address after N wrong handshake answers in a row (0: no limit)
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub auth_max_failures: u32,
    /// How long a refused address waits after its last failure; failures further apart start the count again
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "60")]
    pub auth_failure_window: Duration,
}

impl AuthLimitArgs {
    /// The limit these options ask for.
    pub fn limit(&self) -> FailureLimit {
        FailureLimit::new(self.auth_max_failures, self.auth_failure_window)
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
