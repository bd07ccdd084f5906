//! [`Wire`]: one load-generator connection, plain TCP or TLS over it, driven
//! without blocking (an edge-triggered `epoll` says when to come back).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::net::TcpStream;
use socketserver::layer::tls::rustls::pki_types::ServerName;
use socketserver::layer::tls::rustls::{ClientConfig, ClientConnection, ProtocolVersion};

/// How the load generator speaks TLS: the client configuration (which
/// trusts the server's certificate, and resumes no session, so that every
/// connection costs a full handshake) and the name checked.
#[derive(Clone)]
pub struct TlsTarget {
    /// The client configuration.
    pub config: Arc<ClientConfig>,
    /// The name the server's certificate must be valid for.
    pub name: ServerName<'static>,
}

impl fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTarget")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A connection: the socket, and its TLS session when the run speaks TLS.
pub(super) struct Wire {
    stream: TcpStream,
    tls: Option<Box<ClientConnection>>,
    close_notify_queued: bool,
}

impl Wire {
    /// A connection over `stream` (connecting), with TLS when `tls` says.
    pub fn new(stream: TcpStream, tls: Option<&TlsTarget>) -> io::Result<Wire> {
        let tls = match tls {
            None => None,
            Some(target) => Some(Box::new(
                ClientConnection::new(Arc::clone(&target.config), target.name.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
            )),
        };
        Ok(Wire {
            stream,
            tls,
            close_notify_queued: false,
        })
    }

    /// The socket, to register it and to see how its connect went.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// The protocol version the handshake agreed, once it is done.
    pub fn protocol(&self) -> Option<&'static str> {
        match self.tls.as_ref()?.protocol_version()? {
            ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
            ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
            _ => Some("TLS"),
        }
    }

    /// Moves the TLS handshake on as far as the socket allows, once the TCP
    /// connect is done: `Ok(true)` when it is over (at once without TLS),
    /// `Ok(false)` to come back at the next event. A refused certificate or
    /// any other failure is an error.
    pub fn handshake(&mut self) -> io::Result<bool> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(true);
        };
        loop {
            let sent = flush(tls, &mut self.stream)?;
            if !tls.is_handshaking() {
                return Ok(sent);
            }
            match tls.read_tls(&mut self.stream) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection in the handshake",
                    ))
                }
                Ok(_) => {
                    tls.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes what the socket (or TLS, which sends what the socket takes and
    /// keeps the rest for later calls) takes of `buf`; `WouldBlock` when
    /// nothing was taken.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.stream.write(buf);
        };
        let taken = tls.writer().write(buf)?;
        flush(tls, &mut self.stream)?;
        if taken == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Reads what has arrived (plaintext over TLS, after sending what TLS
    /// still holds); `Ok(0)` at a clean end of the stream (over TLS: after
    /// the server's `close_notify`; an end without one is an
    /// `UnexpectedEof` error), `WouldBlock` when nothing waits.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return self.stream.read(buf);
        };
        loop {
            flush(tls, &mut self.stream)?;
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match tls.read_tls(&mut self.stream) {
                // The end: the reader says next whether it was clean.
                Ok(0) => {}
                Ok(_) => {
                    tls.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends the sending direction (over TLS: `close_notify` first): `Ok(true)`
    /// when done, `Ok(false)` when TLS still has bytes to send first (call
    /// again at the next event).
    pub fn shutdown_write(&mut self) -> io::Result<bool> {
        if let Some(tls) = self.tls.as_deref_mut() {
            if !self.close_notify_queued {
                tls.send_close_notify();
                self.close_notify_queued = true;
            }
            if !flush(tls, &mut self.stream)? {
                return Ok(false);
            }
        }
        self.stream.shutdown(Shutdown::Write)?;
        Ok(true)
    }
}

/// Sends what TLS holds until the socket would block: true when all went.
fn flush(tls: &mut ClientConnection, stream: &mut TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
