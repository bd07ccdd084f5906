//! Client connections for tests: always with timeouts, from a chosen local
//! address, with a tiny receive window, closed with a reset; and what a
//! client sees when the server closes.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::STEP;

/// A TCP connection to `addr`, with read and write timeouts of [`STEP`].
pub fn connect(addr: impl ToSocketAddrs) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.set_write_timeout(Some(STEP)).unwrap();
    stream
}

/// A TCP connection from `local` (any 127.x.y.z address) to `addr`
/// (`HOST:PORT`), with timeouts.
pub fn connect_from(local: &str, addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{local}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect_timeout(&addr.into(), STEP).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.set_write_timeout(Some(STEP)).unwrap();
    stream
}

/// A TCP connection with a tiny receive buffer (and no timeout), so that a
/// client that does not read fills up quickly.
pub fn connect_small_buffer(addr: impl ToSocketAddrs) -> TcpStream {
    let addr = addr.to_socket_addrs().unwrap().next().expect("an address");
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&addr.into(), STEP).unwrap();
    socket.into()
}

/// Closes with a reset (RST) instead of a FIN: SO_LINGER with a zero time.
pub fn reset(stream: TcpStream) {
    Socket::from(stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Reads until the server closes (or the read fails); what came before.
pub fn until_closed(stream: &mut impl Read) -> Vec<u8> {
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    rest
}

/// The peer closed with nothing more to say: end of input, or a reset.
pub fn assert_closed(stream: &mut impl Read) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(
            rest.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&rest)
        ),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }
}

/// True once connecting to `addr` is refused (the listener is closed).
pub fn refuses(addr: impl ToSocketAddrs) -> bool {
    TcpStream::connect(addr).is_err()
}

/// Waits (at most [`STEP`]) until connecting to `addr` is refused.
pub fn wait_until_refused(addr: &str) {
    let deadline = Instant::now() + STEP;
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting on {addr}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The sockets listening on `port` on 127.0.0.1, from `/proc/net/tcp`.
pub fn listening_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        })
        .count()
}
