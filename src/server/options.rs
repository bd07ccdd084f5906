//! [`Options`]: every setting of a server, with defaults for a loopback service.

use std::time::Duration;

use super::readiness::Readiness;
use crate::layer::Layers;
use crate::transport::ListenOptions;

/// Every setting of a server: the thread pool, limits, timeouts and socket
/// options. A builder: start from [`Options::new`] (the defaults), chain the
/// setters, and pass it to [`Server::bind_with`](crate::Server::bind_with).
/// A duration too long to be added to an `Instant` (`Duration::MAX`) means
/// "never", not a panic.
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
    pub(crate) listener_per_loop: bool,
    pub(crate) layers: Layers,
    pub(crate) readiness: Readiness,
    pub(crate) drain_delay: Duration,
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
            listener_per_loop: false,
            layers: Layers::default(),
            readiness: Readiness::new(),
            drain_delay: Duration::ZERO,
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

    /// True when [`max_threads`](Options::max_threads) was set, rather than
    /// following the connection cap.
    pub(crate) fn max_threads_given(&self) -> bool {
        self.max_threads.is_some()
    }

    /// The most worker threads, as set or as it follows the connection cap.
    pub fn max_threads_or_default(&self) -> usize {
        self.max_threads
            .unwrap_or(self.max_connections)
            .max(self.threads)
            .max(1)
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

    /// SO_REUSEPORT on the listening socket, so that several servers, in
    /// this process or in others (several `serve` processes of one service),
    /// bind the same address and port and the kernel spreads new connections
    /// among them (Python's `allow_reuse_port`). Every socket sharing the
    /// address must set it, under the same user. Default off.
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

    /// Each event loop of a reactor server accepts on a listening socket of
    /// its own, all bound to the server's address with SO_REUSEPORT (so
    /// this turns [`reuse_port`](Options::reuse_port) on), and the kernel
    /// spreads new connections among them: no accept loop deals them out,
    /// and no connection crosses threads to reach its loop. The kernel
    /// spreads by a hash of the client's address and port, not by load, so
    /// a few connections may land unevenly. TCP only: a Unix-socket server,
    /// or a socket given to [`Server::from_listener`](crate::Server::from_listener)
    /// without SO_REUSEPORT, keeps one listener that deals connections to
    /// the loops in turn (with a warning in the second case). The loops
    /// accept from the moment serving begins and go on by themselves, so a
    /// [`handle_request`](crate::Server::handle_request) returns once one
    /// connection came, while the loops keep accepting. Default off: one
    /// listener, connections dealt in turn.
    pub fn listener_per_loop(mut self, on: bool) -> Self {
        self.listener_per_loop = on;
        if on {
            self.listen.reuse_port = true;
        }
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

    /// The [`Readiness`] this server reports through and marks draining when
    /// its shutdown begins. Servers bound with clones of one `Options` share
    /// one already; give the same handle to servers built from different
    /// options to make them report as one. Default: a new one, serving.
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// How long [`ServerHandle::drain`](crate::ServerHandle::drain) (the
    /// first SIGINT/SIGTERM under
    /// [`shutdown_on_ctrl_c`](crate::ServerHandle::shutdown_on_ctrl_c))
    /// keeps the server accepting and serving after turning its
    /// [`Readiness`] to draining, before the shutdown begins: the time a load
    /// balancer or a Kubernetes Service needs to stop sending it clients
    /// (HAProxy's agent check interval, the endpoint removal that runs beside
    /// SIGTERM). Default 0: the shutdown begins at once.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// The capacity of a stream request's read buffer, in bytes. Default 8 KiB.
    pub fn read_buffer(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes.max(64);
        self
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
    fn zero_timeouts_mean_none() {
        let o = Options::new()
            .idle_timeout(Some(Duration::ZERO))
            .write_timeout(Some(Duration::ZERO));
        assert_eq!((o.idle_timeout, o.write_timeout), (None, None));
    }
}
