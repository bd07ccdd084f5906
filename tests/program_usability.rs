//! What a new user of the program trips on: clients pointed at the wrong
//! service, sends that fail, flags on the wrong side, the log level and
//! format, completions and manual pages, and `client chat` on a terminal
//! (the line being typed kept whole, nothing printed that could move the
//! terminal, and why the server closed).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::{program, run_with_input, serve, ServerProcess, TempDir, STEP};

/// Runs `socketserver ARGS` to the end with no input.
fn run(args: &[&str]) -> (i32, String, String) {
    let (status, stdout, stderr) = run_with_input(program().args(args), b"");
    (
        status.code().expect("exited"),
        String::from_utf8_lossy(&stdout).into_owned(),
        stderr,
    )
}

both_modes! {
    fn line_clients_against_echo_upper_say_what_they_expected(mode) {
        let server = serve("echo-upper", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let url = server.url();
        let cases: [(&[&str], &str); 4] = [
            (&["client", "qa", "--connect", url, "hello"], "received the question back: \"HELLO\": is it a qa server?"),
            (&["client", "qa", "--connect", url, "你好"], "received the question back: \"你好\": is it a qa server?"),
            (&["client", "dict", "--connect", url, "hello"], "expected \"hello: DEFINITION\", received \"HELLO\": is it a dict server?"),
            (&["client", "chat", "--connect", url, "--nick", "alice"], "received our own line back: \"/NICK ALICE\": is it a chat server?"),
        ];
        for (args, says) in cases {
            let started = Instant::now();
            let (code, stdout, stderr) = run(args);
            assert_eq!(code, 1, "{args:?}: {stderr}");
            assert_eq!(stdout, "", "{args:?}: nothing of the echo is printed as an answer");
            assert!(stderr.starts_with(&format!("error: {url}: ")), "{args:?}: {stderr}");
            assert!(stderr.contains(says), "{args:?}: {stderr}");
            assert!(started.elapsed() < Duration::from_secs(5), "{args:?} took {:?}", started.elapsed());
        }
        // A chat member typing a line gets it back uppercased: not a room.
        let (status, stdout, stderr) = run_with_input(
            program().args(["client", "chat", "--connect", url]),
            b"hi there\n",
        );
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert_eq!(stdout, b"");
        assert!(stderr.contains("received our own line back: \"HI THERE\""), "{stderr}");
    }

    fn a_qa_client_facing_a_silent_server_gives_up_at_its_timeout(mode) {
        // A chat room never answers a member's own line.
        let server = serve("chat", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let started = Instant::now();
        let (code, _, stderr) = run(&["client", "qa", "--connect", server.url(), "--timeout", "1", "hello"]);
        let took = started.elapsed();
        assert_eq!(code, 1);
        assert_eq!(
            stderr.trim_end(),
            format!("error: no answer from {} within 1 s: is it a qa server?", server.url())
        );
        assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(10), "took {took:?}");
    }

    fn a_chat_client_says_why_the_server_closed(mode) {
        let mut server = serve("chat", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let watcher = TcpStream::connect(server.addr()).unwrap();
        watcher.set_read_timeout(Some(STEP)).unwrap();
        let mut child = program()
            .args(["client", "chat", "--connect", server.url(), "--nick", "cli"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The client is in the room once the watcher sees its new name.
        let mut seen = String::new();
        let mut reader = BufReader::new(watcher.try_clone().unwrap());
        while !seen.contains("is now cli") {
            assert_ne!(reader.read_line(&mut seen).unwrap(), 0, "{seen}");
        }
        server.signal("TERM");
        let output = wait_output(&mut child);
        assert_eq!(output.0, Some(1), "{output:?}");
        assert!(output.1.ends_with("* the server is shutting down\n"), "{output:?}");
        assert_eq!(
            output.2,
            "error: disconnected by the server: the server is shutting down\n"
        );
        assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
        drop(watcher);
    }
}

/// Waits for a child (at most [`STEP`]) and collects its exit code,
/// standard output and standard error.
fn wait_output(child: &mut Child) -> (Option<i32>, String, String) {
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + STEP;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the client did not exit within {STEP:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    (status.code(), out.join().unwrap(), err.join().unwrap())
}

#[test]
fn a_datagram_too_large_is_reported_as_a_failed_send() {
    let server = ServerProcess::start(&["serve", "echo-upper", "--bind", "udp://127.0.0.1:0"], 1);
    let message = "a".repeat(70_000);
    let (code, stdout, stderr) =
        run(&["client", "echo-upper", "--connect", server.url(), &message]);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "error: cannot send to {}: message of 70000 bytes is too large for a datagram (UDP carries at most 65507)\n",
            server.url()
        )
    );
    // The largest datagram goes, and comes back.
    let largest = "b".repeat(65_507);
    let (code, stdout, stderr) =
        run(&["client", "echo-upper", "--connect", server.url(), &largest]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.len(), 65_508);
}

#[test]
fn bind_and_connect_on_the_wrong_side_say_which_flag_is_meant() {
    let (code, _, stderr) = run(&["client", "echo-upper", "--bind", "tcp://127.0.0.1:9"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("error: a client connects to a server: use --connect URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("-- --bind"), "{stderr}");
    let (code, _, stderr) = run(&["serve", "qa", "--connect", "tcp://127.0.0.1:9"]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with("error: a server listens: use --bind URL"),
        "{stderr}"
    );
    // Other unknown flags keep clap's report.
    let (code, _, stderr) = run(&["client", "qa", "--frobnicate"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unexpected argument '--frobnicate'"),
        "{stderr}"
    );
}

/// Serves echo-upper with `flags` (and `RUST_LOG` when given), stops it with
/// SIGINT and returns what it logged.
fn logged(flags: &[&str], rust_log: Option<&str>) -> String {
    let mut command = program();
    command
        .args(["serve", "echo-upper", "--bind", "tcp://127.0.0.1:0"])
        .args(flags);
    command.env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let mut server = ServerProcess::start_with(&mut command, 1);
    server.signal("INT");
    assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
    server.stderr_text()
}

#[test]
fn v_and_q_set_the_log_level_unless_rust_log_is_set() {
    const SUMMARY: &str = "shut down: served 0 request(s)";
    assert!(
        !logged(&[], None).contains(SUMMARY),
        "info is hidden by default"
    );
    let verbose = logged(&["-v"], None);
    assert!(
        verbose.contains(" INFO ") && verbose.contains(SUMMARY),
        "{verbose}"
    );
    let debug = logged(&["-vv"], None);
    assert!(debug.contains(SUMMARY), "{debug}");
    assert!(
        !logged(&["-v"], Some("error")).contains(SUMMARY),
        "RUST_LOG wins"
    );
    assert!(logged(&[], Some("info")).contains(SUMMARY));
    assert!(
        logged(&["-qq", "-v"], None).is_empty(),
        "-qq -v is -q: errors only"
    );

    // A warning at start, hidden by -q.
    let dir = TempDir::new("usability-quiet");
    let key = dir.join("key");
    std::fs::write(&key, "secret").unwrap();
    let key = key.to_str().unwrap();
    let exec = ["--key-file", key, "--allow", "echo", "--shell"];
    let shell = |flags: &[&str]| {
        let mut args = vec!["serve", "exec", "--bind", "tcp://127.0.0.1:0"];
        args.extend_from_slice(&exec);
        args.extend_from_slice(flags);
        let mut command = program();
        command.args(&args).env_remove("RUST_LOG");
        let mut server = ServerProcess::start_with(&mut command, 1);
        server.signal("INT");
        assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
        server.stderr_text()
    };
    assert!(
        shell(&[]).contains("WARN"),
        "the --shell warning shows by default"
    );
    assert!(!shell(&["-q"]).contains("--shell"), "-q hides warnings");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let text = logged(&["--log-format", "json", "-v"], None);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "{text}");
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let object = value.as_object().expect("an object");
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys, ["time", "level", "target", "message"], "{line}");
        assert!(object["time"].as_str().unwrap().ends_with('Z'), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains(r#""level":"INFO""#) && l.contains("shut down: served 0")),
        "{text}"
    );
}

#[test]
fn completions_and_manual_pages_for_packagers() {
    for (shell, marker) in [
        ("bash", "complete -F _socketserver"),
        ("zsh", "#compdef socketserver"),
        ("fish", "complete -c socketserver"),
    ] {
        let (code, script, stderr) = run(&["completions", shell]);
        assert_eq!(code, 0, "{stderr}");
        assert!(script.contains(marker), "{shell}: {marker} missing");
        assert!(
            script.contains("echo-upper") && script.contains("connect"),
            "{shell}"
        );
    }
    let (code, page, _) = run(&["man"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH socketserver 1"), "{page}");
    assert!(
        page.contains("serve") && page.contains("\\-\\-log\\-format"),
        "{page}"
    );

    let dir = TempDir::new("usability-man");
    let (code, _, stderr) = run(&["man", "--dir", dir.0.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let qa = std::fs::read_to_string(dir.join("socketserver-serve-qa.1"))
        .expect("a page per subcommand");
    assert!(
        qa.contains("tcp://127.0.0.1:9001"),
        "the page shows the default address"
    );
    assert!(dir.join("socketserver-client-chat.1").exists());
    assert!(dir.join("socketserver.1").exists());
}

/// A program run on a pseudo-terminal, as by a person: its standard input,
/// output and error are the terminal; what it writes is collected.
struct OnTerminal {
    child: Child,
    master: std::fs::File,
    output: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl OnTerminal {
    fn start(args: &[&str]) -> OnTerminal {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors; the name and termios
        // pointers may be null.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors are new and ours.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let child = program()
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap();
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone().unwrap();
        let (tx, output) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child and its terminal are gone.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        OnTerminal {
            child,
            master,
            output,
            seen: Vec::new(),
        }
    }

    fn type_keys(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
    }

    /// Waits until the terminal shows `text` after what earlier waits saw;
    /// returns everything it showed up to the end of `text`.
    fn wait_for(&mut self, text: &[u8]) -> Vec<u8> {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(at) = self.seen.windows(text.len()).position(|w| w == text) {
                let rest = self.seen.split_off(at + text.len());
                return std::mem::replace(&mut self.seen, rest);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.seen.extend(bytes),
                Err(_) => panic!(
                    "the terminal never showed {:?}; it showed {:?}",
                    String::from_utf8_lossy(text),
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }

    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the program did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

both_modes! {
    fn a_line_from_the_room_never_breaks_the_line_being_typed(mode) {
        let server = serve("chat", mode, &["--bind", "tcp://127.0.0.1:0"], 1);
        let bob = TcpStream::connect(server.addr()).unwrap();
        bob.set_read_timeout(Some(STEP)).unwrap();
        let mut bob_reads = BufReader::new(bob.try_clone().unwrap());
        let mut bob_writes = bob;
        bob_writes.write_all(b"/nick bob\n").unwrap();

        let mut alice = OnTerminal::start(&["client", "chat", "--connect", server.url(), "--nick", "alice"]);
        let mut line = String::new();
        while !line.contains("is now alice") {
            line.clear();
            assert_ne!(bob_reads.read_line(&mut line).unwrap(), 0);
        }
        alice.wait_for(b"> ");
        // Half a word typed, then a line arrives from the room.
        alice.type_keys("hel".as_bytes());
        alice.wait_for(b"> hel");
        bob_writes.write_all(b"are you there?\n").unwrap();
        let shown = alice.wait_for(b"bob: are you there?\r\n> hel");
        assert!(
            shown.ends_with(b"\r\x1b[Kbob: are you there?\r\n> hel"),
            "the input row is erased, the line printed, the input drawn again: {:?}",
            String::from_utf8_lossy(&shown)
        );
        // The rest of the word completes the same line: nothing was lost.
        alice.type_keys("lo, 你好\x7f\x7f!\r".as_bytes());
        alice.wait_for("> hello, !\r\n".as_bytes());
        line.clear();
        bob_reads.read_line(&mut line).unwrap();
        assert_eq!(line, "alice: hello, !\n");

        // Ctrl-D on an empty line leaves the room; the terminal is given back.
        alice.type_keys(b"\x04");
        line.clear();
        bob_reads.read_line(&mut line).unwrap();
        assert_eq!(line, "* alice left\n");
        assert_eq!(alice.wait(), Some(0));
    }
}

#[test]
fn the_chat_client_prints_nothing_that_could_move_the_terminal() {
    // A hostile "room" that sends raw escapes, then closes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let mut alice = OnTerminal::start(&["client", "chat", "--connect", &url]);
    let (mut room, _) = listener.accept().unwrap();
    alice.wait_for(b"> ");
    room.write_all(b"mallory: \x1b]0;owned\x07\x1b[2J\rhi\x9b\xc2\x9bthere\x08\n")
        .unwrap();
    let shown = alice.wait_for("there\u{fffd}\r\n> ".as_bytes());
    let text = String::from_utf8(shown).expect("UTF-8 only");
    // The only control sequences are the editor's own: erase the row, CR LF.
    let without_own = text.replace("\r\x1b[K", "").replace("\r\n", "");
    assert!(
        !without_own.chars().any(|c| c.is_control()),
        "{without_own:?}"
    );
    assert!(
        text.contains(
            "mallory: \u{fffd}]0;owned\u{fffd}\u{fffd}[2J\u{fffd}hi\u{fffd}\u{fffd}there\u{fffd}"
        ),
        "{text:?}"
    );
    drop(room);
    let shown = alice.wait_for(b"disconnected by the server");
    assert!(String::from_utf8_lossy(&shown).ends_with("error: disconnected by the server"));
    assert_eq!(alice.wait(), Some(1));
}

#[test]
fn ctrl_c_on_the_chat_terminal_quits_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let mut alice = OnTerminal::start(&["client", "chat", "--connect", &url]);
    let (room, _) = listener.accept().unwrap();
    alice.wait_for(b"> ");
    alice.type_keys(b"half a line\x03");
    assert_eq!(alice.wait(), Some(130));
    drop(room);
}
