//! systemd's socket activation against the program (rules 37, 39, 50, 51):
//! descriptors the test passes itself, and Debian's `systemd-socket-activate`
//! (skipped unless `CI` is set when it is not installed).
//!
//! `cargo test --all-features --test systemd`

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use socketserver::client::exec::ExecClient;
use socketserver::protocol::auth::Key;
use socketserver::protocol::framing::FrameCodec;
use support::TempDir;
use support::{eventually, ServerProcess, Tool, STEP};

/// `socketserver ARGS` with `fds` passed as descriptors 3, 4, ... and
/// `LISTEN_FDS`/`LISTEN_PID` set as systemd sets them (`LISTEN_PID` by a
/// shell that then execs the program, keeping its process id).
fn activated(fds: &[RawFd], args: &[&str]) -> Command {
    let mut command = Command::new("sh");
    command
        .args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_socketserver"))
        .args(args)
        .env("LISTEN_FDS", fds.len().to_string())
        .env_remove("LISTEN_PID");
    pass_descriptors(&mut command, fds);
    command
}

/// Makes `fds` descriptors 3, 4, ... of the child (and closes what would
/// otherwise be the next one, so that "not open" is certain).
fn pass_descriptors(command: &mut Command, fds: &[RawFd]) {
    assert!(fds.len() <= 8);
    let fds = fds.to_vec();
    // SAFETY: only async-signal-safe calls (fcntl, dup2, close) on
    // descriptors this process owns, and no allocation: `fds` was built
    // before the fork.
    unsafe {
        command.pre_exec(move || {
            // Out of the way first, so that a source that is also a target
            // is not overwritten before it is copied.
            let mut high = [0 as RawFd; 8];
            for (i, &fd) in fds.iter().enumerate() {
                high[i] = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, &copy) in high[..fds.len()].iter().enumerate() {
                if libc::dup2(copy, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::close(3 + fds.len() as RawFd);
            Ok(())
        });
    }
}

fn echo_tcp(addr: &str) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream.write_all(b"activated").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "ACTIVATED");
}

/// Waits for the exit, then every standard output line.
fn exit_and_stdout(served: &mut ServerProcess) -> (Option<i32>, Vec<String>) {
    let status = served.wait(STEP).expect("the server exits");
    (status.code(), served.stdout_to_the_end())
}

both_modes! {
    fn inherited_sockets_come_first_then_the_bind_urls(mode) {
        let dir = TempDir::new("activation");
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let unix_path = dir.join("given.sock");
        let unix = UnixListener::bind(&unix_path).unwrap();
        let fds = [tcp.as_raw_fd(), udp.as_raw_fd(), unix.as_raw_fd()];
        let mut args = vec!["serve", "echo-upper", "--bind", "tcp://127.0.0.1:0"];
        args.extend(mode.flag());
        let mut served = ServerProcess::start_with(&mut activated(&fds, &args), 4);
        let urls = served.urls.clone();
        assert_eq!(urls[0], format!("tcp://{}", tcp.local_addr().unwrap()));
        assert_eq!(urls[1], format!("udp://{}", udp.local_addr().unwrap()));
        assert_eq!(urls[2], format!("unix:{}", unix_path.display()));
        assert!(urls[3].starts_with("tcp://127.0.0.1:") && urls[3] != urls[0], "{urls:?}");
        // The test's copies are closed: only the server holds the sockets.
        drop((tcp, udp, unix));

        echo_tcp(&served.addr_of(0));
        echo_tcp(&served.addr_of(3));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(STEP)).unwrap();
        client.send_to(b"datagram", served.addr_of(1)).unwrap();
        let mut answer = [0u8; 16];
        let (n, _) = client.recv_from(&mut answer).unwrap();
        assert_eq!(&answer[..n], b"DATAGRAM");
        let mut stream = UnixStream::connect(&unix_path).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.write_all(b"over unix").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        assert_eq!(text, "OVER UNIX");

        served.signal("TERM");
        let (code, _) = exit_and_stdout(&mut served);
        assert_eq!(code, Some(0));
        // Rule 50: a socket file the program did not create stays.
        assert!(unix_path.exists(), "the inherited socket's file was removed");
    }

    fn without_bind_only_the_inherited_socket_is_served(mode) {
        // Bound but not listening: the program makes it listen (rule 50).
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let mut args = vec!["serve", "echo-upper"];
        args.extend(mode.flag());
        let mut served = ServerProcess::start_with(&mut activated(&[socket.as_raw_fd()], &args), 1);
        drop(socket);
        assert_eq!(served.urls.clone(), vec![format!("tcp://{addr}")]);
        echo_tcp(&addr.to_string());
        served.signal("TERM");
        let (code, lines) = exit_and_stdout(&mut served);
        assert_eq!(code, Some(0));
        let listening: Vec<_> = lines.iter().filter(|l| l.starts_with("listening on ")).collect();
        assert_eq!(listening.len(), 1, "no default address is bound: {lines:?}");
    }

    fn under_systemd_socket_activate(mode) {
        if support::tool(Tool::Systemd).is_none() {
            return;
        }
        // A free port for systemd-socket-activate to listen on.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address = format!("127.0.0.1:{port}");
        let mut args = vec!["serve", "echo-upper"];
        args.extend(mode.flag());
        let mut child = Reaped(Command::new("systemd-socket-activate")
            .args(["-l", &address, "--"])
            .arg(env!("CARGO_BIN_EXE_socketserver"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap());
        // systemd-socket-activate listens first and starts the program on
        // the first connection; its queue holds that connection meanwhile.
        let mut stream = None;
        eventually("systemd-socket-activate to listen", || {
            stream = TcpStream::connect(&address).ok();
            stream.is_some()
        });
        let mut stream = stream.unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.write_all(b"socket activated").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "SOCKET ACTIVATED");
        echo_tcp(&address);
        // The program replaced systemd-socket-activate (same process id).
        let status = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
        assert!(status.success());
        let output = child_output(&mut child.0);
        assert_eq!(output.0, Some(0), "stderr: {}", output.2);
        assert_eq!(output.1.trim_end(), format!("listening on tcp://{address}"));
    }
}

/// A child killed and reaped on drop, in case the test fails first.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) for a child; its exit code, stdout and stderr.
fn child_output(child: &mut std::process::Child) -> (Option<i32>, String, String) {
    let deadline = std::time::Instant::now() + STEP;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), out, err)
}

/// Runs `command` to its end: exit code and stderr.
fn run(command: &mut Command) -> (Option<i32>, String) {
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn listen_fds_naming_no_socket_is_a_clear_error() {
    let file = std::fs::File::open("/dev/null").unwrap();
    let (code, stderr) = run(&mut activated(
        &[file.as_raw_fd()],
        &["serve", "echo-upper"],
    ));
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.trim_end(),
        "error: socket activation: descriptor 3 passed by LISTEN_FDS is not a socket"
    );
    // Two named, one passed: descriptor 4 is not open.
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut command = activated(&[tcp.as_raw_fd()], &["serve", "echo-upper"]);
    command.env("LISTEN_FDS", "2");
    let (code, stderr) = run(&mut command);
    assert_eq!(code, Some(1));
    assert!(
        stderr
            .starts_with("error: socket activation: descriptor 4 passed by LISTEN_FDS is not open"),
        "{stderr}"
    );
    let mut command = activated(&[], &["serve", "echo-upper"]);
    command.env("LISTEN_FDS", "many");
    let (code, stderr) = run(&mut command);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("LISTEN_FDS=many is not a number"),
        "{stderr}"
    );
}

#[test]
fn an_inherited_socket_of_a_kind_the_service_does_not_speak_exits_1() {
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (code, stderr) = run(&mut activated(&[udp.as_raw_fd()], &["serve", "qa"]));
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.trim_end(),
        "error: socket activation: descriptor 3 is a udp socket; qa speaks tcp, unix"
    );
}

both_modes! {
    fn programs_that_exec_runs_inherit_no_systemd_variables(mode) {
        let dir = TempDir::new("exec-env");
        std::fs::write(dir.join("key"), b"k3y").unwrap();
        let manager = UnixDatagram::bind(dir.join("notify")).unwrap();
        let key = dir.join("key").display().to_string();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut command = activated(
            &[tcp.as_raw_fd()],
            &[
                "serve",
                "exec",
                mode.flag()[0],
                mode.flag()[1],
                "--key-file",
                &key,
                "--allow",
                "env",
            ],
        );
        command
            .env("NOTIFY_SOCKET", dir.join("notify"))
            .env("WATCHDOG_USEC", "60000000")
            .env("WATCHDOG_PID", "1")
            .env("LISTEN_FDNAMES", "exec");
        let served = ServerProcess::start_with(&mut command, 1);
        drop(tcp);
        let mut buf = [0u8; 64];
        manager.set_read_timeout(Some(STEP)).unwrap();
        let n = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
        let url = served.urls[0].parse().unwrap();
        let mut client = ExecClient::connect(
            &url,
            &Key::new(&b"k3y"[..]).unwrap(),
            FrameCodec::new(),
            Some(STEP),
        )
        .unwrap();
        let output = client.run("env").unwrap().unwrap();
        let environment = String::from_utf8(output.stdout).unwrap();
        assert!(environment.contains("PATH="), "{environment}");
        for name in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "LISTEN_PID",
            "LISTEN_FDS",
            "LISTEN_FDNAMES",
        ] {
            assert!(
                !environment
                    .lines()
                    .any(|l| l.starts_with(&format!("{name}="))),
                "{name} reached the command: {environment}"
            );
        }
    }
}
