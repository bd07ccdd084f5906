//! chat (SPEC section 4, rule 19) through the program, in both dispatch
//! modes: relaying, names, notices, bad input, a member that stops reading,
//! idle members, Unix sockets, the client command, and the shutdown
//! (rule 25).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{program, serve, Mode, ServerProcess, TempDir, STEP};

const EMPTY_NICK: &str = "* a nick cannot be empty (use /nick NAME)";

/// A member of the room over a raw socket.
struct Member<S: Read + Write> {
    name: String,
    writer: S,
    reader: BufReader<S>,
}

impl Member<TcpStream> {
    fn join(server: &ServerProcess) -> Self {
        Self::with(support::connect(server.addr()))
    }

    fn with(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(STEP)).unwrap();
        let mut member = Member {
            name: stream.local_addr().unwrap().to_string(),
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        };
        member.ready();
        member
    }
}

impl<S: Read + Write> Member<S> {
    /// Waits until the server has this member in the room: an empty `/nick`
    /// is refused to members only, and it is the first line a member gets
    /// (no notice of its own arrival).
    fn ready(&mut self) {
        self.say("/nick");
        assert_eq!(self.line(), EMPTY_NICK, "the first line of {}", self.name);
    }

    fn say(&mut self, text: &str) {
        self.writer
            .write_all(format!("{text}\n").as_bytes())
            .unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with('\n'), "{}: {line:?}", self.name);
        line.pop();
        line
    }

    fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want, "at {}", self.name);
    }

    /// Reads until the server closes the connection; returns what came.
    fn until_closed(&mut self) -> String {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{}: {e}", self.name),
        }
        String::from_utf8_lossy(&rest).into_owned()
    }
}

fn start(mode: Mode, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--bind", "tcp://127.0.0.1:0"];
    args.extend_from_slice(extra);
    serve("chat", mode, &args, 1)
}

crate::both_modes! {
    fn lines_go_to_every_other_member_with_notices(mode) {
        let server = start(mode, &[]);
        let mut a = Member::join(&server);
        let mut b = Member::join(&server);
        a.expect(&format!("* {} joined", b.name));
        let mut c = Member::join(&server);
        a.expect(&format!("* {} joined", c.name));
        b.expect(&format!("* {} joined", c.name));

        // A line goes to the others, named by HOST:PORT, and not back to its sender.
        a.say("hello, room");
        let from_a = format!("{}: hello, room", a.name);
        b.expect(&from_a);
        c.expect(&from_a);
        b.say("and hello to you");
        let from_b = format!("{}: and hello to you", b.name);
        a.expect(&from_b); // nothing came back to a in between
        c.expect(&from_b);

        // /nick is announced to the others; empty and taken nicks are refused to the sender only.
        a.say("/nick alice");
        let renamed = format!("* {} is now alice", a.name);
        b.expect(&renamed);
        c.expect(&renamed);
        b.say("/nick alice");
        b.expect("* the nick alice is taken");
        b.say("/nick    ");
        b.expect(EMPTY_NICK);
        a.say("hi from alice");
        b.expect("alice: hi from alice");
        c.expect("alice: hi from alice");

        // Invalid UTF-8 is replaced; an empty line and \r\n lines are relayed.
        c.writer.write_all(b"caf\xe9 ok\r\n\n").unwrap();
        for member in [&mut a, &mut b] {
            member.expect(&format!("{}: caf\u{fffd} ok", c.name));
            member.expect(&format!("{}: ", c.name));
        }

        // Leaving is announced.
        let c_name = c.name.clone();
        drop(c);
        a.expect(&format!("* {c_name} left"));
        b.expect(&format!("* {c_name} left"));
        b.say("/nick bob");
        a.expect(&format!("* {} is now bob", b.name));
        drop(a);
        b.expect("* alice left");
    }

    fn ipv6_members_are_named_in_brackets(mode) {
        let server = serve("chat", mode, &["--bind", "tcp://[::1]:0"], 1);
        let mut a = Member::join(&server);
        let mut b = Member::join(&server);
        assert!(b.name.starts_with("[::1]:"), "{}", b.name);
        a.expect(&format!("* {} joined", b.name));
        b.say("over v6");
        a.expect(&format!("{}: over v6", b.name));
    }

    fn a_member_that_stops_reading_never_stalls_the_room_and_is_dropped(mode) {
        // (A talker as fast as the room lets it: flood control is not the
        // subject here.)
        let server = start(mode, &["--max-backlog", "64KiB", "--max-rate", "1GiB"]);
        let mut slow = Member::with(support::net::connect_small_buffer(server.addr()));
        let mut listener = Member::join(&server);
        let mut talker = Member::join(&server);
        listener.expect(&format!("* {} joined", talker.name));
        // From here on, `slow` reads nothing.

        let payload = "x".repeat(1000);
        let started = Instant::now();
        let mut slowest = Duration::ZERO;
        let mut dropped_after = None;
        for i in 0..20_000 {
            let sent = Instant::now();
            talker.say(&format!("{i} {payload}"));
            let mut got = listener.line();
            if got == format!("* {} left", slow.name) {
                dropped_after = Some(i);
                got = listener.line();
            }
            slowest = slowest.max(sent.elapsed());
            assert_eq!(got, format!("{}: {i} {payload}", talker.name));
            if dropped_after.is_some() {
                break;
            }
        }
        let dropped_after = dropped_after.expect("the slow member was never dropped");
        eprintln!(
            "slow member dropped after {dropped_after} lines; slowest line {slowest:?}; {:?} in all",
            started.elapsed()
        );
        // 64 KiB of backlog plus what the kernel buffers (its send buffer grows
        // to a few MiB on its own): far less than the 20 MB the talker could send.
        assert!(
            dropped_after < 12_000,
            "dropped only after {dropped_after} lines"
        );
        assert!(
            slowest < Duration::from_secs(2),
            "a line took {slowest:?} to cross the room"
        );
        assert!(started.elapsed() < Duration::from_secs(15));

        // The slow member's connection is closed: what it buffered, then the end.
        let seen = slow.until_closed();
        assert!(seen.len() < 20_000 * 1000, "{}", seen.len());

        // The room goes on.
        let mut late = Member::join(&server);
        listener.expect(&format!("* {} joined", late.name));
        late.say("still here?");
        listener.expect(&format!("{}: still here?", late.name));
        talker.expect(&format!("* {} left", slow.name));
        talker.expect(&format!("* {} joined", late.name));
        talker.expect(&format!("{}: still here?", late.name));
    }

    fn an_over_long_line_disconnects_its_sender_only(mode) {
        let server = start(mode, &["--max-line", "100"]);
        let mut a = Member::join(&server);
        let mut b = Member::join(&server);
        a.expect(&format!("* {} joined", b.name));
        b.say(&"y".repeat(100)); // exactly the limit
        a.expect(&format!("{}: {}", b.name, "y".repeat(100)));
        b.writer.write_all(&[b'z'; 101]).unwrap(); // one over, no newline
        b.expect("error: line too long");
        assert_eq!(b.until_closed(), "");
        a.expect(&format!("* {} left", b.name));
        // A new member is served.
        let mut c = Member::join(&server);
        a.expect(&format!("* {} joined", c.name));
        c.say("fine");
        a.expect(&format!("{}: fine", c.name));
    }

    fn idle_members_are_cut_only_with_an_idle_timeout(mode) {
        // With --idle-timeout, a silent member is cut; one that keeps talking is not.
        let server = start(mode, &["--idle-timeout", "0.5"]);
        let mut quiet = Member::join(&server);
        let mut talker = Member::join(&server);
        quiet.expect(&format!("* {} joined", talker.name));
        let deadline = Instant::now() + STEP;
        let quiet_left = format!("* {} left", quiet.name);
        let mut i = 0;
        loop {
            talker.say(&format!("tick {i}"));
            talker.say("/nick"); // answered only to the talker: a round trip
            let got = talker.line();
            if got == quiet_left {
                break;
            }
            assert_eq!(got, EMPTY_NICK);
            assert!(Instant::now() < deadline, "the quiet member was never cut");
            std::thread::sleep(Duration::from_millis(100));
            i += 1;
        }
        assert!(i >= 3, "cut after {i} ticks, before the timeout");
        let seen = quiet.until_closed(); // the ticks it was sent, then the end
        assert!(seen.lines().all(|l| l.contains(": tick ")), "{seen:?}");

        // Without it, a member that only listens stays.
        let server = start(mode, &[]);
        let mut listener = Member::join(&server);
        std::thread::sleep(Duration::from_millis(1500));
        let mut speaker = Member::join(&server);
        speaker.say("are you there?");
        listener.expect(&format!("* {} joined", speaker.name));
        listener.expect(&format!("{}: are you there?", speaker.name));
    }

    fn unix_socket_members(mode) {
        let dir = TempDir::new("chat-unix");
        let sock = dir.join("chat.sock");
        let url = format!("unix:{}", sock.display());
        let _server = serve("chat", mode, &["--bind", &url], 1);
        let connect = |label: &str| {
            let stream = UnixStream::connect(&sock).unwrap();
            stream.set_read_timeout(Some(STEP)).unwrap();
            let mut member = Member {
                name: label.to_string(),
                writer: stream.try_clone().unwrap(),
                reader: BufReader::new(stream),
            };
            member.ready();
            member
        };
        let mut a = connect("a");
        let mut b = connect("b");
        let joined = a.line();
        let b_name = joined
            .strip_prefix("* ")
            .and_then(|l| l.strip_suffix(" joined"))
            .unwrap()
            .to_string();
        assert!(b_name.starts_with("unix#"), "{b_name}");
        b.say("over a unix socket");
        a.expect(&format!("{b_name}: over a unix socket"));
    }

    fn client_command_sends_standard_input_and_prints_the_room(mode) {
        let server = start(mode, &[]);
        let mut member = Member::join(&server);
        let mut child = program()
            .args(["client", "chat", "--connect", server.url(), "--nick", "cli"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let joined = member.line();
        assert!(
            joined.starts_with("* 127.0.0.1:") && joined.ends_with(" joined"),
            "{joined}"
        );
        let old = &joined[2..joined.len() - " joined".len()];
        member.expect(&format!("* {old} is now cli"));

        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all("hello from the command line\n".as_bytes())
            .unwrap();
        member.expect("cli: hello from the command line");

        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    return;
                }
            }
        });
        member.say("hi cli");
        assert_eq!(
            rx.recv_timeout(STEP).unwrap(),
            format!("{}: hi cli", member.name)
        );

        // End of input: the client leaves and exits.
        drop(stdin);
        member.expect("* cli left");
        let deadline = Instant::now() + STEP;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the client did not exit");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success());
    }

    fn shutdown_tells_the_members_and_does_not_wait_for_the_deadline(mode) {
        let mut server = start(mode, &["--shutdown-timeout", "30"]);
        let mut a = Member::join(&server);
        let mut b = Member::join(&server);
        a.expect(&format!("* {} joined", b.name));
        let asked = Instant::now();
        server.signal("TERM");
        for member in [&mut a, &mut b] {
            let rest = member.until_closed();
            assert!(
                rest.ends_with("* the server is shutting down\n"),
                "{rest:?}"
            );
        }
        let status = server.wait(STEP).expect("the server exits");
        assert_eq!(status.code(), Some(0));
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "took {:?}",
            asked.elapsed()
        );
    }
}
