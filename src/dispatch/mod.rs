//! Dispatchers: how a server runs what arrives. One at a time on the
//! serving thread ([`Synchronous`]), on the elastic thread pool
//! ([`Threading`]), or on event loops ([`Reactor`]).
//!
//! A dispatcher is the third type parameter of [`Server`](crate::Server), a
//! marker like the transports: `Server<Tcp, H, Threading>` is a
//! [`ThreadingTcpServer`](crate::ThreadingTcpServer). The server's accept
//! loop admits each arrival under the limits and hands it to the running
//! dispatcher; the dispatcher decides on which thread the
//! [lifecycle](crate::server) of that connection or datagram runs, and which
//! kind of handler it takes. A dispatcher may also receive on the listener
//! itself (the threading datagram server's workers do): the accept loop then
//! only waits for the shutdown. A new way of running requests is one more
//! dispatcher: nothing in [`Server`](crate::Server) changes.
//!
//! # Datagrams on threads
//!
//! A [`Threading`] datagram server has no receiving thread that hands
//! datagrams to workers (a wake-up per datagram). Its workers take turns
//! receiving on the shared socket, leader/followers: one waits in the
//! receive call, and handles and answers what it got on its own thread.
//! While the handler is quick (under 50 µs on average) the leader receives
//! again when done, taking up to 8 datagrams in one `recvmmsg` when several
//! wait (the first is handled at once, the rest queued for the first free
//! worker); a follower standing by takes over the receiving when a quick
//! handler blocks after all (it looks every 5 ms while datagrams flow). A
//! slow handler first hands the receiving to a follower, or to a new thread
//! up to [`max_threads`](crate::Options::max_threads), then handles its
//! datagram. The pool stays bounded: with every thread busy, datagrams wait
//! in the [`queue`](crate::Options::queue) or are dropped and counted
//! (`Stats::dropped`), as are those larger than 64 KiB and those that
//! `verify_request` refuses. A shutdown serves what was received, then
//! stops.
//!
//! ```
//! use socketserver::{handler_fn, DatagramRequest, Options, ThreadingUdpServer};
//!
//! let upper = handler_fn(|req: &mut DatagramRequest| {
//!     let answer = req.packet().to_ascii_uppercase();
//!     req.reply(&answer)
//! });
//! let server = ThreadingUdpServer::bind_with("127.0.0.1:0", upper, Options::new().threads(2))?;
//! let addr = server.local_addr().as_inet().unwrap();
//! let handle = server.handle();
//! let serving = std::thread::spawn(move || server.serve_forever());
//!
//! let client = std::net::UdpSocket::bind("127.0.0.1:0")?;
//! client.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
//! client.send_to(b"hello", addr)?;
//! let mut buf = [0; 16];
//! let (n, _) = client.recv_from(&mut buf)?;
//! assert_eq!(&buf[..n], b"HELLO");
//!
//! handle.shutdown();
//! assert_eq!(serving.join().unwrap()?.served, 1);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::sync::Arc;
use std::time::Instant;

mod datagrams;
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
    use crate::transport::{Address, Listener};

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
        /// `listener` is the server's socket, for a dispatcher that receives
        /// on it itself.
        fn start(
            lifecycle: &Arc<Lifecycle<H>>,
            listener: &Arc<Listener>,
        ) -> io::Result<Box<dyn Running<T>>>;
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
        /// Serving begins (`serve_forever` or `handle_request`). True when
        /// the dispatcher receives on the listener itself from now on: the
        /// accept loop then leaves the listener alone and only waits for
        /// the shutdown. False by default: arrivals come through `submit`.
        fn begin(&self) -> bool {
            false
        }
        /// A dispatcher that receives itself had stopped at the server's
        /// limit, and room has freed since: take in what waits.
        fn room(&self) {}
        /// Takes no more arrivals; those already taken still run.
        fn close(&mut self);
        /// Waits for every thread to exit, or `deadline`; true when none is
        /// left.
        fn join(&self, deadline: Instant) -> bool;
    }
}
