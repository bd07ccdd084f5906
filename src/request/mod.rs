//! Requests and the handlers that serve them.
//!
//! - A [`RequestHandler`] serves a whole request with Python's `setup` /
//!   `handle` / `finish`: a [`StreamRequest`] is one connection (TCP or Unix
//!   stream), read and written as a blocking stream; a [`DatagramRequest`]
//!   is one packet (UDP or Unix datagram).
//! - A [`MessageHandler`] is called once per whole message of a connection,
//!   cut by its [`Framing`], and keeps the connection's state in a session:
//!   it runs on a thread per connection like a `RequestHandler` (it is one),
//!   or on an event loop that parks idle connections.

mod datagram;
mod framing;
pub(crate) mod handler;
mod message;
mod message_loop;
mod outbox;
mod stream;

pub use datagram::DatagramRequest;
pub use framing::{Endian, Found, Framer, Framing, FramingError, MAX_LEADING_EMPTY_LINES};
pub use handler::{handler_fn, log_request_error, HandlerFn, RequestHandler};
pub(crate) use message::{cannot_read, read_kept, ConnIo, Outlet};
pub use message::{Closing, Conn, ConnHandle, MessageHandler, Next, Shared};
pub(crate) use message_loop::{Timeouts, DEFAULT_LINGER};
pub use stream::{StreamRequest, StreamWriter};
