//! What the line services (qa, dict) do alike on a connection: every line
//! gets one answer line, and a line over the limit gets one error line before
//! the connection closes.

use std::io::{self, Write};

use crate::request::{Conn, FramingError};

/// Writes `answer` and a newline: one line's answer.
pub(crate) fn write_line(conn: &mut Conn<'_>, answer: &str) -> io::Result<()> {
    conn.write_all(answer.as_bytes())?;
    conn.write_all(b"\n")
}

/// Answers a line over the limit with the line `too_long` (the connection
/// then closes); `what` names such a line in the log. Any other framing
/// error just ends the connection.
pub(crate) fn refuse_long_line(
    conn: &mut Conn<'_>,
    error: FramingError,
    what: &str,
    too_long: &str,
) -> io::Result<()> {
    if let FramingError::LineTooLong { max } = error {
        log::info!("{}: {what} over {max} bytes; closing", conn.peer());
        writeln!(conn, "{too_long}")?;
    }
    Ok(())
}
