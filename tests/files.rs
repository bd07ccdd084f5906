//! The files service over loopback, against the program: the course's Python
//! clients, the `client files` command, and every bad input the spec names;
//! after each bad input the same server still serves a new client, and no
//! partial or temporary file is left behind.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use socketserver::client::files::{Entry, FilesClient, Refused};
use socketserver::protocol::auth::{client_handshake, Key};
use socketserver::protocol::framing::{Endian, FrameCodec};
use socketserver::SocketUrl;
use support::{program, run_with_input, ServerProcess, TempDir, STEP};

const TEMP_PREFIX: &str = ".socketserver-part-";

struct Setup {
    dir: TempDir,
    server: ServerProcess,
}

impl Setup {
    /// `serve files` on a free port, storing in `<tempdir>/store`, plus `extra`.
    fn start(name: &str, extra: &[&str]) -> Setup {
        let dir = TempDir::new(name);
        let store = dir.join("store").display().to_string();
        let mut args = vec![
            "serve",
            "files",
            "--bind",
            "tcp://127.0.0.1:0",
            "--dir",
            &store,
        ];
        args.extend_from_slice(extra);
        let server = ServerProcess::start(&args, 1);
        Setup { dir, server }
    }

    fn store(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn url(&self) -> SocketUrl {
        self.server.url().parse().unwrap()
    }

    fn host_port(&self) -> (String, String) {
        let addr = self.server.addr();
        let (host, port) = addr.rsplit_once(':').unwrap();
        (host.to_string(), port.to_string())
    }

    fn client(&self) -> FilesClient {
        FilesClient::connect(&self.url(), None, FrameCodec::new(), Some(STEP)).unwrap()
    }

    fn raw(&self) -> TcpStream {
        let stream = TcpStream::connect(self.server.addr()).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.set_write_timeout(Some(STEP)).unwrap();
        stream
    }

    /// Everything in the directory, hidden files included.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.store())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// A new client can still put, get and list.
    fn assert_serves(&self) {
        let mut client = self.client();
        let stored = client
            .put("probe.txt", &b"probe"[..], 5, None, &mut |_| {})
            .unwrap();
        assert_eq!(stored.size, 5);
        let mut back = Vec::new();
        client.get("probe.txt", &mut back, &mut |_, _| {}).unwrap();
        assert_eq!(back, b"probe");
        assert!(client.list().unwrap().iter().any(|e| e.name == "probe.txt"));
        std::fs::remove_file(self.store().join("probe.txt")).unwrap();
    }
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn python(script: &str, args: &[&str]) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "python", script]
        .iter()
        .collect();
    let (status, out, err) = run_with_input(Command::new("python3").arg(path).args(args), b"");
    assert!(status.success(), "{script} failed: {err}");
    String::from_utf8(out).unwrap()
}

fn send_header(stream: &mut TcpStream, header: &Value) {
    FrameCodec::new().write_header(stream, header).unwrap();
}

fn read_answer(stream: &mut TcpStream) -> Value {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut header = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut header).unwrap();
    serde_json::from_slice(&header).unwrap()
}

fn assert_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "unexpected bytes: {rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

fn refusal(error: &std::io::Error) -> String {
    Refused::from_io(error)
        .unwrap_or_else(|| panic!("not a refusal: {error}"))
        .0
        .clone()
}

#[test]
fn the_course_client_uploads_and_closes_without_reading() {
    // One worker: the next connection is served only after the upload is done.
    let mut setup = Setup::start("files-course", &["--threads", "1", "--max-threads", "1"]);
    let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let source = setup.dir.join("photo.jpg");
    std::fs::write(&source, &data).unwrap();
    let (host, port) = setup.host_port();
    python(
        "files_put_course.py",
        &[&host, &port, source.to_str().unwrap()],
    );
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

#[test]
fn a_python_client_reads_every_answer() {
    let setup = Setup::start("files-python", &[]);
    let source = setup.dir.join("notes.txt");
    std::fs::write(&source, "héllo wörld\n").unwrap();
    let digest = sha256("héllo wörld\n".as_bytes());
    let (host, port) = setup.host_port();
    let out = python("files_ops.py", &[&host, &port, source.to_str().unwrap()]);
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

#[test]
fn big_endian_frames() {
    let setup = Setup::start("files-big", &["--frame-endian", "big"]);
    let source = setup.dir.join("b.bin");
    std::fs::write(&source, b"big endian").unwrap();
    let (host, port) = setup.host_port();
    let out = python(
        "files_ops.py",
        &[&host, &port, source.to_str().unwrap(), "--big"],
    );
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

#[test]
fn the_client_command_puts_gets_and_lists() {
    let setup = Setup::start("files-cli", &[]);
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

#[test]
fn refused_names_are_answered_then_closed_and_nothing_is_stored() {
    let setup = Setup::start("files-names", &[]);
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

#[test]
fn malformed_headers_are_answered_then_closed() {
    let setup = Setup::start("files-malformed", &[]);
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

#[test]
fn a_missing_file_and_an_unknown_op_leave_the_connection_open() {
    let setup = Setup::start("files-open", &[]);
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

#[test]
fn a_sha256_mismatch_stores_nothing_and_a_match_is_case_insensitive() {
    let setup = Setup::start("files-sha", &[]);
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

#[test]
fn a_transfer_cut_short_leaves_nothing_behind() {
    let setup = Setup::start("files-cut", &["--threads", "1", "--max-threads", "1"]);
    let mut raw = setup.raw();
    send_header(
        &mut raw,
        &json!({"file_name": "big.bin", "file_size": 100_000}),
    );
    raw.write_all(&[1u8; 50_000]).unwrap();
    raw.shutdown(Shutdown::Write).unwrap();
    assert_closed(&mut raw);
    // And dropped mid-body without a shutdown.
    let mut raw = setup.raw();
    send_header(
        &mut raw,
        &json!({"file_name": "big.bin", "file_size": 100_000}),
    );
    raw.write_all(&[1u8; 30_000]).unwrap();
    drop(raw);
    // With one worker, this list runs after both uploads were given up.
    assert!(setup.client().list().unwrap().is_empty());
    assert!(setup.entries().is_empty(), "{:?}", setup.entries());
    setup.assert_serves();
}

#[test]
fn sizes_over_the_limit_are_refused_before_the_body() {
    let setup = Setup::start("files-max", &["--max-size", "1KiB"]);
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
    let (host, port) = setup.host_port();
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

#[test]
fn oversized_and_garbage_frames_are_answered_then_closed() {
    let setup = Setup::start("files-garbage", &[]);
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

#[test]
fn list_never_shows_an_upload_in_progress() {
    let setup = Setup::start("files-progress", &[]);
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

#[test]
fn the_directory_is_created_and_stale_uploads_removed_at_start() {
    let dir = TempDir::new("files-start");
    let store = dir.join("stale");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(store.join(format!("{TEMP_PREFIX}deadbeef")), b"partial").unwrap();
    std::fs::write(store.join(".kept"), b"x").unwrap();
    let store_arg = store.display().to_string();
    let _server = ServerProcess::start(
        &[
            "serve",
            "files",
            "--bind",
            "tcp://127.0.0.1:0",
            "--dir",
            &store_arg,
        ],
        1,
    );
    let names: Vec<_> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [".kept"]);

    let fresh = dir.join("a").join("b");
    let fresh_arg = fresh.display().to_string();
    let _other = ServerProcess::start(
        &[
            "serve",
            "files",
            "--bind",
            "tcp://127.0.0.1:0",
            "--dir",
            &fresh_arg,
        ],
        1,
    );
    assert!(fresh.is_dir());
}

#[test]
fn with_a_key_only_authenticated_clients_are_served() {
    let dir = TempDir::new("files-auth");
    std::fs::write(dir.join("key"), b"files key").unwrap();
    std::fs::write(dir.join("wrong"), b"guess").unwrap();
    std::fs::write(dir.join("doc.txt"), b"secret doc").unwrap();
    let key = dir.join("key").display().to_string();
    let store = dir.join("store").display().to_string();
    let server = ServerProcess::start(
        &[
            "serve",
            "files",
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
    let mut raw = TcpStream::connect(server.addr()).unwrap();
    raw.set_read_timeout(Some(STEP)).unwrap();
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
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
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

#[test]
fn serves_on_a_unix_socket_and_refuses_other_transports() {
    let dir = TempDir::new("files-unix");
    let sock = format!("unix:{}", dir.join("files.sock").display());
    let store = dir.join("store").display().to_string();
    let server = ServerProcess::start(&["serve", "files", "--bind", &sock, "--dir", &store], 1);
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
        program().args([
            "serve",
            "files",
            "--bind",
            "udp://127.0.0.1:0",
            "--dir",
            &store,
        ]),
        b"",
    );
    assert_eq!(status.code(), Some(2));
}

/// Issue 14, item 7 (rule 18): a listing is one answer whatever its size;
/// the header limit bounds what the server accepts, not what it sends.
fn a_long_listing_is_one_answer_case(extra_args: &[&str]) {
    let setup = Setup::start("files-long-list", extra_args);
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

#[test]
fn a_long_listing_is_one_answer() {
    a_long_listing_is_one_answer_case(&[]);
}

/// Issue 15, item 9: `client files get NAME` does not overwrite ./NAME
/// unless told to (`--force`, or `-o` naming the file).
fn get_does_not_overwrite_case(extra_args: &[&str]) {
    let setup = Setup::start("files-overwrite", extra_args);
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

#[test]
fn get_does_not_overwrite_a_local_file_unless_told() {
    get_does_not_overwrite_case(&[]);
}

/// Issue 15, item 3: `client files --key-file` pointed at a server that
/// sends no challenge says so within its `--timeout`.
fn not_an_authenticating_files_server_case(extra_args: &[&str]) {
    let setup = Setup::start("files-no-challenge", extra_args);
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

#[test]
fn the_client_says_when_the_server_sends_no_challenge() {
    not_an_authenticating_files_server_case(&[]);
}
