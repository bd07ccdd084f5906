//! Adversarial load against the program's core: idle and trickling
//! connections at the connection cap, a UDP flood beyond the queue, and a
//! shutdown in the middle of heavy streaming.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use support::{ServerProcess, STEP};

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn echo_once(addr: &str, text: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.write_all(text).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    answer
}

#[test]
fn slow_clients_at_the_cap_are_cut_and_an_honest_one_is_served() {
    let server = ServerProcess::start(
        &[
            "serve",
            "echo-upper",
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
            let mut stream = TcpStream::connect(&addr).unwrap();
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
        stream.set_read_timeout(Some(STEP)).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.len() <= 1, "a slow client got {rest:?}");
    }
}

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
    server.signal("TERM");
    assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
    let log = server.stderr_text();
    let dropped: u64 = log
        .split(", dropped ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drop count in the summary: {log}"));
    assert!(dropped > 0, "{log}");
}

#[test]
fn sigterm_under_load_loses_no_byte_and_exits_within_the_deadline() {
    let mut server = ServerProcess::start(
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
    let addr = server.addr();
    let signalled = Arc::new(AtomicBool::new(false));
    let (served_tx, served_rx) = mpsc::channel::<usize>();
    // 200 clients stream; after the signal, even-numbered ones finish their
    // conversation, odd-numbered ones keep going until the deadline cuts them.
    let clients: Vec<_> = (0..200)
        .map(|i| {
            let (addr, signalled, served) = (addr.clone(), signalled.clone(), served_tx.clone());
            std::thread::spawn(move || -> (usize, usize) {
                let mut stream = TcpStream::connect(&addr).unwrap();
                stream.set_read_timeout(Some(STEP)).unwrap();
                let message: Vec<u8> = (0..512)
                    .map(|n| b"abcdefghijklmnopqrstuvwxyz"[(n + i) % 26])
                    .collect();
                let expected = message.to_ascii_uppercase();
                let mut answer = vec![0u8; message.len()];
                let mut round = 1;
                let mut rounds_after_signal = 0;
                // One round first, so every client is being served when the
                // signal comes (connections still in the backlog then are
                // refused, by design).
                stream.write_all(&message).unwrap();
                stream.read_exact(&mut answer).unwrap();
                assert_eq!(answer, expected);
                served.send(i).unwrap();
                loop {
                    if signalled.load(SeqCst) {
                        rounds_after_signal += 1;
                        if i % 2 == 0 && rounds_after_signal > 3 {
                            break;
                        }
                    }
                    if stream.write_all(&message).is_err() {
                        break; // cut at the deadline
                    }
                    match stream.read_exact(&mut answer) {
                        Ok(()) => assert_eq!(
                            answer, expected,
                            "client {i} round {round}: a corrupt reply"
                        ),
                        Err(_) => break,
                    }
                    round += 1;
                }
                stream.shutdown(Shutdown::Write).ok();
                // Whatever still arrives is a whole, correct reply or nothing.
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
                assert_eq!(rest.len() % message.len(), 0, "client {i}: a partial reply");
                assert!(rest.chunks(message.len()).all(|c| c == expected));
                (round, rounds_after_signal)
            })
        })
        .collect();
    for _ in 0..200 {
        served_rx
            .recv_timeout(STEP)
            .expect("every client is served once");
    }
    std::thread::sleep(Duration::from_millis(200)); // let the load run
    server.signal("TERM");
    let signalled_at = Instant::now();
    signalled.store(true, SeqCst);
    let status = server.wait(STEP).expect("the server exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled_at.elapsed() < Duration::from_secs(3) + Duration::from_secs(3),
        "took {:?} to exit",
        signalled_at.elapsed()
    );
    for (i, client) in clients.into_iter().enumerate() {
        let (rounds, after) = client.join().unwrap();
        assert!(rounds > 0, "client {i} was never served");
        if i % 2 == 0 {
            assert!(after > 3, "client {i} could not finish after the signal");
        }
    }
}
