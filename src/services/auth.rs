//! [`Authenticated`]: the HMAC handshake in front of any message handler,
//! as a wrapper (a mixin in CPython's sense), shared by `exec` and `files`.
//!
//! The wrapper sends the 32-byte challenge when a connection opens, reads
//! the answer as one fixed-size message within the handshake's timeout,
//! sends the verdict (a JSON-header frame in the service's byte order) and
//! closes politely on denial; once the client is in, it opens the inner
//! handler's session and hands every message to it. The handshake never
//! blocks (it runs inline on an event loop); the inner handler's messages
//! run as it says.
//!
//! It also guards the handshake:
//!
//! - a [`FailureLimit`] counts wrong answers, and answers that never came,
//!   per address, per network and in all (see
//!   [`protocol::auth`](crate::protocol::auth#failed-attempts)), and closes
//!   a refused client before any challenge;
//! - a [`StartupLimit`] caps the connections in the handshake at once, as
//!   OpenSSH's `MaxStartups` does: past `start` of them a new connection is
//!   refused with a probability that rises linearly from `rate` % to 100 %
//!   at `full`. Silent clients then cannot hold every connection slot:
//!   an honest client that retries gets in.
//!
//! ```
//! use std::time::Duration;
//! use socketserver::protocol::auth::{FailureLimit, Key};
//! use socketserver::services::auth::{AuthConfig, StartupLimit};
//! use socketserver::services::Exec;
//! use socketserver::ThreadingTcpServer;
//!
//! let auth = AuthConfig::new(Key::new(&b"a shared secret"[..])?)
//!     .timeout(Some(Duration::from_secs(10)))
//!     .failure_limit(FailureLimit::new(5, Duration::from_secs(60)))
//!     .max_startups("10:30:100".parse().unwrap());
//! // The handshake's verdict follows exec's byte order.
//! let exec = Exec::new().allow("uname").authenticated(auth);
//! let server = ThreadingTcpServer::bind("127.0.0.1:0", exec)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::protocol::auth::{self, FailureLimit, Key, Verdict, ANSWER_LEN, CHALLENGE_LEN};
use crate::protocol::framing::{Endian, FrameCodec};
use crate::request::{Closing, Conn, Framing, FramingError, MessageHandler, Next};
use crate::transport::address::Address;

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

/// What the handshake needs, held once for a service: the key, the byte
/// order of the verdict, the time a client has to answer, the
/// [`FailureLimit`] and the [`StartupLimit`].
#[derive(Debug)]
pub struct AuthConfig {
    key: Key,
    endian: Endian,
    timeout: Option<Duration>,
    limit: FailureLimit,
    startups: StartupLimit,
}

impl AuthConfig {
    /// A handshake with `key`: a little-endian verdict, 10 s to answer,
    /// [`FailureLimit::default`] and [`StartupLimit::default`].
    pub fn new(key: Key) -> Self {
        AuthConfig {
            key,
            endian: Endian::Little,
            timeout: Some(Duration::from_secs(10)),
            limit: FailureLimit::default(),
            startups: StartupLimit::default(),
        }
    }

    /// Sets the byte order of the verdict's frame: the service's (rule 11).
    /// [`Exec::authenticated`](crate::services::Exec::authenticated) and
    /// [`Files::authenticated`](crate::services::Files::authenticated) set
    /// it for you.
    pub fn endian(mut self, endian: Endian) -> Self {
        self.endian = endian;
        self
    }

    /// Gives a client at most `timeout` to answer the challenge, from the
    /// moment it was sent (default 10 s; `None`: no limit). A client that
    /// lets it pass counts as a failed handshake.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the limit on failed handshakes.
    pub fn failure_limit(mut self, limit: FailureLimit) -> Self {
        self.limit = limit;
        self
    }

    /// Sets the cap on connections in the handshake at once.
    pub fn max_startups(mut self, startups: StartupLimit) -> Self {
        self.startups = startups;
        self
    }

    /// The byte order of the verdict.
    pub fn byte_order(&self) -> Endian {
        self.endian
    }

    /// The time a client has to answer.
    pub fn answer_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The limit on failed handshakes.
    pub fn limit(&self) -> &FailureLimit {
        &self.limit
    }

    /// The cap on connections in the handshake.
    pub fn startups(&self) -> StartupLimit {
        self.startups
    }
}

/// A cap on the connections in the handshake at once, in OpenSSH's
/// `MaxStartups` style `start:rate:full`: below `start` every connection
/// gets a challenge; from `start` on a new one is refused (closed before the
/// challenge) with a probability of `rate` %, rising linearly to 100 % at
/// `full`. The default is OpenSSH's, `10:30:100`.
///
/// ```
/// use socketserver::services::auth::StartupLimit;
///
/// let limit: StartupLimit = "10:30:100".parse().unwrap();
/// assert_eq!(limit.refusal_chance(9), 0.0);
/// assert_eq!(limit.refusal_chance(10), 0.3);
/// assert!((limit.refusal_chance(55) - 0.65).abs() < 1e-9);
/// assert_eq!(limit.refusal_chance(100), 1.0);
/// // A single number N is a hard cap: N:100:N.
/// assert_eq!("50".parse::<StartupLimit>().unwrap().to_string(), "50:100:50");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartupLimit {
    start: usize,
    rate: u8,
    full: usize,
}

impl Default for StartupLimit {
    /// `10:30:100`.
    fn default() -> Self {
        StartupLimit {
            start: 10,
            rate: 30,
            full: 100,
        }
    }
}

impl StartupLimit {
    /// A cap that refuses from `start` connections in the handshake with a
    /// `rate` % chance, rising to every one at `full`. Needs
    /// `1 <= start <= full` and `rate <= 100`.
    pub fn new(start: usize, rate: u8, full: usize) -> Result<Self, String> {
        if start == 0 || start > full || rate > 100 {
            return Err(format!(
                "{start}:{rate}:{full} is not a startup limit (need 1 <= start <= full and rate <= 100)"
            ));
        }
        Ok(StartupLimit { start, rate, full })
    }

    /// How many connections may be in the handshake before refusals begin.
    pub fn start(&self) -> usize {
        self.start
    }

    /// The chance of a refusal at `start`, in percent.
    pub fn rate(&self) -> u8 {
        self.rate
    }

    /// How many connections in the handshake refuse every new one.
    pub fn full(&self) -> usize {
        self.full
    }

    /// The chance (0 to 1) that a new connection is refused while
    /// `in_handshake` others are in the handshake.
    pub fn refusal_chance(&self, in_handshake: usize) -> f64 {
        if in_handshake < self.start {
            return 0.0;
        }
        if in_handshake >= self.full {
            return 1.0;
        }
        let rate = f64::from(self.rate) / 100.0;
        let along = (in_handshake - self.start) as f64 / (self.full - self.start) as f64;
        rate + (1.0 - rate) * along
    }
}

impl fmt::Display for StartupLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate, self.full)
    }
}

impl FromStr for StartupLimit {
    type Err = String;

    /// Parses `start:rate:full`, or `N` for `N:100:N`.
    fn from_str(text: &str) -> Result<Self, String> {
        let number = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| format!("{text:?} is not a startup limit (like 10:30:100)"))
        };
        let parts: Vec<&str> = text.split(':').collect();
        match parts[..] {
            [n] => {
                let n = number(n)?;
                StartupLimit::new(n, 100, n)
            }
            [start, rate, full] => {
                let rate = u8::try_from(number(rate)?)
                    .map_err(|_| format!("{text:?}: the rate is a percentage, at most 100"))?;
                StartupLimit::new(number(start)?, rate, number(full)?)
            }
            _ => Err(format!("{text:?} is not a startup limit (like 10:30:100)")),
        }
    }
}

/// The HMAC handshake in front of a message handler `H`; see the
/// [module documentation](self).
///
/// `H`'s [`open`](MessageHandler::open) runs when the client is in, within
/// the handshake's (non-blocking) message: it must not block.
#[derive(Debug)]
pub struct Authenticated<H> {
    inner: H,
    config: AuthConfig,
    codec: FrameCodec,
    in_handshake: Arc<AtomicUsize>,
    random: AtomicU64,
    refusals: Mutex<RefusalLog>,
}

/// When the last warning about refused startups was logged, and how many
/// were refused since.
#[derive(Debug)]
struct RefusalLog {
    warned: Option<Instant>,
    since: u64,
}

/// How often refusals past the startup limit are reported at warn level.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// The state of one connection behind [`Authenticated`]: waiting for the
/// answer to its challenge, or in, with the inner handler's session.
pub struct AuthSession<S> {
    state: State<S>,
}

enum State<S> {
    Challenged {
        challenge: [u8; CHALLENGE_LEN],
        _slot: HandshakeSlot,
    },
    In(S),
}

impl<S> fmt::Debug for AuthSession<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.state {
            State::Challenged { .. } => "AuthSession::Challenged",
            State::In(_) => "AuthSession::In",
        })
    }
}

/// One connection counted in the handshake, until it is dropped.
struct HandshakeSlot(Arc<AtomicUsize>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The error of a connection refused past the startup limit; the wrapper
/// logged it already.
#[derive(Debug)]
struct StartupRefused(usize);

impl fmt::Display for StartupRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections in the handshake already; refused before the challenge",
            self.0
        )
    }
}

impl std::error::Error for StartupRefused {}

impl<H: MessageHandler> Authenticated<H> {
    /// `inner` behind the handshake that `config` describes.
    pub fn new(inner: H, config: AuthConfig) -> Self {
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            seed = (nanos ^ u64::from(std::process::id())).to_le_bytes();
        }
        Authenticated {
            inner,
            codec: FrameCodec::new().endian(config.endian),
            config,
            in_handshake: Arc::new(AtomicUsize::new(0)),
            random: AtomicU64::new(u64::from_le_bytes(seed)),
            refusals: Mutex::new(RefusalLog {
                warned: None,
                since: 0,
            }),
        }
    }

    /// The handler behind the handshake.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// The handshake's settings.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// How many connections are in the handshake now.
    pub fn in_handshake(&self) -> usize {
        self.in_handshake.load(Ordering::SeqCst)
    }

    /// A number in [0, 1) (splitmix64: cheap, and good enough to spread
    /// refusals).
    fn draw(&self) -> f64 {
        let mut z = self
            .random
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Logs a refusal past the startup limit: at info each time, at warn
    /// at most every [`REFUSAL_WARNING_EVERY`].
    fn report_refusal(&self, peer: &Address, in_handshake: usize) {
        log::info!(
            "{peer}: {in_handshake} connections in the handshake (--max-startups {}); refused before the challenge",
            self.config.startups
        );
        let mut refusals = self.refusals.lock();
        refusals.since += 1;
        let due = refusals
            .warned
            .is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY);
        if due {
            log::warn!(
                "{} connection(s) refused before the challenge: {in_handshake} connections in the \
                 handshake, over --max-startups {}",
                refusals.since,
                self.config.startups
            );
            refusals.warned = Some(Instant::now());
            refusals.since = 0;
        }
    }

    fn send_verdict(&self, verdict: Verdict, conn: &mut Conn<'_>) -> io::Result<()> {
        self.codec.write_header(conn, &verdict.header())
    }
}

impl<H: MessageHandler> MessageHandler for Authenticated<H> {
    type Session = AuthSession<H::Session>;

    fn framing(&self, session: &Self::Session) -> Framing {
        match &session.state {
            State::Challenged { .. } => Framing::Exact { len: ANSWER_LEN },
            State::In(inner) => self.inner.framing(inner),
        }
    }

    fn blocking(&self, session: &Self::Session) -> bool {
        match &session.state {
            State::Challenged { .. } => false,
            State::In(inner) => self.inner.blocking(inner),
        }
    }

    fn idle_ends_at_shutdown(&self) -> bool {
        self.inner.idle_ends_at_shutdown()
    }

    /// Refuses a client blocked by the failure limit (before anything is
    /// sent), then asks the inner handler.
    fn verify_request(&self, peer: &Address) -> bool {
        if let Err(blocked) = self.config.limit.check(peer) {
            log::warn!("{peer}: handshake {blocked}; closing before the challenge");
            return false;
        }
        self.inner.verify_request(peer)
    }

    /// Sends the challenge, unless the startup limit refuses the
    /// connection. The count of connections in the handshake is taken and
    /// raised in one step, so connections that arrive together are judged
    /// one after another, each against the count the others left.
    fn open(&self, conn: &mut Conn<'_>) -> io::Result<Self::Session> {
        let before = self.in_handshake.fetch_add(1, Ordering::SeqCst);
        let slot = HandshakeSlot(Arc::clone(&self.in_handshake));
        let chance = self.config.startups.refusal_chance(before);
        if chance > 0.0 && (chance >= 1.0 || self.draw() < chance) {
            self.report_refusal(conn.peer(), before);
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                StartupRefused(before),
            ));
        }
        // The answer's deadline governs the handshake, not the server's idle
        // timeout (which applies again once the client is in).
        conn.set_message_timeout(self.config.timeout, true);
        if let Some(timeout) = self.config.timeout {
            conn.set_idle_timeout(Some(timeout));
        }
        let challenge = auth::challenge()?;
        conn.write_all(&challenge)?;
        Ok(AuthSession {
            state: State::Challenged {
                challenge,
                _slot: slot,
            },
        })
    }

    fn on_message(
        &self,
        session: &mut Self::Session,
        message: &[u8],
        conn: &mut Conn<'_>,
    ) -> io::Result<Next> {
        let challenge = match &mut session.state {
            State::In(inner) => return self.inner.on_message(inner, message, conn),
            State::Challenged { challenge, .. } => *challenge,
        };
        let peer = conn.peer().clone();
        let limit = &self.config.limit;
        let verdict = limit.judge(&peer, || self.config.key.verify(&challenge, message));
        self.send_verdict(verdict, conn)?;
        if verdict != Verdict::Accepted {
            match (verdict, limit.check(&peer)) {
                (Verdict::Refused, Err(blocked)) => {
                    log::warn!("{peer}: authentication denied without checking: {blocked}")
                }
                (_, Err(blocked)) => {
                    log::warn!("{peer}: authentication denied (wrong key); {blocked}")
                }
                _ => log::warn!("{peer}: authentication denied (wrong key)"),
            }
            conn.set_linger(MAX_DISCARD);
            return Ok(Next::Close);
        }
        log::debug!("{peer}: authenticated");
        conn.set_message_timeout(None, true);
        conn.set_idle_timeout(None);
        // Out of the handshake: the slot is released with the old state.
        session.state = State::In(self.inner.open(conn)?);
        Ok(Next::Continue)
    }

    fn on_bad_message(
        &self,
        session: &mut Self::Session,
        error: FramingError,
        conn: &mut Conn<'_>,
    ) -> io::Result<()> {
        match &mut session.state {
            State::In(inner) => self.inner.on_bad_message(inner, error, conn),
            State::Challenged { .. } => {
                let why = match error {
                    FramingError::Truncated { got } => auth::truncated_answer(got).to_string(),
                    other => other.to_string(),
                };
                log::info!("{}: no handshake: {why}", conn.peer());
                Ok(())
            }
        }
    }

    fn close(&self, session: Self::Session, why: Closing, conn: &mut Conn<'_>) {
        match session.state {
            State::In(inner) => self.inner.close(inner, why, conn),
            State::Challenged { .. } if why == Closing::Timeout => {
                let peer = conn.peer().clone();
                let failures = self.config.limit.failed(&peer);
                match self.config.limit.check(&peer) {
                    Err(blocked) => log::warn!(
                        "{peer}: no answer to the challenge in time, a failed handshake; {blocked}"
                    ),
                    Ok(()) => log::info!(
                        "{peer}: no answer to the challenge in time, a failed handshake ({failures} in a row)"
                    ),
                }
            }
            State::Challenged { .. } => {}
        }
    }

    fn handle_error(&self, peer: &Address, error: &io::Error) {
        let refused = error
            .get_ref()
            .is_some_and(|inner| inner.is::<StartupRefused>());
        if !refused {
            self.inner.handle_error(peer, error);
        }
    }

    fn service_actions(&self) {
        self.inner.service_actions();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpStream;

    use crate::protocol::auth::client_handshake;
    use crate::services::EchoUpper;
    use crate::ThreadingTcpServer;

    /// Serves `handler` on a thread; returns its address, its handle and
    /// the thread.
    fn serve<H: MessageHandler>(
        handler: H,
    ) -> (
        std::net::SocketAddr,
        crate::ServerHandle,
        std::thread::JoinHandle<io::Result<crate::Summary>>,
    ) {
        let server = ThreadingTcpServer::bind("127.0.0.1:0", handler).unwrap();
        let addr = server.local_addr().as_inet().unwrap();
        let handle = server.handle();
        (
            addr,
            handle,
            std::thread::spawn(move || server.serve_forever()),
        )
    }

    fn connect(addr: std::net::SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    #[test]
    fn any_message_handler_can_be_put_behind_the_handshake() {
        let key = Key::new(&b"the key"[..]).unwrap();
        let config = AuthConfig::new(key.clone()).endian(Endian::Big);
        let (addr, handle, thread) = serve(Authenticated::new(EchoUpper, config));
        let big = FrameCodec::new().endian(Endian::Big);
        let mut stream = connect(addr);
        client_handshake(&mut stream, &key, &big).unwrap();
        stream.write_all(b"hello").unwrap();
        let mut answer = [0u8; 5];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HELLO");
        // A wrong key is denied, and nothing it sends is echoed.
        let mut other = connect(addr);
        let e = client_handshake(&mut other, &Key::new(&b"guess"[..]).unwrap(), &big).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let _ = other.write_all(b"sneaky");
        let mut rest = Vec::new();
        let _ = other.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{rest:?}");
        drop((stream, other));
        handle.shutdown();
        thread.join().unwrap().unwrap();
    }

    #[test]
    fn a_full_handshake_refuses_new_connections_before_the_challenge() {
        let key = Key::new(&b"k"[..]).unwrap();
        let config = AuthConfig::new(key.clone()).max_startups("1".parse().unwrap());
        let (addr, handle, thread) = serve(Authenticated::new(EchoUpper, config));
        let mut first = connect(addr);
        let mut challenge = [0u8; CHALLENGE_LEN];
        first.read_exact(&mut challenge).unwrap();
        // One connection in the handshake: the next is closed at once.
        let mut second = connect(addr);
        let mut got = Vec::new();
        second.read_to_end(&mut got).unwrap();
        assert!(got.is_empty());
        // Once the first is in, there is room again.
        first.write_all(&key.answer(&challenge)).unwrap();
        let verdict = FrameCodec::new()
            .read_answer(&mut first, &mut Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!(verdict["status"], "ok");
        let mut third = connect(addr);
        client_handshake(&mut third, &key, &FrameCodec::new()).unwrap();
        drop((first, second, third));
        handle.shutdown();
        thread.join().unwrap().unwrap();
    }

    #[test]
    fn startup_limits_parse_and_print() {
        assert_eq!(StartupLimit::default().to_string(), "10:30:100");
        for (text, start, rate, full) in [
            ("10:30:100", 10, 30, 100),
            ("1:0:1", 1, 0, 1),
            (" 5 : 100 : 6 ", 5, 100, 6),
            ("7", 7, 100, 7),
        ] {
            let limit: StartupLimit = text.parse().unwrap();
            assert_eq!(
                (limit.start(), limit.rate(), limit.full()),
                (start, rate, full)
            );
        }
        for bad in [
            "",
            "0",
            "10:30",
            "10:101:100",
            "100:30:10",
            "a:b:c",
            "1:2:3:4",
            "-1",
        ] {
            assert!(bad.parse::<StartupLimit>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_refusal_chance_rises_linearly_from_start_to_full() {
        let limit = StartupLimit::new(10, 30, 110).unwrap();
        assert_eq!(limit.refusal_chance(0), 0.0);
        assert_eq!(limit.refusal_chance(9), 0.0);
        assert_eq!(limit.refusal_chance(10), 0.3);
        assert!((limit.refusal_chance(60) - 0.65).abs() < 1e-12);
        assert!((limit.refusal_chance(109) - 0.993).abs() < 1e-12);
        assert_eq!(limit.refusal_chance(110), 1.0);
        assert_eq!(limit.refusal_chance(usize::MAX), 1.0);
        let hard = StartupLimit::new(4, 100, 4).unwrap();
        assert_eq!(hard.refusal_chance(3), 0.0);
        assert_eq!(hard.refusal_chance(4), 1.0);
    }

    #[test]
    fn draws_are_spread_over_the_unit_interval() {
        let wrapped = Authenticated::new(
            crate::services::EchoUpper,
            AuthConfig::new(Key::new(&b"k"[..]).unwrap()),
        );
        let mut below = 0;
        for _ in 0..10_000 {
            let x = wrapped.draw();
            assert!((0.0..1.0).contains(&x));
            if x < 0.3 {
                below += 1;
            }
        }
        // 3000 expected; this fails with a chance far below 1e-9.
        assert!((2500..3500).contains(&below), "{below}");
    }
}
