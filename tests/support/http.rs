//! The one HTTP/1.1 response reader of the tests, strict about what the
//! server writes: an `HTTP/1.1 NNN` status line, `Name: value` fields,
//! every line ended by CRLF, and a `Content-Length` on every response.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use super::net;

/// One parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first field named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the server said it closes after this response.
    pub fn closes(&self) -> bool {
        self.header("Connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
    }
}

/// Reads one response (`head_only`: the answer to a HEAD, whose body is not
/// sent); `None` if the connection ended (or failed) before its status
/// line.
pub fn read_response(reader: &mut impl BufRead, head_only: bool) -> Option<Response> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => return None,
        Ok(_) => {}
    }
    assert!(
        line.starts_with("HTTP/1.1 ") && line.ends_with("\r\n") && line.len() >= 12,
        "status line {line:?}"
    );
    let status = line[9..12]
        .parse()
        .unwrap_or_else(|_| panic!("a status code in {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).expect("a field line");
        assert!(line.ends_with("\r\n"), "field line {line:?}");
        let field = line.trim_end();
        if field.is_empty() {
            break;
        }
        let (name, value) = field.split_once(": ").expect("name: value");
        headers.push((name.to_string(), value.to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let length: usize = response
        .header("Content-Length")
        .expect("Content-Length")
        .parse()
        .expect("a numeric Content-Length");
    if !head_only {
        response.body = vec![0; length];
        reader
            .read_exact(&mut response.body)
            .expect("the whole body");
    }
    Some(response)
}

/// A client connection over any stream: a writer and a buffered reader.
pub struct HttpConn<S: Read + Write> {
    pub writer: S,
    pub reader: BufReader<S>,
}

impl HttpConn<TcpStream> {
    /// Connects (with timeouts) to `addr`.
    pub fn open(addr: impl ToSocketAddrs) -> Self {
        let stream = net::connect(addr);
        HttpConn {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }
}

impl<S: Read + Write> HttpConn<S> {
    /// A connection over an open stream and a second handle to it.
    pub fn over(writer: S, reader: S) -> Self {
        HttpConn {
            writer,
            reader: BufReader::new(reader),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Reads one response; `head_only` for the answer to HEAD.
    pub fn response(&mut self, head_only: bool) -> Response {
        read_response(&mut self.reader, head_only).expect("a response")
    }

    /// True when the server has closed the connection (after no more
    /// bytes).
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// One request (`METHOD PATH HTTP/1.1`, with a `Host`) to a server that
/// answers once and closes (the admin listener): the response, and the
/// close checked.
pub fn request(addr: impl ToSocketAddrs, method: &str, path: &str) -> Response {
    let mut conn = HttpConn::open(addr);
    conn.send(format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
    let response = conn.response(method == "HEAD");
    assert!(conn.closed(), "{method} {path}: the connection must close");
    response
}

/// `GET PATH` from a server that answers once and closes: the status and
/// the body.
pub fn get(addr: impl ToSocketAddrs, path: &str) -> (u16, String) {
    let response = request(addr, "GET", path);
    (response.status, response.text())
}
