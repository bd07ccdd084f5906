//! The [`RequestHandler`] trait: what a server does with each request.

use std::io;
use std::sync::Arc;

use crate::transport::address::Address;

/// What a server does with each request: Python's `BaseRequestHandler`, plus the
/// server hooks that a Python user would override on the server class.
///
/// `R` is the request type: [`StreamRequest`](crate::StreamRequest) for TCP and
/// Unix stream servers (one request per connection), or
/// [`DatagramRequest`](crate::DatagramRequest) for UDP and Unix datagram servers
/// (one request per packet).
///
/// One handler value serves every request, on as many threads as the pool runs,
/// so methods take `&self`. State for one connection lives in locals of
/// [`handle`](RequestHandler::handle); state shared by all connections lives in
/// `self`, behind atomics or locks. To keep a reference to the handler (to read
/// its shared state from elsewhere), pass an `Arc<YourHandler>`: it is a
/// handler too.
///
/// For every request the server calls [`setup`](RequestHandler::setup), then
/// [`handle`](RequestHandler::handle), then [`finish`](RequestHandler::finish);
/// `finish` runs even when `handle` fails, but not when `setup` does (as in
/// Python). An error from any of them goes to
/// [`handle_error`](RequestHandler::handle_error); a panic is caught, logged,
/// counted, and costs only its own request.
///
/// ```
/// use std::io::{self, BufRead, Write};
/// use socketserver::{RequestHandler, StreamRequest};
///
/// /// Answers each line with its length.
/// struct LineLength;
///
/// impl RequestHandler<StreamRequest> for LineLength {
///     fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
///         let mut line = String::new();
///         while req.read_line(&mut line)? > 0 {
///             writeln!(req, "{}", line.trim_end().len())?;
///             line.clear();
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait RequestHandler<R>: Send + Sync + 'static {
    /// Prepares a request before [`handle`](RequestHandler::handle): set
    /// timeouts, greet the client, authenticate it. An error here skips
    /// `handle` and `finish`. Does nothing by default.
    fn setup(&self, request: &mut R) -> io::Result<()> {
        let _ = request;
        Ok(())
    }

    /// Serves the request. For a stream request, return when the conversation
    /// is over; the server closes the connection afterwards.
    fn handle(&self, request: &mut R) -> io::Result<()>;

    /// Cleans up after [`handle`](RequestHandler::handle), whether it succeeded
    /// or not. Does nothing by default.
    fn finish(&self, request: &mut R) -> io::Result<()> {
        let _ = request;
        Ok(())
    }

    /// Decides, before any work is dispatched, whether to serve a client.
    /// Return `false` to close the connection (or drop the datagram) at once,
    /// e.g. for an address allow-list. The refusal is counted as rejected.
    /// Accepts everyone by default.
    fn verify_request(&self, peer: &Address) -> bool {
        let _ = peer;
        true
    }

    /// Reports an error that `setup`, `handle` or `finish` returned, or a
    /// panic (as an error of kind [`io::ErrorKind::Other`]). By default it logs
    /// through `log`: at debug level for what clients do every day (a reset, a
    /// broken pipe, an idle timeout), at warn level for the rest.
    fn handle_error(&self, peer: &Address, error: &io::Error) {
        log_request_error(peer, error);
    }

    /// Called by [`handle_request`](crate::Server::handle_request) when no
    /// request arrived within the server's
    /// [`timeout`](crate::Options::timeout). Does nothing by default.
    fn handle_timeout(&self) {}

    /// Called by [`serve_forever`](crate::Server::serve_forever) on every turn
    /// of its loop, and at least once per
    /// [`poll_interval`](crate::Options::poll_interval): periodic work such as
    /// reaping or flushing. Does nothing by default.
    fn service_actions(&self) {}
}

/// The default of [`RequestHandler::handle_error`], for handlers that override
/// it and still want the standard log line.
///
/// Each line says who (the peer), what happened and what it means. An error
/// that ordinary clients cause every day is logged at debug level with what
/// the client did (`127.0.0.1:5000: the client reset the connection:
/// Connection reset by peer (os error 104)`); any other is a failed request,
/// logged at warn level (`127.0.0.1:5000: handler error: line too long
/// (invalid data); request abandoned`): the server gave up on that request
/// (and closed its connection, on a stream) and serves the others.
pub fn log_request_error(peer: &Address, error: &io::Error) {
    match routine_cause(error.kind()) {
        Some(cause) => log::debug!("{peer}: {cause}: {error}"),
        None => log::warn!("{peer}: {}", describe_failure(error)),
    }
}

/// The text of a failed request's log line after the peer: `handler error:
/// ERROR (KIND); request abandoned`. The kind is added when the error's own
/// text does not carry it (an error made with `io::Error::new`, not one from
/// the system).
fn describe_failure(error: &io::Error) -> String {
    let kind = error.kind();
    if error.raw_os_error().is_none() && kind != io::ErrorKind::Other {
        format!("handler error: {error} ({kind}); request abandoned")
    } else {
        format!("handler error: {error}; request abandoned")
    }
}

/// What the client did, for the errors that every server sees from ordinary
/// clients (not worth a warning); `None` for the others.
fn routine_cause(kind: io::ErrorKind) -> Option<&'static str> {
    use io::ErrorKind::*;
    match kind {
        ConnectionReset => Some("the client reset the connection"),
        ConnectionAborted => Some("the connection was aborted"),
        BrokenPipe => Some("the client went away before the answer was sent"),
        UnexpectedEof => Some("the client closed the connection in the middle of a request"),
        WouldBlock | TimedOut => Some("timed out waiting for the client"),
        _ => None,
    }
}

impl<R, H: RequestHandler<R> + ?Sized> RequestHandler<R> for Arc<H> {
    fn setup(&self, request: &mut R) -> io::Result<()> {
        (**self).setup(request)
    }
    fn handle(&self, request: &mut R) -> io::Result<()> {
        (**self).handle(request)
    }
    fn finish(&self, request: &mut R) -> io::Result<()> {
        (**self).finish(request)
    }
    fn verify_request(&self, peer: &Address) -> bool {
        (**self).verify_request(peer)
    }
    fn handle_error(&self, peer: &Address, error: &io::Error) {
        (**self).handle_error(peer, error)
    }
    fn handle_timeout(&self) {
        (**self).handle_timeout()
    }
    fn service_actions(&self) {
        (**self).service_actions()
    }
}

/// A handler made of a closure that serves as [`RequestHandler::handle`]; the
/// other hooks keep their defaults. Made by [`handler_fn`].
#[derive(Debug, Clone, Copy)]
pub struct HandlerFn<F>(F);

/// Makes a handler of a closure, for servers whose whole logic fits in
/// `handle`.
///
/// ```no_run
/// use std::io::{Read, Write};
/// use socketserver::{handler_fn, StreamRequest, ThreadingTcpServer};
///
/// let echo = handler_fn(|req: &mut StreamRequest| {
///     let mut buf = [0u8; 4096];
///     loop {
///         let n = req.read(&mut buf)?;
///         if n == 0 {
///             return Ok(());
///         }
///         req.write_all(&buf[..n])?;
///     }
/// });
/// let server = ThreadingTcpServer::bind("127.0.0.1:0", echo)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn handler_fn<R, F>(handle: F) -> HandlerFn<F>
where
    F: Fn(&mut R) -> io::Result<()> + Send + Sync + 'static,
{
    HandlerFn(handle)
}

impl<R, F> RequestHandler<R> for HandlerFn<F>
where
    F: Fn(&mut R) -> io::Result<()> + Send + Sync + 'static,
{
    fn handle(&self, request: &mut R) -> io::Result<()> {
        (self.0)(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_says_what_happened_and_what_it_means() {
        let made = io::Error::new(io::ErrorKind::InvalidData, "line too long");
        assert_eq!(
            describe_failure(&made),
            "handler error: line too long (invalid data); request abandoned"
        );
        let system = io::Error::from_raw_os_error(libc::ENOSPC);
        let text = describe_failure(&system);
        assert!(text.starts_with("handler error: No space left on device (os error 28)"));
        assert!(text.ends_with("; request abandoned"), "{text}");
        let other = io::Error::other("the database is down");
        assert_eq!(
            describe_failure(&other),
            "handler error: the database is down; request abandoned"
        );
    }

    #[test]
    fn routine_errors_name_what_the_client_did() {
        assert_eq!(
            routine_cause(io::ErrorKind::ConnectionReset),
            Some("the client reset the connection")
        );
        assert!(routine_cause(io::ErrorKind::TimedOut).is_some());
        assert!(routine_cause(io::ErrorKind::WouldBlock).is_some());
        assert_eq!(routine_cause(io::ErrorKind::InvalidData), None);
        assert_eq!(routine_cause(io::ErrorKind::PermissionDenied), None);
    }
}
