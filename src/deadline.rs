//! Deadlines that never overflow: a duration a user gives (a year, or
//! `Duration::MAX`) added to now.

use std::time::{Duration, Instant};

/// A century: the deadline of a wait that has none in practice.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + after`, or a time so far away that it never comes when the sum
/// does not fit in an `Instant`.
pub(crate) fn after(after: Duration) -> Instant {
    later(Instant::now(), after)
}

/// `at + after` without the panic of `Instant + Duration` when the sum does
/// not fit: a time so far away that it never comes instead (at most a
/// century after `at`). Every deadline built from a user's duration goes
/// through here, so `Duration::MAX` means "never" rather than a panic.
pub(crate) fn later(at: Instant, after: Duration) -> Instant {
    at.checked_add(after.min(NEVER))
        .or_else(|| at.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_too_large_for_an_instant_is_a_far_deadline() {
        let far = after(Duration::MAX);
        assert!(far > Instant::now() + Duration::from_secs(50 * 365 * 24 * 3600));
        let soon = after(Duration::from_millis(5));
        assert!(soon <= Instant::now() + Duration::from_millis(5));
        let at = Instant::now();
        assert!(later(at, Duration::MAX) > at);
        assert_eq!(
            later(at, Duration::from_secs(1)),
            at + Duration::from_secs(1)
        );
    }
}
