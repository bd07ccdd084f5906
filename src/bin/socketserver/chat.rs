//! `serve chat` and `client chat`.

use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use clap::Args;
use socketserver::client::chat::ChatClient;
use socketserver::client::WrongProtocol;
use socketserver::services::chat::{sanitize, LINE_TOO_LONG, SHUTTING_DOWN};
use socketserver::services::ChatRoom;

use crate::common::{parse_size, CliError};
use crate::connect::ConnectArgs;
use crate::serve::ServerArgs;
use crate::services::CHAT;
use crate::terminal;

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

/// What the server's last line says about why it closed the connection.
fn disconnect_reason(last_line: Option<&str>) -> String {
    let why = match last_line {
        Some(line) if line == SHUTTING_DOWN.trim_end() => ": the server is shutting down",
        Some(line) if line == LINE_TOO_LONG => ": the last line sent was over its limit",
        _ => "",
    };
    format!("disconnected by the server{why}")
}

pub fn client(args: ClientArgs) -> Result<(), CliError> {
    let chat = ChatClient::on(args.net.open(&CHAT, None)?)?;
    let (mut sender, mut receiver) = chat.into_split();
    if let Some(nick) = &args.nick {
        sender.send(&format!("/nick {nick}"))?;
    }
    // Set when this side ends the conversation: the server's closing is
    // then expected.
    let left = Arc::new(AtomicBool::new(false));
    let editor = if terminal::is_interactive() {
        Some(terminal::LineEditor::start()?)
    } else {
        None
    };
    let screen = editor.as_ref().map(terminal::LineEditor::screen);
    // Standard input goes to the room on its own thread; when it ends, the
    // client leaves, and the server's closing ends the loop below.
    let leaving = left.clone();
    std::thread::spawn(move || -> io::Result<()> {
        match editor {
            Some(mut editor) => loop {
                match editor.read()? {
                    terminal::Input::Line(line) => sender.send(&line)?,
                    terminal::Input::End => break,
                    terminal::Input::Interrupt => {
                        drop(editor);
                        std::process::exit(130);
                    }
                }
            },
            None => {
                let mut stdin = io::stdin().lock();
                let mut line = Vec::new();
                while stdin.read_until(b'\n', &mut line)? > 0 {
                    let text = String::from_utf8_lossy(&line);
                    sender.send(text.trim_end_matches(['\n', '\r']))?;
                    line.clear();
                }
            }
        }
        leaving.store(true, SeqCst);
        sender.leave()
    });
    let print = |line: &str| -> io::Result<()> {
        match &screen {
            Some(screen) => screen.print_line(line),
            None => {
                let mut stdout = io::stdout().lock();
                writeln!(stdout, "{line}")?;
                stdout.flush()
            }
        }
    };
    let mut last_line = None;
    let outcome = loop {
        match receiver.receive() {
            Ok(Some(line)) => {
                // Never a control sequence the client did not make,
                // whatever the server relays (SPEC rule 19).
                print(&sanitize(line.as_bytes()))?;
                last_line = Some(line);
            }
            Ok(None) if left.load(SeqCst) => break Ok(()),
            Ok(None) => break Err(CliError::Failed(disconnect_reason(last_line.as_deref()))),
            Err(e) if WrongProtocol::from_io(&e).is_some() => {
                break Err(CliError::Failed(format!("{}: {e}", args.net.connect)))
            }
            Err(e) if left.load(SeqCst) => break Err(e.into()),
            Err(e) => {
                break Err(CliError::Failed(format!(
                    "{} ({e})",
                    disconnect_reason(last_line.as_deref())
                )))
            }
        }
    };
    if let Some(screen) = &screen {
        screen.finish();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_says_why_the_server_closed() {
        assert_eq!(
            disconnect_reason(Some("* the server is shutting down")),
            "disconnected by the server: the server is shutting down"
        );
        assert_eq!(
            disconnect_reason(Some("error: line too long")),
            "disconnected by the server: the last line sent was over its limit"
        );
        assert_eq!(
            disconnect_reason(Some("bob: hi")),
            "disconnected by the server"
        );
        assert_eq!(disconnect_reason(None), "disconnected by the server");
    }
}
