//! The course's first server, threaded: every byte back, uppercased.
//!
//! Run: `cargo run --example echo_upper_tcp [ADDR]` (default 127.0.0.1:9000),
//! then `nc 127.0.0.1 9000`. Ctrl-C stops it gracefully.

use std::io::{self, Read, Write};

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

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let server = ThreadingTcpServer::bind(addr, EchoUpper)?;
    println!("listening on {}", server.url());
    server.shutdown_on_ctrl_c()?;
    let summary = server.serve_forever()?;
    println!("{summary}");
    Ok(())
}
