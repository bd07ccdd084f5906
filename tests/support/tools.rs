//! The programs some tests drive (the course's Python clients, openssl and
//! curl as foreign TLS peers, a real browser, Prometheus' parser, HAProxy,
//! systemd's tools). When one is
//! missing, the test fails if `CI` is set (CI installs them all: see
//! `.ci/run`); elsewhere it prints a `SKIPPED` line saying what is missing
//! and returns without checking anything.
//!
//! ```ignore
//! let Some(python) = support::tool(Tool::Python3) else { return };
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A program a test needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `python3`, for the course's clients.
    Python3,
    /// `python3` with the `prometheus_client` package.
    PrometheusClient,
    /// The `openssl` program.
    Openssl,
    /// Chromium or Chrome, to run headless.
    Chromium,
    /// curl.
    Curl,
    /// HAProxy.
    Haproxy,
    /// systemd's `systemd-socket-activate` and `systemd-analyze`.
    Systemd,
}

impl Tool {
    /// What the tool is, for the messages.
    fn what(self) -> &'static str {
        match self {
            Tool::Python3 => "python3",
            Tool::PrometheusClient => "python3 with prometheus_client",
            Tool::Openssl => "the openssl program",
            Tool::Chromium => "chromium (or google-chrome) in PATH",
            Tool::Curl => "curl",
            Tool::Haproxy => "haproxy",
            Tool::Systemd => "systemd-socket-activate and systemd-analyze",
        }
    }

    /// How to get it.
    fn install(self) -> &'static str {
        match self {
            Tool::Python3 => "apt-get install python3",
            Tool::PrometheusClient => "pip install prometheus_client",
            Tool::Openssl => "apt-get install openssl",
            Tool::Chromium => "apt-get install chromium",
            Tool::Curl => "apt-get install curl",
            Tool::Haproxy => "apt-get install haproxy",
            Tool::Systemd => "apt-get install systemd",
        }
    }

    /// The program's path, if it is there and runs.
    fn find(self) -> Option<PathBuf> {
        match self {
            // (The course's clients over TLS wrap their socket with `ssl`.)
            Tool::Python3 => runs("python3", &["-c", "import socket, ssl"]),
            Tool::PrometheusClient => runs("python3", &["-c", "import prometheus_client"]),
            Tool::Openssl => runs("openssl", &["version"]),
            Tool::Curl => runs("curl", &["--version"]),
            Tool::Haproxy => runs("haproxy", &["-v"]),
            Tool::Systemd => runs("systemd-socket-activate", &["--version"])
                .and(runs("systemd-analyze", &["--version"])),
            Tool::Chromium => {
                let path = std::env::var_os("PATH").unwrap_or_default();
                std::env::split_paths(&path).find_map(|dir| {
                    [
                        "chromium",
                        "chromium-browser",
                        "google-chrome",
                        "google-chrome-stable",
                    ]
                    .into_iter()
                    .map(|name| dir.join(name))
                    .find(|candidate| candidate.is_file())
                })
            }
        }
    }
}

/// `program` if `program ARGS` runs and succeeds.
fn runs(program: &str, args: &[&str]) -> Option<PathBuf> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
        .then(|| PathBuf::from(program))
}

/// The program to run for `tool`; or, when it is missing, a failure under
/// CI (`CI` set) and elsewhere a `SKIPPED` line naming the test and what is
/// missing (written past the test harness's capture, so that it shows), and
/// `None`: the test then returns without checking anything.
pub fn tool(tool: Tool) -> Option<PathBuf> {
    if let Some(path) = tool.find() {
        return Some(path);
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {} is needed under CI ({})",
        tool.what(),
        tool.install()
    );
    skipped(&format!(
        "{} is missing ({}); what needs it was not checked",
        tool.what(),
        tool.install()
    ));
    None
}

/// Says that the running test skips (part of) what it checks, and why, on a
/// `SKIPPED TEST: WHY` line written past the test harness's capture, so
/// that it shows in `cargo test`'s output.
pub fn skipped(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// `python3 tests/python/SCRIPT`, ready for its arguments: the course's
/// clients, run unchanged; `None` (after [`tool`]'s SKIPPED line) without
/// python3.
pub fn course_client(script: &str) -> Option<Command> {
    let python = tool(Tool::Python3)?;
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "python", script]
        .iter()
        .collect();
    let mut command = Command::new(python);
    command.arg(path);
    Some(command)
}

/// Runs a browser (from [`tool(Tool::Chromium)`](tool)) to its end: one at
/// a time in a test binary (a test's two modes would start two at once),
/// bounded by a minute rather than [`STEP`](super::STEP), as a browser is
/// heavy on two loaded cores.
pub fn run_browser(command: &mut Command) -> (std::process::ExitStatus, Vec<u8>, String) {
    static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_BROWSER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    super::process::run_with_input_within(command, b"", std::time::Duration::from_secs(60))
}
