//! A blocking client of the [qa](crate::services::qa) service.

use std::io::{self, BufReader, Write};
use std::time::Duration;

use super::{quote, Connection, WrongProtocol};
use crate::protocol::line::{read_line, Line};
use crate::transport::url::SocketUrl;

/// The longest answer the client accepts, in bytes.
const MAX_ANSWER: usize = 1 << 20;

/// A conversation with a Q&A bot.
///
/// ```no_run
/// use std::time::Duration;
/// use socketserver::client::qa::QaClient;
///
/// let mut bot = QaClient::connect(&"tcp://127.0.0.1:9001".parse()?, Duration::from_secs(5))?;
/// println!("{}", bot.ask("你好")?); // 你好啊
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct QaClient {
    writer: Connection,
    reader: BufReader<Connection>,
}

impl QaClient {
    /// Connects to a `tcp://` or `unix:` URL; every answer is awaited for at
    /// most `timeout`.
    pub fn connect(url: &SocketUrl, timeout: Duration) -> io::Result<Self> {
        let connection = Connection::connect(url, Some(timeout))?;
        connection.set_read_timeout(Some(timeout))?;
        Self::on(connection)
    }

    /// Talks over a connection made elsewhere (TLS, say); answers are
    /// awaited as long as its read timeout says.
    pub fn on(connection: Connection) -> io::Result<Self> {
        Ok(QaClient {
            writer: connection.try_clone()?,
            reader: BufReader::new(connection),
        })
    }

    /// Sends one question (a line without line breaks) and returns the
    /// answer, without its newline.
    ///
    /// An answer that is the question itself, as sent or with its ASCII
    /// letters uppercased, is a [`WrongProtocol`] error: the server echoes
    /// (a bot whose table answers a question with that very question would
    /// be taken for one too).
    pub fn ask(&mut self, question: &str) -> io::Result<String> {
        if question.contains(['\n', '\r']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a question is one line",
            ));
        }
        self.writer.write_all(format!("{question}\n").as_bytes())?;
        let answer = self.answer()?;
        if is_echo(question, &answer) {
            return Err(WrongProtocol::new(
                "a qa server",
                "an answer",
                format!("the question back: {}", quote(&answer)),
            )
            .into_io());
        }
        Ok(answer)
    }

    /// Reads the next answer line.
    pub fn answer(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        match read_line(&mut self.reader, &mut line, MAX_ANSWER)? {
            Line::Complete { .. } => String::from_utf8(line)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the answer is not UTF-8")),
            Line::TooLong => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the answer is too long",
            )),
            Line::Eof => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )),
        }
    }
}

/// True when `answer` is `question` sent back, as it was or with its ASCII
/// letters uppercased: what an echo server does.
fn is_echo(question: &str, answer: &str) -> bool {
    answer == question || answer == question.to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_are_recognised_and_answers_are_not() {
        assert!(is_echo("hello", "HELLO"));
        assert!(is_echo("你好", "你好"));
        assert!(is_echo("", ""));
        assert!(!is_echo("你好", "你好啊"));
        assert!(!is_echo("hello", "人家还小，不知道。"));
        assert!(!is_echo("hello", "Hello"));
    }
}
