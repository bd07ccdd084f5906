//! The server's lifecycle and limits (SPEC section 3, rules 1, 4, 5, 25,
//! 41): signals, the drain and its deadline, a second Ctrl-C, SIGTERM under
//! load, the connection cap and idle timeouts, backpressure and rejection,
//! descriptor exhaustion, floods; the thread pool's growth and retirement;
//! shutdown from anywhere, hooks and panics.
//!
//! Through the program, every test runs in both dispatch modes. Where the
//! modes rightly differ it says so and checks each mode's rule: at a
//! shutdown a threads-mode connection is one request that finishes or is
//! cut at the deadline (rule 1), while in reactor mode a connection with no
//! message in progress is closed at once (rules 25, 41).
//!
//! The library's limits run in both modes with a message handler; the
//! tests of a [`RequestHandler`](socketserver::RequestHandler) (the pool, the
//! Python hooks) run in threads mode only, as the reactor runs message
//! handlers only.

mod support;

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use socketserver::client::files::FilesClient;
use socketserver::protocol::framing::FrameCodec;
use socketserver::request::{Conn, Framing, MessageHandler, Next};
use socketserver::{
    handler_fn, Address, DatagramRequest, Options, RequestHandler, SocketUrl, StreamRequest,
    TcpServer, ThreadingTcpServer, ThreadingUdpServer,
};
use support::frames::sha256;
use support::net::wait_until_refused;
use support::process::{cpu_ticks, rss_kib};
use support::{eventually, run_messages, serve, Mode, Running, ServerProcess, TempDir, STEP};

// ---------------------------------------------------------------------------
// Signals and the drain, through the program.

crate::both_modes! {
    /// SIGTERM closes the listeners at once (new connections are refused),
    /// the server exits 0 and removes its Unix socket file. The client in
    /// the middle of a conversation: in threads mode it is one request,
    /// served to its end; in reactor mode it has no message in progress
    /// between two messages, and is closed at once.
    fn sigterm_drains_and_exits_zero_and_removes_the_socket_file(mode) {
        let dir = TempDir::new("echo-upper-term");
        let sock = dir.join("e.sock");
        let unix = format!("unix:{}", sock.display());
        let mut server = serve(
            "echo-upper",
            mode,
            &["--bind", "tcp://127.0.0.1:0", "--bind", &unix],
            2,
        );
        let addr = server.addr();
        let mut client = support::connect(&addr);
        client.write_all(b"before").unwrap();
        let mut buf = [0u8; 6];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"BEFORE");
        let signalled = Instant::now();
        server.signal("TERM");
        wait_until_refused(&addr);
        match mode {
            Mode::Threads => {
                // The in-flight client is still served, then ends its input.
                client.write_all(b"after").unwrap();
                let mut buf = [0u8; 5];
                client.read_exact(&mut buf).unwrap();
                assert_eq!(&buf, b"AFTER");
                client.shutdown(Shutdown::Write).unwrap();
            }
            Mode::Reactor => {
                // Idle between messages: closed without waiting for it.
                support::assert_closed(&mut client);
            }
        }
        let status = server.wait(STEP).expect("the server exits");
        assert_eq!(status.code(), Some(0));
        if mode == Mode::Reactor {
            assert!(
                signalled.elapsed() < Duration::from_secs(5),
                "the idle connection held the shutdown for {:?}",
                signalled.elapsed()
            );
        }
        assert!(!sock.exists(), "the Unix socket file is removed on exit");
    }

    /// A second Ctrl-C exits at once with status 130 while the drain waits
    /// for a request in progress. The request in progress is an upload (a
    /// message in progress in both modes, which the drain waits for; an idle
    /// connection would not hold a reactor), seen to run when its
    /// temporary file appears.
    fn a_second_interrupt_exits_130(mode) {
        let dir = TempDir::new("second-interrupt");
        let store = dir.join("store");
        let store_arg = store.display().to_string();
        let mut server = serve(
            "files",
            mode,
            &[
                "--bind",
                "tcp://127.0.0.1:0",
                "--dir",
                &store_arg,
                "--shutdown-timeout",
                "30",
            ],
            1,
        );
        let mut upload = support::connect(server.addr());
        support::frames::send_header(
            &mut upload,
            &serde_json::json!({"file_name": "slow.bin", "file_size": 1000}),
        );
        upload.write_all(&[7u8; 100]).unwrap();
        eventually("the upload runs", || {
            std::fs::read_dir(&store).is_ok_and(|mut d| d.any(|_| true))
        });
        server.signal("INT");
        // Wait until the first signal took effect: the listener is closed.
        wait_until_refused(&server.addr());
        // The drain is waiting for the upload: the server is still there.
        assert!(server.wait(Duration::from_millis(300)).is_none());
        server.signal("INT");
        let status = server.wait(STEP).expect("the server exits");
        assert_eq!(status.code(), Some(130));
        drop(upload);
    }
}

/// What an echo client saw under SIGTERM.
struct EchoRun {
    /// Whole, correct replies.
    rounds: usize,
    /// Rounds begun after the signal.
    after: usize,
}

/// Reads one reply of `answer.len()` bytes; how many bytes came before the
/// connection ended (all of them for a whole reply).
fn read_reply(stream: &mut TcpStream, answer: &mut [u8]) -> usize {
    let mut got = 0;
    while got < answer.len() {
        match stream.read(&mut answer[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

/// 200 echo-upper clients streaming 1 KiB messages, and 20 uploaders
/// putting 1 MiB files with their digest, when both servers get SIGTERM.
/// Whatever the mode, no reply is partial or corrupt (a reply cut by the
/// close is a correct prefix), every acknowledged upload is stored whole,
/// no temporary file is left, and both servers exit 0 within the deadline.
/// In threads mode each connection is one request that the drain waits
/// for: even-numbered echo clients finish three more rounds after the
/// signal, odd-numbered ones go on until the deadline cuts them (100 cut).
/// In reactor mode an echo connection between two messages is closed at
/// once: nothing is cut at the deadline.
fn sigterm_under_load(mode: Mode) {
    let dir = TempDir::new("term-under-load");
    let store = dir.join("store");
    let store_arg = store.display().to_string();
    let mut files = ServerProcess::start_with(
        support::serve_command(
            "files",
            mode,
            &[
                "--bind",
                "tcp://127.0.0.1:0",
                "--dir",
                &store_arg,
                "--shutdown-timeout",
                "3",
            ],
        )
        .env("RUST_LOG", "info"),
        1,
    );
    let mut echo = ServerProcess::start_with(
        support::serve_command(
            "echo-upper",
            mode,
            &["--bind", "tcp://127.0.0.1:0", "--shutdown-timeout", "3"],
        )
        .env("RUST_LOG", "info"),
        1,
    );
    let signalled = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    // Every client is served once before any streams: held until all are
    // (so that the first 220 rounds do not compete with the load). If the
    // test fails before, the lock is let go as it unwinds.
    let go = Arc::new(RwLock::new(()));
    let hold = go.write().unwrap();

    // 200 echo clients: every reply they get must be whole and right.
    let echo_addr = echo.addr();
    let echoers: Vec<_> = (0..200)
        .map(|i| {
            let (addr, signalled, ready, go) = (
                echo_addr.clone(),
                signalled.clone(),
                ready_tx.clone(),
                go.clone(),
            );
            std::thread::spawn(move || -> EchoRun {
                let mut stream = support::connect(&addr);
                let message: Vec<u8> = (0..1024)
                    .map(|n| b"abcdefghijklmnopqrstuvwxyz"[(n + i) % 26])
                    .collect();
                let expected = message.to_ascii_uppercase();
                let mut answer = vec![0u8; message.len()];
                // One round first, so every client is being served when the
                // signal comes (connections still in the backlog then are
                // refused, by design).
                stream.write_all(&message).unwrap();
                stream.read_exact(&mut answer).unwrap();
                assert_eq!(answer, expected);
                ready.send(()).unwrap();
                drop(go.read());
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
                        break; // closed, or cut at the deadline
                    }
                    let got = read_reply(&mut stream, &mut answer);
                    assert_eq!(
                        answer[..got],
                        expected[..got],
                        "client {i} round {rounds}: a corrupt reply"
                    );
                    if got < message.len() {
                        break;
                    }
                    rounds += 1;
                }
                let _ = stream.shutdown(Shutdown::Write);
                // Whatever still arrives is a whole, correct reply or nothing.
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                assert_eq!(rest.len() % message.len(), 0, "client {i}: a partial reply");
                assert!(rest.chunks(message.len()).all(|c| c == expected));
                EchoRun { rounds, after }
            })
        })
        .collect();

    // 20 uploaders, each putting distinct 1 MiB files with their digest,
    // paced so that uploads are in flight when the signal comes. Even ones
    // keep one connection (cut at the deadline if still going, or closed
    // between two files in reactor mode), odd ones connect per file
    // (refused once the listener is closed).
    let files_url: SocketUrl = files.url().parse().unwrap();
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let uploaders: Vec<_> = (0..20)
        .map(|i| {
            let (url, signalled, ready, acknowledged, go) = (
                files_url.clone(),
                signalled.clone(),
                ready_tx.clone(),
                acknowledged.clone(),
                go.clone(),
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
                        Err(_) => break, // cut at the deadline, or closed
                    }
                    if round == 0 {
                        ready.send(()).unwrap();
                        drop(go.read());
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
    drop(hold);
    // Let the load run until uploads are in flight (their temporary files
    // are there).
    let in_flight = || {
        std::fs::read_dir(&store)
            .unwrap()
            .filter(|e| {
                e.as_ref().is_ok_and(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(".socketserver-part-")
                })
            })
            .count()
    };
    eventually("five uploads in flight", || in_flight() >= 5);
    files.signal("TERM");
    echo.signal("TERM");
    let signalled_at = Instant::now();
    signalled.store(true, SeqCst);
    let deadline = Duration::from_secs(3) + Duration::from_secs(3);
    assert_eq!(echo.wait(STEP).and_then(|s| s.code()), Some(0));
    let echo_exited = signalled_at.elapsed();
    assert_eq!(files.wait(STEP).and_then(|s| s.code()), Some(0));
    let files_exited = signalled_at.elapsed();
    assert!(
        signalled_at.elapsed() < deadline,
        "took {:?} to exit",
        signalled_at.elapsed()
    );
    // What the echo server cut at the deadline, from its summary.
    let echo_log = echo.stderr_text();
    let echo_cut: usize = echo_log
        .split(" cut at the deadline")
        .next()
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {echo_log}"));
    match mode {
        // Each connection is one request: the odd-numbered clients, which
        // never stop, are cut at the deadline; the even-numbered ones finish.
        Mode::Threads => assert_eq!(echo_cut, 100, "{echo_log}"),
        // Between two messages a connection is closed at once: nothing
        // waits for the deadline.
        Mode::Reactor => assert_eq!(echo_cut, 0, "{echo_log}"),
    }
    let mut echo_rounds = 0;
    for (i, echoer) in echoers.into_iter().enumerate() {
        let run = echoer.join().unwrap();
        assert!(run.rounds > 0, "echo client {i} was never served");
        if mode == Mode::Threads && i % 2 == 0 {
            assert!(
                run.after > 3,
                "echo client {i} could not finish after the signal"
            );
        }
        echo_rounds += run.rounds;
    }
    let mut acked = Vec::new();
    for uploader in uploaders {
        acked.extend(uploader.join().unwrap());
    }
    assert_eq!(acked.len(), acknowledged.load(SeqCst));
    // At least round 0 of each uploader. (Uploads in flight at the signal
    // finish too, unless a loaded machine makes one last past the deadline:
    // then it is cut, and not kept.)
    assert!(acked.len() >= 20, "{} acknowledged", acked.len());
    // Every acknowledged upload is stored whole; every stored file is one
    // that was acknowledged or whole (an upload finished as the client was
    // cut); no temporary file is left.
    let mut on_disk: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    assert!(
        !on_disk.iter().any(|n| n.starts_with(".socketserver-part-")),
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
        "figures ({mode:?}): {echo_rounds} whole echo replies of 1 KiB to 200 clients, the echo \
         server cut {echo_cut} at the deadline and exited in {echo_exited:?}; {} uploads of 1 MiB acknowledged and stored whole, \
         {cut} cut at the deadline and not kept, {} files on disk, the files server exited in \
         {files_exited:?}",
        acked.len(),
        on_disk.len(),
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

crate::both_modes! {
    fn sigterm_under_load_loses_no_byte_and_exits_within_the_deadline(mode) {
        sigterm_under_load(mode);
    }
}

// ---------------------------------------------------------------------------
// Limits through the program.

/// Sends `text`, ends the input, and returns the whole answer.
fn echo_once(addr: &str, text: &[u8]) -> Vec<u8> {
    let mut stream = support::connect(addr);
    stream.write_all(text).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    answer
}

crate::both_modes! {
    /// Idle and trickling connections fill `--max-connections`; the idle
    /// timeout frees it, and an honest client is served.
    fn slow_clients_at_the_cap_are_cut_and_an_honest_one_is_served(mode) {
        let server = serve(
            "echo-upper",
            mode,
            &[
                "--bind",
                "tcp://127.0.0.1:0",
                "--max-connections",
                "20",
                "--idle-timeout",
                "1",
            ],
            1,
        );
        let addr = server.addr();
        // Twenty connections fill the cap: ten never send, ten send one byte and
        // go quiet (a byte a minute).
        let slow: Vec<TcpStream> = (0..20)
            .map(|i| {
                let mut stream = support::connect(&addr);
                if i % 2 == 0 {
                    stream.write_all(b"s").unwrap();
                }
                stream
            })
            .collect();
        let started = Instant::now();
        assert_eq!(echo_once(&addr, b"honest"), b"HONEST");
        assert!(started.elapsed() < STEP);
        // The slow ones were closed by the idle timeout.
        for mut stream in slow {
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
            assert!(rest.len() <= 1, "a slow client got {rest:?}");
        }
    }

    /// When accept fails with EMFILE the server neither crashes nor spins a
    /// core, and serves again once descriptors free up.
    fn out_of_descriptors_backs_off_and_recovers(mode) {
        let program = env!("CARGO_BIN_EXE_socketserver");
        let mut command = Command::new("sh");
        command.args([
            "-c",
            // A connection cap beyond the limit (the default would be
            // fitted under it): accept itself runs out of descriptors.
            &format!(
                "ulimit -n 32 && exec {program} serve echo-upper --dispatch {} \
                 --bind tcp://127.0.0.1:0 --threads 2 --max-connections 1000",
                mode.name()
            ),
        ]);
        let mut server = ServerProcess::start_with(&mut command, 1);
        let addr = server.addr();
        // More connections than the server has descriptors for; the kernel's
        // backlog holds the ones it cannot accept.
        let held: Vec<TcpStream> = (0..48)
            .map(|_| TcpStream::connect(&addr).unwrap())
            .collect();
        let mut last = held.last().unwrap().try_clone().unwrap();
        last.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        last.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        assert!(
            last.read(&mut one).is_err(),
            "the last connection cannot be served yet"
        );
        // While it is stuck, it must not spin: sample its CPU time over a second.
        let before = cpu_ticks(server.pid());
        std::thread::sleep(Duration::from_secs(1));
        let used = cpu_ticks(server.pid()) - before;
        assert!(
            used < 30,
            "the server burned {used} ticks of CPU in one second while out of descriptors"
        );
        // Free the descriptors: everything waiting is served, the last one too.
        drop(held);
        last.set_read_timeout(Some(STEP)).unwrap();
        last.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"X");
        let mut fresh = support::connect(&addr);
        fresh.write_all(b"again").unwrap();
        let mut buf = [0u8; 5];
        fresh.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"AGAIN");
        drop((last, fresh));
        let log = server.terminate();
        assert!(log.contains("Too many open files"), "{log}");
        assert_eq!(
            log.matches("cannot accept").count(),
            1,
            "the failure is logged once: {log}"
        );
    }
}

/// Datagrams: `--dispatch` changes nothing for them (SPEC rule 21), so
/// this runs once. A flood beyond the queue is dropped, counted, and
/// survived with bounded memory. Whether the queue overflows or the
/// socket's receive buffer does first depends on how the threads share the
/// cores; the summary counts both.
#[test]
fn udp_flood_beyond_the_queue_is_dropped_counted_and_survived() {
    let mut server = ServerProcess::start_with(
        support::program()
            .args([
                "serve",
                "echo-upper",
                "--bind",
                "udp://127.0.0.1:0",
                "--threads",
                "1",
                "--max-threads",
                "1",
                "--queue",
                "16",
            ])
            .env("RUST_LOG", "info"),
        1,
    );
    let addr = server.addr();
    let before = rss_kib(server.pid());
    // Four senders, 50,000 datagrams of 1 KiB each, as fast as they go.
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.connect(&addr).unwrap();
                let payload = [b'f'; 1024];
                for _ in 0..12_500 {
                    let _ = socket.send(&payload);
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let after = rss_kib(server.pid());
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB under a flood"
    );
    // Service continues.
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    client.connect(&addr).unwrap();
    let answered = (0..20).any(|_| {
        client.send(b"still there").unwrap();
        let mut buf = [0u8; 64];
        matches!(client.recv(&mut buf), Ok(n) if &buf[..n] == b"STILL THERE")
    });
    assert!(answered, "no answer after the flood");
    let log = server.terminate();
    let dropped: u64 = log
        .split(", dropped ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drop count in the summary: {log}"));
    assert!(dropped > 0, "{log}");
}

// ---------------------------------------------------------------------------
// The library's limits, in both modes: a message handler runs on either.

/// Echoes each line back: a message handler, for either mode.
#[derive(Clone)]
struct EchoLines;

impl MessageHandler for EchoLines {
    type Session = ();

    fn framing(&self, _: &()) -> Framing {
        Framing::Line { max: 1 << 16 }
    }

    fn open(&self, _: &mut Conn<'_>) -> io::Result<()> {
        Ok(())
    }

    fn on_message(&self, _: &mut (), line: &[u8], conn: &mut Conn<'_>) -> io::Result<Next> {
        conn.write_all(line)?;
        conn.write_all(b"\n")?;
        Ok(Next::Continue)
    }
}

fn round_trip(stream: &mut TcpStream, text: &str) -> std::io::Result<String> {
    stream.write_all(format!("{text}\n").as_bytes())?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

fn connect_with_timeout(addr: std::net::SocketAddr, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream
}

crate::both_modes! {
    /// Issue 13's regression: with default options, 5,000 connections that
    /// each answered once and then sit idle all answer again. In threads
    /// mode every admitted connection holds a thread (SPEC section 6, rule
    /// 4: `max_threads` follows `max_connections`), so none waits in the
    /// queue behind idle ones. 10,000 descriptors in this process.
    fn with_defaults_5000_idle_connections_all_answer_again(mode) {
        const CONNECTIONS: usize = 5_000;
        let running = run_messages(mode, EchoLines, Options::new());
        let addr = running.inet();
        let mut held = Vec::with_capacity(CONNECTIONS);
        for i in 0..CONNECTIONS {
            let mut stream = connect_with_timeout(addr, STEP);
            let line = format!("first {i}");
            assert_eq!(round_trip(&mut stream, &line).unwrap(), line);
            held.push(stream);
        }
        // Every one asks again before any answer is read: a connection
        // without a thread of its own would never be answered.
        for (i, stream) in held.iter_mut().enumerate() {
            stream.write_all(format!("again {i}\n").as_bytes()).unwrap();
        }
        let deadline = Instant::now() + 3 * STEP;
        for (i, stream) in held.into_iter().enumerate() {
            assert!(Instant::now() < deadline, "answers stalled at connection {i}");
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).unwrap_or_else(|e| {
                panic!("connection {i} of {CONNECTIONS} did not answer again: {e}")
            });
            assert_eq!(line, format!("again {i}\n"));
        }
        let stats = running.handle.stats();
        assert_eq!(stats.rejected, 0, "{stats:?}");
    }

    fn max_connections_applies_backpressure(mode) {
        let options = Options::new().max_connections(2);
        let running = run_messages(mode, EchoLines, options);
        let addr = running.inet();
        let mut first = connect_with_timeout(addr, STEP);
        let mut second = connect_with_timeout(addr, STEP);
        assert_eq!(round_trip(&mut first, "1").unwrap(), "1");
        assert_eq!(round_trip(&mut second, "2").unwrap(), "2");
        // The third connects (the kernel's backlog holds it) but is not served...
        let mut third = connect_with_timeout(addr, Duration::from_millis(300));
        let err = round_trip(&mut third, "3").unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{err}"
        );
        assert_eq!(running.handle.stats().rejected, 0);
        // ...until a place frees; then it is served, nothing lost.
        drop(first);
        third.set_read_timeout(Some(STEP)).unwrap();
        let mut line = String::new();
        BufReader::new(third.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "3\n");
        assert_eq!(round_trip(&mut second, "still").unwrap(), "still");
    }

    fn reject_when_full_closes_at_once_and_counts(mode) {
        let options = Options::new().max_connections(1).reject_when_full(true);
        let running = run_messages(mode, EchoLines, options);
        let addr = running.inet();
        let mut first = connect_with_timeout(addr, STEP);
        assert_eq!(round_trip(&mut first, "1").unwrap(), "1");
        let mut second = connect_with_timeout(addr, STEP);
        let mut buf = [0u8; 1];
        let closed = matches!(second.read(&mut buf), Ok(0) | Err(_));
        assert!(closed, "the extra connection is closed unserved");
        eventually("the rejection is counted", || {
            running.handle.stats().rejected == 1
        });
        assert_eq!(round_trip(&mut first, "ok").unwrap(), "ok");
    }

    fn idle_timeout_closes_silent_clients_only(mode) {
        let options = Options::new().idle_timeout(Some(Duration::from_millis(300)));
        let running = run_messages(mode, EchoLines, options);
        let addr = running.inet();
        let mut silent = connect_with_timeout(addr, STEP);
        let mut talker = connect_with_timeout(addr, STEP);
        // The talker speaks more often than the timeout, for longer than it.
        for i in 0..12 {
            assert_eq!(
                round_trip(&mut talker, &i.to_string()).unwrap(),
                i.to_string()
            );
            std::thread::sleep(Duration::from_millis(60));
        }
        let mut buf = [0u8; 1];
        assert_eq!(
            silent.read(&mut buf).unwrap(),
            0,
            "the silent client was closed"
        );
        assert_eq!(round_trip(&mut talker, "alive").unwrap(), "alive");
    }
}

// ---------------------------------------------------------------------------
// The library's thread pool and a request handler's lifecycle (Python's
// hooks): threads mode only, as a reactor runs message handlers only (the
// reactor's drain, panics and idle timeouts are in message_handlers.rs).

/// Echoes each line back.
fn echo_lines() -> impl socketserver::RequestHandler<StreamRequest> {
    handler_fn(|req: &mut StreamRequest| {
        let mut line = String::new();
        while req.read_line(&mut line)? > 0 {
            req.write_all(line.as_bytes())?;
            line.clear();
        }
        Ok(())
    })
}

/// Worker threads of the pool named `name`, counted by the kernel.
fn os_threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[test]
fn threads_return_to_the_core_after_a_burst() {
    let options = Options::new()
        .threads(2)
        .max_threads(64)
        .keep_alive(Duration::from_millis(100))
        .thread_name("burst-pool");
    let running = Running::start(
        ThreadingTcpServer::bind_with("127.0.0.1:0", echo_lines(), options).unwrap(),
    );
    let addr = running.inet();
    eventually("the core threads run", || {
        os_threads_named("burst-pool") == 2
    });
    // 1,000 short connections, 50 at a time, so the pool has to grow.
    for batch in 0..20 {
        let clients: Vec<_> = (0..50).map(|_| connect_with_timeout(addr, STEP)).collect();
        for (i, mut client) in clients.into_iter().enumerate() {
            let text = format!("{batch}-{i}");
            assert_eq!(round_trip(&mut client, &text).unwrap(), text);
        }
    }
    eventually("all 1,000 served", || running.handle.stats().served == 1000);
    let grown = running.handle.stats().threads;
    assert!(grown > 2, "the pool grew during the burst: {grown}");
    eventually("the pool settles to its core", || {
        running.handle.stats().threads == 2
    });
    eventually("the OS threads are gone too", || {
        os_threads_named("burst-pool") == 2
    });
    running.stop();
    eventually("no thread is left after the shutdown", || {
        os_threads_named("burst-pool") == 0
    });
}

#[test]
fn a_full_queue_holds_connections_until_a_thread_frees() {
    // One thread, one queue place: the third connection waits in the backlog.
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release = Arc::new(Mutex::new(release_rx));
    let handler = handler_fn(move |req: &mut StreamRequest| {
        let mut line = String::new();
        req.read_line(&mut line)?;
        release.lock().unwrap().recv_timeout(STEP).ok();
        req.write_all(line.as_bytes())
    });
    let options = Options::new().threads(1).max_threads(1).queue(1);
    let running =
        Running::start(ThreadingTcpServer::bind_with("127.0.0.1:0", handler, options).unwrap());
    let addr = running.inet();
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect_with_timeout(addr, STEP)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(format!("{i}\n").as_bytes()).unwrap();
    }
    // One runs; one waits in the queue (two, when the worker thread was
    // handed the first just as the others arrived: see `Options::queue`).
    eventually("one running and the rest queued or held", || {
        let s = running.handle.stats();
        s.active == 1 && s.queued >= 1
    });
    for (i, client) in clients.iter_mut().enumerate() {
        release_tx.send(()).unwrap();
        let mut line = String::new();
        BufReader::new(client.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, format!("{i}\n"));
    }
    eventually("all three served", || running.handle.stats().served == 3);
    assert_eq!(running.handle.stats().rejected, 0);
}

#[test]
fn udp_datagrams_run_concurrently() {
    // Each handler waits until four are running at once: only a pool can pass.
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let handler = handler_fn(move |req: &mut DatagramRequest| {
        barrier.wait();
        let answer = req.packet().to_ascii_uppercase();
        req.reply(&answer)
    });
    let options = Options::new().threads(4);
    let running =
        Running::start(ThreadingUdpServer::bind_with("127.0.0.1:0", handler, options).unwrap());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    for i in 0..4 {
        socket
            .send_to(format!("packet {i}").as_bytes(), running.inet())
            .unwrap();
    }
    let mut answers: Vec<String> = (0..4)
        .map(|_| {
            let mut buf = [0u8; 64];
            let n = socket.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        })
        .collect();
    answers.sort();
    assert_eq!(answers, ["PACKET 0", "PACKET 1", "PACKET 2", "PACKET 3"]);
}

#[test]
fn udp_overflow_drops_and_counts_then_recovers() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release = Mutex::new(release_rx);
    let handler = handler_fn(move |req: &mut DatagramRequest| {
        release.lock().unwrap().recv_timeout(STEP).ok();
        req.reply(req.packet())
    });
    let options = Options::new().threads(1).max_threads(1).queue(2);
    let running =
        Running::start(ThreadingUdpServer::bind_with("127.0.0.1:0", handler, options).unwrap());
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    socket.connect(running.inet()).unwrap();
    for i in 0..20u8 {
        socket.send(&[i]).unwrap();
    }
    // Two wait in the queue and, once the worker runs, one more is running;
    // a place may be held a moment longer by a datagram handed to the waking
    // worker (see `Options::queue`). The rest are dropped.
    eventually("every datagram accounted for", || {
        let s = running.handle.stats();
        s.active + s.queued + s.dropped as usize == 20
    });
    let dropped = running.handle.stats().dropped;
    assert!((16..=18).contains(&dropped), "{:?}", running.handle.stats());
    let admitted = 20 - dropped as usize;
    for _ in 0..admitted {
        release_tx.send(()).unwrap();
    }
    let mut got: Vec<u8> = (0..admitted)
        .map(|_| {
            let mut buf = [0u8; 8];
            assert_eq!(socket.recv(&mut buf).unwrap(), 1);
            buf[0]
        })
        .collect();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), admitted, "each admitted datagram answered once");
    assert_eq!(&got[..2], [0, 1], "the first two are never dropped");
    // Service continues.
    release_tx.send(()).unwrap();
    socket.send(b"again").unwrap();
    let mut buf = [0u8; 8];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"again");
}

#[test]
fn write_timeout_frees_a_worker_from_a_client_that_never_reads() {
    let handler = handler_fn(|req: &mut StreamRequest| {
        let chunk = [b'x'; 64 * 1024];
        loop {
            req.write_all(&chunk)?; // the client never reads: the buffers fill
        }
    });
    let options = Options::new().write_timeout(Some(Duration::from_millis(200)));
    let running =
        Running::start(ThreadingTcpServer::bind_with("127.0.0.1:0", handler, options).unwrap());
    let _silent = connect_with_timeout(running.inet(), STEP);
    eventually("the stuck write gives up", || {
        let s = running.handle.stats();
        s.failed == 1 && s.active == 0
    });
}

/// Answers each line uppercased.
fn upper_lines() -> impl RequestHandler<StreamRequest> {
    handler_fn(|req: &mut StreamRequest| {
        let mut line = String::new();
        while req.read_line(&mut line)? > 0 {
            req.write_all(line.to_uppercase().as_bytes())?;
            line.clear();
        }
        Ok(())
    })
}

fn connect_lines(addr: std::net::SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let stream = support::connect(addr);
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

fn ask(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, line: &str) -> String {
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    answer.trim_end().to_string()
}

#[test]
fn hundred_clients_at_once_all_answered() {
    let server =
        ThreadingTcpServer::bind_with("127.0.0.1:0", upper_lines(), Options::new().threads(4))
            .unwrap();
    let running = Running::start(server);
    let addr = running.inet();
    // All 100 connect before any talks, and each keeps its connection until
    // the main thread has looked at the server: held at once.
    let clients: Vec<_> = (0..100).map(|_| connect_lines(addr)).collect();
    let hold = Arc::new(std::sync::RwLock::new(()));
    let holding = hold.write().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, (mut stream, mut reader))| {
            let (hold, done_tx) = (hold.clone(), done_tx.clone());
            std::thread::spawn(move || {
                for round in 0..20 {
                    let answer = ask(
                        &mut stream,
                        &mut reader,
                        &format!("client {i} round {round}"),
                    );
                    assert_eq!(answer, format!("CLIENT {i} ROUND {round}"));
                }
                done_tx.send(i).unwrap();
                drop(hold.read()); // until the main thread lets go
            })
        })
        .collect();
    for _ in 0..100 {
        done_rx
            .recv_timeout(STEP)
            .expect("every client finishes its round trips");
    }
    let stats = running.handle.stats();
    assert_eq!(stats.active, 100, "all connections were held at once");
    assert!(
        stats.threads >= 100,
        "the pool grew to serve them: {stats:?}"
    );
    drop(holding);
    for t in threads {
        t.join().unwrap();
    }
    let summary = running.stop();
    assert_eq!(summary.served, 100);
    assert_eq!(summary.cut, 0);
}

#[test]
fn idle_shutdown_is_prompt_without_polling() {
    // With a one-minute poll interval, only a real wake-up returns quickly.
    let options = Options::new().poll_interval(Duration::from_secs(60));
    let server = ThreadingTcpServer::bind_with("127.0.0.1:0", upper_lines(), options).unwrap();
    let running = Running::start(server);
    let (mut stream, mut reader) = connect_lines(running.inet());
    assert_eq!(ask(&mut stream, &mut reader, "up"), "UP"); // the loop is running
    drop((stream, reader));
    eventually("the connection is over", || {
        running.handle.stats().active == 0
    });
    let started = Instant::now();
    let summary = running.stop();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(summary.in_flight, 0);
}

#[test]
fn shutdown_from_inside_a_handler() {
    let handler = handler_fn(|req: &mut StreamRequest| {
        let mut line = String::new();
        req.read_line(&mut line)?;
        if line.trim() == "quit" {
            req.server().shutdown();
            req.write_all(b"bye\n")?;
        }
        Ok(())
    });
    for threading in [true, false] {
        let mut running = if threading {
            Running::start(ThreadingTcpServer::bind("127.0.0.1:0", handler).unwrap())
        } else {
            Running::start(TcpServer::bind("127.0.0.1:0", handler).unwrap())
        };
        let (mut stream, mut reader) = connect_lines(running.inet());
        assert_eq!(ask(&mut stream, &mut reader, "quit"), "bye");
        let summary = running.join();
        assert_eq!(summary.served, 1, "threading: {threading}");
    }
}

#[test]
fn shutdown_mid_request_lets_it_finish_and_refuses_new_clients() {
    let (started_tx, started_rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate = Mutex::new(gate_rx);
    let handler = handler_fn(move |req: &mut StreamRequest| {
        let mut line = String::new();
        req.read_line(&mut line)?;
        started_tx.clone().send(()).unwrap();
        gate.lock().unwrap().recv().unwrap();
        req.write_all(b"done\n")
    });
    let server = ThreadingTcpServer::bind_with(
        "127.0.0.1:0",
        handler,
        Options::new().shutdown_timeout(STEP),
    )
    .unwrap();
    let running = Running::start(server);
    let addr = running.inet();
    let (mut stream, mut reader) = connect_lines(addr);
    stream.write_all(b"work\n").unwrap();
    started_rx.recv_timeout(STEP).unwrap();
    running.handle.shutdown();
    eventually("the listener is closed", || support::net::refuses(addr));
    gate_tx.send(()).unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    assert_eq!(answer, "done\n");
    let summary = running.stop();
    assert_eq!((summary.in_flight, summary.cut, summary.served), (1, 0, 1));
}

/// A handler that says it has started, then reads to the end of a
/// connection whose client never sends: it blocks until the server cuts it.
/// Also the receiver of its word.
fn reads_until_cut() -> (impl RequestHandler<StreamRequest>, mpsc::Receiver<()>) {
    let (started_tx, started_rx) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let handler = handler_fn(move |req: &mut StreamRequest| {
        started_tx.lock().unwrap().send(()).unwrap();
        let mut rest = Vec::new();
        req.read_to_end(&mut rest)?;
        Ok(())
    });
    (handler, started_rx)
}

#[test]
fn a_handler_stuck_past_the_deadline_is_cut() {
    let (handler, started_rx) = reads_until_cut();
    let server = ThreadingTcpServer::bind_with(
        "127.0.0.1:0",
        handler,
        Options::new().shutdown_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let running = Running::start(server);
    let (_stream, mut reader) = connect_lines(running.inet());
    started_rx.recv_timeout(STEP).unwrap();
    let handle = running.handle.clone();
    let summary = running.stop();
    assert_eq!((summary.in_flight, summary.cut), (1, 1), "{summary}");
    // The cut ends the handler's read, and its thread exits. (Within the
    // shutdown's 2 s grace as a rule; the other tests of this file start
    // thousands of threads, so the thread is awaited, not timed.)
    eventually("the cut handler's thread exits", || {
        handle.stats().threads == 0
    });
    let mut buf = [0u8; 1];
    assert_eq!(
        reader.read(&mut buf).unwrap(),
        0,
        "the client sees the close"
    );
}

#[test]
fn one_at_a_time_server_cuts_a_stuck_request_at_the_deadline() {
    let (handler, started_rx) = reads_until_cut();
    let server = TcpServer::bind_with(
        "127.0.0.1:0",
        handler,
        Options::new().shutdown_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let running = Running::start(server);
    let (_stream, _reader) = connect_lines(running.inet());
    started_rx.recv_timeout(STEP).unwrap();
    let summary = running.stop();
    assert_eq!((summary.in_flight, summary.cut), (1, 1));
}

#[test]
fn a_panicking_handler_costs_only_its_request() {
    let handler = handler_fn(|req: &mut StreamRequest| {
        let mut line = String::new();
        req.read_line(&mut line)?;
        if line.trim() == "boom" {
            panic!("a handler panics on purpose");
        }
        req.write_all(line.to_uppercase().as_bytes())
    });
    let server = ThreadingTcpServer::bind_with(
        "127.0.0.1:0",
        handler,
        Options::new().threads(1).max_threads(1),
    )
    .unwrap();
    let running = Running::start(server);
    let (mut stream, mut reader) = connect_lines(running.inet());
    stream.write_all(b"boom\n").unwrap();
    let mut rest = String::new();
    assert_eq!(
        reader.read_line(&mut rest).unwrap(),
        0,
        "the panicking request is closed"
    );
    // The single worker thread survived and serves the next client.
    let (mut stream, mut reader) = connect_lines(running.inet());
    assert_eq!(ask(&mut stream, &mut reader, "still here"), "STILL HERE");
    let stats = running.handle.stats();
    assert_eq!((stats.panicked, stats.threads), (1, 1));
}

/// Refuses every peer while `open` is false; counts errors it is shown.
struct Gatekeeper {
    open: std::sync::atomic::AtomicBool,
    errors: Mutex<Vec<String>>,
}

impl RequestHandler<StreamRequest> for Gatekeeper {
    fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
        req.write_all(b"welcome\n")?;
        Err(io::Error::other("handler error on purpose"))
    }
    fn verify_request(&self, peer: &Address) -> bool {
        assert!(peer.as_inet().unwrap().ip().is_loopback());
        self.open.load(SeqCst)
    }
    fn handle_error(&self, peer: &Address, error: &io::Error) {
        self.errors.lock().unwrap().push(format!("{peer}: {error}"));
    }
}

#[test]
fn verify_request_rejects_and_handle_error_reports() {
    let gate = Arc::new(Gatekeeper {
        open: false.into(),
        errors: Mutex::new(Vec::new()),
    });
    let running = Running::start(ThreadingTcpServer::bind("127.0.0.1:0", gate.clone()).unwrap());
    let (_stream, mut reader) = connect_lines(running.inet());
    let mut line = String::new();
    assert_eq!(
        reader.read_line(&mut line).unwrap_or(0),
        0,
        "refused: closed unserved"
    );
    eventually("the refusal is counted", || {
        running.handle.stats().rejected == 1
    });
    gate.open.store(true, SeqCst);
    let (stream, mut reader) = connect_lines(running.inet());
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "welcome\n");
    drop(stream);
    eventually("the error is reported", || {
        gate.errors.lock().unwrap().len() == 1
    });
    let report = gate.errors.lock().unwrap()[0].clone();
    assert!(
        report.starts_with("127.0.0.1:") && report.ends_with("handler error on purpose"),
        "{report}"
    );
    eventually("the request is counted", || {
        running.handle.stats().served == 1
    });
    let stats = running.handle.stats();
    assert_eq!((stats.served, stats.failed, stats.rejected), (1, 1, 1));
}

/// Counts the hooks Python calls on the server.
#[derive(Default)]
struct Hooks {
    timeouts: AtomicUsize,
    actions: AtomicUsize,
}

impl RequestHandler<StreamRequest> for Hooks {
    fn handle(&self, req: &mut StreamRequest) -> io::Result<()> {
        req.write_all(b"hi\n")
    }
    fn handle_timeout(&self) {
        self.timeouts.fetch_add(1, SeqCst);
    }
    fn service_actions(&self) {
        self.actions.fetch_add(1, SeqCst);
    }
}

#[test]
fn handle_request_with_timeout_calls_handle_timeout() {
    let hooks = Arc::new(Hooks::default());
    let server = TcpServer::bind_with(
        "127.0.0.1:0",
        hooks.clone(),
        Options::new().timeout(Some(Duration::from_millis(50))),
    )
    .unwrap();
    server.handle_request().unwrap();
    assert_eq!(hooks.timeouts.load(SeqCst), 1);
    let addr = server.local_addr().as_inet().unwrap();
    let (_stream, mut reader) = connect_lines(addr);
    server.handle_request().unwrap(); // serves the waiting client, no timeout
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "hi\n");
    assert_eq!(hooks.timeouts.load(SeqCst), 1);
    assert_eq!(server.stats().served, 1);
}

#[test]
fn service_actions_run_every_poll_interval() {
    let hooks = Arc::new(Hooks::default());
    let options = Options::new().poll_interval(Duration::from_millis(10));
    let running = Running::start(
        ThreadingTcpServer::bind_with("127.0.0.1:0", hooks.clone(), options).unwrap(),
    );
    eventually("service_actions ran thrice", || {
        hooks.actions.load(SeqCst) >= 3
    });
    running.stop();
}

#[test]
fn serve_forever_twice_is_an_error_not_a_hang() {
    let server = ThreadingTcpServer::bind("127.0.0.1:0", upper_lines()).unwrap();
    server.shutdown();
    let summary = server.serve_forever().unwrap();
    assert_eq!(summary.served, 0);
    let again = server.serve_forever().unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::NotConnected);
    assert!(support::net::refuses(
        server.local_addr().as_inet().unwrap()
    ));
}

#[test]
fn dropping_a_server_closes_it() {
    let server = ThreadingTcpServer::bind("127.0.0.1:0", upper_lines()).unwrap();
    let addr = server.local_addr().as_inet().unwrap();
    assert!(!support::net::refuses(addr));
    drop(server);
    assert!(support::net::refuses(addr));
}

#[test]
fn summary_reads_well() {
    let server = ThreadingTcpServer::bind("127.0.0.1:0", upper_lines()).unwrap();
    let running = Running::start(server);
    let (mut stream, mut reader) = connect_lines(running.inet());
    ask(&mut stream, &mut reader, "x");
    stream.shutdown(Shutdown::Both).unwrap();
    eventually("served", || running.handle.stats().served == 1);
    let text = running.stop().to_string();
    assert!(
        text.starts_with(
            "served 1 request(s); 0 in flight at shutdown, 0 cut at the deadline; stopped in "
        ),
        "{text}"
    );
}
