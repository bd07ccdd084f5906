//! Every transport of the library over loopback: Unix stream and datagram
//! sockets, IPv6, the one-at-a-time servers, SO_REUSEPORT, the stream
//! request's accessors. The stream transports run in both dispatch modes
//! with a message handler; the rest builds request handlers, which run on
//! threads (or one at a time) only.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixDatagram, UnixStream};

use socketserver::request::{Conn, Framing, MessageHandler, Next};
use socketserver::{
    handler_fn, Address, DatagramRequest, Options, ReactorTcpServer, ReactorUnixStreamServer,
    StreamRequest, TcpServer, ThreadingTcpServer, ThreadingUdpServer, ThreadingUnixDatagramServer,
    ThreadingUnixStreamServer, UdpServer, UnixDatagramServer, UnixStreamServer,
};
use support::{Mode, Running, TempDir, STEP};

fn upper_stream() -> impl socketserver::RequestHandler<StreamRequest> + Copy {
    handler_fn(|req: &mut StreamRequest| {
        let mut buf = [0u8; 1024];
        loop {
            let n = req.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            buf[..n].make_ascii_uppercase();
            req.write_all(&buf[..n])?;
        }
    })
}

fn upper_datagram() -> impl socketserver::RequestHandler<DatagramRequest> + Copy {
    handler_fn(|req: &mut DatagramRequest| {
        let answer = format!(
            "{} from {}",
            String::from_utf8_lossy(req.packet()).to_uppercase(),
            req.peer_addr()
        );
        req.reply(answer.as_bytes())
    })
}

/// Asserts that `running`, an upper-casing Unix stream server, listens at
/// `path`, answers there, and removes its socket file when it stops.
fn assert_serves_then_removes_its_socket(running: Running, path: &std::path::Path) {
    assert_eq!(running.addr, Address::Unix(Some(path.to_path_buf())));
    assert_eq!(unix_round_trip(path), b"UNIX STREAM");
    running.stop();
    assert!(
        !path.exists(),
        "the socket file is removed when the server closes"
    );
}

fn unix_round_trip(path: &std::path::Path) -> Vec<u8> {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.write_all(b"unix stream").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    answer
}

#[test]
fn unix_stream_servers() {
    let dir = TempDir::new("unix-stream");
    for threading in [true, false] {
        let path = dir.join(&format!("s-{threading}.sock"));
        let running = if threading {
            Running::start(ThreadingUnixStreamServer::bind(&path, upper_stream()).unwrap())
        } else {
            Running::start(UnixStreamServer::bind(&path, upper_stream()).unwrap())
        };
        assert_serves_then_removes_its_socket(running, &path);
    }
}

#[test]
fn unix_datagram_servers() {
    let dir = TempDir::new("unix-dgram");
    for threading in [true, false] {
        let path = dir.join(&format!("d-{threading}.sock"));
        let running = if threading {
            Running::start(ThreadingUnixDatagramServer::bind(&path, upper_datagram()).unwrap())
        } else {
            Running::start(UnixDatagramServer::bind(&path, upper_datagram()).unwrap())
        };
        let own = dir.join(&format!("client-{threading}.sock"));
        let client = UnixDatagram::bind(&own).unwrap();
        client.set_read_timeout(Some(STEP)).unwrap();
        client.send_to(b"packet", &path).unwrap();
        let mut buf = [0u8; 256];
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("PACKET from unix:{}", own.display())
        );
        running.stop();
        assert!(!path.exists());
    }
}

#[test]
fn a_live_unix_socket_is_not_stolen() {
    let dir = TempDir::new("unix-live");
    let path = dir.join("live.sock");
    let _first = ThreadingUnixStreamServer::bind(&path, upper_stream()).unwrap();
    let err = ThreadingUnixStreamServer::bind(&path, upper_stream()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
}

#[test]
fn ipv6_loopback_stream_and_datagram() {
    let options = Options::new().only_v6(Some(true));
    let running =
        Running::start(ThreadingTcpServer::bind_with("[::1]:0", upper_stream(), options).unwrap());
    assert!(running.inet().is_ipv6());
    let mut stream = support::connect(running.inet());
    stream.write_all(b"six").unwrap();
    let mut buf = [0u8; 3];
    stream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"SIX");

    let udp = Running::start(ThreadingUdpServer::bind("[::1]:0", upper_datagram()).unwrap());
    let client = std::net::UdpSocket::bind("[::1]:0").unwrap();
    client.set_read_timeout(Some(STEP)).unwrap();
    client.send_to(b"v6", udp.inet()).unwrap();
    let mut buf = [0u8; 128];
    let n = client.recv(&mut buf).unwrap();
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    assert_eq!(text, format!("V6 from {}", client.local_addr().unwrap()));
    assert!(text.contains("[::1]:"));
}

#[test]
fn one_at_a_time_servers_serve_in_turn() {
    let running = Running::start(TcpServer::bind("127.0.0.1:0", upper_stream()).unwrap());
    let mut first = support::connect(running.inet());
    first.write_all(b"a").unwrap();
    let mut buf = [0u8; 1];
    first.read_exact(&mut buf).unwrap();
    // The second waits while the first is open.
    let mut second = TcpStream::connect(running.inet()).unwrap();
    second
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    second.write_all(b"b").unwrap();
    let err = second.read_exact(&mut buf).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    drop(first);
    second.set_read_timeout(Some(STEP)).unwrap();
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"B");
    assert_eq!(running.handle.stats().threads, 0, "no pool");

    let udp = Running::start(UdpServer::bind("127.0.0.1:0", upper_datagram()).unwrap());
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(STEP)).unwrap();
    client.send_to(b"one", udp.inet()).unwrap();
    let mut line = [0u8; 64];
    let n = client.recv(&mut line).unwrap();
    assert!(line[..n].starts_with(b"ONE from 127.0.0.1:"));
}

#[test]
fn stream_request_accessors() {
    let handler = handler_fn(|req: &mut StreamRequest| {
        let local = req.local_addr()?;
        let peer = req.peer_addr();
        req.set_read_timeout(Some(STEP))?;
        req.set_nodelay(true)?;
        let (mut reader, mut writer) = req.split();
        let mut line = String::new();
        reader.read_line(&mut line)?;
        writeln!(writer, "{} {peer} {local}", line.trim())?;
        Ok(())
    });
    let running = Running::start(ThreadingTcpServer::bind("127.0.0.1:0", handler).unwrap());
    let mut stream = support::connect(running.inet());
    stream.write_all(b"who\n").unwrap();
    let mut answer = String::new();
    BufReader::new(stream.try_clone().unwrap())
        .read_line(&mut answer)
        .unwrap();
    assert_eq!(
        answer,
        format!("who {} {}\n", stream.local_addr().unwrap(), running.inet())
    );
}

#[test]
fn reuse_port_lets_two_servers_share_a_port() {
    let first = ThreadingTcpServer::bind_with(
        "127.0.0.1:0",
        upper_stream(),
        Options::new().reuse_port(true),
    )
    .unwrap();
    let addr = first.local_addr().as_inet().unwrap();
    let second =
        ThreadingTcpServer::bind_with(addr, upper_stream(), Options::new().reuse_port(true));
    assert!(second.is_ok(), "{:?}", second.err());
    let refused = ThreadingTcpServer::bind(addr, upper_stream()).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::AddrInUse);
}

/// Answers whatever arrives in upper case: a message handler, for either
/// mode.
#[derive(Clone, Copy)]
struct UpperChunks;

impl MessageHandler for UpperChunks {
    type Session = ();

    fn framing(&self, _: &()) -> Framing {
        Framing::Chunk { max: 4096 }
    }

    fn open(&self, _: &mut Conn<'_>) -> std::io::Result<()> {
        Ok(())
    }

    fn on_message(&self, _: &mut (), chunk: &[u8], conn: &mut Conn<'_>) -> std::io::Result<Next> {
        conn.write_all(&chunk.to_ascii_uppercase())?;
        Ok(Next::Continue)
    }
}

crate::both_modes! {
    /// A Unix stream server in either mode serves, reports its address, and
    /// removes its socket file when it closes.
    fn unix_stream_servers_in_both_modes(mode) {
        let dir = TempDir::new("unix-stream-modes");
        let path = dir.join("m.sock");
        let running = match mode {
            Mode::Threads => Running::start(
                ThreadingUnixStreamServer::bind(&path, UpperChunks).unwrap(),
            ),
            Mode::Reactor => Running::start(ReactorUnixStreamServer::bind(&path, UpperChunks).unwrap()),
        };
        assert_serves_then_removes_its_socket(running, &path);
    }

    /// IPv6 loopback in either mode.
    fn ipv6_loopback_stream_in_both_modes(mode) {
        let options = Options::new().only_v6(Some(true));
        let running = match mode {
            Mode::Threads => Running::start(
                ThreadingTcpServer::bind_with("[::1]:0", UpperChunks, options).unwrap(),
            ),
            Mode::Reactor => Running::start(
                ReactorTcpServer::bind_with("[::1]:0", UpperChunks, options).unwrap(),
            ),
        };
        assert!(running.inet().is_ipv6());
        let mut stream = support::connect(running.inet());
        stream.write_all(b"six").unwrap();
        let mut buf = [0u8; 3];
        stream.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"SIX");
    }

    /// A live Unix socket is not stolen by a second server, in either mode.
    fn a_live_unix_socket_is_not_stolen_in_either_mode(mode) {
        let dir = TempDir::new("unix-live-modes");
        let path = dir.join("live.sock");
        let _first = ReactorUnixStreamServer::bind(&path, UpperChunks).unwrap();
        let err = match mode {
            Mode::Threads => ThreadingUnixStreamServer::bind(&path, UpperChunks).err(),
            Mode::Reactor => ReactorUnixStreamServer::bind(&path, UpperChunks).err(),
        };
        assert_eq!(err.map(|e| e.kind()), Some(ErrorKind::AddrInUse));
    }
}
