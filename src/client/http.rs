//! A minimal blocking HTTP/1.1 client, enough to try the
//! [http](crate::services::http) service (or any HTTP server that sends a
//! `Content-Length` or closes the connection after the body).

use std::io::{self, BufReader, Read, Write};
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use super::Connection;
use crate::protocol::line::{read_line, Line};
use crate::transport::url::SocketUrl;

/// The largest response head the client accepts, in bytes.
const MAX_HEAD: usize = 64 * 1024;

/// What is escaped in a path: what may not appear in a request target. `%`
/// stays, so an already encoded path goes through unchanged.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'#')
    .add(b'{')
    .add(b'}');

/// An HTTP response: the status and fields, and the body to read (it
/// implements [`Read`]).
///
/// ```no_run
/// use std::io::Read;
/// use std::time::Duration;
/// use socketserver::client::http;
///
/// let mut response = http::request(&"tcp://127.0.0.1:8000".parse()?, "GET", "/", Duration::from_secs(5))?;
/// assert_eq!(response.status, 200);
/// let mut page = String::new();
/// response.read_to_string(&mut page)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The reason phrase, e.g. `OK`.
    pub reason: String,
    /// The header fields, in order, as sent.
    pub headers: Vec<(String, String)>,
    reader: BufReader<Connection>,
    /// Body bytes left to read; `None`: until the connection ends.
    left: Option<u64>,
}

impl Response {
    /// The value of the first field named `name` (in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match self.left {
            Some(0) => return Ok(0),
            Some(left) => buf.len().min(usize::try_from(left).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        let n = self.reader.read(&mut buf[..want])?;
        if let Some(left) = &mut self.left {
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the body ended early",
                ));
            }
            *left -= n as u64;
        }
        Ok(n)
    }
}

/// Sends one request (`Connection: close`) for `path` to a `tcp://` or
/// `unix:` URL and reads the response's head; the body is read from the
/// [`Response`]. Each read waits at most `timeout`.
pub fn request(
    url: &SocketUrl,
    method: &str,
    path: &str,
    timeout: Duration,
) -> io::Result<Response> {
    check_path(path)?;
    let connection = Connection::connect(url, Some(timeout))?;
    connection.set_read_timeout(Some(timeout))?;
    request_on(connection, &host_field(url), method, path)
}

/// The `Host` field for a server at `url`: its `HOST:PORT`, or `localhost`
/// for a Unix socket.
pub fn host_field(url: &SocketUrl) -> String {
    match url {
        SocketUrl::Tcp(addr) => addr.clone(),
        _ => "localhost".to_string(),
    }
}

fn check_path(path: &str) -> io::Result<()> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path must start with /",
        ))
    }
}

/// Sends one request (`Connection: close`) for `path` with the `Host`
/// field `host` over a connection made elsewhere (TLS, say; see
/// [`host_field`]) and reads the response's head. Reads wait as long as
/// the connection's read timeout says.
pub fn request_on(
    connection: Connection,
    host: &str,
    method: &str,
    path: &str,
) -> io::Result<Response> {
    check_path(path)?;
    let mut writer = connection.try_clone()?;
    let target = utf8_percent_encode(path, PATH);
    write!(
        writer,
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: socketserver/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )?;
    let mut reader = BufReader::new(connection);
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("invalid response: {why}"),
        )
    };
    let mut line = Vec::new();
    let mut budget = MAX_HEAD;
    let mut next_line =
        |reader: &mut BufReader<Connection>, line: &mut Vec<u8>| -> io::Result<String> {
            match read_line(reader, line, budget)? {
                Line::Complete { terminated: true } => {
                    budget = budget.saturating_sub(line.len() + 2);
                    Ok(String::from_utf8_lossy(line).into_owned())
                }
                Line::TooLong => Err(invalid("the head is too large")),
                _ => Err(invalid("the connection ended in the head")),
            }
        };
    let status_line = next_line(&mut reader, &mut line)?;
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(invalid("no status line"));
    };
    if !version.starts_with("HTTP/") {
        return Err(invalid("no status line"));
    }
    let status: u16 = code.parse().map_err(|_| invalid("bad status code"))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let field = next_line(&mut reader, &mut line)?;
        if field.is_empty() {
            break;
        }
        let (name, value) = field
            .split_once(':')
            .ok_or_else(|| invalid("a field without a colon"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        reason,
        headers,
        reader,
        left: None,
    };
    response.left =
        if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 || status < 200 {
            Some(0)
        } else {
            match response.header("content-length") {
                Some(length) => Some(length.parse().map_err(|_| invalid("bad Content-Length"))?),
                None => None,
            }
        };
    Ok(response)
}
