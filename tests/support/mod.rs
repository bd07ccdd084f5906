//! Shared by the integration tests: one way to start a service in a
//! dispatch mode, to connect with timeouts, to read an HTTP response or a
//! JSON-header answer, to make a temporary directory, and to find the tools
//! some tests drive.
//!
//! - [`process`]: a server as a child process ([`ServerProcess`]): the
//!   `socketserver` program in a mode ([`serve`], feature `cli`) or an
//!   example; any command run to its end ([`run_with_input`]);
//! - [`library`]: a library server on its own thread ([`Running`],
//!   [`run_messages`] in either mode);
//! - [`net`]: connections with timeouts, resets, waiting for a close;
//! - [`certs`] (feature `tls`): certificate authorities made on the spot;
//! - [`http`]: the one HTTP/1.1 response reader;
//! - [`frames`] (feature `protocols`): JSON-header answers and digests;
//! - [`ops`]: the agent check, `/metrics` parsed by Prometheus' parser;
//! - [`proxy`]: PROXY protocol headers;
//! - [`tools`]: python3, openssl, chromium... present, or a clear SKIPPED
//!   line (a failure when `CI` is set).
//!
//! Every service test runs in both dispatch modes through [`both_modes!`].
#![allow(dead_code, unused_imports)]

#[cfg(feature = "tls")]
pub mod certs;
#[cfg(feature = "protocols")]
pub mod frames;
pub mod http;
pub mod library;
pub mod net;
pub mod ops;
pub mod process;
pub mod proxy;
pub mod tools;

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

pub use library::{run_messages, Running};
pub use net::{assert_closed, connect, reset, until_closed};
#[cfg(feature = "cli")]
pub use process::{program, serve, serve_command};
pub use process::{run_with_input, run_with_input_within, ServerProcess};
pub use tools::{course_client, skipped, tool, Tool};

/// How long any single step of a test may take before it fails.
pub const STEP: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds, failing after [`STEP`]: for states that
/// nothing announces (a thread retiring, a counter moving, a file
/// appearing).
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(5));
    }
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

    /// Writes `contents` to the file `name` in the directory; its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write a test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A dispatch mode: every service test runs in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A pool thread per connection.
    Threads,
    /// Connections parked on event loops.
    Reactor,
}

impl Mode {
    /// Both modes, threads first.
    pub const BOTH: [Mode; 2] = [Mode::Threads, Mode::Reactor];

    /// The program's flag for this mode.
    pub fn flag(self) -> [&'static str; 2] {
        ["--dispatch", self.name()]
    }

    /// The mode's name, as the program spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Threads => "threads",
            Mode::Reactor => "reactor",
        }
    }
}

/// Defines a test that runs once per dispatch mode: `NAME::threads` and
/// `NAME::reactor`. Attributes before `fn` apply to both tests; an
/// attribute after the word `threads` or `reactor` (after the others, and
/// threads first) to one of them only, for a mode where a test rightly
/// cannot run or reveals a bug: `reactor #[ignore = "BUG: ..."]`.
///
/// ```ignore
/// both_modes! {
///     /// What the test shows.
///     fn answers_lines(mode) {
///         let server = serve("qa", mode, &[], 1);
///         // ...
///     }
///
///     reactor #[ignore = "BUG: what goes wrong"]
///     fn holds_in_threads_mode_only(mode) {
///         // ...
///     }
/// }
/// ```
#[macro_export]
macro_rules! both_modes {
    ($(
        $(#[$attr:meta])*
        $(threads #[$threads:meta])*
        $(reactor #[$reactor:meta])*
        fn $name:ident($mode:ident) $body:block
    )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                fn case($mode: $crate::support::Mode) $body

                #[test]
                $(#[$attr])*
                $(#[$threads])*
                fn threads() {
                    case($crate::support::Mode::Threads)
                }

                #[test]
                $(#[$attr])*
                $(#[$reactor])*
                fn reactor() {
                    case($crate::support::Mode::Reactor)
                }
            }
        )*
    };
}
