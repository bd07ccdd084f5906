//! Python's `socketserver`, in Rust: write a handler, pick a server, serve many
//! clients at once on a bounded thread pool, and shut down gracefully on Ctrl-C.
//!
//! # The whole API in one example
//!
//! A handler implements [`RequestHandler`] for a request type:
//! [`StreamRequest`] (a TCP or Unix connection, readable and writable like
//! Python's `rfile`/`wfile`) or [`DatagramRequest`] (a UDP or Unix packet and a
//! way to answer it). A server type ties a transport to a way of running
//! requests, with Python's names: [`ThreadingTcpServer`] runs each connection
//! on a pool thread, [`TcpServer`] one at a time, and likewise for UDP and Unix
//! sockets.
//!
//! ```
//! use std::io::{self, Read, Write};
//! use std::net::TcpStream;
//! use socketserver::{RequestHandler, StreamRequest, ThreadingTcpServer};
//!
//! struct EchoUpper;
//!
//! impl RequestHandler<StreamRequest> for EchoUpper {
//!     fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
//!         let mut buf = [0u8; 4096];
//!         loop {
//!             let n = req.read(&mut buf)?;
//!             if n == 0 {
//!                 return Ok(());
//!             }
//!             buf[..n].make_ascii_uppercase();
//!             req.write_all(&buf[..n])?;
//!         }
//!     }
//! }
//!
//! fn main() -> io::Result<()> {
//!     let server = ThreadingTcpServer::bind("127.0.0.1:0", EchoUpper)?;
//!     let addr = server.local_addr().as_inet().unwrap();
//!     let handle = server.handle(); // in a real program: server.shutdown_on_ctrl_c()?
//!
//!     let client = std::thread::spawn(move || -> io::Result<Vec<u8>> {
//!         let mut stream = TcpStream::connect(addr)?;
//!         stream.write_all(b"hello")?;
//!         stream.shutdown(std::net::Shutdown::Write)?;
//!         let mut answer = Vec::new();
//!         stream.read_to_end(&mut answer)?;
//!         handle.shutdown();
//!         Ok(answer)
//!     });
//!
//!     let summary = server.serve_forever()?; // returns after the shutdown
//!     assert_eq!(client.join().unwrap()?, b"HELLO");
//!     assert_eq!(summary.served, 1);
//!     Ok(())
//! }
//! ```
//!
//! # Python names, Rust names
//!
//! | Python `socketserver` | here |
//! |---|---|
//! | `TCPServer`, `UDPServer`, `UnixStreamServer`, `UnixDatagramServer` | [`TcpServer`], [`UdpServer`], [`UnixStreamServer`], [`UnixDatagramServer`] |
//! | `ThreadingTCPServer`, `ThreadingUDPServer`, `ThreadingUnix*Server` | [`ThreadingTcpServer`], [`ThreadingUdpServer`], [`ThreadingUnixStreamServer`], [`ThreadingUnixDatagramServer`] |
//! | `BaseRequestHandler.setup` / `handle` / `finish` | [`RequestHandler::setup`] / [`handle`](RequestHandler::handle) / [`finish`](RequestHandler::finish) |
//! | `StreamRequestHandler.rfile` / `wfile`, `client_address` | [`StreamRequest`] (`BufRead` + `Write`), [`StreamRequest::peer_addr`] |
//! | `StreamRequestHandler.timeout`, `disable_nagle_algorithm` | [`Options::idle_timeout`], [`Options::nodelay`] |
//! | `DatagramRequestHandler` | [`DatagramRequest::packet`], [`DatagramRequest::reply`] |
//! | `serve_forever`, `handle_request`, `shutdown` | [`Server::serve_forever`], [`Server::handle_request`], [`ServerHandle::shutdown`] |
//! | `server_close` | dropping the [`Server`] |
//! | `timeout`, `handle_timeout`, `service_actions` | [`Options::timeout`], [`RequestHandler::handle_timeout`], [`RequestHandler::service_actions`] |
//! | `verify_request`, `handle_error` | [`RequestHandler::verify_request`], [`RequestHandler::handle_error`] |
//! | `allow_reuse_address`, `allow_reuse_port`, `request_queue_size` | [`Options::reuse_address`], [`Options::reuse_port`], [`Options::backlog`] |
//! | `daemon_threads`, `block_on_close` | [`Options::shutdown_timeout`]: in-flight requests finish or are cut at the deadline |
//!
//! # Beyond Python
//!
//! - A bounded, elastic pool: core threads kept warm, growth to a maximum,
//!   idle threads retired, a bounded queue, and backpressure (or rejection)
//!   when all is full; see [`Options`].
//! - Limits: a cap on open connections, idle and write timeouts.
//! - Per-message handlers: a [`MessageHandler`](request::MessageHandler)
//!   names its framing (lines, length-prefixed frames, HTTP heads) and is
//!   called once per whole message. It runs a thread per connection
//!   ([`Threading`]) or on event loops ([`ReactorTcpServer`]), where an idle
//!   connection holds no thread and no buffer, so one process holds tens of
//!   thousands of clients; a message that may block runs on the pool. See
//!   [`dispatch`].
//! - TLS on every stream server, on rustls, with the `tls` feature (see
//!   [`layer`]).
//! - A panic in a handler is caught, logged and costs only its request.
//! - Counters ([`Stats`]), metrics with a request-duration histogram
//!   ([`Metrics`]), and a shutdown report ([`Summary`]).
//! - Production deployment: the PROXY protocol behind a load balancer
//!   ([`Options::proxy_protocol`]), a [`Readiness`] state and a drain delay
//!   ([`Options::drain_delay`]) for rolling restarts, SO_REUSEPORT, serving
//!   on an inherited socket ([`Server::from_listener`]), and in [`ops`] the
//!   admin listener (`/healthz`, `/readyz`, `/metrics`), HAProxy's agent
//!   check and systemd's notifications and socket activation.
//! - Shutdown is immediate to start (no polling interval) and bounded to
//!   finish; it works from any thread, a handler's own included.
//! - Everything the server reports goes through the `log` crate.

#![warn(missing_docs)]

#[cfg(feature = "client")]
pub mod client;
mod deadline;
pub mod dispatch;
pub mod layer;
pub mod ops;
#[cfg(feature = "protocols")]
pub mod protocol;
pub mod request;
pub mod server;
#[cfg(feature = "services")]
pub mod services;
pub mod transport;

pub use dispatch::{Reactor, Synchronous, Threading};
pub use request::{
    handler_fn, log_request_error, DatagramRequest, HandlerFn, RequestHandler, StreamRequest,
    StreamWriter,
};
pub use server::{
    BindAddress, Metrics, Options, Readiness, ReadinessState, Server, ServerGroup, ServerHandle,
    Stats, Summary,
};
pub use transport::{Address, ParseUrlError, SocketUrl};

use transport::{Tcp, Udp, UnixDatagram, UnixStream};

/// A TCP server that handles one connection at a time (Python's `TCPServer`).
pub type TcpServer<H> = Server<Tcp, H, Synchronous>;
/// A UDP server that handles one datagram at a time (Python's `UDPServer`).
pub type UdpServer<H> = Server<Udp, H, Synchronous>;
/// A Unix stream server that handles one connection at a time.
pub type UnixStreamServer<H> = Server<UnixStream, H, Synchronous>;
/// A Unix datagram server that handles one datagram at a time.
pub type UnixDatagramServer<H> = Server<UnixDatagram, H, Synchronous>;
/// A TCP server that handles each connection on a pool thread (Python's
/// `ThreadingTCPServer`).
pub type ThreadingTcpServer<H> = Server<Tcp, H, Threading>;
/// A UDP server that handles each datagram on a pool thread (Python's
/// `ThreadingUDPServer`).
pub type ThreadingUdpServer<H> = Server<Udp, H, Threading>;
/// A Unix stream server that handles each connection on a pool thread.
pub type ThreadingUnixStreamServer<H> = Server<UnixStream, H, Threading>;
/// A Unix datagram server that handles each datagram on a pool thread.
pub type ThreadingUnixDatagramServer<H> = Server<UnixDatagram, H, Threading>;
/// A TCP server whose connections wait on event loops and whose
/// [`MessageHandler`](request::MessageHandler) runs per message.
pub type ReactorTcpServer<H> = Server<Tcp, H, Reactor>;
/// A Unix stream server whose connections wait on event loops.
pub type ReactorUnixStreamServer<H> = Server<UnixStream, H, Reactor>;
