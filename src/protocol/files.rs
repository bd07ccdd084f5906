//! The messages of the files service: JSON-header requests ([`Request`])
//! and answers ([`Answer`]), shared by the server and its client.
//!
//! | request | body | answer | body |
//! |---|---|---|---|
//! | `{"op":"put","file_name":"a.jpg","file_size":N,"sha256":"<hex, optional>"}` | N bytes | `{"status":"ok","file_name":"a.jpg","size":N,"sha256":"<hex>"}` ([`Stored`]) | none |
//! | `{"op":"get","file_name":"a.jpg"}` | none | `{"status":"ok","file_name":"a.jpg","file_size":N,"sha256":"<hex>"}` ([`Fetched`]) | N bytes |
//! | `{"op":"list"}` | none | `{"status":"ok","files":[{"name":"a.jpg","size":N}]}` ([`Listing`]) | none |
//!
//! Any failure is answered `{"status":"error","error":"<why>"}`. `op`
//! defaults to `put`, so the course's client, which sends
//! `{"file_name":...,"file_size":...}`, is understood.
//!
//! A server decodes a request with [`Request::parse`], which names what is
//! wrong and whether the connection can go on (a put whose header is not
//! understood cannot: its body cannot be told from the next request):
//!
//! ```
//! use socketserver::protocol::files::{Answer, Request, Stored};
//!
//! let put = Request::parse(br#"{"file_name":"a.jpg","file_size":5}"#).unwrap();
//! assert_eq!(put, Request::Put { file_name: "a.jpg".into(), file_size: 5, sha256: None });
//! assert_eq!(
//!     serde_json::to_string(&put).unwrap(),
//!     r#"{"op":"put","file_name":"a.jpg","file_size":5}"#
//! );
//! let bad = Request::parse(br#"{"file_name":"../a","file_size":5}"#).unwrap_err();
//! assert!(bad.closes && bad.reason.contains("path separator"));
//!
//! let answer = Answer::Ok(Stored { file_name: "a.jpg".into(), size: 5, sha256: "ab".into() });
//! assert_eq!(
//!     serde_json::to_string(&answer).unwrap(),
//!     r#"{"status":"ok","file_name":"a.jpg","size":5,"sha256":"ab"}"#
//! );
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::digest::is_sha256_hex;
use super::framing::parse_header;

/// The name prefix of the temporary files of uploads in progress.
pub const TEMP_PREFIX: &str = ".socketserver-part-";

/// The longest file name, in bytes of UTF-8: Linux file systems' `NAME_MAX`.
pub const MAX_NAME_BYTES: usize = 255;

/// Checks a file name from a request: a plain name in the directory, not a
/// path and not one of the temporary files. The error says why.
///
/// ```
/// use socketserver::protocol::files::check_file_name;
/// assert!(check_file_name("photo.jpg").is_ok());
/// assert!(check_file_name("../etc/passwd").is_err());
/// assert!(check_file_name("a\\b").is_err());
/// ```
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty file name".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!("refused file name {name:?}"));
    }
    if name.contains(['/', '\\']) {
        return Err(format!("refused file name {name:?}: a path separator"));
    }
    if name.chars().any(|c| c.is_ascii_control()) {
        return Err(format!("refused file name {name:?}: a control character"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "refused file name of {} bytes: the limit is {MAX_NAME_BYTES} bytes",
            name.len()
        ));
    }
    if name.starts_with(TEMP_PREFIX) {
        return Err(format!(
            "refused file name {name:?}: reserved for uploads in progress"
        ));
    }
    Ok(())
}

/// A request, as a client sends it and a server understands it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Store `file_size` bytes (the body) as `file_name`.
    Put {
        /// The name to store the file under.
        file_name: String,
        /// The size of the body.
        file_size: u64,
        /// The body's SHA-256 in hex, checked by the server when given
        /// (lowercase once parsed).
        #[serde(skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
    /// Send the file `file_name`.
    Get {
        /// The name of the file.
        file_name: String,
    },
    /// List the files.
    List,
}

/// Why a request header was not understood: the `error` of the answer, and
/// whether the connection must close after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// What is wrong, as the answer says it.
    pub reason: String,
    /// True when the connection cannot go on: a put (or a header that may
    /// be one) whose body cannot be skipped without understanding it.
    pub closes: bool,
}

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for BadRequest {}

impl BadRequest {
    fn closing(reason: String) -> Self {
        BadRequest {
            reason,
            closes: true,
        }
    }

    fn staying(reason: String) -> Self {
        BadRequest {
            reason,
            closes: false,
        }
    }
}

impl Request {
    /// Decodes a request header's frame payload: UTF-8 JSON, an object, an
    /// `op` (default `put`) with its fields, file names checked with
    /// [`check_file_name`]. The checks run in a fixed order (the header,
    /// the op, the name, the size, the digest), so the reason of a header
    /// with several faults is always the same.
    pub fn parse(payload: &[u8]) -> Result<Request, BadRequest> {
        let header =
            parse_header(payload).map_err(|error| BadRequest::closing(error.to_string()))?;
        Request::from_header(&header)
    }

    /// Decodes a header object; see [`parse`](Request::parse).
    pub fn from_header(header: &Map<String, Value>) -> Result<Request, BadRequest> {
        let op = match header.get("op") {
            None | Some(Value::Null) => "put",
            Some(Value::String(op)) => op.as_str(),
            Some(other) => {
                return Err(BadRequest::staying(format!(
                    "op must be a string, not {other}"
                )))
            }
        };
        let name = || match header.get("file_name") {
            Some(Value::String(name)) => check_file_name(name).map(|()| name.clone()),
            Some(_) => Err("file_name must be a string".to_string()),
            None => Err("missing file_name".to_string()),
        };
        match op {
            "put" => {
                // Until the header is understood the body cannot be skipped:
                // every refusal here closes the connection.
                let file_name = name().map_err(BadRequest::closing)?;
                let file_size = match header.get("file_size") {
                    Some(size) => size.as_u64().ok_or_else(|| {
                        BadRequest::closing(format!(
                            "file_size must be a non-negative integer, not {size}"
                        ))
                    })?,
                    None => return Err(BadRequest::closing("missing file_size".to_string())),
                };
                let sha256 = match header.get("sha256") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(hex)) if is_sha256_hex(hex) => {
                        Some(hex.to_ascii_lowercase())
                    }
                    Some(other) => {
                        return Err(BadRequest::closing(format!(
                            "sha256 must be 64 hex digits, not {other}"
                        )))
                    }
                };
                Ok(Request::Put {
                    file_name,
                    file_size,
                    sha256,
                })
            }
            "get" => Ok(Request::Get {
                file_name: name().map_err(BadRequest::staying)?,
            }),
            "list" => Ok(Request::List),
            other => Err(BadRequest::staying(format!("unknown op: {other}"))),
        }
    }
}

/// An answer's header: `{"status":"ok", ...T's fields}` or
/// `{"status":"error","error":"<why>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Answer<T> {
    /// The request was served.
    Ok(T),
    /// It was refused.
    Error(Refusal),
}

/// The body of an `error` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Why the request was refused.
    pub error: String,
}

impl<T> Answer<T> {
    /// A refusal for `why`.
    pub fn refused(why: impl Into<String>) -> Self {
        Answer::Error(Refusal { error: why.into() })
    }
}

/// The answer to a put: what was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The name it was stored under.
    pub file_name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, in lowercase hex.
    pub sha256: String,
}

/// The answer to a get, before the file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    /// The file's name.
    pub file_name: String,
    /// How many bytes follow.
    pub file_size: u64,
    /// Their SHA-256, in lowercase hex.
    pub sha256: String,
}

/// The answer to a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The files, sorted by name.
    pub files: Vec<Entry>,
}

/// A file in a listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entry {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let longest = "é".repeat(MAX_NAME_BYTES / 2) + "x";
        assert_eq!(longest.len(), MAX_NAME_BYTES);
        for good in [
            "a.jpg",
            "a b",
            ".hidden",
            "é",
            "...",
            "a..b",
            "a\u{2215}b",
            "\u{ff0f}etc\u{ff0f}passwd",
            "\u{2024}\u{2024}",
            longest.as_str(),
        ] {
            assert!(check_file_name(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/etc",
            "a\\b",
            "a\0b",
            "a\nb",
            "\u{1f}",
            "a\u{7f}",
            ".socketserver-part-0011",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        let too_long = longest + "y";
        assert_eq!(
            check_file_name(&too_long).unwrap_err(),
            "refused file name of 256 bytes: the limit is 255 bytes"
        );
    }

    #[test]
    fn requests_are_understood_or_refused_with_the_right_follow_up() {
        let parse = |text: &str| Request::parse(text.as_bytes());
        assert_eq!(
            parse(r#"{"file_name":"a","file_size":3}"#),
            Ok(Request::Put {
                file_name: "a".into(),
                file_size: 3,
                sha256: None
            })
        );
        let sha = "AB".repeat(32);
        assert_eq!(
            parse(&format!(
                r#"{{"op":"put","file_name":"a","file_size":0,"sha256":"{sha}"}}"#
            )),
            Ok(Request::Put {
                file_name: "a".into(),
                file_size: 0,
                sha256: Some("ab".repeat(32))
            })
        );
        assert_eq!(parse(r#"{"op":"list"}"#), Ok(Request::List));
        assert_eq!(
            parse(r#"{"op":"get","file_name":"x"}"#),
            Ok(Request::Get {
                file_name: "x".into()
            })
        );
        for (closing, why) in [
            (r#"{"file_name":"a"}"#, "missing file_size"),
            (
                r#"{"file_name":"a","file_size":"3"}"#,
                r#"file_size must be a non-negative integer, not "3""#,
            ),
            (
                r#"{"file_name":"a","file_size":-1}"#,
                "file_size must be a non-negative integer, not -1",
            ),
            (
                r#"{"file_name":"a","file_size":1.5}"#,
                "file_size must be a non-negative integer, not 1.5",
            ),
            (
                r#"{"file_name":"../a","file_size":1}"#,
                r#"refused file name "../a": a path separator"#,
            ),
            (
                r#"{"file_name":"../a"}"#,
                r#"refused file name "../a": a path separator"#,
            ),
            (r#"{"file_size":1}"#, "missing file_name"),
            (
                r#"{"file_name":7,"file_size":1}"#,
                "file_name must be a string",
            ),
            (
                r#"{"file_name":"a","file_size":1,"sha256":"xyz"}"#,
                r#"sha256 must be 64 hex digits, not "xyz""#,
            ),
            ("[1]", "the header is not a JSON object"),
            (
                "{",
                "the header is not JSON: EOF while parsing an object at line 1 column 1",
            ),
        ] {
            assert_eq!(
                parse(closing),
                Err(BadRequest::closing(why.to_string())),
                "{closing}"
            );
        }
        assert_eq!(
            Request::parse(b"{\"op\":\"\xff\"}"),
            Err(BadRequest::closing("the header is not UTF-8".to_string()))
        );
        for (staying, why) in [
            (
                r#"{"op":"get","file_name":".."}"#,
                r#"refused file name "..""#,
            ),
            (r#"{"op":"delete","file_name":"a"}"#, "unknown op: delete"),
            (r#"{"op":7}"#, "op must be a string, not 7"),
        ] {
            assert_eq!(
                parse(staying),
                Err(BadRequest::staying(why.to_string())),
                "{staying}"
            );
        }
    }

    #[test]
    fn requests_serialize_as_the_course_writes_them() {
        let cases = [
            (
                Request::Put {
                    file_name: "a.jpg".into(),
                    file_size: 5,
                    sha256: Some("ab".repeat(32)),
                },
                format!(
                    r#"{{"op":"put","file_name":"a.jpg","file_size":5,"sha256":"{}"}}"#,
                    "ab".repeat(32)
                ),
            ),
            (
                Request::Get {
                    file_name: "a.jpg".into(),
                },
                r#"{"op":"get","file_name":"a.jpg"}"#.to_string(),
            ),
            (Request::List, r#"{"op":"list"}"#.to_string()),
        ];
        for (request, text) in cases {
            assert_eq!(serde_json::to_string(&request).unwrap(), text);
            assert_eq!(Request::parse(text.as_bytes()), Ok(request));
        }
    }

    #[test]
    fn answers_round_trip_with_their_exact_bytes() {
        let fetched = Answer::Ok(Fetched {
            file_name: "a".into(),
            file_size: 3,
            sha256: "cd".into(),
        });
        let text = serde_json::to_string(&fetched).unwrap();
        assert_eq!(
            text,
            r#"{"status":"ok","file_name":"a","file_size":3,"sha256":"cd"}"#
        );
        assert_eq!(
            serde_json::from_str::<Answer<Fetched>>(&text).unwrap(),
            fetched
        );
        let listing = Answer::Ok(Listing {
            files: vec![Entry {
                name: "a".into(),
                size: 1,
            }],
        });
        assert_eq!(
            serde_json::to_string(&listing).unwrap(),
            r#"{"status":"ok","files":[{"name":"a","size":1}]}"#
        );
        let refused = Answer::<Listing>::refused("no such file: a");
        let text = serde_json::to_string(&refused).unwrap();
        assert_eq!(text, r#"{"status":"error","error":"no such file: a"}"#);
        assert_eq!(
            serde_json::from_str::<Answer<Stored>>(&text).unwrap(),
            Answer::refused("no such file: a")
        );
        assert!(serde_json::from_str::<Answer<Stored>>(r#"{"status":"ok"}"#).is_err());
        assert!(serde_json::from_str::<Answer<Stored>>(r#"{"status":"fine"}"#).is_err());
    }
}
