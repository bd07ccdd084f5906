//! The server lifecycle over loopback: shutdown from anywhere, graceful drain,
//! deadlines, hooks, panics.

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use socketserver::{
    handler_fn, Address, Options, RequestHandler, StreamRequest, TcpServer, ThreadingTcpServer,
};
use support::{eventually, Running, STEP};

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

fn connect(addr: std::net::SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

fn ask(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, line: &str) -> String {
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    answer.trim_end().to_string()
}

/// True once connecting to `addr` is refused (the listener is closed).
fn refuses(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect(addr).is_err()
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
    let clients: Vec<_> = (0..100).map(|_| connect(addr)).collect();
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
    let (mut stream, mut reader) = connect(running.inet());
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
        let (mut stream, mut reader) = connect(running.inet());
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
    let (mut stream, mut reader) = connect(addr);
    stream.write_all(b"work\n").unwrap();
    started_rx.recv_timeout(STEP).unwrap();
    running.handle.shutdown();
    eventually("the listener is closed", || refuses(addr));
    gate_tx.send(()).unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    assert_eq!(answer, "done\n");
    let summary = running.stop();
    assert_eq!((summary.in_flight, summary.cut, summary.served), (1, 0, 1));
}

#[test]
fn a_handler_stuck_past_the_deadline_is_cut() {
    let (started_tx, started_rx) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let handler = handler_fn(move |req: &mut StreamRequest| {
        started_tx.lock().unwrap().send(()).unwrap();
        let mut rest = Vec::new();
        req.read_to_end(&mut rest)?; // the client never sends: blocks until cut
        Ok(())
    });
    let server = ThreadingTcpServer::bind_with(
        "127.0.0.1:0",
        handler,
        Options::new().shutdown_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let running = Running::start(server);
    let (_stream, mut reader) = connect(running.inet());
    started_rx.recv_timeout(STEP).unwrap();
    let summary = running.stop();
    assert_eq!(
        (summary.in_flight, summary.cut, summary.threads_left),
        (1, 1, 0)
    );
    let mut buf = [0u8; 1];
    assert_eq!(
        reader.read(&mut buf).unwrap(),
        0,
        "the client sees the close"
    );
}

#[test]
fn one_at_a_time_server_cuts_a_stuck_request_at_the_deadline() {
    let (started_tx, started_rx) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let handler = handler_fn(move |req: &mut StreamRequest| {
        started_tx.lock().unwrap().send(()).unwrap();
        let mut rest = Vec::new();
        req.read_to_end(&mut rest)?;
        Ok(())
    });
    let server = TcpServer::bind_with(
        "127.0.0.1:0",
        handler,
        Options::new().shutdown_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    let running = Running::start(server);
    let (_stream, _reader) = connect(running.inet());
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
    let (mut stream, mut reader) = connect(running.inet());
    stream.write_all(b"boom\n").unwrap();
    let mut rest = String::new();
    assert_eq!(
        reader.read_line(&mut rest).unwrap(),
        0,
        "the panicking request is closed"
    );
    // The single worker thread survived and serves the next client.
    let (mut stream, mut reader) = connect(running.inet());
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
    let (_stream, mut reader) = connect(running.inet());
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
    let (stream, mut reader) = connect(running.inet());
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
    let (_stream, mut reader) = connect(addr);
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
    assert!(refuses(server.local_addr().as_inet().unwrap()));
}

#[test]
fn dropping_a_server_closes_it() {
    let server = ThreadingTcpServer::bind("127.0.0.1:0", upper_lines()).unwrap();
    let addr = server.local_addr().as_inet().unwrap();
    assert!(!refuses(addr));
    drop(server);
    assert!(refuses(addr));
}

#[test]
fn summary_reads_well() {
    let server = ThreadingTcpServer::bind("127.0.0.1:0", upper_lines()).unwrap();
    let running = Running::start(server);
    let (mut stream, mut reader) = connect(running.inet());
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
