//! echo-upper on tokio's multi-thread runtime (one worker per CPU), written
//! as tokio's own echo examples are: a task per TCP connection, and one task
//! answering UDP datagrams in a `recv_from`/`send_to` loop.
//!
//! `tokio-echo [HOST] [--port PORT] [--reuse-port]` binds TCP and UDP on HOST
//! (default 127.0.0.1), TCP on PORT (default 0, as UDP always), prints
//! `listening on tcp://...` and `listening on udp://...`, and serves until
//! killed. With `--reuse-port` the TCP listener sets `SO_REUSEPORT`, so that
//! several processes can share one port.

use std::io::{self, Write};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};

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

/// The command line: `[HOST] [--port PORT] [--reuse-port]`.
struct Args {
    host: String,
    port: u16,
    reuse_port: bool,
}

fn parse_args() -> io::Result<Args> {
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let mut parsed = Args {
        host: "127.0.0.1".into(),
        port: 0,
        reuse_port: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--reuse-port" => parsed.reuse_port = true,
            "--port" => {
                let port = args.next().ok_or_else(|| bad("--port needs a value".into()))?;
                parsed.port = port
                    .parse()
                    .map_err(|e| bad(format!("--port {port}: {e}")))?;
            }
            _ if arg.starts_with('-') => return Err(bad(format!("unknown option {arg}"))),
            _ => parsed.host = arg,
        }
    }
    Ok(parsed)
}

/// A TCP listener with tokio's own backlog (1,024), as `TcpListener::bind`
/// makes it, and `SO_REUSEPORT` when asked.
async fn listen(args: &Args) -> io::Result<TcpListener> {
    if !args.reuse_port {
        return TcpListener::bind((args.host.as_str(), args.port)).await;
    }
    let address = tokio::net::lookup_host((args.host.as_str(), args.port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let args = parse_args()?;
    let host = args.host.clone();
    let listener = listen(&args).await?;
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
