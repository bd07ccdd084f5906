//! Bounded line reading, shared by the line-oriented services (qa, dict over a
//! stream, chat), the HTTP request head, and the line clients.
//!
//! `BufRead::read_line` grows its buffer for as long as the peer sends bytes
//! without a newline; a service cannot afford that. [`read_line`] stops as soon
//! as more than the limit has arrived without a newline, having buffered at
//! most the limit plus one byte.

use std::io::{self, BufRead};

/// What [`read_line`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// A line, in the buffer without its terminator (`\n` or `\r\n`).
    /// `terminated` is false for a last line that the end of input cut short.
    Complete {
        /// The line ended with `\n` (false: it ended with the input).
        terminated: bool,
    },
    /// More than the limit arrived without a newline. The buffer holds a
    /// prefix of the line; the rest is unread.
    TooLong,
    /// The input ended before any byte of a new line.
    Eof,
}

/// Reads one line into `line` (cleared first), without its terminator: `\n`,
/// or `\r\n`. A line is too long as soon as more than `max` bytes have arrived
/// without a newline (the terminator does not count), so `line` never holds
/// more than `max + 1` bytes.
///
/// ```
/// use socketserver::protocol::line::{read_line, Line};
///
/// let mut input = &b"short\r\nmuch too long\n"[..];
/// let mut line = Vec::new();
/// assert_eq!(read_line(&mut input, &mut line, 8)?, Line::Complete { terminated: true });
/// assert_eq!(line, b"short");
/// assert_eq!(read_line(&mut input, &mut line, 8)?, Line::TooLong);
/// assert!(line.len() <= 9);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    line.clear();
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            if line.is_empty() {
                return Ok(Line::Eof);
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Line::Complete { terminated: false });
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(newline) => {
                // The bytes before the newline, with a final '\r' not counted.
                let total = line.len() + newline;
                let ends_in_cr = if newline > 0 {
                    available[newline - 1] == b'\r'
                } else {
                    line.last() == Some(&b'\r')
                };
                if total - usize::from(ends_in_cr) > max {
                    return Ok(Line::TooLong);
                }
                line.extend_from_slice(&available[..newline]);
                reader.consume(newline + 1);
                if ends_in_cr {
                    line.pop();
                }
                return Ok(Line::Complete { terminated: true });
            }
            None => {
                let n = available.len();
                // Room for the limit, plus a '\r' that may start the terminator.
                if line.len() + n > max.saturating_add(1) {
                    return Ok(Line::TooLong);
                }
                line.extend_from_slice(available);
                reader.consume(n);
                if line.len() > max && line.last() != Some(&b'\r') {
                    return Ok(Line::TooLong);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    /// Reads every line of `input` through a buffer of `capacity` bytes.
    fn lines(input: &[u8], max: usize, capacity: usize) -> Vec<(Line, Vec<u8>)> {
        let mut reader = BufReader::with_capacity(capacity, input);
        let mut line = Vec::new();
        let mut out = Vec::new();
        loop {
            let got = read_line(&mut reader, &mut line, max).unwrap();
            out.push((got, line.clone()));
            if matches!(got, Line::Eof | Line::TooLong) {
                return out;
            }
        }
    }

    const DONE: Line = Line::Complete { terminated: true };

    #[test]
    fn splits_lines_and_strips_terminators() {
        for capacity in [1, 2, 3, 64] {
            let got = lines(b"one\ntwo\r\n\nlast", 16, capacity);
            assert_eq!(
                got,
                vec![
                    (DONE, b"one".to_vec()),
                    (DONE, b"two".to_vec()),
                    (DONE, b"".to_vec()),
                    (Line::Complete { terminated: false }, b"last".to_vec()),
                    (Line::Eof, b"".to_vec()),
                ],
                "capacity {capacity}"
            );
        }
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes_with_either_terminator() {
        for capacity in [1, 3, 5, 64] {
            assert_eq!(lines(b"abcd\n", 4, capacity)[0], (DONE, b"abcd".to_vec()));
            assert_eq!(lines(b"abcd\r\n", 4, capacity)[0], (DONE, b"abcd".to_vec()));
            assert_eq!(lines(b"abcde\n", 4, capacity)[0].0, Line::TooLong);
            assert_eq!(lines(b"abcd\rx\n", 4, capacity)[0].0, Line::TooLong);
            assert_eq!(lines(b"abcde\r\n", 4, capacity)[0].0, Line::TooLong);
        }
    }

    #[test]
    fn too_long_is_found_without_a_newline_and_without_buffering_more() {
        // One byte over the limit, and nothing after: no need to wait.
        let mut reader = BufReader::with_capacity(4, &b"abcde"[..]);
        let mut line = Vec::new();
        assert_eq!(read_line(&mut reader, &mut line, 4).unwrap(), Line::TooLong);
        assert!(line.len() <= 5);
        // A megabyte without a newline: the buffer stays small.
        let big = vec![b'x'; 1 << 20];
        let mut reader = BufReader::with_capacity(8192, &big[..]);
        assert_eq!(
            read_line(&mut reader, &mut line, 100).unwrap(),
            Line::TooLong
        );
        assert!(line.len() <= 101, "{}", line.len());
    }

    #[test]
    fn a_lone_cr_at_the_limit_waits_for_the_next_byte() {
        let mut reader = BufReader::with_capacity(64, &b"abcd\r"[..]);
        let mut line = Vec::new();
        // End of input after the '\r': a last line, the '\r' dropped.
        assert_eq!(
            read_line(&mut reader, &mut line, 4).unwrap(),
            Line::Complete { terminated: false }
        );
        assert_eq!(line, b"abcd");
    }
}
