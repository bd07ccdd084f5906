//! Shared by the deployment tests: a `serve` process whose standard output
//! is read line by line (admin, agent-check and listening lines), HTTP GETs
//! to the admin listener, the agent's line, PROXY headers, `/metrics`
//! parsed by Python's `prometheus_client`, and the rule for tools a test
//! needs (fail under CI, skip otherwise).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single step may take before a test fails.
pub const STEP: Duration = Duration::from_secs(20);

/// The program under test.
pub fn program() -> Command {
    Command::new(env!("CARGO_BIN_EXE_socketserver"))
}

/// A running `socketserver serve ...`, killed on drop, whose standard output
/// lines are kept in order.
pub struct Served {
    pub child: Child,
    lines: Receiver<String>,
    /// Every standard output line read so far.
    pub stdout: Vec<String>,
    stderr: Option<thread::JoinHandle<String>>,
}

impl Served {
    /// Starts `command` and reads its standard output until `listening`
    /// `listening on` lines have come (panics with its standard error if
    /// they do not within [`STEP`]).
    pub fn start(command: &mut Command, listening: usize) -> Served {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the socketserver program");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut served = Served {
            child,
            lines,
            stdout: Vec::new(),
            stderr: Some(stderr),
        };
        while served.urls().len() < listening {
            match served.lines.recv_timeout(STEP) {
                Ok(line) => served.stdout.push(line),
                Err(_) => {
                    let _ = served.child.kill();
                    let _ = served.child.wait();
                    let stderr = served.stderr_text();
                    panic!(
                        "no {listening} listening lines; stdout {:?}; stderr:\n{stderr}",
                        served.stdout
                    );
                }
            }
        }
        served
    }

    /// The URLs of the `listening on` lines, in order.
    pub fn urls(&self) -> Vec<String> {
        self.stdout
            .iter()
            .filter_map(|line| line.strip_prefix("listening on "))
            .map(str::to_string)
            .collect()
    }

    /// The `HOST:PORT` of the `n`th listening URL (tcp or udp).
    pub fn addr(&self, n: usize) -> String {
        self.urls()[n].split_once("://").unwrap().1.to_string()
    }

    /// The address of the line `PREFIX tcp://HOST:PORT` (`admin on`,
    /// `agent-check on`).
    pub fn announced(&self, prefix: &str) -> SocketAddr {
        self.stdout
            .iter()
            .find_map(|line| line.strip_prefix(prefix))
            .and_then(|url| url.strip_prefix(" tcp://"))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {:?}", self.stdout))
            .parse()
            .unwrap()
    }

    /// The admin listener's address.
    pub fn admin(&self) -> SocketAddr {
        self.announced("admin on")
    }

    /// The agent check's address.
    pub fn agent(&self) -> SocketAddr {
        self.announced("agent-check on")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`"INT"`, `"TERM"`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits at most `limit` for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything the process wrote to standard error (once it has exited).
    pub fn stderr_text(&mut self) -> String {
        self.stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` (or another request line's method) to the admin listener:
/// the status and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, head.to_string(), body.to_string())
}

/// `GET path`: status and body.
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http(addr, "GET", path);
    (status, body)
}

/// The agent check's whole answer.
pub fn agent_says(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    let mut line = String::new();
    stream.read_to_string(&mut line).unwrap();
    line
}

/// Polls `condition` until it holds, failing after [`STEP`].
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// True when `tool` can be run (`tool --version` or `probe` succeeds).
/// Missing: a failure when `CI` is set, else a SKIPPED line and false.
pub fn require(test: &str, tool: &str, probe: &mut Command) -> bool {
    let found = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs {tool} for {test} (.ci/run installs it)"
    );
    eprintln!("SKIPPED {test}: {tool} is not installed; nothing was checked");
    false
}

/// A PROXY protocol version 1 line for a TCP client at `source` talking to
/// `destination`.
pub fn proxy_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// The 12 bytes that start every version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY protocol version 2 header (command PROXY, TCP over IPv4 or
/// IPv6), written byte by byte as the specification lays it out.
pub fn proxy_v2(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x21); // version 2, command PROXY
    let mut addresses = Vec::new();
    match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            header.push(0x11); // AF_INET, STREAM
            addresses.extend_from_slice(&s.ip().octets());
            addresses.extend_from_slice(&d.ip().octets());
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            header.push(0x21); // AF_INET6, STREAM
            addresses.extend_from_slice(&s.ip().octets());
            addresses.extend_from_slice(&d.ip().octets());
        }
        _ => panic!("one family for both addresses"),
    }
    addresses.extend_from_slice(&source.port().to_be_bytes());
    addresses.extend_from_slice(&destination.port().to_be_bytes());
    header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    header.extend_from_slice(&addresses);
    header
}

/// A version 2 `LOCAL` header (a load balancer's own health check): the
/// connection keeps its real peer.
pub fn proxy_v2_local() -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    header
}

/// One family of a `/metrics` page as Python's `prometheus_client` parsed
/// it: its type, whether it has help, and its samples (name, labels,
/// value).
#[derive(Debug, Default)]
pub struct Family {
    pub kind: String,
    pub has_help: bool,
    pub samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Family {
    /// The value of the sample `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(sample, have, _)| {
                sample == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, value)| *value)
    }
}

/// Whether Python's `prometheus_client` is there (the CI rule of
/// [`require`]).
pub fn prometheus_client(test: &str) -> bool {
    require(
        test,
        "python3 with prometheus_client",
        Command::new("python3").args(["-c", "import prometheus_client"]),
    )
}

const PARSER: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print("family", family.name, family.type, "yes" if family.documentation else "no", sep="\t")
    for sample in family.samples:
        labels = ",".join(k + "=" + v.encode().hex() for k, v in sorted(sample.labels.items()))
        print("sample", family.name, sample.name, labels, repr(float(sample.value)), sep="\t")
"#;

/// Parses a `/metrics` page with Python's `prometheus_client` (which
/// refuses a malformed page): the families by name.
pub fn parse_metrics(page: &str) -> BTreeMap<String, Family> {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "prometheus_client refused the page: {}\n{page}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["family", name, kind, help] => {
                let family = families.entry(name.to_string()).or_default();
                family.kind = kind.to_string();
                family.has_help = *help == "yes";
            }
            ["sample", family, name, labels, value] => {
                let labels = labels
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, hex) = l.split_once('=').unwrap();
                        let bytes: Vec<u8> = (0..hex.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                            .collect();
                        (k.to_string(), String::from_utf8(bytes).unwrap())
                    })
                    .collect();
                families
                    .entry(family.to_string())
                    .or_default()
                    .samples
                    .push((name.to_string(), labels, value.parse().unwrap()));
            }
            _ => panic!("unexpected parser line {line:?}"),
        }
    }
    families
}

/// The families rule 33 names, with their types (`prometheus_client` names
/// a counter family without its `_total`).
pub const FAMILIES: [(&str, &str); 12] = [
    ("socketserver_build_info", "gauge"),
    ("socketserver_connections_open", "gauge"),
    ("socketserver_requests_in_flight", "gauge"),
    ("socketserver_requests", "counter"),
    ("socketserver_rejected", "counter"),
    ("socketserver_dropped", "counter"),
    ("socketserver_failed", "counter"),
    ("socketserver_panicked", "counter"),
    ("socketserver_cut", "counter"),
    ("socketserver_threads", "gauge"),
    ("socketserver_queued", "gauge"),
    ("socketserver_request_duration_seconds", "histogram"),
];
