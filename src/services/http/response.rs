//! Answers: the status line and fields, a body of bytes or a file streamed
//! in pieces, and the escaping that HTML pages and paths need.

use std::fs::File;
use std::io::{self, Read, Write};
use std::time::SystemTime;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use super::head::Persistence;
use crate::request::Conn;

const SERVER: &str = concat!("socketserver/", env!("CARGO_PKG_VERSION"));

/// How much of a file is read and sent at a time.
const FILE_PIECE: usize = 64 * 1024;

/// What is percent-encoded in one path segment: everything but the
/// unreserved characters of RFC 3986, so that a segment can never be read
/// as a scheme, a query, a fragment or another segment.
pub(super) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An answer, before it is sent.
#[derive(Debug)]
pub(super) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Body,
    pub last_modified: Option<SystemTime>,
    pub location: Option<String>,
}

/// What follows the head.
#[derive(Debug)]
pub(super) enum Body {
    /// Bytes built into the program (the built-in page and picture).
    Static(&'static [u8]),
    /// Bytes made for this answer (an error page, a listing).
    Bytes(Vec<u8>),
    /// A file of this length, read and sent in pieces.
    File(File, u64),
}

impl Response {
    pub fn bytes(status: u16, content_type: &'static str, body: Body) -> Self {
        Response {
            status,
            content_type,
            body,
            last_modified: None,
            location: None,
        }
    }

    /// An HTML page saying the status.
    pub fn error(status: u16) -> Self {
        let text = format!("{status} {}", reason(status));
        let page = format!("<!DOCTYPE html>\n<title>{text}</title>\n<h1>{text}</h1>\n");
        Self::bytes(status, HTML, Body::Bytes(page.into_bytes()))
    }

    /// A 301 to `location`, which the caller built as a path that starts
    /// with a single `/`; the page shows it escaped.
    pub fn redirect(location: String) -> Self {
        let shown = escape_html(location.as_bytes());
        let page = format!(
            "<!DOCTYPE html>\n<title>301 Moved Permanently</title>\n<p>Moved to <a href=\"{shown}\">{shown}</a>.</p>\n"
        );
        let mut response = Self::bytes(301, HTML, Body::Bytes(page.into_bytes()));
        response.location = Some(location);
        response
    }

    /// The body's length, as `Content-Length` says it.
    pub fn length(&self) -> u64 {
        match &self.body {
            Body::Static(bytes) => bytes.len() as u64,
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File(_, length) => *length,
        }
    }

    /// Writes the status line, the fields and (unless `head_only`) the body
    /// to `conn`. A file is read into the connection's output a piece at a
    /// time and each piece sent before the next is read, so a file of any
    /// size costs one piece of memory; that takes a blocking call.
    pub fn send(
        &self,
        conn: &mut Conn<'_>,
        head_only: bool,
        persistence: Persistence,
    ) -> io::Result<()> {
        let out = conn.output();
        write!(
            out,
            "HTTP/1.1 {} {}\r\nDate: {}\r\nServer: {SERVER}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            httpdate::fmt_http_date(SystemTime::now()),
            self.content_type,
            self.length()
        )?;
        if let Some(modified) = self.last_modified {
            write!(
                out,
                "Last-Modified: {}\r\n",
                httpdate::fmt_http_date(modified)
            )?;
        }
        if let Some(location) = &self.location {
            write!(out, "Location: {location}\r\n")?;
        }
        if self.status == 405 {
            out.extend_from_slice(b"Allow: GET, HEAD\r\n");
        }
        match persistence {
            Persistence::KeepAlive => {}
            Persistence::KeepAliveAnnounced => out.extend_from_slice(b"Connection: keep-alive\r\n"),
            Persistence::Close => out.extend_from_slice(b"Connection: close\r\n"),
        }
        out.extend_from_slice(b"\r\n");
        if head_only {
            return Ok(());
        }
        match &self.body {
            Body::Static(bytes) => out.extend_from_slice(bytes),
            Body::Bytes(bytes) => out.extend_from_slice(bytes),
            Body::File(file, length) => send_file(conn, file, *length)?,
        }
        Ok(())
    }
}

/// Streams `length` bytes of `file` through the connection's output.
fn send_file(conn: &mut Conn<'_>, mut file: &File, length: u64) -> io::Result<()> {
    if !conn.is_blocking() {
        // Reading a file in full before sending it would cost its size:
        // StaticHttp::blocking makes every answer from a root blocking.
        return Err(io::Error::other(
            "a file is answered only in a blocking call",
        ));
    }
    let mut left = length;
    while left > 0 {
        let want = FILE_PIECE.min(usize::try_from(left).unwrap_or(usize::MAX));
        let out = conn.output();
        let at = out.len();
        out.resize(at + want, 0);
        let read = loop {
            match file.read(&mut out[at..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                read => break read,
            }
        };
        out.truncate(at + *read.as_ref().unwrap_or(&0));
        match read? {
            0 => {
                // The file shrank while being sent: the promised length
                // cannot be kept, so the connection must end.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while being sent",
                ));
            }
            n => left -= n as u64,
        }
        conn.flush_now()?;
    }
    Ok(())
}

/// The media type of HTML pages.
pub(super) const HTML: &str = "text/html; charset=utf-8";

/// The reason phrase of a status code.
pub(super) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    }
}

/// `text` (lossily decoded if it is not UTF-8) with the characters that
/// mean something in HTML, in text or in a quoted attribute, escaped.
pub(super) fn escape_html(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping() {
        assert_eq!(
            escape_html(br#"<b>&"x"'.txt"#),
            "&lt;b&gt;&amp;&quot;x&quot;&#39;.txt"
        );
        assert_eq!(escape_html(b"caf\xc3\xa9 \xff"), "café \u{fffd}");
    }

    #[test]
    fn a_redirect_page_escapes_its_location() {
        let response = Response::redirect("/sub/?a=\"><script>".to_string());
        let Body::Bytes(page) = &response.body else {
            panic!("a page")
        };
        let page = String::from_utf8(page.clone()).unwrap();
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("/sub/?a=&quot;&gt;&lt;script&gt;"), "{page}");
        assert_eq!(
            response.location.as_deref(),
            Some("/sub/?a=\"><script>"),
            "the field keeps the target's bytes (graphic ASCII)"
        );
    }
}
