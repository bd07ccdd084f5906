//! [`Deadlines`]: when each connection of a loop next needs attention (an
//! idle or message timeout, the end of a pause or of a linger), in one heap.
//!
//! A connection has at most one live entry: the loop records the time of the
//! entry it pushed, and an entry popped with another time (the deadline moved
//! later meanwhile, or the connection is gone) is stale and skipped. Moving
//! a deadline later costs nothing until the old one comes up; moving it
//! earlier pushes a new entry.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A connection's place in a loop: its slot and the generation that tells
/// reuses of the slot apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub slot: usize,
    pub generation: u32,
}

/// The deadline heap of a loop.
#[derive(Debug, Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, Key)>>,
}

impl Deadlines {
    /// Adds an entry for `key` at `at`.
    pub fn push(&mut self, at: Instant, key: Key) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest entry's time.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Key)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    /// How many entries wait, stale ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_come_out_in_time_order_and_only_when_due() {
        let mut deadlines = Deadlines::default();
        let now = Instant::now();
        let key = |slot| Key {
            slot,
            generation: 0,
        };
        deadlines.push(now + Duration::from_secs(3), key(3));
        deadlines.push(now + Duration::from_secs(1), key(1));
        deadlines.push(now + Duration::from_secs(2), key(2));
        assert_eq!(deadlines.next(), Some(now + Duration::from_secs(1)));
        assert_eq!(deadlines.pop_due(now), None);
        let later = now + Duration::from_secs(2);
        assert_eq!(deadlines.pop_due(later).map(|(_, k)| k.slot), Some(1));
        assert_eq!(deadlines.pop_due(later).map(|(_, k)| k.slot), Some(2));
        assert_eq!(deadlines.pop_due(later), None);
        assert_eq!(deadlines.len(), 1);
    }
}
