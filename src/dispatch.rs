//! How a server runs its requests: one at a time on the serving thread
//! ([`Synchronous`]), or on the elastic thread pool ([`Threading`]).
//!
//! The lifecycle in [`Server`](crate::Server) hands every admitted request to
//! its dispatcher and asks nothing else of it than to take work, refuse it when
//! full, and stop; a new way of running requests slots in as another
//! dispatcher.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use crate::control::Control;
use crate::endpoint::Job;
use crate::pool::{Pool, PoolConfig};
use crate::Options;

/// A way of running requests; the third type parameter of
/// [`Server`](crate::Server). Implemented by [`Synchronous`] and
/// [`Threading`] only.
pub trait Dispatch: private::Dispatch {}

/// Runs each request on the thread that serves, to the end, before the next
/// is accepted: Python's `TCPServer` and `UDPServer`.
pub struct Synchronous {
    run: Box<dyn Fn(Job) + Send + Sync>,
}

/// Runs requests on an elastic pool of worker threads: Python's
/// `ThreadingMixIn`, bounded. See [`Options`] for its sizes.
pub struct Threading {
    pool: Pool<Job>,
}

impl Dispatch for Synchronous {}
impl Dispatch for Threading {}

pub(crate) mod private {
    use super::*;

    pub type Run = Box<dyn Fn(Job) + Send + Sync>;

    pub trait Dispatch: Sized + Send + 'static {
        /// Whether a shutdown from another thread needs a watchdog for its
        /// deadline (the serving thread may be the one running the request).
        const RUNS_ON_SERVING_THREAD: bool;
        fn start(options: &Options, control: &Arc<Control>, run: Run) -> io::Result<Self>;
        /// Takes a job, or gives it back when full.
        fn submit(&self, job: Job) -> Result<(), Job>;
        /// Takes no more jobs; queued ones still run.
        fn close(&mut self);
        /// Waits for every worker to exit, or `deadline`; true when none is left.
        fn join(&self, deadline: Instant) -> bool;
    }
}

impl private::Dispatch for Synchronous {
    const RUNS_ON_SERVING_THREAD: bool = true;

    fn start(_: &Options, _: &Arc<Control>, run: private::Run) -> io::Result<Self> {
        Ok(Synchronous { run })
    }

    fn submit(&self, job: Job) -> Result<(), Job> {
        (self.run)(job);
        Ok(())
    }

    fn close(&mut self) {}

    fn join(&self, _: Instant) -> bool {
        true
    }
}

impl private::Dispatch for Threading {
    const RUNS_ON_SERVING_THREAD: bool = false;

    fn start(options: &Options, control: &Arc<Control>, run: private::Run) -> io::Result<Self> {
        let config = PoolConfig {
            core: options.threads,
            max: options.max_threads,
            queue: options.queue,
            keep_alive: options.keep_alive,
            name: options.thread_name.clone(),
            stack_size: options.stack_size,
        };
        let room = Arc::clone(control);
        let pool = Pool::start(config, Arc::clone(&control.gauges), run, move || {
            room.announce_room()
        })?;
        Ok(Threading { pool })
    }

    fn submit(&self, job: Job) -> Result<(), Job> {
        self.pool.submit(job)
    }

    fn close(&mut self) {
        self.pool.close();
    }

    fn join(&self, deadline: Instant) -> bool {
        self.pool.join(deadline)
    }
}
