//! A blocking client of the [chat](crate::services::chat) room.

use std::collections::VecDeque;
use std::io::{self, BufReader, Write};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{quote, Connection, WrongProtocol};
use crate::protocol::line::{read_line, Line};
use crate::transport::url::SocketUrl;

/// The longest line the client accepts from the room, in bytes.
const MAX_LINE: usize = 1 << 20;

/// How many of its own last lines a member remembers, to recognise a server
/// that sends them back.
const REMEMBERED: usize = 16;

/// A member's last lines, shared by its two halves.
type Sent = Arc<Mutex<VecDeque<String>>>;

/// A member of a chat room. Sending and receiving are independent: split the
/// client with [`into_split`](ChatClient::into_split) to do both at once on
/// two threads.
///
/// ```no_run
/// use std::time::Duration;
/// use socketserver::client::chat::ChatClient;
///
/// let mut chat = ChatClient::connect(&"tcp://127.0.0.1:9005".parse()?, None)?;
/// chat.send("/nick alice")?;
/// chat.send("hello, room")?;
/// while let Some(line) = chat.receive()? {
///     println!("{line}");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ChatClient {
    sender: ChatSender,
    receiver: ChatReceiver,
}

/// The sending half of a [`ChatClient`].
#[derive(Debug)]
pub struct ChatSender {
    connection: Connection,
    sent: Sent,
}

/// The receiving half of a [`ChatClient`].
#[derive(Debug)]
pub struct ChatReceiver {
    reader: BufReader<Connection>,
    sent: Sent,
}

impl ChatClient {
    /// Joins the room at a `tcp://` or `unix:` URL. `read_timeout` bounds
    /// each wait in [`receive`](ChatClient::receive) (`None`: wait for ever,
    /// as a listener does).
    pub fn connect(url: &SocketUrl, read_timeout: Option<Duration>) -> io::Result<Self> {
        let connection = Connection::connect(url, Some(Duration::from_secs(10)))?;
        connection.set_read_timeout(read_timeout)?;
        Self::on(connection)
    }

    /// Joins the room over a connection made elsewhere (TLS, say); its read
    /// timeout bounds each wait in [`receive`](ChatClient::receive).
    pub fn on(connection: Connection) -> io::Result<Self> {
        let sent = Sent::default();
        Ok(ChatClient {
            sender: ChatSender {
                connection: connection.try_clone()?,
                sent: sent.clone(),
            },
            receiver: ChatReceiver {
                reader: BufReader::new(connection),
                sent,
            },
        })
    }

    /// Sends a line to the room (see [`ChatSender::send`]).
    pub fn send(&mut self, line: &str) -> io::Result<()> {
        self.sender.send(line)
    }

    /// Waits for the next line from the room (see [`ChatReceiver::receive`]).
    pub fn receive(&mut self) -> io::Result<Option<String>> {
        self.receiver.receive()
    }

    /// The two halves, to send and receive on different threads.
    pub fn into_split(self) -> (ChatSender, ChatReceiver) {
        (self.sender, self.receiver)
    }
}

impl ChatSender {
    /// Sends one line (or a command such as `/nick NAME`).
    pub fn send(&mut self, line: &str) -> io::Result<()> {
        if line.contains(['\n', '\r']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a message is one line",
            ));
        }
        {
            let mut sent = self.sent.lock();
            if sent.len() == REMEMBERED {
                sent.pop_front();
            }
            sent.push_back(line.to_string());
        }
        self.connection.write_all(format!("{line}\n").as_bytes())
    }

    /// Leaves the room: the server sees the end of input.
    pub fn leave(&self) -> io::Result<()> {
        self.connection.shutdown_write()
    }
}

impl ChatReceiver {
    /// The next line from the room, without its newline; `None` when the
    /// server closed the connection.
    ///
    /// The line is safe to print on a terminal: bytes that are not UTF-8,
    /// and every control character but TAB (escape sequences, carriage
    /// returns, bells), are replaced by U+FFFD. A line a chat room never
    /// sends is a [`WrongProtocol`] error: one that is neither `NAME: LINE`
    /// nor a `* NOTICE`, or one of this member's own lines sent back
    /// uppercased (an echo-upper server).
    pub fn receive(&mut self) -> io::Result<Option<String>> {
        let mut line = Vec::new();
        match read_line(&mut self.reader, &mut line, MAX_LINE)? {
            Line::Complete { .. } => {
                let line = printable(&line);
                if let Some(received) = self.not_from_a_room(&line) {
                    return Err(WrongProtocol::new(
                        "a chat server",
                        "the room's lines (NAME: LINE, * NOTICE)",
                        received,
                    )
                    .into_io());
                }
                Ok(Some(line))
            }
            Line::Eof => Ok(None),
            Line::TooLong => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a line from the room is too long",
            )),
        }
    }

    /// What `line` is, when a chat room would never send it.
    fn not_from_a_room(&self, line: &str) -> Option<String> {
        let sent = self.sent.lock();
        let echoed = sent.iter().any(|mine| {
            mine.bytes().any(|b| b.is_ascii_lowercase()) && *line == mine.to_ascii_uppercase()
        });
        if echoed {
            Some(format!("our own line back: {}", quote(line)))
        } else if !is_room_line(line) {
            Some(quote(line))
        } else {
            None
        }
    }
}

/// True for the lines a chat room sends: `NAME: LINE` (the room's names
/// hold no `:` but the port of an address), `* NOTICE`, `error: ...`.
fn is_room_line(line: &str) -> bool {
    line.starts_with("* ") || line.contains(": ")
}

/// `bytes` as text that cannot move a terminal: invalid UTF-8 and every
/// control character but TAB (U+0000 to U+001F, U+007F to U+009F) become
/// U+FFFD.
pub fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| {
            if c != '\t' && c.is_control() {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_printable_moves_a_terminal() {
        let hostile = "\x1b]0;owned\x07\x1b[2K\r* server says\u{9b}hi\tthere\u{7f}\0";
        let clean = printable(hostile.as_bytes());
        assert!(
            !clean.chars().any(|c| c != '\t' && c.is_control()),
            "{clean:?}"
        );
        assert!(clean.contains("\tthere"), "TAB is kept");
        assert_eq!(clean.matches('\u{fffd}').count(), 7, "{clean:?}");
        assert_eq!(printable(b"caf\xc3\xa9 \xff"), "café \u{fffd}");
    }

    #[test]
    fn room_lines_have_a_name_or_a_star() {
        assert!(is_room_line("127.0.0.1:50312: hi all"));
        assert!(is_room_line("[::1]:5000: hi"));
        assert!(is_room_line("alice: "));
        assert!(is_room_line("* alice left"));
        assert!(is_room_line("error: line too long"));
        assert!(!is_room_line("HI ALL"));
        assert!(!is_room_line("/NICK ALICE"));
        assert!(!is_room_line("*bold*"));
    }

    proptest::proptest! {
        #[test]
        fn printable_text_has_no_control_character(bytes: Vec<u8>) {
            let text = printable(&bytes);
            proptest::prop_assert!(!text.chars().any(|c| c != '\t' && c.is_control()));
        }
    }
}
