//! http (SPEC section 4, rule 20) through the program, in both dispatch
//! modes: the built-in site, files under a root, keep-alive and pipelining,
//! every kind of malformed request, traversal, limits, slow and idle
//! connections, hostile clients (conflicting lengths, smuggling attempts,
//! header floods, resets), listings, Unix sockets, the client command, a
//! real browser, and the shutdown. After each bad request the same server
//! still serves a new client.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use support::http::{read_response, HttpConn, Response};
use support::{program, run_with_input, serve, Mode, ServerProcess, TempDir, STEP};

fn start(mode: Mode, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--bind", "tcp://127.0.0.1:0"];
    args.extend_from_slice(extra);
    serve("http", mode, &args, 1)
}

fn start_root(mode: Mode, root: &Path, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    start(mode, &args)
}

/// A GET on a fresh connection that asks to close.
fn get(server: &ServerProcess, target: &str) -> Response {
    let mut conn = HttpConn::open(server.addr());
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
    let mut conn = HttpConn::open(server.addr());
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

/// A site for hostile clients: a small page and a secret page (which no
/// smuggled request may reach).
struct Site {
    dir: TempDir,
    server: ServerProcess,
}

fn hostile_site(mode: Mode, extra: &[&str]) -> Site {
    let dir = TempDir::new("hard-http");
    std::fs::write(dir.join("index.html"), b"<p>index</p>").unwrap();
    std::fs::write(dir.join("a.txt"), b"page a").unwrap();
    std::fs::write(dir.join("secret.txt"), b"smuggled!").unwrap();
    let root = dir.0.display().to_string();
    let mut args = vec!["--root", root.as_str()];
    args.extend_from_slice(extra);
    let server = start(mode, &args);
    Site { dir, server }
}

impl Site {
    /// A new client gets `/a.txt`.
    fn assert_serves(&self) {
        let mut stream = support::connect(self.server.addr());
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
        let mut stream = support::connect(self.server.addr());
        stream.write_all(request).unwrap();
        let mut reader = BufReader::new(stream);
        let mut responses = Vec::new();
        while let Some(response) = read_response(&mut reader, false) {
            let close = response.closes();
            responses.push(response);
            if close {
                support::assert_closed(&mut reader);
                break;
            }
        }
        responses
    }
}

crate::both_modes! {
    fn builtin_page_links_a_picture_that_is_served(mode) {
        let server = start(mode, &[]);
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

    fn keep_alive_head_and_pipelining(mode) {
        let server = start(mode, &[]);
        let mut conn = HttpConn::open(server.addr());
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

    fn http_1_0_closes_unless_asked_to_keep_alive(mode) {
        let server = start(mode, &[]);
        let mut conn = HttpConn::open(server.addr());
        conn.send(b"GET / HTTP/1.0\r\n\r\n");
        let response = conn.response(false);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Connection"), Some("close"));
        assert!(conn.closed());

        let mut conn = HttpConn::open(server.addr());
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

    fn files_under_the_root_with_their_types(mode) {
        let (_dir, root) = site();
        let server = start_root(mode, &root, &[]);
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

    fn no_way_out_of_the_root(mode) {
        let (dir, root) = site();
        std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(&dir.0, root.join("outside")).unwrap();
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("alias.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), root.join("subalias")).unwrap();
        let server = start_root(mode, &root, &[]);
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

    fn unreadable_and_special_files_are_forbidden(mode) {
        let (_dir, root) = site();
        let fifo = root.join("pipe.txt");
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
        let locked = root.join("locked.txt");
        std::fs::write(&locked, "locked").unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let server = start_root(mode, &root, &[]);
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

    fn other_methods_get_405_with_allow(mode) {
        let server = start(mode, &[]);
        let mut conn = HttpConn::open(server.addr());
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

    fn malformed_requests_get_400_and_cost_only_their_connection(mode) {
        let server = start(mode, &[]);
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

    fn oversized_requests_get_414_and_431(mode) {
        let server = start(mode, &[]);
        // Request line: 8 KiB passes (404), one byte more is 414.
        let fits = format!("GET /{} HTTP/1.1", "a".repeat(8192 - 14));
        assert_eq!(fits.len(), 8192);
        let mut conn = HttpConn::open(server.addr());
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

        // 100 fields pass (Host is one of them: HTTP/1.1 requires it), 101 are 431.
        let fields = |n: usize| {
            (0..n)
                .map(|i| format!("X-F{i}: {i}\r\n"))
                .collect::<String>()
        };
        let mut conn = HttpConn::open(server.addr());
        conn.send(format!("GET / HTTP/1.1\r\nHost: t\r\n{}\r\n", fields(99)).as_bytes());
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

    fn limits_are_configurable(mode) {
        let server = start(mode, &[
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

    fn idle_connections_are_closed(mode) {
        let server = start(mode, &["--idle-timeout", "0.5"]);
        let mut conn = HttpConn::open(server.addr());
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
        let mut silent = HttpConn::open(server.addr());
        assert!(silent.closed());
    }

    fn large_files_are_streamed_whole(mode) {
        let dir = TempDir::new("http-large");
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.join("big.bin"), &data).unwrap();
        let server = start_root(mode, &dir.0, &[]);
        let mut conn = HttpConn::open(server.addr());
        conn.send(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(
            conn.response(true).header("Content-Length"),
            Some("5000000")
        );
        let response = conn.response(false);
        assert!(response.body == data, "the body differs from the file");
    }

    fn unix_socket_and_client_command(mode) {
        let dir = TempDir::new("http-unix");
        let sock = dir.join("http.sock");
        let url = format!("unix:{}", sock.display());
        let server = serve(
            "http",
            mode,
            &["--bind", &url, "--bind", "tcp://127.0.0.1:0"],
            2,
        );
        let stream = UnixStream::connect(&sock).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        let mut conn = HttpConn::over(stream.try_clone().unwrap(), stream);
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

    fn a_bad_root_exits_1(mode) {
        let dir = TempDir::new("http-bad-root");
        let file = dir.join("file.txt");
        std::fs::write(&file, "x").unwrap();
        for root in [dir.join("missing"), file] {
            let root = root.to_str().unwrap();
            let (status, out, err) = run_with_input(
                &mut support::serve_command(
                    "http",
                    mode,
                    &["--bind", "tcp://127.0.0.1:0", "--root", root],
                ),
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
            &mut support::serve_command("http", mode, &["--bind", "udp://127.0.0.1:0"]),
            b"",
        );
        assert_eq!(status.code(), Some(2), "{err}");
    }

    fn a_real_browser_shows_the_page_and_its_picture(mode) {
        let Some(chromium) = support::tool(support::Tool::Chromium) else {
            return;
        };
        let mut server = ServerProcess::start_with(
            support::serve_command("http", mode, &["--bind", "tcp://127.0.0.1:0"])
                .env("RUST_LOG", "socketserver::services::http=info"),
            1,
        );
        let profile = TempDir::new("chromium-profile");
        let page = format!("http://{}/", server.addr());
        let (status, out, err) = support::tools::run_browser(
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

    fn shutdown_closes_idle_keep_alive_connections_at_once(mode) {
        let mut server = start(mode, &["--shutdown-timeout", "30"]);
        let mut conn = HttpConn::open(server.addr());
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

    /// RFC 9112, section 3.2: an HTTP/1.1 request without a Host field, or any
    /// request with two, is 400 and the connection closes.
    fn http_1_1_needs_exactly_one_host(mode) {
        let server = start(mode, &[]);
        refused(&server, b"GET / HTTP/1.1\r\n\r\n", 400);
        refused(&server, b"GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n", 400);
        refused(
            &server,
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
        );
        refused(
            &server,
            b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
            400,
        );
        refused(
            &server,
            b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
            400,
        );
        // One Host, in any case; HTTP/1.0 may go without.
        let mut conn = HttpConn::open(server.addr());
        conn.send(b"GET / HTTP/1.1\r\nhOsT: a\r\n\r\n");
        assert_eq!(conn.response(false).status, 200);
        let mut conn = HttpConn::open(server.addr());
        conn.send(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(conn.response(false).status, 200);
    }

    fn a_bare_cr_or_a_nul_in_a_field_is_400(mode) {
        let server = start(mode, &[]);
        for request in [
            &b"GET / HTTP/1.1\r\nHost: t\r\nX-A: one\rtwo\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: t\rX-Smuggled: yes\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: one\0two\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-A: \0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX\0A: one\r\n\r\n",
        ] {
            refused(&server, request, 400);
        }
    }

    /// `GET //sub` for a directory used to answer `Location: //sub/`, which a
    /// browser reads as the host `sub`; and the query went unescaped into the
    /// 301 page.
    fn redirects_are_paths_with_a_single_leading_slash(mode) {
        let (dir, root) = site();
        std::fs::create_dir(root.join("evil.example")).unwrap();
        let server = start_root(mode, &root, &[]);
        for (target, location) in [
            ("//evil.example", "/evil.example/"),
            ("//sub", "/sub/"),
            ("///sub?x=1", "/sub/?x=1"),
            ("/.//sub", "/sub/"),
            ("/%2Fsub", "/sub/"),
            ("/sub/.", "/sub/"),
            ("http://example.com//sub", "/sub/"),
            ("/.", "/"),
        ] {
            let moved = get(&server, target);
            assert_eq!(moved.status, 301, "{target}");
            assert_eq!(moved.header("Location"), Some(location), "{target}");
        }
        // The query stays in the field (graphic ASCII), escaped in the page.
        let moved = get(&server, "/sub?q=\"><script>alert(1)</script>");
        assert_eq!(
            moved.header("Location"),
            Some("/sub/?q=\"><script>alert(1)</script>")
        );
        let page = moved.text();
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
        drop(dir);
    }

    /// Slowloris: a client that sends one header line every 2 s never goes idle,
    /// but its head must be complete 3 s after its first byte; an honest client
    /// is served meanwhile.
    fn slow_heads_are_cut_at_the_head_timeout(mode) {
        let args = vec!["--head-timeout", "3"];
        let server = start(mode, &args);
        let mut slow = support::connect(server.addr());
        let started = Instant::now();
        slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let trickle = {
            let mut slow = slow.try_clone().unwrap();
            std::thread::spawn(move || {
                for i in 0..10 {
                    // One line every 2 s, until told to stop.
                    if stopped.recv_timeout(Duration::from_secs(2)).is_ok() {
                        return;
                    }
                    if slow
                        .write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
                        .is_err()
                    {
                        return;
                    }
                }
            })
        };
        let honest = Instant::now();
        assert_eq!(get(&server, "/").status, 200);
        let served_in = honest.elapsed();
        assert!(
            served_in < Duration::from_millis(2500),
            "the honest client waited {served_in:?}"
        );
        let mut rest = Vec::new();
        match slow.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest)),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
        let cut_after = started.elapsed();
        assert!(
            cut_after >= Duration::from_millis(2900) && cut_after < Duration::from_millis(5500),
            "cut after {cut_after:?}"
        );
        let _ = stop.send(());
        trickle.join().unwrap();
        // The server goes on.
        assert_eq!(get(&server, "/").status, 200);
    }

    /// The head timeout counts from a head's first byte: a connection that
    /// waits before its request, or a body that arrives slowly, is not cut by it
    /// (only by the idle timeout).
    fn the_head_timeout_spares_waits_and_bodies(mode) {
        let args = vec!["--head-timeout", "0.5"];
        let server = start(mode, &args);
        let mut conn = HttpConn::open(server.addr());
        std::thread::sleep(Duration::from_millis(800));
        conn.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345");
        std::thread::sleep(Duration::from_millis(800));
        conn.send(b"67890GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(conn.response(false).status, 405);
        assert!(conn.response(false).text().contains("hello world"));
        // And the next head is held to it again.
        conn.send(b"GET / HTTP/1.1\r\n");
        let asked = Instant::now();
        assert!(conn.closed());
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
    }

    /// A body is read and discarded before the answer, in pieces, with or
    /// without a root; the next request follows it on the same connection. One
    /// byte over 1 MiB: answered, then closed.
    fn bodies_up_to_a_mebibyte_are_discarded(mode) {
        let (_dir, root) = site();
        for server in [start(mode, &[]), start_root(mode, &root, &[])] {
            let body: Vec<u8> = (0..1u32 << 20).map(|i| (i % 249) as u8).collect();
            let mut conn = HttpConn::open(server.addr());
            let mut request =
                b"PUT /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n".to_vec();
            request.extend_from_slice(&body);
            request.extend_from_slice(b"GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n");
            let writer = {
                let mut stream = conn.writer.try_clone().unwrap();
                std::thread::spawn(move || stream.write_all(&request).unwrap())
            };
            assert_eq!(conn.response(false).status, 405);
            let page = conn.response(false);
            assert_eq!(page.status, 200);
            assert!(page.text().contains("index") || page.text().contains("hello world"));
            writer.join().unwrap();

            let mut conn = HttpConn::open(server.addr());
            conn.send(b"GET /index.html HTTP/1.1\r\nHost: t\r\nContent-Length: 1048577\r\n\r\nsome");
            let response = conn.response(false);
            assert_eq!(response.status, 200);
            assert_eq!(response.header("Connection"), Some("close"));
            assert!(conn.closed());
        }
    }

    /// `--list-directories`: a directory without index.html gets a listing,
    /// sorted, names escaped for HTML and percent-encoded in links, sizes,
    /// directories with a slash; symlinks out of the root are left out. Off by
    /// default: 404.
    fn directories_are_listed_only_when_asked(mode) {
        let dir = TempDir::new("http-listing");
        std::fs::write(dir.join("secret.txt"), "TOP SECRET").unwrap();
        let root = dir.join("root");
        let docs = root.join("docs");
        std::fs::create_dir_all(docs.join("alpha")).unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/index.html"), "<h1>sub index</h1>").unwrap();
        std::fs::write(docs.join("<b>&\"x\".txt"), "12345").unwrap();
        std::fs::write(docs.join("a b.txt"), "spaced").unwrap();
        std::fs::write(docs.join("Zeta.txt"), "").unwrap();
        std::os::unix::fs::symlink(dir.join("secret.txt"), docs.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("sub"), docs.join("inside")).unwrap();

        let off = start_root(mode, &root, &[]);
        assert_eq!(get(&off, "/docs/").status, 404);
        assert_eq!(get(&off, "/").status, 404);
        drop(off);

        let args = vec!["--list-directories"];
        let server = start_root(mode, &root, &args);
        let listing = get(&server, "/docs/");
        assert_eq!(listing.status, 200);
        assert_eq!(
            listing.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        let page = listing.text();
        assert!(page.contains("Index of /docs/"), "{page}");
        let rows = [
            r#"<a href="%3Cb%3E%26%22x%22.txt">&lt;b&gt;&amp;&quot;x&quot;.txt</a></td><td>5</td>"#,
            r#"<a href="a%20b.txt">a b.txt</a></td><td>6</td>"#,
            r#"<a href="alpha/">alpha/</a></td><td>-</td>"#,
            r#"<a href="inside/">inside/</a></td><td>-</td>"#,
            r#"<a href="Zeta.txt">Zeta.txt</a></td><td>0</td>"#,
        ];
        let mut last = 0;
        for row in rows {
            let at = page
                .find(row)
                .unwrap_or_else(|| panic!("{row} not in {page}"));
            assert!(at > last, "{row} out of order in {page}");
            last = at;
        }
        assert!(!page.contains("<b>&"), "{page}");
        assert!(!page.contains("leak.txt"), "{page}");
        assert!(page.contains(r#"<a href="../">"#), "{page}");
        // The links lead where they say.
        assert_eq!(get(&server, "/docs/%3Cb%3E%26%22x%22.txt").text(), "12345");
        assert_eq!(get(&server, "/docs/a%20b.txt").text(), "spaced");
        let alpha = get(&server, "/docs/alpha/");
        assert_eq!(alpha.status, 200);
        assert!(alpha.text().contains("Index of /docs/alpha/"));
        // An index still wins; the root is listed without a parent link.
        assert_eq!(get(&server, "/sub/").text(), "<h1>sub index</h1>");
        let top = get(&server, "/").text();
        assert!(top.contains(r#"<a href="docs/">docs/</a>"#), "{top}");
        assert!(!top.contains(r#"href="../""#), "{top}");
    }

    fn conflicting_lengths_are_refused_and_the_connection_closed(mode) {
        let site = hostile_site(mode, &[]);
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

    fn transfer_encoding_is_never_a_way_to_smuggle_a_request(mode) {
        let site = hostile_site(mode, &[]);
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

    fn a_body_on_a_get_is_skipped_and_the_next_request_served(mode) {
        let site = hostile_site(mode, &[]);
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

    fn pipelined_requests_are_answered_in_order(mode) {
        let site = hostile_site(mode, &[]);
        let stream = support::connect(site.server.addr());
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
        support::assert_closed(&mut reader);
        writer.join().unwrap();
    }

    fn header_floods_get_431_or_414_and_cost_only_their_connection(mode) {
        let site = hostile_site(mode, &[]);
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
        let mut stream = support::connect(site.server.addr());
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
        let mut stream = support::connect(site.server.addr());
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

    fn slow_and_reset_clients_cost_only_their_connection(mode) {
        let site = hostile_site(mode, &["--idle-timeout", "1", "--max-connections", "8"]);
        let big: Vec<u8> = (0..16u32 << 20).map(|i| (i % 253) as u8).collect();
        site.dir.write("big.bin", big);
        // Eight connections that send half a head and go quiet fill the cap;
        // the idle timeout frees it.
        let slow: Vec<TcpStream> = (0..8)
            .map(|_| {
                let mut s = support::connect(site.server.addr());
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
            let mut s = support::connect(site.server.addr());
            s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            let mut some = [0u8; 4096];
            s.read_exact(&mut some).unwrap();
            support::reset(s);
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
}
