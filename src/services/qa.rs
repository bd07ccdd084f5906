//! qa: the course's Q&A bot.
//!
//! # Protocol
//!
//! The client sends UTF-8 lines ending in `\n` (`\r\n` is accepted); every
//! line gets exactly one answer line, ending in `\n`, in the order the
//! questions came (a client may send many questions before it reads). The
//! answer is that of the first keyword, in table order, that the question
//! contains, or [`DEFAULT_ANSWER`]. The built-in table ([`BUILTIN`]):
//!
//! | the question contains | answer |
//! |---|---|
//! | `你好` | `你好啊` |
//! | `叫什么` | `我叫小美` |
//! | `几岁` | `我两岁啦` |
//! | `男生女生` | `我是机器人` |
//! | `睡了` | `吸引才是最重要的` |
//!
//! An empty line gets the default answer. A line that is not UTF-8 is
//! answered `error: invalid UTF-8` and the conversation goes on. A line longer
//! than the limit (8 KiB by default) is answered `error: line too long` as soon
//! as that many bytes have arrived without a newline, and the connection is
//! closed; the server never buffers more than the limit.
//!
//! ```text
//! > 你好
//! < 你好啊
//! > 你叫什么名字？
//! < 我叫小美
//! > what?
//! < 人家还小，不知道。
//! ```

use std::fmt;
use std::io;
use std::path::Path;

use crate::request::{Conn, Framing, FramingError, MessageHandler, Next};
use crate::services::line_reply::{refuse_long_line, write_line};

/// The built-in table: (keyword, answer), in matching order.
pub const BUILTIN: [(&str, &str); 5] = [
    ("你好", "你好啊"),
    ("叫什么", "我叫小美"),
    ("几岁", "我两岁啦"),
    ("男生女生", "我是机器人"),
    ("睡了", "吸引才是最重要的"),
];

/// The answer to a question that contains no keyword.
pub const DEFAULT_ANSWER: &str = "人家还小，不知道。";

/// The answer to a line that is not UTF-8.
pub const INVALID_UTF8: &str = "error: invalid UTF-8";

/// The answer to a line over the limit, after which the connection closes.
pub const LINE_TOO_LONG: &str = "error: line too long";

/// The default longest question, in bytes (its terminator not counted).
pub const DEFAULT_MAX_LINE: usize = 8 * 1024;

/// The Q&A bot: a handler for stream servers (TCP, Unix).
///
/// ```
/// use socketserver::services::QaBot;
///
/// let bot = QaBot::new();
/// assert_eq!(bot.answer("你好！"), "你好啊");
/// assert_eq!(bot.answer("你几岁了"), "我两岁啦");
/// assert_eq!(bot.answer("hello"), "人家还小，不知道。");
///
/// let custom = QaBot::from_json(r#"{"weather": "sunny", "rain": "no"}"#).unwrap();
/// assert_eq!(custom.answer("rain or weather?"), "sunny"); // table order wins
/// assert_eq!(custom.answer("你好"), "人家还小，不知道。"); // the table was replaced
/// ```
#[derive(Debug, Clone)]
pub struct QaBot {
    /// Shared: a clone of the bot (one per listener) costs no copy.
    table: std::sync::Arc<[(String, String)]>,
    max_line: usize,
}

/// Why an answers table could not be loaded.
#[derive(Debug)]
pub struct AnswersError(String);

impl fmt::Display for AnswersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AnswersError {}

impl Default for QaBot {
    fn default() -> Self {
        Self::new()
    }
}

impl QaBot {
    /// The bot with the built-in table and an 8 KiB line limit.
    pub fn new() -> Self {
        Self::with_table(
            BUILTIN
                .iter()
                .map(|&(k, a)| (k.to_string(), a.to_string()))
                .collect(),
        )
    }

    /// A bot with its own table of (keyword, answer) pairs, tried in order;
    /// the default answer stays. Answers must not contain line breaks (see
    /// [`from_json`](QaBot::from_json) for a checked way in).
    pub fn with_table(table: Vec<(String, String)>) -> Self {
        QaBot {
            table: table.into(),
            max_line: DEFAULT_MAX_LINE,
        }
    }

    /// A bot whose table is a JSON object of keyword → answer, in the
    /// object's order. Every answer must be a string without line breaks.
    pub fn from_json(text: &str) -> Result<Self, AnswersError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| AnswersError(format!("not valid JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| AnswersError("not a JSON object of keyword to answer".into()))?;
        let mut table = Vec::with_capacity(object.len());
        for (keyword, answer) in object {
            let answer = answer.as_str().ok_or_else(|| {
                AnswersError(format!("the answer to {keyword:?} is not a string"))
            })?;
            if answer.contains(['\n', '\r']) {
                return Err(AnswersError(format!(
                    "the answer to {keyword:?} contains a line break"
                )));
            }
            table.push((keyword.clone(), answer.to_string()));
        }
        Ok(Self::with_table(table))
    }

    /// Reads a table from a JSON file (see [`from_json`](QaBot::from_json)).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, AnswersError> {
        let text = std::fs::read_to_string(path).map_err(|e| AnswersError(e.to_string()))?;
        Self::from_json(&text)
    }

    /// Sets the longest question in bytes, its terminator not counted
    /// (default 8 KiB).
    pub fn max_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes;
        self
    }

    /// The table, in matching order.
    pub fn table(&self) -> &[(String, String)] {
        &self.table
    }

    /// The answer to one question: the first keyword it contains, or the
    /// default answer.
    pub fn answer(&self, question: &str) -> &str {
        self.table
            .iter()
            .find(|(keyword, _)| question.contains(keyword.as_str()))
            .map_or(DEFAULT_ANSWER, |(_, answer)| answer.as_str())
    }
}

impl MessageHandler for QaBot {
    type Session = ();

    fn framing(&self, _: &()) -> Framing {
        Framing::Line { max: self.max_line }
    }

    fn open(&self, _: &mut Conn<'_>) -> io::Result<()> {
        Ok(())
    }

    fn on_message(&self, _: &mut (), line: &[u8], conn: &mut Conn<'_>) -> io::Result<Next> {
        let answer = match std::str::from_utf8(line) {
            Ok(question) => self.answer(question),
            Err(_) => INVALID_UTF8,
        };
        write_line(conn, answer)?;
        Ok(Next::Continue)
    }

    fn on_bad_message(
        &self,
        _: &mut (),
        error: FramingError,
        conn: &mut Conn<'_>,
    ) -> io::Result<()> {
        refuse_long_line(conn, error, "a question", LINE_TOO_LONG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_in_order() {
        let bot = QaBot::new();
        assert_eq!(bot.answer("你好"), "你好啊");
        assert_eq!(bot.answer("你叫什么？"), "我叫小美");
        assert_eq!(bot.answer("你几岁"), "我两岁啦");
        assert_eq!(bot.answer("你是男生女生"), "我是机器人");
        assert_eq!(bot.answer("睡了吗"), "吸引才是最重要的");
        // Two keywords: the first in table order wins, not the first in the text.
        assert_eq!(bot.answer("几岁了？你好"), "你好啊");
        assert_eq!(bot.answer(""), DEFAULT_ANSWER);
    }

    #[test]
    fn json_tables_are_checked() {
        assert!(QaBot::from_json("[1, 2]")
            .unwrap_err()
            .to_string()
            .contains("object"));
        assert!(QaBot::from_json("{")
            .unwrap_err()
            .to_string()
            .contains("JSON"));
        let e = QaBot::from_json(r#"{"a": 1}"#).unwrap_err().to_string();
        assert!(e.contains("\"a\"") && e.contains("not a string"), "{e}");
        assert!(QaBot::from_json(r#"{"a": "x\ny"}"#).is_err());
        let bot = QaBot::from_json(r#"{"z": "last", "a": "first"}"#).unwrap();
        assert_eq!(bot.table()[0].0, "z", "the file's order is kept");
    }
}
