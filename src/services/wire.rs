//! What the framed services (`exec`, `files`) share on the server side:
//! closing politely after an error, and telling a client that went away from
//! a real failure.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::auth::{self, FailureLimit, Key, Verdict};
use crate::framing::Framing;
use crate::{Address, StreamRequest};

/// How long a connection is drained after a final error answer.
const LINGER: Duration = Duration::from_secs(2);
/// How much is drained at most.
const LINGER_BYTES: usize = 64 << 20;

/// Ends a connection after a final answer so that the client can read it.
///
/// Closing a socket that still has unread input makes the system send a
/// reset, which can destroy the answer before the client reads it (a client
/// that was still sending a refused body, say). So: half-close (the client
/// reads the answer, then end of input), then read and discard what the
/// client still sends, for at most 2 s and 64 MiB, then close.
pub(crate) fn linger_close(req: &mut StreamRequest) {
    let _ = req.shutdown_write();
    let deadline = Instant::now() + LINGER;
    let mut drained = 0;
    let mut buf = [0u8; 16 * 1024];
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || req.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match req.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// True for the errors of a client that went away (closed, reset, timed
/// out): the end of a conversation, not a server failure.
pub(crate) fn is_gone(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionReset
            | ConnectionAborted
            | BrokenPipe
            | UnexpectedEof
            | WouldBlock
            | TimedOut
            | NotConnected
    )
}

/// Runs the server's side of the HMAC handshake for a framed service,
/// within `auth_timeout`, under the failed-attempt `limit`. True when the
/// client is in (the read timeout is then `idle_timeout`); false when the
/// connection is over (refused, denied, or gone), which is logged here.
pub(crate) fn authenticate(
    req: &mut StreamRequest,
    peer: &Address,
    key: &Key,
    framing: &Framing,
    limit: &FailureLimit,
    auth_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
) -> io::Result<bool> {
    if let Err(blocked) = limit.check(peer) {
        log::warn!("{peer}: handshake {blocked}; closing before the challenge");
        return Ok(false);
    }
    req.set_read_timeout(auth_timeout)?;
    match auth::server_handshake_limited(req, key, framing, limit, peer) {
        Ok(Verdict::Accepted) => log::debug!("{peer}: authenticated"),
        Ok(verdict) => {
            match (verdict, limit.check(peer)) {
                (Verdict::Refused, Err(blocked)) => {
                    log::warn!("{peer}: authentication denied without checking: {blocked}")
                }
                (_, Err(blocked)) => {
                    log::warn!("{peer}: authentication denied (wrong key); {blocked}")
                }
                _ => log::warn!("{peer}: authentication denied (wrong key)"),
            }
            linger_close(req);
            return Ok(false);
        }
        Err(e) if is_gone(&e) => {
            log::info!("{peer}: no handshake: {e}");
            return Ok(false);
        }
        Err(e) => return Err(e),
    }
    req.set_read_timeout(idle_timeout)?;
    Ok(true)
}
