//! echo-upper over UDP: each datagram answered by one, uppercased.
//!
//! Run: `cargo run --example echo_upper_udp [ADDR]` (default 127.0.0.1:9000),
//! then `nc -u 127.0.0.1 9000`.

use std::io;

use socketserver::{DatagramRequest, RequestHandler, ThreadingUdpServer};

struct EchoUpper;

impl RequestHandler<DatagramRequest> for EchoUpper {
    fn handle(&self, req: &mut DatagramRequest) -> io::Result<()> {
        let answer = req.packet().to_ascii_uppercase();
        req.reply(&answer)
    }
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let server = ThreadingUdpServer::bind(addr, EchoUpper)?;
    println!("listening on {}", server.url());
    server.shutdown_on_ctrl_c()?;
    let summary = server.serve_forever()?;
    println!("{summary}");
    Ok(())
}
