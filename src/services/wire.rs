//! What the framed services (`exec`, `files`) share on the server side:
//! the handshake, and telling a client that went away from a real failure.

use std::io;
use std::time::Duration;

use crate::protocol::auth::{self, FailureLimit, Key, Verdict};
use crate::protocol::framing::Framing;
use crate::{Address, StreamRequest};

/// How much a framed service reads and discards after a final error answer,
/// so that a client still sending a refused body sees the answer.
pub(crate) const MAX_DISCARD: usize = 64 << 20;

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
            req.close_after_answer(super::wire::MAX_DISCARD);
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
