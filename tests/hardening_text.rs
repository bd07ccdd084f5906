//! Adversarial input to the text protocols (issue 5). `serve http`:
//! conflicting `Content-Length` and `Transfer-Encoding`, bodies on GET,
//! pipelining, header floods, slow and reset clients, and smuggling
//! attempts. `serve qa`: lines at and over the limit, invalid UTF-8,
//! pipelined questions, lines cut by a reset. After each, the same server
//! still answers a new client.
//!
//! Loopback only, port 0, every read bounded by a timeout.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{ServerProcess, TempDir, STEP};

/// One parsed response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn connect(server: &ServerProcess) -> TcpStream {
    connect_to(&server.addr())
}

fn connect_to(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.set_write_timeout(Some(STEP)).unwrap();
    stream
}

/// Closes with a reset (RST) instead of a FIN.
fn reset(stream: TcpStream) {
    socket2::Socket::from(stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Reads one response (`head_only`: the answer to a HEAD, no body); `None`
/// if the connection ended before it.
fn read_response(reader: &mut impl BufRead, head_only: bool) -> Option<Response> {
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).ok()? == 0 {
        return None;
    }
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {status_line:?}"));
    assert!(status_line.starts_with("HTTP/1."), "{status_line:?}");
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("a header field");
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if !head_only {
        let length: usize = response
            .header("content-length")
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        response.body = vec![0u8; length];
        reader.read_exact(&mut response.body).unwrap();
    }
    Some(response)
}

/// The connection ends (end of input or a reset) with nothing more.
fn assert_closed(reader: &mut impl Read) {
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(_) => assert!(
            rest.is_empty(),
            "unexpected bytes: {:?}",
            String::from_utf8_lossy(&rest)
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

/// A site with a small page, a secret page and a big file.
struct Site {
    _dir: TempDir,
    server: ServerProcess,
}

fn site(extra: &[&str]) -> Site {
    let dir = TempDir::new("hard-http");
    std::fs::write(dir.join("index.html"), b"<p>index</p>").unwrap();
    std::fs::write(dir.join("a.txt"), b"page a").unwrap();
    std::fs::write(dir.join("secret.txt"), b"smuggled!").unwrap();
    let big: Vec<u8> = (0..16u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("big.bin"), big).unwrap();
    let root = dir.0.display().to_string();
    let mut args = vec![
        "serve",
        "http",
        "--bind",
        "tcp://127.0.0.1:0",
        "--root",
        &root,
    ];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(&args, 1);
    Site { _dir: dir, server }
}

impl Site {
    /// A new client gets `/a.txt`.
    fn assert_serves(&self) {
        let mut stream = connect(&self.server);
        stream
            .write_all(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reader = BufReader::new(stream);
        let response = read_response(&mut reader, false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"page a");
    }

    /// Sends `request` on a new connection and reads every response until
    /// the server closes.
    fn exchange(&self, request: &[u8]) -> Vec<Response> {
        let mut stream = connect(&self.server);
        stream.write_all(request).unwrap();
        let mut reader = BufReader::new(stream);
        let mut responses = Vec::new();
        while let Some(response) = read_response(&mut reader, false) {
            let close = response
                .header("connection")
                .is_some_and(|c| c.eq_ignore_ascii_case("close"));
            responses.push(response);
            if close {
                assert_closed(&mut reader);
                break;
            }
        }
        responses
    }
}

#[test]
fn conflicting_lengths_are_refused_and_the_connection_closed() {
    let site = site(&[]);
    for lengths in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 1e3\r\n",
        "Content-Length: abc\r\n",
        "Content-Length: 99999999999999999999999\r\n",
        "Content-Length: \r\n",
    ] {
        let request = format!(
            "POST /a.txt HTTP/1.1\r\nHost: t\r\n{lengths}\r\nhello\
             GET /secret.txt HTTP/1.1\r\nHost: t\r\n\r\n"
        );
        let responses = site.exchange(request.as_bytes());
        assert_eq!(responses.len(), 1, "{lengths:?}: {responses:?}");
        assert_eq!(responses[0].status, 400, "{lengths:?}");
    }
    // The same length twice is one length.
    let responses = site.exchange(
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\
          Connection: close\r\n\r\nhello",
    );
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 200);
    site.assert_serves();
}

#[test]
fn transfer_encoding_is_never_a_way_to_smuggle_a_request() {
    let site = site(&[]);
    // Content-Length and Transfer-Encoding together, in both orders, and
    // Transfer-Encoding alone: whatever the first answer, the bytes after
    // the head are never read as a second request.
    for framing in [
        "Content-Length: 44\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 44\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding : chunked\r\n",
    ] {
        let request = format!(
            "GET /a.txt HTTP/1.1\r\nHost: t\r\n{framing}\r\n0\r\n\r\n\
             GET /secret.txt HTTP/1.1\r\nHost: t\r\n\r\n"
        );
        let responses = site.exchange(request.as_bytes());
        assert!(!responses.is_empty(), "{framing:?}: no answer");
        for response in &responses {
            assert_ne!(response.body, b"smuggled!", "{framing:?}: smuggled");
        }
        assert_eq!(responses.len(), 1, "{framing:?}: {responses:?}");
    }
    site.assert_serves();
}

#[test]
fn a_body_on_a_get_is_skipped_and_the_next_request_served() {
    let site = site(&[]);
    let responses = site.exchange(
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 13\r\n\r\n\
          GET /secret.t\
          GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200]);
    assert_eq!(responses[0].body, b"page a");
    assert_eq!(responses[1].body, b"<p>index</p>");
    // A body too large to skip: answered, then closed.
    let responses = site.exchange(
        b"GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\npartial body",
    );
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 200);
    site.assert_serves();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let site = site(&[]);
    let stream = connect(&site.server);
    let mut batch = Vec::new();
    let paths = ["/a.txt", "/index.html", "/missing", "/a.txt"];
    for i in 0..200 {
        let method = if i % 5 == 4 { "HEAD" } else { "GET" };
        batch.extend_from_slice(
            format!(
                "{method} {} HTTP/1.1\r\nHost: t\r\n\r\n",
                paths[i % paths.len()]
            )
            .as_bytes(),
        );
    }
    batch.extend_from_slice(b"GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || stream.write_all(&batch).unwrap())
    };
    stream.set_read_timeout(Some(STEP)).unwrap();
    let mut reader = BufReader::new(stream);
    for i in 0..200 {
        let head_only = i % 5 == 4;
        let response = read_response(&mut reader, head_only).expect("every answer");
        let expected = match paths[i % paths.len()] {
            "/missing" => 404,
            _ => 200,
        };
        assert_eq!(response.status, expected, "request {i}");
        if !head_only && expected == 200 {
            let body: &[u8] = match paths[i % paths.len()] {
                "/a.txt" => b"page a",
                _ => b"<p>index</p>",
            };
            assert_eq!(response.body, body, "request {i}");
        }
    }
    let last = read_response(&mut reader, false).unwrap();
    assert_eq!(last.body, b"page a");
    assert_closed(&mut reader);
    writer.join().unwrap();
}

#[test]
fn header_floods_get_431_or_414_and_cost_only_their_connection() {
    let site = site(&[]);
    // 101 fields.
    let mut flood = String::from("GET /a.txt HTTP/1.1\r\n");
    for i in 0..101 {
        flood.push_str(&format!("X-Flood-{i}: {i}\r\n"));
    }
    flood.push_str("\r\n");
    let responses = site.exchange(flood.as_bytes());
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].status, 431);
    // One field of 70 KiB, sent while the server may already have answered.
    let mut stream = connect(&site.server);
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = stream.write_all(b"GET / HTTP/1.1\r\nX-Big: ");
            let _ = stream.write_all(&vec![b'a'; 70 << 10]);
            let _ = stream.write_all(b"\r\n\r\n");
        })
    };
    stream.set_read_timeout(Some(STEP)).unwrap();
    let mut reader = BufReader::new(&mut stream);
    assert_eq!(read_response(&mut reader, false).unwrap().status, 431);
    writer.join().unwrap();
    // A 9 KiB target.
    let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9 << 10));
    let responses = site.exchange(long.as_bytes());
    assert_eq!(responses[0].status, 414);
    // Megabytes without a newline: refused after at most the limit.
    let mut stream = connect(&site.server);
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'G'; 1 << 20];
            let mut sent = 0;
            for _ in 0..8 {
                match stream.write_all(&chunk) {
                    Ok(()) => sent += chunk.len(),
                    Err(_) => break,
                }
            }
            sent
        })
    };
    let mut reader = BufReader::new(&mut stream);
    assert_eq!(read_response(&mut reader, false).unwrap().status, 414);
    let _ = writer.join().unwrap();
    site.assert_serves();
}

#[test]
fn slow_and_reset_clients_cost_only_their_connection() {
    let site = site(&["--idle-timeout", "1", "--max-connections", "8"]);
    // Eight connections that send half a head and go quiet fill the cap;
    // the idle timeout frees it.
    let slow: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = connect(&site.server);
            s.write_all(b"GET /a.txt HTTP/1.1\r\nHost:").unwrap();
            s
        })
        .collect();
    site.assert_serves();
    for mut s in slow {
        let mut reader = BufReader::new(&mut s);
        // Closed, possibly after a 408/400: never a 200.
        if let Some(response) = read_response(&mut reader, false) {
            assert_ne!(response.status, 200);
        }
    }
    // A reset after the first bytes of a 16 MiB answer.
    for _ in 0..5 {
        let mut s = connect(&site.server);
        s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut some = [0u8; 4096];
        s.read_exact(&mut some).unwrap();
        reset(s);
    }
    // TLS bytes and binary garbage: 400 and closed.
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"\x00\x01\x02\x03\r\n\r\n",
    ] {
        let responses = site.exchange(garbage);
        assert_eq!(responses.len(), 1);
        assert_eq!(responses[0].status, 400);
    }
    site.assert_serves();
}
