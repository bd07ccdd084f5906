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
//! A [`FailureLimit`] counts wrong answers, and answers that never came (a
//! client silent until the handshake's timeout), at three scopes:
//!
//! - **per client address**: after [`max_failures`](FailureLimit::new)
//!   (default 5) with no more than [`window`](FailureLimit::new) (default
//!   60 s) between one and the next, the address is refused for `window`
//!   after its last failure. A right answer forgets the address's failures.
//!   IP clients are counted per IP address (every port; IPv4-mapped IPv6 is
//!   IPv4); Unix-socket clients, which have no address, share one count.
//! - **per network**: the failures of every address of one IPv4 /24 or one
//!   IPv6 /64 (what one host or one customer usually holds) drain at
//!   [`per_prefix`](FailureLimit::per_prefix) per `window` (default 4 ×
//!   `max_failures`, 20); a network over that is refused until its count
//!   drains below it again. This stops a client that rotates its address
//!   within its network.
//! - **globally**: the failures of every client drain at
//!   [`global`](FailureLimit::global) per `window` (default 20 ×
//!   `max_failures`, 100); over that, every handshake is refused. This bounds
//!   how fast keys can be tried from many networks at once, at the price of
//!   letting such an attack lock everyone out for a while: turn it off (0)
//!   where availability matters more than a weak key.
//!
//! Only failures that are news count further up: those of an address that is
//! already refused (its parallel connections timing out together, say) do
//! not add to its network's count, nor a refused network's to the global
//! count, so one client can never trip a wider limit by itself.
//!
//! A refused client is closed at once, before any challenge, and logged (a
//! client sees the connection end before the challenge). At most
//! [`MAX_TRACKED`] addresses and as many networks are remembered; past that,
//! expired entries and then the oldest are forgotten, so memory stays bounded
//! under a flood of sources.
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
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::protocol::framing::{read_full, FrameCodec};
use crate::transport::address::Address;

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

impl Verdict {
    /// The header that tells the client.
    pub fn header(self) -> VerdictHeader {
        match self {
            Verdict::Accepted => VerdictHeader::Ok,
            Verdict::Denied | Verdict::Refused => VerdictHeader::Denied,
        }
    }
}

/// The verdict as the wire carries it: a JSON-header message
/// `{"status":"ok"}` or `{"status":"denied"}`, in the service's byte order.
///
/// ```
/// use socketserver::protocol::auth::VerdictHeader;
/// assert_eq!(serde_json::to_string(&VerdictHeader::Denied).unwrap(), r#"{"status":"denied"}"#);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum VerdictHeader {
    /// The client is in.
    Ok,
    /// The client is out; the server closes the connection.
    Denied,
}

/// Runs the server's side of the handshake on `stream`: sends a fresh
/// challenge, reads the 32-byte answer, sends the verdict.
///
/// A client that goes away before its answer is complete gets an
/// [`io::ErrorKind::UnexpectedEof`] error (`truncated handshake: ...`) and no
/// verdict. Use a read timeout on the stream so that a silent client cannot
/// hold the connection. A server of message handlers uses
/// [`Authenticated`](crate::services::auth::Authenticated) instead.
pub fn server_handshake<S: Read + Write>(
    stream: &mut S,
    key: &Key,
    framing: &FrameCodec,
) -> io::Result<Verdict> {
    handshake_inner(stream, key, framing, None)
}

/// [`server_handshake`] under a [`FailureLimit`] for the client at `peer`
/// ([`FailureLimit::judge`]): an address already blocked when its answer
/// arrives (because other connections of it failed meanwhile) is denied
/// without its answer being checked ([`Verdict::Refused`]), so parallel
/// connections cannot try more keys than the limit lets through; a wrong
/// answer is counted, a right one clears the count. Checking the limit
/// before the challenge is the caller's business ([`FailureLimit::check`]).
pub fn server_handshake_limited<S: Read + Write>(
    stream: &mut S,
    key: &Key,
    framing: &FrameCodec,
    limit: &FailureLimit,
    peer: &Address,
) -> io::Result<Verdict> {
    handshake_inner(stream, key, framing, Some((limit, peer)))
}

fn handshake_inner<S: Read + Write>(
    stream: &mut S,
    key: &Key,
    framing: &FrameCodec,
    limit: Option<(&FailureLimit, &Address)>,
) -> io::Result<Verdict> {
    let challenge = challenge()?;
    stream.write_all(&challenge)?;
    let mut answer = [0u8; ANSWER_LEN];
    let got = read_full(&mut *stream, &mut answer)?;
    if got < ANSWER_LEN {
        return Err(truncated_answer(got));
    }
    let verify = || key.verify(&challenge, &answer);
    let verdict = match limit {
        Some((limit, peer)) => limit.judge(peer, verify),
        None if verify() => Verdict::Accepted,
        None => Verdict::Denied,
    };
    framing.write_header(&mut *stream, &verdict.header())?;
    Ok(verdict)
}

/// The error of an answer cut short after `got` bytes.
pub fn truncated_answer(got: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("truncated handshake: the client sent {got} of {ANSWER_LEN} answer bytes"),
    )
}

/// The most addresses, and the most networks, a [`FailureLimit`] remembers
/// at once.
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

    /// The network counted together with this source: its IPv4 /24 or IPv6
    /// /64. Unix clients already share one count.
    fn prefix(self) -> Option<IpPrefix> {
        match self {
            Source::Ip(IpAddr::V4(v4)) => {
                let [a, b, c, _] = v4.octets();
                Some(IpPrefix {
                    network: IpAddr::V4([a, b, c, 0].into()),
                    len: 24,
                })
            }
            Source::Ip(IpAddr::V6(v6)) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Some(IpPrefix {
                    network: IpAddr::V6(bits.into()),
                    len: 64,
                })
            }
            Source::Local => None,
        }
    }
}

/// A network: an address with its low bits cleared, and how many bits
/// count (`10.1.2.0/24`, `2001:db8::/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    network: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// The network's first address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// How many leading bits name the network.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether the prefix is empty (length 0: every address); never, for
    /// the networks a [`FailureLimit`] counts.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// The failures in a row of one address.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// A count that drains at a steady rate (a leaky bucket): a failure adds
/// one, and `max` drain away per window.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    updated: Instant,
}

impl Bucket {
    fn empty(now: Instant) -> Self {
        Bucket {
            level: 0.0,
            updated: now,
        }
    }

    fn level_at(&self, now: Instant, per_second: f64) -> f64 {
        let drained = now.saturating_duration_since(self.updated).as_secs_f64() * per_second;
        (self.level - drained).max(0.0)
    }

    fn add(&mut self, now: Instant, per_second: f64) {
        self.level = self.level_at(now, per_second) + 1.0;
        self.updated = now;
    }

    /// Refused while the level is over `max - 1` (`max` failures in quick
    /// succession, less what drained meanwhile): until it is back to
    /// `max - 1`, when one more failure is allowed.
    fn blocked(&self, now: Instant, max: u32, per_second: f64) -> Option<(u32, Duration)> {
        let level = self.level_at(now, per_second);
        let allowed = f64::from(max.saturating_sub(1));
        if max == 0 || level <= allowed {
            return None;
        }
        let wait = (level - allowed) / per_second;
        Some((level.ceil() as u32, Duration::from_secs_f64(wait.min(1e9))))
    }
}

/// What a [`FailureLimit`] remembers.
#[derive(Debug)]
struct Tables {
    sources: HashMap<Source, Failures>,
    prefixes: HashMap<IpPrefix, Bucket>,
    global: Bucket,
}

/// A limit on failed handshakes per client address, per network and in
/// all; see the [module documentation](self#failed-attempts). Shared by
/// every connection of a service (it locks inside).
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
    per_prefix: u32,
    global: u32,
    table: parking_lot::Mutex<Tables>,
}

/// Which clients a [`Blocked`] refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// This client's address.
    Address,
    /// Every address of this network.
    Network(IpPrefix),
    /// Every client.
    Everyone,
}

/// Why [`FailureLimit::check`] refused a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// How many failures counted against the scope: in a row for an
    /// address, recent (not yet drained) for a network or everyone.
    pub failures: u32,
    /// How long until it may try again.
    pub retry_after: Duration,
    /// Whom the refusal covers.
    pub scope: Scope,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let retry = self.retry_after.as_secs_f64().ceil();
        match self.scope {
            Scope::Address => write!(
                f,
                "refused: {} failed handshakes; may try again in {retry:.0} s",
                self.failures
            ),
            Scope::Network(prefix) => write!(
                f,
                "refused: {} recent failed handshakes from {prefix}; may try again in {retry:.0} s",
                self.failures
            ),
            Scope::Everyone => write!(
                f,
                "refused: {} recent failed handshakes from all clients; may try again in {retry:.0} s",
                self.failures
            ),
        }
    }
}

impl Default for FailureLimit {
    /// 5 failures per address, 20 per network, 100 in all, per 60 s.
    fn default() -> Self {
        FailureLimit::new(5, Duration::from_secs(60))
    }
}

impl FailureLimit {
    /// Refuses an address for `window` after its `max_failures`-th failure
    /// (failures more than `window` apart start the count again), a network
    /// over 4 × `max_failures` and everyone over 20 × `max_failures`
    /// recent failures (change those with [`per_prefix`](Self::per_prefix)
    /// and [`global`](Self::global)). `max_failures` 0 turns every scope
    /// off.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        let now = Instant::now();
        FailureLimit {
            max_failures,
            window,
            per_prefix: max_failures.saturating_mul(4),
            global: max_failures.saturating_mul(20),
            table: parking_lot::Mutex::new(Tables {
                sources: HashMap::new(),
                prefixes: HashMap::new(),
                global: Bucket::empty(now),
            }),
        }
    }

    /// No limit at all.
    pub fn off() -> Self {
        FailureLimit::new(0, Duration::ZERO)
    }

    /// Sets how many recent failures refuse a whole IPv4 /24 or IPv6 /64
    /// (0: no limit per network).
    pub fn per_prefix(mut self, max_failures: u32) -> Self {
        self.per_prefix = max_failures;
        self
    }

    /// Sets how many recent failures, from all clients together, refuse
    /// every handshake (0: no global limit).
    pub fn global(mut self, max_failures: u32) -> Self {
        self.global = max_failures;
        self
    }

    /// The number of failures in a row that blocks an address (0: never).
    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }

    /// The recent failures that block a network (0: never).
    pub fn prefix_max_failures(&self) -> u32 {
        self.per_prefix
    }

    /// The recent failures that block everyone (0: never).
    pub fn global_max_failures(&self) -> u32 {
        self.global
    }

    /// How long a blocked address stays blocked after its last failure,
    /// and how long the network and global counts take to drain.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// How many failures drain per second from a count whose limit is
    /// `max`.
    fn rate(&self, max: u32) -> f64 {
        let window = self.window.as_secs_f64();
        if window > 0.0 {
            f64::from(max) / window
        } else {
            f64::INFINITY
        }
    }

    fn is_off(&self) -> bool {
        self.window.is_zero()
            || (self.max_failures == 0 && self.per_prefix == 0 && self.global == 0)
    }

    /// Whether `peer` may try a handshake now.
    pub fn check(&self, peer: &Address) -> Result<(), Blocked> {
        if self.is_off() {
            return Ok(());
        }
        self.blocked(&self.table.lock(), Source::of(peer), Instant::now())
    }

    fn blocked(&self, tables: &Tables, source: Source, now: Instant) -> Result<(), Blocked> {
        if let Some(blocked) = self.address_blocked(tables, source, now) {
            return Err(blocked);
        }
        if let Some(prefix) = source.prefix() {
            if let Some(bucket) = tables.prefixes.get(&prefix) {
                let rate = self.rate(self.per_prefix);
                if let Some((failures, retry_after)) = bucket.blocked(now, self.per_prefix, rate) {
                    return Err(Blocked {
                        failures,
                        retry_after,
                        scope: Scope::Network(prefix),
                    });
                }
            }
        }
        let rate = self.rate(self.global);
        if let Some((failures, retry_after)) = tables.global.blocked(now, self.global, rate) {
            return Err(Blocked {
                failures,
                retry_after,
                scope: Scope::Everyone,
            });
        }
        Ok(())
    }

    fn address_blocked(&self, tables: &Tables, source: Source, now: Instant) -> Option<Blocked> {
        let entry = tables.sources.get(&source)?;
        let since = now.saturating_duration_since(entry.last);
        (self.max_failures > 0 && entry.count >= self.max_failures && since < self.window).then(
            || Blocked {
                failures: entry.count,
                retry_after: self.window - since,
                scope: Scope::Address,
            },
        )
    }

    /// Counts a failure of `peer` (a wrong answer, or none in time);
    /// returns its failures in a row.
    pub fn failed(&self, peer: &Address) -> u32 {
        if self.is_off() {
            return 0;
        }
        self.record_failure(&mut self.table.lock(), Source::of(peer), Instant::now())
    }

    fn record_failure(&self, tables: &mut Tables, source: Source, now: Instant) -> u32 {
        let was_blocked = self.address_blocked(tables, source, now).is_some();
        let count = if self.max_failures > 0 {
            let window = self.window;
            if tables.sources.len() >= MAX_TRACKED && !tables.sources.contains_key(&source) {
                tables
                    .sources
                    .retain(|_, entry| now.saturating_duration_since(entry.last) < window);
                if tables.sources.len() >= MAX_TRACKED {
                    let oldest = tables
                        .sources
                        .iter()
                        .min_by_key(|(_, entry)| entry.last)
                        .map(|(source, _)| *source);
                    if let Some(oldest) = oldest {
                        tables.sources.remove(&oldest);
                    }
                }
            }
            let entry = tables.sources.entry(source).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.saturating_duration_since(entry.last) >= window {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            entry.count
        } else {
            0
        };
        if was_blocked {
            // Already refused: nothing new for the wider counts.
            return count;
        }
        let mut network_blocked = false;
        if let (Some(prefix), true) = (source.prefix(), self.per_prefix > 0) {
            let rate = self.rate(self.per_prefix);
            if tables.prefixes.len() >= MAX_TRACKED && !tables.prefixes.contains_key(&prefix) {
                tables
                    .prefixes
                    .retain(|_, bucket| bucket.level_at(now, rate) > 0.0);
                if tables.prefixes.len() >= MAX_TRACKED {
                    let lowest = tables
                        .prefixes
                        .iter()
                        .min_by(|a, b| a.1.level_at(now, rate).total_cmp(&b.1.level_at(now, rate)))
                        .map(|(prefix, _)| *prefix);
                    if let Some(lowest) = lowest {
                        tables.prefixes.remove(&lowest);
                    }
                }
            }
            let bucket = tables
                .prefixes
                .entry(prefix)
                .or_insert_with(|| Bucket::empty(now));
            network_blocked = bucket.blocked(now, self.per_prefix, rate).is_some();
            if !network_blocked {
                bucket.add(now, rate);
            }
        }
        if !network_blocked && self.global > 0 {
            let rate = self.rate(self.global);
            if tables.global.blocked(now, self.global, rate).is_none() {
                tables.global.add(now, rate);
            }
        }
        count
    }

    /// Judges an answer from `peer` under the limit, in one step: refused
    /// unchecked while the address (or its network, or everyone) is
    /// blocked, otherwise `verify` decides and the outcome is counted. Being
    /// one step, parallel connections of one address get at most
    /// `max_failures` answers checked per window.
    pub fn judge(&self, peer: &Address, verify: impl FnOnce() -> bool) -> Verdict {
        if self.is_off() {
            return if verify() {
                Verdict::Accepted
            } else {
                Verdict::Denied
            };
        }
        let source = Source::of(peer);
        let now = Instant::now();
        let mut tables = self.table.lock();
        if self.blocked(&tables, source, now).is_err() {
            return Verdict::Refused;
        }
        if verify() {
            tables.sources.remove(&source);
            Verdict::Accepted
        } else {
            self.record_failure(&mut tables, source, now);
            Verdict::Denied
        }
    }

    /// Forgets the failures in a row of `peer` (it answered right). Its
    /// network's and the global counts drain as usual.
    pub fn succeeded(&self, peer: &Address) {
        if !self.is_off() {
            self.table.lock().sources.remove(&Source::of(peer));
        }
    }

    /// How many addresses are remembered now.
    pub fn tracked(&self) -> usize {
        self.table.lock().sources.len()
    }

    /// How many networks are remembered now.
    pub fn tracked_networks(&self) -> usize {
        self.table.lock().prefixes.len()
    }
}

/// A client that got no challenge within its read timeout: most likely it
/// is talking to another kind of server. Carried inside the [`io::Error`]
/// (of kind [`io::ErrorKind::TimedOut`]) that [`client_handshake`] returns;
/// a client that knows where it connected adds that with
/// [`NoChallenge::explain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoChallenge {
    /// How many challenge bytes did arrive.
    pub got: usize,
    /// Where the client connected, if known.
    pub from: Option<String>,
    /// How long it waited, if known.
    pub waited: Option<Duration>,
    /// What it expected to talk to (`an exec server`), if known.
    pub expected: Option<&'static str>,
}

impl NoChallenge {
    /// The `NoChallenge` inside an error, if it carries one.
    pub fn from_io(error: &io::Error) -> Option<&NoChallenge> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<NoChallenge>())
    }

    /// Adds where the client connected, how long it waited and what it
    /// expected to a `NoChallenge` error; other errors pass unchanged.
    pub fn explain(
        error: io::Error,
        from: impl fmt::Display,
        waited: Option<Duration>,
        expected: &'static str,
    ) -> io::Error {
        match NoChallenge::from_io(&error) {
            Some(inner) => io::Error::new(
                io::ErrorKind::TimedOut,
                NoChallenge {
                    got: inner.got,
                    from: Some(from.to_string()),
                    waited,
                    expected: Some(expected),
                },
            ),
            None => error,
        }
    }
}

impl fmt::Display for NoChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no challenge")?;
        if let Some(from) = &self.from {
            write!(f, " from {from}")?;
        }
        match self.waited {
            Some(waited) => write!(f, " within {} s", waited.as_secs_f64())?,
            None => f.write_str(" within the read timeout")?,
        }
        if self.got > 0 {
            write!(f, " (only {} of {CHALLENGE_LEN} bytes)", self.got)?;
        }
        if let Some(expected) = self.expected {
            write!(f, ": is it {expected}?")?;
        }
        Ok(())
    }
}

impl std::error::Error for NoChallenge {}

/// Runs the client's side of the handshake on `stream`: reads the challenge,
/// answers it, reads the verdict. Denial is an
/// [`io::ErrorKind::PermissionDenied`] error; a challenge that does not come
/// within the stream's read timeout is a [`NoChallenge`] error.
pub fn client_handshake<S: Read + Write>(
    stream: &mut S,
    key: &Key,
    framing: &FrameCodec,
) -> io::Result<()> {
    let mut challenge = [0u8; CHALLENGE_LEN];
    let mut got = 0;
    while got < CHALLENGE_LEN {
        match stream.read(&mut challenge[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    NoChallenge {
                        got,
                        from: None,
                        waited: None,
                        expected: None,
                    },
                ))
            }
            Err(e) => return Err(e),
        }
    }
    if got == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection before the challenge (it refuses an address for \
             a while after repeated failed handshakes, and new connections while too many \
             handshakes are in progress)",
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
        .read_answer(&mut *stream, &mut Vec::new())?
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection instead of answering the handshake",
            )
        })?;
    let text = serde_json::Value::Object(verdict);
    match serde_json::from_value::<VerdictHeader>(text.clone()) {
        Ok(VerdictHeader::Ok) => Ok(()),
        Ok(VerdictHeader::Denied) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "authentication denied: the key does not match the server's",
        )),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected handshake verdict: {text}"),
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
        let framing = FrameCodec::new().endian(endian);
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
            // One address in each of as many /24 networks.
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8) + 1);
            limit.failed(&Address::Inet((ip, 1).into()));
        }
        assert_eq!(limit.tracked(), MAX_TRACKED);
        // Networks whose count drained away meanwhile were forgotten first.
        assert!(limit.tracked_networks() <= MAX_TRACKED);
        assert!(limit.tracked_networks() > MAX_TRACKED / 2);
    }

    #[test]
    fn a_network_is_refused_when_its_addresses_fail_together() {
        let limit = FailureLimit::new(3, Duration::from_secs(60))
            .per_prefix(6)
            .global(0);
        for _ in 0..3 {
            limit.failed(&inet("10.0.0.1:1"));
        }
        assert_eq!(
            limit.check(&inet("10.0.0.1:1")).unwrap_err().scope,
            Scope::Address
        );
        assert!(
            limit.check(&inet("10.0.0.2:1")).is_ok(),
            "3 of 6 for the /24"
        );
        for _ in 0..3 {
            limit.failed(&inet("10.0.0.2:1"));
        }
        let blocked = limit.check(&inet("10.0.0.200:1")).unwrap_err();
        let network = IpPrefix {
            network: "10.0.0.0".parse().unwrap(),
            len: 24,
        };
        assert_eq!(blocked.scope, Scope::Network(network));
        assert_eq!(blocked.failures, 6);
        assert!(
            blocked.retry_after <= Duration::from_secs(10),
            "{blocked:?}"
        );
        assert_eq!(
            blocked.to_string(),
            "refused: 6 recent failed handshakes from 10.0.0.0/24; may try again in 10 s"
        );
        // A neighbouring network is not affected, and a blocked network's
        // answers are refused unchecked.
        assert!(limit.check(&inet("10.0.1.1:1")).is_ok());
        assert_eq!(limit.judge(&inet("10.0.0.99:1"), || true), Verdict::Refused);
        // IPv6 is counted per /64.
        let v6 = FailureLimit::new(2, Duration::from_secs(60))
            .per_prefix(4)
            .global(0);
        for host in ["[2001:db8::1]:1", "[2001:db8::ffff:2]:1"] {
            v6.failed(&inet(host));
            v6.failed(&inet(host));
        }
        assert!(matches!(
            v6.check(&inet("[2001:db8::7]:1")).unwrap_err().scope,
            Scope::Network(prefix) if prefix.to_string() == "2001:db8::/64"
        ));
        assert!(v6.check(&inet("[2001:db8:0:1::7]:1")).is_ok());
    }

    #[test]
    fn one_blocked_address_cannot_block_its_network_or_everyone() {
        // Its parallel connections timing out together, say.
        let limit = FailureLimit::new(2, Duration::from_secs(60))
            .per_prefix(3)
            .global(3);
        for _ in 0..50 {
            limit.failed(&inet("10.0.0.1:1"));
        }
        assert!(limit.check(&inet("10.0.0.1:1")).is_err());
        assert!(limit.check(&inet("10.0.0.2:1")).is_ok());
        assert!(limit.check(&inet("192.0.2.1:1")).is_ok());
    }

    #[test]
    fn the_global_limit_refuses_everyone() {
        let limit = FailureLimit::new(2, Duration::from_secs(60))
            .per_prefix(0)
            .global(4);
        for host in ["10.0.0.1:1", "10.0.0.1:2", "192.0.2.1:1", "192.0.2.1:2"] {
            limit.failed(&inet(host));
        }
        let blocked = limit.check(&inet("198.51.100.1:1")).unwrap_err();
        assert_eq!(blocked.scope, Scope::Everyone);
        assert_eq!(
            limit.judge(&inet("198.51.100.1:1"), || true),
            Verdict::Refused
        );
        assert!(
            blocked.to_string().contains("from all clients"),
            "{blocked}"
        );
        // Defaults: 4 and 20 times the per-address limit; off means off.
        let default = FailureLimit::default();
        assert_eq!(
            (
                default.max_failures(),
                default.prefix_max_failures(),
                default.global_max_failures()
            ),
            (5, 20, 100)
        );
        let off = FailureLimit::off();
        for i in 0..200 {
            off.failed(&inet(&format!("10.0.{i}.1:1")));
        }
        assert!(off.check(&inet("10.0.0.1:1")).is_ok());
    }

    #[test]
    fn network_and_global_counts_drain_at_their_rate() {
        let start = Instant::now();
        let per_second = 2.0; // a limit of 4 per 2 s window
        let mut bucket = Bucket::empty(start);
        for _ in 0..4 {
            bucket.add(start, per_second);
        }
        let (failures, wait) = bucket.blocked(start, 4, per_second).unwrap();
        assert_eq!((failures, wait), (4, Duration::from_millis(500)));
        assert!(bucket
            .blocked(start + Duration::from_millis(499), 4, per_second)
            .is_some());
        // Half a second later one failure has drained: one more is allowed.
        let later = start + Duration::from_millis(500);
        assert!(bucket.blocked(later, 4, per_second).is_none());
        let mut three = Bucket::empty(start);
        for _ in 0..3 {
            three.add(start, per_second);
        }
        assert!(three.blocked(start, 4, per_second).is_none());
        assert!((bucket.level_at(later, per_second) - 3.0).abs() < 1e-9);
        assert_eq!(
            bucket.level_at(start + Duration::from_secs(5), per_second),
            0.0
        );
    }

    #[test]
    fn a_silent_server_is_no_challenge() {
        let (_server, mut b) = UnixStream::pair().unwrap();
        b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let e = client_handshake(&mut b, &Key::new(&b"k"[..]).unwrap(), &FrameCodec::new())
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(NoChallenge::from_io(&e).is_some());
        let e = NoChallenge::explain(
            e,
            "tcp://127.0.0.1:9000",
            Some(Duration::from_secs(3)),
            "an exec server",
        );
        assert_eq!(
            e.to_string(),
            "no challenge from tcp://127.0.0.1:9000 within 3 s: is it an exec server?"
        );
        let other = NoChallenge::explain(io::Error::other("x"), "a", None, "b");
        assert_eq!(other.to_string(), "x");
    }

    #[test]
    fn a_closed_connection_before_the_challenge_is_explained() {
        let (a, mut b) = UnixStream::pair().unwrap();
        drop(a);
        let e = client_handshake(&mut b, &Key::new(&b"k"[..]).unwrap(), &FrameCodec::new())
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("before the challenge"), "{e}");
    }

    #[test]
    fn a_truncated_answer_is_an_error_without_verdict() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let key = Key::new(&b"k"[..]).unwrap();
        let server = std::thread::spawn(move || server_handshake(&mut a, &key, &FrameCodec::new()));
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
