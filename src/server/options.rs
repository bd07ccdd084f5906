//! [`Options`]: every setting of a server, with defaults for a loopback service.

use std::time::Duration;

use crate::layer::Layers;
use crate::transport::ListenOptions;

/// Every setting of a server: the thread pool, limits, timeouts and socket
/// options. A builder: start from [`Options::new`] (the defaults), chain the
/// setters, and pass it to [`Server::bind_with`](crate::Server::bind_with).
///
/// ```no_run
/// use std::time::Duration;
/// use socketserver::{handler_fn, Options, StreamRequest, ThreadingTcpServer};
///
/// let options = Options::new()
///     .threads(4)
///     .max_threads(64)
///     .queue(128)
///     .idle_timeout(Some(Duration::from_secs(30)))
///     .shutdown_timeout(Duration::from_secs(5));
/// let handler = handler_fn(|_: &mut StreamRequest| Ok(()));
/// let server = ThreadingTcpServer::bind_with("127.0.0.1:0", handler, options)?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # When everything is full
///
/// A threading server hands a new request to an idle worker; without one it
/// starts a worker while fewer than [`max_threads`](Options::max_threads) run;
/// past that the request waits in a queue of [`queue`](Options::queue) places.
/// When the queue is full, or [`max_connections`](Options::max_connections)
/// connections are open, a stream server stops accepting until room frees, so
/// new clients wait in the kernel's listen backlog (backpressure, the default),
/// or, with [`reject_when_full`](Options::reject_when_full), closes them at once
/// and counts them as rejected. A datagram server drops the packet and counts
/// it as dropped: memory never grows without bound.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) threads: usize,
    /// `None`: as many as `max_connections`.
    max_threads: Option<usize>,
    pub(crate) queue: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) max_connections: usize,
    pub(crate) reject_when_full: bool,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) nodelay: bool,
    pub(crate) listen: ListenOptions,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) poll_interval: Duration,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) read_buffer: usize,
    pub(crate) reactor_threads: usize,
    pub(crate) layers: Layers,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_threads: None,
            queue: 1024,
            keep_alive: Duration::from_secs(30),
            max_connections: 10_000,
            reject_when_full: false,
            idle_timeout: None,
            write_timeout: None,
            nodelay: true,
            listen: ListenOptions::default(),
            shutdown_timeout: Duration::from_secs(10),
            timeout: None,
            poll_interval: Duration::from_millis(500),
            thread_name: "socketserver".to_string(),
            stack_size: None,
            read_buffer: 8 * 1024,
            reactor_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            layers: Layers::default(),
        }
    }
}

impl Options {
    /// The defaults: as many warm threads as CPUs, up to a thread per
    /// connection, a queue of 1024, 10,000 connections, no idle timeout, TCP_NODELAY and
    /// SO_REUSEADDR on, a listen backlog of 1024, a 10 s shutdown deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Worker threads started at once and kept warm (the pool's core).
    /// Default: the number of CPUs. Ignored by one-at-a-time servers.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        if let Some(max) = self.max_threads {
            self.max_threads = Some(max.max(threads));
        }
        self
    }

    /// The most worker threads the pool grows to (at least 1). Default: as
    /// many as [`max_connections`](Options::max_connections), so that in a
    /// threading server every admitted connection gets a thread and no
    /// client waits behind idle connections that hold every thread; the
    /// queue only absorbs bursts while threads start. A smaller number is an
    /// explicit choice to make connections wait.
    pub fn max_threads(mut self, max_threads: usize) -> Self {
        let max = max_threads.max(1);
        self.max_threads = Some(max);
        self.threads = self.threads.min(max);
        self
    }

    /// The most worker threads, as set or as it follows the connection cap,
    /// and never more than [`system_thread_limit`](Options::system_thread_limit)
    /// allows: a pool that asked for more stops there (logged once), rather
    /// than start a thread the system cannot give a stack to, which aborts
    /// the process.
    pub fn max_threads_or_default(&self) -> usize {
        let wanted = self
            .max_threads
            .unwrap_or(self.max_connections)
            .max(self.threads)
            .max(1);
        clamp_to_system(wanted, self.max_threads.is_some())
    }

    /// The threads a pool starts at once: [`threads`](Options::threads),
    /// within [`max_threads_or_default`](Options::max_threads_or_default).
    pub(crate) fn core_threads(&self) -> usize {
        self.threads.min(self.max_threads_or_default())
    }

    /// The most threads this process can still start, as the system's
    /// limits stand now, with a margin for the threads a process needs
    /// besides its pools: `None` where they cannot be read (not Linux).
    ///
    /// The tightest of: `vm.max_map_count` (every thread maps its stack,
    /// a guard page, std's signal stack and its guard, so about 16,300
    /// threads fit in the default 65,530 areas; a thread whose signal stack
    /// cannot be mapped aborts the whole process), `RLIMIT_NPROC` less the
    /// threads the user already runs (unless root), and `kernel.threads-max`
    /// and `kernel.pid_max` less the threads the system already runs.
    ///
    /// ```
    /// use socketserver::Options;
    ///
    /// if let Some(limit) = Options::system_thread_limit() {
    ///     // The default pool never grows past it.
    ///     assert!(Options::new().max_threads_or_default() <= limit.max(1));
    /// }
    /// ```
    pub fn system_thread_limit() -> Option<usize> {
        system::thread_limit()
    }

    /// Places for requests waiting for a thread (0: hand over only to a free
    /// thread). Default 1024. A request handed to a thread that is just waking
    /// up may briefly hold a place too, so the queue can exceed this by at most
    /// the number of threads; memory stays bounded by `queue + max_threads`.
    pub fn queue(mut self, queue: usize) -> Self {
        self.queue = queue;
        self
    }

    /// How long a thread beyond the core waits idle before it retires.
    /// Default 30 s.
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// The most connections open at once, queued ones included (at least 1).
    /// Default 10,000. Stream servers only.
    pub fn max_connections(mut self, max_connections: usize) -> Self {
        self.max_connections = max_connections.max(1);
        self
    }

    /// When the queue or [`max_connections`](Options::max_connections) is full,
    /// close new connections at once (counted as rejected) instead of leaving
    /// them in the kernel's backlog. Default off.
    pub fn reject_when_full(mut self, reject: bool) -> Self {
        self.reject_when_full = reject;
        self
    }

    /// Close a connection whose client sends nothing for this long: each
    /// blocking read gives up after it (Python's `StreamRequestHandler.timeout`).
    /// A client that keeps talking is never cut. Default none. A handler can
    /// change it per connection with
    /// [`StreamRequest::set_read_timeout`](crate::StreamRequest::set_read_timeout).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout.filter(|t| !t.is_zero());
        self
    }

    /// Give up a write that cannot progress for this long (a client that does
    /// not read). Default none.
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout.filter(|t| !t.is_zero());
        self
    }

    /// Set TCP_NODELAY on accepted TCP connections, so small replies are not
    /// held back by Nagle's algorithm (Python's `disable_nagle_algorithm`).
    /// Default on.
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// SO_REUSEADDR on the listening socket (Python's `allow_reuse_address`).
    /// Default on.
    pub fn reuse_address(mut self, reuse: bool) -> Self {
        self.listen.reuse_address = reuse;
        self
    }

    /// SO_REUSEPORT on the listening socket, so several servers can share a
    /// port (Python's `allow_reuse_port`). Default off.
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.listen.reuse_port = reuse;
        self
    }

    /// The listen backlog (Python's `request_queue_size`). Default 1024.
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.listen.backlog = backlog.max(1);
        self
    }

    /// IPV6_V6ONLY for a server bound to an IPv6 address: `Some(false)` also
    /// accepts IPv4 clients on `[::]`. Default: the system's setting.
    pub fn only_v6(mut self, only_v6: Option<bool>) -> Self {
        self.listen.only_v6 = only_v6;
        self
    }

    /// How long in-flight requests may run after a shutdown before their
    /// connections are shut down (Python's `block_on_close`, bounded).
    /// Default 10 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long [`handle_request`](crate::Server::handle_request) waits before
    /// it calls [`handle_timeout`](crate::RequestHandler::handle_timeout)
    /// (Python's `timeout`). Default none: wait for ever.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest `serve_forever` goes without calling
    /// [`service_actions`](crate::RequestHandler::service_actions). It does
    /// not delay shutdown, which is immediate. Default 0.5 s, as in Python.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The name of worker threads (shown by debuggers and `top -H`).
    /// Default `socketserver`.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.thread_name = name.into();
        self
    }

    /// The stack size of worker threads, in bytes. Default: Rust's default.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// The number of event loops of a reactor server
    /// ([`Reactor`](crate::dispatch::Reactor)), each on its own thread.
    /// Default: the number of CPUs.
    pub fn reactor_threads(mut self, loops: usize) -> Self {
        self.reactor_threads = loops.max(1);
        self
    }

    /// Expects every stream connection to start with a PROXY protocol
    /// header (version 1 or 2), as a load balancer such as HAProxy sends
    /// with `send-proxy`: the client's address in it becomes the peer
    /// everywhere (`verify_request`, the handler, logs). A connection
    /// without a valid header within the [header
    /// timeout](Options::proxy_header_timeout) is closed unanswered and
    /// counted as rejected. Only for servers behind a proxy you trust:
    /// anyone who can connect can claim any address. Datagram servers
    /// ignore it. Default off.
    pub fn proxy_protocol(mut self, on: bool) -> Self {
        self.layers.proxy = on;
        self
    }

    /// How long a PROXY header has to arrive, from accept. Default 5 s.
    pub fn proxy_header_timeout(mut self, timeout: Duration) -> Self {
        self.layers.proxy_timeout = timeout;
        self
    }

    /// Speaks TLS on every stream connection with this rustls
    /// configuration (make one from PEM files with
    /// [`server_config_from_pem`](crate::layer::tls::server_config_from_pem)).
    /// The handshake runs on the connection's thread or event loop, after a
    /// PROXY header if there is one, within the [handshake
    /// timeout](Options::tls_handshake_timeout); a failed handshake is
    /// counted as rejected. Datagram servers stay plaintext.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: std::sync::Arc<rustls::ServerConfig>) -> Self {
        self.layers.tls = Some(config);
        self
    }

    /// How long a TLS handshake has, from the end of the PROXY header (or
    /// from accept); `None`: no limit. Default 10 s.
    pub fn tls_handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.layers.tls_timeout = timeout.filter(|t| !t.is_zero());
        self
    }

    /// The capacity of a stream request's read buffer, in bytes. Default 8 KiB.
    pub fn read_buffer(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes.max(64);
        self
    }
}

/// `wanted` threads, or fewer when the system cannot give that many; the
/// first clamp of the process is logged.
fn clamp_to_system(wanted: usize, explicit: bool) -> usize {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    static LOGGED: AtomicBool = AtomicBool::new(false);
    let Some(limit) = system::thread_limit() else {
        return wanted;
    };
    let limit = limit.max(1);
    if wanted <= limit {
        return wanted;
    }
    if !LOGGED.swap(true, Relaxed) {
        if explicit {
            log::warn!(
                "max_threads {wanted} is more than this system can start ({limit}: see \
                 vm.max_map_count, RLIMIT_NPROC, kernel.threads-max); the pool stops at {limit}"
            );
        } else {
            log::info!(
                "the pool follows max_connections ({wanted}) up to the {limit} threads this \
                 system can start (vm.max_map_count, RLIMIT_NPROC, kernel.threads-max)"
            );
        }
    }
    limit
}

/// What the system allows, read from `/proc` and `getrlimit`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports))]
mod system {
    use std::fs;

    /// Memory areas a thread maps: its stack and guard page, std's signal
    /// stack and its guard page.
    const AREAS_PER_THREAD: usize = 4;
    /// Areas kept for everything else a process maps later (allocator
    /// arenas, large buffers, libraries).
    const AREA_MARGIN: usize = 1024;
    /// Threads kept for those a process needs besides its pools (accept
    /// loops, event loops, the flusher, a signal thread).
    const THREAD_MARGIN: usize = 64;

    #[cfg(target_os = "linux")]
    pub fn thread_limit() -> Option<usize> {
        let maps = read_number("/proc/sys/vm/max_map_count").map(|max| {
            let mapped = fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count());
            max.saturating_sub(mapped + AREA_MARGIN) / AREAS_PER_THREAD
        });
        let running = system_tasks();
        let threads_max = read_number("/proc/sys/kernel/threads-max")
            .zip(running)
            .map(|(max, running)| max.saturating_sub(running));
        let pid_max = read_number("/proc/sys/kernel/pid_max")
            .zip(running)
            .map(|(max, running)| max.saturating_sub(running));
        let limits = [maps, nproc_room(), threads_max, pid_max];
        limits
            .into_iter()
            .flatten()
            .min()
            .map(|room| room.saturating_sub(THREAD_MARGIN))
    }

    #[cfg(not(target_os = "linux"))]
    pub fn thread_limit() -> Option<usize> {
        None
    }

    fn read_number(path: &str) -> Option<usize> {
        fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// The tasks (threads) the system runs: the total of `/proc/loadavg`.
    fn system_tasks() -> Option<usize> {
        let text = fs::read_to_string("/proc/loadavg").ok()?;
        let field = text.split_whitespace().nth(3)?;
        field.split('/').nth(1)?.parse().ok()
    }

    /// What `RLIMIT_NPROC` leaves to this user: the soft limit less the
    /// threads of the user's processes; `None` without a limit or as root.
    #[cfg(target_os = "linux")]
    fn nproc_room() -> Option<usize> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        let got = unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut limit) };
        // SAFETY: getuid and geteuid cannot fail.
        let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
        if got != 0 || limit.rlim_cur == libc::RLIM_INFINITY || euid == 0 {
            return None;
        }
        let soft = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
        Some(soft.saturating_sub(threads_of_user(uid)))
    }

    /// The threads of every process whose real user is `uid`.
    #[cfg(target_os = "linux")]
    fn threads_of_user(uid: libc::uid_t) -> usize {
        let Ok(entries) = fs::read_dir("/proc") else {
            return 0;
        };
        let mut threads = 0;
        for entry in entries.flatten() {
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
                    .and_then(|value| value.parse::<usize>().ok())
            };
            if field("Uid:") == Some(uid as usize) {
                threads += field("Threads:").unwrap_or(1);
            }
        }
        threads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_and_max_threads_stay_consistent() {
        let o = Options::new().max_threads(2).threads(8);
        assert_eq!((o.threads, o.max_threads_or_default()), (8, 8));
        let o = Options::new().threads(8).max_threads(2);
        assert_eq!((o.threads, o.max_threads_or_default()), (2, 2));
        assert_eq!(Options::new().max_threads(0).max_threads_or_default(), 1);
        // By default the pool may give every admitted connection a thread.
        let o = Options::new().threads(2).max_connections(500);
        assert_eq!(o.max_threads_or_default(), 500);
    }

    #[test]
    fn the_pool_never_asks_for_more_threads_than_the_system_gives() {
        let limit = Options::system_thread_limit();
        if cfg!(target_os = "linux") {
            let limit = limit.expect("Linux says how many threads it allows");
            // This machine starts at least a few hundred, and not a million.
            assert!((100..1_000_000).contains(&limit), "limit {limit}");
            let asked = Options::new().max_connections(10_000_000);
            assert_eq!(asked.max_threads_or_default(), limit);
            let explicit = Options::new().max_threads(10_000_000).threads(10_000_000);
            assert_eq!(explicit.max_threads_or_default(), limit);
            assert_eq!(explicit.core_threads(), limit);
            // Within the limit, nothing changes.
            assert_eq!(Options::new().max_threads(50).max_threads_or_default(), 50);
        }
    }

    #[test]
    fn zero_timeouts_mean_none() {
        let o = Options::new()
            .idle_timeout(Some(Duration::ZERO))
            .write_timeout(Some(Duration::ZERO));
        assert_eq!((o.idle_timeout, o.write_timeout), (None, None));
    }
}
