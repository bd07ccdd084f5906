//! The accept loop's state: the listening socket, its poll, and admission of
//! what arrives under the server's limits.

use std::io;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};

use super::control::Control;
use super::stats::{Counters, Summary};
use super::LISTENER;
use crate::deadline::later;
use crate::dispatch::private::Running;
use crate::transport::private::Arrival;
use crate::transport::{Listener, Scratch, Transport};

/// How long cut connections get to unwind before `serve_forever` gives up on
/// their threads.
const CUT_GRACE: Duration = Duration::from_secs(2);

/// What only the serving thread touches: the listening socket and its poll,
/// and the running dispatcher. Dropping it closes the server (the end of
/// `serve_forever`, or of a server dropped unserved).
pub(crate) struct Serving<T: Transport> {
    /// `None` once closed; datagram requests in flight may still hold it to
    /// reply.
    listener: Option<Arc<Listener>>,
    poll: Poll,
    events: Events,
    /// An accepted connection that waits for room.
    pending: Option<T::Arrival>,
    /// The receive buffer of a datagram server, made when first needed.
    scratch: Scratch,
    dispatch: Box<dyn Running<T>>,
    control: Arc<Control>,
    url: String,
    closed: bool,
    /// Serving has begun: the dispatcher was told, and the listener is
    /// watched by the poll unless the dispatcher receives itself.
    begun: bool,
    /// The dispatcher receives on the listener itself.
    receives: bool,
    /// When the server stopped accepting because it was full: said once at
    /// warn, and once more when it accepts again.
    full_since: Option<Instant>,
}

impl<T: Transport> Serving<T> {
    pub fn new(
        listener: Arc<Listener>,
        poll: Poll,
        dispatch: Box<dyn Running<T>>,
        control: Arc<Control>,
        url: String,
    ) -> Self {
        Serving {
            listener: Some(listener),
            poll,
            events: Events::with_capacity(16),
            pending: None,
            scratch: Scratch::default(),
            dispatch,
            control,
            url,
            closed: false,
            begun: false,
            receives: false,
            full_since: None,
        }
    }

    /// Begins serving, once: tells the dispatcher, and watches the listener
    /// for arrivals unless the dispatcher receives on it itself.
    pub fn begin(&mut self) -> io::Result<()> {
        if self.begun {
            return Ok(());
        }
        self.receives = self.dispatch.begin();
        if !self.receives {
            if let Some(listener) = &self.listener {
                self.poll.registry().register(
                    &mut SourceFd(&listener.socket.as_raw_fd()),
                    LISTENER,
                    Interest::READABLE,
                )?;
            }
        }
        self.begun = true;
        Ok(())
    }

    /// While `on`, a dispatcher that receives itself wakes the accept loop
    /// when something arrives (for `handle_request`, which waits for one).
    pub fn watch_arrivals(&self, on: bool) {
        if self.receives {
            self.control.watch_arrivals(on);
        }
    }

    /// Waits for an arrival, a wake-up, or `timeout`.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => Err(e),
            _ => Ok(()),
        }
    }

    /// Takes in what has arrived (one arrival at most when `once`), and
    /// dispatches it; true when it dispatched something. Stops when nothing
    /// waits, when the server is full (keeping a connection for later), or at
    /// shutdown. `verify` judges datagrams here; connections are judged on
    /// their worker, after their stream layers.
    pub fn pump(
        &mut self,
        verify: impl Fn(&crate::transport::address::Address) -> bool,
        once: bool,
    ) -> io::Result<bool> {
        let control = Arc::clone(&self.control);
        if self.receives {
            // The dispatcher's own threads receive and admit; room freed
            // while they were full is theirs to take.
            if control.paused.swap(false, SeqCst) {
                self.dispatch.room();
            }
            return Ok(control.take_arrival());
        }
        if !T::SCHEME.is_stream() && self.scratch.is_empty() {
            self.scratch = Listener::scratch();
        }
        let counters = &control.counters;
        let mut dispatched = false;
        while !control.is_shutdown() {
            let arrival = match self.pending.take() {
                Some(arrival) => arrival,
                None => {
                    let Some(listener) = &self.listener else {
                        break;
                    };
                    let Some(arrival) = T::receive(listener, &mut self.scratch)? else {
                        break;
                    };
                    if let Some(size) = arrival.oversized() {
                        counters.drop_oversized(arrival.peer(), size);
                        continue;
                    }
                    if !T::Arrival::IS_CONNECTION && !verify(arrival.peer()) {
                        log::debug!("{}: refused by verify_request", arrival.peer());
                        Counters::bump(&counters.dropped);
                        continue;
                    }
                    arrival
                }
            };
            let arrival = match self.admit(arrival) {
                Ok(()) => {
                    dispatched = true;
                    if let Some(since) = self.full_since.take() {
                        log::warn!(
                            "{}: accepting again after {} ms full",
                            self.url,
                            since.elapsed().as_millis()
                        );
                    }
                    if once {
                        break;
                    }
                    continue;
                }
                Err(arrival) => arrival,
            };
            if !T::Arrival::IS_CONNECTION {
                log::debug!("{}: queue full, datagram dropped", arrival.peer());
                Counters::bump(&counters.dropped);
            } else if control.options.reject_when_full {
                log::debug!("{}: server full, connection rejected", arrival.peer());
                Counters::bump(&counters.rejected);
            } else {
                self.pending = Some(arrival);
                // Announce the pause, then try once more: room freed in
                // between is not missed. The second time round, stop.
                if control.paused.swap(true, SeqCst) {
                    if self.full_since.is_none() {
                        self.full_since = Some(Instant::now());
                        log::warn!("{}: {}", self.url, self.full_reason());
                    }
                    break;
                }
            }
        }
        Ok(dispatched)
    }

    /// Why the server stopped accepting: which limit is full.
    fn full_reason(&self) -> String {
        let options = &self.control.options;
        let open = self.control.counters.in_flight.load(SeqCst);
        if open >= options.max_connections {
            super::control::full_of_connections(open)
        } else {
            format!(
                "full: every worker thread busy and the queue of {} full ({open} connections \
                 open): not accepting until a thread frees; new clients wait in the listen backlog",
                options.queue
            )
        }
    }

    /// Hands `arrival` to the dispatcher if the limits allow; gives it back
    /// if not.
    fn admit(&mut self, arrival: T::Arrival) -> Result<(), T::Arrival> {
        let control = &self.control;
        let in_flight = &control.counters.in_flight;
        if T::Arrival::IS_CONNECTION && in_flight.load(SeqCst) >= control.options.max_connections {
            return Err(arrival);
        }
        in_flight.fetch_add(1, SeqCst);
        match self.dispatch.submit(arrival) {
            Ok(()) => {
                control.paused.store(false, SeqCst);
                Ok(())
            }
            Err(arrival) => {
                in_flight.fetch_sub(1, SeqCst);
                Err(arrival)
            }
        }
    }

    /// Stops accepting, drains, cuts at the deadline, joins.
    pub fn close(mut self) -> Summary {
        self.shut()
    }

    fn shut(&mut self) -> Summary {
        self.closed = true;
        let started = Instant::now();
        let control = &self.control;
        control.begin_shutdown();
        let in_flight = control.in_flight_at_shutdown.load(SeqCst);
        // New connections are refused from here on: the listening socket
        // closes, and a connection that waited for room with it.
        self.pending = None;
        // The kernel's count is read while the socket is still open.
        let dropped_by_kernel = control.dropped_by_kernel();
        // The socket file goes now, not when the last reply in flight lets
        // go of the socket.
        if let Some(listener) = &self.listener {
            listener.remove_socket_file();
        }
        self.listener = None;
        self.dispatch.close();
        // A signal that began it has said so before anything is reported
        // (told only now: a reactor's loops, just told, take part in it).
        super::signal::announced();
        let deadline = crate::deadline::after(control.options.shutdown_timeout);
        control.drain(deadline);
        let grace = later(Instant::now().max(deadline), CUT_GRACE);
        if !self.dispatch.join(grace) || !control.wait_idle(grace) {
            log::error!(
                "some handlers ignored the shutdown deadline; leaving their threads behind"
            );
        }
        control.stop_flusher();
        let stats = control.stats();
        let summary = Summary {
            served: stats.served,
            failed: stats.failed,
            panicked: stats.panicked,
            rejected: stats.rejected,
            dropped: stats.dropped,
            dropped_by_kernel,
            in_flight,
            cut: stats.cut,
            threads_left: stats.threads,
            elapsed: started.elapsed(),
        };
        log::info!("{} shut down: {summary}", self.url);
        summary
    }
}

impl<T: Transport> Drop for Serving<T> {
    fn drop(&mut self) {
        if !self.closed {
            self.shut();
        }
    }
}
