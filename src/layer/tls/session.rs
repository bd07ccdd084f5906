//! [`TlsSession`]: the server side of one TLS connection for an event loop,
//! driven by non-blocking reads and writes that the loop does.

use std::fmt;
use std::io::{self, Read, Write};
use std::mem;
use std::sync::Arc;

use rustls::server::{Accepted, AcceptedAlert, Acceptor, ClientHello};
use rustls::{ConnectionCommon, ServerConfig, ServerConnection};

use super::TlsInfo;

/// The most plaintext [`TlsSession::send_plaintext`] holds before the
/// client's hello has arrived (rustls's own bound on buffered output).
const EARLY_PLAINTEXT_LIMIT: usize = 64 * 1024;

/// [`TlsSession::feed`] stops taking bytes once this much plaintext waits to
/// be taken (rustls refuses more input past 16 KiB of it).
const FEED_PLAINTEXT_LIMIT: usize = 8 * 1024;

/// The server side of one TLS connection, for an event loop: the loop reads
/// and writes the socket (non-blocking, edge-triggered: until `WouldBlock`),
/// the session turns ciphertext into plaintext and back.
///
/// It starts by waiting for the client's hello. A client whose ALPN offer
/// shares nothing with the configuration's list completes the handshake
/// without ALPN instead of being refused (RFC 7301 allows both; rule 45).
///
/// A loop's turn for a readable socket:
///
/// ```no_run
/// # use std::io;
/// # use socketserver::layer::tls::{TlsSession, TlsSessionError};
/// # fn turn(session: &mut TlsSession, socket: &mut std::net::TcpStream) -> Result<(), TlsSessionError> {
/// let mut plaintext = Vec::new();
/// let report = match session.read_from(socket, &mut plaintext, 64 * 1024) {
///     Ok(report) => report,
///     Err(e) => {
///         // The alert is queued: send it, then close.
///         let _ = session.write_to(socket);
///         return Err(e);
///     }
/// };
/// // ... hand `plaintext` to the handler, which may answer:
/// session.send_plaintext(b"reply\n");
/// let sent = session.write_to(socket)?;
/// if !sent.all_sent {
///     // wait for the socket to become writable, then write_to again
/// }
/// if !report.drained {
///     // stopped at the plaintext limit: come back without waiting for an event
/// }
/// # Ok(()) }
/// ```
///
/// # What an idle session costs
///
/// rustls 0.23's buffered connection offers no way to give its buffers
/// back: its read buffer keeps the 4 KiB it last read into. The session
/// holds no buffer of its own once the handshake is done and the plaintext
/// taken, so there is nothing more it could release. Measured after a TLS
/// 1.3 handshake and one message, all plaintext taken (the test
/// `an_idle_session_costs_little_and_the_figure_is_reported`, with a
/// counting allocator): `size_of::<TlsSession>()` is 120 bytes, and the
/// heap it owns 7,449 bytes: the 4,096-byte read buffer, the boxed
/// `ServerConnection` (1,168 bytes), and the rest its state after the
/// handshake and the record layer's keys. 100,000 idle TLS connections hold
/// about 745 MB here, against nothing for plaintext ones; rustls's
/// unbuffered API, where the caller owns every buffer, is the way to lower
/// it.
pub struct TlsSession {
    config: Arc<ServerConfig>,
    state: State,
    /// Plaintext sent before the connection exists, in order.
    early: Vec<u8>,
    /// The peer closed its side (a read returned 0).
    eof: bool,
    /// The peer sent `close_notify`.
    close_notified: bool,
    /// The fatal error, once there is one.
    failure: Option<rustls::Error>,
}

enum State {
    /// Waiting for a whole ClientHello.
    Accepting(Box<Acceptor>),
    /// Handshaking or handshaken.
    Connected(Box<ServerConnection>),
    /// The ClientHello was refused; the alert still has to be written.
    Refused(Box<AcceptedAlert>),
    /// The ClientHello was refused and the alert written (or there is none).
    Closed,
}

/// What [`TlsSession::read_from`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// Ciphertext bytes read from the source.
    pub ciphertext: usize,
    /// Plaintext bytes appended to the caller's buffer.
    pub plaintext: usize,
    /// The source said `WouldBlock` (or ended): everything available was
    /// read. `false` when the call stopped at its plaintext limit; an
    /// edge-triggered loop must then call again without waiting for an
    /// event.
    pub drained: bool,
    /// The peer will send nothing more, and everything it sent before is
    /// in the caller's buffer: set only with [`drained`](Self::drained).
    pub peer_closed: Option<PeerClose>,
}

/// How the peer ended its side of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerClose {
    /// With a `close_notify` alert: nothing was cut off.
    Notified,
    /// With a bare end of stream: what came last may have been truncated.
    Abrupt,
}

/// What [`TlsSession::write_to`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Ciphertext bytes written to the sink.
    pub written: usize,
    /// Everything queued went; `false`: the sink said `WouldBlock`, call
    /// again when it is writable.
    pub all_sent: bool,
}

/// A fatal error of a [`TlsSession`].
#[derive(Debug)]
pub enum TlsSessionError {
    /// The peer broke the protocol, or the handshake failed. An alert for
    /// the peer is queued: call [`TlsSession::write_to`], then close.
    Tls(rustls::Error),
    /// Reading the source failed.
    Io(io::Error),
}

impl fmt::Display for TlsSessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSessionError::Tls(e) => write!(f, "TLS: {e}"),
            TlsSessionError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TlsSessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsSessionError::Tls(e) => Some(e),
            TlsSessionError::Io(e) => Some(e),
        }
    }
}

impl From<io::Error> for TlsSessionError {
    fn from(e: io::Error) -> Self {
        TlsSessionError::Io(e)
    }
}

impl From<TlsSessionError> for io::Error {
    fn from(e: TlsSessionError) -> Self {
        match e {
            TlsSessionError::Tls(e) => io::Error::new(io::ErrorKind::InvalidData, e),
            TlsSessionError::Io(e) => e,
        }
    }
}

impl fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Accepting(_) => "accepting",
            State::Connected(c) if c.is_handshaking() => "handshaking",
            State::Connected(_) => "connected",
            State::Refused(_) => "refused",
            State::Closed => "closed",
        };
        f.debug_struct("TlsSession")
            .field("state", &state)
            .field("eof", &self.eof)
            .field("failure", &self.failure)
            .finish()
    }
}

impl TlsSession {
    /// A session waiting for a client's hello.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        TlsSession {
            config,
            state: State::Accepting(Box::default()),
            early: Vec::new(),
            eof: false,
            close_notified: false,
            failure: None,
        }
    }

    /// Reads ciphertext from `source` until it says `WouldBlock` (or ends),
    /// processes it, and appends the plaintext to `plaintext`, at most `max`
    /// bytes of it (then it stops reading: see [`ReadReport::drained`]).
    ///
    /// An error is fatal and stays: the same error comes back from every
    /// later call. After [`TlsSessionError::Tls`], an alert is queued
    /// ([`wants_write`](TlsSession::wants_write)).
    pub fn read_from(
        &mut self,
        source: &mut dyn Read,
        plaintext: &mut Vec<u8>,
        max: usize,
    ) -> Result<ReadReport, TlsSessionError> {
        let mut report = ReadReport::default();
        loop {
            if let Some(e) = &self.failure {
                return Err(TlsSessionError::Tls(e.clone()));
            }
            report.plaintext += self.take_plaintext(plaintext, max - report.plaintext);
            if report.plaintext >= max {
                break;
            }
            if self.eof || self.close_notified {
                report.drained = true;
                break;
            }
            match self.read_tls(source) {
                Ok(0) => {
                    self.eof = true;
                    self.process()?;
                }
                Ok(n) => {
                    report.ciphertext += n;
                    self.process()?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    report.drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TlsSessionError::Io(e)),
            }
        }
        report.plaintext += self.take_plaintext(plaintext, max - report.plaintext);
        // The close comes after everything the peer sent before it: while
        // plaintext is left for the next call, it is not said.
        if report.drained {
            report.peer_closed = self.peer_closed();
        }
        Ok(report)
    }

    /// Gives the session ciphertext read elsewhere (the bytes that followed a
    /// PROXY header, say) and processes it. Returns how many bytes it took:
    /// all of them, unless 8 KiB of plaintext is waiting to be taken, when
    /// the caller takes plaintext ([`take_plaintext`](TlsSession::take_plaintext))
    /// and feeds the rest.
    pub fn feed(&mut self, ciphertext: &[u8]) -> Result<usize, TlsSessionError> {
        let mut taken = 0;
        while taken < ciphertext.len() {
            if let Some(e) = &self.failure {
                return Err(TlsSessionError::Tls(e.clone()));
            }
            if let State::Connected(conn) = &mut self.state {
                let fed = feed_connection(&mut ***conn, &ciphertext[taken..], FEED_PLAINTEXT_LIMIT);
                let (n, closed) = fed.inspect_err(|e| self.remember(e))?;
                self.close_notified |= closed;
                taken += n;
                break;
            }
            let mut rest = &ciphertext[taken..];
            match self.read_tls(&mut rest) {
                Ok(n) => {
                    taken += n;
                    self.process()?;
                }
                Err(e) => return Err(TlsSessionError::Io(e)),
            }
            if !matches!(self.state, State::Accepting(_) | State::Connected(_)) {
                break;
            }
        }
        Ok(taken)
    }

    /// Appends up to `max` bytes of the plaintext received so far to `out`;
    /// returns how many.
    pub fn take_plaintext(&mut self, out: &mut Vec<u8>, max: usize) -> usize {
        let State::Connected(conn) = &mut self.state else {
            return 0;
        };
        let mut reader = conn.reader();
        let mut taken = 0;
        while taken < max {
            let chunk = match io::BufRead::fill_buf(&mut reader) {
                Ok(chunk) if !chunk.is_empty() => chunk,
                _ => break,
            };
            let n = chunk.len().min(max - taken);
            out.extend_from_slice(&chunk[..n]);
            io::BufRead::consume(&mut reader, n);
            taken += n;
        }
        taken
    }

    /// Queues plaintext to send (encrypted once the handshake is done);
    /// returns how much was taken: less than `data.len()` (even 0) when
    /// 64 KiB is already waiting, so a client that does not read bounds
    /// what the server holds for it. Nothing is taken after a failure.
    pub fn send_plaintext(&mut self, data: &[u8]) -> usize {
        self.pump_early();
        match &mut self.state {
            State::Accepting(_) => {
                let n = data.len().min(EARLY_PLAINTEXT_LIMIT - self.early.len());
                self.early.extend_from_slice(&data[..n]);
                n
            }
            State::Connected(conn) if self.failure.is_none() && self.early.is_empty() => {
                conn.writer().write(data).unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// Writes queued ciphertext (handshake messages, records, alerts) to
    /// `sink` until all went or it says `WouldBlock`.
    pub fn write_to(&mut self, sink: &mut dyn Write) -> io::Result<WriteReport> {
        self.pump_early();
        let mut report = WriteReport::default();
        loop {
            let result = match &mut self.state {
                State::Connected(conn) if conn.wants_write() => conn.write_tls(sink),
                State::Refused(alert) => match alert.write(sink) {
                    Ok(0) => {
                        self.state = State::Closed;
                        continue;
                    }
                    other => other,
                },
                _ => {
                    report.all_sent = true;
                    return Ok(report);
                }
            };
            match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => report.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(report),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether ciphertext waits for [`write_to`](TlsSession::write_to).
    pub fn wants_write(&self) -> bool {
        match &self.state {
            State::Connected(conn) => conn.wants_write(),
            State::Refused(_) => true,
            State::Accepting(_) | State::Closed => false,
        }
    }

    /// Whether the handshake is still going on: `false` once it is done,
    /// and after it failed.
    pub fn is_handshaking(&self) -> bool {
        match &self.state {
            State::Accepting(_) => self.failure.is_none(),
            State::Connected(conn) => self.failure.is_none() && conn.is_handshaking(),
            State::Refused(_) | State::Closed => false,
        }
    }

    /// Queues a `close_notify` alert: the server will send nothing more.
    /// Call [`write_to`](TlsSession::write_to) to send it before closing.
    pub fn close_notify(&mut self) {
        if let State::Connected(conn) = &mut self.state {
            conn.send_close_notify();
        }
    }

    /// Whether, and how, the peer closed its side.
    pub fn peer_closed(&self) -> Option<PeerClose> {
        if self.close_notified {
            Some(PeerClose::Notified)
        } else if self.eof {
            Some(PeerClose::Abrupt)
        } else {
            None
        }
    }

    /// What the handshake agreed, once it is done.
    pub fn info(&self) -> Option<TlsInfo> {
        match &self.state {
            State::Connected(conn) if !conn.is_handshaking() => {
                TlsInfo::of(conn, conn.server_name())
            }
            _ => None,
        }
    }

    /// The rustls connection, once the client's hello has been accepted.
    pub fn connection(&self) -> Option<&ServerConnection> {
        match &self.state {
            State::Connected(conn) => Some(conn),
            _ => None,
        }
    }

    /// The rustls connection, with the plaintext sent so far queued in it
    /// (`None` before the hello was accepted, or when it was refused).
    pub(crate) fn into_connection(mut self) -> Option<ServerConnection> {
        self.pump_early();
        match mem::replace(&mut self.state, State::Closed) {
            State::Connected(conn) if self.early.is_empty() => Some(*conn),
            _ => None,
        }
    }

    fn read_tls(&mut self, source: &mut dyn Read) -> io::Result<usize> {
        match &mut self.state {
            State::Accepting(acceptor) => acceptor.read_tls(source),
            State::Connected(conn) => conn.read_tls(source),
            State::Refused(_) | State::Closed => Ok(0),
        }
    }

    /// Processes what [`read_tls`](TlsSession::read_tls) buffered.
    fn process(&mut self) -> Result<(), TlsSessionError> {
        match &mut self.state {
            State::Accepting(acceptor) => match acceptor.accept() {
                Ok(None) => Ok(()),
                Ok(Some(accepted)) => self.start(accepted),
                Err((e, alert)) => Err(self.refuse(e, alert)),
            },
            State::Connected(conn) => match conn.process_new_packets() {
                Ok(state) => {
                    self.close_notified |= state.peer_has_closed();
                    Ok(())
                }
                Err(e) => {
                    self.failure = Some(e.clone());
                    Err(TlsSessionError::Tls(e))
                }
            },
            State::Refused(_) | State::Closed => Ok(()),
        }
    }

    /// Turns an accepted hello into a connection.
    fn start(&mut self, accepted: Accepted) -> Result<(), TlsSessionError> {
        let config = config_for(&self.config, &accepted.client_hello());
        match accepted.into_connection(config) {
            Ok(conn) => {
                self.state = State::Connected(Box::new(conn));
                self.pump_early();
                // Records that came with the hello.
                self.process()
            }
            Err((e, alert)) => Err(self.refuse(e, alert)),
        }
    }

    fn refuse(&mut self, e: rustls::Error, alert: AcceptedAlert) -> TlsSessionError {
        self.state = State::Refused(Box::new(alert));
        self.failure = Some(e.clone());
        TlsSessionError::Tls(e)
    }

    fn remember(&mut self, e: &TlsSessionError) {
        if let TlsSessionError::Tls(e) = e {
            self.failure = Some(e.clone());
        }
    }

    /// Moves plaintext sent before the hello into the connection.
    fn pump_early(&mut self) {
        if self.early.is_empty() {
            return;
        }
        if let State::Connected(conn) = &mut self.state {
            let n = conn.writer().write(&self.early).unwrap_or(0);
            self.early.drain(..n);
            if self.early.is_empty() {
                self.early = Vec::new();
            }
        }
    }
}

/// The configuration for a client: `config` itself, or a copy without ALPN
/// when the client offers ALPN protocols none of which `config` speaks (so
/// that the handshake goes on without ALPN instead of failing).
fn config_for(config: &Arc<ServerConfig>, hello: &ClientHello<'_>) -> Arc<ServerConfig> {
    let ours = &config.alpn_protocols;
    let Some(mut theirs) = hello.alpn() else {
        return Arc::clone(config);
    };
    if ours.is_empty() || theirs.any(|t| ours.iter().any(|o| o.as_slice() == t)) {
        return Arc::clone(config);
    }
    let mut without = ServerConfig::clone(config);
    without.alpn_protocols.clear();
    Arc::new(without)
}

/// Feeds `bytes` to a connection and processes them, stopping early once
/// `enough_plaintext` bytes of plaintext wait to be read. Returns how many
/// bytes it took and whether the peer sent `close_notify`.
pub(crate) fn feed_connection<D>(
    conn: &mut ConnectionCommon<D>,
    bytes: &[u8],
    enough_plaintext: usize,
) -> Result<(usize, bool), TlsSessionError> {
    let mut taken = 0;
    let mut closed = false;
    while taken < bytes.len() {
        let mut rest = &bytes[taken..];
        let n = conn.read_tls(&mut rest).map_err(TlsSessionError::Io)?;
        taken += n;
        let state = conn.process_new_packets().map_err(TlsSessionError::Tls)?;
        closed |= state.peer_has_closed();
        if state.plaintext_bytes_to_read() >= enough_plaintext || closed || n == 0 {
            break;
        }
    }
    Ok((taken, closed))
}
