//! The elastic thread pool behind the threading servers.
//!
//! Core threads start at once and stay; more start on demand up to a maximum
//! and retire after an idle keep-alive; work waits in a bounded
//! `crossbeam-channel` queue. Handing over a job takes no lock and allocates
//! nothing: the queue holds jobs by value, and the counters are atomics.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{
    fence, AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst,
};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};

use super::limit::{ThreadLimit, ThreadsError};
use crate::server::stats::Gauges;

/// Sizes and names of a pool.
#[derive(Debug, Clone)]
pub(crate) struct PoolConfig {
    pub core: usize,
    pub max: usize,
    pub queue: usize,
    pub keep_alive: Duration,
    pub name: String,
    pub stack_size: Option<usize>,
    /// `max` was set explicitly (not following the connection cap): over the
    /// system's limit it is an error rather than capped.
    pub max_explicit: bool,
    /// The pool runs only messages that may block (the reactor's): event
    /// loops, not threads, hold the connections, so a `max` that follows the
    /// connection cap is lowered to the system's limit without a warning.
    pub blocking_messages_only: bool,
}

impl PoolConfig {
    /// Checks the counts against what the system allows: `core` over the
    /// limit is an error, and so is an explicit `max`; a `max` that only
    /// follows the connection cap is lowered to the limit instead, with a
    /// warning. Every pool of worker threads (connections, datagram
    /// receivers) starts with it.
    pub fn fit_to(&mut self, limit: &ThreadLimit) -> std::io::Result<()> {
        limit.check(self.core, "worker threads")?;
        if self.max > limit.available {
            if self.max_explicit {
                limit.check(self.max, "worker threads at most (max_threads)")?;
            }
            let capped = limit.available.max(self.core).max(1);
            let level = if self.blocking_messages_only {
                log::Level::Debug
            } else {
                log::Level::Warn
            };
            log::log!(
                level,
                "the pool would grow to {} threads, more than the system allows ({limit}): \
                 it stops at {capped}",
                self.max
            );
            self.max = capped;
        }
        Ok(())
    }

    /// The pool a server's options ask for.
    pub fn of(options: &crate::server::options::Options) -> Self {
        PoolConfig {
            core: options.threads,
            max: options.max_threads_or_default(),
            queue: options.queue,
            keep_alive: options.keep_alive,
            name: options.thread_name.clone(),
            stack_size: options.stack_size,
            max_explicit: options.max_threads_given(),
            blocking_messages_only: false,
        }
    }
}

/// A bounded, elastic pool of threads that run `J`s with one function.
pub(crate) struct Pool<J: Send + 'static> {
    sender: Option<Sender<J>>,
    shared: Arc<Shared<J>>,
}

struct Shared<J> {
    receiver: Receiver<J>,
    gauges: Arc<Gauges>,
    config: PoolConfig,
    run: Box<dyn Fn(J) + Send + Sync>,
    /// Called when a thread becomes free or takes a job off the queue: room
    /// for one more submission.
    on_room: Box<dyn Fn() + Send + Sync>,
    exited: Mutex<()>,
    exited_cv: Condvar,
    /// Idle threads minus the jobs handed over and not yet taken: above 0,
    /// a submission has a thread waiting for it; at or below 0, it needs a
    /// new thread or waits in the queue. Each submission lowers it and each
    /// thread that starts waiting raises it, so a job is never counted
    /// against a thread that is about to take another one (the gauge of
    /// idle threads lags by the moment between taking a job and counting
    /// itself busy). A waiting thread leaves only while it is above 0.
    slack: AtomicIsize,
    /// A thread failed to start and nothing started since: the failure is
    /// logged once, not at every submission.
    spawn_failing: AtomicBool,
    /// Under steady load every idle thread takes its turn at the queue, so
    /// none waits a whole keep-alive and the pool would keep the threads of
    /// its busiest moment for ever. So each keep-alive is also a window: the
    /// fewest threads found idle when a job was taken during it were never
    /// needed, and that many retire at its end, as they next go idle.
    surplus: Surplus,
}

/// The pool's count of threads that stayed idle through a keep-alive.
struct Surplus {
    /// The pool's start, the origin of `window_start`.
    epoch: Instant,
    /// When the current window began, in nanoseconds since `epoch`.
    window_start: AtomicU64,
    /// The fewest threads idle after a job was taken, in this window.
    fewest_idle: AtomicUsize,
    /// Threads to retire as they go idle, from the last window.
    retiring: AtomicUsize,
}

impl<J: Send + 'static> Pool<J> {
    /// Starts the core threads. `run` is called on a worker thread for every
    /// job; `on_room` whenever a submission that failed might now succeed.
    ///
    /// Counts over what the system allows ([`ThreadLimit`]) are refused
    /// before any thread starts (a maximum that only follows the connection
    /// cap is lowered to the limit instead, with a warning), and a thread the
    /// system refuses is reported as such: both as a [`ThreadsError`].
    pub fn start(
        mut config: PoolConfig,
        gauges: Arc<Gauges>,
        run: impl Fn(J) + Send + Sync + 'static,
        on_room: impl Fn() + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        config.fit_to(&ThreadLimit::now())?;
        let (sender, receiver) = bounded(config.queue.saturating_add(config.max));
        let pool = Pool {
            sender: Some(sender),
            shared: Arc::new(Shared {
                receiver,
                gauges,
                config,
                run: Box::new(run),
                on_room: Box::new(on_room),
                exited: Mutex::new(()),
                exited_cv: Condvar::new(),
                slack: AtomicIsize::new(0),
                spawn_failing: AtomicBool::new(false),
                surplus: Surplus {
                    epoch: Instant::now(),
                    window_start: AtomicU64::new(0),
                    fewest_idle: AtomicUsize::new(usize::MAX),
                    retiring: AtomicUsize::new(0),
                },
            }),
        };
        let core = pool.shared.config.core;
        for started in 0..core {
            pool.shared.gauges.threads.fetch_add(1, SeqCst);
            spawn_worker(&pool.shared).map_err(|e| {
                ThreadsError::spawn(&format!("worker thread {} of {core}", started + 1), &e)
            })?;
        }
        Ok(pool)
    }

    /// Hands `job` to a free thread, or to a new thread while fewer than the
    /// maximum run, or to the queue. Gives it back when all are full.
    pub fn submit(&self, job: J) -> Result<(), J> {
        let Some(sender) = &self.sender else {
            return Err(job);
        };
        // The channel also carries jobs on their way to idle threads, so it
        // holds `queue + max` at most; the queue proper is what waits beyond
        // the idle threads.
        let slack = &self.shared.slack;
        let before = slack.fetch_sub(1, SeqCst);
        let queued = usize::try_from(before.saturating_neg()).unwrap_or(0);
        let room = before > 0 || self.grow() || queued < self.shared.config.queue;
        if !room {
            slack.fetch_add(1, SeqCst);
            return Err(job);
        }
        sender.try_send(job).map_err(|e| {
            slack.fetch_add(1, SeqCst);
            e.into_inner()
        })
    }

    /// Starts one more thread if fewer than the maximum run; true if it did.
    fn grow(&self) -> bool {
        let shared = &self.shared;
        let added = shared
            .gauges
            .threads
            .fetch_update(SeqCst, SeqCst, |n| (n < shared.config.max).then_some(n + 1));
        if added.is_err() {
            return false;
        }
        match spawn_worker(shared) {
            Ok(()) => {
                if shared.spawn_failing.swap(false, SeqCst) {
                    log::warn!("worker threads start again");
                }
                true
            }
            Err(e) => {
                let running = shared.gauges.threads.load(SeqCst);
                if !shared.spawn_failing.swap(true, SeqCst) {
                    log::error!(
                        "cannot start a worker thread ({running} running, at most {}): {e}; \
                         work waits for a running thread",
                        shared.config.max
                    );
                } else {
                    log::debug!("cannot start a worker thread: {e}");
                }
                false
            }
        }
    }

    /// Jobs waiting in the queue.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.shared.receiver.len()
    }

    /// Reads the queue's length from anywhere, without keeping the pool
    /// alive: 0 once it is gone.
    pub fn queue_length(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let shared = Arc::downgrade(&self.shared);
        move || shared.upgrade().map_or(0, |shared| shared.receiver.len())
    }

    /// Stops taking jobs: threads finish the queue, then exit.
    pub fn close(&mut self) {
        self.sender = None;
    }

    /// Waits until every thread has exited, or `deadline` passes; true when
    /// none is left.
    pub fn join(&self, deadline: Instant) -> bool {
        let shared = &self.shared;
        let mut guard = shared.exited.lock();
        while shared.gauges.threads.load(SeqCst) > 0 {
            if shared
                .exited_cv
                .wait_until(&mut guard, deadline)
                .timed_out()
            {
                return shared.gauges.threads.load(SeqCst) == 0;
            }
        }
        true
    }
}

impl<J: Send + 'static> Drop for Pool<J> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Starts a worker; the caller has already counted it in `gauges.threads`.
fn spawn_worker<J: Send + 'static>(shared: &Arc<Shared<J>>) -> std::io::Result<()> {
    let mut builder = thread::Builder::new().name(shared.config.name.clone());
    if let Some(size) = shared.config.stack_size {
        builder = builder.stack_size(size);
    }
    let worker = Arc::clone(shared);
    builder
        .spawn(move || work(&worker))
        .map(drop)
        .inspect_err(|_| {
            shared.gauges.threads.fetch_sub(1, SeqCst);
        })
}

fn work<J: Send + 'static>(shared: &Shared<J>) {
    let gauges = &shared.gauges;
    loop {
        let surplus = &shared.surplus.retiring;
        if surplus.load(Relaxed) > 0
            && surplus
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            if retire(shared) {
                break;
            }
            // At the core already: the rest of the count is stale.
            surplus.store(0, SeqCst);
        }
        gauges.idle.fetch_add(1, SeqCst);
        shared.slack.fetch_add(1, SeqCst);
        announce_room(shared);
        let next = wait_for_a_job(shared);
        let idle = gauges.idle.fetch_sub(1, SeqCst) - 1;
        match next {
            Ok(job) => {
                count_surplus(shared, idle);
                announce_room(shared);
                if catch_unwind(AssertUnwindSafe(|| (shared.run)(job))).is_err() {
                    log::error!("a job panicked outside its handler");
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if retire(shared) {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                gauges.threads.fetch_sub(1, SeqCst);
                break;
            }
        }
    }
    let _guard = shared.exited.lock();
    shared.exited_cv.notify_all();
}

/// Waits for a job; after an idle keep-alive, stops waiting only if no
/// submission counts on this thread (the slack stays above 0 without it).
fn wait_for_a_job<J>(shared: &Shared<J>) -> Result<J, RecvTimeoutError> {
    loop {
        match shared.receiver.recv_timeout(shared.config.keep_alive) {
            Err(RecvTimeoutError::Timeout) => {
                let left = shared
                    .slack
                    .fetch_update(SeqCst, SeqCst, |n| (n > 0).then(|| n - 1));
                if left.is_ok() {
                    return Err(RecvTimeoutError::Timeout);
                }
            }
            next => return next,
        }
    }
}

/// Notes that `idle` threads were idle when a job was taken; at the end of
/// a keep-alive window, marks the fewest seen for retirement. An atomic
/// minimum and a clock read per job; the window ends under a
/// compare-and-swap, so one thread does it.
fn count_surplus<J>(shared: &Shared<J>, idle: usize) {
    let surplus = &shared.surplus;
    surplus.fewest_idle.fetch_min(idle, SeqCst);
    let now = u64::try_from(surplus.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let window = u64::try_from(shared.config.keep_alive.as_nanos()).unwrap_or(u64::MAX);
    let start = surplus.window_start.load(Relaxed);
    if now.saturating_sub(start) < window
        || surplus
            .window_start
            .compare_exchange(start, now, SeqCst, Relaxed)
            .is_err()
    {
        return;
    }
    let fewest = surplus.fewest_idle.swap(idle, SeqCst);
    surplus.retiring.store(fewest, SeqCst);
}

/// After an idle keep-alive: leaves the pool if more than the core run and no
/// job was queued meanwhile. True when the thread has left the count.
fn retire<J>(shared: &Shared<J>) -> bool {
    let threads = &shared.gauges.threads;
    let core = shared.config.core;
    if threads
        .fetch_update(SeqCst, SeqCst, |n| (n > core).then(|| n - 1))
        .is_err()
    {
        return false;
    }
    // A job queued while this thread decided to go must not be stranded.
    if !shared.receiver.is_empty()
        && threads
            .fetch_update(SeqCst, SeqCst, |n| (n < shared.config.max).then_some(n + 1))
            .is_ok()
    {
        return false;
    }
    true
}

fn announce_room<J>(shared: &Shared<J>) {
    fence(SeqCst);
    (shared.on_room)();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;

    fn config(core: usize, max: usize, queue: usize, keep_alive_ms: u64) -> PoolConfig {
        PoolConfig {
            core,
            max,
            queue,
            keep_alive: Duration::from_millis(keep_alive_ms),
            name: "pool-test".into(),
            stack_size: None,
            max_explicit: true,
            blocking_messages_only: false,
        }
    }

    /// Submits `job`, trying again while the pool is full.
    fn submit_when_room<J: Send + 'static>(pool: &Pool<J>, mut job: J) {
        while let Err(back) = pool.submit(job) {
            job = back;
            thread::yield_now();
        }
    }

    fn wait_for(what: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if what() {
                return true;
            }
            thread::yield_now();
            thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn runs_every_job_and_joins() {
        let (done_tx, done_rx) = unbounded();
        let gauges = Arc::new(Gauges::default());
        let mut pool = Pool::start(
            config(2, 4, 16, 1000),
            gauges.clone(),
            move |n: u32| done_tx.send(n).unwrap(),
            || {},
        )
        .unwrap();
        for n in 0..100 {
            submit_when_room(&pool, n);
        }
        let mut seen: Vec<u32> = (0..100)
            .map(|_| done_rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        pool.close();
        assert!(pool.join(Instant::now() + Duration::from_secs(10)));
        assert_eq!(gauges.threads.load(SeqCst), 0);
    }

    #[test]
    fn grows_to_max_then_queues_then_refuses() {
        let (release_tx, release_rx) = unbounded::<()>();
        let (started_tx, started_rx) = unbounded::<()>();
        let gauges = Arc::new(Gauges::default());
        let mut pool = Pool::start(
            config(1, 3, 2, 60_000),
            gauges.clone(),
            move |_: u32| {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            },
            || {},
        )
        .unwrap();
        // Three jobs start on three threads (one core, two grown).
        for n in 0..3 {
            pool.submit(n).unwrap();
            started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(gauges.threads.load(SeqCst), 3);
        // Two more wait in the queue; the sixth is refused.
        pool.submit(3).unwrap();
        pool.submit(4).unwrap();
        assert_eq!(pool.queued(), 2);
        assert_eq!(pool.submit(5), Err(5));
        assert_eq!(gauges.threads.load(SeqCst), 3);
        for _ in 0..5 {
            release_tx.send(()).unwrap();
        }
        pool.close();
        assert!(pool.join(Instant::now() + Duration::from_secs(10)));
    }

    #[test]
    fn extra_threads_retire_to_the_core() {
        let (release_tx, release_rx) = unbounded::<()>();
        let (started_tx, started_rx) = unbounded::<()>();
        let gauges = Arc::new(Gauges::default());
        let pool = Pool::start(
            config(1, 8, 0, 50),
            gauges.clone(),
            move |_: u32| {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            },
            || {},
        )
        .unwrap();
        for n in 0..8 {
            submit_when_room(&pool, n);
        }
        for _ in 0..8 {
            started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert_eq!(gauges.threads.load(SeqCst), 8);
        for _ in 0..8 {
            release_tx.send(()).unwrap();
        }
        assert!(wait_for(|| gauges.threads.load(SeqCst) == 1));
        assert!(wait_for(|| gauges.idle.load(SeqCst) == 1));
    }

    /// Under a steady trickle every idle thread takes its turn, so none
    /// waits a whole keep-alive: the threads of a burst still go, as the
    /// windows find them never needed (the soak's chat server kept 29).
    #[test]
    fn extra_threads_retire_under_a_steady_trickle_too() {
        let (release_tx, release_rx) = unbounded::<()>();
        let (started_tx, started_rx) = unbounded::<()>();
        let gauges = Arc::new(Gauges::default());
        let pool = Arc::new(
            Pool::start(
                config(1, 8, 0, 100),
                gauges.clone(),
                move |blocks: bool| {
                    if blocks {
                        started_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                    }
                },
                || {},
            )
            .unwrap(),
        );
        for _ in 0..8 {
            submit_when_room(&pool, true);
        }
        for _ in 0..8 {
            started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        for _ in 0..8 {
            release_tx.send(()).unwrap();
        }
        // A quick job every 2 ms, while the pool is watched.
        let stop = Arc::new(AtomicBool::new(false));
        let trickle = {
            let (pool, stop) = (Arc::clone(&pool), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(SeqCst) {
                    let _ = pool.submit(false);
                    thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let shrank = wait_for(|| gauges.threads.load(SeqCst) <= 2);
        stop.store(true, SeqCst);
        trickle.join().unwrap();
        assert!(shrank, "{} threads", gauges.threads.load(SeqCst));
    }

    // Every job that blocks gets its own thread while fewer than the
    // maximum run, also when one arrives as a thread takes the one before:
    // the pool used to count that thread idle a moment too long, and the
    // last of a burst of long jobs waited for one of the others to end.
    #[test]
    fn a_burst_of_long_jobs_gets_a_thread_each() {
        const JOBS: usize = 1000;
        for round in 0..5 {
            let (release_tx, release_rx) = unbounded::<()>();
            let (started_tx, started_rx) = unbounded::<()>();
            let gauges = Arc::new(Gauges::default());
            let mut pool = Pool::start(
                config(2, JOBS + 10, 16, 60_000),
                gauges.clone(),
                move |()| {
                    let _ = started_tx.send(());
                    let _ = release_rx.recv();
                },
                || {},
            )
            .unwrap();
            for _ in 0..JOBS {
                pool.submit(()).unwrap();
                // Jobs as far apart as a thread takes to wake: the moment
                // the race was in.
                let pause = Instant::now();
                while pause.elapsed() < Duration::from_micros(10 * (round + 1)) {}
            }
            for started in 0..JOBS {
                assert!(
                    started_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
                    "round {round}: {started} of {JOBS} jobs started; {} threads, {} queued",
                    gauges.threads.load(SeqCst),
                    pool.queued()
                );
            }
            drop(release_tx);
            pool.close();
            assert!(pool.join(Instant::now() + Duration::from_secs(10)));
        }
    }

    #[test]
    fn a_panicking_job_keeps_the_thread() {
        let (done_tx, done_rx) = unbounded();
        let gauges = Arc::new(Gauges::default());
        let pool = Pool::start(
            config(1, 1, 4, 60_000),
            gauges.clone(),
            move |n: u32| {
                if n == 0 {
                    panic!("job 0 panics on purpose");
                }
                done_tx.send(n).unwrap();
            },
            || {},
        )
        .unwrap();
        pool.submit(0).unwrap();
        pool.submit(1).unwrap();
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)), Ok(1));
        assert_eq!(gauges.threads.load(SeqCst), 1);
    }
}
