//! The server lifecycle shared by every server type: [`Server`], its
//! [`Options`], its [`ServerHandle`], its counters ([`Stats`], [`Summary`])
//! and [`ServerGroup`].
//!
//! A server reports what it does through [`Stats`] and [`Metrics`] (its
//! counters, gauges and request-duration histogram), and whether it takes new
//! clients through a [`Readiness`] that its [`ServerHandle::drain`] turns to
//! draining some time ([`Options::drain_delay`]) before its shutdown begins.
//!
//! One template, as in Python's `BaseServer`: [`serve_forever`](Server::serve_forever)
//! waits for arrivals, admits each under the limits, hands it to the
//! dispatcher, and calls `service_actions`; a [`ServerHandle::shutdown`] wakes
//! it at once, and it then closes the listening socket and the idle
//! connections, drains in-flight work until the deadline, cuts the rest and
//! joins its threads. What happens to one admitted connection (stream layers,
//! `verify_request`, `setup`/`handle`/`finish`, errors, panics, counters) is
//! the lifecycle every dispatcher runs.
//!
//! ```
//! use std::io::{BufRead, Write};
//! use socketserver::{handler_fn, Options, StreamRequest, ThreadingTcpServer};
//!
//! let greeter = handler_fn(|req: &mut StreamRequest| {
//!     let mut name = String::new();
//!     req.read_line(&mut name)?;
//!     writeln!(req, "hello, {}", name.trim())
//! });
//! let options = Options::new().max_connections(100);
//! let server = ThreadingTcpServer::bind_with("127.0.0.1:0", greeter, options)?;
//! println!("listening on {}", server.url());
//! server.shutdown(); // from another thread, a handler, or Ctrl-C in real life
//! let summary = server.serve_forever()?;
//! assert_eq!(summary.served, 0);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::ToSocketAddrs;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mio::{Poll, Token, Waker};
use parking_lot::Mutex;
use socket2::Type;

mod accept;
pub(crate) mod control;
pub(crate) mod flusher;
mod group;
pub(crate) mod lifecycle;
pub(crate) mod options;
pub(crate) mod readiness;
pub(crate) mod registry;
mod signal;
pub(crate) mod stats;

use accept::Serving;
pub use control::ServerHandle;
use control::{Control, ServerKind, ACCEPT_BACKOFF};
pub use group::ServerGroup;
use lifecycle::Lifecycle;
pub use options::Options;
pub use readiness::{Readiness, ReadinessState};
pub use stats::{Metrics, Stats, Summary};

use crate::dispatch::{Dispatch, Threading};
use crate::transport::Address;
use crate::transport::{
    bind_inet, bind_unix, Listener, Tcp, Transport, Udp, UnixDatagram, UnixStream,
};

pub(crate) const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);

/// A server: a transport `T` (what it listens on), a handler `H` (what it does
/// with a request) and a dispatcher `D` (how it runs requests). Use it through
/// the aliases: [`ThreadingTcpServer`](crate::ThreadingTcpServer),
/// [`TcpServer`](crate::TcpServer), and so on.
///
/// The server listens from the moment it is bound. Closing happens on drop:
/// dropping a server that is not serving closes its socket, drains its
/// in-flight requests until the shutdown deadline and joins its threads.
pub struct Server<T: Transport, H, D = Threading> {
    lifecycle: Arc<Lifecycle<H>>,
    serving: Mutex<Option<Serving<T>>>,
    local: Address,
    dispatch: PhantomData<fn() -> D>,
}

/// An address a server of transport `T` can bind to: anything that resolves to
/// socket addresses for TCP and UDP (`"127.0.0.1:9000"`, `("::1", 0)`), a path
/// for Unix sockets.
pub trait BindAddress<T: Transport> {
    #[doc(hidden)]
    fn bind_listener(self, options: &Options) -> io::Result<Listener>;
}

impl<A: ToSocketAddrs> BindAddress<Tcp> for A {
    fn bind_listener(self, options: &Options) -> io::Result<Listener> {
        bind_inet(self, Type::STREAM, &options.listen)
    }
}
impl<A: ToSocketAddrs> BindAddress<Udp> for A {
    fn bind_listener(self, options: &Options) -> io::Result<Listener> {
        bind_inet(self, Type::DGRAM, &options.listen)
    }
}
impl<P: AsRef<Path>> BindAddress<UnixStream> for P {
    fn bind_listener(self, options: &Options) -> io::Result<Listener> {
        bind_unix(self.as_ref(), Type::STREAM, &options.listen)
    }
}
impl<P: AsRef<Path>> BindAddress<UnixDatagram> for P {
    fn bind_listener(self, options: &Options) -> io::Result<Listener> {
        bind_unix(self.as_ref(), Type::DGRAM, &options.listen)
    }
}

impl<T, H, D> Server<T, H, D>
where
    T: Transport,
    D: Dispatch<T, H>,
{
    /// Binds to `addr` with the default [`Options`] and starts listening (and,
    /// for a threading server, its core threads). Port 0 picks a free port:
    /// read it back with [`local_addr`](Server::local_addr).
    pub fn bind(addr: impl BindAddress<T>, handler: H) -> io::Result<Self> {
        Self::bind_with(addr, handler, Options::new())
    }

    /// Binds to `addr` with `options` and starts listening.
    pub fn bind_with(addr: impl BindAddress<T>, handler: H, options: Options) -> io::Result<Self> {
        let listener = addr.bind_listener(&options)?;
        Self::start(listener, handler, options)
    }

    /// Serves on a socket that is already bound: one passed by systemd's
    /// socket activation ([`ops::systemd`](crate::ops)), by a parent
    /// process, or made by hand. Any socket type converts
    /// (`std::net::TcpListener`, `UdpSocket`,
    /// `std::os::unix::net::UnixListener`, `UnixDatagram`, `socket2::Socket`,
    /// an `OwnedFd`).
    ///
    /// The socket must be of the server's transport (a TCP server takes an
    /// IPv4 or IPv6 stream socket, a Unix datagram server a Unix datagram
    /// socket...), else the error is `InvalidInput` naming both. A stream
    /// socket that is not listening yet is made to listen with the
    /// [`backlog`](Options::backlog); the socket options of `options` that
    /// apply before binding (SO_REUSEADDR, SO_REUSEPORT, IPV6_V6ONLY) are
    /// the socket's own business and are not changed. The socket is marked
    /// close-on-exec. A Unix socket's file is left in place when the server
    /// closes: whoever made it owns it.
    ///
    /// ```
    /// use socketserver::services::EchoUpper;
    /// use socketserver::ThreadingTcpServer;
    ///
    /// let socket = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let server = ThreadingTcpServer::from_listener(socket, EchoUpper, Default::default())?;
    /// assert!(server.url().starts_with("tcp://127.0.0.1:"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn from_listener(
        socket: impl Into<OwnedFd>,
        handler: H,
        options: Options,
    ) -> io::Result<Self> {
        let listener = Listener::adopt(socket.into(), T::SCHEME, &options.listen)?;
        Self::start(listener, handler, options)
    }

    fn start(listener: Listener, handler: H, options: Options) -> io::Result<Self> {
        let listener = Arc::new(listener);
        let local = listener.local_addr()?;
        let url = url_of::<T>(&local);
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let kind = ServerKind {
            url: url.clone(),
            stream: T::SCHEME.is_stream(),
            per_message: D::PER_MESSAGE,
            runs_on_serving_thread: D::RUNS_ON_SERVING_THREAD,
        };
        let control = Arc::new(Control::new(waker, options, kind));
        if !T::SCHEME.is_stream() {
            control.watch_kernel_drops(&listener);
        }
        let lifecycle = Arc::new(Lifecycle::new(handler, ServerHandle(Arc::clone(&control))));
        let dispatch = D::start(&lifecycle, &listener)?;
        log::info!("listening on {url}");
        Ok(Server {
            lifecycle,
            serving: Mutex::new(Some(Serving::new(listener, poll, dispatch, control, url))),
            local,
            dispatch: PhantomData,
        })
    }

    /// Serves until [`shutdown`](ServerHandle::shutdown) is called (from a
    /// handler, another thread, or a signal through
    /// [`shutdown_on_ctrl_c`](Server::shutdown_on_ctrl_c)), or until the
    /// [drain delay](Options::drain_delay) after a
    /// [`drain`](ServerHandle::drain) has passed; then stops
    /// accepting at once, closes idle connections, lets in-flight requests
    /// finish until the [`shutdown_timeout`](Options::shutdown_timeout),
    /// shuts the remaining connections down, joins the worker threads, and
    /// reports.
    ///
    /// A server serves once: after `serve_forever` returns, its socket is
    /// closed, and another call is an error.
    pub fn serve_forever(&self) -> io::Result<Summary> {
        let mut guard = self.lock_serving()?;
        let serving = guard.as_mut().ok_or_else(closed)?;
        serving.begin()?;
        serving.watch_arrivals(false);
        let control = self.lifecycle.control();
        let handler = &self.lifecycle.handler;
        let poll_interval = control.options.poll_interval;
        let mut failing = false;
        while !control.is_shutdown() {
            let wait = match serving.pump(|peer| D::verify(handler, peer), false) {
                Ok(_) => {
                    if std::mem::take(&mut failing) {
                        log::warn!("{}: accepting again", self.url());
                    }
                    poll_interval
                }
                Err(e) => {
                    // Out of descriptors, say: retry later, without spinning
                    // a core or flooding the log.
                    if !std::mem::replace(&mut failing, true) {
                        log::error!(
                            "cannot accept on {}: {e}; retrying every {} ms",
                            self.url(),
                            ACCEPT_BACKOFF.as_millis()
                        );
                    }
                    ACCEPT_BACKOFF.min(poll_interval)
                }
            };
            D::service_actions(handler);
            if control.is_shutdown() {
                break;
            }
            let wait = match control.shutdown_due() {
                Some(due) => {
                    let now = Instant::now();
                    if now >= due {
                        self.shutdown();
                        break;
                    }
                    wait.min(due - now)
                }
                None => wait,
            };
            serving.wait(Some(wait))?;
        }
        let serving = guard.take().ok_or_else(closed)?;
        Ok(serving.close())
    }

    /// Waits for one request and dispatches it (Python's `handle_request`): a
    /// one-at-a-time server runs it before returning, a threading server hands
    /// it to the pool. If none arrives within the server's
    /// [`timeout`](Options::timeout), calls the handler's `handle_timeout`
    /// and returns.
    pub fn handle_request(&self) -> io::Result<()> {
        let mut guard = self.lock_serving()?;
        let serving = guard.as_mut().ok_or_else(closed)?;
        serving.begin()?;
        // A dispatcher that receives itself says when a datagram came.
        serving.watch_arrivals(true);
        let handled = Self::wait_for_one(serving, &self.lifecycle);
        serving.watch_arrivals(false);
        handled
    }

    fn wait_for_one(serving: &mut Serving<T>, lifecycle: &Lifecycle<H>) -> io::Result<()> {
        let control = lifecycle.control();
        let handler = &lifecycle.handler;
        let deadline = control.options.timeout.map(crate::deadline::after);
        while !control.is_shutdown() {
            if serving.pump(|peer| D::verify(handler, peer), true)? {
                return Ok(());
            }
            let remaining = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        D::handle_timeout(handler);
                        return Ok(());
                    }
                    Some(deadline - now)
                }
                None => None,
            };
            serving.wait(remaining)?;
        }
        Ok(())
    }
}

impl<T: Transport, H, D> Server<T, H, D> {
    /// A handle to ask this server to shut down, or to read its counters,
    /// from any thread.
    pub fn handle(&self) -> ServerHandle {
        self.lifecycle.server().clone()
    }

    /// Asks the server to shut down; the same as
    /// [`ServerHandle::shutdown`]. Returns at once.
    pub fn shutdown(&self) {
        self.lifecycle.server().shutdown()
    }

    /// Shuts the server down on SIGINT (Ctrl-C), SIGTERM or SIGHUP; a second
    /// signal (more than 100 ms after the first) exits the process with
    /// status 130. See
    /// [`ServerHandle::shutdown_on_ctrl_c`].
    pub fn shutdown_on_ctrl_c(&self) -> io::Result<()> {
        self.lifecycle.server().shutdown_on_ctrl_c()
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> Stats {
        self.lifecycle.server().stats()
    }

    /// The server's counters, gauges and request durations now (see
    /// [`ServerHandle::metrics`]).
    pub fn metrics(&self) -> Metrics {
        self.lifecycle.server().metrics()
    }

    /// The handler this server calls.
    pub fn handler(&self) -> &H {
        &self.lifecycle.handler
    }

    /// The options this server runs with.
    pub fn options(&self) -> &Options {
        &self.lifecycle.control().options
    }

    /// The address the server listens on, with the real port when bound to
    /// port 0.
    pub fn local_addr(&self) -> &Address {
        &self.local
    }

    /// The listening address as a URL: `tcp://127.0.0.1:9000`,
    /// `udp://[::1]:9002`, `unix:/run/app.sock`, `unixgram:/run/app.sock`.
    pub fn url(&self) -> String {
        url_of::<T>(&self.local)
    }

    fn lock_serving(&self) -> io::Result<parking_lot::MutexGuard<'_, Option<Serving<T>>>> {
        self.serving.try_lock().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::ResourceBusy,
                "the server is already serving on another thread",
            )
        })
    }
}

/// The URL of a listener of transport `T` at `local`.
fn url_of<T: Transport>(local: &Address) -> String {
    match local {
        Address::Inet(addr) => format!("{}://{addr}", T::SCHEME),
        Address::Unix(path) => format!(
            "{}:{}",
            T::SCHEME,
            path.as_deref().unwrap_or(Path::new("")).display()
        ),
    }
}

impl<T: Transport, H, D> fmt::Debug for Server<T, H, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.url())
            .field("stats", &self.stats())
            .finish()
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the server has shut down")
}
