//! dict: the course's UDP dictionary, also over streams.
//!
//! # Protocol
//!
//! A request is one word: a datagram (UDP, Unix datagram), or a line ending in
//! `\n` or `\r\n` (TCP, Unix stream). The word is trimmed of white space and
//! matched without regard to case. The answer is `WORD: DEFINITION`, or
//! `WORD: not found`, where WORD is the query as received, trimmed, its case
//! kept. A datagram answer is one datagram without a newline; a stream answer
//! is one line ending in `\n`.
//!
//! ```text
//! > Hello
//! < Hello: a greeting; what a client says first
//! > xyzzy
//! < xyzzy: not found
//! ```
//!
//! Bytes that are not UTF-8 are replaced by U+FFFD. A request longer than the
//! limit (8 KiB by default) is answered `error: line too long`; on a stream
//! the connection is then closed.
//!
//! # Word files
//!
//! [`Dictionary::parse`] reads one `word<TAB>definition` per line; blank lines
//! and lines starting with `#` are ignored, word and definition are trimmed,
//! and a later duplicate replaces an earlier one. A line without a TAB is an
//! error that names its line number.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;

use crate::request::{
    Conn, DatagramRequest, Framing, FramingError, MessageHandler, Next, RequestHandler,
};
use crate::services::line_reply::{refuse_long_line, write_line};

/// The answer to a request over the limit.
pub const LINE_TOO_LONG: &str = "error: line too long";

/// The default longest request, in bytes.
pub const DEFAULT_MAX_LINE: usize = 8 * 1024;

/// The built-in dictionary: words of the trade, defined here.
const BUILTIN: &[(&str, &str)] = &[
    ("hello", "a greeting; what a client says first"),
    (
        "world",
        "everything out there, beyond the loopback interface",
    ),
    (
        "socket",
        "an endpoint of communication: an address, a port, and a file descriptor",
    ),
    (
        "server",
        "a program that waits for requests and answers them",
    ),
    (
        "client",
        "a program that connects to a server and asks it for something",
    ),
    (
        "thread",
        "a path of execution that shares memory with the others of its process",
    ),
    (
        "protocol",
        "the rules two programs agree on before they talk",
    ),
    (
        "packet",
        "a unit of data that travels the network on its own",
    ),
    ("port", "a 16-bit number that tells a host's services apart"),
    (
        "datagram",
        "a self-contained message, delivered whole or not at all (UDP)",
    ),
    (
        "stream",
        "an ordered flow of bytes without message boundaries (TCP)",
    ),
    (
        "frame",
        "a message with its length in front, so that a stream can carry messages",
    ),
    (
        "handshake",
        "the exchange that opens a connection or a session",
    ),
    ("timeout", "how long to wait before giving up"),
    ("latency", "the time a message takes to arrive"),
    ("bandwidth", "how many bytes a link carries per second"),
];

/// Words and their definitions, looked up without regard to case.
///
/// ```
/// use socketserver::services::Dictionary;
///
/// let dict = Dictionary::builtin();
/// assert!(dict.answer("  Socket\n").starts_with("Socket: an endpoint"));
/// assert_eq!(dict.answer("xyzzy"), "xyzzy: not found");
///
/// let mine = Dictionary::parse("# my words\nRust\ta language\n\nrust\ta fungus\n").unwrap();
/// assert_eq!(mine.answer("RUST"), "RUST: a fungus"); // the later duplicate won
/// assert!(Dictionary::parse("ok\tfine\nbroken line\n").unwrap_err().to_string().contains("line 2"));
/// ```
#[derive(Debug, Clone)]
pub struct Dictionary {
    /// Shared: a clone (one per listener) costs no copy.
    words: std::sync::Arc<HashMap<String, String>>,
    max_line: usize,
}

/// Why a word file could not be loaded.
#[derive(Debug)]
pub struct WordsError(String);

impl fmt::Display for WordsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WordsError {}

impl Default for Dictionary {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Dictionary {
    /// The built-in dictionary.
    pub fn builtin() -> Self {
        let mut dict = Self::empty();
        for (word, definition) in BUILTIN {
            dict.insert(word, definition);
        }
        dict
    }

    /// A dictionary without words.
    pub fn empty() -> Self {
        Dictionary {
            words: std::sync::Arc::default(),
            max_line: DEFAULT_MAX_LINE,
        }
    }

    /// Parses a word file: one `word<TAB>definition` per line (see the module
    /// documentation).
    pub fn parse(text: &str) -> Result<Self, WordsError> {
        let mut dict = Self::empty();
        for (index, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let number = index + 1;
            let (word, definition) = line.split_once('\t').ok_or_else(|| {
                WordsError(format!(
                    "line {number}: no TAB between the word and its definition"
                ))
            })?;
            if word.trim().is_empty() {
                return Err(WordsError(format!("line {number}: the word is empty")));
            }
            dict.insert(word.trim(), definition.trim());
        }
        Ok(dict)
    }

    /// Reads a word file (see [`parse`](Dictionary::parse)).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, WordsError> {
        let text = std::fs::read_to_string(path).map_err(|e| WordsError(e.to_string()))?;
        Self::parse(&text)
    }

    /// Adds a word, or replaces its definition.
    pub fn insert(&mut self, word: &str, definition: &str) {
        std::sync::Arc::make_mut(&mut self.words).insert(fold(word), definition.to_string());
    }

    /// The number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when there are no words.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Sets the longest request in bytes (default 8 KiB).
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes;
        self
    }

    /// The definition of a word (trimmed, any case), if known.
    pub fn lookup(&self, word: &str) -> Option<&str> {
        self.words.get(&fold(word.trim())).map(String::as_str)
    }

    /// The answer to a query, without a newline: `WORD: DEFINITION` or
    /// `WORD: not found`, WORD being the query trimmed.
    pub fn answer(&self, query: &str) -> String {
        let word = query.trim();
        match self.lookup(word) {
            Some(definition) => format!("{word}: {definition}"),
            None => format!("{word}: not found"),
        }
    }

    fn answer_bytes(&self, query: &[u8]) -> String {
        self.answer(&String::from_utf8_lossy(query))
    }
}

/// The form in which words are stored and looked up.
fn fold(word: &str) -> String {
    word.to_lowercase()
}

impl RequestHandler<DatagramRequest> for Dictionary {
    fn handle(&self, req: &mut DatagramRequest) -> io::Result<()> {
        if req.packet().len() > self.max_line {
            log::info!(
                "{}: a request of {} bytes, over the limit",
                req.peer_addr(),
                req.packet().len()
            );
            return req.reply(LINE_TOO_LONG.as_bytes());
        }
        let answer = self.answer_bytes(req.packet());
        req.reply(answer.as_bytes())
    }
}

impl MessageHandler for Dictionary {
    type Session = ();

    fn framing(&self, _: &()) -> Framing {
        Framing::Line { max: self.max_line }
    }

    fn open(&self, _: &mut Conn<'_>) -> io::Result<()> {
        Ok(())
    }

    fn on_message(&self, _: &mut (), line: &[u8], conn: &mut Conn<'_>) -> io::Result<Next> {
        write_line(conn, &self.answer_bytes(line))?;
        Ok(Next::Continue)
    }

    fn on_bad_message(
        &self,
        _: &mut (),
        error: FramingError,
        conn: &mut Conn<'_>,
    ) -> io::Result<()> {
        refuse_long_line(conn, error, "a line", LINE_TOO_LONG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_words_are_there() {
        let dict = Dictionary::builtin();
        for word in [
            "hello", "world", "socket", "server", "client", "thread", "protocol", "packet",
        ] {
            assert!(dict.lookup(word).is_some(), "{word}");
            assert!(dict.lookup(&word.to_uppercase()).is_some(), "{word}");
        }
        assert_eq!(
            dict.answer(" \tPacket \r\n"),
            format!("Packet: {}", dict.lookup("packet").unwrap())
        );
        assert_eq!(dict.answer(""), ": not found");
    }

    #[test]
    fn word_files() {
        let dict = Dictionary::parse(
            "\n# comment\n  Alpha \t first letter \r\nbeta\tsecond\nALPHA\tagain\n",
        )
        .unwrap();
        assert_eq!(dict.len(), 2);
        assert_eq!(dict.lookup("alpha"), Some("again"));
        assert_eq!(dict.lookup("Beta"), Some("second"));
        let e = Dictionary::parse("a\tb\n\n# c\nno tab here\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 4:"), "{e}");
        assert!(Dictionary::parse("\tnothing\n")
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        assert!(Dictionary::parse("").unwrap().is_empty());
    }

    #[test]
    fn unicode_case_folding() {
        let dict = Dictionary::parse("Straße\tstreet\nÉcole\tschool\n").unwrap();
        assert_eq!(dict.answer("STRASSE"), "STRASSE: not found"); // no full folding
        assert_eq!(dict.answer("école"), "école: school");
        assert_eq!(dict.answer("straße"), "straße: street");
    }
}
