//! echo-upper over UDP: each datagram answered by one, uppercased.
//!
//! Run: `cargo run --example echo_upper_udp [ADDR]` (default 127.0.0.1:9101),
//! then `nc -u 127.0.0.1 9101`. Logs go to standard error (`RUST_LOG`).

use std::io;
use std::process::ExitCode;

use socketserver::{DatagramRequest, RequestHandler, ThreadingUdpServer};

struct EchoUpper;

impl RequestHandler<DatagramRequest> for EchoUpper {
    fn handle(&self, req: &mut DatagramRequest) -> io::Result<()> {
        let answer = req.packet().to_ascii_uppercase();
        req.reply(&answer)
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9101".into());
    match serve(&addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: &str) -> io::Result<()> {
    let server = ThreadingUdpServer::bind(addr, EchoUpper)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    // The handler first: a signal sent as soon as the line is read is
    // a graceful shutdown, never the default action.
    server.shutdown_on_ctrl_c()?;
    println!("listening on {}", server.url());
    let summary = server.serve_forever()?;
    println!("{summary}");
    Ok(())
}
