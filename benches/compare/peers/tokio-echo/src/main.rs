//! echo-upper on tokio's multi-thread runtime (one worker per CPU), written
//! as tokio's own echo examples are: a task per TCP connection, and one task
//! answering UDP datagrams in a `recv_from`/`send_to` loop.
//!
//! `tokio-echo [HOST]` binds TCP and UDP on HOST (default 127.0.0.1), port 0,
//! prints `listening on tcp://...` and `listening on udp://...`, and serves
//! until killed.

use std::io::{self, Write};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// The same buffer size as `socketserver::services::EchoUpper`.
const BUFFER: usize = 16 * 1024;

async fn serve_connection(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        buf[..n].make_ascii_uppercase();
        stream.write_all(&buf[..n]).await?;
    }
}

async fn serve_datagrams(socket: UdpSocket) -> io::Result<()> {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        buf[..n].make_ascii_uppercase();
        socket.send_to(&buf[..n], from).await?;
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let host = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1".into());
    let listener = TcpListener::bind((host.as_str(), 0)).await?;
    let socket = UdpSocket::bind((host.as_str(), 0)).await?;
    println!("listening on tcp://{}", listener.local_addr()?);
    println!("listening on udp://{}", socket.local_addr()?);
    io::stdout().flush()?;
    tokio::spawn(serve_datagrams(socket));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream));
            }
            Err(e) => eprintln!("tokio-echo: accept: {e}"),
        }
    }
}
