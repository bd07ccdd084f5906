//! exec (SPEC section 4 and rules 9 to 11, 15, 40) through the program, in
//! both dispatch modes: the course's Python client, the `client exec`
//! command, the handshake and everything hostile about it (replays,
//! truncation, floods of wrong keys, silent connections, failure limits per
//! address, network and in all), refused and failed commands, timeouts and
//! process containment, oversized and cut frames, Unix sockets, usage
//! errors. After each bad input the same server still serves a new client.

mod support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use socketserver::client::exec::ExecClient;
use socketserver::client::Connection;
use socketserver::protocol::auth::{client_handshake, Key};
use socketserver::protocol::framing::{Endian, FrameCodec};
use socketserver::SocketUrl;
use support::frames::{read_answer, read_header_text};
use support::net::connect_from;
use support::{assert_closed, program, run_with_input, serve, Mode, ServerProcess, TempDir, STEP};

const KEY: &[u8] = b"course secret\n";

/// `serve exec` with its key file and working directory, logging at info.
struct Setup {
    dir: TempDir,
    server: ServerProcess,
}

impl Setup {
    /// `serve exec` on a free port in `mode`, allowing a few programs
    /// (`echo`, `sh`, `head`, `touch` and one that does not exist), plus
    /// `extra`.
    fn start(mode: Mode, name: &str, extra: &[&str]) -> Setup {
        let dir = TempDir::new(name);
        dir.write("key", KEY);
        let key = dir.join("key").display().to_string();
        let workdir = dir.join("work");
        std::fs::create_dir(&workdir).unwrap();
        let workdir = workdir.display().to_string();
        let mut args = vec![
            "--bind",
            "tcp://127.0.0.1:0",
            "--key-file",
            &key,
            "--workdir",
            &workdir,
            "--allow",
            "echo",
            "--allow",
            "sh",
            "--allow",
            "head",
            "--allow",
            "touch",
            "--allow",
            "no-such-program-xyz",
        ];
        args.extend_from_slice(extra);
        let server = ServerProcess::start_with(
            support::serve_command("exec", mode, &args).env("RUST_LOG", "info"),
            1,
        );
        Setup { dir, server }
    }

    fn url(&self) -> SocketUrl {
        self.server.url().parse().unwrap()
    }

    fn key_path(&self) -> String {
        self.dir.join("key").display().to_string()
    }

    /// The working directory of the commands.
    fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    fn client(&self) -> ExecClient {
        self.client_with(FrameCodec::new())
    }

    fn client_with(&self, framing: FrameCodec) -> ExecClient {
        ExecClient::connect(&self.url(), &Key::new(KEY).unwrap(), framing, Some(STEP))
            .expect("authenticate")
    }

    /// A library client from `local` (any 127.x.y.z), or why it was not let
    /// in.
    fn client_from(&self, local: &str) -> io::Result<ExecClient> {
        let stream = connect_from(local, &self.server.addr());
        ExecClient::handshake(
            Connection::Tcp(stream),
            &Key::new(KEY).unwrap(),
            FrameCodec::new(),
        )
    }

    /// A raw connection with timeouts.
    fn raw(&self) -> TcpStream {
        support::connect(self.server.addr())
    }

    /// A raw connection past the handshake.
    fn raw_authenticated(&self) -> TcpStream {
        let mut stream = self.raw();
        client_handshake(&mut stream, &Key::new(KEY).unwrap(), &FrameCodec::new()).unwrap();
        stream
    }

    /// The server still runs a command for a new client.
    fn assert_serves(&self) {
        self.assert_serves_from("127.0.0.1");
    }

    /// The server still runs a command for a new client from `local`.
    fn assert_serves_from(&self, local: &str) {
        let output = self
            .client_from(local)
            .expect("a client with the key is let in")
            .run("echo still serving")
            .unwrap()
            .unwrap();
        assert_eq!(output.stdout, b"still serving\n");
        assert_eq!(output.status.exit_code, Some(0));
    }
}

/// Runs a course client to its end; its standard output and error, or
/// `None` without python3.
fn python(script: &str, args: &[&str]) -> Option<(String, String)> {
    let mut command = support::course_client(script)?;
    let (status, out, err) = run_with_input(command.args(args), b"");
    assert!(status.success(), "{script} failed: {err}");
    Some((String::from_utf8(out).unwrap(), err))
}

/// Gone, or a zombie waiting for init to reap it, soon: a SIGKILL is
/// delivered at once but the process takes a moment to go.
fn assert_dead(pid: &str) {
    let state = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .map(|stat| {
                let after = stat.rsplit_once(')').unwrap().1;
                (
                    after.split_whitespace().next().unwrap().to_string(),
                    stat.clone(),
                )
            })
    };
    let deadline = std::time::Instant::now() + STEP;
    while let Some((code, stat)) = state() {
        if code == "Z" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} is still alive: {stat}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A unique `sleep` duration of about 42 s, to find that very process in
/// /proc: `42.<pid><n>`.
fn sleep_marker() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("42.{}{n:03}", std::process::id())
}

/// The live processes (zombies have no command line) running
/// `sleep MARKER`.
fn sleeping(marker: &str) -> Vec<String> {
    let wanted = format!("sleep\0{marker}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmdline| cmdline == wanted.as_bytes())
        })
        .map(|entry| entry.file_name().into_string().unwrap())
        .collect()
}

/// No `sleep MARKER` is alive, soon (a SIGKILL is delivered at once, but
/// the process takes a moment to go).
fn assert_no_survivor(marker: &str, what: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        let alive = sleeping(marker);
        if alive.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            // Do not leave it behind for the next run.
            for pid in &alive {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
            panic!("{what}: sleep {marker} survives as {alive:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads the 32-byte challenge of a fresh connection.
fn challenge(stream: &mut TcpStream) -> [u8; 32] {
    let mut challenge = [0u8; 32];
    stream.read_exact(&mut challenge).unwrap();
    challenge
}

/// A handshake with the wrong key from `local`: denied.
fn wrong_key_from(setup: &Setup, local: &str) {
    let mut stream = connect_from(local, &setup.server.addr());
    let e = client_handshake(
        &mut stream,
        &Key::new(&b"guess"[..]).unwrap(),
        &FrameCodec::new(),
    )
    .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
}

/// Issue 14, item 2: background processes, even those that leave their
/// process group (`setsid`), never outlive their command: not when it
/// ends, not at its timeout.
fn background_processes_case(mode: Mode, extra_args: &[&str]) {
    let mut args = vec!["--allow", "setsid", "--timeout", "1"];
    args.extend_from_slice(extra_args);
    let setup = Setup::start(mode, "exec-background", &args);
    let mut client = setup.client();
    for prefix in ["", "setsid "] {
        // Answered at once: the sleep does not hold the pipes.
        let marker = sleep_marker();
        let line = format!("sh -c '{prefix}sleep {marker} >/dev/null 2>&1 & echo started'");
        let output = client.run(&line).unwrap().unwrap();
        assert_eq!(output.stdout, b"started\n");
        assert!(!output.status.timed_out);
        assert_no_survivor(&marker, &line);
        // Killed at the timeout, with the command.
        let marker = sleep_marker();
        let line =
            format!("sh -c '{prefix}sleep {marker} >/dev/null 2>&1 & echo started; sleep 30'");
        let output = client.run(&line).unwrap().unwrap();
        assert!(output.status.timed_out, "{line}");
        assert_eq!(output.stdout, b"started\n");
        assert_no_survivor(&marker, &line);
        if prefix.is_empty() {
            continue;
        }
        // Started directly (no shell around it), holding the output pipes:
        // answered at the timeout, and killed.
        let marker = sleep_marker();
        let output = client
            .run(&format!("setsid --fork sleep {marker}"))
            .unwrap()
            .unwrap();
        assert!(output.status.timed_out);
        assert_eq!(output.status.exit_code, Some(0), "setsid itself exited");
        assert_no_survivor(&marker, "setsid --fork sleep");
    }
    setup.assert_serves();
}

/// Issue 14, item 2: what a command left running dies with the server.
fn escapees_die_with_the_server_case(mode: Mode, extra_args: &[&str]) {
    let mut args = vec![
        "--allow",
        "setsid",
        "--timeout",
        "60",
        "--shutdown-timeout",
        "0.3",
    ];
    args.extend_from_slice(extra_args);
    let mut setup = Setup::start(mode, "exec-escapee-exit", &args);
    let marker = sleep_marker();
    let url = setup.url();
    let line = format!("sh -c 'setsid sleep {marker} >/dev/null 2>&1 & sleep 30'");
    let runner = std::thread::spawn(move || {
        let mut client =
            ExecClient::connect(&url, &Key::new(KEY).unwrap(), FrameCodec::new(), Some(STEP))
                .unwrap();
        client.run(&line)
    });
    support::eventually("the escaping sleep runs", || !sleeping(&marker).is_empty());
    setup.server.signal("TERM");
    let status = setup.server.wait(STEP).expect("the server exits");
    assert_eq!(status.code(), Some(0));
    assert_no_survivor(&marker, "a sleep that left its group, at the server's exit");
    assert!(
        runner.join().unwrap().is_err(),
        "no answer for a cut command"
    );
}

crate::both_modes! {
    fn the_course_python_client_runs_commands(mode) {
        let setup = Setup::start(mode, "exec-python", &[]);
        let key = setup.key_path();
        let (host, port) = setup.server.host_port();
        let Some((out, _)) = python(
            "exec_client.py",
            &[
                &host,
                &port,
                &key,
                "echo hello",
                "sh -c 'echo to stderr >&2; exit 3'",
                "rm -rf /",
                "echo 'still here'",
            ],
        ) else {
            return;
        };
        let answers: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(answers.len(), 4, "{out}");
        // The header exactly as the spec writes it, key order included.
        assert_eq!(
            answers[0]["header"],
            r#"{"status":"ok","exit_code":0,"signal":null,"stdout_size":6,"stderr_size":0,"timed_out":false,"truncated":false}"#
        );
        assert_eq!(answers[0]["stdout"], "hello\n");
        assert_eq!(
            answers[1]["header"],
            r#"{"status":"ok","exit_code":3,"signal":null,"stdout_size":0,"stderr_size":10,"timed_out":false,"truncated":false}"#
        );
        assert_eq!(answers[1]["stderr"], "to stderr\n");
        assert_eq!(
            answers[2]["header"],
            r#"{"status":"error","error":"not allowed: rm","stdout_size":0,"stderr_size":0}"#
        );
        assert_eq!(answers[3]["stdout"], "still here\n");
    }

    fn big_endian_frames_everything_including_the_verdict(mode) {
        let setup = Setup::start(mode, "exec-big", &["--frame-endian", "big"]);
        let key = setup.key_path();
        let (host, port) = setup.server.host_port();
        // The course's client with `struct.pack('>i', n)` (when python3 is
        // there; the rest of the test needs none).
        if let Some((out, _)) = python(
            "exec_client.py",
            &[&host, &port, &key, "--big", "echo network order"],
        ) {
            let answer: Value = serde_json::from_str(out.trim()).unwrap();
            assert_eq!(answer["stdout"], "network order\n");
        }

        let mut client = setup.client_with(FrameCodec::new().endian(Endian::Big));
        assert_eq!(client.run("echo big").unwrap().unwrap().stdout, b"big\n");

        // The verdict itself is big-endian: its length starts with zero bytes.
        let mut raw = setup.raw();
        let mut challenge = [0u8; 32];
        raw.read_exact(&mut challenge).unwrap();
        raw.write_all(&Key::new(KEY).unwrap().answer(&challenge))
            .unwrap();
        let mut len = [0u8; 4];
        raw.read_exact(&mut len).unwrap();
        assert_eq!(len, [0, 0, 0, 15]);
    }

    fn a_wrong_key_is_denied_and_the_connection_closed(mode) {
        let setup = Setup::start(mode, "exec-denied", &[]);
        let mut raw = setup.raw();
        let mut challenge = [0u8; 32];
        raw.read_exact(&mut challenge).unwrap();
        raw.write_all(&Key::new(&b"not the key"[..]).unwrap().answer(&challenge))
            .unwrap();
        // A command sent right away must not run.
        FrameCodec::new()
            .write_frame(&mut raw, b"echo sneaky")
            .unwrap();
        assert_eq!(read_header_text(&mut raw), r#"{"status":"denied"}"#);
        assert_closed(&mut raw);

        // The library client reports it as a permission error.
        let e = ExecClient::connect(
            &setup.url(),
            &Key::new(&b"wrong"[..]).unwrap(),
            FrameCodec::new(),
            Some(STEP),
        )
        .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);

        // Each connection gets its own challenge.
        let mut other = setup.raw();
        let mut second = [0u8; 32];
        other.read_exact(&mut second).unwrap();
        assert_ne!(challenge, second);
        drop(other);
        setup.assert_serves();
    }

    fn truncated_silent_and_garbage_handshakes_cost_only_their_connection(mode) {
        let setup = Setup::start(mode, "exec-handshake", &["--auth-timeout", "0.3"]);
        // Closes at once.
        drop(setup.raw());
        // Sends 10 of 32 bytes and ends: no verdict, closed.
        let mut raw = setup.raw();
        let mut challenge = [0u8; 32];
        raw.read_exact(&mut challenge).unwrap();
        raw.write_all(&[1u8; 10]).unwrap();
        raw.shutdown(Shutdown::Write).unwrap();
        assert_closed(&mut raw);
        // Says nothing: closed at the handshake timeout.
        let mut silent = setup.raw();
        silent.read_exact(&mut challenge).unwrap();
        let started = Instant::now();
        assert_closed(&mut silent);
        assert!(started.elapsed() < Duration::from_secs(5));
        // Garbage instead of an answer: denied.
        let mut garbage = setup.raw();
        garbage.read_exact(&mut challenge).unwrap();
        garbage
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\0\0\0\0\0")
            .unwrap();
        assert_eq!(read_header_text(&mut garbage), r#"{"status":"denied"}"#);
        assert_closed(&mut garbage);
        setup.assert_serves();
    }

    fn a_replayed_handshake_answer_is_denied_and_runs_nothing(mode) {
        let setup = Setup::start(mode, "hard-replay", &[]);
        let key = Key::new(KEY).unwrap();
        // An eavesdropper records a good session's challenge and answer...
        let mut good = setup.raw();
        let recorded = key.answer(&challenge(&mut good));
        good.write_all(&recorded).unwrap();
        assert_eq!(read_answer(&mut good), json!({"status": "ok"}));
        // ...and replays the answer on a connection of its own, with a command
        // right behind it.
        let mut replay = setup.raw();
        let fresh = challenge(&mut replay);
        assert_ne!(key.answer(&fresh), recorded, "the challenge is fresh");
        replay.write_all(&recorded).unwrap();
        FrameCodec::new()
            .write_frame(&mut replay, b"touch replayed")
            .unwrap();
        assert_eq!(read_answer(&mut replay), json!({"status": "denied"}));
        assert_closed(&mut replay);
        assert!(!setup.work().join("replayed").exists(), "a command ran");
        // Replaying it twice on the first connection's own channel is no
        // handshake at all: it is read as a (garbage) frame and refused there.
        drop(good);
        setup.assert_serves_from("127.0.0.1");
    }

    fn truncated_and_reset_handshakes_cost_only_their_connection(mode) {
        let setup = Setup::start(mode, "hard-truncated", &["--auth-timeout", "1"]);
        let addr = setup.server.addr();
        for cut in [0, 1, 16, 31] {
            // Half of an answer, then a half-close: no verdict, closed.
            let mut half = support::connect(&addr);
            let c = challenge(&mut half);
            half.write_all(&Key::new(KEY).unwrap().answer(&c)[..cut])
                .unwrap();
            half.shutdown(Shutdown::Write).unwrap();
            assert_closed(&mut half);
            // The same, then a reset.
            let mut rst = support::connect(&addr);
            let c = challenge(&mut rst);
            rst.write_all(&Key::new(KEY).unwrap().answer(&c)[..cut])
                .unwrap();
            support::reset(rst);
        }
        // None of this counts as a failed attempt: the right key still gets in.
        setup.assert_serves_from("127.0.0.1");
        assert!(!setup.work().read_dir().unwrap().any(|_| true));
    }

    fn a_flood_of_wrong_keys_is_refused_per_address_and_never_runs_a_command(mode) {
        // Room in the handshake for all 40 (the startup limit is another test's).
        let setup = Setup::start(mode,
            "hard-flood",
            &[
                "--auth-max-failures",
                "3",
                "--auth-failure-window",
                "2",
                "--max-startups",
                "50:30:100",
            ],
        );
        let addr = setup.server.addr();
        let wrong = Key::new(&b"guess"[..]).unwrap();
        // 40 connections at once from 127.0.0.1, each answering its challenge
        // with a wrong key and sending a command right after.
        let mut denied = 0;
        let mut closed_early = 0;
        let mut streams: Vec<TcpStream> = (0..40).map(|_| support::connect(&addr)).collect();
        let mut challenges = Vec::new();
        for stream in &mut streams {
            let mut c = [0u8; 32];
            match stream.read_exact(&mut c) {
                Ok(()) => challenges.push(Some(c)),
                Err(_) => challenges.push(None),
            }
        }
        for (stream, c) in streams.iter_mut().zip(&challenges) {
            let Some(c) = c else {
                closed_early += 1;
                continue;
            };
            stream.write_all(&wrong.answer(c)).unwrap();
            let _ = FrameCodec::new().write_frame(&mut *stream, b"touch pwned");
        }
        for (stream, c) in streams.iter_mut().zip(&challenges) {
            if c.is_some() {
                assert_eq!(read_answer(stream), json!({"status": "denied"}));
                assert_closed(stream);
                denied += 1;
            }
        }
        assert_eq!(denied + closed_early, 40);
        eprintln!(
            "figures: 40 parallel wrong answers from one address: {denied} denied after a \
             challenge, {closed_early} closed before one"
        );
        // Now even the right key is refused from that address, before any
        // challenge: the client is told the connection ended before it.
        let started = Instant::now();
        let e = setup.client_from("127.0.0.1").unwrap_err();
        assert!(e.to_string().contains("before the challenge"), "{e}");
        // Another address is not affected.
        setup.assert_serves_from("127.0.0.2");
        // A right answer that arrives while its address is blocked is denied
        // without being checked: a connection opened before the block ends.
        // After the window (2 s after the last failure), the address is let in.
        let wait = Duration::from_millis(2200).saturating_sub(started.elapsed());
        std::thread::sleep(wait);
        setup.assert_serves_from("127.0.0.1");
        assert!(!setup.work().join("pwned").exists(), "a command ran");
        let mut server = setup.server;
        server.signal("TERM");
        assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
        let log = server.stderr_text();
        assert!(log.contains("failed handshakes"), "{log}");
        // Of the 40 parallel answers, exactly the limit's 3 were checked.
        assert_eq!(
            log.matches("authentication denied (wrong key)").count(),
            3,
            "{log}"
        );
        assert_eq!(log.matches("denied without checking").count(), 37, "{log}");
        assert!(log.contains("closing before the challenge"), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }

    /// Issue 14, item 9: silent connections hold no more than the startup
    /// limit lets them (`--max-startups`, OpenSSH's MaxStartups); the others are
    /// closed at once, so they cannot fill `--max-connections`, and an honest
    /// client that retries gets in long before the silent ones time out.
    fn silent_connections_do_not_keep_an_honest_client_out(mode) {
        // The default --max-startups, 10:30:100.
        let args = vec!["--auth-timeout", "30", "--max-connections", "150"];
        let setup = Setup::start(mode, "hard-startups", &args);
        let addr = setup.server.addr();
        let silent: Vec<TcpStream> = (0..200).map(|_| connect_from("127.0.1.1", &addr)).collect();
        let started = Instant::now();
        let bound = Duration::from_secs(10);
        let mut attempts = 0;
        let output = loop {
            attempts += 1;
            let stream = connect_from("127.0.0.1", &addr);
            stream
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            let client = ExecClient::handshake(
                socketserver::client::Connection::Tcp(stream),
                &Key::new(KEY).unwrap(),
                FrameCodec::new(),
            );
            match client {
                Ok(mut client) => {
                    client.connection().set_read_timeout(Some(STEP)).unwrap();
                    break client.run("echo let in").unwrap().unwrap();
                }
                Err(e) => assert!(
                    started.elapsed() < bound,
                    "200 silent connections kept an honest client out for {:?} ({attempts} \
                     attempts; last: {e})",
                    started.elapsed()
                ),
            }
        };
        assert_eq!(output.stdout, b"let in\n");
        // What became of the silent ones: challenged and held, or closed.
        let (mut held, mut closed) = (0, 0);
        for mut stream in silent {
            stream.set_read_timeout(Some(STEP)).unwrap();
            let mut first = [0u8; 1];
            match stream.read(&mut first) {
                Ok(1) => held += 1,
                _ => closed += 1,
            }
        }
        assert!(held <= 100 && closed >= 100, "{held} held, {closed} closed");
        eprintln!(
            "figures: of 200 silent connections, {held} were challenged and held, {closed} closed at \
             once; an honest client got in after {attempts} attempt(s) in {:?}",
            started.elapsed()
        );
    }

    /// Issue 14, item 3: a client that lets the handshake time out has failed
    /// it, as one that answers wrong.
    fn silent_handshakes_count_as_failures(mode) {
        let args = vec!["--auth-timeout", "0.3", "--auth-max-failures", "2"];
        let setup = Setup::start(mode, "hard-silent-failures", &args);
        for _ in 0..2 {
            let mut silent = setup.raw();
            challenge(&mut silent);
            assert_closed(&mut silent); // at the handshake's timeout
        }
        let e = setup.client_from("127.0.0.1").unwrap_err();
        assert!(e.to_string().contains("before the challenge"), "{e}");
        setup.assert_serves_from("127.0.0.2");
        let mut server = setup.server;
        server.signal("TERM");
        assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
        let log = server.stderr_text();
        assert_eq!(
            log.matches("no answer to the challenge in time").count(),
            2,
            "{log}"
        );
    }

    /// Issue 14, item 3: failures are counted per /24 as well as per address,
    /// and in all: a client that rotates its address within its network, or
    /// across networks, runs into the wider limits.
    fn failures_are_counted_per_network_and_in_all(mode) {
        let args = vec![
            "--auth-max-failures",
            "2",
            "--auth-network-max-failures",
            "4",
            "--auth-global-max-failures",
            "0",
        ];
        let setup = Setup::start(mode, "hard-networks", &args);
        for local in ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"] {
            wrong_key_from(&setup, local);
        }
        // Never failed itself, but its /24 did.
        let e = setup.client_from("127.0.0.4").unwrap_err();
        assert!(e.to_string().contains("before the challenge"), "{e}");
        setup.assert_serves_from("127.0.1.4");

        let args = vec![
            "--auth-max-failures",
            "1",
            "--auth-network-max-failures",
            "0",
            "--auth-global-max-failures",
            "3",
        ];
        let global = Setup::start(mode, "hard-global", &args);
        for local in ["127.0.1.1", "127.0.2.1", "127.0.3.1"] {
            wrong_key_from(&global, local);
        }
        let e = global.client_from("127.0.4.1").unwrap_err();
        assert!(e.to_string().contains("before the challenge"), "{e}");
        let mut server = global.server;
        server.signal("TERM");
        assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
        let log = server.stderr_text();
        assert!(
            log.contains("recent failed handshakes from all clients"),
            "{log}"
        );
    }

    fn refused_commands_are_answered_and_the_connection_goes_on(mode) {
        let setup = Setup::start(mode, "exec-refused", &[]);
        let mut client = setup.client();
        for (line, why) in [
            ("rm -rf /", "not allowed: rm"),
            ("/bin/echo hi", "not allowed: /bin/echo"),
            ("echo 'unbalanced", "unbalanced quotes in the command line"),
            ("echo \"also", "unbalanced quotes in the command line"),
            (
                "no-such-program-xyz --flag",
                "no such program: no-such-program-xyz",
            ),
            ("", "empty command"),
            ("   ", "empty command"),
        ] {
            assert_eq!(client.run(line).unwrap(), Err(why.to_string()), "{line:?}");
        }
        let output = client.run("echo after the errors").unwrap().unwrap();
        assert_eq!(output.stdout, b"after the errors\n");

        // A command line that is not UTF-8.
        let mut raw = setup.raw_authenticated();
        FrameCodec::new()
            .write_frame(&mut raw, b"echo \xff\xfe")
            .unwrap();
        assert_eq!(
            read_header_text(&mut raw),
            r#"{"status":"error","error":"the command line is not UTF-8","stdout_size":0,"stderr_size":0}"#
        );
        FrameCodec::new().write_frame(&mut raw, b"echo ok").unwrap();
        assert_eq!(
            read_header_text(&mut raw),
            r#"{"status":"ok","exit_code":0,"signal":null,"stdout_size":3,"stderr_size":0,"timed_out":false,"truncated":false}"#
        );
        setup.assert_serves();
    }

    fn commands_run_without_a_shell_in_the_workdir_with_stdin_closed(mode) {
        let setup = Setup::start(mode, "exec-direct", &["--allow", "pwd", "--allow", "cat"]);
        let mut client = setup.client();
        let output = client
            .run("echo $HOME '*' \"a  b\" c\\ d; ls")
            .unwrap()
            .unwrap();
        assert_eq!(output.stdout, b"$HOME * a  b c d; ls\n");
        let output = client.run("pwd").unwrap().unwrap();
        let expected = std::fs::canonicalize(setup.dir.join("work")).unwrap();
        assert_eq!(
            String::from_utf8(output.stdout).unwrap().trim_end(),
            expected.to_str().unwrap()
        );
        // stdin is /dev/null: cat ends at once.
        let output = client.run("cat").unwrap().unwrap();
        assert_eq!((output.status.exit_code, output.stdout.len()), (Some(0), 0));
        // A signal is reported as such.
        let output = client.run("sh -c 'kill -TERM $$'").unwrap().unwrap();
        assert_eq!(
            (output.status.exit_code, output.status.signal),
            (None, Some(15))
        );
    }

    fn the_timeout_kills_the_whole_process_group(mode) {
        let setup = Setup::start(mode, "exec-timeout", &["--timeout", "0.5"]);
        let mut client = setup.client();
        let started = Instant::now();
        // The grandchild (a background sleep) writes its pid and holds stdout open.
        let output = client
            .run("sh -c 'sleep 30 & echo $! > grandchild.pid; echo started; sleep 30'")
            .unwrap()
            .unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert!(output.status.timed_out);
        assert_eq!(output.status.exit_code, None);
        assert_eq!(output.status.signal, Some(9));
        assert_eq!(
            output.stdout, b"started\n",
            "the output until the kill is kept"
        );
        let pid = std::fs::read_to_string(setup.dir.join("work").join("grandchild.pid")).unwrap();
        let pid = pid.trim();
        assert_dead(pid);
        // The same connection goes on.
        assert_eq!(client.run("echo next").unwrap().unwrap().stdout, b"next\n");
        setup.assert_serves();
    }

    fn a_command_cut_at_the_shutdown_deadline_is_killed_with_its_group(mode) {
        let mut setup = Setup::start(mode,
            "exec-shutdown",
            &["--timeout", "60", "--shutdown-timeout", "0.3"],
        );
        let url = setup.url();
        let runner = std::thread::spawn(move || {
            let mut client =
                ExecClient::connect(&url, &Key::new(KEY).unwrap(), FrameCodec::new(), Some(STEP))
                    .unwrap();
            client.run("sh -c 'sleep 30 & echo $! > bg.pid; sleep 30'")
        });
        // Wait until the command runs (nothing on the wire says so).
        let pid_file = setup.dir.join("work").join("bg.pid");
        let deadline = Instant::now() + STEP;
        let pid = loop {
            match std::fs::read_to_string(&pid_file) {
                Ok(text) if text.ends_with('\n') => break text.trim().to_string(),
                _ => {
                    assert!(Instant::now() < deadline, "the command did not start");
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        };
        let started = Instant::now();
        setup.server.signal("TERM");
        let status = setup.server.wait(STEP).expect("the server exits");
        assert_eq!(status.code(), Some(0));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_dead(&pid);
        assert!(
            runner.join().unwrap().is_err(),
            "the cut client gets no answer"
        );
        let log = setup.server.stderr_text();
        assert!(!log.contains("ERROR"), "{log}");
    }

    fn output_over_the_limit_is_truncated_and_flagged(mode) {
        let setup = Setup::start(mode, "exec-output", &["--max-output", "1000"]);
        let mut client = setup.client();
        let output = client.run("head -c 500000 /dev/zero").unwrap().unwrap();
        assert_eq!(output.status.stdout_size, 1000);
        assert_eq!(output.stdout, vec![0u8; 1000]);
        assert!(output.status.truncated);
        assert!(!output.status.timed_out);
        assert_eq!(
            output.status.exit_code,
            Some(0),
            "the pipe kept draining past the limit"
        );
        let output = client.run("echo small").unwrap().unwrap();
        assert!(!output.status.truncated);
        setup.assert_serves();
    }

    fn both_streams_are_read_at_once(mode) {
        let setup = Setup::start(mode, "exec-streams", &[]);
        let mut client = setup.client();
        // Far more than a pipe buffer on each stream, stderr first.
        let output = client
            .run("sh -c 'head -c 300000 /dev/zero >&2; head -c 300000 /dev/zero; echo end >&2'")
            .unwrap()
            .unwrap();
        assert_eq!(output.stdout.len(), 300_000);
        assert_eq!(output.stderr.len(), 300_004);
        assert!(output.stderr.ends_with(b"end\n"));
        assert!(!output.status.truncated);
    }

    fn an_oversized_frame_is_answered_then_closed(mode) {
        let setup = Setup::start(mode, "exec-oversized", &["--max-frame", "1KiB"]);
        let mut raw = setup.raw_authenticated();
        raw.write_all(&5000u32.to_le_bytes()).unwrap();
        raw.write_all(&[b'x'; 3000]).unwrap();
        assert_eq!(
            read_header_text(&mut raw),
            r#"{"status":"error","error":"frame of 5000 bytes over the limit 1024","stdout_size":0,"stderr_size":0}"#
        );
        assert_closed(&mut raw);
        setup.assert_serves();
    }

    fn garbage_after_the_handshake_is_an_oversized_frame(mode) {
        let setup = Setup::start(mode, "exec-garbage", &[]);
        let mut raw = setup.raw_authenticated();
        raw.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        // "GET " read as a little-endian length.
        assert_eq!(
            read_header_text(&mut raw),
            r#"{"status":"error","error":"frame of 542393671 bytes over the limit 16777216","stdout_size":0,"stderr_size":0}"#
        );
        assert_closed(&mut raw);
        // A frame cut short: the server just drops the connection.
        let mut raw = setup.raw_authenticated();
        raw.write_all(&100u32.to_le_bytes()).unwrap();
        raw.write_all(b"echo cut").unwrap();
        raw.shutdown(Shutdown::Write).unwrap();
        assert_closed(&mut raw);
        setup.assert_serves();
    }

    fn exec_frames_cut_or_reset_midway_cost_only_their_connection(mode) {
        let setup = Setup::start(mode, "hard-exec-frames", &[]);
        let addr = setup.server.addr();
        let key = Key::new(KEY).unwrap();
        let mut frame = Vec::new();
        FrameCodec::new()
            .write_frame(&mut frame, b"touch cut")
            .unwrap();
        for cut in [1, 3, 4, 8] {
            for half_close in [true, false] {
                let mut stream = support::connect(&addr);
                client_handshake(&mut stream, &key, &FrameCodec::new()).unwrap();
                stream.write_all(&frame[..cut]).unwrap();
                if half_close {
                    stream.shutdown(Shutdown::Write).unwrap();
                    assert_closed(&mut stream);
                } else {
                    support::reset(stream);
                }
            }
        }
        // Mid-answer: a command with a large output, and a reset before reading.
        let mut stream = support::connect(&addr);
        client_handshake(&mut stream, &key, &FrameCodec::new()).unwrap();
        FrameCodec::new()
            .write_frame(&mut stream, b"echo a long answer that nobody reads")
            .unwrap();
        let mut first = [0u8; 4];
        stream.read_exact(&mut first).unwrap();
        support::reset(stream);
        assert!(!setup.work().join("cut").exists(), "a partial command ran");
        setup.assert_serves_from("127.0.0.1");
    }

    fn shell_mode_checks_only_the_first_word_and_warns(mode) {
        let mut setup = Setup::start(mode, "exec-shell", &["--shell"]);
        let mut client = setup.client();
        let output = client.run("echo abc | tr a-z A-Z").unwrap().unwrap();
        assert_eq!(output.stdout, b"ABC\n");
        assert_eq!(
            client.run("tr a b").unwrap(),
            Err("not allowed: tr".to_string())
        );
        drop(client);
        setup.server.signal("TERM");
        assert_eq!(setup.server.wait(STEP).and_then(|s| s.code()), Some(0));
        let log = setup.server.stderr_text();
        assert!(log.contains("WARN") && log.contains("--shell"), "{log}");
    }

    fn serves_on_a_unix_socket(mode) {
        let dir = TempDir::new("exec-unix");
        std::fs::write(dir.join("key"), KEY).unwrap();
        let sock = format!("unix:{}", dir.join("exec.sock").display());
        let key = dir.join("key").display().to_string();
        let server = serve(
            "exec",
            mode,
            &["--bind", &sock, "--key-file", &key, "--allow", "echo"],
            1,
        );
        assert_eq!(server.url(), sock);
        let connection = Connection::connect(&sock.parse().unwrap(), Some(STEP)).unwrap();
        connection.set_read_timeout(Some(STEP)).unwrap();
        let mut client =
            ExecClient::handshake(connection, &Key::new(KEY).unwrap(), FrameCodec::new()).unwrap();
        assert_eq!(client.run("echo unix").unwrap().unwrap().stdout, b"unix\n");
    }

    fn the_client_command_prints_streams_and_exits_with_the_status(mode) {
        let setup = Setup::start(mode, "exec-cli", &[]);
        let url = setup.server.url().to_string();
        let key = setup.key_path();
        let client = || {
            let mut command = program();
            command.args(["client", "exec", "--connect", &url, "--key-file", &key]);
            command
        };
        let (status, out, err) =
            run_with_input(client().arg("sh -c 'echo out; echo err >&2; exit 3'"), b"");
        assert_eq!(status.code(), Some(3), "{err}");
        assert_eq!(out, b"out\n");
        assert_eq!(err, "err\n");
        // Words are joined with spaces, as ssh does.
        let (status, out, _) = run_with_input(client().args(["echo", "-n", "a", "b"]), b"");
        assert!(status.success());
        assert_eq!(out, b"a b");
        // Standard input: one command per line, blank lines skipped; the last status counts.
        let (status, out, err) =
            run_with_input(&mut client(), b"echo one\n\nsh -c 'exit 4'\necho two\n");
        assert_eq!(status.code(), Some(0), "{err}");
        assert_eq!(out, b"one\ntwo\n");
        let (status, out, err) = run_with_input(&mut client(), b"echo one\nrm -rf /\n");
        assert_eq!(status.code(), Some(1));
        assert_eq!(out, b"one\n");
        assert_eq!(err, "error: not allowed: rm\n");
        // A signal: 128 + its number.
        let (status, _, _) = run_with_input(client().arg("sh -c 'kill -KILL $$'"), b"");
        assert_eq!(status.code(), Some(137));
        // A wrong key.
        std::fs::write(setup.dir.join("wrong"), b"wrong").unwrap();
        let wrong = setup.dir.join("wrong").display().to_string();
        let (status, _, err) = run_with_input(
            program().args([
                "client",
                "exec",
                "--connect",
                &url,
                "--key-file",
                &wrong,
                "echo",
            ]),
            b"",
        );
        assert_eq!(status.code(), Some(1));
        assert!(err.contains("authentication denied"), "{err}");
    }

    fn usage_and_startup_errors(mode) {
        let dir = TempDir::new("exec-usage");
        std::fs::write(dir.join("key"), KEY).unwrap();
        std::fs::write(dir.join("empty"), b"").unwrap();
        let key = dir.join("key").display().to_string();
        let serve_exec = |args: &[&str]| support::serve_command("exec", mode, args);
        for mut command in [
            serve_exec(&["--bind", "tcp://127.0.0.1:0"]),
            serve_exec(&["--key-file", &key, "--bind", "udp://127.0.0.1:0"]),
            serve_exec(&["--key-file", &key, "--frame-endian", "middle"]),
            serve_exec(&["--key-file", &key, "--max-frame", "8GiB"]),
            {
                let mut client = program();
                client.args(["client", "exec", "echo"]);
                client
            },
        ] {
            let (status, _, err) = run_with_input(&mut command, b"");
            assert_eq!(status.code(), Some(2), "{command:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
        let missing = dir.join("missing").display().to_string();
        let (status, _, err) = run_with_input(
            &mut serve_exec(&["--key-file", &missing]),
            b"",
        );
        assert_eq!(status.code(), Some(1));
        assert!(
            err.starts_with(&format!("error: cannot load --key-file {missing}: ")),
            "{err}"
        );
        let empty = dir.join("empty").display().to_string();
        let (status, _, err) =
            run_with_input(&mut serve_exec(&["--key-file", &empty]), b"");
        assert_eq!(status.code(), Some(1));
        assert!(err.contains("the key is empty"), "{err}");
        let (status, _, err) = run_with_input(
            &mut serve_exec(&[
                "--key-file",
                &key,
                "--workdir",
                &missing,
                "--bind",
                "tcp://127.0.0.1:0",
            ]),
            b"",
        );
        assert_eq!(status.code(), Some(1));
        assert!(err.contains("cannot use --workdir"), "{err}");
    }



    /// Issue 15, item 3: `client exec` pointed at another kind of server says
    /// within its `--timeout` what it expected.
    fn the_client_says_when_the_server_is_not_an_exec_server(mode) {
        let echo = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let dir = TempDir::new("exec-not-exec");
        std::fs::write(dir.join("key"), KEY).unwrap();
        let key = dir.join("key").display().to_string();
        let started = Instant::now();
        let (status, out, err) = run_with_input(
            program().args([
                "client",
                "exec",
                "--connect",
                echo.url(),
                "--key-file",
                &key,
                "--timeout",
                "1",
                "echo",
                "hi",
            ]),
            b"",
        );
        let took = started.elapsed();
        assert_eq!(status.code(), Some(1), "{err}");
        assert!(out.is_empty());
        assert_eq!(
            err,
            format!(
                "error: no challenge from {} within 1 s: is it an exec server?\n",
                echo.url()
            )
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    fn background_processes_never_outlive_their_command(mode) {
        background_processes_case(mode, &[]);
    }

    fn background_processes_never_outlive_their_command_in_process_groups(mode) {
        background_processes_case(mode, &["--contain", "process-group"]);
    }

    fn escapees_die_with_the_server(mode) {
        escapees_die_with_the_server_case(mode, &[]);
    }

    fn escapees_die_with_the_server_in_process_groups(mode) {
        escapees_die_with_the_server_case(mode, &["--contain", "process-group"]);
    }
}
