//! `serve chat` and `client chat`.

use std::io::{self, BufRead, Write};

use clap::Args;
use socketserver::client::chat::ChatClient;
use socketserver::services::chat::sanitize;
use socketserver::services::ChatRoom;
use socketserver::transport::Scheme;
use socketserver::SocketUrl;

use crate::common::{parse_size, BindArgs, CliError, Launcher, PoolArgs};

const DEFAULT_URL: &str = "tcp://127.0.0.1:9005";

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    bind: BindArgs,
    #[command(flatten)]
    pool: PoolArgs,
    /// Bytes that may wait for one member; a member that falls further behind is disconnected
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "1MiB")]
    max_backlog: u64,
    /// The longest line, in bytes; a longer one disconnects its sender
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "8KiB")]
    max_line: u64,
    /// Bytes per second a member may send (and its burst); a faster sender is slowed down
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "1MiB")]
    max_rate: u64,
}

pub fn serve(args: ServeArgs) -> Result<(), CliError> {
    let urls = args.bind.urls(DEFAULT_URL, &[Scheme::Tcp, Scheme::Unix])?;
    let room = ChatRoom::new()
        .max_backlog(usize::try_from(args.max_backlog).unwrap_or(usize::MAX))
        .max_line(usize::try_from(args.max_line).unwrap_or(usize::MAX))
        .max_rate(usize::try_from(args.max_rate).unwrap_or(usize::MAX));
    let mut launcher = Launcher::new(args.pool.options(None), args.pool.dispatch);
    for url in &urls {
        launcher.stream(url, &room)?;
    }
    launcher.run()
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// The server's URL (tcp:// or unix:)
    #[arg(long, value_name = "URL", default_value = DEFAULT_URL)]
    connect: SocketUrl,
    /// Take this name on arrival (sends `/nick NAME`)
    #[arg(long, value_name = "NAME")]
    nick: Option<String>,
}

pub fn client(args: ClientArgs) -> Result<(), CliError> {
    let chat = ChatClient::connect(&args.connect, None)
        .map_err(|e| CliError::Failed(format!("cannot connect to {}: {e}", args.connect)))?;
    let (mut sender, mut receiver) = chat.into_split();
    if let Some(nick) = &args.nick {
        sender.send(&format!("/nick {nick}"))?;
    }
    // Standard input goes to the room on its own thread; when it ends, the
    // client leaves, and the server's closing ends the loop below.
    std::thread::spawn(move || -> io::Result<()> {
        let mut stdin = io::stdin().lock();
        let mut line = Vec::new();
        while stdin.read_until(b'\n', &mut line)? > 0 {
            let text = String::from_utf8_lossy(&line);
            sender.send(text.trim_end_matches(['\n', '\r']))?;
            line.clear();
        }
        sender.leave()
    });
    let mut stdout = io::stdout().lock();
    while let Some(line) = receiver.receive()? {
        // Never a control sequence the client did not make, whatever the
        // server relays (SPEC rule 19).
        writeln!(stdout, "{}", sanitize(line.as_bytes()))?;
        stdout.flush()?;
    }
    Ok(())
}
