//! A blocking client of the [dict](crate::services::dict) service.

use std::io::{self, BufReader, Write};
use std::time::Duration;

use super::{quote, Connection, DatagramClient, WrongProtocol};
use crate::protocol::line::{read_line, Line};
use crate::transport::url::SocketUrl;

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
    ///
    /// The server's refusal (`error: line too long`) is an error of kind
    /// [`InvalidInput`](io::ErrorKind::InvalidInput); an answer that is
    /// neither (an echo, another service's answer) is a [`WrongProtocol`]
    /// error.
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
        check_answer(word, String::from_utf8_lossy(&answer).into_owned())
    }
}

/// The answer to `word` if it is one the dictionary's protocol allows:
/// `WORD: ...` with WORD the word as sent, trimmed.
fn check_answer(word: &str, answer: String) -> io::Result<String> {
    let word = word.trim();
    let is_answer = answer
        .strip_prefix(word)
        .is_some_and(|rest| rest.starts_with(": "));
    if is_answer {
        return Ok(answer);
    }
    if answer.starts_with("error: ") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the server refused {}: {answer}", quote(word)),
        ));
    }
    Err(WrongProtocol::new(
        "a dict server",
        quote(&format!("{word}: DEFINITION")),
        quote(&answer),
    )
    .into_io())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_must_name_the_word() {
        let ok = |word: &str, answer: &str| check_answer(word, answer.to_string());
        assert_eq!(
            ok("hello", "hello: a greeting").unwrap(),
            "hello: a greeting"
        );
        assert_eq!(
            ok("  Hello\t", "Hello: not found").unwrap(),
            "Hello: not found"
        );
        assert_eq!(ok("", ": not found").unwrap(), ": not found");
        let echo = ok("hello", "HELLO").unwrap_err();
        let wrong = WrongProtocol::from_io(&echo).expect("an echo is another protocol");
        assert_eq!(wrong.received, "\"HELLO\"");
        assert!(echo.to_string().contains("is it a dict server?"), "{echo}");
        // Whatever the word, its echo is shorter than any answer to it.
        assert!(ok("a: b", "A: B").is_err());
        assert!(ok("hello", "hellO: x").is_err());
        let refused = ok(&"x".repeat(9000), "error: line too long").unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
        assert!(WrongProtocol::from_io(&refused).is_none());
    }

    proptest::proptest! {
        #[test]
        fn an_echo_is_never_an_answer_and_an_answer_always_is(word in "\\PC{0,20}", definition in "\\PC{0,20}") {
            let trimmed = word.trim();
            // What the server sends back for the word.
            let answer = format!("{trimmed}: {definition}");
            proptest::prop_assert_eq!(check_answer(&word, answer.clone()).unwrap(), answer);
            // What an echo server sends back: the word, as sent or uppercased.
            for echo in [word.clone(), word.to_ascii_uppercase(), trimmed.to_string()] {
                proptest::prop_assert!(check_answer(&word, echo).is_err());
            }
        }
    }
}
