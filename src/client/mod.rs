//! The client side: connecting to a [`SocketUrl`], over TLS or not, and a
//! blocking client per service.
//!
//! Every stream client runs over a [`Connection`]: each has a `connect`
//! that makes a plain one from a URL, and a constructor that takes one made
//! elsewhere ([`qa::QaClient::on`], [`dict::DictClient::on`],
//! [`chat::ChatClient::on`], [`http::request_on`],
//! [`exec::ExecClient::handshake`], [`files::FilesClient::on`], and
//! [`pipe`] for echo-upper). With the `tls` feature,
//! `Connection::connect_tls` makes a TLS connection that any of them can
//! use, verifying the server as a `ClientTls` says:
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use socketserver::client::{ClientTls, Connection};
//! use socketserver::client::dict::DictClient;
//!
//! let url = "tcp://127.0.0.1:9002".parse()?;
//! // Trust the system's roots; check the certificate for dict.example.com.
//! let tls = ClientTls::new(None, &[])?.server_name("dict.example.com");
//! let connection = Connection::connect_tls(&url, Some(Duration::from_secs(5)), &tls)?;
//! connection.set_read_timeout(Some(Duration::from_secs(5)))?;
//! let mut dict = DictClient::on(connection)?;
//! println!("{}", dict.lookup("socket")?);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "tls"))]
//! # fn main() {}
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::transport::url::SocketUrl;

pub mod chat;
pub mod dict;
pub mod exec;
pub mod files;
pub mod http;
pub mod qa;
#[cfg(feature = "tls")]
mod tls;

/// What a client received that its protocol does not allow: the server at
/// the other end speaks another protocol (an echo server, another service).
/// Carried inside an [`io::Error`] of kind [`InvalidData`](io::ErrorKind::InvalidData);
/// [`WrongProtocol::from_io`] finds it.
///
/// ```
/// use socketserver::client::WrongProtocol;
///
/// let error = WrongProtocol::new("a chat server", "lines of the room", "our own line back: \"HI\"").into_io();
/// assert_eq!(
///     error.to_string(),
///     "expected lines of the room, received our own line back: \"HI\": is it a chat server?"
/// );
/// assert!(WrongProtocol::from_io(&error).is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongProtocol {
    /// The kind of server the client expected (`a qa server`).
    pub server: &'static str,
    /// What the protocol allows at this point.
    pub expected: String,
    /// What came instead, described and quoted.
    pub received: String,
}

impl WrongProtocol {
    /// What came from a server that should have been `server`.
    pub fn new(
        server: &'static str,
        expected: impl Into<String>,
        received: impl Into<String>,
    ) -> Self {
        WrongProtocol {
            server,
            expected: expected.into(),
            received: received.into(),
        }
    }

    /// As an [`io::Error`] of kind [`InvalidData`](io::ErrorKind::InvalidData).
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The `WrongProtocol` inside an error, if it carries one.
    pub fn from_io(error: &io::Error) -> Option<&WrongProtocol> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<WrongProtocol>())
    }
}

impl fmt::Display for WrongProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected {}, received {}: is it {}?",
            self.expected, self.received, self.server
        )
    }
}

impl std::error::Error for WrongProtocol {}

/// `text` quoted for an error message, cut after 60 characters, with every
/// control character escaped: what a server sent, shown safely.
pub fn quote(text: &str) -> String {
    const SHOWN: usize = 60;
    let mut shown: String = text.chars().take(SHOWN).collect();
    if text.chars().nth(SHOWN).is_some() {
        shown.push_str("...");
    }
    format!("{shown:?}")
}

#[cfg(feature = "tls")]
pub use tls::ClientTls;

/// A connected stream to a server: TCP or Unix, or TLS over either.
///
/// Reading and writing through clones ([`try_clone`](Connection::try_clone))
/// go on at once, one thread reading while another writes, TLS included.
#[derive(Debug)]
#[non_exhaustive]
pub enum Connection {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix stream connection.
    Unix(UnixStream),
    /// TLS over a TCP or Unix connection (`Connection::connect_tls`).
    #[cfg(feature = "tls")]
    Tls(crate::layer::tls::TlsStream),
}

impl Connection {
    /// Connects to a `tcp://` or `unix:` URL, giving up after `timeout` (TCP
    /// only; `None`: the system's limit).
    pub fn connect(url: &SocketUrl, timeout: Option<Duration>) -> io::Result<Self> {
        match url {
            SocketUrl::Tcp(addr) => {
                let mut last = None;
                for addr in addr.to_socket_addrs()? {
                    let attempt = match timeout {
                        Some(t) => TcpStream::connect_timeout(&addr, t),
                        None => TcpStream::connect(addr),
                    };
                    match attempt {
                        Ok(stream) => {
                            stream.set_nodelay(true)?;
                            return Ok(Connection::Tcp(stream));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "the address resolved to nothing",
                    )
                }))
            }
            SocketUrl::Unix(path) => Ok(Connection::Unix(UnixStream::connect(path)?)),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{other} is not a stream URL (tcp:// or unix:)"),
            )),
        }
    }

    /// Limits each blocking read (`None`: wait for ever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.set_read_timeout(timeout),
            Connection::Unix(s) => s.set_read_timeout(timeout),
            #[cfg(feature = "tls")]
            Connection::Tls(s) => s.set_read_timeout(timeout),
        }
    }

    /// Closes the sending direction: the server reads end of input (over
    /// TLS, after a `close_notify`).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.shutdown(Shutdown::Write),
            Connection::Unix(s) => s.shutdown(Shutdown::Write),
            #[cfg(feature = "tls")]
            Connection::Tls(s) => s.shutdown_write(),
        }
    }

    /// Another handle to the same connection (for a reader thread).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Connection::Tcp(s) => Connection::Tcp(s.try_clone()?),
            Connection::Unix(s) => Connection::Unix(s.try_clone()?),
            #[cfg(feature = "tls")]
            Connection::Tls(s) => Connection::Tls(s.try_clone()?),
        })
    }

    /// What the TLS handshake agreed (protocol version, cipher suite,
    /// ALPN); `None` for a plain connection.
    #[cfg(feature = "tls")]
    pub fn tls_info(&self) -> Option<&crate::layer::tls::TlsInfo> {
        match self {
            Connection::Tls(s) => Some(s.info()),
            _ => None,
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Connection::Tcp(s) => s.read(buf),
            Connection::Unix(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Connection::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Connection::Tcp(s) => s.write(buf),
            Connection::Unix(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Connection::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Copies `input` to the server and the server's answer to `output` at the
/// same time, until both are done: the client of unframed stream services
/// (`nc`, in short). The sending direction closes when `input` ends.
pub fn pipe(
    connection: Connection,
    mut input: impl Read + Send,
    output: &mut impl Write,
) -> io::Result<()> {
    let mut sender = connection.try_clone()?;
    let mut receiver = connection;
    std::thread::scope(|scope| {
        let sending = scope.spawn(move || -> io::Result<()> {
            io::copy(&mut input, &mut sender)?;
            sender.shutdown_write()
        });
        let received = io::copy(&mut receiver, output).map(drop);
        let sent = sending
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the sending thread panicked")));
        received.and(output.flush()).and(sent)
    })
}

/// A datagram socket talking to one server: UDP, or a Unix datagram socket
/// bound to a temporary path (removed on drop) so that the server can answer.
#[derive(Debug)]
pub struct DatagramClient {
    socket: DatagramSocket,
    bound_path: Option<PathBuf>,
}

#[derive(Debug)]
enum DatagramSocket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl DatagramClient {
    /// Connects to a `udp://` or `unixgram:` URL; each answer is awaited for
    /// at most `timeout`.
    pub fn connect(url: &SocketUrl, timeout: Duration) -> io::Result<Self> {
        let client = match url {
            SocketUrl::Udp(addr) => {
                let target = addr.to_socket_addrs()?.next().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "the address resolved to nothing",
                    )
                })?;
                let local = if target.is_ipv6() {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(target)?;
                socket.set_read_timeout(Some(timeout))?;
                DatagramClient {
                    socket: DatagramSocket::Udp(socket),
                    bound_path: None,
                }
            }
            SocketUrl::Unixgram(path) => {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let own = std::env::temp_dir().join(format!(
                    "socketserver-client-{}-{}.sock",
                    std::process::id(),
                    NEXT.fetch_add(1, Relaxed)
                ));
                let _ = std::fs::remove_file(&own);
                let socket = UnixDatagram::bind(&own)?;
                let client = DatagramClient {
                    socket: DatagramSocket::Unix(socket),
                    bound_path: Some(own),
                };
                if let DatagramSocket::Unix(socket) = &client.socket {
                    socket.connect(path)?;
                    socket.set_read_timeout(Some(timeout))?;
                }
                client
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{other} is not a datagram URL (udp:// or unixgram:)"),
                ))
            }
        };
        Ok(client)
    }

    /// Sends one datagram. One too large for the transport fails with an
    /// error of kind [`InvalidInput`](io::ErrorKind::InvalidInput) that says
    /// so (`message of 70000 bytes is too large for a datagram (UDP carries
    /// at most 65507)`).
    pub fn send(&self, data: &[u8]) -> io::Result<()> {
        let sent = match &self.socket {
            DatagramSocket::Udp(s) => s.send(data).map(drop),
            DatagramSocket::Unix(s) => s.send(data).map(drop),
        };
        sent.map_err(|e| {
            if e.raw_os_error() != Some(libc::EMSGSIZE) {
                return e;
            }
            let limit = match &self.socket {
                DatagramSocket::Udp(s) => match s.peer_addr() {
                    Ok(peer) if peer.is_ipv6() => " (UDP carries at most 65527 over IPv6)".into(),
                    _ => " (UDP carries at most 65507)".to_string(),
                },
                DatagramSocket::Unix(_) => String::new(),
            };
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "message of {} bytes is too large for a datagram{limit}",
                    data.len()
                ),
            )
        })
    }

    /// Receives one datagram into `buf`, returning its length; fails with
    /// `WouldBlock`/`TimedOut` after the timeout.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.socket {
            DatagramSocket::Udp(s) => s.recv(buf),
            DatagramSocket::Unix(s) => s.recv(buf),
        }
    }

    /// Sends `data` and returns the answer.
    pub fn request(&self, data: &[u8]) -> io::Result<Vec<u8>> {
        self.send(data)?;
        let mut buf = vec![0u8; 65_536];
        let n = self.recv(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }
}

impl Drop for DatagramClient {
    fn drop(&mut self) {
        if let Some(path) = &self.bound_path {
            let _ = std::fs::remove_file(path);
        }
    }
}
