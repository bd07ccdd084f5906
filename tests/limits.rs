//! The pool and the limits over loopback: growth and retirement, backpressure,
//! rejection, idle timeouts, UDP queue overflow.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use socketserver::{
    handler_fn, DatagramRequest, Options, StreamRequest, ThreadingTcpServer, ThreadingUdpServer,
};
use support::{eventually, Running, STEP};

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

fn round_trip(stream: &mut TcpStream, text: &str) -> std::io::Result<String> {
    stream.write_all(format!("{text}\n").as_bytes())?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

fn connect(addr: std::net::SocketAddr, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream
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
        let clients: Vec<_> = (0..50).map(|_| connect(addr, STEP)).collect();
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
fn max_connections_applies_backpressure() {
    let options = Options::new().max_connections(2);
    let running = Running::start(
        ThreadingTcpServer::bind_with("127.0.0.1:0", echo_lines(), options).unwrap(),
    );
    let addr = running.inet();
    let mut first = connect(addr, STEP);
    let mut second = connect(addr, STEP);
    assert_eq!(round_trip(&mut first, "1").unwrap(), "1");
    assert_eq!(round_trip(&mut second, "2").unwrap(), "2");
    // The third connects (the kernel's backlog holds it) but is not served...
    let mut third = connect(addr, Duration::from_millis(300));
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

#[test]
fn reject_when_full_closes_at_once_and_counts() {
    let options = Options::new().max_connections(1).reject_when_full(true);
    let running = Running::start(
        ThreadingTcpServer::bind_with("127.0.0.1:0", echo_lines(), options).unwrap(),
    );
    let addr = running.inet();
    let mut first = connect(addr, STEP);
    assert_eq!(round_trip(&mut first, "1").unwrap(), "1");
    let mut second = connect(addr, STEP);
    let mut buf = [0u8; 1];
    let closed = matches!(second.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "the extra connection is closed unserved");
    eventually("the rejection is counted", || {
        running.handle.stats().rejected == 1
    });
    assert_eq!(round_trip(&mut first, "ok").unwrap(), "ok");
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
    let mut clients: Vec<TcpStream> = (0..3).map(|_| connect(addr, STEP)).collect();
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
fn idle_timeout_closes_silent_clients_only() {
    let options = Options::new().idle_timeout(Some(Duration::from_millis(300)));
    let running = Running::start(
        ThreadingTcpServer::bind_with("127.0.0.1:0", echo_lines(), options).unwrap(),
    );
    let addr = running.inet();
    let mut silent = connect(addr, STEP);
    let mut talker = connect(addr, STEP);
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
    let _silent = connect(running.inet(), STEP);
    eventually("the stuck write gives up", || {
        let s = running.handle.stats();
        s.failed == 1 && s.active == 0
    });
}
