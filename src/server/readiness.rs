//! [`Readiness`]: whether a process takes new clients (serving) or is on its
//! way out (draining), shared by its servers and whoever reports on it: the
//! admin listener's `/readyz`, HAProxy's agent check, systemd's `STOPPING=1`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// The two states of a [`Readiness`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadinessState {
    /// Taking new clients: `/readyz` says `ready`, the agent check `ready`.
    Serving,
    /// A shutdown has begun (or is about to, after the
    /// [drain delay](crate::Options::drain_delay)): `/readyz` answers 503
    /// `draining`, the agent check `drain`. Never turns back.
    Draining,
}

/// Whether the servers that share it take new clients, as a load balancer or
/// an orchestrator should see it: serving, then draining from the first
/// moment of a shutdown until the process exits.
///
/// A cheap handle (an `Arc` inside): clones share one state. Every
/// [`Options`](crate::Options) carries one, so the servers bound with clones
/// of the same options share it; [`Options::readiness`](crate::Options::readiness)
/// hands in one of your own. A server marks it draining when its shutdown
/// begins or, with a [drain delay](crate::Options::drain_delay), when
/// [`ServerHandle::drain`](crate::ServerHandle::drain) is called (the first
/// SIGINT/SIGTERM does that under
/// [`shutdown_on_ctrl_c`](crate::ServerHandle::shutdown_on_ctrl_c)), so that
/// load balancers stop sending clients before the listeners close.
///
/// Draining it yourself only changes what it reports (and runs the
/// [`on_drain`](Readiness::on_drain) hooks); to also stop the servers, call
/// [`ServerHandle::drain`](crate::ServerHandle::drain) or
/// [`ServerGroup::drain`](crate::ServerGroup::drain).
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use socketserver::{Readiness, ReadinessState};
///
/// let readiness = Readiness::new();
/// let told = Arc::new(AtomicUsize::new(0));
/// let counter = Arc::clone(&told);
/// readiness.on_drain(move || {
///     counter.fetch_add(1, Ordering::SeqCst); // say, systemd's STOPPING=1
/// });
/// assert!(readiness.is_ready());
///
/// assert!(readiness.drain()); // the first call turns it
/// assert!(!readiness.drain()); // later ones change nothing
/// assert_eq!(readiness.state(), ReadinessState::Draining);
/// assert!(readiness.draining_since().is_some());
/// assert_eq!(told.load(Ordering::SeqCst), 1);
/// ```
#[derive(Clone, Default)]
pub struct Readiness(Arc<Inner>);

type Hook = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Inner {
    draining: AtomicBool,
    /// When it turned to draining; set once, with the hooks run under the
    /// same lock so that a hook added concurrently runs exactly once.
    since: Mutex<Option<Instant>>,
    hooks: Mutex<Vec<Hook>>,
    changed: Condvar,
}

impl Readiness {
    /// A new state, serving.
    pub fn new() -> Self {
        Self::default()
    }

    /// True while serving.
    pub fn is_ready(&self) -> bool {
        !self.0.draining.load(SeqCst)
    }

    /// Serving or draining.
    pub fn state(&self) -> ReadinessState {
        if self.is_ready() {
            ReadinessState::Serving
        } else {
            ReadinessState::Draining
        }
    }

    /// Turns to draining and runs the [`on_drain`](Readiness::on_drain)
    /// hooks, on the calling thread; true the first time, false (and
    /// nothing done) after.
    pub fn drain(&self) -> bool {
        let mut since = self.0.since.lock();
        if since.is_some() {
            return false;
        }
        *since = Some(Instant::now());
        self.0.draining.store(true, SeqCst);
        self.0.changed.notify_all();
        drop(since);
        // Hooks run without the state's lock, so a hook may read the state;
        // one added from now on runs at once in `on_drain` instead.
        let hooks = std::mem::take(&mut *self.0.hooks.lock());
        for hook in &hooks {
            hook();
        }
        true
    }

    /// When it turned to draining, if it has.
    pub fn draining_since(&self) -> Option<Instant> {
        *self.0.since.lock()
    }

    /// Calls `hook` once when it turns to draining (at once, on this thread,
    /// if it already has). Hooks must be quick: they run on the thread that
    /// drains, a signal handler's thread among them.
    pub fn on_drain(&self, hook: impl Fn() + Send + Sync + 'static) {
        let since = self.0.since.lock();
        if since.is_some() {
            drop(since);
            hook();
            return;
        }
        self.0.hooks.lock().push(Box::new(hook));
    }

    /// Waits until it turns to draining, or `timeout` passes (`None`: for
    /// ever); true when it is draining.
    pub fn wait_for_drain(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(crate::deadline::after);
        let mut since = self.0.since.lock();
        while since.is_none() {
            match deadline {
                Some(deadline) => {
                    if self.0.changed.wait_until(&mut since, deadline).timed_out() {
                        return since.is_some();
                    }
                }
                None => self.0.changed.wait(&mut since),
            }
        }
        true
    }

    /// True when both handles share one state.
    pub fn same_as(&self, other: &Readiness) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Readiness").field(&self.state()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn hooks_run_once_whenever_they_are_added() {
        let readiness = Readiness::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let before = Arc::clone(&runs);
        readiness.on_drain(move || {
            before.fetch_add(1, SeqCst);
        });
        assert_eq!(runs.load(SeqCst), 0);
        assert!(readiness.clone().drain());
        assert!(!readiness.drain());
        assert_eq!(runs.load(SeqCst), 1);
        let after = Arc::clone(&runs);
        readiness.on_drain(move || {
            after.fetch_add(10, SeqCst);
        });
        assert_eq!(runs.load(SeqCst), 11);
    }

    #[test]
    fn a_hook_may_read_the_state() {
        let readiness = Readiness::new();
        let seen = Arc::new(Mutex::new(None));
        let (inner, record) = (readiness.clone(), Arc::clone(&seen));
        readiness.on_drain(move || *record.lock() = Some(inner.state()));
        readiness.drain();
        assert_eq!(*seen.lock(), Some(ReadinessState::Draining));
    }

    #[test]
    fn waiting_ends_at_the_drain_or_the_timeout() {
        let readiness = Readiness::new();
        assert!(!readiness.wait_for_drain(Some(Duration::from_millis(10))));
        let other = readiness.clone();
        let waiter = std::thread::spawn(move || other.wait_for_drain(None));
        readiness.drain();
        assert!(waiter.join().unwrap());
        assert!(readiness.same_as(&readiness.clone()));
        assert!(!readiness.same_as(&Readiness::new()));
    }
}
