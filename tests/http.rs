//! `serve http` and `client http`: the built-in site, files under a root,
//! keep-alive, every kind of malformed request, traversal, limits, idle
//! connections, and a real browser.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use support::{program, run_with_input, ServerProcess, TempDir, STEP};

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

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A connection to the server over any stream.
struct Conn<S: Read + Write> {
    writer: S,
    reader: BufReader<S>,
}

impl Conn<TcpStream> {
    fn open(server: &ServerProcess) -> Self {
        let stream = TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        Conn {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }
}

impl<S: Read + Write> Conn<S> {
    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// Reads one response; `head_only` for the answer to HEAD.
    fn response(&mut self, head_only: bool) -> Response {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("HTTP/1.1 ") && line.ends_with("\r\n"),
            "status line {line:?}"
        );
        let status = line[9..12].parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
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
            .unwrap();
        if !head_only {
            response.body = vec![0; length];
            self.reader.read_exact(&mut response.body).unwrap();
        }
        response
    }

    /// True when the server has closed the connection (after any bytes).
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn start(extra: &[&str]) -> ServerProcess {
    let mut args = vec!["serve", "http", "--bind", "tcp://127.0.0.1:0"];
    args.extend_from_slice(extra);
    ServerProcess::start(&args, 1)
}

fn start_root(root: &Path, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    start(&args)
}

/// A GET on a fresh connection that asks to close.
fn get(server: &ServerProcess, target: &str) -> Response {
    let mut conn = Conn::open(server);
    conn.send(
        format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let response = conn.response(false);
    assert_eq!(response.header("Connection"), Some("close"));
    assert!(conn.closed());
    response
}

/// Sends raw bytes on a fresh connection (without closing the sending side):
/// the answer must be `status` with `Connection: close`, then the end.
fn refused(server: &ServerProcess, request: &[u8], status: u16) {
    let mut conn = Conn::open(server);
    conn.send(request);
    let response = conn.response(false);
    let shown = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
    assert_eq!(response.status, status, "{shown:?}");
    assert_eq!(response.header("Connection"), Some("close"), "{shown:?}");
    assert!(response.header("Date").is_some());
    assert!(conn.closed(), "{shown:?}: the connection must close");
    // The server still serves a new client.
    assert_eq!(get(server, "/").status, 200, "after {shown:?}");
}

#[test]
fn builtin_page_links_a_picture_that_is_served() {
    let server = start(&[]);
    let page = get(&server, "/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        page.header("Content-Length").unwrap(),
        page.body.len().to_string()
    );
    let date = httpdate::parse_http_date(page.header("Date").unwrap()).unwrap();
    let skew = SystemTime::now().duration_since(date).unwrap_or_default();
    assert!(skew < Duration::from_secs(60));
    let text = page.text();
    assert!(text.contains("hello world"), "{text}");
    assert!(text.contains(r#"src="/hello.png""#), "{text}");
    assert_eq!(get(&server, "/index.html").body, page.body);
    assert_eq!(
        get(&server, "/?lang=en#top").body,
        page.body,
        "the query is ignored"
    );

    let picture = get(&server, "/hello.png");
    assert_eq!(picture.status, 200);
    assert_eq!(picture.header("Content-Type"), Some("image/png"));
    assert!(picture.body.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(&picture.body[12..16], b"IHDR");
    assert_eq!(get(&server, "/nothing.html").status, 404);
}

#[test]
fn keep_alive_head_and_pipelining() {
    let server = start(&[]);
    let mut conn = Conn::open(&server);
    // HEAD: the fields of a GET, no body: the next response follows at once.
    conn.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = conn.response(true);
    assert_eq!(head.status, 200);
    assert!(
        head.header("Connection").is_none(),
        "HTTP/1.1 stays open by default"
    );
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let get_response = conn.response(false);
    assert_eq!(get_response.status, 200);
    assert_eq!(
        head.header("Content-Length").unwrap(),
        get_response.body.len().to_string()
    );
    // Two requests in one write, answered in order on the same connection.
    conn.send(
        b"GET /hello.png HTTP/1.1\r\nHost: t\r\n\r\nGET /missing HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(
        conn.response(false).header("Content-Type"),
        Some("image/png")
    );
    assert_eq!(conn.response(false).status, 404);
    // Connection: close ends it after the answer.
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let last = conn.response(false);
    assert_eq!(last.header("Connection"), Some("close"));
    assert!(conn.closed());
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let server = start(&[]);
    let mut conn = Conn::open(&server);
    conn.send(b"GET / HTTP/1.0\r\n\r\n");
    let response = conn.response(false);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Connection"), Some("close"));
    assert!(conn.closed());

    let mut conn = Conn::open(&server);
    conn.send(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_eq!(
        conn.response(false).header("Connection"),
        Some("keep-alive")
    );
    conn.send(b"HEAD /hello.png HTTP/1.0\r\n\r\n");
    let response = conn.response(true);
    assert_eq!(response.header("Content-Type"), Some("image/png"));
    assert!(conn.closed());
}

/// A root with one file of each type, directories, and a secret outside it.
fn site() -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new("http-site");
    std::fs::write(dir.join("secret.txt"), "TOP SECRET").unwrap();
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("index.html"), "<h1>root index</h1>").unwrap();
    std::fs::write(root.join("sub/index.html"), "<h1>sub index</h1>").unwrap();
    std::fs::write(root.join("with space.txt"), "spaced").unwrap();
    for name in [
        "a.txt",
        "s.css",
        "app.js",
        "d.json",
        "i.png",
        "p.jpg",
        "p.jpeg",
        "g.gif",
        "v.svg",
        "f.ico",
        "data.bin",
        "UPPER.HTML",
    ] {
        std::fs::write(root.join(name), format!("content of {name}")).unwrap();
    }
    (dir, root)
}

#[test]
fn files_under_the_root_with_their_types() {
    let (_dir, root) = site();
    let server = start_root(&root, &[]);
    for (name, media) in [
        ("a.txt", "text/plain"),
        ("s.css", "text/css"),
        ("app.js", "text/javascript"),
        ("d.json", "application/json"),
        ("i.png", "image/png"),
        ("p.jpg", "image/jpeg"),
        ("p.jpeg", "image/jpeg"),
        ("g.gif", "image/gif"),
        ("v.svg", "image/svg+xml"),
        ("f.ico", "image/x-icon"),
        ("data.bin", "application/octet-stream"),
        ("UPPER.HTML", "text/html"),
    ] {
        let response = get(&server, &format!("/{name}"));
        assert_eq!(response.status, 200, "{name}");
        let content_type = response.header("Content-Type").unwrap();
        assert!(
            content_type == media || content_type.starts_with(&format!("{media}; charset=")),
            "{name}: {content_type}"
        );
        assert_eq!(response.text(), format!("content of {name}"));
        assert!(response.header("Last-Modified").is_some());
    }
    assert_eq!(get(&server, "/").text(), "<h1>root index</h1>");
    assert_eq!(
        get(&server, "/index.html?x=1").text(),
        "<h1>root index</h1>"
    );
    assert_eq!(get(&server, "/sub/").text(), "<h1>sub index</h1>");
    assert_eq!(get(&server, "/with%20space.txt").text(), "spaced");
    assert_eq!(get(&server, "/%61.txt").text(), "content of a.txt");
    assert_eq!(
        get(&server, "/sub%2Findex.html").text(),
        "<h1>sub index</h1>",
        "an encoded slash separates"
    );
    assert_eq!(
        get(&server, "//sub//./index.html").text(),
        "<h1>sub index</h1>"
    );
    assert_eq!(
        get(&server, "http://example.com/a.txt").text(),
        "content of a.txt",
        "absolute form"
    );

    // A directory without its slash is redirected, query kept.
    let moved = get(&server, "/sub");
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("Location"), Some("/sub/"));
    assert_eq!(
        get(&server, "/sub?page=2").header("Location"),
        Some("/sub/?page=2")
    );

    assert_eq!(
        get(&server, "/empty/").status,
        404,
        "a directory without index.html"
    );
    assert_eq!(
        get(&server, "/a.txt/").status,
        404,
        "a file is not a directory"
    );
    assert_eq!(get(&server, "/nope.txt").status, 404);
    assert_eq!(get(&server, "/nope/deeper").status, 404);
}

#[test]
fn no_way_out_of_the_root() {
    let (dir, root) = site();
    std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(&dir.0, root.join("outside")).unwrap();
    std::os::unix::fs::symlink(root.join("a.txt"), root.join("alias.txt")).unwrap();
    std::os::unix::fs::symlink(root.join("sub"), root.join("subalias")).unwrap();
    let server = start_root(&root, &[]);
    for target in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/.%2e/secret.txt",
        "/..%2fsecret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/sub%2f%2e%2e%2f%2e%2e%2fsecret.txt",
        "/./../secret.txt",
        "http://example.com/../secret.txt",
        "/leak.txt",
        "/outside/secret.txt",
        "/outside/root/a.txt",
    ] {
        let response = get(&server, target);
        assert_eq!(response.status, 403, "{target}");
        assert!(!response.text().contains("TOP SECRET"), "{target}");
    }
    // Symlinks that stay inside the root are followed.
    assert_eq!(get(&server, "/alias.txt").text(), "content of a.txt");
    assert_eq!(get(&server, "/subalias/").text(), "<h1>sub index</h1>");
    // A NUL is malformed.
    let response = get(&server, "/a.txt%00.html");
    assert_eq!(response.status, 400);
}

#[test]
fn unreadable_and_special_files_are_forbidden() {
    let (_dir, root) = site();
    let fifo = root.join("pipe.txt");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    let locked = root.join("locked.txt");
    std::fs::write(&locked, "locked").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let server = start_root(&root, &[]);
    assert_eq!(
        get(&server, "/pipe.txt").status,
        403,
        "a FIFO is not served (and does not block)"
    );
    // root reads any file whatever its mode: check only as another user.
    if unsafe { libc::geteuid() } != 0 {
        assert_eq!(get(&server, "/locked.txt").status, 403);
    }
    assert_eq!(get(&server, "/a.txt").status, 200);
}

#[test]
fn other_methods_get_405_with_allow() {
    let server = start(&[]);
    let mut conn = Conn::open(&server);
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"] {
        conn.send(
            format!("{method} / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello").as_bytes(),
        );
        let response = conn.response(false);
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("Allow"), Some("GET, HEAD"));
    }
    // The bodies were skipped: the connection is still in step.
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(conn.response(false).text().contains("hello world"));
}

#[test]
fn malformed_requests_get_400_and_cost_only_their_connection() {
    let server = start(&[]);
    for request in [
        &b"hello\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.2\r\n\r\n",
        b"GET / FTP/1.1\r\n\r\n",
        b"GET / http/1.1\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",
        b"GET relative/path HTTP/1.1\r\n\r\n",
        b"G@T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost localhost\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"\x00\x01\x02\x03",
    ] {
        refused(&server, request, 400);
    }
    // A TLS ClientHello (no newline in sight): refused at once.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.extend((0..200u8).map(|i| i.wrapping_mul(37) | 0x80));
    refused(&server, &hello, 400);
}

#[test]
fn oversized_requests_get_414_and_431() {
    let server = start(&[]);
    // Request line: 8 KiB passes (404), one byte more is 414.
    let fits = format!("GET /{} HTTP/1.1", "a".repeat(8192 - 14));
    assert_eq!(fits.len(), 8192);
    let mut conn = Conn::open(&server);
    conn.send(format!("{fits}\r\nHost: t\r\n\r\n").as_bytes());
    assert_eq!(conn.response(false).status, 404);
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(8192));
    refused(&server, long.as_bytes(), 414);
    // Without a newline, the 414 comes as soon as the limit is passed.
    refused(
        &server,
        format!("GET /{}", "b".repeat(9000)).as_bytes(),
        414,
    );

    // 100 fields pass, 101 are 431.
    let fields = |n: usize| {
        (0..n)
            .map(|i| format!("X-F{i}: {i}\r\n"))
            .collect::<String>()
    };
    let mut conn = Conn::open(&server);
    conn.send(format!("GET / HTTP/1.1\r\n{}\r\n", fields(100)).as_bytes());
    assert_eq!(conn.response(false).status, 200);
    refused(
        &server,
        format!("GET / HTTP/1.1\r\n{}\r\n", fields(101)).as_bytes(),
        431,
    );
    // A head over 64 KiB in few fields.
    let big_fields: String = (0..20)
        .map(|i| format!("X-Big{i}: {}\r\n", "v".repeat(4000)))
        .collect();
    refused(
        &server,
        format!("GET / HTTP/1.1\r\n{big_fields}\r\n").as_bytes(),
        431,
    );
    // Both too long: the request line is checked first.
    refused(
        &server,
        format!("GET /{} HTTP/1.1\r\n{}\r\n", "c".repeat(9000), fields(200)).as_bytes(),
        414,
    );
}

#[test]
fn limits_are_configurable() {
    let server = start(&[
        "--max-request-line",
        "64",
        "--max-headers",
        "2",
        "--max-head",
        "1KiB",
    ]);
    refused(
        &server,
        format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(60)).as_bytes(),
        414,
    );
    refused(
        &server,
        b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
        431,
    );
    refused(
        &server,
        format!("GET / HTTP/1.1\r\nA: {}\r\n\r\n", "x".repeat(1024)).as_bytes(),
        431,
    );
}

#[test]
fn idle_connections_are_closed() {
    let server = start(&["--idle-timeout", "0.5"]);
    let mut conn = Conn::open(&server);
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(conn.response(false).status, 200);
    let idle_since = Instant::now();
    assert!(conn.closed(), "an idle keep-alive connection is closed");
    let waited = idle_since.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // A connection that never sends anything, too.
    let mut silent = Conn::open(&server);
    assert!(silent.closed());
}

#[test]
fn large_files_are_streamed_whole() {
    let dir = TempDir::new("http-large");
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("big.bin"), &data).unwrap();
    let server = start_root(&dir.0, &[]);
    let mut conn = Conn::open(&server);
    conn.send(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        conn.response(true).header("Content-Length"),
        Some("5000000")
    );
    let response = conn.response(false);
    assert!(response.body == data, "the body differs from the file");
}

#[test]
fn unix_socket_and_client_command() {
    let dir = TempDir::new("http-unix");
    let sock = dir.join("http.sock");
    let url = format!("unix:{}", sock.display());
    let server = ServerProcess::start(
        &[
            "serve",
            "http",
            "--bind",
            &url,
            "--bind",
            "tcp://127.0.0.1:0",
        ],
        2,
    );
    let stream = UnixStream::connect(&sock).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    let mut conn = Conn {
        writer: stream.try_clone().unwrap(),
        reader: BufReader::new(stream),
    };
    conn.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(conn.response(false).text().contains("hello world"));

    for url in &server.urls {
        let (status, out, err) =
            run_with_input(program().args(["client", "http", "--connect", url]), b"");
        assert!(status.success(), "{err}");
        assert!(String::from_utf8_lossy(&out).contains("hello world"));
        assert!(err.contains("HTTP 200 OK"), "{err}");
    }
    let (status, out, err) = run_with_input(
        program().args(["client", "http", "--connect", &server.urls[1], "/hello.png"]),
        b"",
    );
    assert!(status.success(), "{err}");
    assert!(out.starts_with(b"\x89PNG"));
    let (status, _, err) = run_with_input(
        program().args([
            "client",
            "http",
            "--connect",
            &server.urls[1],
            "/missing page",
        ]),
        b"",
    );
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("HTTP 404 Not Found"), "{err}");
}

#[test]
fn a_bad_root_exits_1() {
    let dir = TempDir::new("http-bad-root");
    let file = dir.join("file.txt");
    std::fs::write(&file, "x").unwrap();
    for root in [dir.join("missing"), file] {
        let root = root.to_str().unwrap();
        let (status, out, err) = run_with_input(
            program().args([
                "serve",
                "http",
                "--bind",
                "tcp://127.0.0.1:0",
                "--root",
                root,
            ]),
            b"",
        );
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(out.is_empty());
        assert!(
            err.starts_with(&format!("error: cannot use --root {root}: ")),
            "{err}"
        );
    }
    let (status, _, err) = run_with_input(
        program().args(["serve", "http", "--bind", "udp://127.0.0.1:0"]),
        b"",
    );
    assert_eq!(status.code(), Some(2), "{err}");
}

/// The browser to drive, if one is installed.
fn find_chromium() -> Option<std::path::PathBuf> {
    let candidates = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in candidates {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

#[test]
fn a_real_browser_shows_the_page_and_its_picture() {
    let Some(chromium) = find_chromium() else {
        eprintln!("SKIPPED a_real_browser_shows_the_page_and_its_picture: no chromium in PATH (apt-get install chromium)");
        return;
    };
    let mut server = ServerProcess::start_with(
        program()
            .args(["serve", "http", "--bind", "tcp://127.0.0.1:0"])
            .env("RUST_LOG", "socketserver::services::http=info"),
        1,
    );
    let profile = TempDir::new("chromium-profile");
    let page = format!("http://{}/", server.addr());
    let (status, out, err) = run_with_input(
        std::process::Command::new(&chromium).args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            &format!("--user-data-dir={}", profile.0.display()),
            "--dump-dom",
            &page,
        ]),
        b"",
    );
    let dom = String::from_utf8_lossy(&out);
    assert!(status.success(), "chromium failed: {err}");
    assert!(dom.contains("<h1>hello world</h1>"), "{dom}");
    // The page's script reports the picture's decoded size: it was fetched and decoded.
    assert!(dom.contains("picture loaded: 64×64 pixels"), "{dom}");
    server.signal("TERM");
    server.wait(STEP).expect("the server exits");
    let log = server.stderr_text();
    assert!(log.contains("\"GET /hello.png HTTP/1.1\" 200"), "{log}");
}

#[test]
fn shutdown_closes_idle_keep_alive_connections_at_once() {
    let mut server = start(&["--shutdown-timeout", "30"]);
    let mut conn = Conn::open(&server);
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(conn.response(false).status, 200);
    // The connection is now idle, as a browser leaves it.
    let asked = Instant::now();
    server.signal("TERM");
    assert!(conn.closed());
    let status = server.wait(STEP).expect("the server exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?}",
        asked.elapsed()
    );
    assert!(
        !server.stderr_text().contains("cut"),
        "nothing was cut at the deadline"
    );
}
