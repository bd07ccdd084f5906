//! HMAC-SHA256 challenge-response: the course's `hmac` client check, used by
//! the `exec` service (always) and the `files` service (with `--key-file`).
//!
//! # The handshake
//!
//! ```text
//! server                                   client
//!   | -- challenge: 32 random bytes -------> |
//!   | <------ HMAC-SHA256(key, challenge) -- |   32 bytes
//!   | -- verdict: JSON-header message -----> |   {"status":"ok"} or {"status":"denied"}
//! ```
//!
//! The challenge is fresh for every connection (from the operating system's
//! random source), the answer is compared in constant time, and the verdict
//! is a [`framing`](crate::framing) frame, so it follows the service's byte
//! order. On denial the server closes the connection.
//!
//! The key is a file's bytes, all of them: a trailing newline is part of the
//! key. A Python client answers like this:
//!
//! ```python
//! challenge = sock.recv(32)            # (loop until 32 bytes in real code)
//! sock.sendall(hmac.new(key, challenge, 'sha256').digest())
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::framing::{read_full, Framing};

/// The size of a challenge.
pub const CHALLENGE_LEN: usize = 32;

/// The size of an answer (an HMAC-SHA256 digest).
pub const ANSWER_LEN: usize = 32;

/// A shared secret for the handshake. Its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl Key {
    /// A key of these bytes. An empty key is refused
    /// ([`io::ErrorKind::InvalidInput`]): it would let anyone in who knows
    /// there is none.
    pub fn new(bytes: impl Into<Vec<u8>>) -> io::Result<Key> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the key is empty",
            ));
        }
        Ok(Key(bytes))
    }

    /// The key made of a file's bytes (all of them, a final newline
    /// included).
    pub fn from_file(path: impl AsRef<Path>) -> io::Result<Key> {
        Key::new(std::fs::read(path)?)
    }

    /// The answer to a challenge: HMAC-SHA256(key, challenge).
    pub fn answer(&self, challenge: &[u8]) -> [u8; ANSWER_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any size");
        mac.update(challenge);
        mac.finalize().into_bytes().into()
    }

    /// Whether `answer` is the right answer to `challenge`, compared in
    /// constant time.
    pub fn verify(&self, challenge: &[u8], answer: &[u8]) -> bool {
        answer.len() == ANSWER_LEN && bool::from(self.answer(challenge).ct_eq(answer))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(<{} bytes>)", self.0.len())
    }
}

/// A fresh random challenge from the operating system.
pub fn challenge() -> io::Result<[u8; CHALLENGE_LEN]> {
    let mut bytes = [0u8; CHALLENGE_LEN];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(format!("no random bytes: {e}")))?;
    Ok(bytes)
}

/// How a handshake ended on the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The client proved it has the key; `{"status":"ok"}` was sent.
    Accepted,
    /// The answer was wrong; `{"status":"denied"}` was sent, and the caller
    /// should close the connection.
    Denied,
}

/// Runs the server's side of the handshake on `stream`: sends a fresh
/// challenge, reads the 32-byte answer, sends the verdict.
///
/// A client that goes away before its answer is complete gets an
/// [`io::ErrorKind::UnexpectedEof`] error (`truncated handshake: ...`) and no
/// verdict. Use a read timeout on the stream so that a silent client cannot
/// hold the connection.
pub fn server_handshake<S: Read + Write>(
    stream: &mut S,
    key: &Key,
    framing: &Framing,
) -> io::Result<Verdict> {
    let challenge = challenge()?;
    stream.write_all(&challenge)?;
    let mut answer = [0u8; ANSWER_LEN];
    let got = read_full(&mut *stream, &mut answer)?;
    if got < ANSWER_LEN {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("truncated handshake: the client sent {got} of {ANSWER_LEN} answer bytes"),
        ));
    }
    if key.verify(&challenge, &answer) {
        framing.write_header(&mut *stream, &json!({"status": "ok"}))?;
        Ok(Verdict::Accepted)
    } else {
        framing.write_header(&mut *stream, &json!({"status": "denied"}))?;
        Ok(Verdict::Denied)
    }
}

/// Runs the client's side of the handshake on `stream`: reads the challenge,
/// answers it, reads the verdict. Denial is an
/// [`io::ErrorKind::PermissionDenied`] error.
pub fn client_handshake<S: Read + Write>(
    stream: &mut S,
    key: &Key,
    framing: &Framing,
) -> io::Result<()> {
    let mut challenge = [0u8; CHALLENGE_LEN];
    let got = read_full(&mut *stream, &mut challenge)?;
    if got < CHALLENGE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "truncated handshake: the server sent {got} of {CHALLENGE_LEN} challenge bytes"
            ),
        ));
    }
    stream.write_all(&key.answer(&challenge))?;
    let verdict = framing
        .read_header(&mut *stream, &mut Vec::new())?
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection instead of answering the handshake",
            )
        })?;
    match verdict.get("status").and_then(|s| s.as_str()) {
        Some("ok") => Ok(()),
        Some("denied") => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "authentication denied: the key does not match the server's",
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "unexpected handshake verdict: {}",
                serde_json::Value::Object(verdict)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::Endian;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    #[test]
    fn answer_is_hmac_sha256() {
        // RFC 4231, test case 2.
        let key = Key::new(&b"Jefe"[..]).unwrap();
        let answer = key.answer(b"what do ya want for nothing?");
        let hex: String = answer.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(key.verify(b"what do ya want for nothing?", &answer));
        let mut wrong = answer;
        wrong[31] ^= 1;
        assert!(!key.verify(b"what do ya want for nothing?", &wrong));
        assert!(!key.verify(b"what do ya want for nothing?", &answer[..31]));
        assert!(Key::new(Vec::new()).is_err());
        assert_eq!(format!("{key:?}"), "Key(<4 bytes>)");
    }

    #[test]
    fn challenges_are_fresh() {
        assert_ne!(challenge().unwrap(), challenge().unwrap());
    }

    fn handshake(
        server_key: &[u8],
        client_key: &[u8],
        endian: Endian,
    ) -> (io::Result<Verdict>, io::Result<()>) {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let framing = Framing::new().endian(endian);
        let server_key = Key::new(server_key).unwrap();
        let client_key = Key::new(client_key).unwrap();
        let server = std::thread::spawn(move || server_handshake(&mut a, &server_key, &framing));
        let client = client_handshake(&mut b, &client_key, &framing);
        (server.join().unwrap(), client)
    }

    #[test]
    fn the_right_key_is_accepted_in_both_byte_orders() {
        for endian in [Endian::Little, Endian::Big] {
            let (server, client) = handshake(b"secret", b"secret", endian);
            assert_eq!(server.unwrap(), Verdict::Accepted);
            client.unwrap();
        }
    }

    #[test]
    fn a_wrong_key_is_denied() {
        let (server, client) = handshake(b"secret", b"guess", Endian::Little);
        assert_eq!(server.unwrap(), Verdict::Denied);
        assert_eq!(client.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn a_truncated_answer_is_an_error_without_verdict() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let key = Key::new(&b"k"[..]).unwrap();
        let server = std::thread::spawn(move || server_handshake(&mut a, &key, &Framing::new()));
        let mut challenge = [0u8; 32];
        b.read_exact(&mut challenge).unwrap();
        b.write_all(&[0u8; 10]).unwrap();
        b.shutdown(std::net::Shutdown::Write).unwrap();
        let e = server.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            e.to_string(),
            "truncated handshake: the client sent 10 of 32 answer bytes"
        );
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "no verdict after a truncated answer");
    }
}
