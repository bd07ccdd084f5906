//! [`Stats`]: what a server has done so far, as counters; [`Metrics`]: the
//! same with the gauges and the request-duration histogram that monitoring
//! wants; [`Summary`]: what it reports when it stops.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

use crate::ops::histogram::{Histogram, HistogramSnapshot};

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
    /// One observation per request served (a connection, a message, a
    /// datagram), made where `served` is counted.
    pub durations: Histogram,
}

/// Thread counts of a dispatcher's pool, readable at any time.
#[derive(Default)]
pub(crate) struct Gauges {
    pub threads: AtomicUsize,
    pub idle: AtomicUsize,
    /// The length of the pool's queue, for dispatchers whose queue holds
    /// something other than the server's admitted requests (the reactor's
    /// blocking messages).
    pub queue_length: OnceLock<Box<dyn Fn() -> usize + Send + Sync>>,
}

impl fmt::Debug for Gauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gauges")
            .field("threads", &self.threads)
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// A server's counters, gauges and request durations at one moment: what a
/// monitoring system scrapes, from
/// [`ServerHandle::metrics`](crate::ServerHandle::metrics).
/// [`ops::metrics`](crate::ops) writes it as a Prometheus page.
///
/// One request is a connection in threads mode (and for one-at-a-time
/// servers), a message in reactor mode, a datagram on datagram servers.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// The server's URL, as [`Server::url`](crate::Server::url) writes it.
    pub url: String,
    /// The counters; in reactor mode `active` is the messages being handled
    /// and `queued` the messages waiting for a pool thread.
    pub stats: Stats,
    /// Connections open now: admitted and not yet closed, waiting for a
    /// thread included (0 on datagram servers).
    pub connections_open: usize,
    /// Requests admitted and not yet finished: connections in threads mode,
    /// messages being handled in reactor mode, datagrams queued or handled.
    pub requests_in_flight: usize,
    /// How long requests took; its count is the number of requests served.
    pub durations: HistogramSnapshot,
    /// Datagrams the kernel dropped before the server could receive them,
    /// because the socket's receive buffer was full (see
    /// [`Summary::dropped_by_kernel`]; 0 for streams).
    pub dropped_by_kernel: u64,
}

impl Counters {
    /// Drops a datagram that was larger than the receive buffer (it came
    /// truncated, `MSG_TRUNC` said its real `size`): logged and counted,
    /// never served cut. Every datagram receiver calls it.
    pub fn drop_oversized(&self, peer: &crate::transport::Address, size: usize) {
        log::debug!(
            "{peer}: datagram of {size} bytes over the limit of {} dropped",
            crate::transport::MAX_DATAGRAM
        );
        Counters::bump(&self.dropped);
    }

    /// The counters and gauges as [`Stats`]; `per_message`: the dispatcher
    /// counts messages as active and queues them in its pool (the reactor).
    pub fn snapshot(&self, gauges: &Gauges, per_message: bool) -> Stats {
        let active = self.active.load(Relaxed);
        let queued = if per_message {
            gauges.queue_length.get().map_or(0, |length| length())
        } else {
            self.in_flight.load(Relaxed).saturating_sub(active)
        };
        Stats {
            active,
            queued,
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
    /// Datagrams dropped over the server's life (see [`Stats::dropped`]),
    /// not counting [`dropped_by_kernel`](Self::dropped_by_kernel).
    pub dropped: u64,
    /// Datagrams the kernel dropped before the server could receive them,
    /// because the socket's receive buffer was full (read from the socket
    /// when it closes; Linux only, 0 elsewhere and for streams).
    pub dropped_by_kernel: u64,
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
        let dropped = self.dropped + self.dropped_by_kernel;
        if dropped > 0 {
            write!(f, ", dropped {dropped} datagram(s)")?;
            if self.dropped_by_kernel > 0 {
                write!(
                    f,
                    " ({} by the kernel: receive buffer full)",
                    self.dropped_by_kernel
                )?;
            }
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
            dropped_by_kernel: 0,
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

    #[test]
    fn a_summary_counts_the_kernels_drops_with_the_servers() {
        let summary = Summary {
            served: 10,
            failed: 0,
            panicked: 0,
            rejected: 0,
            dropped: 2,
            dropped_by_kernel: 5,
            in_flight: 0,
            cut: 0,
            threads_left: 0,
            elapsed: Duration::from_millis(1),
        };
        assert_eq!(
            summary.to_string(),
            "served 10 request(s), dropped 7 datagram(s) (5 by the kernel: receive buffer full); \
             0 in flight at shutdown, 0 cut at the deadline; stopped in 0.001 s"
        );
    }
}
