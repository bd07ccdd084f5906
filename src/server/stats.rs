//! [`Stats`]: what a server has done so far, as counters; [`Summary`]: what
//! it reports when it stops.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

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

/// Thread counts of a dispatcher's pool, readable at any time.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub threads: AtomicUsize,
    pub idle: AtomicUsize,
}

impl Counters {
    pub fn snapshot(&self, gauges: &Gauges) -> Stats {
        let active = self.active.load(Relaxed);
        Stats {
            active,
            queued: self.in_flight.load(Relaxed).saturating_sub(active),
            threads: gauges.threads.load(Relaxed),
            idle_threads: gauges.idle.load(Relaxed),
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

/// What [`Server::serve_forever`](crate::Server::serve_forever) reports when
/// it returns after a shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Requests handled to the end over the server's life.
    pub served: u64,
    /// Of those, requests whose handler returned an error.
    pub failed: u64,
    /// Of those, requests whose handler panicked.
    pub panicked: u64,
    /// Connections closed unserved over the server's life (see
    /// [`Stats::rejected`]).
    pub rejected: u64,
    /// Datagrams dropped over the server's life (see [`Stats::dropped`]).
    pub dropped: u64,
    /// Requests running or queued when the shutdown began.
    pub in_flight: usize,
    /// Requests cut at the shutdown deadline, running or queued.
    pub cut: u64,
    /// Worker threads still running a handler that ignored the cut (0 unless a
    /// handler blocks on something other than its connection).
    pub threads_left: usize,
    /// How long the shutdown took.
    pub elapsed: Duration,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "served {} request(s)", self.served)?;
        if self.failed > 0 {
            write!(f, " ({} failed", self.failed)?;
            if self.panicked > 0 {
                write!(f, ", {} panicked", self.panicked)?;
            }
            f.write_str(")")?;
        } else if self.panicked > 0 {
            write!(f, " ({} panicked)", self.panicked)?;
        }
        if self.rejected > 0 {
            write!(f, ", rejected {}", self.rejected)?;
        }
        if self.dropped > 0 {
            write!(f, ", dropped {} datagram(s)", self.dropped)?;
        }
        write!(
            f,
            "; {} in flight at shutdown, {} cut at the deadline; stopped in {:.3} s",
            self.in_flight,
            self.cut,
            self.elapsed.as_secs_f64()
        )?;
        if self.threads_left > 0 {
            write!(f, "; {} thread(s) still running", self.threads_left)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_shows_failures() {
        let summary = Summary {
            served: 3,
            failed: 1,
            panicked: 1,
            rejected: 0,
            dropped: 0,
            in_flight: 0,
            cut: 0,
            threads_left: 0,
            elapsed: Duration::from_millis(5),
        };
        assert_eq!(
            summary.to_string(),
            "served 3 request(s) (1 failed, 1 panicked); 0 in flight at shutdown, \
             0 cut at the deadline; stopped in 0.005 s"
        );
    }
}
