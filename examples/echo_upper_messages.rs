//! echo-upper as a message handler on event loops: called once per chunk
//! of bytes, and an idle connection costs no thread.
//!
//! Run: `cargo run --example echo_upper_messages [ADDR]` (default
//! 127.0.0.1:9100), then `nc 127.0.0.1 9100`. Ctrl-C stops it gracefully.

use std::io::{self, Write};

use socketserver::request::{Conn, Framing, MessageHandler, Next};
use socketserver::ReactorTcpServer;

struct EchoUpper;

impl MessageHandler for EchoUpper {
    type Session = ();

    fn framing(&self, _: &()) -> Framing {
        Framing::Chunk { max: 4096 }
    }

    fn open(&self, _: &mut Conn<'_>) -> io::Result<()> {
        Ok(())
    }

    fn on_message(&self, _: &mut (), bytes: &[u8], conn: &mut Conn<'_>) -> io::Result<Next> {
        conn.write_all(&bytes.to_ascii_uppercase())?;
        Ok(Next::Continue)
    }
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".into());
    let server = ReactorTcpServer::bind(addr, EchoUpper)?;
    // The handler first: a signal sent as soon as the line is read is
    // a graceful shutdown, never the default action.
    server.shutdown_on_ctrl_c()?;
    println!("listening on {}", server.url());
    let summary = server.serve_forever()?;
    println!("{summary}");
    Ok(())
}
