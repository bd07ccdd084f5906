//! [`Listener`]: the bound socket of a server, and what arrives on it:
//! [`Accepted`] connections and received [`Datagram`]s.

use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use socket2::{Domain, SockAddr, Socket, Type};

use super::{Address, Scheme};

/// How a listening socket is set up: the socket options of
/// [`Options`](crate::Options) that apply before a server accepts anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenOptions {
    pub reuse_address: bool,
    pub reuse_port: bool,
    pub backlog: i32,
    pub only_v6: Option<bool>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            reuse_address: true,
            reuse_port: false,
            backlog: 1024,
            only_v6: None,
        }
    }
}

/// A connection a stream listener accepted: the socket (blocking, as every
/// dispatcher but the reactor wants it) and the client's address.
#[derive(Debug)]
pub struct Accepted {
    pub socket: Socket,
    pub peer: Address,
}

/// A packet a datagram listener received, with the listener to answer from.
#[derive(Debug)]
pub struct Datagram {
    pub packet: Vec<u8>,
    pub peer: Address,
    pub listener: Arc<Listener>,
    /// The datagram's real size when it was larger than the receive buffer
    /// ([`MAX_DATAGRAM`]); its packet is then empty, and it must be dropped,
    /// never answered as if it were whole.
    pub oversized: Option<usize>,
}

/// The bound socket of a server; for a datagram server it is shared with the
/// requests that reply through it, with a store of packet buffers to reuse.
#[derive(Debug)]
pub struct Listener {
    pub socket: Socket,
    unix_path: Option<PathBuf>,
    /// The socket file at `unix_path` is gone (see `remove_socket_file`).
    file_removed: AtomicBool,
    /// Packet buffers to reuse (at most `SPARE_BUFFERS`, room made at
    /// once): a lock held for a push or a pop, cheaper than a channel.
    spare: Mutex<Vec<Vec<u8>>>,
}

/// The largest datagram a server receives whole; a larger one (possible on
/// Unix datagram sockets) is dropped.
pub(crate) const MAX_DATAGRAM: usize = 65_536;
/// How many spare packet buffers a datagram server keeps for reuse.
const SPARE_BUFFERS: usize = 256;

impl Listener {
    fn new(socket: Socket, unix_path: Option<PathBuf>) -> Self {
        Listener {
            socket,
            unix_path,
            file_removed: AtomicBool::new(false),
            spare: Mutex::new(Vec::new()),
        }
    }

    /// A socket bound by someone else (socket activation, a parent), for a
    /// server of `scheme`: checked to be of that kind, made to listen if it
    /// is a stream socket that does not yet, marked close-on-exec. Its Unix
    /// socket file, if any, is not this process's to remove.
    pub(crate) fn adopt(
        fd: OwnedFd,
        scheme: Scheme,
        options: &ListenOptions,
    ) -> io::Result<Listener> {
        let socket = Socket::from(fd);
        let domain = socket.domain()?;
        let ty = socket.r#type()?;
        let want_ty = if scheme.is_stream() {
            Type::STREAM
        } else {
            Type::DGRAM
        };
        let domain_fits = if scheme.is_inet() {
            domain == Domain::IPV4 || domain == Domain::IPV6
        } else {
            domain == Domain::UNIX
        };
        if !domain_fits || ty != want_ty {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a {} socket cannot serve {scheme}", describe(domain, ty)),
            ));
        }
        socket.set_cloexec(true)?;
        if ty == Type::STREAM {
            if !socket.is_listener()? {
                socket.listen(options.backlog)?;
            }
            socket.set_nonblocking(true)?;
        } else {
            // Replies are sent blocking; receives pass MSG_DONTWAIT.
            socket.set_nonblocking(false)?;
        }
        Ok(Listener::new(socket, None))
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> io::Result<Address> {
        Ok(match &self.unix_path {
            Some(path) => Address::Unix(Some(path.clone())),
            None => Address::from_sockaddr(&self.socket.local_addr()?),
        })
    }

    /// Accepts one connection; `None` when none is waiting. A connection
    /// its client gave up before it was taken is passed over (logged at
    /// debug): an error is the listener's own (out of descriptors, say).
    pub fn accept(&self) -> io::Result<Option<Accepted>> {
        loop {
            match self.socket.accept() {
                Ok((socket, peer)) => {
                    return Ok(Some(Accepted {
                        socket,
                        peer: Address::from_sockaddr(&peer),
                    }))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if gave_up_before_accept(&e) => {
                    log::debug!("accept: a connection gone before it was taken: {e}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Receives one datagram into a reused buffer; `None` when none is waiting.
    /// A datagram larger than `scratch` comes back with an empty packet and
    /// its real size in [`Datagram::oversized`] (`MSG_TRUNC` makes
    /// `recvfrom` return the real size instead of the size it copied).
    pub fn receive(
        self: &Arc<Self>,
        scratch: &mut [MaybeUninit<u8>],
    ) -> io::Result<Option<Datagram>> {
        match self
            .socket
            .recv_from_with_flags(scratch, libc::MSG_DONTWAIT | libc::MSG_TRUNC)
        {
            Ok((n, from)) if n > scratch.len() => Ok(Some(Datagram {
                packet: Vec::new(),
                peer: Address::from_sockaddr(&from),
                listener: Arc::clone(self),
                oversized: Some(n),
            })),
            Ok((n, from)) => {
                // SAFETY: recvfrom initialised the first `n` bytes.
                let data = unsafe { std::slice::from_raw_parts(scratch.as_ptr().cast::<u8>(), n) };
                Ok(Some(self.datagram(data, Address::from_sockaddr(&from))))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Datagrams the kernel dropped on this socket because its receive
    /// buffer was full, over the socket's life (Linux's `SO_MEMINFO` drop
    /// count); `None` where the kernel does not say. Drops before the socket
    /// (a device's backlog) are not counted here.
    pub fn kernel_drops(&self) -> Option<u64> {
        let mut info = [0u32; libc::SK_MEMINFO_DROPS as usize + 1];
        let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
        // SAFETY: `info` is writable for `len` bytes, and the kernel writes
        // at most `len` bytes and sets `len` to what it wrote.
        let done = unsafe {
            libc::getsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&self.socket),
                libc::SOL_SOCKET,
                libc::SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let drops = libc::SK_MEMINFO_DROPS as usize;
        (done == 0 && len as usize > drops * 4).then(|| u64::from(info[drops]))
    }

    /// A datagram of `data` from `peer`, in a reused buffer, to answer from
    /// this listener.
    pub fn datagram(self: &Arc<Self>, data: &[u8], peer: Address) -> Datagram {
        let mut packet = self.spare.lock().pop().unwrap_or_default();
        packet.extend_from_slice(data);
        Datagram {
            packet,
            peer,
            listener: Arc::clone(self),
            oversized: None,
        }
    }

    /// Gives a packet buffer back for reuse.
    pub fn recycle(&self, mut packet: Vec<u8>) {
        if packet.capacity() == 0 || packet.capacity() > MAX_DATAGRAM {
            return;
        }
        packet.clear();
        let mut spare = self.spare.lock();
        if spare.len() < SPARE_BUFFERS {
            if spare.capacity() == 0 {
                // Room for every spare at once: pushes never allocate.
                spare.reserve_exact(SPARE_BUFFERS);
            }
            spare.push(packet);
        }
    }

    /// A receive buffer for [`Listener::receive`].
    pub fn scratch() -> Box<[MaybeUninit<u8>]> {
        vec![MaybeUninit::uninit(); MAX_DATAGRAM].into_boxed_slice()
    }
}

impl Listener {
    /// Removes the Unix socket file this listener created, once: when its
    /// server closes (a datagram request still replying holds the socket a
    /// little longer, and the file must not wait for it), or at the latest
    /// when the listener is dropped.
    pub fn remove_socket_file(&self) {
        if let Some(path) = &self.unix_path {
            if !self.file_removed.swap(true, Ordering::SeqCst) {
                if let Err(e) = fs::remove_file(path) {
                    log::debug!("cannot remove {}: {e}", path.display());
                }
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.remove_socket_file();
    }
}

/// A socket's kind in words: "TCP", "Unix datagram", ...
fn describe(domain: Domain, ty: Type) -> String {
    let family = if domain == Domain::IPV4 || domain == Domain::IPV6 {
        match ty {
            Type::STREAM => return "TCP".to_string(),
            Type::DGRAM => return "UDP".to_string(),
            _ => "IP",
        }
    } else if domain == Domain::UNIX {
        "Unix"
    } else {
        return format!("{domain:?} {ty:?}");
    };
    match ty {
        Type::STREAM => format!("{family} stream"),
        Type::DGRAM => format!("{family} datagram"),
        _ => format!("{family} {ty:?}"),
    }
}

/// Binds an IP socket of type `ty` to the first of `addrs` that accepts it.
pub(crate) fn bind_inet(
    addrs: impl ToSocketAddrs,
    ty: Type,
    options: &ListenOptions,
) -> io::Result<Listener> {
    let mut last = None;
    for addr in addrs.to_socket_addrs()? {
        match bind_one_inet(addr, ty, options) {
            Ok(listener) => return Ok(listener),
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

fn bind_one_inet(addr: SocketAddr, ty: Type, options: &ListenOptions) -> io::Result<Listener> {
    let socket = Socket::new(Domain::for_address(addr), ty, None)?;
    if addr.is_ipv6() {
        if let Some(only_v6) = options.only_v6 {
            socket.set_only_v6(only_v6)?;
        }
    }
    // SO_REUSEADDR lets a restarted stream server bind while old connections
    // linger in TIME_WAIT. On a datagram socket it would let a second server
    // share the port without an error, so it is never set there.
    if ty == Type::STREAM && options.reuse_address {
        socket.set_reuse_address(true)?;
    }
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    finish_bind(socket, ty, None, options)
}

/// Binds a Unix socket of type `ty` at `path`, replacing a stale socket file
/// that no server listens on; a live one is an `AddrInUse` error.
pub(crate) fn bind_unix(path: &Path, ty: Type, options: &ListenOptions) -> io::Result<Listener> {
    let addr = SockAddr::unix(path)?;
    let socket = Socket::new(Domain::UNIX, ty, None)?;
    if let Err(e) = socket.bind(&addr) {
        if e.kind() != io::ErrorKind::AddrInUse || !is_stale_socket(path, &addr, ty) {
            return Err(e);
        }
        log::info!("replacing stale socket file {}", path.display());
        fs::remove_file(path)?;
        socket.bind(&addr)?;
    }
    finish_bind(socket, ty, Some(path.to_path_buf()), options)
}

/// True when `path` is a socket file that nobody listens on.
///
/// The probe connects without blocking: a live server whose backlog is full
/// answers `EAGAIN` at once (a blocking probe would wait for ever), and only
/// `ECONNREFUSED` means nobody listens.
fn is_stale_socket(path: &Path, addr: &SockAddr, ty: Type) -> bool {
    let is_socket = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    is_socket
        && Socket::new(Domain::UNIX, ty.nonblocking(), None)
            .and_then(|probe| probe.connect(addr))
            .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused)
}

fn finish_bind(
    socket: Socket,
    ty: Type,
    unix_path: Option<PathBuf>,
    options: &ListenOptions,
) -> io::Result<Listener> {
    let listener = Listener::new(socket, unix_path);
    if ty == Type::STREAM {
        listener.socket.listen(options.backlog)?;
        // The accept loop waits in `poll`; accepted sockets are blocking.
        listener.socket.set_nonblocking(true)?;
    }
    // A datagram socket stays blocking for replies; the receive loop passes
    // MSG_DONTWAIT instead.
    Ok(listener)
}

/// An error of `accept(2)` that concerns one pending connection, not the
/// listener: its client reset or gave up before it was taken (Linux's
/// ECONNABORTED, or EPROTO for a protocol error on it), or a signal
/// interrupted the call. The next connection may be taken at once.
pub(crate) fn gave_up_before_accept(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adopted_socket_must_be_of_the_server_kind() {
        let options = ListenOptions::default();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = Listener::adopt(udp.into(), Scheme::Tcp, &options).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(err.to_string(), "a UDP socket cannot serve tcp");
        // A bound TCP socket that does not listen yet is made to.
        let raw = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        raw.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let listener = Listener::adopt(raw.into(), Scheme::Tcp, &options).unwrap();
        assert!(listener.socket.is_listener().unwrap());
        let addr = listener.local_addr().unwrap().as_inet().unwrap();
        std::net::TcpStream::connect(addr).unwrap();
        let unix = Socket::new(Domain::UNIX, Type::DGRAM, None).unwrap();
        let err = Listener::adopt(unix.into(), Scheme::Unix, &options).unwrap_err();
        assert_eq!(err.to_string(), "a Unix datagram socket cannot serve unix");
    }

    #[test]
    fn the_kernel_counts_datagrams_dropped_on_a_full_receive_buffer() {
        let listener = bind_inet("127.0.0.1:0", Type::DGRAM, &ListenOptions::default()).unwrap();
        listener.socket.set_recv_buffer_size(4096).unwrap();
        assert_eq!(listener.kernel_drops(), Some(0));
        let addr = listener.local_addr().unwrap().as_inet().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = (0..200)
            .filter(|_| sender.send_to(&[b'x'; 1024], addr).is_ok())
            .count() as u64;
        let mut scratch = Listener::scratch();
        let listener = Arc::new(listener);
        let mut received = 0;
        while listener.receive(&mut scratch).unwrap().is_some() {
            received += 1;
        }
        let dropped = listener.kernel_drops().unwrap();
        assert!(
            received > 0 && dropped > 0,
            "{received} received, {dropped} dropped"
        );
        assert!(
            received + dropped <= sent,
            "{received} + {dropped} > {sent} sent"
        );
    }

    #[test]
    fn an_adopted_unix_socket_file_is_left_in_place() {
        let dir = std::env::temp_dir().join(format!("socketserver-adopt-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("given.sock");
        let given = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let listener =
            Listener::adopt(given.into(), Scheme::Unix, &ListenOptions::default()).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_unix_path(),
            Some(path.as_path())
        );
        drop(listener);
        assert!(path.exists(), "the file belongs to whoever made it");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_socket_file_goes_when_asked_while_replies_still_hold_the_socket() {
        let dir = std::env::temp_dir().join(format!("socketserver-file-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("d.sock");
        let listener = Arc::new(bind_unix(&path, Type::DGRAM, &ListenOptions::default()).unwrap());
        let replying = Arc::clone(&listener);
        assert!(path.exists());
        listener.remove_socket_file();
        assert!(!path.exists(), "the file went with the server's close");
        // The socket itself stays usable for the replies still being sent.
        let peer = std::os::unix::net::UnixDatagram::unbound().unwrap();
        peer.connect(&path).unwrap_err();
        assert!(replying.local_addr().is_ok());
        // Removed once: a file bound there meanwhile is not the listener's.
        let other = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        drop(listener);
        drop(replying);
        assert!(path.exists(), "another socket's file is left alone");
        drop(other);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_unix_socket_is_replaced_and_live_one_refused() {
        let dir = std::env::temp_dir().join(format!("socketserver-stale-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let options = ListenOptions::default();
        // A socket closed without cleanup leaves its file behind: stale.
        let raw = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        raw.bind(&SockAddr::unix(&path).unwrap()).unwrap();
        raw.listen(1).unwrap();
        drop(raw);
        assert!(path.exists());
        let live = bind_unix(&path, Type::STREAM, &options).unwrap();
        // Live: a second bind fails and leaves the first alone.
        let err = bind_unix(&path, Type::STREAM, &options).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(path.exists());
        drop(live);
        assert!(!path.exists(), "the socket file is removed on close");
        // A live server whose backlog is full is live too, and the probe
        // says so at once instead of waiting in connect.
        let full = bind_unix(
            &path,
            Type::STREAM,
            &ListenOptions {
                backlog: 1,
                ..options
            },
        )
        .unwrap();
        let _queued: Vec<Socket> = (0..4)
            .filter_map(|_| {
                let client = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None).ok()?;
                client.connect(&SockAddr::unix(&path).ok()?).ok()?;
                Some(client)
            })
            .collect();
        let started = std::time::Instant::now();
        let err = bind_unix(&path, Type::STREAM, &options).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        drop(full);
        fs::remove_dir_all(&dir).unwrap();
    }
}
