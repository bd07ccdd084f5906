//! Dispatchers: how a server runs what arrives. One at a time on the
//! serving thread ([`Synchronous`]), or on the elastic thread pool
//! ([`Threading`]).
//!
//! A dispatcher is the third type parameter of [`Server`](crate::Server), a
//! marker like the transports: `Server<Tcp, H, Threading>` is a
//! [`ThreadingTcpServer`](crate::ThreadingTcpServer). The server's accept
//! loop admits each arrival under the limits and hands it to the running
//! dispatcher; the dispatcher decides on which thread the
//! [lifecycle](crate::server) of that connection or datagram runs, and which
//! kind of handler it takes. A new way of running requests is one more
//! dispatcher: nothing in [`Server`](crate::Server) changes.

use std::io;
use std::sync::Arc;
use std::time::Instant;

mod limit;
mod pool;
mod reactor;
mod synchronous;
mod threading;

pub use limit::{ThreadLimit, ThreadsError};
pub(crate) use pool::{Pool, PoolConfig};
pub use reactor::Reactor;
pub use synchronous::Synchronous;
pub use threading::Threading;

use crate::server::lifecycle::Lifecycle;
use crate::transport::Transport;

/// A way of running requests of transport `T` with handlers of type `H`.
/// Implemented by [`Synchronous`] and [`Threading`] for every
/// [`RequestHandler`](crate::RequestHandler) of the transport's request.
pub trait Dispatch<T: Transport, H>: private::Dispatch<T, H> {}

impl<T: Transport, H, D: private::Dispatch<T, H>> Dispatch<T, H> for D {}

pub(crate) mod private {
    use super::*;
    use crate::transport::Address;

    /// What a server needs of its dispatcher.
    pub trait Dispatch<T: Transport, H>: 'static {
        /// A one-at-a-time dispatcher runs requests on the accept loop's
        /// thread: a shutdown from elsewhere then needs a watchdog for its
        /// deadline.
        const RUNS_ON_SERVING_THREAD: bool;
        /// The dispatcher calls the handler once per message of a
        /// connection (the reactor): a request, as counted and timed, is a
        /// message rather than a connection.
        const PER_MESSAGE: bool = false;
        /// Starts running: threads, loops, whatever the dispatcher keeps.
        fn start(lifecycle: &Arc<Lifecycle<H>>) -> io::Result<Box<dyn Running<T>>>;
        /// The handler's `verify_request`, for datagrams, which are judged
        /// on the accept loop's thread before they are dispatched.
        fn verify(handler: &H, peer: &Address) -> bool;
        /// The handler's `service_actions`.
        fn service_actions(handler: &H);
        /// The handler's `handle_timeout`.
        fn handle_timeout(handler: &H);
    }

    /// A started dispatcher.
    pub trait Running<T: Transport>: Send {
        /// Takes an arrival, or gives it back when full.
        fn submit(&self, arrival: T::Arrival) -> Result<(), T::Arrival>;
        /// Takes no more arrivals; those already taken still run.
        fn close(&mut self);
        /// Waits for every thread to exit, or `deadline`; true when none is
        /// left.
        fn join(&self, deadline: Instant) -> bool;
    }
}
