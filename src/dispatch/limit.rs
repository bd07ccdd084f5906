//! How many threads the system lets this process start, and the error of a
//! server whose threads cannot start.
//!
//! Asking for more threads than the system allows does not fail cleanly by
//! itself: past `vm.max_map_count`, a new thread may get its stack but not
//! the small signal stack that Rust maps for it, and the process aborts
//! (SIGABRT) instead of returning an error. So the dispatchers check the
//! counts they are asked for against [`ThreadLimit::now`] before they start
//! anything, and report a count over it as a [`ThreadsError`] inside the
//! `io::Error` of [`Server::bind_with`](crate::Server::bind_with).
//!
//! ```
//! use socketserver::dispatch::ThreadLimit;
//!
//! let limit = ThreadLimit::now();
//! assert!(limit.available > 0);
//! println!("this process can start {limit}");
//! ```

use std::error::Error;
use std::fmt;
use std::fs;
use std::io;

/// Memory mappings a thread costs: its stack and guard page, and the signal
/// stack and guard page that Rust gives every thread (measured: 4.15 per
/// thread, malloc arenas included).
const MAPS_PER_THREAD: u64 = 4;
/// Memory mappings kept for everything else the process maps (heap
/// segments, large buffers, libraries).
const RESERVED_MAPS: u64 = 4096;
/// Threads kept for everything else the process and the system start.
const RESERVED_THREADS: u64 = 64;

/// How many more threads this process can start, and which of the system's
/// limits says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadLimit {
    /// How many more threads can start (an estimate on the safe side).
    pub available: usize,
    /// The limit that bounds it, with its value: `vm.max_map_count = 65530
    /// memory mappings, 4 per thread`, `kernel.threads-max = ...`,
    /// `kernel.pid_max = ...` or `RLIMIT_NPROC (ulimit -u) = ...`; `none` when no limit
    /// could be read.
    pub bound_by: String,
}

impl ThreadLimit {
    /// Reads the limits now: `RLIMIT_NPROC` (not enforced for root) against
    /// the threads of this user, `kernel.threads-max` and `kernel.pid_max`
    /// against the threads of the whole system, and `vm.max_map_count`
    /// against this process's memory mappings. Limits that cannot be read
    /// (another system than Linux, no `/proc`) are left out.
    pub fn now() -> ThreadLimit {
        let mut limit = ThreadLimit {
            available: usize::MAX,
            bound_by: "none".to_string(),
        };
        let mut bound = |more: u64, why: String| {
            let more = usize::try_from(more).unwrap_or(usize::MAX);
            if more < limit.available {
                limit.available = more;
                limit.bound_by = why;
            }
        };
        let system_threads = system_threads();
        for (name, path) in [
            ("kernel.threads-max", "/proc/sys/kernel/threads-max"),
            ("kernel.pid_max", "/proc/sys/kernel/pid_max"),
        ] {
            if let (Some(max), Some(used)) = (read_number(path), system_threads) {
                bound(
                    max.saturating_sub(used).saturating_sub(RESERVED_THREADS),
                    format!("{name} = {max}, {used} threads running on the system"),
                );
            }
        }
        if let Some(max) = read_number("/proc/sys/vm/max_map_count") {
            let used = fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count());
            bound(
                max.saturating_sub(used as u64)
                    .saturating_sub(RESERVED_MAPS)
                    / MAPS_PER_THREAD,
                format!(
                    "vm.max_map_count = {max} memory mappings, {used} in use, \
                     about {MAPS_PER_THREAD} per thread"
                ),
            );
        }
        if let Some((max, used)) = user_processes() {
            bound(
                max.saturating_sub(used),
                format!("RLIMIT_NPROC (ulimit -u) = {max}, {used} threads of this user running"),
            );
        }
        limit
    }

    /// An error when `wanted` threads cannot start; `what` names them (`worker
    /// threads`, `event loop threads`).
    pub(crate) fn check(&self, wanted: usize, what: &str) -> io::Result<()> {
        if wanted <= self.available {
            return Ok(());
        }
        Err(ThreadsError::over_limit(format!(
            "cannot start {wanted} {what}: the system allows about {} more threads ({})",
            self.available, self.bound_by
        ))
        .into())
    }
}

impl fmt::Display for ThreadLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.available == usize::MAX {
            return write!(f, "threads without a known limit");
        }
        write!(
            f,
            "about {} more threads ({})",
            self.available, self.bound_by
        )
    }
}

/// Why a server's threads could not start: a count over what the system
/// allows (known before anything started: a usage error), or the system
/// refusing a thread. Carried inside the `io::Error` of
/// [`Server::bind_with`](crate::Server::bind_with), so that a program can
/// tell it from a bind error:
///
/// ```
/// use socketserver::dispatch::ThreadsError;
/// use socketserver::{handler_fn, Options, StreamRequest, ThreadingTcpServer};
///
/// let handler = handler_fn(|_: &mut StreamRequest| Ok(()));
/// let options = Options::new().threads(usize::MAX / 2);
/// let error = ThreadingTcpServer::bind_with("127.0.0.1:0", handler, options).unwrap_err();
/// let threads = error.get_ref().and_then(|e| e.downcast_ref::<ThreadsError>());
/// assert!(threads.is_some_and(ThreadsError::is_over_limit), "{error}");
/// ```
#[derive(Debug)]
pub struct ThreadsError {
    message: String,
    over_limit: bool,
}

impl ThreadsError {
    pub(crate) fn over_limit(message: String) -> Self {
        ThreadsError {
            message,
            over_limit: true,
        }
    }

    /// `what` could not start because the system refused a thread.
    pub(crate) fn spawn(what: &str, cause: &io::Error) -> io::Error {
        let kind = cause.kind();
        let error = ThreadsError {
            message: format!("cannot start {what}: {cause}"),
            over_limit: false,
        };
        io::Error::new(kind, error)
    }

    /// True when the count asked for is over the system's limit (see
    /// [`ThreadLimit`]); false when the system refused a thread below it.
    pub fn is_over_limit(&self) -> bool {
        self.over_limit
    }
}

impl fmt::Display for ThreadsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for ThreadsError {}

impl From<ThreadsError> for io::Error {
    fn from(error: ThreadsError) -> io::Error {
        io::Error::other(error)
    }
}

fn read_number(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Threads running on the whole system: the denominator of the fourth field
/// of `/proc/loadavg` (`1/345`).
fn system_threads() -> Option<u64> {
    let loadavg = fs::read_to_string("/proc/loadavg").ok()?;
    let field = loadavg.split_whitespace().nth(3)?;
    field.split_once('/')?.1.parse().ok()
}

/// The soft `RLIMIT_NPROC` and the threads of this process's real user,
/// when the limit applies: not for root, not when unlimited.
fn user_processes() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit structure.
    if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        return None;
    }
    let used = user_threads(uid)?;
    Some((limit.rlim_cur, used))
}

/// The threads of every process whose real user is `uid`.
fn user_threads(uid: libc::uid_t) -> Option<u64> {
    let mut total = 0;
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse::<u64>().ok())
        };
        if field("Uid:") == Some(u64::from(uid)) {
            total += field("Threads:").unwrap_or(1);
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_names_what_bounds_it() {
        let limit = ThreadLimit::now();
        assert!(
            limit.available > 0 && limit.available < usize::MAX,
            "{limit}"
        );
        // On Linux the map count bounds it far below the pid space on an
        // ordinary machine; whichever it is, it is named.
        assert!(
            ["vm.max_map_count", "kernel.", "RLIMIT_NPROC"]
                .iter()
                .any(|name| limit.bound_by.contains(name)),
            "{limit}"
        );
        assert!(limit.check(limit.available, "worker threads").is_ok());
        let err = limit
            .check(limit.available + 1, "worker threads")
            .unwrap_err();
        let inner = err.get_ref().unwrap().downcast_ref::<ThreadsError>();
        assert!(inner.unwrap().is_over_limit());
        assert!(err.to_string().starts_with(&format!(
            "cannot start {} worker threads: the system allows about",
            limit.available + 1
        )));
    }

    #[test]
    fn a_refused_spawn_is_not_over_the_limit() {
        let cause = io::Error::from_raw_os_error(libc::EAGAIN);
        let err = ThreadsError::spawn("worker thread 3 of 8", &cause);
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let inner = err.get_ref().unwrap().downcast_ref::<ThreadsError>();
        assert!(!inner.unwrap().is_over_limit());
        assert!(err
            .to_string()
            .starts_with("cannot start worker thread 3 of 8: "));
    }
}
