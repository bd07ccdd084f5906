//! A blocking client of the [chat](crate::services::chat) room.

use std::io::{self, BufReader, Write};
use std::time::Duration;

use super::Connection;
use crate::protocol::line::{read_line, Line};
use crate::SocketUrl;

/// The longest line the client accepts from the room, in bytes.
const MAX_LINE: usize = 1 << 20;

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
pub struct ChatSender(Connection);

/// The receiving half of a [`ChatClient`].
#[derive(Debug)]
pub struct ChatReceiver(BufReader<Connection>);

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
        Ok(ChatClient {
            sender: ChatSender(connection.try_clone()?),
            receiver: ChatReceiver(BufReader::new(connection)),
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
        self.0.write_all(format!("{line}\n").as_bytes())
    }

    /// Leaves the room: the server sees the end of input.
    pub fn leave(&self) -> io::Result<()> {
        self.0.shutdown_write()
    }
}

impl ChatReceiver {
    /// The next line from the room, without its newline; `None` when the
    /// server closed the connection. Bytes that are not UTF-8 are replaced.
    pub fn receive(&mut self) -> io::Result<Option<String>> {
        let mut line = Vec::new();
        match read_line(&mut self.0, &mut line, MAX_LINE)? {
            Line::Complete { .. } => Ok(Some(String::from_utf8_lossy(&line).into_owned())),
            Line::Eof => Ok(None),
            Line::TooLong => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a line from the room is too long",
            )),
        }
    }
}
