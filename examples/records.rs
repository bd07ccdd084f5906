//! The course's "records" exercise: a client sends lines, the server appends
//! each to a file, and a line `#` ends the session; the server then syncs the
//! file to disk and answers with how many lines the session saved.
//!
//! ```text
//! cargo run --example records -- 127.0.0.1:9006 records.txt
//! printf 'first\nsecond\n#\n' | socketserver client echo-upper --connect tcp://127.0.0.1:9006
//! ```
//! (`client echo-upper` just pipes bytes, like `nc`; it prints the answer, `2`).

use std::fs::OpenOptions;
use std::io::{self, BufRead, Read, Write};
use std::path::PathBuf;

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

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:9006".into());
    let path = PathBuf::from(args.next().unwrap_or_else(|| "records.txt".into()));
    let server = ThreadingTcpServer::bind(addr.as_str(), Records { path })?;
    println!("listening on {}", server.url());
    server.shutdown_on_ctrl_c()?;
    server.serve_forever()?;
    Ok(())
}
