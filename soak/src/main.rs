//! Soak test for the `socketserver` program: starts every service it has,
//! runs mixed load (honest clients of each service, and hostile ones: wrong
//! keys, garbage frames, resets in the middle of uploads, oversized frames)
//! for a set time, samples each server's resident memory, thread count and
//! open descriptors from /proc every second, and at the end checks that
//! they stayed flat, that no answer was wrong, and that every server exits
//! 0 on SIGTERM. Writes `samples.csv`, `summary.txt` and `soak.png` to the
//! output folder.
//!
//! ```text
//! soak [--duration SECS] [--out DIR] [--program PATH] [--font TTF]
//! ```
//!
//! Everything runs on loopback (127.0.0.1, with 127.0.0.9 as the hostile
//! source address), bounded by the duration. Run it through
//! `scripts/soak.sh`, which builds what it needs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use socketserver::client::exec::ExecClient;
use socketserver::client::files::FilesClient;
use socketserver::protocol::auth::Key;
use socketserver::protocol::framing::FrameCodec;
use socketserver::SocketUrl;

const STEP: Duration = Duration::from_secs(10);
const KEY: &[u8] = b"soak key";

struct Args {
    duration: Duration,
    out: PathBuf,
    program: PathBuf,
    font: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        duration: Duration::from_secs(600),
        out: PathBuf::from("soak/out"),
        program: PathBuf::from("target/release/socketserver"),
        font: PathBuf::from("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--duration" => {
                args.duration = Duration::from_secs_f64(
                    value.parse().unwrap_or_else(|_| usage("--duration SECS")),
                )
            }
            "--out" => args.out = value.into(),
            "--program" => args.program = value.into(),
            "--font" => args.font = value.into(),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    args
}

fn usage(why: &str) -> ! {
    eprintln!(
        "error: {why}\nusage: soak [--duration SECS] [--out DIR] [--program PATH] [--font TTF]"
    );
    std::process::exit(2)
}

/// One running `socketserver serve ...`.
struct Server {
    name: &'static str,
    child: Child,
    urls: Vec<String>,
}

impl Server {
    /// Starts `program serve NAME ARGS`, its log going to `log`.
    fn start(
        program: &Path,
        name: &'static str,
        args: &[&str],
        binds: usize,
        log: &Path,
    ) -> Server {
        let log = std::fs::File::create(log.join(format!("{name}.log"))).expect("create a log");
        let mut child = Command::new(program)
            .arg("serve")
            .arg(name)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let urls = (0..binds)
            .map(|_| {
                rx.recv_timeout(STEP)
                    .expect("the server announces its address")
            })
            .collect();
        Server { name, child, urls }
    }

    fn addr(&self, i: usize) -> String {
        self.urls[i].split_once("://").unwrap().1.to_string()
    }

    fn url(&self, i: usize) -> SocketUrl {
        self.urls[i].parse().unwrap()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// What one process looks like now.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Sample {
        rss_kib: field("VmRSS:")?,
        threads: field("Threads:")?,
        fds,
    })
}

/// Counts per kind of load.
#[derive(Default)]
struct Counter {
    ok: AtomicU64,
    /// An answer that was wrong: must stay 0.
    wrong: AtomicU64,
    /// A failure to talk to a running server (connect, timeout): must stay 0.
    failed: AtomicU64,
}

type Counters = Arc<Mutex<BTreeMap<String, Arc<Counter>>>>;

fn counter(counters: &Counters, name: &str) -> Arc<Counter> {
    counters
        .lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .clone()
}

/// Runs `op` in a loop on a new thread until `stop`; `op` returns
/// Ok(true) for a right answer, Ok(false) for a wrong one, Err for a failure.
fn worker(
    counters: &Counters,
    name: &str,
    stop: &Arc<AtomicBool>,
    pause: Duration,
    mut op: impl FnMut(u64) -> Result<bool, String> + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let (count, stop, name) = (counter(counters, name), stop.clone(), name.to_string());
    std::thread::spawn(move || {
        let mut i = 0;
        while !stop.load(Relaxed) {
            match op(i) {
                Ok(true) => count.ok.fetch_add(1, Relaxed),
                Ok(false) => {
                    eprintln!("{name}: wrong answer at round {i}");
                    count.wrong.fetch_add(1, Relaxed)
                }
                Err(e) => {
                    if !stop.load(Relaxed) {
                        eprintln!("{name}: {e}");
                        count.failed.fetch_add(1, Relaxed);
                    }
                    0
                }
            };
            i += 1;
            std::thread::sleep(pause);
        }
    })
}

fn tcp(addr: &str) -> Result<TcpStream, String> {
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let stream = TcpStream::connect_timeout(&addr, STEP).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(STEP))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(STEP))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// A TCP connection from another loopback address.
fn tcp_from(local: &str, addr: &str) -> Result<TcpStream, String> {
    use socket2::{Domain, Socket, Type};
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{e}"))?;
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
    socket
        .bind(&format!("{local}:0").parse::<SocketAddr>().unwrap().into())
        .map_err(|e| e.to_string())?;
    socket
        .connect_timeout(&addr.into(), STEP)
        .map_err(|e| e.to_string())?;
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(STEP))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

fn reset(stream: TcpStream) {
    let _ = socket2::Socket::from(stream).set_linger(Some(Duration::ZERO));
}

fn text(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|n| b"abcdefghijklmnopqrstuvwxyz0123456789"[(n + i as usize) % 36])
        .collect()
}

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.out).expect("create the output folder");
    let help = Command::new(&args.program)
        .args(["serve", "--help"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args.program.display()));
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let has = |service: &str| help.lines().any(|l| l.trim_start().starts_with(service));

    let work = std::env::temp_dir().join(format!("socketserver-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("exec")).unwrap();
    std::fs::write(work.join("key"), KEY).unwrap();
    let key_file = work.join("key").display().to_string();
    let store = work.join("files").display().to_string();
    let exec_dir = work.join("exec").display().to_string();

    let pool = ["--write-timeout", "5"];
    let mut servers = vec![
        Server::start(
            &args.program,
            "echo-upper",
            &[
                &["--bind", "tcp://127.0.0.1:0", "--bind", "udp://127.0.0.1:0"][..],
                &pool,
            ]
            .concat(),
            2,
            &args.out,
        ),
        Server::start(
            &args.program,
            "exec",
            &[
                &[
                    "--bind",
                    "tcp://127.0.0.1:0",
                    "--key-file",
                    &key_file,
                    "--workdir",
                    &exec_dir,
                    "--allow",
                    "echo",
                ][..],
                &pool,
            ]
            .concat(),
            1,
            &args.out,
        ),
        Server::start(
            &args.program,
            "files",
            &[
                &[
                    "--bind",
                    "tcp://127.0.0.1:0",
                    "--dir",
                    &store,
                    "--max-size",
                    "1MiB",
                ][..],
                &pool,
            ]
            .concat(),
            1,
            &args.out,
        ),
    ];
    for (name, bind) in [
        ("qa", "tcp://127.0.0.1:0"),
        ("dict", "udp://127.0.0.1:0"),
        ("chat", "tcp://127.0.0.1:0"),
        ("http", "tcp://127.0.0.1:0"),
    ] {
        if has(name) {
            servers.push(Server::start(
                &args.program,
                name,
                &[&["--bind", bind][..], &pool].concat(),
                1,
                &args.out,
            ));
        }
    }
    let names: Vec<&str> = servers.iter().map(|s| s.name).collect();
    eprintln!(
        "soak: {} for {:?}, services: {}",
        args.program.display(),
        args.duration,
        names.join(", ")
    );

    // Sampling, every second, from /proc.
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let pids: Vec<(&'static str, u32)> = servers.iter().map(|s| (s.name, s.pid())).collect();
    let started = Instant::now();
    let sampler = {
        let stop = stop_sampling.clone();
        let pids = pids.clone();
        std::thread::spawn(move || {
            let mut rows: Vec<(f64, &'static str, Sample)> = Vec::new();
            let mut next = Instant::now();
            while !stop.load(Relaxed) {
                let t = started.elapsed().as_secs_f64();
                for &(name, pid) in &pids {
                    if let Some(s) = sample(pid) {
                        rows.push((t, name, s));
                    }
                }
                next += Duration::from_secs(1);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            rows
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let idle_before: Vec<Sample> = pids.iter().map(|&(_, pid)| sample(pid).unwrap()).collect();

    let counters: Counters = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let ms = Duration::from_millis;

    // echo-upper: short connections, long ones, datagrams.
    for w in 0..4 {
        let addr = servers[0].addr(0);
        workers.push(worker(
            &counters,
            "echo-upper tcp",
            &stop,
            ms(2),
            move |i| {
                let mut s = tcp(&addr)?;
                let message = text(i + w, 4096);
                s.write_all(&message).map_err(|e| e.to_string())?;
                s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
                let mut answer = Vec::new();
                s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
                Ok(answer == message.to_ascii_uppercase())
            },
        ));
    }
    {
        let addr = servers[0].addr(0);
        let mut held: Option<TcpStream> = None;
        workers.push(worker(
            &counters,
            "echo-upper tcp (kept)",
            &stop,
            ms(5),
            move |i| {
                if held.is_none() || i % 500 == 0 {
                    held = Some(tcp(&addr)?);
                }
                let s = held.as_mut().unwrap();
                let message = text(i, 512);
                s.write_all(&message).map_err(|e| e.to_string())?;
                let mut answer = vec![0u8; message.len()];
                s.read_exact(&mut answer).map_err(|e| e.to_string())?;
                Ok(answer == message.to_ascii_uppercase())
            },
        ));
    }
    {
        let addr = servers[0].addr(1);
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(ms(500))).unwrap();
        socket.connect(&addr).unwrap();
        let lost = counter(&counters, "echo-upper udp (lost)");
        workers.push(worker(
            &counters,
            "echo-upper udp",
            &stop,
            ms(2),
            move |i| {
                let message = text(i, 512);
                socket.send(&message).map_err(|e| e.to_string())?;
                let mut buf = [0u8; 1024];
                match socket.recv(&mut buf) {
                    Ok(n) => Ok(buf[..n] == message.to_ascii_uppercase()[..]),
                    Err(_) => {
                        // UDP may drop; counted apart, and a late answer is
                        // drained by the next receive.
                        lost.ok.fetch_add(1, Relaxed);
                        Ok(true)
                    }
                }
            },
        ));
    }

    // exec: a session of ten commands per connection.
    for w in 0..2u64 {
        let url = servers[1].url(0);
        let mut client: Option<ExecClient> = None;
        workers.push(worker(&counters, "exec", &stop, ms(20), move |i| {
            if client.is_none() || i % 10 == 0 {
                client = Some(
                    ExecClient::connect(
                        &url,
                        &Key::new(KEY).unwrap(),
                        FrameCodec::new(),
                        Some(STEP),
                    )
                    .map_err(|e| format!("connect: {e}"))?,
                );
            }
            let output = client
                .as_mut()
                .unwrap()
                .run(&format!("echo soak {w} {i}"))
                .map_err(|e| e.to_string())?
                .map_err(|why| format!("refused: {why}"))?;
            Ok(output.stdout == format!("soak {w} {i}\n").into_bytes())
        }));
    }

    // files: put, get back, list; names rotate so the folder stays small.
    for w in 0..2u64 {
        let url = servers[2].url(0);
        workers.push(worker(&counters, "files", &stop, ms(10), move |i| {
            let mut client = FilesClient::connect(&url, None, FrameCodec::new(), Some(STEP))
                .map_err(|e| format!("connect: {e}"))?;
            let name = format!("soak-{w}-{}", i % 8);
            let data = text(i, 64 << 10);
            client
                .put(&name, &data[..], data.len() as u64, None, &mut |_| {})
                .map_err(|e| format!("put: {e}"))?;
            let mut back = Vec::new();
            client
                .get(&name, &mut back, &mut |_, _| {})
                .map_err(|e| format!("get: {e}"))?;
            if i % 10 == 0 {
                client.list().map_err(|e| format!("list: {e}"))?;
            }
            Ok(back == data)
        }));
    }

    // Hostile clients, from 127.0.0.9 for the wrong keys (that address is
    // soon refused; the honest clients on 127.0.0.1 are not affected).
    {
        let exec_addr = servers[1].addr(0);
        let files_addr = servers[2].addr(0);
        workers.push(worker(&counters, "hostile", &stop, ms(20), move |i| {
            match i % 5 {
                0 => {
                    // A wrong key: denied, or closed before the challenge.
                    let mut s = tcp_from("127.0.0.9", &exec_addr)?;
                    let mut challenge = [0u8; 32];
                    match s.read_exact(&mut challenge) {
                        Ok(()) => {
                            let wrong = Key::new(&b"wrong"[..]).unwrap().answer(&challenge);
                            s.write_all(&wrong).map_err(|e| e.to_string())?;
                            let verdict = FrameCodec::new()
                                .read_header(&mut s, &mut Vec::new())
                                .map_err(|e| e.to_string())?;
                            Ok(verdict.is_some_and(|v| v["status"] == "denied"))
                        }
                        Err(_) => Ok(true), // refused before the challenge
                    }
                }
                1 => {
                    // A frame claiming 4 GiB after a good handshake.
                    let mut s = tcp(&exec_addr)?;
                    socketserver::protocol::auth::client_handshake(
                        &mut s,
                        &Key::new(KEY).unwrap(),
                        &FrameCodec::new(),
                    )
                    .map_err(|e| e.to_string())?;
                    s.write_all(&[0xff; 4]).map_err(|e| e.to_string())?;
                    let answer = FrameCodec::new()
                        .read_header(&mut s, &mut Vec::new())
                        .map_err(|e| e.to_string())?;
                    Ok(answer.is_some_and(|a| a["status"] == "error"))
                }
                2 => {
                    // Garbage instead of a header.
                    let mut s = tcp(&files_addr)?;
                    s.write_all(b"\x05\0\0\0hello").map_err(|e| e.to_string())?;
                    let answer = FrameCodec::new()
                        .read_header(&mut s, &mut Vec::new())
                        .map_err(|e| e.to_string())?;
                    Ok(answer.is_some_and(|a| a["status"] == "error"))
                }
                3 => {
                    // An upload reset midway.
                    let mut s = tcp(&files_addr)?;
                    FrameCodec::new()
                        .write_header(&mut s, &json!({"file_name": "cut", "file_size": 500_000}))
                        .map_err(|e| e.to_string())?;
                    s.write_all(&text(i, 100_000)).map_err(|e| e.to_string())?;
                    reset(s);
                    Ok(true)
                }
                _ => {
                    // A traversal attempt.
                    let mut s = tcp(&files_addr)?;
                    FrameCodec::new()
                        .write_header(&mut s, &json!({"file_name": "../escape", "file_size": 1}))
                        .map_err(|e| e.to_string())?;
                    let answer = FrameCodec::new()
                        .read_header(&mut s, &mut Vec::new())
                        .map_err(|e| e.to_string())?;
                    Ok(answer.is_some_and(|a| a["status"] == "error"))
                }
            }
        }));
    }

    // The services that landed later, when the program has them.
    for server in &servers[3..] {
        match server.name {
            "qa" => {
                let addr = server.addr(0);
                let mut held: Option<BufReader<TcpStream>> = None;
                workers.push(worker(&counters, "qa", &stop, ms(5), move |i| {
                    if held.is_none() || i % 200 == 0 {
                        held = Some(BufReader::new(tcp(&addr)?));
                    }
                    let reader = held.as_mut().unwrap();
                    let (question, answer) = if i % 2 == 0 {
                        ("你好吗\n", "你好啊\n")
                    } else {
                        ("what?\n", "人家还小，不知道。\n")
                    };
                    reader
                        .get_mut()
                        .write_all(question.as_bytes())
                        .map_err(|e| e.to_string())?;
                    let mut line = String::new();
                    reader.read_line(&mut line).map_err(|e| e.to_string())?;
                    Ok(line == answer)
                }));
            }
            "dict" => {
                let addr = server.addr(0);
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.set_read_timeout(Some(ms(500))).unwrap();
                socket.connect(&addr).unwrap();
                workers.push(worker(&counters, "dict", &stop, ms(5), move |_| {
                    socket.send(b"Hello").map_err(|e| e.to_string())?;
                    let mut buf = [0u8; 2048];
                    match socket.recv(&mut buf) {
                        Ok(n) => Ok(buf[..n].starts_with(b"Hello: ")),
                        Err(_) => Ok(true), // UDP may drop
                    }
                }));
            }
            "chat" => {
                let addr = server.addr(0);
                workers.push(worker(&counters, "chat", &stop, ms(50), move |i| {
                    let mut listener = tcp(&addr)?;
                    // A refused empty nick is answered to the sender only,
                    // once it is in the room: then the talker may come.
                    listener.write_all(b"/nick\n").map_err(|e| e.to_string())?;
                    let mut lines = BufReader::new(listener);
                    let mut line = String::new();
                    loop {
                        line.clear();
                        lines.read_line(&mut line).map_err(|e| e.to_string())?;
                        if line.starts_with("* a nick cannot be empty") {
                            break;
                        }
                    }
                    let mut talker = tcp(&addr)?;
                    let said = format!("soak line {i}");
                    loop {
                        line.clear();
                        lines.read_line(&mut line).map_err(|e| e.to_string())?;
                        if line.contains(" joined") {
                            break;
                        }
                    }
                    talker
                        .write_all(format!("{said}\n").as_bytes())
                        .map_err(|e| e.to_string())?;
                    loop {
                        line.clear();
                        let n = lines.read_line(&mut line).map_err(|e| e.to_string())?;
                        if n == 0 {
                            return Ok(false);
                        }
                        if line.ends_with(&format!(": {said}\n")) {
                            return Ok(true);
                        }
                    }
                }));
            }
            "http" => {
                let addr = server.addr(0);
                workers.push(worker(&counters, "http", &stop, ms(5), move |i| {
                    let mut s = tcp(&addr)?;
                    let request = if i % 10 == 9 {
                        "GARBAGE\r\n\r\n".to_string()
                    } else {
                        "GET / HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n".to_string()
                    };
                    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
                    let mut answer = Vec::new();
                    s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
                    let expected: &[u8] = if i % 10 == 9 {
                        b"HTTP/1.1 400"
                    } else {
                        b"HTTP/1.1 200"
                    };
                    Ok(answer.starts_with(expected))
                }));
            }
            _ => {}
        }
    }

    // Run, with a line of progress every minute.
    let load_started = Instant::now();
    while load_started.elapsed() < args.duration {
        let left = args.duration.saturating_sub(load_started.elapsed());
        std::thread::sleep(left.min(Duration::from_secs(60)));
        if left > Duration::from_secs(60) {
            eprintln!("soak: {:.0} s", load_started.elapsed().as_secs_f64());
        }
    }
    stop.store(true, Relaxed);
    for w in workers {
        let _ = w.join();
    }
    // Idle again: descriptors must come back to where they were.
    std::thread::sleep(Duration::from_secs(3));
    let idle_after: Vec<Sample> = pids.iter().map(|&(_, pid)| sample(pid).unwrap()).collect();
    stop_sampling.store(true, Relaxed);
    let rows = sampler.join().unwrap();

    // SIGTERM, exit 0.
    let mut exits = Vec::new();
    for server in &mut servers {
        let _ = Command::new("kill")
            .args(["-TERM", &server.pid().to_string()])
            .status();
    }
    for server in &mut servers {
        let deadline = Instant::now() + Duration::from_secs(20);
        let code = loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = server.child.kill();
                break None;
            }
            std::thread::sleep(ms(20));
        };
        exits.push((server.name, code));
    }
    let _ = std::fs::remove_dir_all(&work);

    // Report.
    let mut csv = String::from("seconds,server,rss_kib,threads,fds\n");
    for (t, name, s) in &rows {
        let _ = writeln!(csv, "{t:.1},{name},{},{},{}", s.rss_kib, s.threads, s.fds);
    }
    std::fs::write(args.out.join("samples.csv"), csv).unwrap();

    let mut report = String::new();
    let mut ok = true;
    let _ = writeln!(
        report,
        "soak of {} for {:.0} s of load ({} samples per server)",
        names.join(", "),
        args.duration.as_secs_f64(),
        rows.len() / names.len().max(1)
    );
    let _ = writeln!(report, "\nload (requests answered right / wrong / failed):");
    for (name, c) in counters.lock().unwrap().iter() {
        let (right, wrong, failed) = (
            c.ok.load(Relaxed),
            c.wrong.load(Relaxed),
            c.failed.load(Relaxed),
        );
        let _ = writeln!(report, "  {name:<24} {right:>9} {wrong:>6} {failed:>6}");
        ok &= wrong == 0 && failed == 0;
    }
    let _ = writeln!(
        report,
        "\nper server: RSS MiB (first third of the run -> last third, median), \
         threads and descriptors (max), descriptors idle before -> after:"
    );
    let warmup = (args.duration.as_secs_f64() * 0.1).max(3.0);
    for (i, &(name, _)) in pids.iter().enumerate() {
        let series: Vec<Sample> = rows
            .iter()
            .filter(|(t, n, _)| *n == name && *t >= warmup && *t <= args.duration.as_secs_f64())
            .map(|(_, _, s)| *s)
            .collect();
        if series.len() < 6 {
            continue;
        }
        let third = series.len() / 3;
        let median = |part: &[Sample]| {
            let mut v: Vec<u64> = part.iter().map(|s| s.rss_kib).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        let (early, late) = (
            median(&series[..third]),
            median(&series[series.len() - third..]),
        );
        let max_threads = series.iter().map(|s| s.threads).max().unwrap();
        let max_fds = series.iter().map(|s| s.fds).max().unwrap();
        let rss_flat = late <= early + early / 10 + 4096;
        let fds_back = idle_after[i].fds <= idle_before[i].fds + 2;
        let _ = writeln!(
            report,
            "  {name:<11} RSS {:.1} -> {:.1} MiB{}  threads <= {max_threads}  fds <= {max_fds}  \
             idle fds {} -> {}{}",
            early as f64 / 1024.0,
            late as f64 / 1024.0,
            if rss_flat { "" } else { " (GREW)" },
            idle_before[i].fds,
            idle_after[i].fds,
            if fds_back { "" } else { " (LEAK)" },
        );
        ok &= rss_flat && fds_back;
    }
    let _ = writeln!(
        report,
        "\nexit status on SIGTERM, and the log (NAME.log beside this file):"
    );
    for (name, code) in &exits {
        let log = std::fs::read_to_string(args.out.join(format!("{name}.log"))).unwrap_or_default();
        let panics = log.matches("panicked").count();
        let errors = log.matches(" ERROR ").count();
        let _ = writeln!(
            report,
            "  {name:<11} {code:?}, {} warnings, {errors} errors, {panics} panics",
            log.matches(" WARN ").count()
        );
        ok &= *code == Some(0) && panics == 0 && errors == 0;
    }
    let _ = writeln!(report, "\nverdict: {}", if ok { "PASS" } else { "FAIL" });
    print!("{report}");
    std::fs::write(args.out.join("summary.txt"), &report).unwrap();

    match plot(&rows, &names, &args.out.join("soak.png"), &args.font) {
        Ok(()) => eprintln!("soak: wrote {}", args.out.join("soak.png").display()),
        Err(e) => {
            eprintln!("soak: no plot: {e}");
            ok = false;
        }
    }
    std::process::exit(if ok { 0 } else { 1 });
}

/// Three panels (RSS, threads, descriptors), one line per server.
fn plot(
    rows: &[(f64, &'static str, Sample)],
    names: &[&str],
    path: &Path,
    font: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let bytes =
        std::fs::read(font).map_err(|e| format!("cannot read the font {}: {e}", font.display()))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(bytes.into_boxed_slice()),
    )
    .map_err(|_| "the font does not load")?;
    let root = BitMapBackend::new(path, (1200, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "socketserver soak: every server, sampled each second",
        ("sans-serif", 24),
    )?;
    let panels = root.split_evenly((3, 1));
    let t_max = rows.iter().map(|r| r.0).fold(1.0, f64::max);
    type Metric = (&'static str, fn(&Sample) -> f64);
    let metrics: [Metric; 3] = [
        ("RSS (MiB)", |s| s.rss_kib as f64 / 1024.0),
        ("threads", |s| s.threads as f64),
        ("open descriptors", |s| s.fds as f64),
    ];
    for (panel, (label, value)) in panels.iter().zip(metrics) {
        let y_max = rows.iter().map(|r| value(&r.2)).fold(1.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(label)
            .label_style(("sans-serif", 14))
            .draw()?;
        for (i, name) in names.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    rows.iter()
                        .filter(|r| r.1 == *name)
                        .map(|r| (r.0, value(&r.2))),
                    color.stroke_width(2),
                ))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
