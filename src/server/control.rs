//! [`ServerHandle`]: the shared control block of a running server, and the
//! shutdown it announces.

use std::fmt;
use std::io;
use std::sync::atomic::{
    fence, AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst,
};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::flusher::Flusher;
use super::readiness::Readiness;
use super::registry::Registry;
use super::stats::{Counters, Gauges, Metrics, Stats};
use crate::server::options::Options;
use crate::transport::Listener;

/// A cloneable handle to a server, for any thread, a handler's own included:
/// ask it to shut down (at once, or after its drain delay), wait for its
/// shutdown, read its counters, metrics, readiness and options.
///
/// [`shutdown`](ServerHandle::shutdown) only asks: it returns at once, so it
/// cannot deadlock even when called from inside a handler (Python's
/// `shutdown()` waits for `serve_forever` and would hang there). The server's
/// [`serve_forever`](crate::Server::serve_forever) returns when the shutdown is
/// done.
#[derive(Clone)]
pub struct ServerHandle(pub(crate) Arc<Control>);

/// What a server shares between its accept loop, its workers and its handles.
pub(crate) struct Control {
    shutdown: AtomicBool,
    /// Requests in flight when the shutdown began.
    pub in_flight_at_shutdown: AtomicUsize,
    /// What the shutdown waits for: the requests in flight when it began,
    /// less the idle connections it closed at once (a reactor's idle
    /// connections, which its loops close, are still counted: its loops'
    /// own count is the [`census`](Self::census)).
    pub waiting_at_shutdown: AtomicUsize,
    /// What a reactor's event loops left waiting at the shutdown.
    pub census: Census,
    /// Set at the shutdown deadline: queued work is dropped unstarted.
    pub cancelled: AtomicBool,
    /// Set while the accept loop waits for room in the pool or under the
    /// connection cap; whoever frees room then wakes it.
    pub paused: AtomicBool,
    /// Set while `handle_request` waits for a datagram that the dispatcher
    /// receives itself; the dispatcher then says when one came.
    watching: AtomicBool,
    /// Something arrived while `watching`.
    arrived: AtomicBool,
    waker: mio::Waker,
    pub counters: Counters,
    pub gauges: Arc<Gauges>,
    pub registry: Registry,
    pub options: Options,
    /// A one-at-a-time server runs its request on the accept loop's thread,
    /// so a shutdown from elsewhere needs a watchdog to enforce the deadline.
    needs_watchdog: bool,
    /// Notified when the last request is done during a shutdown, and when a
    /// shutdown begins.
    changed: Mutex<()>,
    changed_cv: Condvar,
    /// The threads mode's writer of last resort, started when first needed.
    flusher: OnceLock<Arc<Flusher>>,
    /// What kind of server this is, for its metrics.
    kind: ServerKind,
    /// When a drain asked for began: the shutdown is due then.
    shutdown_at: Mutex<Option<Instant>>,
    /// A datagram server's socket, to ask the kernel what it dropped; weak,
    /// so that closing the server closes it.
    datagram_socket: OnceLock<Weak<Listener>>,
    /// The kernel's drop count last read from it.
    dropped_by_kernel: AtomicU64,
}

/// How long to wait before accepting again after the system refused (for
/// instance, out of file descriptors): long enough not to spin a core. The
/// accept loop's and the reactor's own listeners' backoff.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a server that stops accepting at `max_connections` logs, with
/// `open` connections open: the accept loop's and the reactor's own
/// listeners' words.
pub(crate) fn full_of_connections(open: usize) -> String {
    format!(
        "full: {open} connections open, the most allowed (max connections): \
         not accepting until one closes; new clients wait in the listen backlog"
    )
}

/// What a [`Control`] knows of its server beyond its options.
#[derive(Debug, Clone)]
pub(crate) struct ServerKind {
    /// Its URL, as its `listening on` line shows it.
    pub url: String,
    /// A stream server: its arrivals are connections.
    pub stream: bool,
    /// Its dispatcher handles a connection's messages one call at a time
    /// (the reactor): a request is a message, not a connection.
    pub per_message: bool,
    /// Its dispatcher runs requests on the serving thread.
    pub runs_on_serving_thread: bool,
}

/// How long past the shutdown deadline a reactor's loops may take to cut
/// what they hold, before the count of what was cut is said.
const LOOPS_CUT_GRACE: Duration = Duration::from_secs(1);

/// The connections a reactor's event loops leave waiting when the shutdown
/// reaches them (a message or a reply in progress; the idle ones they close
/// at once), which the first signal's announcement waits for briefly: only
/// the loops know which of their connections are idle.
#[derive(Default)]
pub(crate) struct Census {
    state: Mutex<CensusState>,
    reported: Condvar,
}

#[derive(Default)]
struct CensusState {
    /// Event loops that will report; 0 for a server without them.
    loops: usize,
    /// Event loops that have.
    reported: usize,
    /// What they reported, summed.
    waiting: usize,
}

impl Census {
    /// `loops` event loops will report at the shutdown.
    pub fn expect(&self, loops: usize) {
        self.state.lock().loops = loops;
    }

    /// An event loop's count, once the shutdown reached it.
    pub fn report(&self, waiting: usize) {
        let mut state = self.state.lock();
        state.reported += 1;
        state.waiting += waiting;
        if state.reported >= state.loops {
            self.reported.notify_all();
        }
    }

    /// The connections left waiting, once every loop has reported; `None`
    /// for a server without loops, or when one has not reported by `limit`.
    pub fn waiting(&self, limit: Instant) -> Option<usize> {
        let mut state = self.state.lock();
        if state.loops == 0 {
            return None;
        }
        while state.reported < state.loops {
            if self.reported.wait_until(&mut state, limit).timed_out() {
                return None;
            }
        }
        Some(state.waiting)
    }
}

impl Control {
    pub fn new(waker: mio::Waker, options: Options, kind: ServerKind) -> Self {
        let needs_watchdog = kind.runs_on_serving_thread;
        Control {
            shutdown: AtomicBool::new(false),
            in_flight_at_shutdown: AtomicUsize::new(0),
            waiting_at_shutdown: AtomicUsize::new(0),
            census: Census::default(),
            cancelled: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            watching: AtomicBool::new(false),
            arrived: AtomicBool::new(false),
            waker,
            counters: Counters::default(),
            gauges: Arc::default(),
            registry: Registry::default(),
            options,
            needs_watchdog,
            changed: Mutex::new(()),
            changed_cv: Condvar::new(),
            flusher: OnceLock::new(),
            kind,
            shutdown_at: Mutex::new(None),
            datagram_socket: OnceLock::new(),
            dropped_by_kernel: AtomicU64::new(0),
        }
    }

    /// Remembers a datagram server's socket, whose kernel drop count
    /// [`dropped_by_kernel`](Self::dropped_by_kernel) reads.
    pub fn watch_kernel_drops(&self, socket: &Arc<Listener>) {
        let _ = self.datagram_socket.set(Arc::downgrade(socket));
    }

    /// Datagrams the kernel dropped from the server's full receive buffer
    /// so far: read from the socket while it is open, the last count read
    /// once it is closed.
    pub fn dropped_by_kernel(&self) -> u64 {
        let socket = self.datagram_socket.get().and_then(Weak::upgrade);
        if let Some(dropped) = socket.and_then(|socket| socket.kernel_drops()) {
            self.dropped_by_kernel.fetch_max(dropped, SeqCst);
        }
        self.dropped_by_kernel.load(SeqCst)
    }

    /// Marks the shutdown, turns the readiness to draining, closes the idle
    /// connections, and wakes the accept loop and every waiter; false when
    /// it was already marked.
    pub fn begin_shutdown(&self) -> bool {
        if self.shutdown.swap(true, SeqCst) {
            return false;
        }
        self.options.readiness.drain();
        let in_flight = self.counters.in_flight.load(SeqCst);
        self.in_flight_at_shutdown.store(in_flight, SeqCst);
        let closed = self.registry.cut_idle();
        self.waiting_at_shutdown
            .store(in_flight.saturating_sub(closed), SeqCst);
        if closed > 0 {
            log::debug!("shutdown: closed {closed} idle connection(s)");
        }
        self.wake();
        let _guard = self.changed.lock();
        self.changed_cv.notify_all();
        true
    }

    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(SeqCst)
    }

    /// When a drain asked for the shutdown to begin, if one did.
    pub fn shutdown_due(&self) -> Option<Instant> {
        *self.shutdown_at.lock()
    }

    /// The server's metrics now.
    pub fn metrics(&self) -> Metrics {
        let counters = &self.counters;
        let stats = counters.snapshot(&self.gauges, self.kind.per_message);
        let in_flight = counters.in_flight.load(SeqCst);
        Metrics {
            url: self.kind.url.clone(),
            stats,
            connections_open: if self.kind.stream { in_flight } else { 0 },
            requests_in_flight: if self.kind.per_message {
                stats.active
            } else {
                in_flight
            },
            durations: counters.durations.snapshot(),
            dropped_by_kernel: self.dropped_by_kernel(),
        }
    }

    /// Counters and gauges now.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot(&self.gauges, self.kind.per_message)
    }

    /// The server's [`Flusher`], started on first use.
    pub fn flusher(&self) -> io::Result<Arc<Flusher>> {
        if let Some(flusher) = self.flusher.get() {
            return Ok(Arc::clone(flusher));
        }
        let started = Flusher::start()?;
        match self.flusher.set(Arc::clone(&started)) {
            Ok(()) => Ok(started),
            Err(_) => {
                started.stop();
                Ok(Arc::clone(self.flusher.get().expect("set by the winner")))
            }
        }
    }

    /// Stops the flusher, if it was started: the end of the server.
    pub fn stop_flusher(&self) {
        if let Some(flusher) = self.flusher.get() {
            flusher.stop();
        }
    }

    /// Wakes the accept loop if it waits for room.
    pub fn announce_room(&self) {
        if self.paused.load(SeqCst) {
            self.wake();
        }
    }

    /// Starts (or stops) watching for arrivals that a dispatcher receives
    /// itself, forgetting those before.
    pub fn watch_arrivals(&self, on: bool) {
        self.arrived.store(false, SeqCst);
        self.watching.store(on, SeqCst);
    }

    /// Called by a dispatcher that receives itself, after each receive:
    /// wakes the accept loop if it watches for arrivals.
    pub fn note_arrival(&self) {
        if self.watching.load(Relaxed) && !self.arrived.swap(true, SeqCst) {
            self.wake();
        }
    }

    /// True if something arrived since watching began or since the last
    /// call.
    pub fn take_arrival(&self) -> bool {
        self.arrived.swap(false, SeqCst)
    }

    /// The server's URL, as its `listening on` line shows it.
    pub fn url(&self) -> &str {
        &self.kind.url
    }

    pub fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the accept loop: {e}");
        }
    }

    /// Called when an admitted request is over, served or not.
    pub fn request_done(&self) {
        let left = self.counters.in_flight.fetch_sub(1, SeqCst) - 1;
        fence(SeqCst);
        self.announce_room();
        if left == 0 && self.is_shutdown() {
            let _guard = self.changed.lock();
            self.changed_cv.notify_all();
        }
    }

    /// Waits until no request is in flight, or `deadline` passes; then cuts
    /// what is left: running connections are shut down, queued work is
    /// dropped (a reactor's loops cut their own). Says, and returns, how
    /// many were cut meanwhile.
    pub fn drain(&self, deadline: Instant) -> usize {
        let cut_before = self.counters.cut.load(SeqCst);
        if !self.wait_idle(deadline) {
            self.cancelled.store(true, SeqCst);
            let cut = self.registry.cut_all();
            self.counters.cut.fetch_add(cut as u64, SeqCst);
            if self.kind.per_message {
                // A reactor's loops cut their own connections at their own
                // deadline, about now.
                self.wait_idle(crate::deadline::later(Instant::now(), LOOPS_CUT_GRACE));
            }
        }
        // Cut here, or by a reactor's loops.
        let cut = self.counters.cut.load(SeqCst).saturating_sub(cut_before);
        if cut > 0 {
            log::warn!(
                "{}: shutdown deadline passed: cut {cut} connection(s) still in progress",
                self.url()
            );
        }
        usize::try_from(cut).unwrap_or(usize::MAX)
    }

    /// Waits until no request is in flight, or `deadline` passes; true when
    /// none is.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let mut guard = self.changed.lock();
        while self.counters.in_flight.load(SeqCst) > 0 {
            if self.changed_cv.wait_until(&mut guard, deadline).timed_out() {
                return self.counters.in_flight.load(SeqCst) == 0;
            }
        }
        true
    }
}

impl ServerHandle {
    /// Asks the server to shut down, from any thread; returns at once and may
    /// be called any number of times. The server stops accepting at once,
    /// closes its listening socket and its idle connections, lets in-flight
    /// requests finish until its
    /// [`shutdown_timeout`](crate::Options::shutdown_timeout), then shuts the
    /// rest down.
    pub fn shutdown(&self) {
        let control = &self.0;
        if !control.begin_shutdown() {
            return;
        }
        if control.needs_watchdog && control.counters.in_flight.load(SeqCst) > 0 {
            let watched = Arc::clone(control);
            let deadline = crate::deadline::after(control.options.shutdown_timeout);
            let spawned = std::thread::Builder::new()
                .name("socketserver-deadline".into())
                .spawn(move || watched.drain(deadline));
            if let Err(e) = spawned {
                log::error!("cannot start the shutdown deadline watchdog: {e}");
            }
        }
    }

    /// A graceful stop for a load balancer's sake: turns the server's
    /// [`Readiness`] to draining at once (running its hooks: `/readyz` 503,
    /// the agent check `drain`, systemd's `STOPPING=1`), keeps accepting and
    /// serving for the [`drain_delay`](crate::Options::drain_delay), then
    /// [shuts down](ServerHandle::shutdown). With no delay it is `shutdown`
    /// itself. Returns at once; calling it again, or `shutdown` meanwhile, is
    /// harmless (the earlier deadline wins).
    pub fn drain(&self) {
        let control = &self.0;
        control.options.readiness.drain();
        let delay = control.options.drain_delay;
        if delay.is_zero() {
            self.shutdown();
            return;
        }
        {
            let mut due = control.shutdown_at.lock();
            if due.is_none() {
                *due = Some(crate::deadline::after(delay));
            }
        }
        // The serving loop reads the deadline and waits no longer than it.
        control.wake();
    }

    /// True once [`shutdown`](ServerHandle::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.0.is_shutdown()
    }

    /// True while the server's [`Readiness`] says it takes new clients:
    /// false from a [`drain`](ServerHandle::drain) or a shutdown on.
    pub fn is_ready(&self) -> bool {
        self.0.options.readiness.is_ready()
    }

    /// The [`Readiness`] the server reports through (shared with the
    /// servers bound with clones of its options).
    pub fn readiness(&self) -> &Readiness {
        &self.0.options.readiness
    }

    /// The server's URL: `tcp://127.0.0.1:9000`, `unix:/run/app.sock`.
    pub fn url(&self) -> &str {
        &self.0.kind.url
    }

    /// Its counters, gauges and request-duration histogram now, for a
    /// monitoring system ([`ops::metrics`](crate::ops) writes them in the
    /// Prometheus format). Reading them takes no lock and costs the server
    /// nothing.
    pub fn metrics(&self) -> Metrics {
        self.0.metrics()
    }

    /// Waits until a shutdown begins, or `timeout` passes (`None`: for
    /// ever); true when the server is shutting down. A thread of a handler's
    /// own (a timer, a writer) waits here instead of polling
    /// [`is_shutdown`](ServerHandle::is_shutdown).
    pub fn wait_for_shutdown(&self, timeout: Option<Duration>) -> bool {
        let control = &self.0;
        let deadline = timeout.map(crate::deadline::after);
        let mut guard = control.changed.lock();
        while !control.is_shutdown() {
            match deadline {
                Some(deadline) => {
                    if control
                        .changed_cv
                        .wait_until(&mut guard, deadline)
                        .timed_out()
                    {
                        return control.is_shutdown();
                    }
                }
                None => control.changed_cv.wait(&mut guard),
            }
        }
        true
    }

    /// The options the server runs with.
    pub fn options(&self) -> &Options {
        &self.0.options
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> Stats {
        self.0.stats()
    }

    /// Shuts the server down on SIGINT (Ctrl-C), SIGTERM or SIGHUP (a hang-up
    /// is a request to stop: a server has nothing to reload). The first
    /// signal [drains](ServerHandle::drain) it (readiness off at once, the
    /// shutdown after the [`drain_delay`](crate::Options::drain_delay), at
    /// once by default) and is announced at warn through `log` (`shutting
    /// down: waiting up to 10 s for 1 connection (Ctrl-C again to stop
    /// now)`). A signal more than 100 ms after the first exits the process at
    /// once with status 130; signals within 100 ms of the first are the first
    /// one again (GNU `timeout` signals the process and then its process
    /// group). Any number of servers may register; one signal drains them all.
    pub fn shutdown_on_ctrl_c(&self) -> io::Result<()> {
        super::signal::shutdown_on_signal(self.clone())
    }
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("shutdown", &self.is_shutdown())
            .field("stats", &self.stats())
            .finish()
    }
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("shutdown", &self.is_shutdown())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_census_sums_every_loop_or_says_it_does_not_know() {
        let soon = || Instant::now() + Duration::from_millis(50);
        // No loops: the caller's own count stands.
        assert_eq!(Census::default().waiting(soon()), None);

        let census = Arc::new(Census::default());
        census.expect(2);
        census.report(3);
        // One loop of two has not answered by the limit.
        assert_eq!(census.waiting(soon()), None);
        // The other answers from another thread while the caller waits.
        let other = Arc::clone(&census);
        let reporting = std::thread::spawn(move || other.report(1));
        assert_eq!(
            census.waiting(Instant::now() + Duration::from_secs(10)),
            Some(4)
        );
        reporting.join().unwrap();
    }
}
