//! The files in `contrib/` hold what docs/DEPLOYMENT.md says: HAProxy
//! accepts its configuration, systemd's analyzer accepts the units and the
//! service's command runs under socket activation and notifies, and the
//! Kubernetes pod's command runs, answers its probes, and fits its
//! termination grace period.
//!
//! `cargo test --all-features --test contrib`

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use support::http::get;
use support::{eventually, program, ServerProcess, TempDir, Tool, STEP};

fn contrib(path: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "contrib", path]
        .iter()
        .collect()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(contrib(path)).unwrap()
}

/// The value after `--flag` in a list of arguments, in seconds.
fn seconds_after(args: &[String], flag: &str) -> f64 {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"));
    args[at + 1].parse().unwrap()
}

/// The arguments of a unit's `ExecStart=` (no quoting in these units).
fn exec_start(unit: &str) -> Vec<String> {
    unit.lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn setting(unit: &str, name: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}="))
        .trim()
        .to_string()
}

#[test]
fn haproxy_accepts_the_configuration() {
    if support::tool(Tool::Haproxy).is_none() {
        return;
    }
    let output = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(contrib("haproxy/haproxy.cfg"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config = read("haproxy/haproxy.cfg");
    for word in ["send-proxy-v2", "check", "agent-check", "agent-inter"] {
        assert!(config.contains(word), "{word}");
    }
    assert_eq!(config.matches("\n    server ").count(), 3);
}

#[test]
fn the_systemd_units_verify_and_the_service_runs_socket_activated() {
    if support::tool(Tool::Systemd).is_none() {
        return;
    }
    let dir = TempDir::new("units");
    let socket_unit = read("systemd/socketserver-http.socket");
    let service_unit = read("systemd/socketserver-http.service");
    // systemd-analyze wants the program to exist: point at the one built.
    let binary = env!("CARGO_BIN_EXE_socketserver");
    std::fs::write(dir.join("socketserver-http.socket"), &socket_unit).unwrap();
    std::fs::write(
        dir.join("socketserver-http.service"),
        service_unit.replace("/usr/local/bin/socketserver", binary),
    )
    .unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("socketserver-http.socket"))
        .arg(dir.join("socketserver-http.service"))
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
    assert_eq!(setting(&service_unit, "Type"), "notify");
    assert!(service_unit.contains("\nWatchdogSec="));

    // The stop timeout covers the drain delay and the shutdown deadline.
    let args = exec_start(&service_unit);
    let stop: f64 = setting(&service_unit, "TimeoutStopSec").parse().unwrap();
    let needed = seconds_after(&args, "--drain-delay") + seconds_after(&args, "--shutdown-timeout");
    assert!(stop > needed, "TimeoutStopSec={stop} < {needed}");

    // The service's own command, on a socket like the socket unit's, with a
    // notification socket: it serves and says READY=1.
    let root = dir.join("www");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("index.html"), "<h1>activated</h1>\n").unwrap();
    let notify = UnixDatagram::bind(dir.join("notify")).unwrap();
    notify.set_read_timeout(Some(STEP)).unwrap();
    let listen = setting(&socket_unit, "ListenStream");
    assert_eq!(listen, "127.0.0.1:8080");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let command_args: Vec<String> = args[1..]
        .iter()
        .map(|a| match a.as_str() {
            "/srv/www" => root.display().to_string(),
            "tcp://127.0.0.1:9100" => "tcp://127.0.0.1:0".to_string(),
            other => other.to_string(),
        })
        .collect();
    let mut served = ServerProcess::start_with(
        Command::new("systemd-socket-activate")
            .args(["-l", &address, "-E", "NOTIFY_SOCKET", "--"])
            .arg(binary)
            .args(&command_args)
            .env("NOTIFY_SOCKET", dir.join("notify")),
        0,
    );
    let mut page = String::new();
    eventually("the activated service to answer", || {
        page = curl(&format!("http://{address}/"));
        !page.is_empty()
    });
    assert_eq!(page, "<h1>activated</h1>\n");
    let mut message = [0u8; 256];
    let n = notify.recv(&mut message).unwrap();
    assert_eq!(&message[..n], b"READY=1\n");
    served.signal("TERM");
    assert_eq!(served.wait(STEP).and_then(|s| s.code()), Some(0));
}

/// The body of `url`, or nothing while it cannot be fetched.
fn curl(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return String::new();
    };
    stream.set_read_timeout(Some(STEP)).unwrap();
    write!(
        stream,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

#[test]
fn the_pod_fits_its_grace_period_and_its_command_answers_the_probes() {
    let pod = read("kubernetes/socketserver-http.yaml");
    let grace: f64 = pod
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .expect("terminationGracePeriodSeconds")
        .trim()
        .parse()
        .unwrap();
    // The container's args: the `- ...` items under `args:`.
    let args: Vec<String> = pod
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| l.trim_start()[2..].trim().trim_matches('"').to_string())
        .collect();
    assert_eq!(&args[..2], ["serve", "http"]);
    let drain = seconds_after(&args, "--drain-delay");
    let shutdown = seconds_after(&args, "--shutdown-timeout");
    assert!(drain > 0.0, "a drain delay covers the endpoint removal");
    assert!(
        grace >= drain + shutdown,
        "terminationGracePeriodSeconds {grace} < {drain} + {shutdown}"
    );
    for probe in ["path: /healthz", "path: /readyz", "port: admin"] {
        assert!(pod.contains(probe), "{probe}");
    }
    assert!(pod.contains("containerPort: 9100"));
    assert!(args.contains(&"tcp://0.0.0.0:9100".to_string()));

    // The same command, on loopback ports: the probes answer, and /readyz
    // turns at SIGTERM while the drain delay runs.
    let local: Vec<String> = args
        .iter()
        .map(|a| {
            if a.starts_with("tcp://0.0.0.0:") {
                "tcp://127.0.0.1:0".to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let served = ServerProcess::start_with(program().args(&local).stdin(Stdio::null()), 1);
    assert_eq!(get(served.admin(), "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(get(served.admin(), "/readyz"), (200, "ready\n".to_string()));
    served.signal("TERM");
    eventually("/readyz to turn", || {
        get(served.admin(), "/readyz").0 == 503
    });
    assert_eq!(get(served.admin(), "/healthz").0, 200);
    let body = curl(&format!("http://{}/", served.addr_of(0)));
    assert!(body.contains("hello world"), "still served while draining");
}
