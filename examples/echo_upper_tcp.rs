//! The course's first server, threaded: every byte back, uppercased.
//!
//! Run: `cargo run --example echo_upper_tcp [ADDR]` (default 127.0.0.1:9100),
//! then `nc 127.0.0.1 9100`. Ctrl-C stops it gracefully. What the server
//! reports (a handler's error, the shutdown) goes to standard error through
//! `env_logger`: `RUST_LOG=debug` shows more, `RUST_LOG=warn` less.

use std::io::{self, Read, Write};
use std::process::ExitCode;

use socketserver::{RequestHandler, StreamRequest, ThreadingTcpServer};

struct EchoUpper;

impl RequestHandler<StreamRequest> for EchoUpper {
    fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let n = req.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            buf[..n].make_ascii_uppercase();
            req.write_all(&buf[..n])?;
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".into());
    match serve(&addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: &str) -> io::Result<()> {
    let server = ThreadingTcpServer::bind(addr, EchoUpper)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    // The handler first: a signal sent as soon as the line is read is
    // a graceful shutdown, never the default action.
    server.shutdown_on_ctrl_c()?;
    println!("listening on {}", server.url());
    let summary = server.serve_forever()?;
    println!("{summary}");
    Ok(())
}
