//! echo-upper on `may`'s stackful coroutines, written as may's own echo
//! example is: one coroutine accepting, a coroutine spawned per TCP
//! connection, one worker thread per CPU. TCP only.
//!
//! `may-echo [HOST]` binds TCP on HOST (default 127.0.0.1), port 0, prints
//! `listening on tcp://...`, and serves until killed.

use std::io::{self, Read, Write};

use may::net::{TcpListener, TcpStream};

/// The same buffer size as `socketserver::services::EchoUpper`.
const BUFFER: usize = 16 * 1024;

fn serve_connection(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // On the heap: a coroutine's stack is small (32 KiB by default).
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        buf[..n].make_ascii_uppercase();
        stream.write_all(&buf[..n])?;
    }
}

fn main() -> io::Result<()> {
    let host = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1".into());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    may::config().set_workers(workers);
    let listener = TcpListener::bind((host.as_str(), 0))?;
    println!("listening on tcp://{}", listener.local_addr()?);
    io::stdout().flush()?;
    let acceptor = may::go!(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(stream) => {
                    may::go!(move || serve_connection(stream));
                }
                Err(e) => eprintln!("may-echo: accept: {e}"),
            }
        }
    });
    acceptor
        .join()
        .map_err(|_| io::Error::other("the accepting coroutine panicked"))
}
