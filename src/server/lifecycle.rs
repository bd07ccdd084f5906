//! [`Lifecycle`]: what happens to one admitted connection or datagram,
//! whichever dispatcher runs it.
//!
//! For a connection: the stream layers (a PROXY header, TLS), then the
//! handler's `verify_request` with the peer they found, then `setup`,
//! `handle`, `finish`, with every error and panic reported and counted, and
//! the connection in the registry while it is open. For a datagram:
//! `setup`, `handle`, `finish` (its `verify_request` ran on the accept loop).

use std::any::Any;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::time::Instant;

use super::control::Control;
use super::control::ServerHandle;
use super::stats::Counters;
use crate::request::{DatagramRequest, MessageHandler, RequestHandler, StreamRequest};
use crate::transport::address::Address;
use crate::transport::listener::{Accepted, Datagram};

/// The handler of a server and the server it runs in: what every dispatcher
/// shares with its threads.
///
/// Public in name only (its module is private): dispatchers are sealed.
pub struct Lifecycle<H> {
    pub handler: H,
    server: ServerHandle,
}

/// A lifecycle that can serve arrivals of type `A`: connections for stream
/// handlers, datagrams for datagram handlers. What a dispatcher calls on the
/// thread it chose.
pub trait Serve<A> {
    /// Serves one admitted arrival to its end.
    fn serve(&self, arrival: A);
}

impl<H: RequestHandler<StreamRequest>> Serve<Accepted> for Lifecycle<H> {
    fn serve(&self, arrival: Accepted) {
        self.serve_connection(arrival)
    }
}

impl<H: RequestHandler<DatagramRequest>> Serve<Datagram> for Lifecycle<H> {
    fn serve(&self, arrival: Datagram) {
        self.serve_datagram(arrival)
    }
}

/// How one admitted arrival ended.
enum Outcome {
    /// The handler ran (successfully or not).
    Served,
    /// Turned away before the handler: a layer failed or `verify_request`
    /// said no.
    Refused,
}

impl<H> Lifecycle<H> {
    pub fn new(handler: H, server: ServerHandle) -> Self {
        Lifecycle { handler, server }
    }

    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    pub(crate) fn control(&self) -> &Control {
        &self.server.0
    }

    /// Serves an admitted connection to its end, on the calling thread.
    pub fn serve_connection(&self, accepted: Accepted)
    where
        H: RequestHandler<StreamRequest>,
    {
        self.account::<StreamRequest>(&accepted.peer.clone(), || {
            let Accepted { socket, peer } = accepted;
            let layers = &self.control().options.layers;
            let (io, peer, rest) = match layers.apply(socket, peer.clone()) {
                Ok(layered) => layered,
                Err(e) => {
                    log::debug!("{peer}: refused by a stream layer: {e}");
                    return Ok(Outcome::Refused);
                }
            };
            if !self.handler.verify_request(&peer) {
                log::debug!("{peer}: refused by verify_request");
                return Ok(Outcome::Refused);
            }
            let mut request = StreamRequest::new(io, peer, rest, self.server.clone(), true)?;
            self.run(&mut request)?;
            Ok(Outcome::Served)
        });
    }

    /// Serves an admitted datagram, on the calling thread.
    pub fn serve_datagram(&self, datagram: Datagram)
    where
        H: RequestHandler<DatagramRequest>,
    {
        self.account::<DatagramRequest>(&datagram.peer.clone(), || {
            let mut request = DatagramRequest::new(datagram, self.server.clone());
            self.run(&mut request).map(|()| Outcome::Served)
        });
    }

    /// Runs one message's handler call (for dispatchers that call handlers
    /// per message): counted active while it runs and served after, timed
    /// into the request-duration histogram, its error given to
    /// `handle_error`, its panic caught and logged. `None` when it failed or
    /// panicked: the connection must close.
    pub fn run_message<T>(&self, peer: &Address, call: impl FnOnce() -> io::Result<T>) -> Option<T>
    where
        H: MessageHandler,
    {
        let counters = &self.control().counters;
        counters.active.fetch_add(1, Relaxed);
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(call));
        counters.durations.observe(started.elapsed());
        counters.active.fetch_sub(1, Relaxed);
        Counters::bump(&counters.served);
        match outcome {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                Counters::bump(&counters.failed);
                self.handler.handle_error(peer, &e);
                None
            }
            Err(panic) => {
                Counters::bump(&counters.panicked);
                log::error!("{peer}: handler panicked: {}", panic_message(&*panic));
                None
            }
        }
    }

    /// `setup`, `handle` and `finish`: `finish` runs when `setup` succeeded,
    /// whatever `handle` did.
    fn run<R>(&self, request: &mut R) -> io::Result<()>
    where
        H: RequestHandler<R>,
    {
        self.handler.setup(request)?;
        let handled = self.handler.handle(request);
        let finished = self.handler.finish(request);
        handled.and(finished)
    }

    /// Runs `work` for an admitted arrival from `peer` and accounts for it:
    /// dropped unstarted after the shutdown deadline, counted while active,
    /// timed into the request-duration histogram when served, its error
    /// given to `handle_error`, its panic caught and logged.
    fn account<R>(&self, peer: &Address, work: impl FnOnce() -> io::Result<Outcome>)
    where
        H: RequestHandler<R>,
    {
        let control = self.control();
        let counters = &control.counters;
        if control.cancelled.load(SeqCst) {
            log::debug!("{peer}: dropped unstarted at the shutdown deadline");
            Counters::bump(&counters.cut);
            control.request_done();
            return;
        }
        counters.active.fetch_add(1, Relaxed);
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| match work() {
            Ok(outcome) => outcome,
            Err(e) => {
                Counters::bump(&counters.failed);
                self.handler.handle_error(peer, &e);
                Outcome::Served
            }
        }));
        match outcome {
            Ok(Outcome::Served) => {
                counters.durations.observe(started.elapsed());
                Counters::bump(&counters.served);
            }
            Ok(Outcome::Refused) => Counters::bump(&counters.rejected),
            Err(panic) => {
                counters.durations.observe(started.elapsed());
                Counters::bump(&counters.panicked);
                Counters::bump(&counters.served);
                log::error!("{peer}: handler panicked: {}", panic_message(&*panic));
            }
        }
        counters.active.fetch_sub(1, Relaxed);
        control.request_done();
    }
}

/// The text of a panic's payload.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
