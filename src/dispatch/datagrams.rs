//! The threads mode of a datagram server: the pool's workers take turns
//! receiving on the server's socket (leader/followers), and each handles
//! and answers what it received on its own thread.
//!
//! One worker, the leader, waits in the receive call; the others, the
//! followers, wait on a condition variable. What the leader does with a
//! datagram depends on how long the handler has been taking:
//!
//! - **Quick handlers** (the last datagrams took under [`CHEAP`] each): the
//!   leader handles what it received and receives again, as a hand-written
//!   `recv_from`/`send_to` loop does: no other thread wakes. A receive
//!   takes one datagram (`recvfrom`) while they come one by one; once
//!   datagrams are found waiting, up to [`BATCH`] in one `recvmmsg`: the
//!   first is handled at once, the others go to the queue, for whichever
//!   worker is free first (this one next, unless the first handler blocks).
//!   A leader that hardly waits in its receives wakes a follower to receive
//!   beside it; one that waits more than it works steps down while another
//!   leads.
//! - **Slow handlers** (or not yet measured): the leader first promotes a
//!   follower (or starts a thread, up to `max_threads`), then handles its
//!   datagram while the new leader receives: a slow request never holds up
//!   the next one.
//! - **A quick handler that blocks after all**: one follower, the standby,
//!   looks every [`STALL`] while datagrams flow; when nobody has received
//!   for two looks while a leader handles, it takes over the receiving.
//!
//! The pool stays bounded: with every thread busy and `max_threads` reached,
//! one more thread receives, and what it receives waits in the queue
//! (`Options::queue` places) for the first worker that finishes, or is
//! dropped and counted when the queue is full, as with a pool fed by a
//! receiving thread; a follower serves the queue before it parks. A
//! datagram that `verify_request` refuses, or one larger than
//! [`MAX_DATAGRAM`] (`MSG_TRUNC`), is dropped and counted. The pool keeps at least two threads (one receives, one stands
//! by); followers beyond the core retire after the keep-alive.
//!
//! Shutting down closes the socket for reading, which wakes the leaders;
//! datagrams already received (being handled or queued) are served before
//! the workers exit.

use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{
    fence, AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst,
};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex, MutexGuard};
use socket2::{SockAddr, SockAddrStorage};

use super::limit::{ThreadLimit, ThreadsError};
use super::private::Running;
use super::PoolConfig;
use crate::request::{DatagramRequest, RequestHandler};
use crate::server::lifecycle::Lifecycle;
use crate::server::stats::{Counters, Gauges};
use crate::transport::listener::MAX_DATAGRAM;
use crate::transport::{Address, Datagram, Listener, Transport};

/// The most datagrams one receive takes.
pub(crate) const BATCH: usize = 8;
/// A handler that answers a datagram within this, on average, is quick:
/// its leader keeps receiving itself, and takes datagrams in batches.
const CHEAP: Duration = Duration::from_micros(50);
/// The most one datagram's time counts in the average, in times [`CHEAP`].
const OUTLIER: u64 = 8;
/// No datagram handled yet.
const UNMEASURED: u64 = u64::MAX;
/// How often the standby looks for a leader stuck in a quick handler that
/// blocked, while datagrams flow.
const STALL: Duration = Duration::from_millis(5);
/// Looks without a datagram after which the standby sleeps until the next
/// datagram (a second's worth).
const QUIET_LOOKS: u32 = 200;
/// Receives over which a quick leader weighs its time waiting against its
/// time handling.
const WINDOW: u32 = 64;
/// A quick leader that waited less than this share of its time handling
/// (1/16) is saturated: a follower receives beside it.
const SATURATED: u32 = 16;
/// A receive that returned within this found a datagram waiting (one that
/// waits for the next to arrive sleeps and wakes, which takes longer).
const NO_WAIT: Duration = Duration::from_micros(4);
/// How long a worker waits after a receive failed for another reason than
/// a timeout (out of memory, say), so as not to spin.
const BACKOFF: Duration = Duration::from_millis(100);

/// A datagram server's workers, receiving on its socket.
pub(crate) struct Receivers<H> {
    shared: Arc<Shared<H>>,
}

struct Shared<H> {
    lifecycle: Arc<Lifecycle<H>>,
    listener: Arc<Listener>,
    config: PoolConfig,
    /// Datagrams received while every other thread was busy, waiting for
    /// the first to finish.
    queue: (Sender<Datagram>, Receiver<Datagram>),
    /// Set once no more datagrams are taken.
    closed: AtomicBool,
    /// Whether serving has begun (workers wait for it).
    begun: Mutex<bool>,
    /// Notified when serving begins, when the workers are closed, and when
    /// a worker exits.
    changed: Condvar,
    /// Who leads and who follows.
    roles: Mutex<Roles>,
    /// Followers wait here for an offer to lead.
    followers: Condvar,
    /// `roles.leaders`, readable without the lock (written under it).
    leaders: AtomicUsize,
    /// `roles.parked`, readable without the lock (written under it).
    parked: AtomicUsize,
    /// Leaders inside a receive call.
    receiving: AtomicUsize,
    /// Receives that returned datagrams, for the standby to see progress.
    received: AtomicU64,
    /// The standby sleeps until the next datagram.
    standby_asleep: AtomicBool,
    /// The handler has answered its last datagrams quickly.
    quick: AtomicBool,
    /// The running average of the time a datagram takes to handle.
    handling_nanos: AtomicU64,
}

#[derive(Debug, Default)]
struct Roles {
    /// Threads in the leader role (receiving, or handling a quick batch).
    leaders: usize,
    /// Followers waiting for an offer, the standby included.
    parked: usize,
    /// Offers to lead made to parked followers and not yet taken.
    offers: usize,
    /// A follower is the standby.
    standby: bool,
}

/// What a worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Leader,
    Follower,
}

impl<H> Receivers<H>
where
    H: RequestHandler<DatagramRequest>,
{
    /// Starts the pool's core threads, which wait until
    /// [`begin`](Running::begin) before they receive.
    pub fn start(lifecycle: &Arc<Lifecycle<H>>, listener: &Arc<Listener>) -> io::Result<Self> {
        let options = &lifecycle.control().options;
        let mut config = PoolConfig::of(options);
        config.fit_to(&ThreadLimit::now())?;
        // One thread receives, another stands by (within the maximum, and
        // the one more thread that receives while all the others are busy).
        config.core = config.core.max(2).min(config.max + 1);
        let queue = bounded(config.queue);
        let shared = Arc::new(Shared {
            lifecycle: Arc::clone(lifecycle),
            listener: Arc::clone(listener),
            config,
            queue,
            closed: AtomicBool::new(false),
            begun: Mutex::new(false),
            changed: Condvar::new(),
            roles: Mutex::new(Roles::default()),
            followers: Condvar::new(),
            leaders: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            receiving: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            standby_asleep: AtomicBool::new(false),
            quick: AtomicBool::new(false),
            handling_nanos: AtomicU64::new(UNMEASURED),
        });
        let receivers = Receivers { shared };
        let core = receivers.shared.config.core;
        for n in 0..core {
            let role = if n == 0 { Role::Leader } else { Role::Follower };
            if role == Role::Leader {
                receivers
                    .shared
                    .roles
                    .lock()
                    .add_leader(&receivers.shared.leaders);
            }
            receivers.shared.gauges().threads.fetch_add(1, SeqCst);
            spawn_worker(&receivers.shared, role).map_err(|e| {
                ThreadsError::spawn(&format!("datagram worker thread {} of {core}", n + 1), &e)
            })?;
        }
        Ok(receivers)
    }
}

impl<T, H> Running<T> for Receivers<H>
where
    T: Transport,
    T: crate::transport::private::Transport<Arrival = Datagram>,
    H: RequestHandler<DatagramRequest>,
{
    fn submit(&self, datagram: Datagram) -> Result<(), Datagram> {
        self.shared.enqueue(datagram)
    }

    fn begin(&self) -> bool {
        *self.shared.begun.lock() = true;
        self.shared.changed.notify_all();
        true
    }

    fn close(&mut self) {
        self.shared.close();
    }

    fn join(&self, deadline: Instant) -> bool {
        let shared = &self.shared;
        let threads = &shared.gauges().threads;
        let mut guard = shared.begun.lock();
        while threads.load(SeqCst) > 0 {
            if shared.changed.wait_until(&mut guard, deadline).timed_out() {
                return threads.load(SeqCst) == 0;
            }
        }
        true
    }
}

impl<H> Drop for Receivers<H> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl Roles {
    fn add_leader(&mut self, mirror: &AtomicUsize) {
        self.leaders += 1;
        mirror.store(self.leaders, SeqCst);
    }

    fn remove_leader(&mut self, mirror: &AtomicUsize) {
        self.leaders -= 1;
        mirror.store(self.leaders, SeqCst);
    }
}

impl<H> Shared<H> {
    fn gauges(&self) -> &Gauges {
        &self.lifecycle.control().gauges
    }

    fn counters(&self) -> &Counters {
        &self.lifecycle.control().counters
    }

    fn is_closed(&self) -> bool {
        self.closed.load(SeqCst)
    }

    /// Takes no more datagrams: wakes every worker waiting in a receive
    /// (they find `closed`), every follower, and those that wait for
    /// serving to begin.
    fn close(&self) {
        if self.closed.swap(true, SeqCst) {
            return;
        }
        // A datagram socket answers ENOTCONN, but shuts down all the same.
        let _ = self.listener.socket.shutdown(std::net::Shutdown::Read);
        drop(self.roles.lock());
        self.followers.notify_all();
        let _guard = self.begun.lock();
        self.changed.notify_all();
    }

    /// Waits until serving begins; false when closed first.
    fn wait_begun(&self) -> bool {
        let mut begun = self.begun.lock();
        while !*begun && !self.is_closed() {
            self.changed.wait(&mut begun);
        }
        !self.is_closed()
    }

    /// Puts an admitted datagram in the queue, or gives it back when full.
    fn enqueue(&self, datagram: Datagram) -> Result<(), Datagram> {
        let in_flight = &self.counters().in_flight;
        in_flight.fetch_add(1, SeqCst);
        self.queue.0.try_send(datagram).map_err(|e| {
            in_flight.fetch_sub(1, SeqCst);
            e.into_inner()
        })
    }

    /// Makes one more leader: a parked follower (woken; `spare` of them
    /// are left parked), or with `may_start` a new thread while fewer than
    /// the maximum (plus the one that receives while all the others are
    /// busy) run; false when neither can be had. With `hand_over`, the
    /// calling leader steps out of the role in the same step (so that no
    /// other leader, seeing two, steps out beside it in between and leaves
    /// nobody receiving).
    fn promote(self: &Arc<Self>, spare: usize, may_start: bool, hand_over: bool) -> bool
    where
        H: RequestHandler<DatagramRequest>,
    {
        let mut roles = self.roles.lock();
        if roles.parked > roles.offers + spare {
            roles.offers += 1;
            if hand_over {
                roles.remove_leader(&self.leaders);
            }
            drop(roles);
            self.followers.notify_one();
            return true;
        }
        if !may_start {
            return false;
        }
        let threads = &self.gauges().threads;
        if threads
            .fetch_update(SeqCst, SeqCst, |n| {
                (n < self.config.max + 1).then_some(n + 1)
            })
            .is_err()
        {
            return false;
        }
        if !hand_over {
            roles.add_leader(&self.leaders);
        }
        drop(roles);
        match spawn_worker(self, Role::Leader) {
            Ok(()) => true,
            Err(e) => {
                log::error!("cannot start a worker thread: {e}");
                if !hand_over {
                    self.roles.lock().remove_leader(&self.leaders);
                }
                false
            }
        }
    }

    /// Steps out of the leader role if another thread leads too; true if
    /// it did.
    fn step_out_beside_another(&self) -> bool {
        if self.leaders.load(SeqCst) <= 1 {
            return false;
        }
        let mut roles = self.roles.lock();
        if roles.leaders <= 1 {
            return false;
        }
        roles.remove_leader(&self.leaders);
        true
    }

    /// After handling: a leader stays one unless another leads and its
    /// receive found nothing waiting behind what it took (`keep` false); a
    /// thread that had promoted another leads again only if nobody leads
    /// nor is about to.
    fn after_handling(&self, was_leader: bool, keep: bool) -> Role {
        if was_leader && self.leaders.load(SeqCst) <= 1 {
            return Role::Leader;
        }
        let mut roles = self.roles.lock();
        if was_leader {
            if !keep && roles.leaders > 1 {
                roles.remove_leader(&self.leaders);
                return Role::Follower;
            }
            return Role::Leader;
        }
        if roles.leaders + roles.offers == 0 {
            roles.add_leader(&self.leaders);
            return Role::Leader;
        }
        Role::Follower
    }

    /// Waits as a follower until offered to lead (or, as the standby,
    /// until a leader seems stuck), or closed, or retired after the
    /// keep-alive (`None`).
    fn follow(&self) -> Option<Role> {
        let mut roles = self.roles.lock();
        roles.parked += 1;
        self.parked.store(roles.parked, SeqCst);
        self.gauges().idle.fetch_add(1, SeqCst);
        // A leader that queued a datagram when nobody was parked, and read
        // `parked` before this thread counted itself: serve it rather than
        // wait (the leader, seeing a parked follower, offers it the role).
        fence(SeqCst);
        let role = if self.queue.1.is_empty() {
            self.wait_for_offer(&mut roles)
        } else {
            Some(Role::Follower)
        };
        roles.parked -= 1;
        self.parked.store(roles.parked, SeqCst);
        self.gauges().idle.fetch_sub(1, SeqCst);
        role
    }

    fn wait_for_offer(&self, roles: &mut MutexGuard<'_, Roles>) -> Option<Role> {
        let mut standby: Option<Standby> = None;
        loop {
            if self.is_closed() {
                if standby.is_some() {
                    roles.standby = false;
                }
                return Some(Role::Follower);
            }
            if roles.offers > 0 {
                roles.offers -= 1;
                roles.add_leader(&self.leaders);
                if standby.is_some() {
                    roles.standby = false;
                }
                return Some(Role::Leader);
            }
            if standby.is_none() && !roles.standby {
                roles.standby = true;
                standby = Some(Standby::new(self.received.load(SeqCst)));
            }
            match &mut standby {
                Some(look) => {
                    if look.asleep {
                        let timed_out = self
                            .followers
                            .wait_for(roles, self.config.keep_alive)
                            .timed_out();
                        if timed_out {
                            if roles.offers == 0 && self.retire() {
                                roles.standby = false;
                                return None;
                            }
                            // Still quiet: sleep on.
                            continue;
                        }
                        look.wake(self.received.load(SeqCst));
                        continue;
                    }
                    self.followers.wait_for(roles, STALL);
                    let received = self.received.load(SeqCst);
                    let nobody_receives = self.receiving.load(SeqCst) == 0;
                    // Only a leader in a quick handler leaves the socket
                    // unattended (a slow one promotes first).
                    let handling = self.quick.load(SeqCst) && roles.leaders > 0;
                    match look.look(received, nobody_receives, handling) {
                        Look::Stuck => {
                            log::debug!("a datagram handler blocks; another worker receives");
                            roles.standby = false;
                            // Another follower becomes the standby.
                            self.followers.notify_one();
                            roles.add_leader(&self.leaders);
                            return Some(Role::Leader);
                        }
                        Look::Quiet => {
                            look.asleep = true;
                            self.standby_asleep.store(true, SeqCst);
                        }
                        Look::Fine => {}
                    }
                }
                None => {
                    let timed_out = self
                        .followers
                        .wait_for(roles, self.config.keep_alive)
                        .timed_out();
                    if timed_out && roles.offers == 0 && self.retire() {
                        return None;
                    }
                }
            }
        }
    }

    /// Learns from the time a datagram took to handle whether the handler
    /// is quick: a running average over about the last eight, in which one
    /// datagram counts for at most [`OUTLIER`] times [`CHEAP`] (a thread
    /// preempted in the middle of a quick handler is no reason to change
    /// ways; a handler that blocks for long is what the standby is for).
    fn learn(&self, each: Duration) {
        let cheap = CHEAP.as_nanos() as u64;
        let each = u64::try_from(each.as_nanos()).map_or(u64::MAX, |n| n.min(OUTLIER * cheap));
        let average = self.handling_nanos.load(Relaxed);
        let average = if average == UNMEASURED {
            each
        } else {
            average - average / 8 + each / 8
        };
        self.handling_nanos.store(average, Relaxed);
        let quick = average <= cheap;
        if self.quick.load(Relaxed) != quick {
            self.quick.store(quick, Relaxed);
        }
    }

    /// Wakes the standby if it sleeps: datagrams flow again.
    fn rouse_standby(&self) {
        if self.standby_asleep.load(Relaxed) && self.standby_asleep.swap(false, SeqCst) {
            drop(self.roles.lock());
            self.followers.notify_all();
        }
    }

    /// After a follower's keep-alive: leaves if more than the core run.
    /// True when the thread has left the count.
    fn retire(&self) -> bool {
        let core = self.config.core;
        self.gauges()
            .threads
            .fetch_update(SeqCst, SeqCst, |n| (n > core).then(|| n - 1))
            .is_ok()
    }

    /// Serves every queued datagram.
    fn serve_queue(&self)
    where
        H: RequestHandler<DatagramRequest>,
    {
        if self.queue.1.is_empty() {
            return;
        }
        while let Ok(datagram) = self.queue.1.try_recv() {
            self.lifecycle.serve_datagram(datagram);
        }
    }
}

/// The standby's view of progress, from one look to the next.
struct Standby {
    received: u64,
    /// Looks in a row at which nobody received while a leader handled.
    stuck: u32,
    /// Looks in a row without a datagram.
    quiet: u32,
    asleep: bool,
}

enum Look {
    Fine,
    /// A leader handles and nobody has received for two looks.
    Stuck,
    /// No datagram for a while: time to sleep until the next.
    Quiet,
}

impl Standby {
    fn new(received: u64) -> Self {
        Standby {
            received,
            stuck: 0,
            quiet: 0,
            asleep: false,
        }
    }

    fn wake(&mut self, received: u64) {
        *self = Standby::new(received);
    }

    /// One look: `received` receives so far, whether nobody is in a
    /// receive, whether a leader may be in a quick handler.
    fn look(&mut self, received: u64, nobody_receives: bool, handling: bool) -> Look {
        let moved = received != self.received;
        self.received = received;
        self.stuck = if !moved && nobody_receives && handling {
            self.stuck + 1
        } else {
            0
        };
        self.quiet = if moved { 0 } else { self.quiet + 1 };
        if self.stuck >= 2 {
            Look::Stuck
        } else if self.quiet >= QUIET_LOOKS && !nobody_receives {
            Look::Quiet
        } else {
            Look::Fine
        }
    }
}

/// Starts a worker in `role`; the caller has already counted it in
/// `gauges.threads` (and as a leader).
fn spawn_worker<H>(shared: &Arc<Shared<H>>, role: Role) -> io::Result<()>
where
    H: RequestHandler<DatagramRequest>,
{
    let mut builder = thread::Builder::new().name(shared.config.name.clone());
    if let Some(size) = shared.config.stack_size {
        builder = builder.stack_size(size);
    }
    let worker = Arc::clone(shared);
    builder
        .spawn(move || {
            if work(&worker, role) == Exit::Counted {
                worker.gauges().threads.fetch_sub(1, SeqCst);
            }
            let _guard = worker.begun.lock();
            worker.changed.notify_all();
        })
        .map(drop)
        .inspect_err(|_| {
            shared.gauges().threads.fetch_sub(1, SeqCst);
        })
}

/// What a leader remembers from one receive to the next: where its time
/// went over the last receives, to tell whether it is saturated (a
/// follower should help) or, beside another leader, mostly waiting (it
/// should step down).
#[derive(Debug, Default)]
struct Load {
    receives: u32,
    waiting: Duration,
    handling: Duration,
    /// The last receive failed (logged once per run of failures).
    failing: bool,
    /// The last receive found datagrams waiting (it took several, or
    /// returned without waiting): the next one takes a batch. Otherwise it
    /// takes one, since a batch's receive looks for a second datagram
    /// before it returns, a cost for nothing when they come one by one.
    backlog: bool,
    /// When the last handling ended, if this thread has received nothing
    /// since: the start of its next wait.
    mark: Option<Instant>,
}

impl Load {
    /// Adds one receive; at the end of a window, says whether the leader
    /// was saturated (`Some(true)`) or waited more than it worked
    /// (`Some(false)`).
    fn add(&mut self, waiting: Duration, handling: Duration) -> Option<bool> {
        self.receives += 1;
        self.waiting += waiting;
        self.handling += handling;
        if self.receives < WINDOW {
            return None;
        }
        let verdict = if self.waiting < self.handling / SATURATED {
            Some(true)
        } else if self.waiting > self.handling {
            Some(false)
        } else {
            None
        };
        *self = Load {
            failing: self.failing,
            backlog: self.backlog,
            mark: self.mark,
            ..Load::default()
        };
        verdict
    }
}

/// How a worker left.
#[derive(Debug, PartialEq, Eq)]
enum Exit {
    /// Still counted in the pool's threads.
    Counted,
    /// Retired: already taken out of the count.
    Retired,
}

/// A worker's life, from `role`, until it leaves the pool.
fn work<H>(shared: &Arc<Shared<H>>, mut role: Role) -> Exit
where
    H: RequestHandler<DatagramRequest>,
{
    if !shared.wait_begun() {
        return Exit::Counted;
    }
    let mut batch = None;
    let mut load = Load::default();
    loop {
        if shared.is_closed() {
            shared.serve_queue();
            return Exit::Counted;
        }
        role = match role {
            Role::Follower => {
                // Queued while every worker was busy: this one is free now.
                shared.serve_queue();
                match shared.follow() {
                    Some(Role::Leader) => {
                        // What waits behind a handler that blocked first.
                        shared.serve_queue();
                        Role::Leader
                    }
                    Some(role) => role,
                    None => return Exit::Retired,
                }
            }
            Role::Leader => {
                let batch = batch.get_or_insert_with(Batch::new);
                lead(shared, batch, &mut load)
            }
        };
    }
}

/// One receive of a leader, and what follows it; the role after.
fn lead<H>(shared: &Arc<Shared<H>>, batch: &mut Batch, load: &mut Load) -> Role
where
    H: RequestHandler<DatagramRequest>,
{
    let control = shared.lifecycle.control();
    let counters = &control.counters;
    let idle = &control.gauges.idle;
    // A quick handler runs here, on the leader, only while a follower
    // stands by to take over if it blocks after all.
    let quick = shared.quick.load(Relaxed) && shared.parked.load(Relaxed) > 0;
    let limit = if quick && load.backlog { BATCH } else { 1 };
    idle.fetch_add(1, Relaxed);
    shared.receiving.fetch_add(1, SeqCst);
    // A leader that just handled receives from when it ended: one clock
    // reading per datagram for the pool's own bookkeeping.
    let waiting = load.mark.take().unwrap_or_else(Instant::now);
    let received = batch.receive(shared.listener.socket.as_raw_fd(), limit);
    let received_at = Instant::now();
    let waited = received_at.saturating_duration_since(waiting);
    shared.receiving.fetch_sub(1, SeqCst);
    idle.fetch_sub(1, Relaxed);
    if shared.is_closed() {
        // Taken after the shutdown began: not served, as if it had stayed
        // in the socket.
        return Role::Leader;
    }
    let count = match received {
        Ok(count) => {
            if mem::take(&mut load.failing) {
                log::warn!("receiving datagrams again");
            }
            load.backlog = count > 1 || waited < NO_WAIT;
            count
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Role::Leader,
        Err(e) => {
            if !mem::replace(&mut load.failing, true) {
                log::error!("cannot receive a datagram: {e}; retrying");
            }
            thread::sleep(BACKOFF);
            return Role::Leader;
        }
    };
    shared.received.fetch_add(1, Relaxed);
    shared.rouse_standby();
    control.note_arrival();
    if quick {
        // Handle here and receive again. A leader that hardly waits is
        // saturated: another receives beside it; one that waits more than
        // it works, while another leads, steps down.
        let (handling, ended) = handle(shared, batch, count, received_at);
        load.mark = Some(ended);
        shared.serve_queue();
        let keep = match load.add(waited, handling) {
            Some(true) => {
                if shared.leaders.load(Relaxed) == 1 {
                    // A helper, never the standby.
                    shared.promote(1, false, false);
                }
                true
            }
            Some(false) => false,
            None => true,
        };
        let role = shared.after_handling(true, keep);
        if role == Role::Follower {
            *load = Load::default();
        }
        return role;
    }
    // Slow or not yet measured: someone else receives while this thread
    // handles: another leader if there is one, else one promoted or
    // started. With nobody to promote and no thread to start, every thread
    // is busy: this one keeps receiving, and what it received waits in the
    // queue, or is dropped when the queue is full.
    if shared.step_out_beside_another() {
        let _ = handle(shared, batch, count, received_at);
        shared.serve_queue();
        return shared.after_handling(false, false);
    }
    if !shared.promote(0, true, true) {
        for i in 0..count {
            let Some(peer) = admissible(shared, batch, i) else {
                continue;
            };
            if let Err(datagram) = shared.enqueue(shared.listener.datagram(batch.data(i), peer)) {
                log::debug!("{}: queue full, datagram dropped", datagram.peer);
                Counters::bump(&counters.dropped);
            }
        }
        // A follower that parked since the promotion failed serves them.
        fence(SeqCst);
        if shared.parked.load(SeqCst) > 0 {
            shared.promote(0, false, false);
        }
        return Role::Leader;
    }
    let _ = handle(shared, batch, count, received_at);
    shared.serve_queue();
    shared.after_handling(false, false)
}

/// The sender of the `i`th datagram of the last receive, if it may be
/// served: a datagram larger than [`MAX_DATAGRAM`] (which came truncated)
/// and one that `verify_request` refuses are dropped and counted.
fn admissible<H>(shared: &Shared<H>, batch: &Batch, i: usize) -> Option<Address>
where
    H: RequestHandler<DatagramRequest>,
{
    let peer = batch.peer(i);
    if let Some(size) = batch.oversized(i) {
        shared.counters().drop_oversized(&peer, size);
        return None;
    }
    if !shared.lifecycle.handler.verify_request(&peer) {
        log::debug!("{peer}: refused by verify_request");
        Counters::bump(&shared.counters().dropped);
        return None;
    }
    Some(peer)
}

/// Admits the `count` datagrams of the last receive, received at
/// `received_at`, and serves the first on this thread; learns from how long
/// it took whether the handler is quick. Those behind the first wait in the
/// queue rather than in this thread's batch (or are dropped and counted
/// when it is full), to be served next by whichever worker is free first
/// (this one, with [`Shared::serve_queue`], after the first): a first
/// handler that blocks holds up only its own datagram, since the worker
/// that takes over the receiving serves the queue before it receives.
/// Returns the time it took, and when it ended.
fn handle<H>(
    shared: &Shared<H>,
    batch: &Batch,
    count: usize,
    received_at: Instant,
) -> (Duration, Instant)
where
    H: RequestHandler<DatagramRequest>,
{
    let mut first = None;
    for i in 0..count {
        let Some(peer) = admissible(shared, batch, i) else {
            continue;
        };
        let datagram = shared.listener.datagram(batch.data(i), peer);
        if first.is_none() {
            first = Some(datagram);
        } else if let Err(datagram) = shared.enqueue(datagram) {
            log::debug!("{}: queue full, datagram dropped", datagram.peer);
            Counters::bump(&shared.counters().dropped);
        }
    }
    let Some(first) = first else {
        return (Duration::ZERO, received_at);
    };
    shared.counters().in_flight.fetch_add(1, SeqCst);
    shared.lifecycle.serve_datagram(first);
    let ended = Instant::now();
    let took = ended.saturating_duration_since(received_at);
    shared.learn(took);
    (took, ended)
}

/// What one receive call fills: up to [`BATCH`] datagrams, each with its
/// sender's address. Allocated once per worker; pointers into its own
/// boxes, so it stays on the worker's thread.
struct Batch {
    /// One whole datagram per slot.
    buffers: Box<[MaybeUninit<u8>]>,
    names: Box<[SockAddrStorage]>,
    /// Where each slot is.
    iovecs: Box<[libc::iovec]>,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    headers: Box<[libc::mmsghdr]>,
    /// What the last receive filled: bytes and address length per slot.
    lengths: [(usize, libc::socklen_t); BATCH],
}

impl Batch {
    fn new() -> Self {
        // Large enough that the allocator maps it fresh: pages a datagram
        // never reaches are never touched.
        let mut buffers = vec![MaybeUninit::uninit(); BATCH * MAX_DATAGRAM].into_boxed_slice();
        let mut names: Box<[SockAddrStorage]> =
            (0..BATCH).map(|_| SockAddrStorage::zeroed()).collect();
        let iovecs: Box<[libc::iovec]> = buffers
            .chunks_mut(MAX_DATAGRAM)
            .map(|slot| libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            })
            .collect();
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let headers = {
            let mut iovecs_ptr = iovecs.as_ptr();
            let headers: Box<[libc::mmsghdr]> = names
                .iter_mut()
                .map(|name| {
                    // SAFETY: all zeros is a valid msghdr (no name, no
                    // buffers, no control data); the fields are set below.
                    let mut header: libc::mmsghdr = unsafe { mem::zeroed() };
                    header.msg_hdr.msg_name = (name as *mut SockAddrStorage).cast();
                    header.msg_hdr.msg_iov = iovecs_ptr.cast_mut();
                    header.msg_hdr.msg_iovlen = 1;
                    // SAFETY: one past the last iovec at most (there are
                    // BATCH of them and BATCH names).
                    iovecs_ptr = unsafe { iovecs_ptr.add(1) };
                    header
                })
                .collect();
            headers
        };
        Batch {
            buffers,
            names,
            iovecs,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            headers,
            lengths: [(0, 0); BATCH],
        }
    }

    /// Waits for a datagram and takes it, with those that wait behind it
    /// (up to `limit`); how many it took.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn receive(&mut self, fd: RawFd, limit: usize) -> io::Result<usize> {
        if limit <= 1 {
            return self.receive_one(fd);
        }
        let limit = limit.min(BATCH);
        let name_len = mem::size_of::<SockAddrStorage>() as libc::socklen_t;
        for header in &mut self.headers[..limit] {
            header.msg_hdr.msg_namelen = name_len;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
        // SAFETY: the headers point at this batch's own names, iovecs and
        // buffers, which live as long as it; `limit` is within them.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                limit as libc::c_uint,
                // MSG_TRUNC: a datagram larger than its slot reports its
                // real size, to be dropped rather than served cut.
                (libc::MSG_WAITFORONE | libc::MSG_TRUNC) as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (length, header) in self.lengths.iter_mut().zip(&self.headers[..n]) {
            *length = (header.msg_len as usize, header.msg_hdr.msg_namelen);
        }
        Ok(n)
    }

    /// Waits for one datagram and takes it, with `recvfrom` (cheaper than a
    /// `recvmmsg` of one); on Linux a larger one than its slot reports its
    /// real size (`MSG_TRUNC`).
    fn receive_one(&mut self, fd: RawFd) -> io::Result<usize> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let flags = libc::MSG_TRUNC;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let flags = 0;
        let mut name_len = mem::size_of::<SockAddrStorage>() as libc::socklen_t;
        // SAFETY: the first slot and name are this batch's own.
        let n = unsafe {
            libc::recvfrom(
                fd,
                self.iovecs[0].iov_base,
                self.iovecs[0].iov_len,
                flags,
                (&mut self.names[0] as *mut SockAddrStorage).cast(),
                &mut name_len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.lengths[0] = (n as usize, name_len);
        Ok(1)
    }

    /// Waits for one datagram and takes it.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn receive(&mut self, fd: RawFd, _limit: usize) -> io::Result<usize> {
        self.receive_one(fd)
    }

    /// The `i`th datagram of the last receive.
    fn data(&self, i: usize) -> &[u8] {
        let len = self.lengths[i].0.min(MAX_DATAGRAM);
        let start = i * MAX_DATAGRAM;
        // SAFETY: the receive initialised the first `len` bytes of slot i.
        unsafe {
            std::slice::from_raw_parts(self.buffers[start..start + len].as_ptr().cast::<u8>(), len)
        }
    }

    /// The real size of the `i`th datagram of the last receive when it was
    /// larger than its slot (and so came truncated).
    fn oversized(&self, i: usize) -> Option<usize> {
        let len = self.lengths[i].0;
        (len > MAX_DATAGRAM).then_some(len)
    }

    /// The sender of the `i`th datagram of the last receive.
    fn peer(&self, i: usize) -> Address {
        let name_len = self.lengths[i].1;
        if (name_len as usize) < mem::size_of::<libc::sa_family_t>() {
            // A Unix datagram from a socket without a name.
            return Address::Unix(None);
        }
        // SAFETY: a bitwise copy of the address the receive wrote, and the
        // length it gave.
        let storage = unsafe { std::ptr::read(&self.names[i]) };
        Address::from_sockaddr(&unsafe { SockAddr::new(storage, name_len) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn a_batch_takes_every_waiting_datagram_with_its_sender() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        a.send_to(b"one", to).unwrap();
        b.send_to(b"", to).unwrap();
        a.send_to(&[7u8; 1000], to).unwrap();
        let mut batch = Batch::new();
        let mut got = Vec::new();
        while got.len() < 3 {
            let n = batch.receive(server.as_raw_fd(), BATCH).unwrap();
            for i in 0..n {
                got.push((batch.data(i).to_vec(), batch.peer(i)));
            }
        }
        let from_a = Address::Inet(a.local_addr().unwrap());
        let from_b = Address::Inet(b.local_addr().unwrap());
        assert_eq!(got[0], (b"one".to_vec(), from_a.clone()));
        assert_eq!(got[1], (Vec::new(), from_b), "an empty datagram is one");
        assert_eq!(got[2], (vec![7u8; 1000], from_a));
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn a_datagram_larger_than_its_slot_says_so() {
        let (server, client) = std::os::unix::net::UnixDatagram::pair().unwrap();
        client.send(&vec![1u8; MAX_DATAGRAM + 10]).unwrap();
        client.send(b"next").unwrap();
        let mut batch = Batch::new();
        let mut got = Vec::new();
        while got.len() < 2 {
            let n = batch.receive(server.as_raw_fd(), BATCH).unwrap();
            got.extend((0..n).map(|i| (batch.oversized(i), batch.data(i).len())));
        }
        assert_eq!(got[0], (Some(MAX_DATAGRAM + 10), MAX_DATAGRAM));
        assert_eq!(got[1], (None, 4));
        // A receive of one (recvfrom) says so too.
        client.send(&vec![2u8; MAX_DATAGRAM + 1]).unwrap();
        assert_eq!(batch.receive(server.as_raw_fd(), 1).unwrap(), 1);
        assert_eq!(batch.oversized(0), Some(MAX_DATAGRAM + 1));
    }

    #[test]
    fn a_batch_of_one_leaves_the_rest_waiting() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        client.send_to(b"first", to).unwrap();
        client.send_to(b"second", to).unwrap();
        let mut batch = Batch::new();
        assert_eq!(batch.receive(server.as_raw_fd(), 1).unwrap(), 1);
        assert_eq!(batch.data(0), b"first");
        assert_eq!(batch.receive(server.as_raw_fd(), 1).unwrap(), 1);
        assert_eq!(batch.data(0), b"second");
    }
}
