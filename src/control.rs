//! [`ServerHandle`]: the shared control block of a running server.

use std::fmt;
use std::io;
use std::sync::atomic::{
    fence, AtomicBool, AtomicUsize,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::pool::Gauges;
use crate::registry::Registry;
use crate::stats::{Counters, Stats};

/// A cloneable handle to a server, for any thread, a handler's own included:
/// ask it to shut down, or read its counters.
///
/// [`shutdown`](ServerHandle::shutdown) only asks: it returns at once, so it
/// cannot deadlock even when called from inside a handler (Python's
/// `shutdown()` waits for `serve_forever` and would hang there). The server's
/// [`serve_forever`](crate::Server::serve_forever) returns when the shutdown is
/// done.
#[derive(Clone)]
pub struct ServerHandle(pub(crate) Arc<Control>);

/// What a server shares between its accept loop, its workers and its handles.
pub struct Control {
    pub(crate) shutdown: AtomicBool,
    /// Requests in flight when the shutdown began.
    pub(crate) in_flight_at_shutdown: AtomicUsize,
    /// Set at the shutdown deadline: queued work is dropped unstarted.
    pub(crate) cancelled: AtomicBool,
    /// Set while the accept loop waits for room in the pool or under the
    /// connection cap; whoever frees room then wakes it.
    pub(crate) paused: AtomicBool,
    pub(crate) waker: mio::Waker,
    pub(crate) counters: Counters,
    pub(crate) gauges: Arc<Gauges>,
    pub(crate) registry: Registry,
    pub(crate) shutdown_timeout: Duration,
    /// A one-at-a-time server runs its request on the accept loop's thread,
    /// so a shutdown from elsewhere needs a watchdog to enforce the deadline.
    pub(crate) needs_watchdog: bool,
    idle: Mutex<()>,
    idle_cv: Condvar,
}

impl Control {
    pub(crate) fn new(
        waker: mio::Waker,
        gauges: Arc<Gauges>,
        shutdown_timeout: Duration,
        needs_watchdog: bool,
    ) -> Self {
        Control {
            shutdown: AtomicBool::new(false),
            in_flight_at_shutdown: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            waker,
            counters: Counters::default(),
            gauges,
            registry: Registry::default(),
            shutdown_timeout,
            needs_watchdog,
            idle: Mutex::new(()),
            idle_cv: Condvar::new(),
        }
    }

    /// Marks the shutdown and wakes the accept loop; false when it was
    /// already marked.
    pub(crate) fn begin_shutdown(&self) -> bool {
        if self.shutdown.swap(true, SeqCst) {
            return false;
        }
        self.in_flight_at_shutdown
            .store(self.counters.in_flight.load(SeqCst), SeqCst);
        self.wake();
        true
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Relaxed)
    }

    /// Wakes the accept loop if it waits for room.
    pub(crate) fn announce_room(&self) {
        if self.paused.load(SeqCst) {
            self.wake();
        }
    }

    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            log::error!("cannot wake the accept loop: {e}");
        }
    }

    /// Called when an admitted request is over, served or not.
    pub(crate) fn request_done(&self) {
        let left = self.counters.in_flight.fetch_sub(1, SeqCst) - 1;
        fence(SeqCst);
        self.announce_room();
        if left == 0 && self.is_shutdown() {
            let _guard = self.idle.lock();
            self.idle_cv.notify_all();
        }
    }

    /// Waits until no request is in flight, or `deadline` passes; then cuts
    /// what is left: running connections are shut down, queued work is
    /// dropped. Returns how many connections it shut down.
    pub(crate) fn drain(&self, deadline: Instant) -> usize {
        if self.wait_idle(deadline) {
            return 0;
        }
        self.cancelled.store(true, SeqCst);
        let cut = self.registry.cut_all();
        self.counters.cut.fetch_add(cut as u64, SeqCst);
        log::warn!("shutdown deadline passed: cut {cut} connection(s) still in progress");
        cut
    }

    /// Waits until no request is in flight, or `deadline` passes; true when
    /// none is.
    pub(crate) fn wait_idle(&self, deadline: Instant) -> bool {
        let mut guard = self.idle.lock();
        while self.counters.in_flight.load(SeqCst) > 0 {
            if self.idle_cv.wait_until(&mut guard, deadline).timed_out() {
                return self.counters.in_flight.load(SeqCst) == 0;
            }
        }
        true
    }
}

impl ServerHandle {
    /// Asks the server to shut down, from any thread; returns at once and may
    /// be called any number of times. The server stops accepting at once,
    /// closes its listening socket, lets in-flight requests finish until its
    /// [`shutdown_timeout`](crate::Options::shutdown_timeout), then shuts the
    /// rest down.
    pub fn shutdown(&self) {
        let control = &self.0;
        if !control.begin_shutdown() {
            return;
        }
        if control.needs_watchdog && control.counters.in_flight.load(SeqCst) > 0 {
            let watched = Arc::clone(control);
            let deadline = Instant::now() + control.shutdown_timeout;
            let spawned = std::thread::Builder::new()
                .name("socketserver-deadline".into())
                .spawn(move || watched.drain(deadline));
            if let Err(e) = spawned {
                log::error!("cannot start the shutdown deadline watchdog: {e}");
            }
        }
    }

    /// True once [`shutdown`](ServerHandle::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.0.is_shutdown()
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> Stats {
        let gauges = &self.0.gauges;
        self.0
            .counters
            .snapshot(gauges.threads.load(Relaxed), gauges.idle.load(Relaxed))
    }

    /// Shuts the server down on SIGINT (Ctrl-C) or SIGTERM. A second signal
    /// exits the process at once with status 130. Any number of servers may
    /// register; one signal shuts them all down.
    pub fn shutdown_on_ctrl_c(&self) -> io::Result<()> {
        crate::signal::shutdown_on_signal(self.clone())
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
