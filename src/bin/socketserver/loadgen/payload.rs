//! Requests and the answers they must get.

/// The bytes requests are cut from: lowercase letters to uppercase, and
/// digits, punctuation and uppercase letters that must come back unchanged.
const PATTERN: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 .,-_ABCxyz";

/// Every request of one size, and its answer, without allocating per request:
/// request `seq` is the slice of a long run of [`PATTERN`] that starts at
/// `seq % PATTERN.len()`, so consecutive requests differ in every byte.
#[derive(Debug)]
pub(super) struct Payload {
    lower: Box<[u8]>,
    upper: Box<[u8]>,
    size: usize,
}

impl Payload {
    pub fn new(size: usize) -> Payload {
        let lower: Box<[u8]> = PATTERN
            .iter()
            .copied()
            .cycle()
            .take(size + PATTERN.len())
            .collect();
        let upper = lower.to_ascii_uppercase().into_boxed_slice();
        Payload { lower, upper, size }
    }

    /// Bytes per request.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Request number `seq`.
    pub fn request(&self, seq: usize) -> &[u8] {
        let start = seq % PATTERN.len();
        &self.lower[start..start + self.size]
    }

    /// The answer request number `seq` must get.
    pub fn expected(&self, seq: usize) -> &[u8] {
        let start = seq % PATTERN.len();
        &self.upper[start..start + self.size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_the_requests_uppercased() {
        for size in [1, 7, 64, 1000] {
            let payload = Payload::new(size);
            for seq in 0..2 * PATTERN.len() {
                let request = payload.request(seq);
                assert_eq!(request.len(), size);
                assert_eq!(payload.expected(seq), request.to_ascii_uppercase());
            }
        }
    }

    #[test]
    fn consecutive_requests_differ_and_contain_lowercase() {
        let payload = Payload::new(64);
        for seq in 0..PATTERN.len() {
            assert_ne!(payload.request(seq), payload.request(seq + 1));
            assert_ne!(payload.request(seq), payload.expected(seq));
        }
    }
}
