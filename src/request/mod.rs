//! Requests and the handlers that serve them: a [`StreamRequest`] is one
//! connection (TCP or Unix stream), a [`DatagramRequest`] one packet (UDP or
//! Unix datagram); a [`RequestHandler`] serves either, with Python's
//! `setup` / `handle` / `finish`.

mod datagram;
mod handler;
mod stream;

pub use datagram::DatagramRequest;
pub use handler::{handler_fn, log_request_error, HandlerFn, RequestHandler};
pub use stream::{StreamRequest, StreamWriter};
