//! [`Synchronous`]: one request at a time, on the serving thread.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use super::private::{Dispatch, Running};
use crate::request::RequestHandler;
use crate::server::lifecycle::{Lifecycle, Serve};
use crate::transport::{Address, Transport};

/// Runs each request on the thread that serves, to the end, before the next
/// is accepted: Python's `TCPServer` and `UDPServer`.
#[derive(Debug)]
pub enum Synchronous {}

struct Inline<H>(Arc<Lifecycle<H>>);

impl<T, H> Dispatch<T, H> for Synchronous
where
    T: Transport,
    H: RequestHandler<T::Request>,
    Lifecycle<H>: Serve<T::Arrival>,
{
    const RUNS_ON_SERVING_THREAD: bool = true;

    fn start(lifecycle: &Arc<Lifecycle<H>>) -> io::Result<Box<dyn Running<T>>> {
        Ok(Box::new(Inline(Arc::clone(lifecycle))))
    }

    fn verify(handler: &H, peer: &Address) -> bool {
        handler.verify_request(peer)
    }

    fn service_actions(handler: &H) {
        handler.service_actions()
    }

    fn handle_timeout(handler: &H) {
        handler.handle_timeout()
    }
}

impl<T, H> Running<T> for Inline<H>
where
    T: Transport,
    H: RequestHandler<T::Request>,
    Lifecycle<H>: Serve<T::Arrival>,
{
    fn submit(&self, arrival: T::Arrival) -> Result<(), T::Arrival> {
        self.0.serve(arrival);
        Ok(())
    }

    fn close(&mut self) {}

    fn join(&self, _: Instant) -> bool {
        true
    }
}
