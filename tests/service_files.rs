//! files (SPEC section 4 and rules 9 to 11, 16 to 18) through the program,
//! in both dispatch modes: the course's Python clients, the `client files`
//! command, puts, gets and lists; refused and hostile names, malformed
//! headers, oversized and garbage frames, digests, sizes over the limit;
//! uploads and downloads cut by resets and half-closes, clients that never
//! read, a server killed mid-upload and restarted; authentication; Unix
//! sockets. After each bad input the same server still serves a new client,
//! and no partial or temporary file is left behind.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use socketserver::client::files::{Entry, FilesClient, Refused};
use socketserver::protocol::auth::{client_handshake, Key};
use socketserver::protocol::framing::{Endian, FrameCodec};
use socketserver::SocketUrl;
use support::frames::{read_answer, send_header, sha256};
use support::{
    assert_closed, eventually, program, run_with_input, serve, Mode, ServerProcess, TempDir, STEP,
};

const TEMP_PREFIX: &str = ".socketserver-part-";

/// `serve files` in `mode` storing in `store`, logging at info, plus
/// `extra`.
fn files_server(mode: Mode, store: &Path, extra: &[&str]) -> ServerProcess {
    let store = store.display().to_string();
    let mut args = vec!["--bind", "tcp://127.0.0.1:0", "--dir", &store];
    args.extend_from_slice(extra);
    ServerProcess::start_with(
        support::serve_command("files", mode, &args).env("RUST_LOG", "info"),
        1,
    )
}

/// A library client without a key.
fn files_client(server: &ServerProcess) -> FilesClient {
    let url: SocketUrl = server.url().parse().unwrap();
    FilesClient::connect(&url, None, FrameCodec::new(), Some(STEP)).unwrap()
}

/// Every name in a directory, hidden ones included, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A files server still stores, serves and lists for a new client.
fn assert_files_serves(server: &ServerProcess, store: &Path) {
    let mut client = files_client(server);
    let stored = client
        .put("probe.txt", &b"probe"[..], 5, None, &mut |_| {})
        .unwrap();
    assert_eq!(stored.size, 5);
    let mut back = Vec::new();
    client.get("probe.txt", &mut back, &mut |_, _| {}).unwrap();
    assert_eq!(back, b"probe");
    assert!(client.list().unwrap().iter().any(|e| e.name == "probe.txt"));
    std::fs::remove_file(store.join("probe.txt")).unwrap();
}

/// A files server and its temporary directory (the store is `store/` in
/// it).
struct Setup {
    dir: TempDir,
    server: ServerProcess,
}

impl Setup {
    /// `serve files` in `mode` on a free port, storing in
    /// `<tempdir>/store`, plus `extra`.
    fn start(mode: Mode, name: &str, extra: &[&str]) -> Setup {
        let dir = TempDir::new(name);
        let server = files_server(mode, &dir.join("store"), extra);
        Setup { dir, server }
    }

    fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn url(&self) -> SocketUrl {
        self.server.url().parse().unwrap()
    }

    fn client(&self) -> FilesClient {
        files_client(&self.server)
    }

    fn raw(&self) -> TcpStream {
        support::connect(self.server.addr())
    }

    /// Everything in the store, hidden files included.
    fn entries(&self) -> Vec<String> {
        entries(&self.store())
    }

    /// A new client can still put, get and list.
    fn assert_serves(&self) {
        assert_files_serves(&self.server, &self.store());
    }
}

/// Runs a course client to its end; its standard output, or `None` without
/// python3.
fn python(script: &str, args: &[&str]) -> Option<String> {
    let mut command = support::course_client(script)?;
    let (status, out, err) = run_with_input(command.args(args), b"");
    assert!(status.success(), "{script} failed: {err}");
    Some(String::from_utf8(out).unwrap())
}

fn refusal(error: &std::io::Error) -> String {
    Refused::from_io(error)
        .unwrap_or_else(|| panic!("not a refusal: {error}"))
        .0
        .clone()
}

/// Starts an upload of `size` bytes named `name` and sends `sent` of them.
fn partial_upload(addr: &str, name: &str, size: usize, sent: usize) -> TcpStream {
    let mut stream = support::connect(addr);
    send_header(&mut stream, &json!({"file_name": name, "file_size": size}));
    stream.write_all(&vec![b'p'; sent]).unwrap();
    stream
}

crate::both_modes! {
    fn the_course_client_uploads_and_closes_without_reading(mode) {
        // One worker: the next connection is served only after the upload is done.
        let mut setup = Setup::start(mode, "files-course", &["--threads", "1", "--max-threads", "1"]);
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let source = setup.dir.join("photo.jpg");
        std::fs::write(&source, &data).unwrap();
        let (host, port) = setup.server.host_port();
        let Some(_) = python(
            "files_put_course.py",
            &[&host, &port, source.to_str().unwrap()],
        ) else {
            return;
        };
        python(
            "files_put_course.py",
            &[&host, &port, source.to_str().unwrap(), "copy.jpg"],
        );
        let listed = setup.client().list().unwrap();
        assert_eq!(
            listed,
            [
                Entry {
                    name: "copy.jpg".into(),
                    size: 800_000
                },
                Entry {
                    name: "photo.jpg".into(),
                    size: 800_000
                }
            ]
        );
        assert_eq!(
            std::fs::read(setup.store().join("photo.jpg")).unwrap(),
            data
        );
        assert_eq!(setup.entries(), ["copy.jpg", "photo.jpg"]);
        // A client that closes without reading its answer is normal: nothing
        // worse than info in the log (but the shutdown's own announcement).
        setup.server.signal("TERM");
        assert_eq!(setup.server.wait(STEP).and_then(|s| s.code()), Some(0));
        let log = setup.server.stderr_text();
        let log: Vec<&str> = log
            .lines()
            .filter(|line| !line.contains("shutting down: "))
            .collect();
        assert!(
            log.iter()
                .all(|line| !line.contains("ERROR") && !line.contains("WARN")),
            "{log:?}"
        );
    }

    fn a_python_client_reads_every_answer(mode) {
        let setup = Setup::start(mode, "files-python", &[]);
        let source = setup.dir.join("notes.txt");
        std::fs::write(&source, "héllo wörld\n").unwrap();
        let digest = sha256("héllo wörld\n".as_bytes());
        let (host, port) = setup.server.host_port();
        let Some(out) = python("files_ops.py", &[&host, &port, source.to_str().unwrap()]) else {
            return;
        };
        let answers: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            answers[0],
            json!({"status": "ok", "file_name": "notes.txt", "size": 14, "sha256": digest})
        );
        assert_eq!(
            answers[1],
            json!({"status": "ok", "files": [{"name": "notes.txt", "size": 14}]})
        );
        assert_eq!(
            answers[2],
            json!({"status": "ok", "file_name": "notes.txt", "file_size": 14, "sha256": digest, "body_sha256": digest})
        );
    }

    fn big_endian_frames(mode) {
        let setup = Setup::start(mode, "files-big", &["--frame-endian", "big"]);
        let source = setup.dir.join("b.bin");
        std::fs::write(&source, b"big endian").unwrap();
        let (host, port) = setup.server.host_port();
        let Some(out) = python(
            "files_ops.py",
            &[&host, &port, source.to_str().unwrap(), "--big"],
        ) else {
            return;
        };
        assert_eq!(out.lines().count(), 3, "{out}");
        let mut client = FilesClient::connect(
            &setup.url(),
            None,
            FrameCodec::new().endian(Endian::Big),
            Some(STEP),
        )
        .unwrap();
        assert_eq!(client.list().unwrap().len(), 1);
        // A little-endian header reads as a huge length: refused, closed.
        let mut raw = setup.raw();
        send_header(&mut raw, &json!({"op": "list"}));
        let mut len = [0u8; 4];
        raw.read_exact(&mut len).unwrap();
        let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
        raw.read_exact(&mut answer).unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["status"], "error");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .ends_with("over the limit 65536"),
            "{answer}"
        );
        assert_closed(&mut raw);
    }

    fn the_client_command_puts_gets_and_lists(mode) {
        let setup = Setup::start(mode, "files-cli", &[]);
        let url = setup.server.url().to_string();
        let a = setup.dir.join("a.txt");
        let b = setup.dir.join("b.bin");
        std::fs::write(&a, b"first version\n").unwrap();
        std::fs::write(&b, vec![7u8; 300_000]).unwrap();
        let files = |args: &[&str]| {
            let mut command = program();
            command
                .args(["client", "files", "--connect", &url])
                .args(args);
            run_with_input(&mut command, b"")
        };
        let (status, out, err) = files(&["put", a.to_str().unwrap(), b.to_str().unwrap()]);
        assert!(status.success(), "{err}");
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            format!(
                "stored a.txt (14 bytes, sha256 {})\nstored b.bin (300000 bytes, sha256 {})\n",
                sha256(b"first version\n"),
                sha256(&vec![7u8; 300_000])
            )
        );
        assert!(
            err.is_empty(),
            "no progress bar when stderr is not a terminal: {err:?}"
        );
        // A put replaces the file.
        std::fs::write(&a, b"second\n").unwrap();
        let (status, _, _) = files(&["put", a.to_str().unwrap()]);
        assert!(status.success());
        let (status, out, _) = files(&["list"]);
        assert!(status.success());
        assert_eq!(out, b"a.txt\t7\nb.bin\t300000\n");
        let target = setup.dir.join("copy.txt");
        let (status, out, err) = files(&["get", "a.txt", "--output", target.to_str().unwrap()]);
        assert!(status.success(), "{err}");
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("saved a.txt to "));
        assert_eq!(std::fs::read(&target).unwrap(), b"second\n");
        let (status, out, _) = files(&["get", "b.bin", "-o", "-"]);
        assert!(status.success());
        assert_eq!(out, vec![7u8; 300_000]);
        let (status, _, err) = files(&["get", "missing.txt"]);
        assert_eq!(status.code(), Some(1));
        assert_eq!(
            err,
            "error: cannot download missing.txt: no such file: missing.txt\n"
        );
        let (status, _, err) = files(&["put", "--name", "../escape", a.to_str().unwrap()]);
        assert_eq!(status.code(), Some(1));
        assert!(err.contains("path separator"), "{err}");
        assert_eq!(setup.entries(), ["a.txt", "b.bin"]);
    }

    fn refused_names_are_answered_then_closed_and_nothing_is_stored(mode) {
        let setup = Setup::start(mode, "files-names", &[]);
        for name in [
            "",
            ".",
            "..",
            "../up.txt",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "nul\0byte",
            "tab\tname",
            "line\nbreak",
            "del\u{7f}",
            ".socketserver-part-1234",
        ] {
            let mut raw = setup.raw();
            send_header(&mut raw, &json!({"file_name": name, "file_size": 5}));
            raw.write_all(b"12345").unwrap();
            let answer = read_answer(&mut raw);
            assert_eq!(answer["status"], "error", "{name:?}");
            assert!(
                answer["error"].as_str().unwrap().contains("file name"),
                "{name:?}: {answer}"
            );
            assert_closed(&mut raw);
        }
        assert!(setup.entries().is_empty(), "{:?}", setup.entries());
        assert!(!setup.dir.join("up.txt").exists());
        // A get of a bad name is refused too, but the connection stays.
        let mut client = setup.client();
        let e = client
            .get("../store/x", &mut Vec::new(), &mut |_, _| {})
            .unwrap_err();
        assert!(refusal(&e).contains("path separator"));
        assert!(client.list().unwrap().is_empty());
        setup.assert_serves();
    }

    fn malformed_headers_are_answered_then_closed(mode) {
        let setup = Setup::start(mode, "files-malformed", &[]);
        let cases: [(&[u8], &str); 9] = [
            (
                b"hello",
                "the header is not JSON: expected value at line 1 column 1",
            ),
            (b"[1, 2]", "the header is not a JSON object"),
            (b"{\"file_name\": \"a\xff\"}", "the header is not UTF-8"),
            (b"{\"file_name\": \"a\"}", "missing file_size"),
            (
                b"{\"file_name\": \"a\", \"file_size\": \"5\"}",
                "file_size must be a non-negative integer, not \"5\"",
            ),
            (
                b"{\"file_name\": \"a\", \"file_size\": -5}",
                "file_size must be a non-negative integer, not -5",
            ),
            (
                b"{\"file_name\": \"a\", \"file_size\": 2.5}",
                "file_size must be a non-negative integer, not 2.5",
            ),
            (b"{\"file_size\": 5}", "missing file_name"),
            (
                b"{\"file_name\": \"a\", \"file_size\": 5, \"sha256\": \"abc\"}",
                "sha256 must be 64 hex digits, not \"abc\"",
            ),
        ];
        for (header, why) in cases {
            let mut raw = setup.raw();
            FrameCodec::new().write_frame(&mut raw, header).unwrap();
            raw.write_all(b"hello").unwrap();
            assert_eq!(
                read_answer(&mut raw),
                json!({"status": "error", "error": why})
            );
            assert_closed(&mut raw);
        }
        assert!(setup.entries().is_empty());
        setup.assert_serves();
    }

    fn a_missing_file_and_an_unknown_op_leave_the_connection_open(mode) {
        let setup = Setup::start(mode, "files-open", &[]);
        let mut raw = setup.raw();
        send_header(&mut raw, &json!({"op": "get", "file_name": "nothing.here"}));
        assert_eq!(
            read_answer(&mut raw),
            json!({"status": "error", "error": "no such file: nothing.here"})
        );
        send_header(&mut raw, &json!({"op": "delete", "file_name": "x"}));
        assert_eq!(
            read_answer(&mut raw),
            json!({"status": "error", "error": "unknown op: delete"})
        );
        send_header(&mut raw, &json!({"op": "list"}));
        assert_eq!(read_answer(&mut raw), json!({"status": "ok", "files": []}));
        // op defaults to put; a zero-byte file is fine.
        send_header(&mut raw, &json!({"file_name": "empty", "file_size": 0}));
        assert_eq!(
            read_answer(&mut raw),
            json!({"status": "ok", "file_name": "empty", "size": 0, "sha256": sha256(b"")})
        );
        assert_eq!(std::fs::read(setup.store().join("empty")).unwrap(), b"");
        // What list does not show is not served: a link out of the directory, a
        // directory, a FIFO.
        std::fs::write(setup.dir.join("outside.txt"), b"private").unwrap();
        std::os::unix::fs::symlink(setup.dir.join("outside.txt"), setup.store().join("link")).unwrap();
        std::fs::create_dir(setup.store().join("subdir")).unwrap();
        let fifo = std::ffi::CString::new(
            setup
                .store()
                .join("fifo")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        send_header(&mut raw, &json!({"op": "list"}));
        assert_eq!(
            read_answer(&mut raw),
            json!({"status": "ok", "files": [{"name": "empty", "size": 0}]})
        );
        for name in ["link", "subdir", "fifo"] {
            send_header(&mut raw, &json!({"op": "get", "file_name": name}));
            assert_eq!(
                read_answer(&mut raw),
                json!({"status": "error", "error": format!("no such file: {name}")})
            );
        }
    }

    fn a_sha256_mismatch_stores_nothing_and_a_match_is_case_insensitive(mode) {
        let setup = Setup::start(mode, "files-sha", &[]);
        let mut client = setup.client();
        let wrong = sha256(b"something else");
        let e = client
            .put("data.bin", &b"payload"[..], 7, Some(&wrong), &mut |_| {})
            .unwrap_err();
        assert_eq!(
            refusal(&e),
            format!(
                "sha256 mismatch for data.bin: expected {wrong}, got {}; not stored",
                sha256(b"payload")
            )
        );
        assert!(setup.entries().is_empty(), "{:?}", setup.entries());
        // Same connection, the right digest in uppercase.
        let stored = client
            .put(
                "data.bin",
                &b"payload"[..],
                7,
                Some(&sha256(b"payload").to_uppercase()),
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(stored.sha256, sha256(b"payload"));
        assert_eq!(setup.entries(), ["data.bin"]);
    }

    fn sizes_over_the_limit_are_refused_before_the_body(mode) {
        let setup = Setup::start(mode, "files-max", &["--max-size", "1KiB"]);
        let mut raw = setup.raw();
        send_header(
            &mut raw,
            &json!({"file_name": "huge.bin", "file_size": 2000}),
        );
        // The answer comes without a byte of body.
        assert_eq!(
            read_answer(&mut raw),
            json!({"status": "error", "error": "file_size 2000 is over the limit of 1024 bytes"})
        );
        assert_closed(&mut raw);
        // The course's client sends everything and closes: still nothing stored.
        let source = setup.dir.join("huge.bin");
        std::fs::write(&source, vec![0u8; 2000]).unwrap();
        let (host, port) = setup.server.host_port();
        // (When python3 is there; the rest of the test needs none.)
        python(
            "files_put_course.py",
            &[&host, &port, source.to_str().unwrap()],
        );
        // Exactly at the limit is fine.
        let stored = setup
            .client()
            .put("ok.bin", &[0u8; 1024][..], 1024, None, &mut |_| {})
            .unwrap();
        assert_eq!(stored.size, 1024);
        assert_eq!(setup.entries(), ["ok.bin"]);
    }

    fn oversized_and_garbage_frames_are_answered_then_closed(mode) {
        let setup = Setup::start(mode, "files-garbage", &[]);
        let mut raw = setup.raw();
        raw.write_all(&100_000u32.to_le_bytes()).unwrap();
        assert_eq!(
            read_answer(&mut raw),
            json!({"status": "error", "error": "frame of 100000 bytes over the limit 65536"})
        );
        assert_closed(&mut raw);
        let mut raw = setup.raw();
        raw.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        assert_eq!(
            read_answer(&mut raw),
            json!({"status": "error", "error": "frame of 542393671 bytes over the limit 65536"})
        );
        assert_closed(&mut raw);
        let mut raw = setup.raw();
        raw.write_all(&[3, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef])
            .unwrap();
        assert_eq!(read_answer(&mut raw)["error"], "the header is not UTF-8");
        assert_closed(&mut raw);
        // A header cut short.
        let mut raw = setup.raw();
        raw.write_all(&[50, 0, 0, 0, b'{']).unwrap();
        raw.shutdown(Shutdown::Write).unwrap();
        assert_closed(&mut raw);
        setup.assert_serves();
    }

    fn list_never_shows_an_upload_in_progress(mode) {
        let setup = Setup::start(mode, "files-progress", &[]);
        let mut raw = setup.raw();
        send_header(
            &mut raw,
            &json!({"file_name": "slow.bin", "file_size": 10_000}),
        );
        raw.write_all(&[5u8; 4_000]).unwrap();
        // Wait until the server has the temporary file (nothing to await on the wire).
        let deadline = Instant::now() + STEP;
        while !setup.entries().iter().any(|n| n.starts_with(TEMP_PREFIX)) {
            assert!(Instant::now() < deadline, "no temporary file appeared");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut client = setup.client();
        assert!(client.list().unwrap().is_empty());
        let e = client
            .get("slow.bin", &mut Vec::new(), &mut |_, _| {})
            .unwrap_err();
        assert_eq!(refusal(&e), "no such file: slow.bin");
        raw.write_all(&[5u8; 6_000]).unwrap();
        let answer = read_answer(&mut raw);
        assert_eq!(answer["size"], 10_000);
        assert_eq!(client.list().unwrap().len(), 1);
        assert_eq!(setup.entries(), ["slow.bin"]);
    }

    fn the_directory_is_created_and_stale_uploads_removed_at_start(mode) {
        let dir = TempDir::new("files-start");
        let store = dir.join("stale");
        std::fs::create_dir(&store).unwrap();
        std::fs::write(store.join(format!("{TEMP_PREFIX}deadbeef")), b"partial").unwrap();
        std::fs::write(store.join(".kept"), b"x").unwrap();
        let store_arg = store.display().to_string();
        let _server = serve(
            "files",
            mode,
            &["--bind", "tcp://127.0.0.1:0", "--dir", &store_arg],
            1,
        );
        let names: Vec<_> = std::fs::read_dir(&store)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [".kept"]);

        let fresh = dir.join("a").join("b");
        let fresh_arg = fresh.display().to_string();
        let _other = serve(
            "files",
            mode,
            &["--bind", "tcp://127.0.0.1:0", "--dir", &fresh_arg],
            1,
        );
        assert!(fresh.is_dir());
    }

    fn with_a_key_only_authenticated_clients_are_served(mode) {
        let dir = TempDir::new("files-auth");
        std::fs::write(dir.join("key"), b"files key").unwrap();
        std::fs::write(dir.join("wrong"), b"guess").unwrap();
        std::fs::write(dir.join("doc.txt"), b"secret doc").unwrap();
        let key = dir.join("key").display().to_string();
        let store = dir.join("store").display().to_string();
        let server = serve(
            "files",
            mode,
            &[
                "--bind",
                "tcp://127.0.0.1:0",
                "--dir",
                &store,
                "--key-file",
                &key,
            ],
            1,
        );
        let url = server.url().to_string();
        let doc = dir.join("doc.txt").display().to_string();
        let (status, out, err) = run_with_input(
            program().args([
                "client",
                "files",
                "--connect",
                &url,
                "--key-file",
                &key,
                "put",
                &doc,
            ]),
            b"",
        );
        assert!(status.success(), "{err}");
        assert!(out.starts_with(b"stored doc.txt (10 bytes"));
        let wrong = dir.join("wrong").display().to_string();
        let (status, _, err) = run_with_input(
            program().args([
                "client",
                "files",
                "--connect",
                &url,
                "--key-file",
                &wrong,
                "list",
            ]),
            b"",
        );
        assert_eq!(status.code(), Some(1));
        assert!(err.contains("authentication denied"), "{err}");
        // Without the handshake, a request is just a wrong answer to the challenge.
        let mut raw = support::connect(server.addr());
        let mut challenge = [0u8; 32];
        raw.read_exact(&mut challenge).unwrap();
        let mut request = Vec::new();
        FrameCodec::new()
            .write_header(&mut request, &json!({"op": "list", "pad": "0123456789"}))
            .unwrap();
        raw.write_all(&request[..32]).unwrap();
        assert_eq!(read_answer(&mut raw), json!({"status": "denied"}));
        assert_closed(&mut raw);
        // The library client with the key.
        let mut stream = support::connect(server.addr());
        client_handshake(
            &mut stream,
            &Key::new(&b"files key"[..]).unwrap(),
            &FrameCodec::new(),
        )
        .unwrap();
        send_header(&mut stream, &json!({"op": "list"}));
        assert_eq!(
            read_answer(&mut stream),
            json!({"status": "ok", "files": [{"name": "doc.txt", "size": 10}]})
        );
    }

    fn serves_on_a_unix_socket_and_refuses_other_transports(mode) {
        let dir = TempDir::new("files-unix");
        let sock = format!("unix:{}", dir.join("files.sock").display());
        let store = dir.join("store").display().to_string();
        let server = serve("files", mode, &["--bind", &sock, "--dir", &store], 1);
        let mut client = FilesClient::connect(
            &server.url().parse().unwrap(),
            None,
            FrameCodec::new(),
            Some(STEP),
        )
        .unwrap();
        client
            .put("u.txt", &b"unix"[..], 4, None, &mut |_| {})
            .unwrap();
        assert_eq!(
            std::fs::read(Path::new(&store).join("u.txt")).unwrap(),
            b"unix"
        );
        let (status, _, _) = run_with_input(
            &mut support::serve_command(
                "files",
                mode,
                &["--bind", "udp://127.0.0.1:0", "--dir", &store],
            ),
            b"",
        );
        assert_eq!(status.code(), Some(2));
    }

    fn hostile_file_names_are_refused_or_kept_inside_the_directory(mode) {
        let dir = TempDir::new("hard-names");
        let store = dir.join("store");
        let server = files_server(mode, &store, &[]);
        let outside = dir.join("outside");
        std::fs::create_dir(&outside).unwrap();
        let refused = [
            "/etc/passwd".to_string(),
            "../outside/x".to_string(),
            "..".to_string(),
            "a/../../x".to_string(),
            "..\\outside\\x".to_string(),
            "C:\\Windows\\x".to_string(),
            "\\\\server\\share".to_string(),
            "a\u{0}b".to_string(),
            "tab\there".to_string(),
            format!("{TEMP_PREFIX}0000"),
        ];
        for name in &refused {
            let mut stream = support::connect(server.addr());
            FrameCodec::new()
                .write_header(&mut stream, &json!({"file_name": name, "file_size": 3}))
                .unwrap();
            stream.write_all(b"bad").unwrap();
            let answer = read_answer(&mut stream);
            assert_eq!(answer["status"], "error", "{name:?}: {answer}");
            assert_closed(&mut stream);
        }
        assert!(entries(&store).is_empty(), "{:?}", entries(&store));
        assert!(entries(&outside).is_empty());

        // Look-alikes of the slash are ordinary characters: one file each, in
        // the directory, under exactly that name.
        let look_alikes = [
            "a\u{2215}b",                // DIVISION SLASH
            "\u{ff0f}etc\u{ff0f}x",      // FULLWIDTH SOLIDUS
            "\u{2024}\u{2024}\u{2215}x", // ONE DOT LEADER twice, then a division slash
            "\u{ff3c}windows",           // FULLWIDTH REVERSE SOLIDUS
        ];
        let mut client = files_client(&server);
        for name in look_alikes {
            let stored = client.put(name, &b"ok"[..], 2, None, &mut |_| {}).unwrap();
            assert_eq!(stored.file_name, name);
            assert_eq!(std::fs::read(store.join(name)).unwrap(), b"ok");
        }
        let mut expected: Vec<String> = look_alikes.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(entries(&store), expected);

        // Names over the file system's 255 bytes: a clear refusal before the
        // body, not a failure after it. Exactly 255 bytes is stored.
        let longest = format!("{}x.txt", "é".repeat(125)); // 250 + 5 bytes
        assert_eq!(longest.len(), 255);
        client
            .put(&longest, &b"long"[..], 4, None, &mut |_| {})
            .unwrap();
        assert_eq!(std::fs::read(store.join(&longest)).unwrap(), b"long");
        let too_long = format!("x{longest}");
        let mut stream = support::connect(server.addr());
        FrameCodec::new()
            .write_header(&mut stream, &json!({"file_name": too_long, "file_size": 4}))
            .unwrap();
        assert_eq!(
            read_answer(&mut stream),
            json!({"status": "error", "error": "refused file name of 256 bytes: the limit is 255 bytes"})
        );
        assert_closed(&mut stream);
        // A get of such a name is refused the same way, and the connection goes on.
        let mut stream = support::connect(server.addr());
        FrameCodec::new()
            .write_header(
                &mut stream,
                &json!({"op": "get", "file_name": "y".repeat(4000)}),
            )
            .unwrap();
        assert_eq!(
            read_answer(&mut stream)["error"],
            "refused file name of 4000 bytes: the limit is 255 bytes"
        );
        FrameCodec::new()
            .write_header(&mut stream, &json!({"op": "list"}))
            .unwrap();
        assert_eq!(read_answer(&mut stream)["status"], "ok");
        assert!(!entries(&store).iter().any(|n| n.starts_with(TEMP_PREFIX)));
        assert_files_serves(&server, &store);
    }

    /// Uploads cut short every way a client can leave: a reset, a
    /// half-close (the server closes), a plain close; a header cut midway.
    /// Nothing is stored, no temporary file stays, `list` shows nothing.
    fn uploads_cut_by_a_reset_a_half_close_or_a_close_leave_nothing(mode) {
        let dir = TempDir::new("hard-cut-uploads");
        let store = dir.join("store");
        let server = files_server(mode, &store, &[]);
        let addr = server.addr();
        for (i, sent) in [0usize, 1, 1000, 30_000, 300_000].into_iter().enumerate() {
            let stream = partial_upload(&addr, &format!("reset{i}"), 1 << 20, sent);
            support::reset(stream);
            let mut stream = partial_upload(&addr, &format!("half{i}"), 1 << 20, sent);
            stream.shutdown(Shutdown::Write).unwrap();
            assert_closed(&mut stream);
            let stream = partial_upload(&addr, &format!("drop{i}"), 1 << 20, sent);
            drop(stream);
        }
        // Header cut midway, too.
        let mut header = Vec::new();
        FrameCodec::new()
            .write_header(&mut header, &json!({"file_name": "h", "file_size": 1}))
            .unwrap();
        for cut in [2, 4, 10] {
            let mut stream = support::connect(&addr);
            stream.write_all(&header[..cut]).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            assert_closed(&mut stream);
        }
        eventually("the cut uploads' temporary files are removed", || {
            entries(&store).is_empty()
        });
        assert!(files_client(&server).list().unwrap().is_empty());
        assert_files_serves(&server, &store);
    }

    /// A download cut by a reset midway, and a client that asks for 8 MiB and
    /// never reads: neither holds the only worker past the write timeout.
    fn downloads_cut_midway_and_clients_that_never_read_free_the_worker(mode) {
        let dir = TempDir::new("hard-never-reads");
        let store = dir.join("store");
        std::fs::create_dir(&store).unwrap();
        // Larger than what the loopback buffers hold in flight when the reader
        // keeps a small window, small enough to hash quickly in a debug build.
        let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(store.join("big"), &big).unwrap();
        // One worker, a one-second write timeout.
        let server = files_server(
            mode,
            &store,
            &[
                "--threads",
                "1",
                "--max-threads",
                "1",
                "--write-timeout",
                "1",
            ],
        );
        let addr = server.addr();
        // A reset in the middle of an answer.
        let mut stream = support::connect(&addr);
        FrameCodec::new()
            .write_header(&mut stream, &json!({"op": "get", "file_name": "big"}))
            .unwrap();
        assert_eq!(read_answer(&mut stream)["file_size"], big.len());
        let mut some = vec![0u8; 100_000];
        stream.read_exact(&mut some).unwrap();
        assert_eq!(some, big[..100_000]);
        support::reset(stream);
        // A client that asks for 8 MiB and never reads (with a small receive
        // window): the only worker is stuck in a write until the write timeout
        // frees it.
        let mut stuck = support::net::connect_small_buffer(&addr);
        FrameCodec::new()
            .write_header(&mut stuck, &json!({"op": "get", "file_name": "big"}))
            .unwrap();
        std::thread::sleep(Duration::from_millis(100)); // let it take the worker
        let started = Instant::now();
        let mut client = files_client(&server);
        let listed = client.list().unwrap();
        let waited = started.elapsed();
        assert_eq!(listed.len(), 1);
        assert!(
            waited < Duration::from_secs(8),
            "the worker was held {waited:?}"
        );
        eprintln!("figures: a client that never reads held the only worker {waited:?}");
        drop(stuck);
    }

    fn sigkill_mid_upload_then_restart_leaves_no_partial_file(mode) {
        let dir = TempDir::new("hard-sigkill");
        let store = dir.join("store");
        let mut server = files_server(mode, &store, &[]);
        let addr = server.addr();
        std::fs::create_dir_all(&store).unwrap();
        let mut client = files_client(&server);
        client
            .put("whole.txt", &b"whole"[..], 5, None, &mut |_| {})
            .unwrap();
        // Two uploads in flight: a new file, and a replacement of whole.txt.
        let _a = partial_upload(&addr, "new.bin", 8 << 20, 1 << 20);
        let _b = partial_upload(&addr, "whole.txt", 8 << 20, 1 << 20);
        eventually("both uploads have a temporary file with data", || {
            let temps: Vec<_> = entries(&store)
                .into_iter()
                .filter(|n| n.starts_with(TEMP_PREFIX))
                .collect();
            temps.len() == 2
                && temps
                    .iter()
                    .all(|t| std::fs::metadata(store.join(t)).is_ok_and(|m| m.len() > 0))
        });
        server.signal("KILL");
        server.wait(STEP).expect("killed");
        // Only the temporaries are left, and the old whole.txt is intact.
        assert_eq!(std::fs::read(store.join("whole.txt")).unwrap(), b"whole");
        assert!(!store.join("new.bin").exists());
        // The restarted server removes the strays before it serves.
        let mut server = files_server(mode, &store, &[]);
        assert_eq!(entries(&store), ["whole.txt"]);
        let mut client = files_client(&server);
        let listed: Vec<String> = client.list().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(listed, ["whole.txt"]);
        server.signal("TERM");
        assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
        let log = server.stderr_text();
        assert_eq!(log.matches("removed the stale upload").count(), 2, "{log}");
    }

    /// the header limit bounds what the server accepts, not what it sends.
    fn a_long_listing_is_one_answer(mode) {
        let setup = Setup::start(mode, "files-long-list", &[]);
        let names: Vec<String> = (0..3000)
            .map(|i| format!("{i:04}-{}", "long name ".repeat(24)))
            .collect();
        for name in &names {
            std::fs::write(setup.store().join(name), b"x").unwrap();
        }
        let listed = setup.client().list().unwrap();
        assert_eq!(listed.len(), 3000);
        assert!(listed
            .iter()
            .zip(&names)
            .all(|(e, n)| &e.name == n && e.size == 1));
        // The same through the program, and the answer's header is far over 64 KiB.
        let (status, out, err) = run_with_input(
            program().args(["client", "files", "--connect", setup.server.url(), "list"]),
            b"",
        );
        assert!(status.success(), "{err}");
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 3000);
        let mut raw = setup.raw();
        send_header(&mut raw, &json!({"op": "list"}));
        let mut len = [0u8; 4];
        raw.read_exact(&mut len).unwrap();
        let len = u32::from_le_bytes(len);
        assert!(len > 64 << 10, "{len}");
        // The connection goes on after it.
        let mut rest = vec![0u8; len as usize];
        raw.read_exact(&mut rest).unwrap();
        send_header(&mut raw, &json!({"op": "get", "file_name": "missing"}));
        assert_eq!(read_answer(&mut raw)["error"], "no such file: missing");
    }

    /// Issue 15, item 9: `client files get NAME` does not overwrite ./NAME
    /// unless told to (`--force`, or `-o` naming the file).
    fn get_does_not_overwrite_a_local_file_unless_told(mode) {
        let setup = Setup::start(mode, "files-overwrite", &[]);
        std::fs::create_dir_all(setup.store()).unwrap();
        std::fs::write(setup.store().join("a.txt"), b"from the server\n").unwrap();
        let here = setup.dir.join("here");
        std::fs::create_dir(&here).unwrap();
        std::fs::write(here.join("a.txt"), b"mine\n").unwrap();
        let url = setup.server.url().to_string();
        let get = |args: &[&str]| {
            let mut command = program();
            command
                .current_dir(&here)
                .args(["client", "files", "--connect", &url, "get"])
                .args(args);
            run_with_input(&mut command, b"")
        };
        let (status, out, err) = get(&["a.txt"]);
        assert_eq!(status.code(), Some(1));
        assert!(out.is_empty());
        assert_eq!(
            err,
            "error: a.txt exists: use --force to replace it, or -o PATH to save elsewhere\n"
        );
        assert_eq!(std::fs::read(here.join("a.txt")).unwrap(), b"mine\n");
        let (status, _, err) = get(&["a.txt", "-o", "a.txt"]);
        assert!(status.success(), "{err}");
        assert_eq!(
            std::fs::read(here.join("a.txt")).unwrap(),
            b"from the server\n"
        );
        std::fs::write(here.join("a.txt"), b"mine again\n").unwrap();
        let (status, out, err) = get(&["--force", "a.txt"]);
        assert!(status.success(), "{err}");
        assert!(out.starts_with(b"saved a.txt to a.txt"));
        assert_eq!(
            std::fs::read(here.join("a.txt")).unwrap(),
            b"from the server\n"
        );
        // Nothing to protect: a plain get.
        std::fs::remove_file(here.join("a.txt")).unwrap();
        let (status, _, err) = get(&["a.txt"]);
        assert!(status.success(), "{err}");
        assert_eq!(
            std::fs::read(here.join("a.txt")).unwrap(),
            b"from the server\n"
        );
    }

    /// Issue 15, item 3: `client files --key-file` pointed at a server that
    /// sends no challenge says so within its `--timeout`.
    fn the_client_says_when_the_server_sends_no_challenge(mode) {
        let setup = Setup::start(mode, "files-no-challenge", &[]);
        std::fs::write(setup.dir.join("key"), b"k").unwrap();
        let key = setup.dir.join("key").display().to_string();
        let started = Instant::now();
        let (status, _, err) = run_with_input(
            program().args([
                "client",
                "files",
                "--connect",
                setup.server.url(),
                "--key-file",
                &key,
                "--timeout",
                "1",
                "list",
            ]),
            b"",
        );
        assert_eq!(status.code(), Some(1));
        assert_eq!(
            err,
            format!(
                "error: no challenge from {} within 1 s: is it a files server with a key?\n",
                setup.server.url()
            )
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
