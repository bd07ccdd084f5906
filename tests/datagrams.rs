//! The threads mode of a datagram server: workers take turns receiving on
//! the socket and each answers what it received (leader/followers), within
//! the pool's limits, with drops counted and a drain at shutdown.

mod support;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use socketserver::{
    handler_fn, Address, DatagramRequest, Options, RequestHandler, ThreadingUdpServer,
};
use support::{eventually, Running, STEP};

/// Holds handlers until opened, and tells how many wait at it.
#[derive(Default)]
struct Gate {
    /// Whether open, and how many handlers have come to it.
    state: Mutex<(bool, usize)>,
    changed: Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut state = self.state.lock().unwrap();
        state.1 += 1;
        self.changed.notify_all();
        while !state.0 {
            state = self.changed.wait(state).unwrap();
        }
    }

    /// Waits (at most [`STEP`]) until `n` handlers have come to the gate.
    fn wait_for_arrivals(&self, n: usize) {
        let state = self.state.lock().unwrap();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, STEP, |state| state.1 < n)
            .unwrap();
        assert!(state.1 >= n, "{} of {n} handlers came to the gate", state.1);
    }

    fn open(&self) {
        self.state.lock().unwrap().0 = true;
        self.changed.notify_all();
    }
}

/// Answers uppercased; a datagram `block` waits at the gate first.
fn upper_behind(gate: Arc<Gate>) -> impl RequestHandler<DatagramRequest> {
    handler_fn(move |req: &mut DatagramRequest| {
        if req.packet() == b"block" {
            gate.wait();
        }
        req.packet_mut().make_ascii_uppercase();
        req.reply(req.packet())
    })
}

fn client(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(STEP)).unwrap();
    socket.connect(server).unwrap();
    socket
}

fn ask(socket: &UdpSocket, message: &[u8]) -> Vec<u8> {
    socket.send(message).unwrap();
    answer(socket)
}

fn answer(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let n = socket.recv(&mut buf).expect("an answer");
    buf[..n].to_vec()
}

/// The voluntary context switches of one thread of this process.
fn switches_of(tid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a switch count")
}

/// The voluntary context switches of this process's threads called `name`.
fn switches_named(name: &str) -> u64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .map(|task| switches_of(&task.file_name().to_string_lossy()))
        .sum()
}

#[test]
fn datagrams_are_answered_by_the_workers_that_receive_them_not_by_the_serving_thread() {
    let options = Options::new()
        .threads(2)
        .thread_name("dgram-workers")
        // The serving thread would wake only for these.
        .poll_interval(Duration::from_secs(60));
    let server =
        ThreadingUdpServer::bind_with("127.0.0.1:0", upper_behind(Arc::default()), options)
            .unwrap();
    let addr = server.local_addr().as_inet().unwrap();
    let handle = server.handle();
    let (tid_tx, tid_rx) = mpsc::channel();
    let serving = thread::spawn(move || {
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        tid_tx
            .send(link.file_name().unwrap().to_string_lossy().into_owned())
            .unwrap();
        server.serve_forever()
    });
    let serving_tid = tid_rx.recv_timeout(STEP).unwrap();
    let socket = client(addr);
    for _ in 0..200 {
        assert_eq!(ask(&socket, b"warm"), b"WARM");
    }
    const ROUND_TRIPS: u64 = 2_000;
    let (serving_before, workers_before) =
        (switches_of(&serving_tid), switches_named("dgram-workers"));
    for i in 0..ROUND_TRIPS {
        let message = format!("datagram {i}");
        assert_eq!(
            ask(&socket, message.as_bytes()),
            message.to_uppercase().as_bytes()
        );
    }
    let serving_switches = switches_of(&serving_tid) - serving_before;
    let worker_switches = switches_named("dgram-workers") - workers_before;
    // A thread that received a datagram and handed it over would have
    // switched once per datagram, and the worker it woke once more.
    assert!(
        serving_switches <= 5,
        "the serving thread switched {serving_switches} times in {ROUND_TRIPS} round trips"
    );
    assert!(
        worker_switches <= ROUND_TRIPS * 5 / 2,
        "the workers switched {worker_switches} times in {ROUND_TRIPS} round trips"
    );
    handle.shutdown();
    let summary = serving.join().unwrap().unwrap();
    assert_eq!(summary.served, 200 + ROUND_TRIPS);
}

#[test]
fn a_handler_that_blocks_does_not_hold_up_the_next_datagram() {
    let gate = Arc::new(Gate::default());
    let options = Options::new().threads(2);
    let running = Running::start(
        ThreadingUdpServer::bind_with("127.0.0.1:0", upper_behind(gate.clone()), options).unwrap(),
    );
    let first = client(running.inet());
    let second = client(running.inet());
    // Quick answers first, so that the workers take datagrams in batches
    // and the leader handles what it receives without promoting anyone.
    for _ in 0..500 {
        assert_eq!(ask(&first, b"quick"), b"QUICK");
    }
    first.send(b"block").unwrap();
    // The answers to the quick ones came, and the blocking one is held.
    gate.wait_for_arrivals(1);
    assert_eq!(ask(&second, b"meanwhile"), b"MEANWHILE");
    gate.open();
    assert_eq!(answer(&first), b"BLOCK");
    let summary = running.stop();
    assert_eq!(summary.served, 502);
}

#[test]
fn with_every_worker_busy_datagrams_queue_then_drop_and_are_counted() {
    let gate = Arc::new(Gate::default());
    let started = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (gate, started) = (gate.clone(), started.clone());
        handler_fn(move |req: &mut DatagramRequest| {
            started.fetch_add(1, SeqCst);
            gate.wait();
            req.reply(req.packet())
        })
    };
    // Two handle at once, three wait in the queue, the rest are dropped.
    let options = Options::new().threads(1).max_threads(2).queue(3);
    let running =
        Running::start(ThreadingUdpServer::bind_with("127.0.0.1:0", handler, options).unwrap());
    let socket = client(running.inet());
    for i in 0..10u8 {
        socket.send(&[i]).unwrap();
    }
    eventually("every datagram is handled, queued or dropped", || {
        let s = running.handle.stats();
        s.active + s.queued + s.dropped as usize == 10
    });
    let stats = running.handle.stats();
    assert_eq!(
        (stats.active, stats.queued, stats.dropped),
        (2, 3, 5),
        "{stats:?}"
    );
    assert!(
        stats.threads <= 3,
        "max_threads and one receiver: {stats:?}"
    );
    assert_eq!(started.load(SeqCst), 2);
    gate.open();
    let mut got: Vec<u8> = (0..5).map(|_| answer(&socket)[0]).collect();
    got.sort_unstable();
    got.dedup();
    assert_eq!(
        got.len(),
        5,
        "each admitted datagram answered once: {got:?}"
    );
    assert_eq!(&got[..2], [0, 1], "the first two are never dropped");
    // Service goes on.
    assert_eq!(ask(&socket, b"again"), b"again");
    let summary = running.stop();
    assert_eq!((summary.served, summary.dropped), (6, 5));
}

/// Refuses every datagram from `banned`.
struct Bouncer {
    banned: SocketAddr,
}

impl RequestHandler<DatagramRequest> for Bouncer {
    fn handle(&self, req: &mut DatagramRequest) -> io::Result<()> {
        req.reply(b"welcome")
    }

    fn verify_request(&self, peer: &Address) -> bool {
        peer.as_inet() != Some(self.banned)
    }
}

/// Datagrams the kernel drops from a full receive buffer, before the
/// server receives them, are counted too: in the metrics while it runs, in
/// the summary when it stops.
#[test]
fn datagrams_the_kernel_dropped_are_counted_in_the_metrics_and_the_summary() {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Nothing receives yet: the buffer fills, and the kernel drops the rest.
    let flood = client(addr);
    for _ in 0..200 {
        let _ = flood.send(&[b'x'; 1024]);
    }
    let server =
        ThreadingUdpServer::from_listener(socket, upper_behind(Arc::default()), Options::new())
            .unwrap();
    let dropped = server.metrics().dropped_by_kernel;
    assert!(dropped > 0 && dropped < 200, "{dropped} of 200");
    let running = Running::start(server);
    assert_eq!(ask(&client(addr), b"after"), b"AFTER");
    let summary = running.stop();
    assert_eq!(summary.dropped_by_kernel, dropped, "{summary}");
    assert!(
        summary
            .to_string()
            .contains(&format!("({dropped} by the kernel: receive buffer full)")),
        "{summary}"
    );
}

#[test]
fn datagrams_refused_by_verify_request_are_counted_as_dropped() {
    let banned = UdpSocket::bind("127.0.0.1:0").unwrap();
    let handler = Bouncer {
        banned: banned.local_addr().unwrap(),
    };
    let running = Running::start(ThreadingUdpServer::bind("127.0.0.1:0", handler).unwrap());
    banned.connect(running.inet()).unwrap();
    for _ in 0..5 {
        banned.send(b"let me in").unwrap();
    }
    let welcome = client(running.inet());
    assert_eq!(ask(&welcome, b"hello"), b"welcome");
    eventually("the refused datagrams are counted", || {
        running.handle.stats().dropped == 5
    });
    let summary = running.stop();
    assert_eq!((summary.served, summary.dropped), (1, 5));
}

#[test]
fn shutdown_serves_the_datagrams_already_received_then_stops() {
    let gate = Arc::new(Gate::default());
    let options = Options::new().threads(1).max_threads(1).queue(4);
    let mut running = Running::start(
        ThreadingUdpServer::bind_with("127.0.0.1:0", upper_behind(gate.clone()), options).unwrap(),
    );
    let socket = client(running.inet());
    socket.send(b"block").unwrap();
    socket.send(b"queued 1").unwrap();
    socket.send(b"queued 2").unwrap();
    eventually("one handled, two queued", || {
        let s = running.handle.stats();
        (s.active, s.queued) == (1, 2)
    });
    running.handle.shutdown();
    // The shutdown waits for what was received.
    assert!(running.handle.is_shutdown());
    let late = client(running.inet());
    late.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    gate.open();
    let mut got: Vec<Vec<u8>> = (0..3).map(|_| answer(&socket)).collect();
    got.sort();
    assert_eq!(
        got,
        [
            b"BLOCK".to_vec(),
            b"QUEUED 1".to_vec(),
            b"QUEUED 2".to_vec()
        ]
    );
    let summary = running.join();
    assert_eq!((summary.served, summary.in_flight, summary.cut), (3, 3, 0));
    // Closed: nothing answers any more.
    late.send(b"anyone?").ok();
    assert!(late.recv(&mut [0u8; 16]).is_err());
}

#[test]
fn handle_request_serves_one_datagram_or_times_out() {
    let timeouts = Arc::new(AtomicUsize::new(0));
    struct Upper(Arc<AtomicUsize>);
    impl RequestHandler<DatagramRequest> for Upper {
        fn handle(&self, req: &mut DatagramRequest) -> io::Result<()> {
            req.packet_mut().make_ascii_uppercase();
            req.reply(req.packet())
        }
        fn handle_timeout(&self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let options = Options::new().timeout(Some(Duration::from_secs(2)));
    let server =
        ThreadingUdpServer::bind_with("127.0.0.1:0", Upper(timeouts.clone()), options).unwrap();
    server.handle_request().unwrap();
    assert_eq!(timeouts.load(SeqCst), 1, "nothing came: handle_timeout");
    // From the first call on, the workers receive; each call returns once
    // a datagram has come.
    let socket = client(server.local_addr().as_inet().unwrap());
    thread::scope(|scope| {
        let waiting = scope.spawn(|| server.handle_request());
        let mut asked = 0;
        while !waiting.is_finished() {
            assert_eq!(ask(&socket, b"one"), b"ONE");
            asked += 1;
            assert!(asked < 10_000, "handle_request does not return");
        }
        waiting.join().unwrap().unwrap();
    });
    assert_eq!(
        timeouts.load(SeqCst),
        1,
        "a datagram came before the timeout"
    );
    // The answer reaches the client before its worker counts it served.
    eventually("the answered datagram is counted", || {
        server.stats().served >= 1
    });
}

#[test]
fn a_burst_grows_the_pool_which_then_retires_to_its_core() {
    let gate = Arc::new(Gate::default());
    let options = Options::new()
        .threads(1)
        .max_threads(8)
        .keep_alive(Duration::from_millis(50));
    let running = Running::start(
        ThreadingUdpServer::bind_with("127.0.0.1:0", upper_behind(gate.clone()), options).unwrap(),
    );
    let socket = client(running.inet());
    for _ in 0..6 {
        socket.send(b"block").unwrap();
    }
    gate.wait_for_arrivals(6);
    eventually("six handled at once", || running.handle.stats().active == 6);
    let threads = running.handle.stats().threads;
    assert!(
        (7..=9).contains(&threads),
        "six busy and one receiving: {threads}"
    );
    gate.open();
    for _ in 0..6 {
        assert_eq!(answer(&socket), b"BLOCK");
    }
    // The core: one thread receives, one stands by.
    eventually("the pool retires to its core", || {
        running.handle.stats().threads == 2
    });
    assert_eq!(ask(&socket, b"still there"), b"STILL THERE");
}

#[test]
fn many_datagrams_waiting_at_once_are_all_answered() {
    let running = Running::start(
        ThreadingUdpServer::bind("127.0.0.1:0", upper_behind(Arc::default())).unwrap(),
    );
    let socket = client(running.inet());
    for _ in 0..50 {
        assert_eq!(ask(&socket, b"warm"), b"WARM");
    }
    // Bursts larger than a receive takes at once.
    for burst in 0..20 {
        for i in 0..40 {
            socket.send(format!("b{burst} d{i}").as_bytes()).unwrap();
        }
        let mut got: Vec<Vec<u8>> = (0..40).map(|_| answer(&socket)).collect();
        got.sort();
        let mut want: Vec<Vec<u8>> = (0..40)
            .map(|i| format!("B{burst} D{i}").into_bytes())
            .collect();
        want.sort();
        assert_eq!(got, want);
    }
    let summary = running.stop();
    assert_eq!((summary.served, summary.dropped), (50 + 800, 0));
}
