//! [`Threading`]: each request on a thread of the elastic pool.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use super::datagrams::Receivers;
use super::private::{Dispatch, Running};
use super::{Pool, PoolConfig};
use crate::request::{DatagramRequest, RequestHandler, StreamRequest};
use crate::server::lifecycle::{Lifecycle, Serve};
use crate::transport::{Accepted, Address, Datagram, Listener, Transport};

/// Runs requests on an elastic pool of worker threads: Python's
/// `ThreadingMixIn`, bounded. A stream connection holds its thread for its
/// whole life. On a datagram server the workers take turns receiving on
/// the socket and each answers what it received, so a datagram never waits
/// for a hand-over between threads. See [`Options`](crate::Options) for the
/// pool's sizes.
#[derive(Debug)]
pub enum Threading {}

impl<T, H> Dispatch<T, H> for Threading
where
    T: Transport,
    H: RequestHandler<T::Request>,
    Lifecycle<H>: Serve<T::Arrival>,
    T::Arrival: Threaded<H>,
{
    const RUNS_ON_SERVING_THREAD: bool = false;

    fn start(
        lifecycle: &Arc<Lifecycle<H>>,
        listener: &Arc<Listener>,
    ) -> io::Result<Box<dyn Running<T>>> {
        <T::Arrival as Threaded<H>>::start::<T>(lifecycle, listener)
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

/// How the threading dispatcher runs one kind of arrival: connections on
/// the pool, fed by the accept loop; datagrams on workers that receive them.
///
/// Public in name only (its module is private): dispatchers are sealed.
pub trait Threaded<H>: Sized {
    /// Starts the threads for a server of transport `T`.
    fn start<T>(
        lifecycle: &Arc<Lifecycle<H>>,
        listener: &Arc<Listener>,
    ) -> io::Result<Box<dyn Running<T>>>
    where
        T: Transport + crate::transport::private::Transport<Arrival = Self>;
}

impl<H: RequestHandler<StreamRequest>> Threaded<H> for Accepted {
    fn start<T>(lifecycle: &Arc<Lifecycle<H>>, _: &Arc<Listener>) -> io::Result<Box<dyn Running<T>>>
    where
        T: Transport + crate::transport::private::Transport<Arrival = Self>,
    {
        let control = lifecycle.control();
        let room = Arc::clone(&lifecycle.server().0);
        let worker = Arc::clone(lifecycle);
        let pool = Pool::start(
            PoolConfig::of(&control.options),
            Arc::clone(&control.gauges),
            move |accepted| worker.serve_connection(accepted),
            move || room.announce_room(),
        )?;
        Ok(Box::new(pool))
    }
}

impl<H: RequestHandler<DatagramRequest>> Threaded<H> for Datagram {
    fn start<T>(
        lifecycle: &Arc<Lifecycle<H>>,
        listener: &Arc<Listener>,
    ) -> io::Result<Box<dyn Running<T>>>
    where
        T: Transport + crate::transport::private::Transport<Arrival = Self>,
    {
        Ok(Box::new(Receivers::start(lifecycle, listener)?))
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
