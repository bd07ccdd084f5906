//! Transports: what a server listens on, and how it turns arrivals into requests.
//!
//! The four transports share one implementation over `socket2`; they differ in
//! the socket's domain and type. Stream transports ([`Tcp`], [`UnixStream`])
//! accept connections and give [`StreamRequest`]s; datagram transports
//! ([`Udp`], [`UnixDatagram`]) receive packets and give [`DatagramRequest`]s.

use std::io;

use socket2::Type;

use crate::endpoint::Job;
use crate::{Address, DatagramRequest, Options, StreamRequest};

/// A kind of socket a server can listen on. Implemented by [`Tcp`], [`Udp`],
/// [`UnixStream`] and [`UnixDatagram`] only.
pub trait Transport: private::Transport {
    /// The request a handler of this transport receives.
    type Request: private::Request;
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
}
impl Transport for Udp {
    type Request = DatagramRequest;
}
impl Transport for UnixStream {
    type Request = StreamRequest;
}
impl Transport for UnixDatagram {
    type Request = DatagramRequest;
}

impl private::Transport for Tcp {
    const SCHEME: &'static str = "tcp";
    const TYPE: Type = Type::STREAM;
}
impl private::Transport for Udp {
    const SCHEME: &'static str = "udp";
    const TYPE: Type = Type::DGRAM;
}
impl private::Transport for UnixStream {
    const SCHEME: &'static str = "unix";
    const TYPE: Type = Type::STREAM;
}
impl private::Transport for UnixDatagram {
    const SCHEME: &'static str = "unixgram";
    const TYPE: Type = Type::DGRAM;
}

pub(crate) mod private {
    use super::*;
    use crate::ServerHandle;

    pub trait Transport: Send + Sync + 'static {
        const SCHEME: &'static str;
        const TYPE: Type;
    }

    /// What the server needs of a request type.
    pub trait Request: Send + Sized + 'static {
        /// Builds the request for a job of its kind.
        fn from_job(job: Job, handle: &ServerHandle, options: &Options) -> io::Result<Self>;
        /// The peer, for error reports.
        fn peer(&self) -> &Address;
        /// The connection's descriptor, for the shutdown deadline to cut it.
        fn connection(&self) -> Option<std::os::fd::RawFd>;
    }
}
