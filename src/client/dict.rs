//! A blocking client of the [dict](crate::services::dict) service.

use std::io::{self, BufReader, Write};
use std::time::Duration;

use super::{Connection, DatagramClient};
use crate::protocol::line::{read_line, Line};
use crate::SocketUrl;

/// The longest answer the client accepts over a stream, in bytes.
const MAX_ANSWER: usize = 1 << 20;

/// A dictionary client over a datagram (`udp://`, `unixgram:`) or a stream
/// (`tcp://`, `unix:`).
///
/// ```no_run
/// use std::time::Duration;
/// use socketserver::client::dict::DictClient;
///
/// let mut dict = DictClient::connect(&"udp://127.0.0.1:9002".parse()?, Duration::from_secs(2))?;
/// println!("{}", dict.lookup("socket")?); // socket: an endpoint of communication...
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub enum DictClient {
    /// One datagram per lookup.
    Datagram(DatagramClient),
    /// One line per lookup.
    Stream {
        /// The sending side.
        writer: Connection,
        /// The answers.
        reader: BufReader<Connection>,
    },
}

impl DictClient {
    /// Connects to any of the dictionary's URLs; each answer is awaited for
    /// at most `timeout`.
    pub fn connect(url: &SocketUrl, timeout: Duration) -> io::Result<Self> {
        if url.is_stream() {
            let connection = Connection::connect(url, Some(timeout))?;
            connection.set_read_timeout(Some(timeout))?;
            Self::on(connection)
        } else {
            Ok(DictClient::Datagram(DatagramClient::connect(url, timeout)?))
        }
    }

    /// Looks words up, one line each, over a stream connection made
    /// elsewhere (TLS, say); answers are awaited as long as its read
    /// timeout says.
    pub fn on(connection: Connection) -> io::Result<Self> {
        Ok(DictClient::Stream {
            writer: connection.try_clone()?,
            reader: BufReader::new(connection),
        })
    }

    /// Looks a word up; returns the answer line, `WORD: DEFINITION` or
    /// `WORD: not found`.
    pub fn lookup(&mut self, word: &str) -> io::Result<String> {
        let answer = match self {
            DictClient::Datagram(client) => client.request(word.as_bytes())?,
            DictClient::Stream { writer, reader } => {
                if word.contains(['\n', '\r']) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a word is one line",
                    ));
                }
                writer.write_all(format!("{word}\n").as_bytes())?;
                let mut line = Vec::new();
                match read_line(reader, &mut line, MAX_ANSWER)? {
                    Line::Complete { .. } => line,
                    Line::TooLong => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the answer is too long",
                        ))
                    }
                    Line::Eof => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server closed the connection",
                        ))
                    }
                }
            }
        };
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }
}
