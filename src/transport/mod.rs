//! Transports: what a server listens on, and what arrives there.
//!
//! The four transports share one implementation over `socket2`; they differ in
//! the socket's domain and type. Stream transports ([`Tcp`], [`UnixStream`])
//! accept connections, which handlers see as
//! [`StreamRequest`]s; datagram transports ([`Udp`],
//! [`UnixDatagram`]) receive packets, which handlers see as
//! [`DatagramRequest`]s.
//!
//! [`Scheme`] is the one table of transport names: URLs, listening lines and
//! the program's checks all read it.
//!
//! ```
//! use socketserver::transport::Scheme;
//!
//! let url: socketserver::SocketUrl = "unixgram:/run/app.sock".parse().unwrap();
//! assert_eq!(url.scheme(), Scheme::Unixgram);
//! assert!(!url.scheme().is_stream());
//! assert_eq!(Scheme::from_name("tcp"), Some(Scheme::Tcp));
//! ```

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::sync::Arc;

pub(crate) mod address;
pub(crate) mod listener;
pub(crate) mod url;

pub use address::Address;
pub(crate) use listener::{
    bind_inet, bind_unix, Accepted, Datagram, ListenOptions, Listener, MAX_DATAGRAM,
};
pub use url::{ParseUrlError, SocketUrl};

use crate::request::{DatagramRequest, StreamRequest};

/// The name of a transport, as URLs write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `tcp://HOST:PORT`
    Tcp,
    /// `udp://HOST:PORT`
    Udp,
    /// `unix:PATH`, a Unix stream socket
    Unix,
    /// `unixgram:PATH`, a Unix datagram socket
    Unixgram,
}

impl Scheme {
    /// Every scheme, in the order the documentation lists them.
    pub const ALL: [Scheme; 4] = [Scheme::Tcp, Scheme::Udp, Scheme::Unix, Scheme::Unixgram];

    /// The scheme's name: `tcp`, `udp`, `unix` or `unixgram`.
    pub const fn name(self) -> &'static str {
        match self {
            Scheme::Tcp => "tcp",
            Scheme::Udp => "udp",
            Scheme::Unix => "unix",
            Scheme::Unixgram => "unixgram",
        }
    }

    /// The scheme of a name, if it is one.
    pub fn from_name(name: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|s| s.name() == name)
    }

    /// True for the stream transports (`tcp`, `unix`).
    pub const fn is_stream(self) -> bool {
        matches!(self, Scheme::Tcp | Scheme::Unix)
    }

    /// True for the IP transports (`tcp`, `udp`), whose URLs hold
    /// `HOST:PORT` rather than a path.
    pub const fn is_inet(self) -> bool {
        matches!(self, Scheme::Tcp | Scheme::Udp)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A kind of socket a server can listen on. Implemented by [`Tcp`], [`Udp`],
/// [`UnixStream`] and [`UnixDatagram`] only.
pub trait Transport: private::Transport {
    /// The request a handler of this transport receives.
    type Request;
    /// The transport's URL scheme.
    const SCHEME: Scheme;
}

/// TCP: one [`StreamRequest`] per connection.
#[derive(Debug)]
pub enum Tcp {}
/// UDP: one [`DatagramRequest`] per packet.
#[derive(Debug)]
pub enum Udp {}
/// Unix-domain stream sockets: one [`StreamRequest`] per connection.
#[derive(Debug)]
pub enum UnixStream {}
/// Unix-domain datagram sockets: one [`DatagramRequest`] per packet.
#[derive(Debug)]
pub enum UnixDatagram {}

impl Transport for Tcp {
    type Request = StreamRequest;
    const SCHEME: Scheme = Scheme::Tcp;
}
impl Transport for Udp {
    type Request = DatagramRequest;
    const SCHEME: Scheme = Scheme::Udp;
}
impl Transport for UnixStream {
    type Request = StreamRequest;
    const SCHEME: Scheme = Scheme::Unix;
}
impl Transport for UnixDatagram {
    type Request = DatagramRequest;
    const SCHEME: Scheme = Scheme::Unixgram;
}

/// A stream transport: one whose arrivals are connections.
pub trait StreamTransport:
    Transport<Request = StreamRequest> + private::Transport<Arrival = Accepted>
{
}
impl StreamTransport for Tcp {}
impl StreamTransport for UnixStream {}

/// A receive buffer for a datagram listener: one whole datagram.
pub(crate) type Scratch = Box<[MaybeUninit<u8>]>;

impl private::Transport for Tcp {
    type Arrival = Accepted;
    fn receive(listener: &Arc<Listener>, _: &mut Scratch) -> io::Result<Option<Accepted>> {
        listener.accept()
    }
}
impl private::Transport for UnixStream {
    type Arrival = Accepted;
    fn receive(listener: &Arc<Listener>, _: &mut Scratch) -> io::Result<Option<Accepted>> {
        listener.accept()
    }
}
impl private::Transport for Udp {
    type Arrival = Datagram;
    fn receive(listener: &Arc<Listener>, scratch: &mut Scratch) -> io::Result<Option<Datagram>> {
        listener.receive(scratch)
    }
}
impl private::Transport for UnixDatagram {
    type Arrival = Datagram;
    fn receive(listener: &Arc<Listener>, scratch: &mut Scratch) -> io::Result<Option<Datagram>> {
        listener.receive(scratch)
    }
}

pub(crate) mod private {
    use super::*;

    /// What a listener produces for its transport.
    pub trait Transport: Send + Sync + 'static {
        /// A connection accepted, or a datagram received.
        type Arrival: Arrival;
        /// The next arrival, if one waits.
        fn receive(
            listener: &Arc<Listener>,
            scratch: &mut Scratch,
        ) -> io::Result<Option<Self::Arrival>>;
    }

    /// An arrival, as the accept loop admits it.
    pub trait Arrival: Send + 'static {
        /// True for connections: they count against
        /// [`max_connections`](crate::Options::max_connections) and, refused,
        /// as rejected; datagrams count as dropped.
        const IS_CONNECTION: bool;
        /// Who sent it.
        fn peer(&self) -> &Address;
        /// The real size of a datagram too large to be received whole: it is
        /// dropped, never answered.
        fn oversized(&self) -> Option<usize> {
            None
        }
    }

    impl Arrival for Accepted {
        const IS_CONNECTION: bool = true;
        fn peer(&self) -> &Address {
            &self.peer
        }
    }

    impl Arrival for Datagram {
        const IS_CONNECTION: bool = false;
        fn peer(&self) -> &Address {
            &self.peer
        }
        fn oversized(&self) -> Option<usize> {
            self.oversized
        }
    }
}
