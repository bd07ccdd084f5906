//! echo-upper with nothing but `std`: the floor a framework is measured
//! against. A thread per TCP connection (spawned by a blocking accept loop),
//! and one thread answering UDP datagrams in a `recv_from`/`send_to` loop.
//!
//! `std-echo [HOST]` binds TCP and UDP on HOST (default 127.0.0.1), port 0,
//! prints `listening on tcp://...` and `listening on udp://...`, and serves
//! until killed.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::thread;

/// The same buffer size as `socketserver::services::EchoUpper`.
const BUFFER: usize = 16 * 1024;

fn serve_connection(mut stream: TcpStream) -> io::Result<()> {
    // Small answers must not wait for the client's delayed ACK.
    stream.set_nodelay(true)?;
    let mut buf = [0u8; BUFFER];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        buf[..n].make_ascii_uppercase();
        stream.write_all(&buf[..n])?;
    }
}

fn serve_datagrams(socket: UdpSocket) -> io::Result<()> {
    let mut buf = [0u8; 65_536];
    loop {
        let (n, from) = socket.recv_from(&mut buf)?;
        buf[..n].make_ascii_uppercase();
        socket.send_to(&buf[..n], from)?;
    }
}

fn main() -> io::Result<()> {
    let host = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1".into());
    let listener = TcpListener::bind((host.as_str(), 0))?;
    let socket = UdpSocket::bind((host.as_str(), 0))?;
    println!("listening on tcp://{}", listener.local_addr()?);
    println!("listening on udp://{}", socket.local_addr()?);
    io::stdout().flush()?;
    thread::spawn(move || serve_datagrams(socket));
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                thread::spawn(move || serve_connection(stream));
            }
            Err(e) => eprintln!("std-echo: accept: {e}"),
        }
    }
}
