//! The PROXY protocol end to end, in both dispatch modes (rules 30, 31, 39,
//! 40, 46): the header's client is the peer of the handler, of
//! `verify_request`, of log lines, of chat's names and of the auth failure
//! limit; `LOCAL` and `UNKNOWN` keep the real peer; a header trickled and
//! never finished is closed at its deadline without delaying anyone.
//!
//! `cargo test --all-features --test deployment_proxy`

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use socketserver::protocol::auth::Key;
use socketserver::protocol::framing::FrameCodec;
use socketserver::request::{Conn, Framing, MessageHandler, Next};
use socketserver::{Address, Options};
use support::http::get;
use support::proxy::{proxy_v1, proxy_v2, proxy_v2_local};
use support::{program, ServerProcess, STEP};
use support::{run_messages, Mode, TempDir};

fn serve(service: &str, mode: Mode, args: &[&str]) -> ServerProcess {
    ServerProcess::start_with(
        program()
            .args(["serve", service, "--proxy-protocol"])
            .args(mode.flag())
            .args(args),
        1,
    )
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A connection that starts with `header`.
fn connect_with(server: &str, header: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(server).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.write_all(header).unwrap();
    stream
}

/// Reads until the server closes; what came (a reset counts as closed).
fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("{e}"),
    }
    rest
}

/// A chat member behind a header.
struct Member {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Member {
    fn join(server: &str, header: &[u8]) -> Member {
        let stream = connect_with(server, header);
        let mut member = Member {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        };
        // The room has it once it refuses an empty nick (its first line).
        member.say("/nick");
        assert_eq!(member.line(), "* a nick cannot be empty (use /nick NAME)");
        member
    }

    fn say(&mut self, text: &str) {
        writeln!(self.writer, "{text}").unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim_end_matches('\n').to_string()
    }

    fn local(&self) -> SocketAddr {
        self.writer.local_addr().unwrap()
    }
}

/// Echoes the peer it was given, once, and closes; refuses 192.0.2.66.
#[derive(Clone, Default)]
struct WhoAmI {
    verified: Arc<Mutex<Vec<Address>>>,
}

impl MessageHandler for WhoAmI {
    type Session = ();

    fn framing(&self, _: &()) -> Framing {
        Framing::Line { max: 64 }
    }

    fn open(&self, conn: &mut Conn<'_>) -> io::Result<()> {
        let peer = conn.peer().clone();
        writeln!(conn, "you are {peer}")
    }

    fn on_message(&self, _: &mut (), _: &[u8], _: &mut Conn<'_>) -> io::Result<Next> {
        Ok(Next::Close)
    }

    fn verify_request(&self, peer: &Address) -> bool {
        self.verified.lock().push(peer.clone());
        peer.as_inet().map(|a| a.ip().to_string()) != Some("192.0.2.66".to_string())
    }
}

both_modes! {
    fn the_handler_and_verify_request_see_the_header_address(mode) {
        let handler = WhoAmI::default();
        let server = run_messages(mode, handler.clone(), Options::new().proxy_protocol(true));
        let target = server.inet().to_string();
        let ask = |header: &[u8]| -> String {
            let mut stream = connect_with(&target, header);
            let mut answer = String::new();
            BufReader::new(&mut stream).read_line(&mut answer).unwrap();
            answer
        };
        let dst = server.inet();
        assert_eq!(ask(&proxy_v1(addr("203.0.113.7:5555"), dst)), "you are 203.0.113.7:5555\n");
        let v6 = addr("[2001:db8::7]:6666");
        assert_eq!(ask(&proxy_v2(v6, addr("[2001:db8::1]:443"))), "you are [2001:db8::7]:6666\n");
        // LOCAL and UNKNOWN keep the real peer.
        let mut local = connect_with(&target, &proxy_v2_local());
        let mut answer = String::new();
        BufReader::new(&mut local).read_line(&mut answer).unwrap();
        assert_eq!(answer, format!("you are {}\n", local.local_addr().unwrap()));
        let mut unknown = connect_with(&target, b"PROXY UNKNOWN\r\n");
        let mut answer = String::new();
        BufReader::new(&mut unknown).read_line(&mut answer).unwrap();
        assert_eq!(answer, format!("you are {}\n", unknown.local_addr().unwrap()));
        // verify_request judged the header's client and refused this one.
        let mut refused = connect_with(&target, &proxy_v1(addr("192.0.2.66:1"), dst));
        assert!(until_closed(&mut refused).is_empty());
        let verified = handler.verified.lock().clone();
        assert!(verified.contains(&Address::Inet(addr("192.0.2.66:1"))), "{verified:?}");
        assert!(verified.contains(&Address::Inet(v6)), "{verified:?}");
        // Counted as rejected once the worker is done with it.
        support::eventually("the refusal to be counted", || server.handle.stats().rejected == 1);
    }

    fn chat_names_come_from_the_header(mode) {
        let server = serve("chat", mode, &["--bind", "tcp://127.0.0.1:0"]);
        let target = server.addr_of(0);
        let dst = addr(&target);
        let mut first = Member::join(&target, &proxy_v1(addr("203.0.113.7:5555"), dst));
        let mut second = Member::join(&target, &proxy_v2(addr("[2001:db8::7]:6666"), addr("[2001:db8::1]:7000")));
        assert_eq!(first.line(), "* [2001:db8::7]:6666 joined");
        let local = Member::join(&target, &proxy_v2_local());
        assert_eq!(first.line(), format!("* {} joined", local.local()));
        let unknown = Member::join(&target, b"PROXY UNKNOWN TCP4 a b c d\r\n");
        assert_eq!(first.line(), format!("* {} joined", unknown.local()));
        second.say("hello from behind the proxy");
        assert_eq!(first.line(), "[2001:db8::7]:6666: hello from behind the proxy");
        first.say("hi");
        assert_eq!(second.line(), format!("* {} joined", local.local()));
        assert_eq!(second.line(), format!("* {} joined", unknown.local()));
        assert_eq!(second.line(), "203.0.113.7:5555: hi");
    }

    fn http_logs_the_header_address(mode) {
        let mut server = ServerProcess::start_with(
            program()
                .args(["serve", "http", "--proxy-protocol", "--bind", "tcp://127.0.0.1:0"])
                .args(mode.flag())
                .env("RUST_LOG", "info"),
            1,
        );
        let target = server.addr_of(0);
        let mut stream = connect_with(&target, &proxy_v2(addr("198.51.100.23:4444"), addr(&target)));
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let answer = until_closed(&mut stream);
        assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&answer));
        server.signal("TERM");
        assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
        let log = server.stderr_text();
        assert!(log.contains("198.51.100.23:4444 \"GET / HTTP/1.0\" 200"), "{log}");
        assert!(!log.contains(&format!("{} \"GET", stream.local_addr().unwrap())), "{log}");
    }

    fn exec_and_files_count_auth_failures_by_the_header_address(mode) {
        for service in ["exec", "files"] {
            let dir = TempDir::new("proxy-auth");
            std::fs::write(dir.join("key"), b"the key").unwrap();
            let key = dir.join("key").display().to_string();
            let files = dir.join("files").display().to_string();
            let mut args = vec!["--bind", "tcp://127.0.0.1:0", "--key-file", &key, "--auth-max-failures", "2"];
            if service == "files" {
                args.extend(["--dir", &files]);
            }
            let server = serve(service, mode, &args);
            let target = server.addr_of(0);
            let dst = addr(&target);
            let banned = addr("203.0.113.50:1000");
            let challenge = |source: SocketAddr| -> Option<TcpStream> {
                let mut stream = connect_with(&target, &proxy_v1(source, dst));
                let mut challenge = [0u8; 32];
                stream.read_exact(&mut challenge).ok().map(|()| {
                    stream.write_all(&Key::new(&b"a wrong key"[..]).unwrap().answer(&challenge)).unwrap();
                    stream
                })
            };
            // Two wrong answers from the header's address...
            for _ in 0..2 {
                let mut stream = challenge(banned).expect("a challenge");
                let mut len = [0u8; 4];
                stream.read_exact(&mut len).unwrap();
                let mut verdict = vec![0u8; u32::from_le_bytes(len) as usize];
                stream.read_exact(&mut verdict).unwrap();
                assert_eq!(verdict, br#"{"status":"denied"}"#, "{service}");
            }
            // ...refuse that address before the challenge, from any port...
            let mut stream = connect_with(&target, &proxy_v1(addr("203.0.113.50:2000"), dst));
            assert!(until_closed(&mut stream).is_empty(), "{service}: challenged after the limit");
            // ...but not another client behind the same proxy (the real
            // peer of every connection is 127.0.0.1).
            let mut other = connect_with(&target, &proxy_v1(addr("203.0.113.51:1000"), dst));
            let mut challenge = [0u8; 32];
            other.read_exact(&mut challenge).unwrap();
            let mut authenticated = TcpStream::connect(&target).unwrap();
            authenticated.set_read_timeout(Some(STEP)).unwrap();
            authenticated.write_all(&proxy_v2(addr("203.0.113.52:1"), dst)).unwrap();
            socketserver::protocol::auth::client_handshake(
                &mut authenticated,
                &Key::new(&b"the key"[..]).unwrap(),
                &FrameCodec::new(),
            )
            .unwrap_or_else(|e| panic!("{service}: {e}"));
        }
    }

    fn a_trickled_header_is_cut_at_its_deadline_and_delays_no_one(mode) {
        let server = serve(
            "echo-upper",
            mode,
            &[
                "--bind", "tcp://127.0.0.1:0",
                "--proxy-header-timeout", "1",
                "--admin", "tcp://127.0.0.1:0",
                "--threads", "1",
            ],
        );
        let target = server.addr_of(0);
        let started = Instant::now();
        let mut slow = TcpStream::connect(&target).unwrap();
        slow.set_read_timeout(Some(STEP)).unwrap();
        let mut writer = slow.try_clone().unwrap();
        // One byte every 50 ms of a header that could still be valid, and
        // never ends: 1.8 s of bytes against a 1 s deadline.
        let trickle = thread::spawn(move || {
            for byte in b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 " {
                if writer.write_all(&[*byte]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        // Meanwhile others are served at once.
        for n in 0..3 {
            let mut fast = connect_with(&target, &proxy_v1(addr("192.0.2.9:9"), addr(&target)));
            fast.write_all(format!("fast {n}").as_bytes()).unwrap();
            fast.shutdown(Shutdown::Write).unwrap();
            assert_eq!(until_closed(&mut fast), format!("FAST {n}").as_bytes());
        }
        assert!(started.elapsed() < Duration::from_secs(1), "the others waited for the slow header");
        // The slow one is closed unanswered at its deadline.
        assert!(until_closed(&mut slow).is_empty());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900), "closed after {waited:?}");
        assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
        trickle.join().unwrap();
        // A connection without a header is closed at once, unanswered.
        let garbage_at = Instant::now();
        let mut garbage = connect_with(&target, b"GET / HTTP/1.1\r\n\r\n");
        assert!(until_closed(&mut garbage).is_empty());
        assert!(garbage_at.elapsed() < Duration::from_millis(900));
        // Both are counted as rejected (once their workers are done).
        let rejected = format!("socketserver_rejected_total{{listener=\"{}\"}} 2\n", server.urls[0]);
        support::eventually("two rejections on /metrics", || {
            get(server.admin(), "/metrics").1.contains(&rejected)
        });
    }
}
