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
//! is a [`framing`](crate::protocol::framing) frame, so it follows the service's byte
//! order. On denial the server closes the connection.
//!
//! The key is a file's bytes, all of them: a trailing newline is part of the
//! key.
//!
//! # Failed attempts
//!
//! A [`FailureLimit`] counts wrong answers per client address. After
//! [`max_failures`](FailureLimit::new) of them (default 5) with no more than
//! [`window`](FailureLimit::new) (default 60 s) between one and the next, the
//! address is refused for `window` after its last failure: the server closes
//! such a connection at once, before any challenge, and logs it (a client
//! sees the connection end before the challenge). A right answer forgets the
//! address's failures. IP clients are counted per IP address (every port);
//! Unix-socket clients, which have no address, share one count. At most
//! [`MAX_TRACKED`] addresses are remembered; past that, expired entries and
//! then the oldest are forgotten, so memory stays bounded under a flood of
//! spoofed-looking sources.
//!
//! A Python client answers like this:
//!
//! ```python
//! challenge = sock.recv(32)            # (loop until 32 bytes in real code)
//! sock.sendall(hmac.new(key, challenge, 'sha256').digest())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::protocol::framing::{read_full, Framing};
use crate::Address;

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
    /// The client's address was blocked by a [`FailureLimit`] by the time
    /// its answer came; `{"status":"denied"}` was sent without checking the
    /// answer, and the caller should close the connection.
    Refused,
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
    handshake_inner(stream, key, framing, None)
}

/// [`server_handshake`] under a [`FailureLimit`] for the client at `peer`
/// ([`FailureLimit::judge`]): an address already blocked when its answer
/// arrives (because other connections of it failed meanwhile) is denied
/// without its answer being checked ([`Verdict::Refused`]), so parallel
/// connections cannot try more keys than the limit lets through; a wrong
/// answer is counted, a right one clears the count. Checking the limit before the challenge is the
/// caller's business ([`FailureLimit::check`]).
pub fn server_handshake_limited<S: Read + Write>(
    stream: &mut S,
    key: &Key,
    framing: &Framing,
    limit: &FailureLimit,
    peer: &Address,
) -> io::Result<Verdict> {
    handshake_inner(stream, key, framing, Some((limit, peer)))
}

fn handshake_inner<S: Read + Write>(
    stream: &mut S,
    key: &Key,
    framing: &Framing,
    limit: Option<(&FailureLimit, &Address)>,
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
    let verify = || key.verify(&challenge, &answer);
    let verdict = match limit {
        Some((limit, peer)) => limit.judge(peer, verify),
        None if verify() => Verdict::Accepted,
        None => Verdict::Denied,
    };
    let status = if verdict == Verdict::Accepted {
        "ok"
    } else {
        "denied"
    };
    framing.write_header(&mut *stream, &json!({ "status": status }))?;
    Ok(verdict)
}

/// The most addresses a [`FailureLimit`] remembers at once.
pub const MAX_TRACKED: usize = 10_000;

/// Who failed: an IP address, or the one bucket of Unix-socket clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Ip(IpAddr),
    Local,
}

impl Source {
    fn of(peer: &Address) -> Source {
        match peer.as_inet() {
            Some(addr) => Source::Ip(addr.ip().to_canonical()),
            None => Source::Local,
        }
    }
}

/// The failures of one source.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// A limit on failed handshakes per client address; see the
/// [module documentation](self#failed-attempts). Shared by every connection
/// of a service (it locks inside).
///
/// ```
/// use std::time::Duration;
/// use socketserver::protocol::auth::FailureLimit;
///
/// let limit = FailureLimit::new(2, Duration::from_secs(60));
/// let peer = "127.0.0.1:5000".parse::<std::net::SocketAddr>().unwrap().into();
/// assert!(limit.check(&peer).is_ok());
/// limit.failed(&peer);
/// limit.failed(&peer);
/// let blocked = limit.check(&peer).unwrap_err();
/// assert_eq!(blocked.failures, 2);
/// limit.succeeded(&peer); // (only a client with the key gets here)
/// assert!(limit.check(&peer).is_ok());
/// ```
#[derive(Debug)]
pub struct FailureLimit {
    max_failures: u32,
    window: Duration,
    table: parking_lot::Mutex<HashMap<Source, Failures>>,
}

/// Why [`FailureLimit::check`] refused an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// How many failures in a row the address has.
    pub failures: u32,
    /// How long until it may try again.
    pub retry_after: Duration,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused: {} failed handshakes; may try again in {:.0} s",
            self.failures,
            self.retry_after.as_secs_f64().ceil()
        )
    }
}

impl Default for FailureLimit {
    /// 5 failures, 60 s.
    fn default() -> Self {
        FailureLimit::new(5, Duration::from_secs(60))
    }
}

impl FailureLimit {
    /// Refuses an address for `window` after its `max_failures`-th failure
    /// (failures more than `window` apart start the count again).
    /// `max_failures` 0 turns the limit off.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        FailureLimit {
            max_failures,
            window,
            table: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// No limit at all.
    pub fn off() -> Self {
        FailureLimit::new(0, Duration::ZERO)
    }

    /// The number of failures that blocks an address (0: never).
    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }

    /// How long a blocked address stays blocked after its last failure.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Whether `peer` may try a handshake now.
    pub fn check(&self, peer: &Address) -> Result<(), Blocked> {
        if self.max_failures == 0 {
            return Ok(());
        }
        self.blocked(&self.table.lock(), Source::of(peer))
    }

    fn blocked(&self, table: &HashMap<Source, Failures>, source: Source) -> Result<(), Blocked> {
        let Some(entry) = table.get(&source) else {
            return Ok(());
        };
        let since = entry.last.elapsed();
        if entry.count >= self.max_failures && since < self.window {
            return Err(Blocked {
                failures: entry.count,
                retry_after: self.window - since,
            });
        }
        Ok(())
    }

    /// Counts a wrong answer from `peer`; returns its failures in a row.
    pub fn failed(&self, peer: &Address) -> u32 {
        if self.max_failures == 0 {
            return 0;
        }
        self.record_failure(&mut self.table.lock(), Source::of(peer))
    }

    fn record_failure(&self, table: &mut HashMap<Source, Failures>, source: Source) -> u32 {
        let now = Instant::now();
        if table.len() >= MAX_TRACKED && !table.contains_key(&source) {
            let window = self.window;
            table.retain(|_, entry| now.duration_since(entry.last) < window);
            if table.len() >= MAX_TRACKED {
                let oldest = table
                    .iter()
                    .min_by_key(|(_, entry)| entry.last)
                    .map(|(source, _)| *source);
                if let Some(oldest) = oldest {
                    table.remove(&oldest);
                }
            }
        }
        let entry = table.entry(source).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) >= self.window {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        entry.count
    }

    /// Judges an answer from `peer` under the limit, in one step: refused
    /// unchecked while the address is blocked, otherwise `verify` decides
    /// and the outcome is counted. Being one step, parallel connections of
    /// one address get at most `max_failures` answers checked per window.
    pub fn judge(&self, peer: &Address, verify: impl FnOnce() -> bool) -> Verdict {
        if self.max_failures == 0 {
            return if verify() {
                Verdict::Accepted
            } else {
                Verdict::Denied
            };
        }
        let source = Source::of(peer);
        let mut table = self.table.lock();
        if self.blocked(&table, source).is_err() {
            return Verdict::Refused;
        }
        if verify() {
            table.remove(&source);
            Verdict::Accepted
        } else {
            self.record_failure(&mut table, source);
            Verdict::Denied
        }
    }

    /// Forgets the failures of `peer` (it answered right).
    pub fn succeeded(&self, peer: &Address) {
        if self.max_failures > 0 {
            self.table.lock().remove(&Source::of(peer));
        }
    }

    /// How many addresses are remembered now.
    pub fn tracked(&self) -> usize {
        self.table.lock().len()
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
    if got == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection before the challenge (it refuses an address \
             for a while after repeated failed handshakes)",
        ));
    }
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
    use crate::protocol::framing::Endian;
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

    fn inet(text: &str) -> Address {
        Address::Inet(text.parse().unwrap())
    }

    #[test]
    fn failures_block_an_address_for_the_window() {
        let limit = FailureLimit::new(3, Duration::from_millis(300));
        let (a, a_other_port, b) = (inet("10.0.0.1:1"), inet("10.0.0.1:2"), inet("10.0.0.2:1"));
        assert_eq!(limit.failed(&a), 1);
        assert_eq!(
            limit.failed(&a_other_port),
            2,
            "counted per IP, not per port"
        );
        assert!(limit.check(&a).is_ok());
        assert_eq!(limit.failed(&a), 3);
        let blocked = limit.check(&a_other_port).unwrap_err();
        assert_eq!(blocked.failures, 3);
        assert!(blocked.retry_after <= Duration::from_millis(300));
        assert!(limit.check(&b).is_ok(), "another address is not affected");
        // The block ends one window after the last failure, and the count
        // starts again.
        std::thread::sleep(Duration::from_millis(350));
        assert!(limit.check(&a).is_ok());
        assert_eq!(limit.failed(&a), 1);
        // A right answer forgets the failures.
        limit.succeeded(&a);
        assert_eq!(limit.tracked(), 0);
        // IPv4-mapped IPv6 is the same client as IPv4.
        limit.failed(&inet("[::ffff:10.0.0.3]:1"));
        assert_eq!(limit.failed(&inet("10.0.0.3:9")), 2);
    }

    #[test]
    fn parallel_answers_are_judged_one_at_a_time() {
        let limit = std::sync::Arc::new(FailureLimit::new(4, Duration::from_secs(60)));
        let checked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let (limit, checked) = (limit.clone(), checked.clone());
                std::thread::spawn(move || {
                    let peer = inet(&format!("10.0.0.1:{}", 1000 + i));
                    limit.judge(&peer, || {
                        checked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(5));
                        false
                    })
                })
            })
            .collect();
        let verdicts: Vec<Verdict> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(checked.load(std::sync::atomic::Ordering::SeqCst), 4);
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Denied).count(),
            4
        );
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Refused).count(),
            12
        );
        // Off: every answer is checked.
        let off = FailureLimit::off();
        assert_eq!(off.judge(&inet("10.0.0.1:1"), || true), Verdict::Accepted);
        assert_eq!(off.judge(&inet("10.0.0.1:1"), || false), Verdict::Denied);
    }

    #[test]
    fn unix_clients_share_one_count_and_off_never_blocks() {
        let limit = FailureLimit::new(1, Duration::from_secs(60));
        limit.failed(&Address::Unix(None));
        assert!(limit.check(&Address::Unix(Some("/x".into()))).is_err());
        let off = FailureLimit::off();
        for _ in 0..100 {
            off.failed(&inet("10.0.0.1:1"));
        }
        assert!(off.check(&inet("10.0.0.1:1")).is_ok());
        assert_eq!(off.tracked(), 0);
    }

    #[test]
    fn memory_stays_bounded_under_many_sources() {
        let limit = FailureLimit::new(5, Duration::from_secs(60));
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            limit.failed(&Address::Inet((ip, 1).into()));
        }
        assert_eq!(limit.tracked(), MAX_TRACKED);
    }

    #[test]
    fn a_closed_connection_before_the_challenge_is_explained() {
        let (a, mut b) = UnixStream::pair().unwrap();
        drop(a);
        let e =
            client_handshake(&mut b, &Key::new(&b"k"[..]).unwrap(), &Framing::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("before the challenge"), "{e}");
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
