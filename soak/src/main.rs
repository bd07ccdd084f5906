//! Soak test for the `socketserver` program: starts every service twice,
//! once per dispatch mode (`--dispatch threads` and `--dispatch reactor`),
//! runs 1,000 honest clients across them (echo-upper over TCP, UDP and Unix
//! datagrams, qa, dict over UDP and TCP, chat, http, exec, files), each
//! checking every answer, beside the hostile shapes of issue 14 (slowloris
//! heads on http, silent connections that never answer the exec and files
//! challenge, a chat member flooding the room, chat members that never
//! read, oversized lines, frames, heads and datagrams, garbage, wrong keys,
//! traversal, uploads reset midway), for a set time. It samples each
//! server's resident memory, threads and open descriptors from /proc, and at
//! the end checks that memory stayed flat, that no answer was wrong or lost,
//! that descriptors came back, and that every server exits 0 on SIGTERM.
//! Writes `samples.csv`, `summary.txt` and `soak.png` to the output folder.
//!
//! ```text
//! soak [--duration SECS] [--out DIR] [--program PATH] [--font TTF] [--clients N]
//! ```
//!
//! Everything runs on loopback (127.0.0.1 for the honest clients; 127.0.1.9,
//! in another /24, for the hostile ones that the failure limits refuse),
//! bounded by the duration. Run it through `scripts/soak.sh`, which builds
//! what it needs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
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

/// How long a client waits for an answer before it counts it as lost: long,
/// because the soak may share a crowded machine.
const STEP: Duration = Duration::from_secs(30);
const KEY: &[u8] = b"soak key";
/// The hostile clients' address: another /24 than the honest 127.0.0.1, so
/// that the per-network failure limit refuses them and not the honest.
const HOSTILE: &str = "127.0.1.9";
/// The http head timeout the soak's http servers run with (the default).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

struct Args {
    duration: Duration,
    out: PathBuf,
    program: PathBuf,
    font: PathBuf,
    clients: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        duration: Duration::from_secs(3600),
        out: PathBuf::from("soak/out"),
        program: PathBuf::from("target/release/socketserver"),
        font: PathBuf::from("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        clients: 1000,
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
            "--clients" => args.clients = value.parse().unwrap_or_else(|_| usage("--clients N")),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    args
}

fn usage(why: &str) -> ! {
    eprintln!(
        "error: {why}\nusage: soak [--duration SECS] [--out DIR] [--program PATH] [--font TTF] \
         [--clients N]"
    );
    std::process::exit(2)
}

/// One running `socketserver serve ...`.
struct Server {
    /// `SERVICE/MODE`, as in the report and the plot.
    name: String,
    child: Child,
    urls: Vec<String>,
}

impl Server {
    /// Starts `program serve SERVICE ARGS`, its log going to `DIR/NAME.log`.
    fn start(program: &Path, service: &str, mode: &str, args: &[&str], log: &Path) -> Server {
        let name = format!("{service}/{mode}");
        let binds = args.iter().filter(|a| **a == "--bind").count();
        let log =
            std::fs::File::create(log.join(format!("{service}-{mode}.log"))).expect("create a log");
        let mut child = Command::new(program)
            .arg("serve")
            .arg(service)
            .args(["--dispatch", mode])
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

    /// `HOST:PORT` of the first URL with `scheme`.
    fn addr(&self, scheme: &str) -> String {
        self.url_text(scheme)
            .split_once("://")
            .unwrap()
            .1
            .to_string()
    }

    fn url_text(&self, scheme: &str) -> String {
        self.urls
            .iter()
            .find(|u| u.starts_with(&format!("{scheme}:")))
            .unwrap_or_else(|| panic!("{} has no {scheme} address", self.name))
            .clone()
    }

    fn url(&self, scheme: &str) -> SocketUrl {
        self.url_text(scheme).parse().unwrap()
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
    /// Clients of this kind.
    clients: AtomicU64,
    ok: AtomicU64,
    /// An answer that was wrong: must stay 0.
    wrong: AtomicU64,
    /// A request that got no answer (connect, timeout, closed): must stay 0.
    failed: AtomicU64,
    /// Datagrams with no answer (UDP may drop; counted apart).
    lost: AtomicU64,
    /// Refused before the exchange by the startup limit (see [`Round`]).
    refused: AtomicU64,
    /// The longest a hostile connection was held before the server cut it.
    longest_ms: AtomicU64,
    /// Whether this kind is hostile (its "ok" means "handled as it should").
    hostile: AtomicBool,
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

/// What one round of a client found.
enum Round {
    Right,
    Wrong(String),
    /// A datagram that got no answer.
    Lost,
    /// Turned away before the exchange by design: the startup limit
    /// (MaxStartups) refused a new connection while many handshakes were in
    /// progress. Counted apart; the client tries again.
    Refused,
}

/// The error of an exec or files client refused before the challenge.
fn refused(error: &str) -> bool {
    error.contains("closed the connection before the challenge")
}

/// Runs `op` in a loop on a new thread until `stop`, starting after `delay`
/// and pausing `pause` between rounds. `op` returns what the round found,
/// or Err for a request that got no answer.
fn worker(
    counters: &Counters,
    name: &str,
    stop: &Arc<AtomicBool>,
    delay: Duration,
    pause: Duration,
    mut op: impl FnMut(u64) -> Result<Round, String> + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let (count, stop, name) = (counter(counters, name), stop.clone(), name.to_string());
    count.clients.fetch_add(1, Relaxed);
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            std::thread::sleep(delay);
            let mut i = 0;
            while !stop.load(Relaxed) {
                match op(i) {
                    Ok(Round::Right) => count.ok.fetch_add(1, Relaxed),
                    Ok(Round::Lost) => count.lost.fetch_add(1, Relaxed),
                    Ok(Round::Refused) => count.refused.fetch_add(1, Relaxed),
                    Ok(Round::Wrong(what)) => {
                        eprintln!("{name}: wrong answer at round {i}: {what}");
                        count.wrong.fetch_add(1, Relaxed)
                    }
                    Err(e) => {
                        if !stop.load(Relaxed) {
                            eprintln!("{name}: round {i}: {e}");
                            count.failed.fetch_add(1, Relaxed);
                        }
                        0
                    }
                };
                i += 1;
                std::thread::sleep(pause);
            }
        })
        .expect("start a client thread")
}

fn check(right: bool, what: impl FnOnce() -> String) -> Result<Round, String> {
    Ok(if right {
        Round::Right
    } else {
        Round::Wrong(what())
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

/// A TCP connection from another loopback address, with `timeout` on reads.
fn tcp_from(local: &str, addr: &str, timeout: Duration) -> Result<TcpStream, String> {
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
        .set_read_timeout(Some(timeout))
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

/// Reads until the peer closes (or resets); Err on a timeout.
fn until_closed(stream: &mut TcpStream) -> Result<(), String> {
    let mut sink = [0u8; 16 << 10];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(format!("not closed: {e}")),
        }
    }
}

/// The two sets of servers (threads, reactor) and their shared folders.
struct Fleet {
    servers: Vec<Server>,
    work: PathBuf,
}

impl Fleet {
    fn start(program: &Path, out: &Path) -> Fleet {
        let work = std::env::temp_dir().join(format!("socketserver-soak-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join("exec")).unwrap();
        std::fs::write(work.join("key"), KEY).unwrap();
        let key_file = work.join("key").display().to_string();
        let exec_dir = work.join("exec").display().to_string();
        let pool = ["--write-timeout", "5"];
        let mut servers = Vec::new();
        for mode in ["threads", "reactor"] {
            let store = work.join(format!("files-{mode}")).display().to_string();
            let unixgram = format!(
                "unixgram:{}",
                work.join(format!("echo-{mode}.sock")).display()
            );
            let tcp = "tcp://127.0.0.1:0";
            let udp = "udp://127.0.0.1:0";
            let specs: Vec<(&str, Vec<&str>)> = vec![
                (
                    "echo-upper",
                    vec!["--bind", tcp, "--bind", udp, "--bind", &unixgram],
                ),
                (
                    "exec",
                    vec![
                        "--bind",
                        tcp,
                        "--key-file",
                        &key_file,
                        "--workdir",
                        &exec_dir,
                        "--allow",
                        "echo",
                    ],
                ),
                (
                    "files",
                    vec![
                        "--bind",
                        tcp,
                        "--dir",
                        &store,
                        "--max-size",
                        "1MiB",
                        "--key-file",
                        &key_file,
                    ],
                ),
                ("qa", vec!["--bind", tcp]),
                ("dict", vec!["--bind", udp, "--bind", tcp]),
                ("chat", vec!["--bind", tcp]),
                ("http", vec!["--bind", tcp]),
            ];
            for (service, args) in specs {
                servers.push(Server::start(
                    program,
                    service,
                    mode,
                    &[&args[..], &pool].concat(),
                    out,
                ));
            }
        }
        Fleet { servers, work }
    }

    fn get(&self, service: &str, mode: &str) -> &Server {
        let name = format!("{service}/{mode}");
        self.servers.iter().find(|s| s.name == name).unwrap()
    }
}

/// The honest clients of one mode's servers: `share` of them, across every
/// service, each checking every answer.
fn honest(
    fleet: &Fleet,
    mode: &str,
    share: usize,
    counters: &Counters,
    stop: &Arc<AtomicBool>,
    workers: &mut Vec<std::thread::JoinHandle<()>>,
) {
    let ms = Duration::from_millis;
    // Per 500 clients: how many of each kind.
    let mix: [(&str, usize); 11] = [
        ("echo-upper tcp (kept)", 120),
        ("echo-upper tcp (one request)", 30),
        ("echo-upper udp", 40),
        ("echo-upper unixgram", 10),
        ("qa", 110),
        ("dict udp", 30),
        ("dict tcp", 30),
        ("chat", 30),
        ("http", 60),
        ("exec", 25),
        ("files", 15),
    ];
    let total: usize = mix.iter().map(|m| m.1).sum();
    let mut n = 0u64;
    let mut delay = || {
        n += 1;
        ms((n * 37) % 5000)
    };
    for (kind, per) in mix {
        let count = (per * share).div_ceil(total);
        let name = format!("{kind} [{mode}]");
        for c in 0..count as u64 {
            let d = delay();
            let job: Box<dyn FnMut(u64) -> Result<Round, String> + Send> = match kind {
                "echo-upper tcp (kept)" => {
                    let addr = fleet.get("echo-upper", mode).addr("tcp");
                    let mut held: Option<TcpStream> = None;
                    Box::new(move |i| {
                        if held.is_none() || i % 200 == 0 {
                            held = Some(tcp(&addr)?);
                        }
                        let s = held.as_mut().unwrap();
                        let message = text(i + c, 512);
                        let answer = (|| {
                            s.write_all(&message)?;
                            let mut answer = vec![0u8; message.len()];
                            s.read_exact(&mut answer)?;
                            Ok::<_, std::io::Error>(answer)
                        })()
                        .map_err(|e| {
                            held = None;
                            e.to_string()
                        })?;
                        check(answer == message.to_ascii_uppercase(), || {
                            "not the message uppercased".into()
                        })
                    })
                }
                "echo-upper tcp (one request)" => {
                    let addr = fleet.get("echo-upper", mode).addr("tcp");
                    Box::new(move |i| {
                        let mut s = tcp(&addr)?;
                        let message = text(i + c, 4096);
                        s.write_all(&message).map_err(|e| e.to_string())?;
                        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
                        let mut answer = Vec::new();
                        s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
                        check(answer == message.to_ascii_uppercase(), || {
                            format!("{} bytes, not the message uppercased", answer.len())
                        })
                    })
                }
                "echo-upper udp" => {
                    let addr = fleet.get("echo-upper", mode).addr("udp");
                    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                    socket.set_read_timeout(Some(ms(1000))).unwrap();
                    socket.connect(&addr).unwrap();
                    Box::new(move |i| {
                        let message = text(i + c, 512);
                        socket.send(&message).map_err(|e| e.to_string())?;
                        let mut buf = [0u8; 2048];
                        loop {
                            match socket.recv(&mut buf) {
                                // A late answer to an earlier, lost round.
                                Ok(n) if buf[..n] != message.to_ascii_uppercase()[..] => {
                                    if buf[..n].iter().any(|b| b.is_ascii_lowercase()) {
                                        return Ok(Round::Wrong("not uppercased".into()));
                                    }
                                }
                                Ok(_) => return Ok(Round::Right),
                                Err(_) => return Ok(Round::Lost),
                            }
                        }
                    })
                }
                "echo-upper unixgram" => {
                    let server = fleet.get("echo-upper", mode).url_text("unixgram");
                    let path = server.strip_prefix("unixgram:").unwrap().to_string();
                    let mine = fleet.work.join(format!("client-{mode}-{c}.sock"));
                    let _ = std::fs::remove_file(&mine);
                    let socket = UnixDatagram::bind(&mine).unwrap();
                    socket.set_read_timeout(Some(ms(1000))).unwrap();
                    socket.connect(&path).unwrap();
                    Box::new(move |i| {
                        let message = text(i + c, 1024);
                        socket.send(&message).map_err(|e| e.to_string())?;
                        let mut buf = [0u8; 4096];
                        loop {
                            match socket.recv(&mut buf) {
                                Ok(n) if buf[..n] == message.to_ascii_uppercase()[..] => {
                                    return Ok(Round::Right)
                                }
                                // A late answer to one of the last rounds,
                                // given up on: read on.
                                Ok(n)
                                    if (i.saturating_sub(20)..i).any(|j| {
                                        buf[..n] == text(j + c, 1024).to_ascii_uppercase()[..]
                                    }) => {}
                                Ok(n) => {
                                    return Ok(Round::Wrong(format!(
                                        "{n} bytes, not a message uppercased"
                                    )))
                                }
                                Err(_) => return Ok(Round::Lost),
                            }
                        }
                    })
                }
                "qa" => {
                    let addr = fleet.get("qa", mode).addr("tcp");
                    let mut held: Option<BufReader<TcpStream>> = None;
                    Box::new(move |i| {
                        if held.is_none() || i % 200 == 0 {
                            held = Some(BufReader::new(tcp(&addr)?));
                        }
                        let reader = held.as_mut().unwrap();
                        let (question, answer) = if i % 2 == 0 {
                            ("你好吗\n", "你好啊\n")
                        } else {
                            ("what?\n", "人家还小，不知道。\n")
                        };
                        let mut line = String::new();
                        let asked = reader
                            .get_mut()
                            .write_all(question.as_bytes())
                            .and_then(|()| reader.read_line(&mut line));
                        match asked {
                            Ok(0) => {
                                held = None;
                                Err("closed".into())
                            }
                            Ok(_) => check(line == answer, || format!("{line:?}")),
                            Err(e) => {
                                held = None;
                                Err(e.to_string())
                            }
                        }
                    })
                }
                "dict udp" => {
                    let addr = fleet.get("dict", mode).addr("udp");
                    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                    socket.set_read_timeout(Some(ms(1000))).unwrap();
                    socket.connect(&addr).unwrap();
                    Box::new(move |i| {
                        let word = if i % 2 == 0 { "Hello" } else { "xyzzy" };
                        socket.send(word.as_bytes()).map_err(|e| e.to_string())?;
                        let mut buf = [0u8; 2048];
                        loop {
                            match socket.recv(&mut buf) {
                                Ok(n) if !buf[..n].starts_with(word.as_bytes()) => {
                                    // A late answer to an earlier, lost round.
                                }
                                Ok(n) => {
                                    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                                    let right = if word == "Hello" {
                                        answer.starts_with("Hello: ") && answer.len() > 8
                                    } else {
                                        answer == "xyzzy: not found"
                                    };
                                    return check(right, || answer);
                                }
                                Err(_) => return Ok(Round::Lost),
                            }
                        }
                    })
                }
                "dict tcp" => {
                    let addr = fleet.get("dict", mode).addr("tcp");
                    let mut held: Option<BufReader<TcpStream>> = None;
                    Box::new(move |i| {
                        if held.is_none() || i % 100 == 0 {
                            held = Some(BufReader::new(tcp(&addr)?));
                        }
                        let reader = held.as_mut().unwrap();
                        let mut line = String::new();
                        let asked = reader
                            .get_mut()
                            .write_all(b"socket\n")
                            .and_then(|()| reader.read_line(&mut line));
                        match asked {
                            Ok(0) => {
                                held = None;
                                Err("closed".into())
                            }
                            Ok(_) => {
                                check(line.starts_with("socket: ") && line.ends_with('\n'), || {
                                    format!("{line:?}")
                                })
                            }
                            Err(e) => {
                                held = None;
                                Err(e.to_string())
                            }
                        }
                    })
                }
                "chat" => {
                    let addr = fleet.get("chat", mode).addr("tcp");
                    Box::new(move |i| chat_round(&addr, &format!("soak {c} line {i}")))
                }
                "http" => {
                    let addr = fleet.get("http", mode).addr("tcp");
                    let mut held: Option<TcpStream> = None;
                    Box::new(move |i| {
                        if held.is_none() || i % 50 == 0 {
                            held = Some(tcp(&addr)?);
                        }
                        let s = held.as_mut().unwrap();
                        let answer = http_get(s).inspect_err(|_| held = None)?;
                        check(answer.starts_with("HTTP/1.1 200 OK\r\n"), || {
                            answer.lines().next().unwrap_or("").to_string()
                        })
                    })
                }
                "exec" => {
                    let url = fleet.get("exec", mode).url("tcp");
                    let mut client: Option<ExecClient> = None;
                    Box::new(move |i| {
                        if client.is_none() || i % 10 == 0 {
                            let connected = ExecClient::connect(
                                &url,
                                &Key::new(KEY).unwrap(),
                                FrameCodec::new(),
                                Some(STEP),
                            )
                            .map_err(|e| format!("connect: {e}"));
                            match connected {
                                Ok(connected) => client = Some(connected),
                                Err(e) if refused(&e) => return Ok(Round::Refused),
                                Err(e) => return Err(e),
                            }
                        }
                        let ran = client.as_mut().unwrap().run(&format!("echo soak {c} {i}"));
                        let output = match ran {
                            Ok(Ok(output)) => output,
                            Ok(Err(why)) => return Ok(Round::Wrong(format!("refused: {why}"))),
                            Err(e) => {
                                client = None;
                                return Err(e.to_string());
                            }
                        };
                        check(
                            output.stdout == format!("soak {c} {i}\n").into_bytes()
                                && output.status.exit_code == Some(0),
                            || String::from_utf8_lossy(&output.stdout).into_owned(),
                        )
                    })
                }
                "files" => {
                    let url = fleet.get("files", mode).url("tcp");
                    Box::new(move |i| {
                        let key = Key::new(KEY).unwrap();
                        let connected =
                            FilesClient::connect(&url, Some(&key), FrameCodec::new(), Some(STEP))
                                .map_err(|e| format!("connect: {e}"));
                        let mut client = match connected {
                            Ok(client) => client,
                            Err(e) if refused(&e) => return Ok(Round::Refused),
                            Err(e) => return Err(e),
                        };
                        let name = format!("soak-{c}-{}", i % 4);
                        let data = text(i, 16 << 10);
                        client
                            .put(&name, &data[..], data.len() as u64, None, &mut |_| {})
                            .map_err(|e| format!("put: {e}"))?;
                        let mut back = Vec::new();
                        client
                            .get(&name, &mut back, &mut |_, _| {})
                            .map_err(|e| format!("get: {e}"))?;
                        if i % 10 == 0 {
                            let list = client.list().map_err(|e| format!("list: {e}"))?;
                            if !list.iter().any(|e| e.name == name) {
                                return Ok(Round::Wrong(format!("{name} not listed")));
                            }
                        }
                        check(back == data, || "not the bytes put".into())
                    })
                }
                _ => unreachable!(),
            };
            let pause = match kind {
                "chat" => ms(1000),
                "files" | "exec" | "http" => ms(500),
                _ => ms(300),
            };
            workers.push(worker(counters, &name, stop, d, pause, job));
        }
    }
}

/// One GET / on a kept-alive connection; the whole answer as text.
fn http_get(s: &mut TcpStream) -> Result<String, String> {
    s.write_all(b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => return Err("closed".into()),
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
        if head.len() > 64 << 10 {
            return Err("head too long".into());
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no Content-Length")?;
    let mut body = vec![0u8; length];
    s.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(head)
}

/// A listener joins, a talker joins and says `said`; the listener must see
/// it (after whatever else the room says, a flood included).
fn chat_round(addr: &str, said: &str) -> Result<Round, String> {
    let mut listener = tcp(addr)?;
    // A refused empty nick is answered to the sender only, once it is in
    // the room: then the talker may come.
    listener.write_all(b"/nick\n").map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(listener);
    let mut line = String::new();
    let mut read = |line: &mut String| -> Result<(), String> {
        line.clear();
        match lines.read_line(line) {
            Ok(0) => Err("the room closed the listener".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    };
    loop {
        read(&mut line)?;
        if line.starts_with("* a nick cannot be empty") {
            break;
        }
    }
    let mut talker = tcp(addr)?;
    loop {
        read(&mut line)?;
        if line.contains(" joined") {
            break;
        }
    }
    talker
        .write_all(format!("{said}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    loop {
        read(&mut line)?;
        if line.ends_with(&format!(": {said}\n")) {
            return Ok(Round::Right);
        }
        if line.starts_with("* disconnected") {
            return Ok(Round::Wrong(line));
        }
    }
}

/// The hostile shapes of issue 14 against one mode's servers.
fn hostile(
    fleet: &Fleet,
    mode: &str,
    counters: &Counters,
    stop: &Arc<AtomicBool>,
    workers: &mut Vec<std::thread::JoinHandle<()>>,
) {
    let ms = Duration::from_millis;
    let mut add =
        |name: &str, pause: Duration, job: Box<dyn FnMut(u64) -> Result<Round, String> + Send>| {
            let name = format!("hostile: {name} [{mode}]");
            counter(counters, &name).hostile.store(true, Relaxed);
            workers.push(worker(counters, &name, stop, ms(500), pause, job));
        };

    // Slowloris: a header line every 3 s; the head timeout must cut it.
    let http = fleet.get("http", mode).addr("tcp");
    let slowloris = counter(counters, &format!("hostile: http slowloris [{mode}]"));
    for _ in 0..20 {
        let addr = http.clone();
        let longest = slowloris.clone();
        add(
            "http slowloris",
            ms(100),
            Box::new(move |_| {
                let mut s = tcp(&addr)?;
                let started = Instant::now();
                s.write_all(b"GET / HTTP/1.1\r\n")
                    .map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(ms(3000)))
                    .map_err(|e| e.to_string())?;
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => continue, // a 408 or a 400 before the close
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if s.write_all(b"X-Slow: 1\r\n").is_err() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                    if started.elapsed() > HEAD_TIMEOUT * 3 {
                        return Ok(Round::Wrong(
                            "a trickled head outlived 3 head timeouts".into(),
                        ));
                    }
                }
                let held = started.elapsed();
                longest
                    .longest_ms
                    .fetch_max(held.as_millis() as u64, Relaxed);
                // Cut at the head timeout (later only on a crowded machine),
                // never kept alive by its trickle.
                check(held < HEAD_TIMEOUT * 3, || format!("held for {held:?}"))
            }),
        );
    }

    // Silent connections that never answer the challenge, from the hostile
    // address: cut at the handshake timeout, or refused at once once the
    // failure limits know the address. Two per service: under MaxStartups'
    // start, so that the honest clients are never refused by it.
    for service in ["exec", "files"] {
        let addr = fleet.get(service, mode).addr("tcp");
        let silent = counter(
            counters,
            &format!("hostile: {service} silent pre-auth [{mode}]"),
        );
        for _ in 0..2 {
            let addr = addr.clone();
            let longest = silent.clone();
            add(
                &format!("{service} silent pre-auth"),
                ms(200),
                Box::new(move |_| {
                    let mut s = tcp_from(HOSTILE, &addr, Duration::from_secs(30))?;
                    let started = Instant::now();
                    until_closed(&mut s)?;
                    let held = started.elapsed();
                    longest
                        .longest_ms
                        .fetch_max(held.as_millis() as u64, Relaxed);
                    // Cut at the 10 s handshake timeout (later only on a
                    // crowded machine), or refused at once.
                    check(held < Duration::from_secs(30), || {
                        format!("held for {held:?}")
                    })
                }),
            );
        }
    }

    // Wrong keys, from the hostile address: denied, or refused before the
    // challenge.
    let exec = fleet.get("exec", mode).addr("tcp");
    {
        let addr = exec.clone();
        add(
            "exec wrong key",
            ms(500),
            Box::new(move |_| {
                let mut s = tcp_from(HOSTILE, &addr, STEP)?;
                let mut challenge = [0u8; 32];
                match s.read_exact(&mut challenge) {
                    Ok(()) => {
                        let wrong = Key::new(&b"wrong"[..]).unwrap().answer(&challenge);
                        s.write_all(&wrong).map_err(|e| e.to_string())?;
                        let verdict = FrameCodec::new()
                            .read_header(&mut s, &mut Vec::new())
                            .map_err(|e| e.to_string())?;
                        check(verdict.is_some_and(|v| v["status"] == "denied"), || {
                            "not denied".into()
                        })
                    }
                    Err(_) => Ok(Round::Right), // refused before the challenge
                }
            }),
        );
    }
    // A frame claiming 4 GiB after a good handshake.
    {
        let addr = exec.clone();
        add(
            "exec 4 GiB frame",
            ms(500),
            Box::new(move |_| {
                let mut s = tcp(&addr)?;
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
                check(answer.is_some_and(|a| a["status"] == "error"), || {
                    "no error answer".into()
                })
            }),
        );
    }
    // files: garbage headers, uploads reset midway, traversal (after a good
    // handshake).
    let files = fleet.get("files", mode).addr("tcp");
    let files_tcp = |addr: &str| -> Result<TcpStream, String> {
        let mut s = tcp(addr)?;
        socketserver::protocol::auth::client_handshake(
            &mut s,
            &Key::new(KEY).unwrap(),
            &FrameCodec::new(),
        )
        .map_err(|e| e.to_string())?;
        Ok(s)
    };
    {
        let addr = files.clone();
        add(
            "files garbage, reset uploads, traversal",
            ms(300),
            Box::new(move |i| {
                // Refused before the challenge by the startup limit, as an
                // honest client may be: by design, counted apart.
                let mut s = match files_tcp(&addr) {
                    Ok(s) => s,
                    Err(e) if refused(&e) => return Ok(Round::Refused),
                    Err(e) => return Err(e),
                };
                match i % 3 {
                    0 => {
                        s.write_all(b"\x05\0\0\0hello").map_err(|e| e.to_string())?;
                        let answer = FrameCodec::new()
                            .read_header(&mut s, &mut Vec::new())
                            .map_err(|e| e.to_string())?;
                        check(answer.is_some_and(|a| a["status"] == "error"), || {
                            "no error answer".into()
                        })
                    }
                    1 => {
                        FrameCodec::new()
                            .write_header(
                                &mut s,
                                &json!({"file_name": "cut", "file_size": 500_000}),
                            )
                            .map_err(|e| e.to_string())?;
                        s.write_all(&text(i, 100_000)).map_err(|e| e.to_string())?;
                        reset(s);
                        Ok(Round::Right)
                    }
                    _ => {
                        FrameCodec::new()
                            .write_header(
                                &mut s,
                                &json!({"file_name": "../escape", "file_size": 1}),
                            )
                            .map_err(|e| e.to_string())?;
                        let answer = FrameCodec::new()
                            .read_header(&mut s, &mut Vec::new())
                            .map_err(|e| e.to_string())?;
                        check(answer.is_some_and(|a| a["status"] == "error"), || {
                            "no error answer".into()
                        })
                    }
                }
            }),
        );
    }

    // A chat member flooding the room as fast as it can write: slowed by
    // flood control, never able to drop the readers.
    let chat = fleet.get("chat", mode).addr("tcp");
    {
        let addr = chat.clone();
        add(
            "chat flooder (64 KiB writes)",
            ms(10),
            Box::new(move |i| {
                let mut s = tcp(&addr)?;
                let mut line = text(i, 199);
                line.push(b'\n');
                let block: Vec<u8> = line.iter().copied().cycle().take(200 * 320).collect();
                let started = Instant::now();
                // Five seconds of flooding per round, then a new connection.
                // (Cut for not reading what the room says is right too.)
                while started.elapsed() < Duration::from_secs(5) {
                    if s.write_all(&block).is_err() {
                        break;
                    }
                }
                Ok(Round::Right)
            }),
        );
    }
    // Members that never read: cut when their backlog is full, then back.
    for _ in 0..5 {
        let addr = chat.clone();
        add(
            "chat member that never reads",
            ms(1000),
            Box::new(move |_| {
                let s = tcp(&addr)?;
                let small = socket2::SockRef::from(&s);
                let _ = small.set_recv_buffer_size(4096);
                s.set_read_timeout(Some(Duration::from_secs(60)))
                    .map_err(|e| e.to_string())?;
                // Never read until the room gives up on it (or a minute).
                let started = Instant::now();
                let mut probe = [0u8; 1];
                loop {
                    match s.peek(&mut probe) {
                        Ok(0) => return Ok(Round::Right),
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                            return Ok(Round::Right)
                        }
                        Err(_) => return Ok(Round::Right),
                    }
                    // Data waits unread; check whether the room closed us
                    // by asking the socket for an error or a hang-up.
                    let mut fds = libc_pollfd(&s);
                    if poll_hangup(&mut fds) || started.elapsed() > Duration::from_secs(60) {
                        return Ok(Round::Right);
                    }
                }
            }),
        );
    }

    // Oversized input: a qa line, an http head, datagrams.
    let qa = fleet.get("qa", mode).addr("tcp");
    add(
        "qa line over the limit, invalid UTF-8",
        ms(300),
        Box::new(move |i| {
            let mut s = BufReader::new(tcp(&qa)?);
            if i % 2 == 0 {
                let _ = s.get_mut().write_all(&vec![b'a'; 100 << 10]);
                let mut line = String::new();
                s.read_line(&mut line).map_err(|e| e.to_string())?;
                check(line == "error: line too long\n", || format!("{line:?}"))
            } else {
                s.get_mut()
                    .write_all(b"\xff\xfe garbage\nwhat?\n")
                    .map_err(|e| e.to_string())?;
                let (mut first, mut second) = (String::new(), String::new());
                s.read_line(&mut first).map_err(|e| e.to_string())?;
                s.read_line(&mut second).map_err(|e| e.to_string())?;
                check(
                    first == "error: invalid UTF-8\n" && second == "人家还小，不知道。\n",
                    || format!("{first:?} {second:?}"),
                )
            }
        }),
    );
    add(
        "http 70 KiB head, garbage",
        ms(300),
        Box::new(move |i| {
            let mut s = tcp(&http)?;
            let request: Vec<u8> = if i % 2 == 0 {
                let mut r = b"GET / HTTP/1.1\r\nHost: soak\r\nX-Big: ".to_vec();
                r.extend(std::iter::repeat_n(b'a', 70 << 10));
                r.extend_from_slice(b"\r\n\r\n");
                r
            } else {
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03GARBAGE\r\n\r\n".to_vec()
            };
            let _ = s.write_all(&request);
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            let expected: &[u8] = if i % 2 == 0 {
                b"HTTP/1.1 431"
            } else {
                b"HTTP/1.1 400"
            };
            check(answer.starts_with(expected), || {
                String::from_utf8_lossy(&answer[..answer.len().min(40)]).into_owned()
            })
        }),
    );
    {
        // A Unix datagram over 64 KiB is dropped, never answered truncated;
        // the small one after it is answered.
        let server = fleet.get("echo-upper", mode).url_text("unixgram");
        let path = server.strip_prefix("unixgram:").unwrap().to_string();
        let mine = fleet.work.join(format!("hostile-{mode}.sock"));
        let udp_addr = fleet.get("echo-upper", mode).addr("udp");
        add(
            "oversized datagrams",
            ms(500),
            Box::new(move |i| {
                // Fresh sockets each round: a late answer to an earlier
                // round cannot be taken for this one's.
                if i % 2 == 0 {
                    let _ = std::fs::remove_file(&mine);
                    let socket = UnixDatagram::bind(&mine).map_err(|e| e.to_string())?;
                    socket
                        .set_read_timeout(Some(STEP))
                        .map_err(|e| e.to_string())?;
                    socket.connect(&path).map_err(|e| e.to_string())?;
                    let big = text(i, 70_000);
                    socket.send(&big).map_err(|e| format!("send 70000: {e}"))?;
                    socket.send(b"small").map_err(|e| e.to_string())?;
                    let mut buf = vec![0u8; 128 << 10];
                    match socket.recv(&mut buf) {
                        Ok(n) => check(&buf[..n] == b"SMALL", || {
                            format!("an answer of {n} bytes to an oversized datagram")
                        }),
                        Err(_) => Ok(Round::Lost),
                    }
                } else {
                    // The largest UDP datagram is answered whole.
                    let udp = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                    udp.set_read_timeout(Some(STEP))
                        .map_err(|e| e.to_string())?;
                    udp.connect(&udp_addr).map_err(|e| e.to_string())?;
                    let big = text(i, 65_507);
                    udp.send(&big).map_err(|e| e.to_string())?;
                    let mut buf = vec![0u8; 128 << 10];
                    match udp.recv(&mut buf) {
                        Ok(n) => check(buf[..n] == big.to_ascii_uppercase()[..], || {
                            format!("{n} bytes")
                        }),
                        Err(_) => Ok(Round::Lost),
                    }
                }
            }),
        );
    }
}

fn libc_pollfd(s: &TcpStream) -> [libc::pollfd; 1] {
    use std::os::fd::AsRawFd;
    [libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    }]
}

/// Waits up to a second for the peer to hang up; true when it did.
fn poll_hangup(fds: &mut [libc::pollfd; 1]) -> bool {
    // SAFETY: one initialised pollfd.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, 1000) };
    ready > 0 && fds[0].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.out).expect("create the output folder");
    let fleet = Fleet::start(&args.program, &args.out);
    let names: Vec<String> = fleet.servers.iter().map(|s| s.name.clone()).collect();
    eprintln!(
        "soak: {} for {:?}, {} honest clients, servers: {}",
        args.program.display(),
        args.duration,
        args.clients,
        names.join(", ")
    );

    // Sampling, every two seconds, from /proc.
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let pids: Vec<(String, u32)> = fleet
        .servers
        .iter()
        .map(|s| (s.name.clone(), s.pid()))
        .collect();
    let started = Instant::now();
    let sampler = {
        let stop = stop_sampling.clone();
        let pids = pids.clone();
        std::thread::spawn(move || {
            let mut rows: Vec<(f64, usize, Sample)> = Vec::new();
            let mut loads: Vec<(f64, f64)> = Vec::new();
            let mut next = Instant::now();
            while !stop.load(Relaxed) {
                let t = started.elapsed().as_secs_f64();
                if let Some(load) = std::fs::read_to_string("/proc/loadavg")
                    .ok()
                    .and_then(|l| l.split_whitespace().next()?.parse().ok())
                {
                    loads.push((t, load));
                }
                for (i, (_, pid)) in pids.iter().enumerate() {
                    if let Some(s) = sample(*pid) {
                        rows.push((t, i, s));
                    }
                }
                next += Duration::from_secs(2);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            (rows, loads)
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let idle_before: Vec<Sample> = pids.iter().map(|(_, pid)| sample(*pid).unwrap()).collect();

    let counters: Counters = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (m, mode) in ["threads", "reactor"].into_iter().enumerate() {
        let share = args.clients / 2 + if m == 0 { args.clients % 2 } else { 0 };
        honest(&fleet, mode, share, &counters, &stop, &mut workers);
        hostile(&fleet, mode, &counters, &stop, &mut workers);
    }
    let honest_clients: u64 = counters
        .lock()
        .unwrap()
        .values()
        .filter(|c| !c.hostile.load(Relaxed))
        .map(|c| c.clients.load(Relaxed))
        .sum();
    eprintln!(
        "soak: {honest_clients} honest clients, {} client threads",
        workers.len()
    );

    // Run, with a line of progress every minute.
    let load_started = Instant::now();
    while load_started.elapsed() < args.duration {
        let left = args.duration.saturating_sub(load_started.elapsed());
        std::thread::sleep(left.min(Duration::from_secs(60)));
        let (mut ok, mut wrong, mut failed) = (0, 0, 0);
        for c in counters.lock().unwrap().values() {
            ok += c.ok.load(Relaxed);
            wrong += c.wrong.load(Relaxed);
            failed += c.failed.load(Relaxed);
        }
        eprintln!(
            "soak: {:.0} s, {ok} right, {wrong} wrong, {failed} failed",
            load_started.elapsed().as_secs_f64()
        );
    }
    let load_seconds = load_started.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    for w in workers {
        let _ = w.join();
    }
    // Idle again: descriptors must come back to where they were.
    std::thread::sleep(Duration::from_secs(5));
    let idle_after: Vec<Sample> = pids.iter().map(|(_, pid)| sample(*pid).unwrap()).collect();
    stop_sampling.store(true, Relaxed);
    let (rows, loads) = sampler.join().unwrap();

    // SIGTERM, exit 0.
    let mut servers = fleet.servers;
    let mut exits = Vec::new();
    for server in &servers {
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
            std::thread::sleep(Duration::from_millis(20));
        };
        exits.push((server.name.clone(), code));
    }
    let _ = std::fs::remove_dir_all(&fleet.work);

    // Report.
    let mut csv = String::from("seconds,server,rss_kib,threads,fds\n");
    for (t, i, s) in &rows {
        let _ = writeln!(
            csv,
            "{t:.1},{},{},{},{}",
            names[*i], s.rss_kib, s.threads, s.fds
        );
    }
    std::fs::write(args.out.join("samples.csv"), csv).unwrap();

    let mut report = String::new();
    let mut ok = true;
    let _ = writeln!(
        report,
        "soak of {} servers for {load_seconds:.0} s of load, {honest_clients} honest clients \
         ({} samples per server)",
        names.len(),
        rows.len() / names.len().max(1)
    );
    let _ = writeln!(
        report,
        "\nload: clients, requests answered right / wrong / failed (no answer) / datagrams lost \
         / refused by the startup limit:"
    );
    let (mut total_ok, mut total_lost) = (0, 0);
    for (name, c) in counters.lock().unwrap().iter() {
        let (clients, right, wrong, failed, lost) = (
            c.clients.load(Relaxed),
            c.ok.load(Relaxed),
            c.wrong.load(Relaxed),
            c.failed.load(Relaxed),
            c.lost.load(Relaxed),
        );
        let refused = c.refused.load(Relaxed);
        let longest = c.longest_ms.load(Relaxed);
        let _ = writeln!(
            report,
            "  {name:<52} {clients:>4} {right:>10} {wrong:>6} {failed:>6} {lost:>6} {refused:>6}{}",
            if longest > 0 {
                format!("  (held at most {:.1} s)", longest as f64 / 1000.0)
            } else {
                String::new()
            }
        );
        ok &= wrong == 0 && failed == 0;
        if !c.hostile.load(Relaxed) {
            total_ok += right;
            total_lost += lost;
        }
    }
    let _ = writeln!(
        report,
        "  honest total: {total_ok} right, {total_lost} datagrams lost"
    );
    let mut load1: Vec<f64> = loads.iter().map(|l| l.1).collect();
    load1.sort_by(f64::total_cmp);
    if !load1.is_empty() {
        let _ = writeln!(
            report,
            "\nthe machine's load average (1 min, 2 cores) while the soak ran: \
             min {:.1}, median {:.1}, max {:.1}",
            load1[0],
            load1[load1.len() / 2],
            load1[load1.len() - 1]
        );
    }
    let _ = writeln!(
        report,
        "\nper server: RSS MiB and threads (median of the first third of the load -> last \
         third), descriptors (max), descriptors idle before -> after:"
    );
    let warmup = 60.0f64.min(load_seconds * 0.1).max(3.0);
    let end = load_seconds + 1.5;
    for (i, name) in names.iter().enumerate() {
        let series: Vec<Sample> = rows
            .iter()
            .filter(|(t, n, _)| *n == i && *t >= warmup && *t <= end)
            .map(|(_, _, s)| *s)
            .collect();
        if series.len() < 6 {
            continue;
        }
        let third = series.len() / 3;
        let median = |part: &[Sample], f: fn(&Sample) -> u64| {
            let mut v: Vec<u64> = part.iter().map(f).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        let (early, late) = (
            median(&series[..third], |s| s.rss_kib),
            median(&series[series.len() - third..], |s| s.rss_kib),
        );
        let (t_early, t_late) = (
            median(&series[..third], |s| s.threads),
            median(&series[series.len() - third..], |s| s.threads),
        );
        let max_rss = series.iter().map(|s| s.rss_kib).max().unwrap();
        let max_threads = series.iter().map(|s| s.threads).max().unwrap();
        let max_fds = series.iter().map(|s| s.fds).max().unwrap();
        let rss_flat = late <= early + early / 10 + 4096;
        let threads_flat = t_late <= t_early + t_early / 10 + 8;
        // Started on first use and kept (the threads mode's flusher: an
        // poll and wake-up descriptors), not per connection: a few at most.
        let fds_back = idle_after[i].fds <= idle_before[i].fds + 4;
        let _ = writeln!(
            report,
            "  {name:<18} RSS {:.1} -> {:.1} MiB (max {:.1}){}  threads {t_early} -> {t_late} \
             (max {max_threads}){}  fds <= {max_fds}  idle fds {} -> {}{}",
            early as f64 / 1024.0,
            late as f64 / 1024.0,
            max_rss as f64 / 1024.0,
            if rss_flat { "" } else { " (GREW)" },
            if threads_flat { "" } else { " (GREW)" },
            idle_before[i].fds,
            idle_after[i].fds,
            if fds_back { "" } else { " (LEAK)" },
        );
        ok &= rss_flat && threads_flat && fds_back;
    }
    let _ = writeln!(
        report,
        "\nexit status on SIGTERM, and the log (SERVICE-MODE.log beside this file):"
    );
    for (name, code) in &exits {
        let file = name.replace('/', "-");
        let log = std::fs::read_to_string(args.out.join(format!("{file}.log"))).unwrap_or_default();
        let panics = log.matches("panicked").count();
        let errors = log.matches(" ERROR ").count();
        let _ = writeln!(
            report,
            "  {name:<18} {code:?}, {} warnings, {errors} errors, {panics} panics",
            log.matches(" WARN ").count()
        );
        ok &= *code == Some(0) && panics == 0 && errors == 0;
    }
    let _ = writeln!(report, "\nverdict: {}", if ok { "PASS" } else { "FAIL" });
    print!("{report}");
    std::fs::write(args.out.join("summary.txt"), &report).unwrap();

    let named: Vec<(f64, &str, Sample)> = rows
        .iter()
        .map(|(t, i, s)| (*t, names[*i].as_str(), *s))
        .collect();
    let labels: Vec<&str> = names.iter().map(String::as_str).collect();
    match plot(
        &named,
        &labels,
        &loads,
        &args.out.join("soak.png"),
        &args.font,
    ) {
        Ok(()) => eprintln!("soak: wrote {}", args.out.join("soak.png").display()),
        Err(e) => {
            eprintln!("soak: no plot: {e}");
            ok = false;
        }
    }
    std::process::exit(if ok { 0 } else { 1 });
}

/// Four panels (RSS, threads, descriptors: one line per server; the
/// machine's load average).
fn plot(
    rows: &[(f64, &str, Sample)],
    names: &[&str],
    loads: &[(f64, f64)],
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
    let root = BitMapBackend::new(path, (1400, 1400)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "socketserver soak: 14 servers (7 services x threads, reactor), sampled every 2 s",
        ("sans-serif", 22),
    )?;
    let panels = root.split_evenly((4, 1));
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
            let dashed = name.ends_with("/reactor");
            let style = color.stroke_width(if dashed { 1 } else { 2 });
            chart
                .draw_series(LineSeries::new(
                    rows.iter()
                        .filter(|r| r.1 == *name)
                        .map(|r| (r.0, value(&r.2))),
                    style,
                ))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .draw()?;
    }
    let y_max = loads.iter().map(|l| l.1).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&panels[3])
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("machine load (1 min)")
        .label_style(("sans-serif", 14))
        .draw()?;
    chart.draw_series(LineSeries::new(
        loads.iter().copied(),
        BLACK.stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}
