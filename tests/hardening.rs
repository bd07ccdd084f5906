//! Adversarial tests against the program (issue 5): resets and half-closes
//! in the middle of frames, uploads and answers; clients that never read;
//! replayed, truncated and flooded handshakes; hostile file names; a server
//! killed with SIGKILL in the middle of an upload; and SIGTERM while echo
//! clients stream and uploads run. Each test checks that the fault cost only
//! the offending connection: the server still serves, no byte of a finished
//! reply is wrong, no partial file is visible.
//!
//! Everything is on loopback, on port 0, bounded by read timeouts.

#![allow(dead_code, unused_imports)]

mod support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use socket2::{Domain, Socket, Type};
use socketserver::client::exec::ExecClient;
use socketserver::client::files::FilesClient;
use socketserver::protocol::auth::{client_handshake, Key};
use socketserver::protocol::framing::FrameCodec;
use socketserver::SocketUrl;
use support::{eventually, ServerProcess, TempDir, STEP};

const KEY: &[u8] = b"hardening key";
const TEMP_PREFIX: &str = ".socketserver-part-";

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A TCP connection from `local` (any 127.x.y.z address) to `addr`, with
/// timeouts.
fn connect_from(local: &str, addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{local}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect_timeout(&addr.into(), STEP).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.set_write_timeout(Some(STEP)).unwrap();
    stream
}

fn connect(addr: &str) -> TcpStream {
    connect_from("127.0.0.1", addr)
}

/// Closes with a reset (RST) instead of a FIN: SO_LINGER with a zero time.
fn reset(stream: TcpStream) {
    Socket::from(stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

fn read_answer(stream: &mut impl Read) -> Value {
    let header = FrameCodec::new()
        .read_header(stream, &mut Vec::new())
        .unwrap()
        .expect("an answer");
    Value::Object(header)
}

/// The peer closed (end of input, or a reset).
fn assert_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "unexpected bytes: {rest:?}"),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
    }
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

fn files_server(store: &Path, extra: &[&str]) -> ServerProcess {
    let store = store.display().to_string();
    let mut args = vec![
        "serve",
        "files",
        "--bind",
        "tcp://127.0.0.1:0",
        "--dir",
        &store,
    ];
    args.extend_from_slice(extra);
    ServerProcess::start_with(support::program().args(&args).env("RUST_LOG", "info"), 1)
}

fn files_client(server: &ServerProcess) -> FilesClient {
    let url: SocketUrl = server.url().parse().unwrap();
    FilesClient::connect(&url, None, FrameCodec::new(), Some(STEP)).unwrap()
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
    std::fs::remove_file(store.join("probe.txt")).unwrap();
}

/// `serve exec` with a key file, allowing `touch` and `echo`, in a fresh
/// working directory.
struct ExecSetup {
    dir: TempDir,
    server: ServerProcess,
}

impl ExecSetup {
    fn start(name: &str, extra: &[&str]) -> ExecSetup {
        let dir = TempDir::new(name);
        std::fs::write(dir.join("key"), KEY).unwrap();
        std::fs::create_dir(dir.join("work")).unwrap();
        let key = dir.join("key").display().to_string();
        let work = dir.join("work").display().to_string();
        let mut args = vec![
            "serve",
            "exec",
            "--bind",
            "tcp://127.0.0.1:0",
            "--key-file",
            &key,
            "--workdir",
            &work,
            "--allow",
            "touch",
            "--allow",
            "echo",
        ];
        args.extend_from_slice(extra);
        let server =
            ServerProcess::start_with(support::program().args(&args).env("RUST_LOG", "info"), 1);
        ExecSetup { dir, server }
    }

    fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    fn client_from(&self, local: &str) -> io::Result<ExecClient> {
        let stream = connect_from(local, &self.server.addr());
        ExecClient::handshake(
            socketserver::client::Connection::Tcp(stream),
            &Key::new(KEY).unwrap(),
            FrameCodec::new(),
        )
    }

    fn assert_serves_from(&self, local: &str) {
        let output = self
            .client_from(local)
            .expect("a client with the key is let in")
            .run("echo still serving")
            .unwrap()
            .unwrap();
        assert_eq!(output.stdout, b"still serving\n");
    }
}

/// Starts an upload of `size` bytes named `name` and sends `sent` of them.
fn partial_upload(addr: &str, name: &str, size: usize, sent: usize) -> TcpStream {
    let mut stream = connect(addr);
    FrameCodec::new()
        .write_header(&mut stream, &json!({"file_name": name, "file_size": size}))
        .unwrap();
    stream.write_all(&vec![b'p'; sent]).unwrap();
    stream
}

#[test]
fn sigterm_while_echo_clients_stream_and_uploads_run_loses_nothing() {
    let dir = TempDir::new("hard-term-uploads");
    let store = dir.join("store");
    let mut files = files_server(&store, &["--shutdown-timeout", "3"]);
    let mut echo = ServerProcess::start(
        &[
            "serve",
            "echo-upper",
            "--bind",
            "tcp://127.0.0.1:0",
            "--shutdown-timeout",
            "3",
        ],
        1,
    );
    let signalled = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<()>();

    // 200 echo clients: every reply they get must be whole and right.
    let echo_addr = echo.addr();
    let echoers: Vec<_> = (0..200)
        .map(|i| {
            let (addr, signalled, ready) = (echo_addr.clone(), signalled.clone(), ready_tx.clone());
            std::thread::spawn(move || -> usize {
                let mut stream = connect(&addr);
                let message: Vec<u8> = (0..1024)
                    .map(|n| b"abcdefghijklmnopqrstuvwxyz"[(n + i) % 26])
                    .collect();
                let expected = message.to_ascii_uppercase();
                let mut answer = vec![0u8; message.len()];
                stream.write_all(&message).unwrap();
                stream.read_exact(&mut answer).unwrap();
                assert_eq!(answer, expected);
                ready.send(()).unwrap();
                let mut rounds = 1;
                let mut after = 0;
                loop {
                    if signalled.load(SeqCst) {
                        after += 1;
                        if i % 2 == 0 && after > 3 {
                            break;
                        }
                    }
                    if stream.write_all(&message).is_err() {
                        break;
                    }
                    match stream.read_exact(&mut answer) {
                        Ok(()) => assert_eq!(answer, expected, "client {i}: a corrupt reply"),
                        Err(_) => break,
                    }
                    rounds += 1;
                }
                let _ = stream.shutdown(Shutdown::Write);
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                assert_eq!(rest.len() % message.len(), 0, "client {i}: a partial reply");
                assert!(rest.chunks(message.len()).all(|c| c == expected));
                rounds
            })
        })
        .collect();

    // 20 uploaders, each putting distinct 1 MiB files with their digest,
    // paced so that uploads are in flight when the signal comes. Even ones
    // keep one connection (cut at the deadline if still going), odd ones
    // connect per file (refused once the listener is closed).
    let files_url: SocketUrl = files.url().parse().unwrap();
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let uploaders: Vec<_> = (0..20)
        .map(|i| {
            let (url, signalled, ready, acknowledged) = (
                files_url.clone(),
                signalled.clone(),
                ready_tx.clone(),
                acknowledged.clone(),
            );
            std::thread::spawn(move || -> Vec<(String, String)> {
                let mut stored = Vec::new();
                let mut client = None;
                let mut after = 0;
                for round in 0.. {
                    if signalled.load(SeqCst) {
                        after += 1;
                        if after > 6 {
                            break;
                        }
                    }
                    let data: Vec<u8> = (0..1u32 << 20)
                        .map(|n| (n.wrapping_mul(31) ^ (i * 7 + round) as u32) as u8)
                        .collect();
                    let name = format!("u{i}-{round}.bin");
                    let digest = sha256(&data);
                    if client.is_none() || i % 2 == 1 {
                        match FilesClient::connect(&url, None, FrameCodec::new(), Some(STEP)) {
                            Ok(c) => client = Some(c),
                            Err(_) => break, // the listener is closed
                        }
                    }
                    // A reader that trickles, so the upload takes a while.
                    let paced = Paced { data: &data, at: 0 };
                    let result = client.as_mut().unwrap().put(
                        &name,
                        paced,
                        data.len() as u64,
                        Some(&digest),
                        &mut |_| {},
                    );
                    match result {
                        Ok(answer) => {
                            assert_eq!(answer.sha256, digest);
                            acknowledged.fetch_add(1, SeqCst);
                            stored.push((name, digest));
                        }
                        Err(_) => break, // cut at the deadline
                    }
                    if round == 0 {
                        ready.send(()).unwrap();
                    }
                }
                stored
            })
        })
        .collect();
    drop(ready_tx);
    for _ in 0..220 {
        ready_rx
            .recv_timeout(STEP)
            .expect("every client was served once");
    }
    std::thread::sleep(Duration::from_millis(200));
    files.signal("TERM");
    echo.signal("TERM");
    let signalled_at = Instant::now();
    signalled.store(true, SeqCst);
    let deadline = Duration::from_secs(3) + Duration::from_secs(3);
    assert_eq!(files.wait(STEP).and_then(|s| s.code()), Some(0));
    assert_eq!(echo.wait(STEP).and_then(|s| s.code()), Some(0));
    assert!(
        signalled_at.elapsed() < deadline,
        "took {:?} to exit",
        signalled_at.elapsed()
    );
    let mut echo_rounds = 0;
    for (i, echoer) in echoers.into_iter().enumerate() {
        let rounds = echoer.join().unwrap();
        assert!(rounds > 0, "echo client {i}");
        echo_rounds += rounds;
    }
    let mut acked = Vec::new();
    for uploader in uploaders {
        acked.extend(uploader.join().unwrap());
    }
    assert_eq!(acked.len(), acknowledged.load(SeqCst));
    assert!(acked.len() >= 20);
    // Every acknowledged upload is stored whole; every stored file is one
    // that was acknowledged or whole (an upload finished as the client was
    // cut); no temporary file is left.
    let on_disk = entries(&store);
    assert!(
        !on_disk.iter().any(|n| n.starts_with(TEMP_PREFIX)),
        "{on_disk:?}"
    );
    for (name, digest) in &acked {
        let data = std::fs::read(store.join(name)).unwrap();
        assert_eq!(&sha256(&data), digest, "{name} is not whole");
    }
    for name in &on_disk {
        let data = std::fs::read(store.join(name)).unwrap();
        assert_eq!(data.len(), 1 << 20, "{name} is partial");
    }
    let log = files.stderr_text();
    assert!(!log.contains("panicked"), "{log}");
    let cut = log.matches("nothing kept").count();
    eprintln!(
        "figures: {echo_rounds} whole echo replies of 1 KiB to 200 clients; {} uploads of 1 MiB \
         acknowledged and stored whole, {cut} cut at the deadline and not kept, {} files on disk; \
         both servers exited 0 in {:?}",
        acked.len(),
        on_disk.len(),
        signalled_at.elapsed()
    );
}

/// Hands out data 64 KiB at a time with a short pause, like a slow link.
struct Paced<'a> {
    data: &'a [u8],
    at: usize,
}

impl Read for Paced<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at > 0 && self.at % (256 << 10) == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        let n = buf.len().min(64 << 10).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
