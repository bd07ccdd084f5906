//! [`DatagramRequest`]: one packet of a UDP or Unix datagram server.

use std::io;
use std::sync::Arc;

use socket2::SockAddr;

use crate::server::control::ServerHandle;
use crate::transport::address::Address;
use crate::transport::listener::{Datagram, Listener};

/// One packet of a UDP or Unix datagram server: Python's
/// `DatagramRequestHandler`, with the packet, its sender, and a way to answer.
///
/// ```
/// use std::io;
/// use socketserver::{DatagramRequest, RequestHandler};
///
/// struct Upper;
///
/// impl RequestHandler<DatagramRequest> for Upper {
///     fn handle(&self, req: &mut DatagramRequest) -> io::Result<()> {
///         let answer = req.packet().to_ascii_uppercase();
///         req.reply(&answer)
///     }
/// }
/// ```
#[derive(Debug)]
pub struct DatagramRequest {
    packet: Vec<u8>,
    peer: Address,
    listener: Arc<Listener>,
    server: ServerHandle,
}

impl DatagramRequest {
    pub(crate) fn new(datagram: Datagram, server: ServerHandle) -> Self {
        let Datagram {
            packet,
            peer,
            listener,
            ..
        } = datagram;
        DatagramRequest {
            packet,
            peer,
            listener,
            server,
        }
    }

    /// The packet's bytes.
    pub fn packet(&self) -> &[u8] {
        &self.packet
    }

    /// The packet's bytes, to change in place (say, to build the answer
    /// without allocating).
    pub fn packet_mut(&mut self) -> &mut [u8] {
        &mut self.packet
    }

    /// The sender's address.
    pub fn peer_addr(&self) -> Address {
        self.peer.clone()
    }

    /// The server's own address.
    pub fn local_addr(&self) -> io::Result<Address> {
        self.listener.local_addr()
    }

    /// Sends one datagram back to the sender, from the server's socket. A
    /// Unix client that never bound its socket to a path cannot be answered:
    /// that is an error of kind [`io::ErrorKind::AddrNotAvailable`].
    pub fn reply(&self, data: &[u8]) -> io::Result<()> {
        let to = match &self.peer {
            Address::Inet(addr) => SockAddr::from(*addr),
            Address::Unix(Some(path)) => SockAddr::unix(path)?,
            Address::Unix(None) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    "the client's socket has no address to reply to",
                ))
            }
        };
        let sent = self.listener.socket.send_to(data, &to)?;
        if sent == data.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", data.len()),
            ))
        }
    }

    /// The server this request belongs to: ask it to shut down, or read its
    /// counters.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }
}

impl Drop for DatagramRequest {
    fn drop(&mut self) {
        self.listener.recycle(std::mem::take(&mut self.packet));
    }
}
