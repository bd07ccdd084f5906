//! `serve http` and `client http`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use socketserver::client::http;
use socketserver::services::http::StaticHttp;

use crate::common::{parse_duration, parse_size, CliError};
use crate::connect::ConnectArgs;
use crate::serve::ServerArgs;
use crate::services::HTTP;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Serve the files under DIR (without it: a built-in hello world page)
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The longest request line, in bytes (longer: 414)
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "8KiB")]
    max_request_line: u64,
    /// The largest request head, in bytes (larger: 431)
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "64KiB")]
    max_head: u64,
    /// The most header fields in a request (more: 431)
    #[arg(long, value_name = "N", default_value_t = 100)]
    max_headers: usize,
    /// Close a connection whose request head is not complete SECS after its first byte (0: no limit)
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "10")]
    head_timeout: Duration,
    /// Answer a directory without index.html with a listing of its files (without it: 404)
    #[arg(long)]
    list_directories: bool,
}

pub fn serve(args: ServeArgs) -> Result<(), CliError> {
    let site = match &args.root {
        Some(root) => StaticHttp::with_root(root)
            .map_err(|e| CliError::Failed(format!("cannot use --root {}: {e}", root.display())))?,
        None => StaticHttp::builtin(),
    };
    let size = |bytes: u64| usize::try_from(bytes).unwrap_or(usize::MAX);
    let site = site
        .max_request_line(size(args.max_request_line))
        .max_head(size(args.max_head))
        .max_headers(args.max_headers)
        .head_timeout(Some(args.head_timeout))
        .list_directories(args.list_directories);
    // Idle keep-alive connections close after --idle-timeout (60 s unless
    // given); a client that stopped reading is cut by --write-timeout (60 s
    // by default, for every service).
    args.server.serve(&HTTP, &site)
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    #[command(flatten)]
    net: ConnectArgs,
    /// Send HEAD instead of GET, and print the header fields
    #[arg(long)]
    head: bool,
    /// The path to get
    #[arg(default_value = "/")]
    path: String,
}

pub fn client(args: ClientArgs) -> Result<(), CliError> {
    let method = if args.head { "HEAD" } else { "GET" };
    let net = &args.net;
    let connection = net.open(&HTTP, Some(net.timeout))?;
    let mut response = http::request_on(
        connection,
        &http::host_field(&net.connect),
        method,
        &args.path,
    )
    .map_err(|e| CliError::Failed(format!("{method} {} from {}: {e}", args.path, net.connect)))?;
    eprintln!("HTTP {} {}", response.status, response.reason);
    let mut stdout = io::stdout().lock();
    if args.head {
        for (name, value) in &response.headers {
            writeln!(stdout, "{name}: {value}")?;
        }
    } else {
        io::copy(&mut response, &mut stdout)?;
    }
    stdout.flush()?;
    if response.status >= 400 {
        return Err(CliError::Failed(format!(
            "HTTP {} {}",
            response.status, response.reason
        )));
    }
    Ok(())
}
