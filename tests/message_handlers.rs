//! Message handlers (the library's `request::MessageHandler`) in both
//! dispatch modes: framing at its edges, blocking messages on the pool,
//! peers that vanish, timeouts, broadcasts, panics and the shutdown drain.
//! Every test runs once per mode, but the last, which is the reactor's own:
//! a thousand connections on two event loops.

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use socketserver::request::{
    Closing, Conn, ConnHandle, Endian, Framing, FramingError, MessageHandler, Next,
};
use socketserver::Options;
use support::net::connect_small_buffer;
use support::{run_messages, until_closed, Mode, Running, STEP};

fn connect(server: &Running) -> TcpStream {
    support::connect(server.inet())
}

/// Big-endian frames of at most 16 bytes, answered reversed; a frame over
/// the limit is answered `too large` before the connection closes.
#[derive(Clone, Default)]
struct Reverse {
    bad: Arc<Mutex<Vec<FramingError>>>,
}

impl MessageHandler for Reverse {
    type Session = ();

    fn framing(&self, _: &()) -> Framing {
        Framing::LengthPrefixed {
            endian: Endian::Big,
            max: 16,
        }
    }

    fn open(&self, _: &mut Conn<'_>) -> io::Result<()> {
        Ok(())
    }

    fn on_message(&self, _: &mut (), frame: &[u8], conn: &mut Conn<'_>) -> io::Result<Next> {
        conn.write_all(&(frame.len() as u32).to_be_bytes())?;
        let reversed: Vec<u8> = frame.iter().rev().copied().collect();
        conn.write_all(&reversed)?;
        Ok(Next::Continue)
    }

    fn on_bad_message(
        &self,
        _: &mut (),
        error: FramingError,
        conn: &mut Conn<'_>,
    ) -> io::Result<()> {
        self.bad.lock().push(error);
        if let FramingError::FrameTooLarge { .. } = error {
            conn.write_all(b"too large")?;
        }
        Ok(())
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut payload).unwrap();
    payload
}

crate::both_modes! {
    fn a_frame_split_one_byte_at_a_time_is_one_message(mode) {
        let server = run_messages(mode, Reverse::default(), Options::new());
        let mut stream = connect(&server);
        stream.set_nodelay(true).unwrap();
        for byte in frame(b"abcdef") {
            stream.write_all(&[byte]).unwrap();
        }
        assert_eq!(read_frame(&mut stream), b"fedcba");
        // The client leaves first: nothing is left for the drain to wait for.
        drop(stream);
        let summary = server.stop();
        assert_eq!(summary.cut, 0, "{summary}");
    }

    fn many_frames_in_one_write_are_answered_in_order(mode) {
        let server = run_messages(mode, Reverse::default(), Options::new());
        let mut stream = connect(&server);
        let batch: Vec<u8> = (0..500u32)
            .flat_map(|i| frame(format!("{i:05}").as_bytes()))
            .collect();
        stream.write_all(&batch).unwrap();
        for i in 0..500u32 {
            let expected: Vec<u8> = format!("{i:05}").bytes().rev().collect();
            assert_eq!(read_frame(&mut stream), expected, "frame {i}");
        }
        drop(stream);
        let summary = server.stop();
        assert_eq!(summary.cut, 0, "{summary}");
    }

    fn a_frame_at_the_limit_passes_and_one_byte_over_is_refused(mode) {
        let handler = Reverse::default();
        let server = run_messages(mode, handler.clone(), Options::new());
        let mut stream = connect(&server);
        stream.write_all(&frame(&[b'x'; 16])).unwrap();
        assert_eq!(read_frame(&mut stream), vec![b'x'; 16]);
        // 17 bytes announced: refused as soon as the length is read, before
        // any payload arrives.
        stream.write_all(&17u32.to_be_bytes()).unwrap();
        assert_eq!(until_closed(&mut stream), b"too large");
        assert_eq!(
            *handler.bad.lock(),
            [FramingError::FrameTooLarge { len: 17, max: 16 }]
        );
        server.stop();
    }

    fn a_peer_that_closes_mid_message_costs_only_its_connection(mode) {
        let handler = Reverse::default();
        let server = run_messages(mode, handler.clone(), Options::new());
        let mut other = connect(&server);
        let mut stream = connect(&server);
        stream.write_all(&frame(b"abcdefgh")[..6]).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        assert_eq!(until_closed(&mut stream), b"");
        support::eventually("the truncation is reported", || {
            *handler.bad.lock() == [FramingError::Truncated { got: 6 }]
        });
        other.write_all(&frame(b"still")).unwrap();
        assert_eq!(read_frame(&mut other), b"llits");
        drop((stream, other));
        let summary = server.stop();
        assert_eq!(summary.panicked, 0);
        assert_eq!(summary.cut, 0, "{summary}");
    }
}

/// Lines of at most 8 bytes, each answered with its length; `block N`
/// is a blocking message that reads an N-byte body itself and answers with
/// the name of the thread it ran on.
#[derive(Clone)]
struct Lines;

impl MessageHandler for Lines {
    type Session = Option<usize>;

    fn framing(&self, _: &Option<usize>) -> Framing {
        Framing::Line { max: 8 }
    }

    fn blocking(&self, next_body: &Option<usize>) -> bool {
        next_body.is_some()
    }

    fn open(&self, _: &mut Conn<'_>) -> io::Result<Option<usize>> {
        Ok(None)
    }

    fn on_message(
        &self,
        next_body: &mut Option<usize>,
        line: &[u8],
        conn: &mut Conn<'_>,
    ) -> io::Result<Next> {
        if let Some(size) = next_body.take() {
            // This message may block: read the body that follows.
            let mut body = vec![0u8; size];
            conn.read_exact(&mut body)?;
            let thread = std::thread::current().name().unwrap_or("").to_string();
            writeln!(
                conn,
                "{} {} on {thread}",
                String::from_utf8_lossy(line),
                body.len()
            )?;
            return Ok(Next::Continue);
        }
        if let Some(size) = line.strip_prefix(b"block ") {
            let size: usize = String::from_utf8_lossy(size).parse().unwrap_or(0);
            *next_body = Some(size);
            return Ok(Next::Continue);
        }
        if line == b"quit" {
            writeln!(conn, "bye")?;
            return Ok(Next::Close);
        }
        writeln!(conn, "{}", line.len())?;
        Ok(Next::Continue)
    }

    fn on_bad_message(
        &self,
        _: &mut Option<usize>,
        error: FramingError,
        conn: &mut Conn<'_>,
    ) -> io::Result<()> {
        writeln!(conn, "error: {error}")
    }
}

fn line(reader: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

crate::both_modes! {
    fn a_line_at_the_limit_passes_and_one_byte_over_is_refused(mode) {
        let server = run_messages(mode, Lines, Options::new());
        let stream = connect(&server);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        writer.write_all(b"12345678\r\nabc\n").unwrap();
        assert_eq!(line(&mut reader), "8");
        assert_eq!(line(&mut reader), "3");
        writer.write_all(b"123456789").unwrap();
        assert_eq!(line(&mut reader), "error: a line over 8 bytes");
        assert_eq!(line(&mut reader), "", "then the connection closes");
        server.stop();
    }

    fn a_blocking_message_goes_to_the_pool_and_the_connection_comes_back(mode) {
        let server = run_messages(mode, Lines, Options::new());
        let stream = connect(&server);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        // A blocking message, its body pipelined with the next line, then
        // inline messages again.
        writer.write_all(b"block 5\nbody\nhello12345\nabc\n").unwrap();
        let answer = line(&mut reader);
        assert!(answer.starts_with("body 5 on "), "{answer}");
        if mode == Mode::Reactor {
            assert!(
                !answer.contains("socketserver-loop"),
                "a blocking message never runs on an event loop: {answer}"
            );
        }
        // The body was the next 5 bytes ("hello"); the rest is lines again.
        assert_eq!(line(&mut reader), "5");
        assert_eq!(line(&mut reader), "3");
        drop((reader, writer));
        let mut second = connect(&server);
        second.write_all(b"block 3\nxyz\nabcab\nquit\n").unwrap();
        let mut reader = BufReader::new(second.try_clone().unwrap());
        assert!(line(&mut reader).starts_with("xyz 3 on "));
        assert_eq!(line(&mut reader), "2");
        assert_eq!(line(&mut reader), "bye");
        assert_eq!(line(&mut reader), "");
        let summary = server.stop();
        assert_eq!(summary.cut, 0, "{summary}");
    }

    fn an_idle_connection_is_closed_after_the_idle_timeout(mode) {
        let options = Options::new().idle_timeout(Some(Duration::from_millis(300)));
        let server = run_messages(mode, Lines, options);
        let stream = connect(&server);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        writer.write_all(b"ab\n").unwrap();
        assert_eq!(line(&mut reader), "2");
        let started = Instant::now();
        assert_eq!(line(&mut reader), "", "closed when idle");
        let idle = started.elapsed();
        assert!(idle >= Duration::from_millis(250), "{idle:?}");
        assert!(idle < Duration::from_secs(5), "{idle:?}");
        server.stop();
    }
}

/// A room: every line goes to every other member through their handles;
/// a line `boom` panics.
#[derive(Clone, Default)]
struct Room {
    members: Arc<Mutex<Vec<ConnHandle>>>,
    closed: Arc<Mutex<Vec<Closing>>>,
}

impl MessageHandler for Room {
    type Session = usize;

    fn framing(&self, _: &usize) -> Framing {
        Framing::Line { max: 1 << 16 }
    }

    fn idle_ends_at_shutdown(&self) -> bool {
        true
    }

    fn open(&self, conn: &mut Conn<'_>) -> io::Result<usize> {
        let handle = conn.handle(64 * 1024)?;
        let mut members = self.members.lock();
        members.push(handle);
        Ok(members.len() - 1)
    }

    fn on_message(&self, me: &mut usize, line: &[u8], _: &mut Conn<'_>) -> io::Result<Next> {
        if line == b"boom" {
            panic!("a handler that panics on purpose");
        }
        let mut text = line.to_vec();
        text.push(b'\n');
        for (i, member) in self.members.lock().iter().enumerate() {
            if i != *me {
                member.send(&text);
            }
        }
        Ok(Next::Continue)
    }

    fn close(&self, _: usize, why: Closing, conn: &mut Conn<'_>) {
        self.closed.lock().push(why);
        if why == Closing::Shutdown {
            let _ = conn.write_all(b"goodbye\n");
        }
    }
}

crate::both_modes! {
    fn broadcasts_reach_every_member_and_a_non_reader_is_cut(mode) {
        let room = Room::default();
        let server = run_messages(mode, room.clone(), Options::new());
        let talker = connect(&server);
        let listener = connect(&server);
        let deaf = connect_small_buffer(server.inet());
        support::eventually("three members", || room.members.lock().len() == 3);
        let mut talker_out = talker;
        let mut reader = BufReader::new(listener);
        let payload = "y".repeat(1000);
        // The deaf member reads nothing: its backlog (64 KiB, plus what the
        // kernel buffers) overflows and it is cut, while the listener gets
        // every line.
        let mut sent = 0;
        while !room.closed.lock().contains(&Closing::Error) {
            assert!(sent < 20_000, "the deaf member was never cut");
            writeln!(talker_out, "{sent} {payload}").unwrap();
            assert_eq!(line(&mut reader), format!("{sent} {payload}"));
            sent += 1;
        }
        drop(deaf);
        server.stop();
    }

    fn a_panic_costs_only_its_connection(mode) {
        let room = Room::default();
        let server = run_messages(mode, room.clone(), Options::new());
        let mut bomber = connect(&server);
        let listener = connect(&server);
        support::eventually("two members", || room.members.lock().len() == 2);
        bomber.write_all(b"boom\n").unwrap();
        assert_eq!(until_closed(&mut bomber), b"");
        // The server (and in reactor mode, the loop) goes on.
        let mut third = connect(&server);
        support::eventually("three members", || room.members.lock().len() == 3);
        third.write_all(b"still here\n").unwrap();
        let mut reader = BufReader::new(listener);
        assert_eq!(line(&mut reader), "still here");
        let summary = server.stop();
        assert_eq!(summary.panicked, 1, "{summary}");
    }

    fn shutdown_closes_idle_members_at_once_with_a_last_word(mode) {
        let room = Room::default();
        let server = run_messages(
            mode,
            room.clone(),
            Options::new().shutdown_timeout(Duration::from_secs(30)),
        );
        let clients: Vec<TcpStream> = (0..20).map(|_| connect(&server)).collect();
        support::eventually("every member in", || room.members.lock().len() == 20);
        let started = Instant::now();
        let summary = server.stop();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "idle members were not closed at once: {:?}",
            started.elapsed()
        );
        assert_eq!(summary.cut, 0, "{summary}");
        for mut client in clients {
            assert_eq!(until_closed(&mut client), b"goodbye\n");
        }
    }
}

/// Answers each line after a signal from the test, to hold a message in
/// progress.
#[derive(Clone)]
struct Slow {
    release: Arc<Mutex<mpsc::Receiver<()>>>,
    /// Told when a message starts.
    started: mpsc::Sender<()>,
}

impl MessageHandler for Slow {
    type Session = ();

    fn framing(&self, _: &()) -> Framing {
        Framing::Line { max: 64 }
    }

    fn blocking(&self, _: &()) -> bool {
        true
    }

    fn idle_ends_at_shutdown(&self) -> bool {
        true
    }

    fn open(&self, _: &mut Conn<'_>) -> io::Result<()> {
        Ok(())
    }

    fn on_message(&self, _: &mut (), line: &[u8], conn: &mut Conn<'_>) -> io::Result<Next> {
        let _ = self.started.send(());
        let _ = self.release.lock().recv_timeout(STEP);
        conn.write_all(line)?;
        conn.write_all(b"\n")?;
        Ok(Next::Continue)
    }
}

crate::both_modes! {
    fn a_message_in_progress_finishes_at_shutdown_and_idle_ones_close(mode) {
        let (release, waiting) = mpsc::channel();
        let (started_tx, started) = mpsc::channel();
        let slow = Slow {
            release: Arc::new(Mutex::new(waiting)),
            started: started_tx,
        };
        let server = run_messages(
            mode,
            slow.clone(),
            Options::new().shutdown_timeout(Duration::from_secs(30)),
        );
        let mut busy = connect(&server);
        let mut idle = connect(&server);
        busy.write_all(b"in progress\n").unwrap();
        started.recv_timeout(STEP).expect("the message starts");
        let handle = server.handle.clone();
        handle.shutdown();
        // The idle connection is closed at once...
        assert_eq!(until_closed(&mut idle), b"");
        // ...and the busy one gets its answer when its handler returns.
        release.send(()).unwrap();
        let mut answer = [0u8; 12];
        busy.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"in progress\n");
        let summary = server.stop();
        assert_eq!(summary.cut, 0, "{summary}");
    }
}

#[test]
fn a_reactor_serves_a_thousand_connections_on_two_loops() {
    let options = Options::new().reactor_threads(2).threads(1);
    let server = run_messages(Mode::Reactor, Lines, options);
    let mut clients: Vec<BufReader<TcpStream>> = (0..1000)
        .map(|_| BufReader::new(connect(&server)))
        .collect();
    for round in 0..3 {
        for client in clients.iter_mut() {
            client.get_mut().write_all(b"abcd\n").unwrap();
        }
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(line(client), "4", "client {i} round {round}");
        }
    }
    let stats = server.handle.stats();
    assert!(stats.threads <= 4, "no thread per connection: {stats:?}");
    let started = Instant::now();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn with_a_listener_per_loop_each_loop_accepts_and_all_close_at_shutdown() {
    let options = Options::new()
        .reactor_threads(3)
        .threads(1)
        .listener_per_loop(true);
    let server = run_messages(Mode::Reactor, Lines, options);
    let addr = server.inet();
    assert_eq!(
        support::net::listening_on(addr.port()),
        3,
        "one listener per loop"
    );
    let mut clients: Vec<BufReader<TcpStream>> =
        (0..200).map(|_| BufReader::new(connect(&server))).collect();
    for client in clients.iter_mut() {
        client.get_mut().write_all(b"abc\n").unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(line(client), "3", "client {i}");
    }
    assert_eq!(server.handle.stats().active, 0);
    let summary = server.stop();
    assert_eq!(summary.served, 200, "{summary}");
    assert_eq!(
        support::net::listening_on(addr.port()),
        0,
        "every listener closed"
    );
    assert!(support::net::refuses(addr));
}

#[test]
fn with_a_listener_per_loop_the_connection_limit_holds_and_frees() {
    let options = Options::new()
        .reactor_threads(2)
        .threads(1)
        .max_connections(3)
        .listener_per_loop(true);
    let server = run_messages(Mode::Reactor, Lines, options);
    let mut admitted: Vec<BufReader<TcpStream>> =
        (0..3).map(|_| BufReader::new(connect(&server))).collect();
    for client in admitted.iter_mut() {
        client.get_mut().write_all(b"ab\n").unwrap();
        assert_eq!(line(client), "2");
    }
    // The fourth waits in a listen backlog, unanswered...
    let mut waiting = BufReader::new(connect(&server));
    waiting.get_mut().write_all(b"abcd\n").unwrap();
    waiting
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 8];
    let early = waiting.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
        "answered past the limit: {early:?}"
    );
    // ...until a connection closes: whichever loop's backlog holds it
    // takes it in.
    drop(admitted.pop());
    waiting.get_mut().set_read_timeout(Some(STEP)).unwrap();
    assert_eq!(line(&mut waiting), "4");
    server.stop();
}

/// Connections that came before serving began wait in the backlogs, then
/// are taken in, a budget per turn, and all answered.
#[test]
fn with_a_listener_per_loop_a_crowd_waiting_before_serving_is_taken_in() {
    let options = Options::new()
        .reactor_threads(2)
        .threads(1)
        .listener_per_loop(true);
    let server = socketserver::ReactorTcpServer::bind_with("127.0.0.1:0", Lines, options).unwrap();
    let addr = server.local_addr().as_inet().unwrap();
    let mut clients: Vec<BufReader<TcpStream>> = (0..300)
        .map(|_| BufReader::new(support::connect(addr)))
        .collect();
    for client in clients.iter_mut() {
        client.get_mut().write_all(b"abcdef\n").unwrap();
    }
    assert_eq!(server.handle().stats().served, 0, "nothing before serving");
    let server = Running::start(server);
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(line(client), "6", "client {i}");
    }
    server.stop();
}

#[test]
fn a_given_socket_without_reuse_port_keeps_one_listener_and_serves() {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let options = Options::new().reactor_threads(2).listener_per_loop(true);
    let server = Running::start(
        socketserver::ReactorTcpServer::from_listener(socket, Lines, options).unwrap(),
    );
    assert_eq!(support::net::listening_on(server.inet().port()), 1);
    let mut client = BufReader::new(connect(&server));
    client.get_mut().write_all(b"abcde\n").unwrap();
    assert_eq!(line(&mut client), "5");
    server.stop();
}

/// A request in two lines: `begin` (answered `go on`), then the rest
/// (answered `done: REST`); in between, the session is inside a request.
#[derive(Clone)]
struct TwoPart;

impl MessageHandler for TwoPart {
    type Session = bool;

    fn framing(&self, _: &bool) -> Framing {
        Framing::Line { max: 64 }
    }

    fn in_request(&self, begun: &bool) -> bool {
        *begun
    }

    fn idle_ends_at_shutdown(&self) -> bool {
        true
    }

    fn open(&self, _: &mut Conn<'_>) -> io::Result<bool> {
        Ok(false)
    }

    fn on_message(&self, begun: &mut bool, line: &[u8], conn: &mut Conn<'_>) -> io::Result<Next> {
        if *begun {
            *begun = false;
            conn.write_all(b"done: ")?;
            conn.write_all(line)?;
            conn.write_all(b"\n")?;
        } else {
            *begun = true;
            conn.write_all(b"go on\n")?;
        }
        Ok(Next::Continue)
    }
}

crate::both_modes! {
    fn a_request_in_several_messages_finishes_at_shutdown(mode) {
        let server = run_messages(
            mode,
            TwoPart,
            Options::new().shutdown_timeout(Duration::from_secs(30)),
        );
        let stream = connect(&server);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut idle = connect(&server);
        writer.write_all(b"begin\n").unwrap();
        assert_eq!(line(&mut reader), "go on");
        // Between its two messages the connection is not idle: a shutdown
        // lets the request finish, and closes the idle one at once.
        server.handle.shutdown();
        assert_eq!(until_closed(&mut idle), b"");
        writer.write_all(b"the rest\n").unwrap();
        assert_eq!(line(&mut reader), "done: the rest");
        let summary = server.stop();
        assert_eq!(summary.cut, 0, "{summary}");
    }
}

#[test]
fn blocking_messages_beyond_the_pool_wait_for_a_thread_and_run_when_one_frees() {
    let (release, waiting) = mpsc::channel();
    let (started_tx, started) = mpsc::channel();
    let slow = Slow {
        release: Arc::new(Mutex::new(waiting)),
        started: started_tx,
    };
    // One thread and no queue: a second blocking message finds the pool full.
    let options = Options::new()
        .threads(1)
        .max_threads(1)
        .queue(0)
        .reactor_threads(1);
    let server = run_messages(Mode::Reactor, slow.clone(), options);
    let (answered_tx, answered) = mpsc::channel();
    let readers: Vec<_> = (0..3)
        .map(|i| {
            let mut client = connect(&server);
            client
                .write_all(format!("message {i}\n").as_bytes())
                .unwrap();
            let answered_tx = answered_tx.clone();
            std::thread::spawn(move || {
                let mut answer = [0u8; 10];
                client.read_exact(&mut answer).unwrap();
                assert_eq!(answer, format!("message {i}\n").as_bytes());
                answered_tx.send(i).unwrap();
            })
        })
        .collect();
    let mut done = Vec::new();
    for _ in 0..3 {
        // One message at a time holds the only thread; the others wait.
        started.recv_timeout(STEP).expect("the next message starts");
        assert!(
            started.try_recv().is_err(),
            "two messages ran at once on one thread"
        );
        release.send(()).unwrap();
        done.push(answered.recv_timeout(STEP).expect("its client is answered"));
    }
    done.sort_unstable();
    assert_eq!(done, [0, 1, 2]);
    for reader in readers {
        reader.join().unwrap();
    }
    server.stop();
}
