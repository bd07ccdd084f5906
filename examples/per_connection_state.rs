//! State per connection and state shared by all connections.
//!
//! Each line is answered with its number on this connection and in all.
//! Per-connection state is a local of `handle`; shared state is a field of the
//! handler behind an atomic. A line `bye` ends the connection with a summary.
//!
//! Run: `cargo run --example per_connection_state [ADDR]` (default
//! 127.0.0.1:9102), then `nc 127.0.0.1 9102` from two terminals. Logs go to
//! standard error (`RUST_LOG`).

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use socketserver::{Options, RequestHandler, StreamRequest, ThreadingTcpServer};

#[derive(Default)]
struct LineCounter {
    all_lines: AtomicU64,
}

impl RequestHandler<StreamRequest> for LineCounter {
    fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
        let mut mine = 0u64; // this connection's state
        let mut line = String::new();
        while req.read_line(&mut line)? > 0 {
            if line.trim() == "bye" {
                return writeln!(req, "you sent {mine} line(s)");
            }
            mine += 1;
            let all = self.all_lines.fetch_add(1, Ordering::Relaxed) + 1;
            writeln!(req, "line {mine} here, {all} in all")?;
            line.clear();
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9102".into());
    match serve(&addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: &str) -> io::Result<()> {
    let options = Options::new().idle_timeout(Some(std::time::Duration::from_secs(300)));
    let server = ThreadingTcpServer::bind_with(addr, LineCounter::default(), options)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    // The handler first: a signal sent as soon as the line is read is
    // a graceful shutdown, never the default action.
    server.shutdown_on_ctrl_c()?;
    println!("listening on {}", server.url());
    server.serve_forever()?;
    Ok(())
}
