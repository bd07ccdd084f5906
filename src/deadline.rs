//! Deadlines that never overflow: a duration a user gives (a year, or
//! `Duration::MAX`) added to now.

use std::time::{Duration, Instant};

/// `now + after`, or a time so far away that it never comes when the sum
/// does not fit in an `Instant`.
pub(crate) fn after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
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
    }
}
