//! A threaded Unix-socket server: answers each line reversed.
//!
//! Run: `cargo run --example unix_socket [PATH]` (default ./reverse.sock),
//! then `nc -U reverse.sock`. The socket file is removed on exit; a stale one
//! left by a crash is replaced at start. Logs go to standard error
//! (`RUST_LOG`).

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use socketserver::{RequestHandler, StreamRequest, ThreadingUnixStreamServer};

struct Reverse;

impl RequestHandler<StreamRequest> for Reverse {
    fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
        let mut line = String::new();
        while req.read_line(&mut line)? > 0 {
            let reversed: String = line.trim_end().chars().rev().collect();
            writeln!(req, "{reversed}")?;
            line.clear();
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "reverse.sock".into());
    match serve(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: &str) -> io::Result<()> {
    let server = ThreadingUnixStreamServer::bind(path, Reverse)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {path}: {e}")))?;
    // The handler first: a signal sent as soon as the line is read is
    // a graceful shutdown, never the default action.
    server.shutdown_on_ctrl_c()?;
    println!("listening on {}", server.url());
    server.serve_forever()?;
    Ok(())
}
