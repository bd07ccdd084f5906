//! The course's "records" exercise: a client sends lines, the server appends
//! each to a file, and a line `#` ends the session; the server then syncs the
//! file to disk and answers with how many lines the session saved.
//!
//! ```text
//! cargo run --example records -- 127.0.0.1:9103 records.txt
//! printf 'first\nsecond\n#\n' | socketserver client echo-upper --connect tcp://127.0.0.1:9103
//! ```
//! (`client echo-upper` just pipes bytes, like `nc`; it prints the answer, `2`).
//! A line over 64 KiB ends its session with an error, logged on standard
//! error: `127.0.0.1:PORT: handler error: line too long (invalid data); request
//! abandoned`.

use std::fs::OpenOptions;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use socketserver::{RequestHandler, StreamRequest, ThreadingTcpServer};

/// The longest line a client may send.
const MAX_LINE: u64 = 64 * 1024;

/// Appends every line of every session to one file.
pub struct Records {
    pub path: PathBuf,
}

impl RequestHandler<StreamRequest> for Records {
    fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut count = 0u64;
        let mut line = String::new();
        loop {
            line.clear();
            // `take` bounds the line: a client cannot make us buffer more.
            if (&mut *req).take(MAX_LINE + 1).read_line(&mut line)? == 0 {
                return Ok(()); // left without '#': what came is kept
            }
            if !line.ends_with('\n') && line.len() as u64 > MAX_LINE {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            let record = line.trim_end_matches(['\n', '\r']);
            if record == "#" {
                file.sync_all()?; // on disk before we say so
                return writeln!(req, "{count}");
            }
            // One write per line: with O_APPEND, sessions never interleave within a line.
            file.write_all(format!("{record}\n").as_bytes())?;
            count += 1;
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9103".into());
    let path = PathBuf::from(args.next().unwrap_or_else(|| "records.txt".into()));
    match serve(&addr, &path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: &str, path: &Path) -> io::Result<()> {
    let records = Records {
        path: path.to_path_buf(),
    };
    let server = ThreadingTcpServer::bind(addr, records)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    // The handler first: a signal sent as soon as the line is read is
    // a graceful shutdown, never the default action.
    server.shutdown_on_ctrl_c()?;
    println!("listening on {}", server.url());
    server.serve_forever()?;
    Ok(())
}
