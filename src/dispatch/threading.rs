//! [`Threading`]: each request on a thread of the elastic pool.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use super::private::{Dispatch, Running};
use super::{Pool, PoolConfig};
use crate::request::RequestHandler;
use crate::server::lifecycle::{Lifecycle, Serve};
use crate::transport::{Address, Transport};

/// Runs requests on an elastic pool of worker threads: Python's
/// `ThreadingMixIn`, bounded. A stream connection holds its thread for its
/// whole life; a datagram holds one for its handler. See
/// [`Options`](crate::Options) for the pool's sizes.
#[derive(Debug)]
pub enum Threading {}

impl<T, H> Dispatch<T, H> for Threading
where
    T: Transport,
    H: RequestHandler<T::Request>,
    Lifecycle<H>: Serve<T::Arrival>,
{
    const RUNS_ON_SERVING_THREAD: bool = false;

    fn start(lifecycle: &Arc<Lifecycle<H>>) -> io::Result<Box<dyn Running<T>>> {
        let control = lifecycle.control();
        let room = Arc::clone(&lifecycle.server().0);
        let worker = Arc::clone(lifecycle);
        let pool = Pool::start(
            PoolConfig::of(&control.options),
            Arc::clone(&control.gauges),
            move |arrival| worker.serve(arrival),
            move || room.announce_room(),
        )?;
        Ok(Box::new(pool))
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

impl<T: Transport> Running<T> for Pool<T::Arrival> {
    fn submit(&self, arrival: T::Arrival) -> Result<(), T::Arrival> {
        Pool::submit(self, arrival)
    }

    fn close(&mut self) {
        Pool::close(self)
    }

    fn join(&self, deadline: Instant) -> bool {
        Pool::join(self, deadline)
    }
}
