//! [`Histogram`]: request durations counted into the fixed buckets of the
//! `socketserver_request_duration_seconds` metric, without a lock.
//!
//! [`Histogram::observe`] costs two relaxed atomic additions and a binary
//! search over sixteen integers: the bucket bounds are kept in nanoseconds, so
//! no floating point is done on the hot path. [`Histogram::snapshot`] turns
//! the counters into the cumulative form that Prometheus expects.
//!
//! ```
//! use std::time::Duration;
//! use socketserver::ops::histogram::Histogram;
//!
//! let histogram = Histogram::new();
//! histogram.observe(Duration::from_micros(300)); // in the 0.0005 s bucket
//! histogram.observe(Duration::from_millis(20)); // in the 0.025 s bucket
//! histogram.observe(Duration::from_secs(90)); // above 60 s: only in +Inf
//!
//! let snapshot = histogram.snapshot();
//! assert_eq!(snapshot.count, 3);
//! assert_eq!(snapshot.cumulative_counts[0], 1); // le="0.0005"
//! assert_eq!(snapshot.cumulative_counts[5], 2); // le="0.025"
//! assert_eq!(snapshot.cumulative_counts[15], 2); // le="60"
//! assert!((snapshot.sum_seconds - 90.0203).abs() < 1e-9);
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// How many finite buckets the histogram has; a sixteenth-plus-one, `+Inf`,
/// holds every observation.
pub const BUCKET_COUNT: usize = 16;

/// The upper bound of each finite bucket in nanoseconds, in increasing order:
/// 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
/// 5, 10, 30 and 60 seconds. An observation equal to a bound falls in that
/// bound's bucket (Prometheus buckets are "less than or equal").
pub const BUCKET_BOUNDS_NANOS: [u64; BUCKET_COUNT] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
];

/// The same bounds in seconds, written as the `le` label values of the
/// Prometheus text format (the shortest decimal form, as Prometheus' own
/// clients write them).
pub const BUCKET_LABELS: [&str; BUCKET_COUNT] = [
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5", "5", "10", "30", "60",
];

/// A request-duration histogram that many threads update at once.
///
/// Each observation lands in exactly one slot (the first bucket whose bound
/// it does not exceed, or the overflow slot past 60 s); the snapshot sums the
/// slots into cumulative counts. The total duration is kept in nanoseconds
/// in a 64-bit counter plus a count of its wrap-arounds, so it stays exact
/// however long the server runs.
#[derive(Debug)]
pub struct Histogram {
    /// Observations per bucket, not cumulative; the last slot is above 60 s.
    slots: [AtomicU64; BUCKET_COUNT + 1],
    /// The sum of all observations in nanoseconds, modulo 2^64.
    sum_nanos: AtomicU64,
    /// How many times `sum_nanos` has wrapped around.
    sum_wraps: AtomicU64,
}

/// What a [`Histogram`] held at one moment, in the cumulative form of the
/// Prometheus text format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramSnapshot {
    /// For each bound of [`BUCKET_BOUNDS_NANOS`], how many observations were
    /// at most that long. Never decreasing along the array.
    pub cumulative_counts: [u64; BUCKET_COUNT],
    /// How many observations there were: the `+Inf` bucket and `_count`.
    pub count: u64,
    /// The sum of all observations in seconds: `_sum`.
    pub sum_seconds: f64,
}

impl Histogram {
    /// An empty histogram.
    pub const fn new() -> Histogram {
        Histogram {
            slots: [const { AtomicU64::new(0) }; BUCKET_COUNT + 1],
            sum_nanos: AtomicU64::new(0),
            sum_wraps: AtomicU64::new(0),
        }
    }

    /// Counts one request that took `duration`. Durations past 584 years are
    /// counted as 584 years.
    pub fn observe(&self, duration: Duration) {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        let slot = BUCKET_BOUNDS_NANOS.partition_point(|&bound| bound < nanos);
        self.slots[slot].fetch_add(1, Relaxed);
        let before = self.sum_nanos.fetch_add(nanos, Relaxed);
        if before.checked_add(nanos).is_none() {
            // Exactly one observer sees each wrap, since fetch_add returns
            // the value it replaced.
            self.sum_wraps.fetch_add(1, Relaxed);
        }
    }

    /// The counts so far. Observations made while the snapshot is taken may
    /// be in the counts and not yet in the sum, or the reverse; the counts
    /// themselves are always consistent (the `+Inf` bucket equals `count`).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative_counts = [0u64; BUCKET_COUNT];
        let mut running = 0u64;
        for (cumulative, slot) in cumulative_counts.iter_mut().zip(&self.slots) {
            running = running.wrapping_add(slot.load(Relaxed));
            *cumulative = running;
        }
        let count = running.wrapping_add(self.slots[BUCKET_COUNT].load(Relaxed));
        let wraps = self.sum_wraps.load(Relaxed);
        let nanos = self.sum_nanos.load(Relaxed);
        let total_nanos = (u128::from(wraps) << 64) | u128::from(nanos);
        HistogramSnapshot {
            cumulative_counts,
            count,
            sum_seconds: total_nanos as f64 / 1e9,
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl HistogramSnapshot {
    /// A snapshot of an empty histogram.
    pub const EMPTY: HistogramSnapshot = HistogramSnapshot {
        cumulative_counts: [0; BUCKET_COUNT],
        count: 0,
        sum_seconds: 0.0,
    };

    /// Each finite bucket as its `le` label and cumulative count, in order;
    /// the `+Inf` bucket is [`count`](HistogramSnapshot::count).
    pub fn buckets(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        BUCKET_LABELS
            .iter()
            .copied()
            .zip(self.cumulative_counts.iter().copied())
    }
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot::EMPTY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    #[test]
    fn labels_name_the_bounds_in_seconds() {
        for (label, nanos) in BUCKET_LABELS.iter().zip(BUCKET_BOUNDS_NANOS) {
            let seconds: f64 = label.parse().unwrap();
            assert_eq!((seconds * 1e9).round() as u64, nanos, "label {label}");
        }
        assert!(BUCKET_BOUNDS_NANOS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_bound_itself_falls_in_its_own_bucket() {
        let histogram = Histogram::new();
        histogram.observe(Duration::from_nanos(500_000));
        histogram.observe(Duration::from_nanos(500_001));
        histogram.observe(Duration::ZERO);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative_counts[0], 2);
        assert_eq!(snapshot.cumulative_counts[1], 3);
        assert_eq!(snapshot.count, 3);
    }

    #[test]
    fn over_sixty_seconds_only_counts_in_inf() {
        let histogram = Histogram::new();
        histogram.observe(Duration::from_secs(60));
        histogram.observe(Duration::from_nanos(60_000_000_001));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.cumulative_counts[BUCKET_COUNT - 1], 1);
        assert_eq!(snapshot.count, 2);
        assert!((snapshot.sum_seconds - 120.000_000_001).abs() < 1e-6);
    }

    #[test]
    fn the_sum_stays_exact_past_u64_nanoseconds() {
        let histogram = Histogram::new();
        // Three observations of 300 years each overflow 2^64 nanoseconds.
        let three_hundred_years = Duration::from_secs(300 * 365 * 24 * 3600);
        for _ in 0..3 {
            histogram.observe(three_hundred_years);
        }
        let snapshot = histogram.snapshot();
        let expected = 3.0 * three_hundred_years.as_secs_f64();
        assert!((snapshot.sum_seconds - expected).abs() / expected < 1e-12);
        assert_eq!(snapshot.count, 3);
        assert_eq!(snapshot.cumulative_counts[BUCKET_COUNT - 1], 0);
    }

    #[test]
    fn durations_beyond_u64_nanoseconds_saturate() {
        let histogram = Histogram::new();
        histogram.observe(Duration::MAX);
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 1);
        assert!((snapshot.sum_seconds - u64::MAX as f64 / 1e9).abs() < 1.0);
    }

    #[test]
    fn concurrent_observers_lose_nothing() {
        let histogram = Arc::new(Histogram::new());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let histogram = Arc::clone(&histogram);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        histogram.observe(Duration::from_micros((i * 7 + t) % 2_000_000));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 40_000);
        let expected_micros: u64 = (0..4u64)
            .flat_map(|t| (0..10_000u64).map(move |i| (i * 7 + t) % 2_000_000))
            .sum();
        assert!((snapshot.sum_seconds - expected_micros as f64 / 1e6).abs() < 1e-6);
    }

    #[test]
    fn buckets_pairs_labels_with_counts() {
        let histogram = Histogram::new();
        histogram.observe(Duration::from_millis(3));
        let buckets: Vec<_> = histogram.snapshot().buckets().collect();
        assert_eq!(buckets.len(), BUCKET_COUNT);
        assert_eq!(buckets[2], ("0.0025", 0));
        assert_eq!(buckets[3], ("0.005", 1));
        assert_eq!(HistogramSnapshot::default(), HistogramSnapshot::EMPTY);
    }

    proptest! {
        #[test]
        fn counts_are_cumulative_and_complete(nanos in proptest::collection::vec(0u64..120_000_000_000, 0..200)) {
            let histogram = Histogram::new();
            for &n in &nanos {
                histogram.observe(Duration::from_nanos(n));
            }
            let snapshot = histogram.snapshot();
            // +Inf (the count) equals the number of observations.
            prop_assert_eq!(snapshot.count, nanos.len() as u64);
            // Cumulative counts never decrease and never pass the count.
            prop_assert!(snapshot.cumulative_counts.windows(2).all(|w| w[0] <= w[1]));
            prop_assert!(snapshot.cumulative_counts[BUCKET_COUNT - 1] <= snapshot.count);
            // Each bucket counts exactly the observations at most its bound.
            for (i, bound) in BUCKET_BOUNDS_NANOS.iter().enumerate() {
                let expected = nanos.iter().filter(|&&n| n <= *bound).count() as u64;
                prop_assert_eq!(snapshot.cumulative_counts[i], expected);
            }
            let expected_sum: u64 = nanos.iter().sum();
            prop_assert!((snapshot.sum_seconds - expected_sum as f64 / 1e9).abs() < 1e-6);
        }
    }
}
