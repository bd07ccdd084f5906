//! [`Reactor`]: connections parked on event loops, messages handled inline
//! or on the pool.
//!
//! See [`Reactor`].

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use parking_lot::Mutex;
use socket2::Type;

mod blocking;
mod connection;
mod event_loop;
mod mailbox;
mod outlet;
mod timers;

use super::private::{Dispatch, Running};
use super::{Pool, PoolConfig, ThreadLimit, ThreadsError};
use crate::request::MessageHandler;
use crate::server::control::Control;
use crate::server::lifecycle::Lifecycle;
use crate::transport::{bind_inet, Accepted, Address, Listener, StreamTransport};
use blocking::Handoff;
use connection::Connection;
use event_loop::EventLoop;
use mailbox::{Command, LoopHandle};

/// Runs a [`MessageHandler`] on event loops that park idle connections
/// without a thread.
///
/// The design of Tomcat's NIO connector, Netty's event loops and memcached's
/// workers, for [`MessageHandler`]s:
///
/// - `N` event loops (one per CPU by default, [`Options::reactor_threads`]),
///   each a thread with its own `epoll` instance (through `mio`) and its own
///   table of connections. The server's accept loop deals new connections to
///   them in turn, or, with [`Options::listener_per_loop`], each loop accepts
///   on a listening socket of its own (SO_REUSEPORT) and the kernel spreads
///   the connections.
/// - A loop reads what is ready until the socket has no more, cuts it into
///   messages with the handler's [`Framing`](crate::request::Framing), and
///   calls the handler inline for each, on its own thread: no thread hop per
///   message. A message that may block (a program to run, a file to read) goes
///   to the server's pool with its connection in blocking mode, and the
///   connection comes back to its loop when the handler returns.
/// - Reads land in a buffer the loop shares among its connections, and
///   replies are written from another; a connection keeps bytes of its own
///   only while a message is incomplete or a reply waits for its client. An
///   idle connection costs its descriptor and a few hundred bytes: no thread,
///   no buffer.
/// - Idle and message timeouts live in each loop's deadline heap; no thread
///   and no timer per connection.
/// - A shutdown closes every connection that has no message in progress at
///   once (its handler told [`Closing::Shutdown`](crate::request::Closing)),
///   lets the others finish until the deadline, and cuts the rest.
///
/// ```no_run
/// use socketserver::services::EchoUpper;
/// use socketserver::{Options, ReactorTcpServer};
///
/// let options = Options::new().reactor_threads(2).max_connections(100_000);
/// let server = ReactorTcpServer::bind_with("127.0.0.1:9000", EchoUpper, options)?;
/// server.shutdown_on_ctrl_c()?;
/// server.serve_forever()?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// [`Options::reactor_threads`]: crate::Options::reactor_threads
/// [`Options::listener_per_loop`]: crate::Options::listener_per_loop
#[derive(Debug)]
pub enum Reactor {}

impl<T, H> Dispatch<T, H> for Reactor
where
    T: StreamTransport,
    H: MessageHandler,
{
    const RUNS_ON_SERVING_THREAD: bool = false;
    const PER_MESSAGE: bool = true;

    fn start(
        lifecycle: &Arc<Lifecycle<H>>,
        listener: &Arc<Listener>,
    ) -> io::Result<Box<dyn Running<T>>> {
        Ok(Box::new(Reactors::start(lifecycle, listener)?))
    }

    fn verify(handler: &H, peer: &Address) -> bool {
        handler.verify_request(peer)
    }

    fn service_actions(handler: &H) {
        handler.service_actions()
    }

    fn handle_timeout(_: &H) {}
}

/// The running loops and the pool of blocking messages.
struct Reactors<H: MessageHandler> {
    loops: Vec<LoopHandle<Box<Connection<H>>>>,
    /// Each loop accepts on a listener of its own.
    loops_accept: bool,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
    next: AtomicUsize,
    pool: Arc<Mutex<Option<Pool<Handoff<H>>>>>,
}

impl<H: MessageHandler> Reactors<H> {
    fn start(lifecycle: &Arc<Lifecycle<H>>, listener: &Arc<Listener>) -> io::Result<Self> {
        let control = lifecycle.control();
        let options = &control.options;
        let pool_slot: Arc<Mutex<Option<Pool<Handoff<H>>>>> = Arc::default();
        // Connections whose blocking message found the pool full, in all
        // loops: when a thread frees up, their loops are woken.
        let waiting = Arc::new(AtomicUsize::new(0));
        let mut loops = Vec::new();
        let mut threads = Vec::new();
        let limit = ThreadLimit::now();
        limit.check(options.reactor_threads, "event loop threads")?;
        limit.check(
            options.reactor_threads.saturating_add(options.threads),
            "threads (event loops and warm workers)",
        )?;
        let mut own_listeners = listener_per_loop(listener, control);
        let loops_accept = !own_listeners.is_empty();
        for index in 0..options.reactor_threads {
            let (event_loop, handle) = EventLoop::new(
                Arc::clone(lifecycle),
                Arc::clone(&pool_slot),
                Arc::clone(&waiting),
                own_listeners.pop(),
            )?;
            let thread = thread::Builder::new()
                .name(format!("socketserver-loop-{index}"))
                .spawn(move || event_loop.run())
                .map_err(|e| {
                    ThreadsError::spawn(
                        &format!(
                            "event loop thread {} of {}",
                            index + 1,
                            options.reactor_threads
                        ),
                        &e,
                    )
                })?;
            loops.push(handle);
            threads.push(thread);
        }
        let worker = Arc::clone(lifecycle);
        let room = Arc::clone(&lifecycle.server().0);
        let waking: Vec<_> = loops.clone();
        let pool = Pool::start(
            PoolConfig {
                blocking_messages_only: true,
                ..PoolConfig::of(options)
            },
            Arc::clone(&control.gauges),
            move |handoff: Handoff<H>| handoff.run(&worker),
            move || {
                room.announce_room();
                if waiting.load(Relaxed) > 0 {
                    waking.iter().for_each(LoopHandle::wake);
                }
            },
        )?;
        // The pool's queue holds blocking messages: what `queued` reports.
        let _ = control
            .gauges
            .queue_length
            .set(Box::new(pool.queue_length()));
        *pool_slot.lock() = Some(pool);
        control.census.expect(loops.len());
        Ok(Reactors {
            loops,
            loops_accept,
            threads: Mutex::new(threads),
            next: AtomicUsize::new(0),
            pool: pool_slot,
        })
    }
}

/// The listening sockets of loops that accept on their own
/// ([`Options::listener_per_loop`](crate::Options::listener_per_loop)): the
/// server's own, and one more bound to its address with SO_REUSEPORT for
/// each other loop. Empty when the loops do not accept on their own: not
/// asked, not TCP, or the address cannot be shared (a socket given without
/// SO_REUSEPORT), which is said in a warning.
fn listener_per_loop(listener: &Arc<Listener>, control: &Control) -> Vec<Arc<Listener>> {
    let options = &control.options;
    if !options.listener_per_loop {
        return Vec::new();
    }
    let Some(addr) = listener.local_addr().ok().and_then(|a| a.as_inet()) else {
        log::debug!(
            "{}: one listener per event loop is for TCP; dealing connections to the loops",
            control.url()
        );
        return Vec::new();
    };
    let mut listeners = vec![Arc::clone(listener)];
    for _ in 1..options.reactor_threads {
        match bind_inet(addr, Type::STREAM, &options.listen) {
            Ok(own) => listeners.push(Arc::new(own)),
            Err(e) => {
                log::warn!(
                    "{}: cannot open a listener per event loop ({e}); \
                     one listener deals connections to the loops instead",
                    control.url()
                );
                return Vec::new();
            }
        }
    }
    listeners
}

impl<T: StreamTransport, H: MessageHandler> Running<T> for Reactors<H> {
    fn submit(&self, accepted: Accepted) -> Result<(), Accepted> {
        let n = self.next.fetch_add(1, Relaxed) % self.loops.len();
        self.loops[n].send(Command::Accept(accepted));
        Ok(())
    }

    fn begin(&self) -> bool {
        if self.loops_accept {
            for handle in &self.loops {
                handle.send(Command::Listen);
            }
        }
        self.loops_accept
    }

    fn room(&self) {
        for handle in &self.loops {
            handle.send(Command::Room);
        }
    }

    fn close(&mut self) {
        for handle in &self.loops {
            handle.send(Command::Shutdown);
        }
    }

    fn join(&self, deadline: Instant) -> bool {
        let mut threads = self.threads.lock();
        for thread in threads.drain(..) {
            // A loop ends by itself at the shutdown deadline.
            let _ = thread.join();
        }
        let mut pool = self.pool.lock().take();
        match pool.as_mut() {
            Some(pool) => {
                pool.close();
                pool.join(deadline)
            }
            None => true,
        }
    }
}
