//! The exec service over loopback, against the program: the course's Python
//! client, the `client exec` command, and every bad input the spec names;
//! after each bad input the same server still serves a new client.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use socketserver::client::exec::ExecClient;
use socketserver::client::Connection;
use socketserver::protocol::auth::{client_handshake, Key};
use socketserver::protocol::framing::{Endian, FrameCodec};
use socketserver::SocketUrl;
use support::{program, run_with_input, ServerProcess, TempDir, STEP};

const KEY: &[u8] = b"course secret\n";

/// A server with its key file and working directory.
struct Setup {
    dir: TempDir,
    server: ServerProcess,
}

impl Setup {
    /// `serve exec` on a free port, allowing a few programs, plus `extra`.
    fn start(name: &str, extra: &[&str]) -> Setup {
        let dir = TempDir::new(name);
        std::fs::write(dir.join("key"), KEY).unwrap();
        let key = dir.join("key").display().to_string();
        let workdir = dir.join("work");
        std::fs::create_dir(&workdir).unwrap();
        let workdir = workdir.display().to_string();
        let mut args = vec![
            "serve",
            "exec",
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
            "no-such-program-xyz",
        ];
        args.extend_from_slice(extra);
        let server = ServerProcess::start(&args, 1);
        Setup { dir, server }
    }

    fn url(&self) -> SocketUrl {
        self.server.url().parse().unwrap()
    }

    fn key_path(&self) -> String {
        self.dir.join("key").display().to_string()
    }

    fn client(&self) -> ExecClient {
        self.client_with(FrameCodec::new())
    }

    fn client_with(&self, framing: FrameCodec) -> ExecClient {
        ExecClient::connect(&self.url(), &Key::new(KEY).unwrap(), framing, Some(STEP))
            .expect("authenticate")
    }

    /// A raw connection with timeouts.
    fn raw(&self) -> TcpStream {
        let stream = TcpStream::connect(self.server.addr()).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.set_write_timeout(Some(STEP)).unwrap();
        stream
    }

    /// A raw connection past the handshake.
    fn raw_authenticated(&self) -> TcpStream {
        let mut stream = self.raw();
        client_handshake(&mut stream, &Key::new(KEY).unwrap(), &FrameCodec::new()).unwrap();
        stream
    }

    /// The server still runs a command for a new client.
    fn assert_serves(&self) {
        let output = self.client().run("echo still serving").unwrap().unwrap();
        assert_eq!(output.stdout, b"still serving\n");
        assert_eq!(output.status.exit_code, Some(0));
    }
}

fn python(script: &str, args: &[&str]) -> (String, String) {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "python", script]
        .iter()
        .collect();
    let (status, out, err) = run_with_input(Command::new("python3").arg(path).args(args), b"");
    assert!(status.success(), "{script} failed: {err}");
    (String::from_utf8(out).unwrap(), err)
}

/// Reads one answer header (little-endian) as raw text.
fn read_header_text(stream: &mut TcpStream) -> String {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut header = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut header).unwrap();
    String::from_utf8(header).unwrap()
}

/// The server closed the connection: end of input (or a reset).
fn assert_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "unexpected bytes: {rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn the_course_python_client_runs_commands() {
    let setup = Setup::start("exec-python", &[]);
    let key = setup.key_path();
    let (host, port) = setup
        .server
        .addr()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    let (out, _) = python(
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
    );
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

#[test]
fn big_endian_frames_everything_including_the_verdict() {
    let setup = Setup::start("exec-big", &["--frame-endian", "big"]);
    let key = setup.key_path();
    let (host, port) = setup
        .server
        .addr()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    let (out, _) = python(
        "exec_client.py",
        &[&host, &port, &key, "--big", "echo network order"],
    );
    let answer: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(answer["stdout"], "network order\n");

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

#[test]
fn a_wrong_key_is_denied_and_the_connection_closed() {
    let setup = Setup::start("exec-denied", &[]);
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

#[test]
fn truncated_silent_and_garbage_handshakes_cost_only_their_connection() {
    let setup = Setup::start("exec-handshake", &["--auth-timeout", "0.3"]);
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

#[test]
fn refused_commands_are_answered_and_the_connection_goes_on() {
    let setup = Setup::start("exec-refused", &[]);
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

#[test]
fn commands_run_without_a_shell_in_the_workdir_with_stdin_closed() {
    let setup = Setup::start("exec-direct", &["--allow", "pwd", "--allow", "cat"]);
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

#[test]
fn the_timeout_kills_the_whole_process_group() {
    let setup = Setup::start("exec-timeout", &["--timeout", "0.5"]);
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

#[test]
fn a_command_cut_at_the_shutdown_deadline_is_killed_with_its_group() {
    let mut setup = Setup::start(
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

#[test]
fn output_over_the_limit_is_truncated_and_flagged() {
    let setup = Setup::start("exec-output", &["--max-output", "1000"]);
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

#[test]
fn both_streams_are_read_at_once() {
    let setup = Setup::start("exec-streams", &[]);
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

#[test]
fn an_oversized_frame_is_answered_then_closed() {
    let setup = Setup::start("exec-oversized", &["--max-frame", "1KiB"]);
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

#[test]
fn garbage_after_the_handshake_is_an_oversized_frame() {
    let setup = Setup::start("exec-garbage", &[]);
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

#[test]
fn shell_mode_checks_only_the_first_word_and_warns() {
    let mut setup = Setup::start("exec-shell", &["--shell"]);
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

#[test]
fn serves_on_a_unix_socket() {
    let dir = TempDir::new("exec-unix");
    std::fs::write(dir.join("key"), KEY).unwrap();
    let sock = format!("unix:{}", dir.join("exec.sock").display());
    let key = dir.join("key").display().to_string();
    let server = ServerProcess::start(
        &[
            "serve",
            "exec",
            "--bind",
            &sock,
            "--key-file",
            &key,
            "--allow",
            "echo",
        ],
        1,
    );
    assert_eq!(server.url(), sock);
    let connection = Connection::connect(&sock.parse().unwrap(), Some(STEP)).unwrap();
    connection.set_read_timeout(Some(STEP)).unwrap();
    let mut client =
        ExecClient::handshake(connection, &Key::new(KEY).unwrap(), FrameCodec::new()).unwrap();
    assert_eq!(client.run("echo unix").unwrap().unwrap().stdout, b"unix\n");
}

#[test]
fn the_client_command_prints_streams_and_exits_with_the_status() {
    let setup = Setup::start("exec-cli", &[]);
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

#[test]
fn usage_and_startup_errors() {
    let dir = TempDir::new("exec-usage");
    std::fs::write(dir.join("key"), KEY).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    let key = dir.join("key").display().to_string();
    for args in [
        vec!["serve", "exec", "--bind", "tcp://127.0.0.1:0"],
        vec![
            "serve",
            "exec",
            "--key-file",
            &key,
            "--bind",
            "udp://127.0.0.1:0",
        ],
        vec![
            "serve",
            "exec",
            "--key-file",
            &key,
            "--frame-endian",
            "middle",
        ],
        vec!["serve", "exec", "--key-file", &key, "--max-frame", "8GiB"],
        vec!["client", "exec", "echo"],
    ] {
        let (status, _, err) = run_with_input(program().args(&args), b"");
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let missing = dir.join("missing").display().to_string();
    let (status, _, err) = run_with_input(
        program().args(["serve", "exec", "--key-file", &missing]),
        b"",
    );
    assert_eq!(status.code(), Some(1));
    assert!(
        err.starts_with(&format!("error: cannot load --key-file {missing}: ")),
        "{err}"
    );
    let empty = dir.join("empty").display().to_string();
    let (status, _, err) =
        run_with_input(program().args(["serve", "exec", "--key-file", &empty]), b"");
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("the key is empty"), "{err}");
    let (status, _, err) = run_with_input(
        program().args([
            "serve",
            "exec",
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

/// Issue 14, item 2: background processes, even those that leave their
/// process group (`setsid`), never outlive their command: not when it
/// ends, not at its timeout.
fn background_processes_case(extra_args: &[&str]) {
    let mut args = vec!["--allow", "setsid", "--timeout", "1"];
    args.extend_from_slice(extra_args);
    let setup = Setup::start("exec-background", &args);
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

#[test]
fn background_processes_never_outlive_their_command() {
    background_processes_case(&[]);
}

#[test]
fn background_processes_never_outlive_their_command_in_process_groups() {
    background_processes_case(&["--contain", "process-group"]);
}

/// Issue 14, item 2: what a command left running dies with the server.
fn escapees_die_with_the_server_case(extra_args: &[&str]) {
    let mut args = vec![
        "--allow",
        "setsid",
        "--timeout",
        "60",
        "--shutdown-timeout",
        "0.3",
    ];
    args.extend_from_slice(extra_args);
    let mut setup = Setup::start("exec-escapee-exit", &args);
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

#[test]
fn escapees_die_with_the_server() {
    escapees_die_with_the_server_case(&[]);
}

#[test]
fn escapees_die_with_the_server_in_process_groups() {
    escapees_die_with_the_server_case(&["--contain", "process-group"]);
}

/// Issue 15, item 3: `client exec` pointed at another kind of server says
/// within its `--timeout` what it expected.
fn not_an_exec_server_case(extra_args: &[&str]) {
    let mut args = vec!["serve", "echo-upper", "--bind", "tcp://127.0.0.1:0"];
    args.extend_from_slice(extra_args);
    let echo = ServerProcess::start(&args, 1);
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

#[test]
fn the_client_says_when_the_server_is_not_an_exec_server() {
    not_an_exec_server_case(&[]);
}
