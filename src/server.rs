//! [`Server`]: the lifecycle shared by every server type.
//!
//! One template, as in Python's `BaseServer`: [`serve_forever`](Server::serve_forever)
//! waits for arrivals, asks the handler's
//! [`verify_request`](crate::RequestHandler::verify_request), admits the request
//! under the limits, hands it to the dispatcher, and calls
//! [`service_actions`](crate::RequestHandler::service_actions); a
//! [`ServerHandle::shutdown`] wakes it at once, and it then closes the listening
//! socket, drains in-flight work until the deadline, cuts the rest and joins
//! its threads.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::net::ToSocketAddrs;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use socket2::Type;

use crate::control::Control;
use crate::dispatch::{Dispatch, Threading};
use crate::endpoint::{bind_inet, bind_unix, Endpoint, Job};
use crate::pool::Gauges;
use crate::stats::Counters;
use crate::transport::{Tcp, Transport, Udp, UnixDatagram, UnixStream};
use crate::{Address, Options, RequestHandler, ServerHandle, Stats};

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);
/// How long to wait before accepting again after the system refused (for
/// instance, out of file descriptors): long enough not to spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long cut connections get to unwind before `serve_forever` gives up on
/// their threads.
const CUT_GRACE: Duration = Duration::from_secs(2);

/// A server: a transport `T` (what it listens on), a handler `H` (what it does
/// with a request) and a dispatcher `D` (how it runs requests). Use it through
/// the aliases: [`ThreadingTcpServer`](crate::ThreadingTcpServer),
/// [`TcpServer`](crate::TcpServer), and so on.
///
/// The server listens from the moment it is bound. Closing happens on drop:
/// dropping a server that is not serving closes its socket, drains its
/// in-flight requests until the shutdown deadline and joins its threads.
pub struct Server<T: Transport, H, D: Dispatch = Threading> {
    shared: Arc<Shared<H>>,
    serving: Mutex<Option<Serving<D>>>,
    local: Address,
    transport: PhantomData<fn() -> T>,
}

/// What the serving thread and the workers share.
struct Shared<H> {
    handler: H,
    handle: ServerHandle,
    options: Options,
}

/// What only the serving thread touches: the listening socket and its poll.
struct Serving<D> {
    endpoint: Arc<Endpoint>,
    poll: Poll,
    events: Events,
    /// An accepted connection that waits for room.
    pending: Option<Job>,
    /// The receive buffer of a datagram server.
    scratch: Option<Box<[MaybeUninit<u8>]>>,
    dispatch: D,
}

/// What [`Server::serve_forever`] reports when it returns after a shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Requests handled to the end over the server's life.
    pub served: u64,
    /// Connections closed unserved over the server's life (see
    /// [`Stats::rejected`]).
    pub rejected: u64,
    /// Datagrams dropped over the server's life (see [`Stats::dropped`]).
    pub dropped: u64,
    /// Requests running or queued when the shutdown began.
    pub in_flight: usize,
    /// Requests cut at the shutdown deadline, running or queued.
    pub cut: u64,
    /// Worker threads still running a handler that ignored the cut (0 unless a
    /// handler blocks on something other than its connection).
    pub threads_left: usize,
    /// How long the shutdown took.
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "served {} request(s)", self.served)?;
        if self.rejected > 0 {
            write!(f, ", rejected {}", self.rejected)?;
        }
        if self.dropped > 0 {
            write!(f, ", dropped {} datagram(s)", self.dropped)?;
        }
        write!(
            f,
            "; {} in flight at shutdown, {} cut at the deadline; stopped in {:.3} s",
            self.in_flight,
            self.cut,
            self.elapsed.as_secs_f64()
        )?;
        if self.threads_left > 0 {
            write!(f, "; {} thread(s) still running", self.threads_left)?;
        }
        Ok(())
    }
}

/// An address a server of transport `T` can bind to: anything that resolves to
/// socket addresses for TCP and UDP (`"127.0.0.1:9000"`, `("::1", 0)`), a path
/// for Unix sockets.
pub trait BindAddress<T: Transport> {
    #[doc(hidden)]
    fn bind_endpoint(self, options: &Options) -> io::Result<Endpoint>;
}

impl<A: ToSocketAddrs> BindAddress<Tcp> for A {
    fn bind_endpoint(self, options: &Options) -> io::Result<Endpoint> {
        bind_inet(self, Type::STREAM, options)
    }
}
impl<A: ToSocketAddrs> BindAddress<Udp> for A {
    fn bind_endpoint(self, options: &Options) -> io::Result<Endpoint> {
        bind_inet(self, Type::DGRAM, options)
    }
}
impl<P: AsRef<Path>> BindAddress<UnixStream> for P {
    fn bind_endpoint(self, options: &Options) -> io::Result<Endpoint> {
        bind_unix(self.as_ref(), Type::STREAM, options)
    }
}
impl<P: AsRef<Path>> BindAddress<UnixDatagram> for P {
    fn bind_endpoint(self, options: &Options) -> io::Result<Endpoint> {
        bind_unix(self.as_ref(), Type::DGRAM, options)
    }
}

impl<T, H, D> Server<T, H, D>
where
    T: Transport,
    H: RequestHandler<T::Request>,
    D: Dispatch,
{
    /// Binds to `addr` with the default [`Options`] and starts listening (and,
    /// for a threading server, its core threads). Port 0 picks a free port:
    /// read it back with [`local_addr`](Server::local_addr).
    pub fn bind(addr: impl BindAddress<T>, handler: H) -> io::Result<Self> {
        Self::bind_with(addr, handler, Options::new())
    }

    /// Binds to `addr` with `options` and starts listening.
    pub fn bind_with(addr: impl BindAddress<T>, handler: H, options: Options) -> io::Result<Self> {
        let endpoint = Arc::new(addr.bind_endpoint(&options)?);
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        poll.registry().register(
            &mut SourceFd(&endpoint.socket.as_raw_fd()),
            LISTENER,
            Interest::READABLE,
        )?;
        let control = Arc::new(Control::new(
            waker,
            Arc::new(Gauges::default()),
            options.shutdown_timeout,
            D::RUNS_ON_SERVING_THREAD,
        ));
        let shared = Arc::new(Shared {
            handler,
            handle: ServerHandle(Arc::clone(&control)),
            options,
        });
        let worker = Arc::clone(&shared);
        let dispatch = D::start(
            &shared.options,
            &control,
            Box::new(move |job| worker.process::<T::Request>(job)),
        )?;
        let local = endpoint.local_addr()?;
        let scratch = (T::TYPE == Type::DGRAM).then(Endpoint::scratch);
        let server = Server {
            shared,
            serving: Mutex::new(Some(Serving {
                endpoint,
                poll,
                events: Events::with_capacity(16),
                pending: None,
                scratch,
                dispatch,
            })),
            local,
            transport: PhantomData,
        };
        log::info!("listening on {}", server.url());
        Ok(server)
    }

    /// Serves until [`shutdown`](ServerHandle::shutdown) is called (from a
    /// handler, another thread, or a signal through
    /// [`shutdown_on_ctrl_c`](Server::shutdown_on_ctrl_c)); then stops
    /// accepting at once, lets in-flight requests finish until the
    /// [`shutdown_timeout`](Options::shutdown_timeout), shuts the remaining
    /// connections down, joins the worker threads, and reports.
    ///
    /// A server serves once: after `serve_forever` returns, its socket is
    /// closed, and another call is an error.
    pub fn serve_forever(&self) -> io::Result<Summary> {
        let mut guard = self.lock_serving()?;
        let serving = guard.as_mut().ok_or_else(closed)?;
        let control = &self.shared.handle.0;
        let handler = &self.shared.handler;
        let mut failing = false;
        while !control.is_shutdown() {
            let wait = match serving.pump(&self.shared, false) {
                Ok(_) => {
                    if std::mem::take(&mut failing) {
                        log::warn!("{}: accepting again", self.url());
                    }
                    self.shared.options.poll_interval
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
                    ACCEPT_BACKOFF.min(self.shared.options.poll_interval)
                }
            };
            handler.service_actions();
            if control.is_shutdown() {
                break;
            }
            serving.wait(Some(wait))?;
        }
        let serving = guard.take().ok_or_else(closed)?;
        Ok(self.close(serving))
    }

    /// Waits for one request and dispatches it (Python's `handle_request`): a
    /// one-at-a-time server runs it before returning, a threading server hands
    /// it to the pool. If none arrives within the server's
    /// [`timeout`](Options::timeout), calls
    /// [`handle_timeout`](RequestHandler::handle_timeout) and returns.
    pub fn handle_request(&self) -> io::Result<()> {
        let mut guard = self.lock_serving()?;
        let serving = guard.as_mut().ok_or_else(closed)?;
        let control = &self.shared.handle.0;
        let deadline = self.shared.options.timeout.map(|t| Instant::now() + t);
        while !control.is_shutdown() {
            if serving.pump(&self.shared, true)? {
                return Ok(());
            }
            let remaining = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        self.shared.handler.handle_timeout();
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

impl<T: Transport, H, D: Dispatch> Server<T, H, D> {
    /// A handle to ask this server to shut down, or to read its counters,
    /// from any thread.
    pub fn handle(&self) -> ServerHandle {
        self.shared.handle.clone()
    }

    /// Asks the server to shut down; the same as
    /// [`ServerHandle::shutdown`]. Returns at once.
    pub fn shutdown(&self) {
        self.shared.handle.shutdown()
    }

    /// Shuts the server down on SIGINT (Ctrl-C) or SIGTERM; a second signal
    /// exits the process with status 130. See
    /// [`ServerHandle::shutdown_on_ctrl_c`].
    pub fn shutdown_on_ctrl_c(&self) -> io::Result<()> {
        self.shared.handle.shutdown_on_ctrl_c()
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> Stats {
        self.shared.handle.stats()
    }

    /// The handler this server calls.
    pub fn handler(&self) -> &H {
        &self.shared.handler
    }

    /// The address the server listens on, with the real port when bound to
    /// port 0.
    pub fn local_addr(&self) -> &Address {
        &self.local
    }

    /// The listening address as a URL: `tcp://127.0.0.1:9000`,
    /// `udp://[::1]:9002`, `unix:/run/app.sock`, `unixgram:/run/app.sock`.
    pub fn url(&self) -> String {
        match &self.local {
            Address::Inet(addr) => format!("{}://{addr}", T::SCHEME),
            Address::Unix(path) => format!(
                "{}:{}",
                T::SCHEME,
                path.as_deref().unwrap_or(Path::new("")).display()
            ),
        }
    }

    fn lock_serving(&self) -> io::Result<parking_lot::MutexGuard<'_, Option<Serving<D>>>> {
        self.serving.try_lock().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::ResourceBusy,
                "the server is already serving on another thread",
            )
        })
    }

    /// Stops accepting, drains, cuts at the deadline, joins; the end of
    /// `serve_forever` and of `drop`.
    fn close(&self, serving: Serving<D>) -> Summary {
        let started = Instant::now();
        let control = &self.shared.handle.0;
        control.begin_shutdown();
        let in_flight = control.in_flight_at_shutdown.load(SeqCst);
        let Serving {
            endpoint,
            poll,
            pending,
            mut dispatch,
            ..
        } = serving;
        // New connections are refused from here on.
        drop((pending, poll, endpoint));
        dispatch.close();
        let deadline = started + self.shared.options.shutdown_timeout;
        control.drain(deadline);
        let grace = Instant::now().max(deadline) + CUT_GRACE;
        if !dispatch.join(grace) || !control.wait_idle(grace) {
            log::error!(
                "some handlers ignored the shutdown deadline; leaving their threads behind"
            );
        }
        let stats = self.stats();
        let summary = Summary {
            served: stats.served,
            rejected: stats.rejected,
            dropped: stats.dropped,
            in_flight,
            cut: stats.cut,
            threads_left: stats.threads,
            elapsed: started.elapsed(),
        };
        log::info!("{} shut down: {summary}", self.url());
        summary
    }
}

impl<T: Transport, H, D: Dispatch> Drop for Server<T, H, D> {
    fn drop(&mut self) {
        if let Some(serving) = self.serving.get_mut().take() {
            self.close(serving);
        }
    }
}

impl<T: Transport, H, D: Dispatch> fmt::Debug for Server<T, H, D> {
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

impl<D: Dispatch> Serving<D> {
    /// Waits for an arrival, a wake-up, or `timeout`.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(e),
            _ => Ok(()),
        }
    }

    /// The next arrival, if one waits.
    fn receive(&mut self) -> io::Result<Option<Job>> {
        match &mut self.scratch {
            Some(scratch) => self.endpoint.receive(scratch),
            None => self.endpoint.accept(),
        }
    }

    /// Takes in what has arrived (one request at most when `once`), and
    /// dispatches it; true when it dispatched something. Stops when nothing
    /// waits, when the server is full (keeping the request for later), or at
    /// shutdown.
    fn pump<H, R>(&mut self, shared: &Shared<H>, once: bool) -> io::Result<bool>
    where
        H: RequestHandler<R>,
    {
        let control = &shared.handle.0;
        let counters = &control.counters;
        let mut dispatched = false;
        while !control.is_shutdown() {
            let job = match self.pending.take() {
                Some(job) => job,
                None => {
                    let Some(job) = self.receive()? else {
                        break;
                    };
                    if !shared.handler.verify_request(job.peer()) {
                        log::debug!("{}: refused by verify_request", job.peer());
                        Counters::bump(refusal_counter(counters, &job));
                        continue;
                    }
                    job
                }
            };
            let job = match self.admit(job, shared) {
                Ok(()) => {
                    dispatched = true;
                    if once {
                        break;
                    }
                    continue;
                }
                Err(job) => job,
            };
            if matches!(job, Job::Datagram { .. }) {
                log::debug!("{}: queue full, datagram dropped", job.peer());
                Counters::bump(&counters.dropped);
            } else if shared.options.reject_when_full {
                log::debug!("{}: server full, connection rejected", job.peer());
                Counters::bump(&counters.rejected);
            } else {
                self.pending = Some(job);
                // Announce the pause, then try once more: room freed in
                // between is not missed.
                if control.paused.swap(true, SeqCst) {
                    break;
                }
            }
        }
        Ok(dispatched)
    }

    /// Hands `job` to the dispatcher if the limits allow; gives it back if not.
    fn admit<H>(&mut self, job: Job, shared: &Shared<H>) -> Result<(), Job> {
        let control = &shared.handle.0;
        let in_flight = &control.counters.in_flight;
        if matches!(job, Job::Connection { .. })
            && in_flight.load(SeqCst) >= shared.options.max_connections
        {
            return Err(job);
        }
        in_flight.fetch_add(1, SeqCst);
        control.paused.store(false, SeqCst);
        self.dispatch.submit(job).inspect_err(|_| {
            in_flight.fetch_sub(1, SeqCst);
        })
    }
}

fn refusal_counter<'a>(counters: &'a Counters, job: &Job) -> &'a std::sync::atomic::AtomicU64 {
    match job {
        Job::Connection { .. } => &counters.rejected,
        Job::Datagram { .. } => &counters.dropped,
    }
}

impl<H> Shared<H> {
    /// Runs one admitted request through the handler, on whatever thread the
    /// dispatcher chose, and accounts for it.
    fn process<R>(&self, job: Job)
    where
        R: crate::transport::private::Request,
        H: RequestHandler<R>,
    {
        let control = &self.handle.0;
        let counters = &control.counters;
        if control.cancelled.load(SeqCst) {
            log::debug!("{}: dropped unstarted at the shutdown deadline", job.peer());
            Counters::bump(&counters.cut);
            drop(job);
            control.request_done();
            return;
        }
        counters.active.fetch_add(1, Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| self.run::<R>(job)));
        if let Err(panic) = outcome {
            log::error!("handle_error panicked: {}", panic_message(&panic));
        }
        counters.active.fetch_sub(1, Relaxed);
        Counters::bump(&counters.served);
        control.request_done();
    }

    fn run<R>(&self, job: Job)
    where
        R: crate::transport::private::Request,
        H: RequestHandler<R>,
    {
        let control = &self.handle.0;
        let counters = &control.counters;
        let handler = &self.handler;
        let peer_if_failed = job.peer().clone();
        let mut request = match R::from_job(job, &self.handle, &self.options) {
            Ok(request) => request,
            Err(e) => {
                Counters::bump(&counters.failed);
                handler.handle_error(&peer_if_failed, &e);
                return;
            }
        };
        let connection = request.connection();
        if let Some(fd) = connection {
            control.registry.insert(fd);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            handler.setup(&mut request)?;
            let handled = handler.handle(&mut request);
            let finished = handler.finish(&mut request);
            handled.and(finished)
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                Counters::bump(&counters.failed);
                handler.handle_error(request.peer(), &e);
            }
            Err(panic) => {
                Counters::bump(&counters.panicked);
                log::error!(
                    "{}: handler panicked: {}",
                    request.peer(),
                    panic_message(&panic)
                );
            }
        }
        if let Some(fd) = connection {
            control.registry.remove(fd);
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
