//! `serve chat` and `client chat`.

use std::io::{self, BufRead, Write};

use clap::Args;
use socketserver::client::chat::ChatClient;
use socketserver::services::ChatRoom;

use crate::common::{parse_size, CliError};
use crate::connect::ConnectArgs;
use crate::serve::ServerArgs;
use crate::services::CHAT;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    server: ServerArgs,
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
    let room = ChatRoom::new()
        .max_backlog(usize::try_from(args.max_backlog).unwrap_or(usize::MAX))
        .max_line(usize::try_from(args.max_line).unwrap_or(usize::MAX))
        .max_rate(usize::try_from(args.max_rate).unwrap_or(usize::MAX));
    args.server.serve(&CHAT, &room)
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    // --timeout bounds connecting and the TLS handshake; a member waits on
    // the room for ever.
    #[command(flatten)]
    net: ConnectArgs,
    /// Take this name on arrival (sends `/nick NAME`)
    #[arg(long, value_name = "NAME")]
    nick: Option<String>,
}

pub fn client(args: ClientArgs) -> Result<(), CliError> {
    let chat = ChatClient::on(args.net.open(&CHAT, None)?)?;
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
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
    }
    Ok(())
}
