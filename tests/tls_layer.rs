//! The TLS layer (`socketserver::layer::tls`, feature `tls`): loading PEM
//! files, the blocking server stream on worker threads over loopback TCP,
//! the client side's verification, and the non-blocking session driven by
//! a poll loop.
//!
//! Certificates are made in-process (rcgen); no private key is committed.
//! Some tests use the `openssl` program (to write PKCS#1 and SEC1 keys, and
//! as a foreign client): without it they fail under CI (`CI` set) and are
//! skipped, saying so, elsewhere.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rcgen::{CertificateParams, DnType, KeyPair};
use socketserver::layer::tls::rustls::{self, ClientConfig, ClientConnection, ServerConfig};
use socketserver::layer::tls::{
    client_config, crypto_provider, server_config_from_pem, server_name, ClientConfigError,
    PeerClose, TlsFile, TlsInfo, TlsSession, TlsSessionError, TlsStream, KEY_MISMATCH,
};
use support::certs::{authority, client_with_versions, intermediate, Authority};
use support::{TempDir, Tool, STEP};

// ---------------------------------------------------------------------------
// A counting allocator: live bytes per thread, for the idle session's cost.

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}

// SAFETY: every call goes to the system allocator unchanged; the counting
// touches only a thread-local cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

// ---------------------------------------------------------------------------
// Files and certificates.

fn leaf_params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "test server");
    params
}

/// A server certificate for `names` signed by `ca`: (certificate PEM, PKCS#8
/// key PEM).
fn leaf(ca: &Authority, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(names).signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The usual setup: a CA, and a server certificate for `localhost` and
/// `127.0.0.1` in files.
struct Pki {
    dir: TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(name: &str) -> Pki {
    let dir = TempDir::new(name);
    let ca = authority("test CA");
    let (cert, key) = leaf(&ca, &["localhost", "127.0.0.1"]);
    Pki {
        ca: dir.write("ca.pem", &ca.pem),
        cert: dir.write("cert.pem", cert),
        key: dir.write("key.pem", key),
        dir,
    }
}

impl Pki {
    fn server(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        server_config_from_pem(&self.cert, &self.key, alpn).unwrap()
    }
    fn client(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        client_config(Some(&self.ca), alpn).unwrap()
    }
}

// ---------------------------------------------------------------------------
// openssl, when there is one.

/// Whether the `openssl` program runs: without it a test fails under CI
/// and is skipped elsewhere, saying why (see `support::tool`).
fn have_openssl() -> bool {
    support::tool(Tool::Openssl).is_some()
}

/// Runs a command to its end, bounded by [`STEP`] (killed after that).
fn run_bounded(command: &mut Command, input: &[u8]) -> Output {
    let (status, stdout, stderr) = support::run_with_input(command, input);
    Output {
        status,
        stdout,
        stderr: stderr.into_bytes(),
    }
}

fn openssl(dir: &TempDir, args: &[&str]) {
    let output = run_bounded(Command::new("openssl").args(args).current_dir(&dir.0), b"");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------
// A server on loopback: an accepting thread hands each connection to a
// worker thread, which runs the handshake and then `handler`.

struct Outcome {
    /// How long the handshake took (until it succeeded or failed).
    took: Duration,
    result: io::Result<TlsInfo>,
}

struct Server {
    addr: SocketAddr,
    outcomes: mpsc::Receiver<Outcome>,
}

impl Server {
    fn outcome(&self) -> Outcome {
        self.outcomes
            .recv_timeout(STEP)
            .expect("the worker reports its handshake")
    }
}

/// Serves `connections` connections, then stops accepting.
fn serve(
    config: Arc<ServerConfig>,
    deadline: Duration,
    connections: usize,
    handler: fn(TlsStream),
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, outcomes) = mpsc::channel();
    thread::spawn(move || {
        for _ in 0..connections {
            let Ok((socket, _)) = listener.accept() else {
                return;
            };
            let config = Arc::clone(&config);
            let tx = tx.clone();
            thread::spawn(move || {
                let start = Instant::now();
                let result = TlsStream::accept(socket.into(), config, &[], Some(start + deadline));
                let took = start.elapsed();
                match result {
                    Ok(stream) => {
                        let _ = tx.send(Outcome {
                            took,
                            result: Ok(stream.info().clone()),
                        });
                        handler(stream);
                    }
                    Err(e) => {
                        let _ = tx.send(Outcome {
                            took,
                            result: Err(e),
                        });
                    }
                }
            });
        }
    });
    Server { addr, outcomes }
}

/// Answers each line in upper case until end of stream, then sends
/// `close_notify`.
fn echo_upper(stream: TlsStream) {
    let mut reader = BufReader::new(&stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                line.make_ascii_uppercase();
                if (&stream).write_all(&line).is_err() {
                    break;
                }
            }
        }
    }
    let _ = stream.close_notify(Duration::from_secs(1));
}

/// Answers one line, then sends `close_notify`.
fn answer_one_line(stream: TlsStream) {
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_ok() {
        let _ = (&stream).write_all(line.to_uppercase().as_bytes());
    }
    let _ = stream.close_notify(Duration::from_secs(1));
}

fn connect(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> io::Result<TlsStream> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(STEP))?;
    let deadline = Instant::now() + STEP;
    let stream = TlsStream::connect(tcp, config, server_name(name)?, Some(deadline))?;
    stream.set_read_timeout(Some(STEP))?;
    Ok(stream)
}

/// One line there and back.
fn round_trip(stream: &TlsStream, line: &str) -> String {
    let mut writer = stream;
    writer.write_all(line.as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).unwrap();
    answer
}

/// The first bytes a rustls client sends (its ClientHello record).
fn client_hello() -> Vec<u8> {
    let config = client_with_versions_any();
    let mut conn = ClientConnection::new(config, server_name("localhost").unwrap()).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    hello
}

/// A client configuration that trusts nothing (for ClientHellos only).
fn client_with_versions_any() -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    )
}

// ---------------------------------------------------------------------------
// PEM files.

#[test]
fn a_chain_with_an_intermediate_is_sent_whole() {
    let dir = TempDir::new("chain");
    let root = authority("root CA");
    let middle = intermediate(&root, "intermediate CA");
    let (cert, key) = leaf(&middle, &["localhost"]);
    let root_path = dir.write("root.pem", &root.pem);
    let chain = dir.write("chain.pem", format!("{cert}{}", middle.pem));
    let alone = dir.write("alone.pem", &cert);
    let key = dir.write("key.pem", key);

    let with_chain = server_config_from_pem(&chain, &key, &[]).unwrap();
    let server = serve(with_chain, STEP, 1, answer_one_line);
    let client = connect(
        server.addr,
        client_config(Some(&root_path), &[]).unwrap(),
        "localhost",
    )
    .expect("the intermediate comes with the certificate");
    assert_eq!(round_trip(&client, "chain\n"), "CHAIN\n");
    assert!(server.outcome().result.is_ok());

    // Without the intermediate, the client cannot reach its root.
    let without = server_config_from_pem(&alone, &key, &[]).unwrap();
    let server = serve(without, STEP, 1, echo_upper);
    let err = connect(
        server.addr,
        client_config(Some(&root_path), &[]).unwrap(),
        "localhost",
    )
    .expect_err("the chain is incomplete");
    assert!(err.to_string().contains("unknown issuer"), "{err}");
    assert!(server.outcome().result.is_err());
}

#[test]
fn a_pkcs8_key_loads_and_serves() {
    let pki = pki("pkcs8");
    let key = std::fs::read_to_string(&pki.key).unwrap();
    assert!(key.contains("-----BEGIN PRIVATE KEY-----"), "{key}");
    let server = serve(pki.server(&[]), STEP, 1, answer_one_line);
    let client = connect(server.addr, pki.client(&[]), "localhost").unwrap();
    assert_eq!(round_trip(&client, "pkcs8\n"), "PKCS8\n");
}

/// A key written by openssl in `format` (`BEGIN {marker}`), a certificate
/// for it from an rcgen CA, and a handshake with a client that trusts the
/// CA.
fn serve_with_openssl_key(name: &str, generate: &[&str], marker: &str) {
    let dir = TempDir::new(name);
    openssl(&dir, generate);
    let original = std::fs::read_to_string(dir.0.join("key.pem")).unwrap();
    assert!(
        original.contains(&format!("-----BEGIN {marker}-----")),
        "{original}"
    );
    // rcgen takes PKCS#8 only: a converted copy, for making the certificate.
    openssl(&dir, &["pkey", "-in", "key.pem", "-out", "key8.pem"]);
    let key8 =
        KeyPair::from_pem(&std::fs::read_to_string(dir.0.join("key8.pem")).unwrap()).unwrap();
    let ca = authority("test CA");
    let cert = leaf_params(&["localhost"])
        .signed_by(&key8, &ca.issuer)
        .unwrap();
    let cert_path = dir.write("cert.pem", cert.pem());
    let ca_path = dir.write("ca.pem", &ca.pem);

    let config = server_config_from_pem(&cert_path, &dir.0.join("key.pem"), &[])
        .unwrap_or_else(|e| panic!("{marker}: {e}"));
    let server = serve(config, STEP, 1, answer_one_line);
    let client = connect(
        server.addr,
        client_config(Some(&ca_path), &[]).unwrap(),
        "localhost",
    )
    .unwrap_or_else(|e| panic!("{marker}: {e}"));
    assert_eq!(round_trip(&client, "key\n"), "KEY\n");
}

#[test]
fn a_pkcs1_rsa_key_loads_and_serves() {
    if have_openssl() {
        serve_with_openssl_key(
            "pkcs1",
            &["genrsa", "-traditional", "-out", "key.pem", "2048"],
            "RSA PRIVATE KEY",
        );
    }
}

#[test]
fn a_sec1_ec_key_loads_and_serves() {
    if have_openssl() {
        serve_with_openssl_key(
            "sec1",
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "key.pem",
            ],
            "EC PRIVATE KEY",
        );
    }
}

#[test]
fn an_unreadable_file_is_named_with_its_reason() {
    let pki = pki("unreadable");
    let missing = pki.dir.0.join("missing.pem");

    let e = server_config_from_pem(&missing, &pki.key, &[]).unwrap_err();
    assert_eq!(e.file(), TlsFile::Certificate);
    assert_eq!(e.file().flag(), "--tls-cert");
    assert_eq!(e.path(), missing);
    assert_eq!(e.reason(), "cannot read it: No such file or directory");

    let e = server_config_from_pem(&pki.cert, &missing, &[]).unwrap_err();
    assert_eq!(e.file(), TlsFile::PrivateKey);
    assert_eq!(e.file().flag(), "--tls-key");
    assert_eq!(e.reason(), "cannot read it: No such file or directory");

    let e = server_config_from_pem(&pki.dir.0, &pki.key, &[]).unwrap_err();
    assert_eq!(e.reason(), "is a directory");
    assert!(e.to_string().contains(&*pki.dir.0.to_string_lossy()), "{e}");
}

#[test]
fn a_file_without_a_certificate_or_key_says_so() {
    let pki = pki("absent");
    // The key file has no certificate in it, and the certificate no key.
    let e = server_config_from_pem(&pki.key, &pki.key, &[]).unwrap_err();
    assert_eq!(
        (e.file(), e.reason()),
        (TlsFile::Certificate, "no certificate in it")
    );
    let e = server_config_from_pem(&pki.cert, &pki.cert, &[]).unwrap_err();
    assert_eq!(
        (e.file(), e.reason()),
        (TlsFile::PrivateKey, "no private key in it")
    );

    let text = pki.dir.write("text.pem", "just some words\n");
    let e = server_config_from_pem(&text, &pki.key, &[]).unwrap_err();
    assert!(e.reason().starts_with("not PEM"), "{}", e.reason());
    let e = server_config_from_pem(&pki.cert, &text, &[]).unwrap_err();
    assert!(e.reason().starts_with("not PEM"), "{}", e.reason());

    let broken = pki
        .dir
        .write("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
    let e = server_config_from_pem(&broken, &pki.key, &[]).unwrap_err();
    assert!(e.reason().starts_with("not valid PEM"), "{}", e.reason());

    let garbage = pki.dir.write(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let e = server_config_from_pem(&garbage, &pki.key, &[]).unwrap_err();
    assert_eq!(e.file(), TlsFile::Certificate);
    assert!(
        e.reason().contains("not a valid X.509 certificate"),
        "{}",
        e.reason()
    );
}

#[test]
fn a_key_of_another_certificate_is_refused_with_the_exact_reason() {
    let pki = pki("mismatch");
    let other = pki
        .dir
        .write("other.pem", KeyPair::generate().unwrap().serialize_pem());
    let e = server_config_from_pem(&pki.cert, &other, &[]).unwrap_err();
    assert_eq!(e.file(), TlsFile::PrivateKey);
    assert_eq!(e.path(), other);
    assert_eq!(e.reason(), "the key does not match the certificate");
    assert_eq!(e.reason(), KEY_MISMATCH);
}

// ---------------------------------------------------------------------------
// The blocking server stream.

#[test]
fn tls13_only_and_tls12_only_clients_are_both_served() {
    let pki = pki("versions");
    let server = serve(pki.server(&[]), STEP, 2, echo_upper);
    for (version, expected) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let client = connect(
            server.addr,
            client_with_versions(&pki.ca, &[version]),
            "localhost",
        )
        .unwrap();
        assert_eq!(client.info().protocol_version, expected);
        assert_eq!(round_trip(&client, "over tls\n"), "OVER TLS\n");
        let info = server.outcome().result.unwrap();
        assert_eq!(info.protocol_version, expected);
    }
}

#[test]
fn openssl_as_a_client_speaks_tls12_and_tls13() {
    if !have_openssl() {
        return;
    }
    let pki = pki("openssl-client");
    let server = serve(pki.server(&[]), STEP, 2, answer_one_line);
    for (flag, name) in [("-tls1_3", "TLSv1_3"), ("-tls1_2", "TLSv1_2")] {
        let output = run_bounded(
            Command::new("openssl").args([
                "s_client",
                "-connect",
                &server.addr.to_string(),
                flag,
                "-servername",
                "localhost",
                "-CAfile",
                &pki.ca.to_string_lossy(),
                "-verify_return_error",
                "-ign_eof",
            ]),
            b"from openssl\n",
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("FROM OPENSSL"), "{flag}: {stdout}");
        let info = server.outcome().result.unwrap();
        assert_eq!(format!("{:?}", info.protocol_version), name);
        assert_eq!(info.server_name.as_deref(), Some("localhost"));
    }
}

#[test]
fn a_tls11_client_is_refused_cleanly() {
    if !have_openssl() {
        return;
    }
    let pki = pki("tls11");
    let server = serve(pki.server(&[]), STEP, 1, echo_upper);
    let output = run_bounded(
        Command::new("openssl").args([
            "s_client",
            "-connect",
            &server.addr.to_string(),
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ]),
        b"",
    );
    assert!(!output.status.success(), "the handshake must fail");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // rustls answers with a fatal alert (handshake_failure).
    assert!(said.contains("alert"), "{said}");
    assert!(said.contains("read 7 bytes"), "one alert record: {said}");
    let outcome = server.outcome();
    let err = outcome.result.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    assert!(outcome.took < Duration::from_secs(5), "{:?}", outcome.took);
}

#[test]
fn a_plaintext_client_gets_an_alert_and_is_closed_at_once() {
    let pki = pki("plaintext");
    let server = serve(pki.server(&[]), Duration::from_secs(10), 1, echo_upper);
    let start = Instant::now();
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(STEP)).unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer)
        .expect("a clean close, not a reset");
    let took = start.elapsed();
    // An alert record: content type 21, version 3.x, a two-byte alert.
    assert_eq!(answer.first(), Some(&21), "{answer:?}");
    assert_eq!(answer.len(), 7, "{answer:?}");
    assert_eq!(answer[5], 2, "a fatal alert: {answer:?}");
    assert!(
        took < Duration::from_secs(3),
        "closed after {took:?}, not at once"
    );
    let outcome = server.outcome();
    assert_eq!(
        outcome.result.unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
}

#[test]
fn a_silent_client_and_a_stalled_one_are_closed_at_the_deadline() {
    let pki = pki("stalled");
    let deadline = Duration::from_secs(1);
    let server = serve(pki.server(&[]), deadline, 2, echo_upper);
    let hello = client_hello();
    assert!(hello.len() > 100, "{}", hello.len());

    let silent = TcpStream::connect(server.addr).unwrap();
    let mut half = TcpStream::connect(server.addr).unwrap();
    half.write_all(&hello[..hello.len() / 2]).unwrap();
    let start = Instant::now();
    for mut client in [silent, half] {
        client.set_read_timeout(Some(STEP)).unwrap();
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        assert!(
            rest.is_empty(),
            "nothing is sent to a client that never finished its hello"
        );
    }
    let took = start.elapsed();
    assert!(
        took >= deadline - Duration::from_millis(100),
        "closed after {took:?}"
    );
    assert!(
        took < deadline + Duration::from_secs(4),
        "closed after {took:?}"
    );
    for _ in 0..2 {
        let outcome = server.outcome();
        assert_eq!(outcome.result.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }
}

#[test]
fn a_stalled_client_does_not_delay_another_handshake() {
    let pki = pki("not-delayed");
    let deadline = Duration::from_secs(5);
    let server = serve(pki.server(&[]), deadline, 2, echo_upper);
    let hello = client_hello();
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();
    let start = Instant::now();

    let client = connect(server.addr, pki.client(&[]), "localhost").unwrap();
    assert_eq!(round_trip(&client, "not delayed\n"), "NOT DELAYED\n");
    let took = start.elapsed();
    assert!(took < deadline, "the second handshake waited {took:?}");
    // The first report is the second client's success; the stalled one's
    // comes at its deadline.
    assert!(server.outcome().result.is_ok());
    let stalled_outcome = server.outcome();
    assert_eq!(
        stalled_outcome.result.unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    drop(stalled);
}

#[test]
fn already_read_bytes_start_the_handshake() {
    let pki = pki("already-read");
    let config = pki.server(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let worker = thread::spawn(move || -> io::Result<String> {
        let (mut socket, _) = listener.accept()?;
        socket.set_read_timeout(Some(STEP))?;
        // A PROXY header's reader would have read these first.
        let mut first = [0u8; 11];
        socket.read_exact(&mut first)?;
        let stream = TlsStream::accept(socket.into(), config, &first, Some(Instant::now() + STEP))?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        Ok(line)
    });
    let client = connect(addr, pki.client(&[]), "localhost").unwrap();
    (&client).write_all(b"after the header\n").unwrap();
    assert_eq!(worker.join().unwrap().unwrap(), "after the header\n");
}

#[test]
fn a_reader_blocked_in_read_does_not_block_a_writer() {
    let pki = pki("duplex");
    fn duplex(stream: TlsStream) {
        let writer = stream.try_clone_writer().unwrap();
        let (go, ready) = mpsc::channel::<()>();
        let (acks_tx, acks) = mpsc::channel::<()>();
        let reader = thread::spawn(move || {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            reader.read_line(&mut line).unwrap(); // "start"
            go.send(()).unwrap();
            line.clear();
            // Blocks until the client has received every message below.
            reader.read_line(&mut line).unwrap();
            acks_tx.send(()).unwrap();
            line
        });
        ready.recv().unwrap();
        let mut writer = writer;
        for n in 0..3 {
            writeln!(writer, "message {n}").unwrap();
        }
        acks.recv_timeout(STEP).unwrap();
        let last = reader.join().unwrap();
        writeln!(writer, "the reader read {}", last.trim()).unwrap();
    }
    let server = serve(pki.server(&[]), STEP, 1, duplex);
    let client = connect(server.addr, pki.client(&[]), "localhost").unwrap();
    (&client).write_all(b"start\n").unwrap();
    let mut reader = BufReader::new(&client);
    for n in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, format!("message {n}\n"));
    }
    (&client).write_all(b"done\n").unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "the reader read done\n");
}

#[test]
fn shutdown_from_another_thread_wakes_a_blocked_reader() {
    let pki = pki("shutdown");
    fn wake(stream: TlsStream) {
        let writer = stream.try_clone_writer().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 64];
            tx.send(()).unwrap();
            let n = (&stream).read(&mut buf);
            n.map_err(|e| e.kind())
        });
        rx.recv().unwrap();
        (&writer).write_all(b"bye\n").unwrap();
        // The client answers "bye" only once the reader is waiting.
        writer.shutdown().unwrap();
        assert_eq!(
            reader.join().unwrap(),
            Ok(0),
            "a local shutdown reads as end of stream"
        );
    }
    let server = serve(pki.server(&[]), STEP, 1, wake);
    let client = connect(server.addr, pki.client(&[]), "localhost").unwrap();
    let mut line = String::new();
    BufReader::new(&client).read_line(&mut line).unwrap();
    assert_eq!(line, "bye\n");
    // The server shut down without close_notify: the client sees a cut.
    let mut rest = Vec::new();
    let err = (&client).read_to_end(&mut rest).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn close_notify_reaches_the_client_on_close() {
    let pki = pki("close-notify");
    fn explicit(stream: TlsStream) {
        (&stream).write_all(b"explicit\n").unwrap();
        stream.close_notify(Duration::from_secs(1)).unwrap();
        // A write after close_notify fails.
        assert!((&stream).write_all(b"more\n").is_err());
    }
    fn dropped(stream: TlsStream) {
        (&stream).write_all(b"dropped\n").unwrap();
        drop(stream);
    }
    for (handler, said) in [
        (explicit as fn(TlsStream), "explicit\n"),
        (dropped, "dropped\n"),
    ] {
        let server = serve(pki.server(&[]), STEP, 1, handler);
        let client = connect(server.addr, pki.client(&[]), "localhost").unwrap();
        let mut all = String::new();
        // read_to_string ends cleanly only after a close_notify: a bare end
        // of stream is UnexpectedEof.
        (&client)
            .read_to_string(&mut all)
            .unwrap_or_else(|e| panic!("{said:?}: {e}"));
        assert_eq!(all, said);
    }
}

#[test]
fn alpn_and_sni_are_visible_and_an_unknown_alpn_is_not_fatal() {
    let pki = pki("alpn");
    let server = serve(pki.server(&[b"http/1.1"]), STEP, 4, echo_upper);

    let client = connect(server.addr, pki.client(&[b"h2", b"http/1.1"]), "localhost").unwrap();
    assert_eq!(client.info().alpn.as_deref(), Some(&b"http/1.1"[..]));
    let info = server.outcome().result.unwrap();
    assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(info.server_name.as_deref(), Some("localhost"));
    assert!(
        format!("{:?}", info.cipher_suite).starts_with("TLS13_"),
        "{info:?}"
    );
    assert_eq!(info.protocol_name(), "TLSv1.3");

    // Only protocols the server does not speak: no ALPN, and it goes on.
    let client = connect(server.addr, pki.client(&[b"h2"]), "localhost").unwrap();
    assert_eq!(round_trip(&client, "no alpn\n"), "NO ALPN\n");
    assert_eq!(server.outcome().result.unwrap().alpn, None);

    // No ALPN offered at all.
    let _client = connect(server.addr, pki.client(&[]), "localhost").unwrap();
    assert_eq!(server.outcome().result.unwrap().alpn, None);

    // An IP address is verified, and never sent as SNI.
    let _client = connect(server.addr, pki.client(&[]), "127.0.0.1").unwrap();
    assert_eq!(server.outcome().result.unwrap().server_name, None);
}

#[test]
fn a_unix_stream_socket_carries_tls_too() {
    let pki = pki("unix");
    let (server_side, client_side) = UnixStream::pair().unwrap();
    let config = pki.server(&[]);
    let worker = thread::spawn(move || {
        let stream =
            TlsStream::accept(server_side.into(), config, &[], Some(Instant::now() + STEP))
                .unwrap();
        answer_one_line(stream);
    });
    let client = TlsStream::connect(
        client_side,
        pki.client(&[]),
        server_name("localhost").unwrap(),
        Some(Instant::now() + STEP),
    )
    .unwrap();
    assert_eq!(round_trip(&client, "unix\n"), "UNIX\n");
    worker.join().unwrap();
}

// ---------------------------------------------------------------------------
// The client side.

/// Connects with `config` as `name` to a server using `cert`/`key`; returns
/// the client's error text.
fn refused(cert: &Path, key: &Path, config: Arc<ClientConfig>, name: &str) -> String {
    let server = serve(
        server_config_from_pem(cert, key, &[]).unwrap(),
        STEP,
        1,
        echo_upper,
    );
    let err = connect(server.addr, config, name).expect_err("the certificate must not verify");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    // The server learns of it too.
    assert!(server.outcome().result.is_err());
    err.to_string()
}

#[test]
fn a_certificate_from_an_unknown_issuer_is_refused_naming_it() {
    let pki = pki("wrong-ca");
    let other = authority("another CA");
    let other_ca = pki.dir.write("other-ca.pem", &other.pem);
    let text = refused(
        &pki.cert,
        &pki.key,
        client_config(Some(&other_ca), &[]).unwrap(),
        "localhost",
    );
    assert!(text.contains("unknown issuer"), "{text}");
}

#[test]
fn a_certificate_for_another_name_is_refused_naming_it() {
    let pki = pki("wrong-name");
    let text = refused(&pki.cert, &pki.key, pki.client(&[]), "example.com");
    assert!(text.contains("name mismatch"), "{text}");
    assert!(text.contains("example.com"), "{text}");
}

#[test]
fn an_expired_certificate_is_refused_naming_it() {
    let dir = TempDir::new("expired");
    let ca = authority("test CA");
    let key = KeyPair::generate().unwrap();
    let mut params = leaf_params(&["localhost"]);
    params.not_before = rcgen::date_time_ymd(2001, 1, 1);
    params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    let cert = dir.write(
        "cert.pem",
        params.signed_by(&key, &ca.issuer).unwrap().pem(),
    );
    let key = dir.write("key.pem", key.serialize_pem());
    let ca = dir.write("ca.pem", &ca.pem);
    let text = refused(
        &cert,
        &key,
        client_config(Some(&ca), &[]).unwrap(),
        "localhost",
    );
    assert!(text.contains("expired"), "{text}");
}

#[test]
fn a_bad_ca_file_is_a_config_error() {
    let pki = pki("bad-ca");
    let missing = pki.dir.0.join("missing.pem");
    match client_config(Some(&missing), &[]) {
        Err(ClientConfigError::CaFile(e)) => {
            assert_eq!(e.file(), TlsFile::TrustedCertificates);
            assert_eq!(e.file().flag(), "--tls-ca");
            assert_eq!(e.reason(), "cannot read it: No such file or directory");
        }
        other => panic!("{other:?}"),
    }
    match client_config(Some(&pki.key), &[]) {
        Err(ClientConfigError::CaFile(e)) => assert_eq!(e.reason(), "no certificate in it"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn server_names_are_dns_names_or_ip_addresses() {
    for good in ["localhost", "example.com", "127.0.0.1", "::1", "[::1]"] {
        assert!(server_name(good).is_ok(), "{good}");
    }
    assert!(matches!(
        server_name("127.0.0.1").unwrap(),
        rustls::pki_types::ServerName::IpAddress(_)
    ));
    assert!(matches!(
        server_name("[::1]").unwrap(),
        rustls::pki_types::ServerName::IpAddress(_)
    ));
    for bad in ["", "no spaces", "under_score!", "a..b"] {
        let e = server_name(bad).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
    }
}

/// Runs in a child process (see below) with `SSL_CERT_FILE` naming a test
/// CA: the system's roots are that file.
#[test]
#[ignore = "run by system_roots_come_from_ssl_cert_file in a child process"]
fn system_roots_child() {
    let ca = PathBuf::from(std::env::var_os("SSL_CERT_FILE").expect("SSL_CERT_FILE is set"));
    let dir = ca.parent().unwrap();
    let server = serve(
        server_config_from_pem(&dir.join("cert.pem"), &dir.join("key.pem"), &[]).unwrap(),
        STEP,
        1,
        answer_one_line,
    );
    let config = client_config(None, &[]).expect("the roots of SSL_CERT_FILE");
    let client = connect(server.addr, config, "localhost").unwrap();
    assert_eq!(round_trip(&client, "system\n"), "SYSTEM\n");
}

/// Runs the ignored test `name` in a child process of this test binary,
/// with `SSL_CERT_FILE` set to `ssl_cert_file` (and no `SSL_CERT_DIR`),
/// and asserts that it passed.
fn pass_in_a_child(name: &str, ssl_cert_file: &Path) {
    let output = run_bounded(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--ignored", "--test-threads=1"])
            .env("SSL_CERT_FILE", ssl_cert_file)
            .env_remove("SSL_CERT_DIR"),
        b"",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}

#[test]
fn system_roots_come_from_ssl_cert_file() {
    let pki = pki("system-roots");
    // Another process: the environment is process-wide.
    pass_in_a_child("system_roots_child", &pki.ca);

    // And a system without roots is an error that says so.
    let empty = pki.dir.write("empty.pem", "");
    pass_in_a_child("no_system_roots_child", &empty);
}

#[test]
#[ignore = "run by system_roots_come_from_ssl_cert_file in a child process"]
fn no_system_roots_child() {
    match client_config(None, &[]) {
        Err(e @ ClientConfigError::NoSystemRoots { .. }) => {
            assert!(
                e.to_string().contains("no trusted root certificates"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The non-blocking session, in a poll loop (mio, edge-triggered).

/// Serves one connection on a non-blocking Unix socket with a
/// [`TlsSession`]: answers in upper case until the peer closes. Returns what
/// happened: the number of times a write had to wait, and the error if the
/// session failed. Each wait is also sent to `waited`.
fn poll_loop(
    socket: UnixStream,
    config: Arc<ServerConfig>,
    waited: mpsc::Sender<()>,
) -> (usize, Option<TlsSessionError>) {
    use mio::{Events, Interest, Poll, Token};
    socket.set_nonblocking(true).unwrap();
    let mut socket = mio::net::UnixStream::from_std(socket);
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(
            &mut socket,
            Token(0),
            Interest::READABLE | Interest::WRITABLE,
        )
        .unwrap();
    let mut events = Events::with_capacity(4);
    let mut session = TlsSession::new(config);
    let mut waits = 0;
    let mut plaintext = Vec::new();
    let mut unsent = Vec::new(); // plaintext the session did not take yet
    let give_up = Instant::now() + STEP;
    loop {
        assert!(Instant::now() < give_up, "the poll loop is stuck");
        poll.poll(&mut events, Some(Duration::from_millis(500)))
            .unwrap();
        // Edge-triggered: read until WouldBlock (or the limit), every time.
        loop {
            let report = match session.read_from(&mut socket, &mut plaintext, 64 * 1024) {
                Ok(report) => report,
                Err(e) => {
                    // The alert is queued: send it, then close.
                    assert!(session.wants_write());
                    let sent = session.write_to(&mut socket).unwrap();
                    assert!(sent.all_sent && sent.written > 0);
                    return (waits, Some(e));
                }
            };
            plaintext.make_ascii_uppercase();
            unsent.append(&mut plaintext);
            if report.peer_closed.is_some() {
                // Answer what is left, then close_notify.
                while !unsent.is_empty() || session.wants_write() {
                    let n = session.send_plaintext(&unsent);
                    unsent.drain(..n);
                    if !session.write_to(&mut socket).unwrap().all_sent {
                        waits += 1;
                        let _ = waited.send(());
                        poll.poll(&mut events, Some(Duration::from_millis(500)))
                            .unwrap();
                    }
                }
                assert_eq!(report.peer_closed, Some(PeerClose::Notified));
                session.close_notify();
                while !session.write_to(&mut socket).unwrap().all_sent {
                    poll.poll(&mut events, Some(Duration::from_millis(500)))
                        .unwrap();
                }
                return (waits, None);
            }
            if report.drained {
                break;
            }
        }
        let n = session.send_plaintext(&unsent);
        unsent.drain(..n);
        if !session.write_to(&mut socket).unwrap().all_sent {
            waits += 1;
            let _ = waited.send(());
        }
    }
}

#[test]
fn the_session_serves_a_client_through_a_poll_loop() {
    let pki = pki("session");
    let (server_side, client_side) = UnixStream::pair().unwrap();
    // A small send buffer, so that the loop sees WouldBlock on writes.
    socket2::SockRef::from(&server_side)
        .set_send_buffer_size(4096)
        .unwrap();
    let config = pki.server(&[b"http/1.1"]);
    let (waited, first_wait) = mpsc::channel();
    let server = thread::spawn(move || poll_loop(server_side, config, waited));

    let client = TlsStream::connect(
        client_side,
        pki.client(&[b"http/1.1"]),
        server_name("localhost").unwrap(),
        Some(Instant::now() + STEP),
    )
    .unwrap();
    client.set_read_timeout(Some(STEP)).unwrap();
    assert_eq!(client.info().alpn.as_deref(), Some(&b"http/1.1"[..]));
    let sent: Vec<u8> = (0..300_000u32)
        .map(|i| b"abcdefghij\n"[(i % 11) as usize])
        .collect();
    let writer = client.try_clone_writer().unwrap();
    let to_send = sent.clone();
    let sending = thread::spawn(move || -> io::Result<()> {
        let mut writer = writer;
        for chunk in to_send.chunks(7000) {
            writer.write_all(chunk)?;
        }
        writer.close_notify(STEP)
    });
    // Nothing is read until the server's writes have had to wait: the
    // loop's path through WouldBlock is taken whatever the machine's speed.
    first_wait
        .recv_timeout(STEP)
        .expect("the server's writes wait while the client does not read");
    let mut received = Vec::new();
    (&client)
        .read_to_end(&mut received)
        .expect("all of it, then close_notify");
    sending.join().unwrap().unwrap();
    assert_eq!(received.len(), sent.len());
    assert_eq!(received, sent.to_ascii_uppercase());
    let (waits, failure) = server.join().unwrap();
    assert!(failure.is_none(), "{failure:?}");
    assert!(waits > 0, "the small send buffer never filled");
}

/// Ciphertext that has arrived, read like a non-blocking socket: WouldBlock
/// once it is all read.
struct Arrived(io::Cursor<Vec<u8>>);

impl Read for Arrived {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf)? {
            0 if !buf.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }
}

/// A session and a rustls client past their handshake, in memory.
fn connected_in_memory(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (TlsSession, ClientConnection) {
    let mut session = TlsSession::new(server);
    let mut client = ClientConnection::new(client, server_name("localhost").unwrap()).unwrap();
    let mut plaintext = Vec::new();
    for _ in 0..10 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        let mut arrived = Arrived(io::Cursor::new(to_server));
        session
            .read_from(&mut arrived, &mut plaintext, 1 << 20)
            .unwrap();
        let mut to_client = Vec::new();
        session.write_to(&mut to_client).unwrap();
        let mut rest = &to_client[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
        }
        if !client.is_handshaking() && session.info().is_some() {
            assert!(plaintext.is_empty());
            return (session, client);
        }
    }
    panic!("no handshake in 10 rounds");
}

// A client that sends a burst and its close_notify at once: a reader taking
// the plaintext a little at a time gets all of it before it hears of the
// close. (The close was reported with the first piece, and a reader that
// stopped there, the reactor's included, lost the rest.)
#[test]
fn everything_before_a_close_notify_is_read_before_the_close() {
    let sent: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    burst_then_close(&sent, 4096);
}

/// Sends `sent` and a close_notify from a client at once, reads them on
/// the server `limit` bytes of plaintext at a time, and checks that the
/// close comes last, with everything before it.
fn burst_then_close(sent: &[u8], limit: usize) {
    let (mut session, mut client) = connected_in_memory(shared_config(), shared_client());
    client.writer().write_all(sent).unwrap();
    client.send_close_notify();
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    let mut arrived = Arrived(io::Cursor::new(wire));
    let mut received = Vec::new();
    for _ in 0..=sent.len() / limit + 2 {
        let report = session
            .read_from(&mut arrived, &mut received, limit)
            .unwrap();
        assert!(report.plaintext <= limit);
        if let Some(close) = report.peer_closed {
            assert_eq!(close, PeerClose::Notified);
            assert!(report.drained);
            assert_eq!(received.len(), sent.len(), "the close came before the data");
            assert!(received == sent, "the data differs");
            return;
        }
    }
    panic!("no close after {} bytes of {}", received.len(), sent.len());
}

#[test]
fn the_session_refuses_a_garbage_client_hello_with_an_alert() {
    let pki = pki("session-garbage");
    let (server_side, mut client_side) = UnixStream::pair().unwrap();
    let config = pki.server(&[]);
    let (waited, _) = mpsc::channel();
    let server = thread::spawn(move || poll_loop(server_side, config, waited));
    // A handshake record whose message is not a ClientHello.
    client_side
        .write_all(&[22, 3, 1, 0, 8, 2, 0, 0, 4, 1, 2, 3, 4])
        .unwrap();
    client_side.set_read_timeout(Some(STEP)).unwrap();
    let (_, failure) = server.join().unwrap();
    assert!(
        matches!(failure, Some(TlsSessionError::Tls(_))),
        "{failure:?}"
    );
    let mut answer = Vec::new();
    client_side.read_to_end(&mut answer).unwrap();
    assert_eq!(answer.first(), Some(&21), "an alert record: {answer:?}");
    client_side.shutdown(Shutdown::Both).unwrap();
}

/// Moves bytes between a client connection and a session in memory until
/// neither has anything to send.
fn pump(client: &mut ClientConnection, session: &mut TlsSession) -> Result<(), TlsSessionError> {
    loop {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        let mut taken = 0;
        while taken < to_server.len() {
            taken += session.feed(&to_server[taken..])?;
        }
        let mut to_client = Vec::new();
        session.write_to(&mut to_client).unwrap();
        if !to_client.is_empty() {
            let mut rest = &to_client[..];
            while !rest.is_empty() {
                client.read_tls(&mut rest).unwrap();
                client.process_new_packets().unwrap();
            }
        }
        if to_server.is_empty() && to_client.is_empty() {
            return Ok(());
        }
    }
}

#[test]
fn an_idle_session_costs_little_and_the_figure_is_reported() {
    let pki = pki("idle");
    let config = pki.server(&[]);
    let client_config = pki.client(&[]);
    let mut client =
        ClientConnection::new(client_config, server_name("localhost").unwrap()).unwrap();

    // The configuration outlives the session: its heap is not the session's.
    let mut session = TlsSession::new(Arc::clone(&config));
    pump(&mut client, &mut session).unwrap();
    assert!(!session.is_handshaking());
    client.writer().write_all(b"ping\n").unwrap();
    pump(&mut client, &mut session).unwrap();
    let mut got = Vec::new();
    session.take_plaintext(&mut got, 1024);
    assert_eq!(got, b"ping\n");
    drop((client, got));

    let with_session = live_bytes();
    drop(session);
    let heap = with_session - live_bytes();
    let size = std::mem::size_of::<TlsSession>();
    eprintln!(
        "an idle TLS 1.3 session: size_of {size} bytes, heap {heap} bytes \
         (of which the boxed rustls::ServerConnection is {} bytes)",
        std::mem::size_of::<rustls::ServerConnection>()
    );
    assert!(size <= 128, "size_of::<TlsSession>() is {size}");
    assert!(
        heap > 4096,
        "it holds at least rustls's read buffer: {heap}"
    );
    assert!(heap < 12 * 1024, "an idle session holds {heap} bytes");
}

#[test]
fn the_fuzz_seeds_never_panic_the_session() {
    let pki = pki("seeds");
    let config = pki.server(&[b"http/1.1"]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/tls_accept");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = drive_with(&config, &data);
        let name = path.file_name().unwrap().to_string_lossy();
        // A real hello gets the server's answer and waits for more;
        // plaintext is refused.
        match &*name {
            "plaintext-http" => assert!(matches!(result, Err(TlsSessionError::Tls(_)))),
            // A close_notify in the middle of a handshake ends it.
            "client-hello-then-alert" => assert!(
                matches!(
                    result,
                    Err(TlsSessionError::Tls(rustls::Error::AlertReceived(_)))
                ),
                "{result:?}"
            ),
            _ => assert!(result.is_ok(), "{name}: {result:?}"),
        }
        seen += 1;
    }
    assert!(seen >= 3, "{seen} seeds in {}", dir.display());
}

/// What the fuzz target (`fuzz/fuzz_targets/tls_accept.rs`) does: the first
/// byte says how to cut the rest, a client's first flight, into pieces
/// (1 to 2,332 bytes) and whether to give them through `read_from` or
/// `feed`; what the session reports must hold together.
fn drive_with(config: &Arc<ServerConfig>, data: &[u8]) -> Result<(), TlsSessionError> {
    let Some((&mode, flight)) = data.split_first() else {
        return Ok(());
    };
    let piece = 1 + usize::from(mode & 0x3f) * 37;
    let mut session = TlsSession::new(Arc::clone(config));
    let mut plaintext = Vec::new();
    let mut result = Ok(());
    for chunk in flight.chunks(piece) {
        result = if mode & 0x80 == 0 {
            session
                .read_from(&mut WouldBlockAtEnd(chunk), &mut plaintext, 1 << 16)
                .map(|report| {
                    assert!(report.drained);
                    assert_eq!(report.ciphertext, chunk.len());
                })
        } else {
            session
                .feed(chunk)
                .map(|taken| assert_eq!(taken, chunk.len()))
        };
        if result.is_err() {
            break;
        }
    }
    assert!(plaintext.is_empty(), "no plaintext before a handshake");
    let mut out = Vec::new();
    assert!(session.write_to(&mut out).unwrap().all_sent);
    assert!(session.info().is_none());
    if let Err(TlsSessionError::Tls(_)) = &result {
        assert!(!session.is_handshaking());
        assert_eq!(session.send_plaintext(b"after a failure"), 0);
    }
    result
}

/// A reader over a slice that says `WouldBlock` at its end, as a socket
/// would, instead of ending.
struct WouldBlockAtEnd<'a>(&'a [u8]);

impl Read for WouldBlockAtEnd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.0.read(buf)
    }
}

/// A server and a client configuration made once for the property tests
/// (and the directory of their files, kept while the tests run).
fn shared() -> &'static (Arc<ServerConfig>, Arc<ClientConfig>, Pki) {
    static SHARED: std::sync::OnceLock<(Arc<ServerConfig>, Arc<ClientConfig>, Pki)> =
        std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let pki = pki("shared");
        (pki.server(&[]), pki.client(&[]), pki)
    })
}

fn shared_config() -> Arc<ServerConfig> {
    Arc::clone(&shared().0)
}

fn shared_client() -> Arc<ClientConfig> {
    Arc::clone(&shared().1)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any burst, read any number of bytes at a time: the close comes after
    /// all of it.
    #[test]
    fn any_burst_is_read_whole_before_its_close(
        length in 0usize..60_000,
        limit in 1usize..20_000,
    ) {
        let sent: Vec<u8> = (0..length).map(|i| (i % 253) as u8).collect();
        burst_then_close(&sent, limit);
    }

    /// Any bytes as a first flight: an error (with an alert queued), or a
    /// session still waiting; never a panic.
    #[test]
    fn arbitrary_first_flights_are_refused_or_awaited(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = drive_with(&shared_config(), &data);
    }

    /// A valid ClientHello with arbitrary bytes written over part of it.
    #[test]
    fn damaged_client_hellos_are_handled(
        mode in any::<u8>(),
        at in 0usize..512,
        junk in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let mut hello = client_hello();
        let at = at % hello.len();
        let end = (at + junk.len()).min(hello.len());
        hello[at..end].copy_from_slice(&junk[..end - at]);
        hello.insert(0, mode);
        let _ = drive_with(&shared_config(), &hello);
    }

    /// The client's bytes cut anywhere: the same handshake and the same
    /// plaintext.
    #[test]
    fn any_split_of_the_client_bytes_gives_the_same_result(cuts in proptest::collection::vec(1usize..600, 1..8)) {
        let mut client = ClientConnection::new(shared_client(), server_name("localhost").unwrap()).unwrap();
        let mut session = TlsSession::new(shared_config());
        // The first flight, fed in pieces.
        let mut hello = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut hello).unwrap();
        }
        let mut rest = &hello[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let piece = &rest[..(*cut).min(rest.len())];
            prop_assert_eq!(session.feed(piece).unwrap(), piece.len());
            rest = &rest[piece.len()..];
        }
        pump(&mut client, &mut session).unwrap();
        prop_assert!(!session.is_handshaking());
        client.writer().write_all(b"same bytes\n").unwrap();
        pump(&mut client, &mut session).unwrap();
        let mut got = Vec::new();
        session.take_plaintext(&mut got, 1024);
        prop_assert_eq!(got, b"same bytes\n".to_vec());
    }
}
