//! [`Stats`]: what a server has done so far, as counters.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// A snapshot of a server's counters, from [`ServerHandle::stats`](crate::ServerHandle::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests being handled right now.
    pub active: usize,
    /// Requests waiting in the queue for a thread.
    pub queued: usize,
    /// Worker threads alive (0 for one-at-a-time servers).
    pub threads: usize,
    /// Worker threads waiting for work.
    pub idle_threads: usize,
    /// Requests handled to the end (whether the handler succeeded or not).
    pub served: u64,
    /// Connections closed unserved: refused by `verify_request`, or turned
    /// away because the server was full and
    /// [`reject_when_full`](crate::Options::reject_when_full) is on.
    pub rejected: u64,
    /// Datagrams dropped because the queue was full, or refused by
    /// `verify_request`.
    pub dropped: u64,
    /// Requests whose handler returned an error.
    pub failed: u64,
    /// Requests whose handler panicked.
    pub panicked: u64,
    /// Requests cut at the shutdown deadline, running or still queued.
    pub cut: u64,
}

/// The live counters behind [`Stats`]; each is a relaxed atomic, so counting
/// costs no lock.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Requests admitted and not yet finished: queued plus active.
    pub in_flight: AtomicUsize,
    pub active: AtomicUsize,
    pub served: AtomicU64,
    pub rejected: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
    pub panicked: AtomicU64,
    pub cut: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self, threads: usize, idle_threads: usize) -> Stats {
        let active = self.active.load(Relaxed);
        Stats {
            active,
            queued: self.in_flight.load(Relaxed).saturating_sub(active),
            threads,
            idle_threads,
            served: self.served.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            failed: self.failed.load(Relaxed),
            panicked: self.panicked.load(Relaxed),
            cut: self.cut.load(Relaxed),
        }
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}
