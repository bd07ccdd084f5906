//! A hold spread over several processes of the program, for more
//! connections than one process may open (its open-file limit).
//!
//! The parent starts N children, the same program with a share of the
//! connections each and `--coordinate`, and steps them through the hold
//! together, one line each way per step:
//!
//! | child says (stdout) | when | parent answers (stdin) |
//! |---|---|---|
//! | `open` | all its connections are open | `go` once every child is open: the hold starts |
//! | `verified` | held for the duration, then each checked | `release` once every child has checked, after reading the server |
//! | its JSON report | its connections closed | — |
//!
//! So the server is read once, while every connection of every child is
//! open, and its CPU time is read at `go` and at the last `verified`. The
//! parent merges the children's reports: counts added, latency percentiles
//! from their histograms merged.

use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::{self, ServerSample};
use super::{
    per_connection, split_sample, Config, ErrorCounts, Latency, Mode, Report, Tally, SPARE_FILES,
};

/// How long the children may take to open their connections: a child gives
/// up on its own after a minute and its timeout; this is the margin beyond.
const OPENING_MARGIN: Duration = Duration::from_secs(90);
/// How long a step other than the opening may take beyond what the run
/// itself needs.
const STEP_MARGIN: Duration = Duration::from_secs(30);

/// Connections per child: `connections` shared out over `processes`.
pub fn shares(connections: usize, processes: usize) -> Vec<usize> {
    (0..processes)
        .map(|i| connections / processes + usize::from(i < connections % processes))
        .collect()
}

/// Runs the hold that `config` describes in `processes` children of
/// `program`; `child_args(share)` is a child's command line (it must ask for
/// `--json --coordinate` and `share` connections).
pub fn run(
    config: &Config,
    processes: usize,
    program: &Path,
    child_args: impl Fn(usize) -> Vec<String>,
) -> io::Result<Report> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    config.validate().map_err(invalid)?;
    if config.mode != Mode::Hold {
        return Err(invalid("--processes runs a hold only (--mode hold)".into()));
    }
    if processes < 2 || processes > config.connections {
        return Err(invalid(format!(
            "--processes must be 1 to --connections ({}), not {processes}",
            config.connections
        )));
    }
    let shares = shares(config.connections, processes);
    let limit = crate::common::raise_open_file_limit()?;
    let largest = shares[0] as u64 + SPARE_FILES as u64;
    if largest > limit {
        return Err(invalid(format!(
            "{} connections per process need about {largest} open files each, over the \
             limit of {limit}: use more --processes",
            shares[0]
        )));
    }
    let opening = Instant::now();
    let mut children = Children::start(program, &shares, &child_args)?;
    let result = children.step_through(config, opening);
    children.finish();
    result
}

/// The running children, their standard inputs, and one channel with every
/// line they write (`None`: that child's output ended).
struct Children {
    processes: Vec<Child>,
    inputs: Vec<ChildStdin>,
    lines: mpsc::Receiver<(usize, Option<String>)>,
}

impl Children {
    fn start(
        program: &Path,
        shares: &[usize],
        child_args: &impl Fn(usize) -> Vec<String>,
    ) -> io::Result<Children> {
        let (tx, lines) = mpsc::channel();
        let mut children = Children {
            processes: Vec::new(),
            inputs: Vec::new(),
            lines,
        };
        for (index, &share) in shares.iter().enumerate() {
            let spawned = Command::new(program)
                .args(child_args(share))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn();
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) => {
                    children.finish();
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot start {}: {e}", program.display()),
                    ));
                }
            };
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                children.processes.push(child);
                children.finish();
                return Err(io::Error::other("a child process has no pipes"));
            };
            let tx = tx.clone();
            thread::Builder::new()
                .name(format!("bench-child-{index}"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        match line {
                            Ok(line) => {
                                if tx.send((index, Some(line))).is_err() {
                                    return;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                    let _ = tx.send((index, None));
                })?;
            children.processes.push(child);
            children.inputs.push(stdin);
        }
        Ok(children)
    }

    /// Steps every child through the hold and merges their reports.
    fn step_through(&mut self, config: &Config, opening: Instant) -> io::Result<Report> {
        let deadline = |margin: Duration| Instant::now() + margin;
        self.expect_from_all("open", deadline(OPENING_MARGIN + config.timeout))?;
        let connect_s = opening.elapsed().as_secs_f64();
        let cpu_start = process::total_cpu_seconds(&config.watch_pids);
        self.tell_all("go")?;
        let hold = config.duration + config.timeout + Duration::from_secs(1);
        self.expect_from_all("verified", deadline(hold + STEP_MARGIN))?;
        let cpu_end = process::total_cpu_seconds(&config.watch_pids);
        let server =
            (!config.watch_pids.is_empty()).then(|| ServerSample::read(&config.watch_pids));
        self.tell_all("release")?;
        let reports = self.reports(deadline(STEP_MARGIN))?;
        let (server, server_error) = split_sample(server);
        let server_cpu_s = match (config.watch_pids.is_empty(), cpu_start, cpu_end) {
            (false, Some(start), Some(end)) => Some((end - start).max(0.0)),
            _ => None,
        };
        let mut report = merge(config, &reports, connect_s, server, server_cpu_s)?;
        report.server_error = server_error;
        Ok(report)
    }

    /// Waits until every child has written `line`.
    fn expect_from_all(&self, line: &str, deadline: Instant) -> io::Result<()> {
        let mut pending = vec![true; self.processes.len()];
        while pending.iter().any(|&p| p) {
            let (index, got) = self.next_line(deadline, line)?;
            match got {
                Some(text) if text == line && pending[index] => pending[index] = false,
                Some(text) => {
                    return Err(io::Error::other(format!(
                        "child process {index} said {text:?} where {line:?} was due"
                    )))
                }
                None => {
                    return Err(io::Error::other(format!(
                        "child process {index} ended before it said {line:?} (its error is above)"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Reads every child's final JSON report.
    fn reports(&self, deadline: Instant) -> io::Result<Vec<Value>> {
        let mut reports: Vec<Option<Value>> = vec![None; self.processes.len()];
        while reports.iter().any(Option::is_none) {
            let (index, got) = self.next_line(deadline, "its report")?;
            if reports[index].is_some() {
                // Its output ending, after its report.
                continue;
            }
            let Some(text) = got else {
                return Err(io::Error::other(format!(
                    "child process {index} ended without its report (its error is above)"
                )));
            };
            let value: Value = serde_json::from_str(&text).map_err(|e| {
                io::Error::other(format!("child process {index} wrote {text:?}: {e}"))
            })?;
            reports[index] = Some(value);
        }
        Ok(reports.into_iter().flatten().collect())
    }

    fn next_line(&self, deadline: Instant, what: &str) -> io::Result<(usize, Option<String>)> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(left).map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the child processes did not all send {what} in time"),
            )
        })
    }

    fn tell_all(&mut self, line: &str) -> io::Result<()> {
        for input in &mut self.inputs {
            writeln!(input, "{line}")?;
            input.flush()?;
        }
        Ok(())
    }

    /// Closes the children's input and waits for them; a child still running
    /// after a short while (a failed step) is killed.
    fn finish(&mut self) {
        self.inputs.clear();
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.processes {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

fn number(report: &Value, field: &str) -> io::Result<u64> {
    report[field]
        .as_u64()
        .ok_or_else(|| io::Error::other(format!("a child's report has no {field}: {report}")))
}

/// One report from the children's: counts added, histograms merged.
fn merge(
    config: &Config,
    reports: &[Value],
    connect_s: f64,
    server: Option<ServerSample>,
    server_cpu_s: Option<f64>,
) -> io::Result<Report> {
    let mut tally = Tally::new();
    let mut kinds = ErrorCounts::default();
    let mut connected = 0;
    let mut threads = 0;
    let mut held = 0;
    let mut answered = 0;
    let mut errors = 0;
    let mut tls = None;
    for report in reports {
        tls = tls.or(match report["tls"].as_str() {
            Some("TLSv1.3") => Some("TLSv1.3"),
            Some("TLSv1.2") => Some("TLSv1.2"),
            Some(_) => Some("TLS"),
            None => None,
        });
        tally.requests += number(report, "requests")?;
        connected += number(report, "connected")? as usize;
        threads += number(report, "threads")? as usize;
        held += number(report, "held")? as usize;
        answered += number(report, "answered")? as usize;
        errors += number(report, "errors")?;
        let child_kinds = &report["error_kinds"];
        kinds.add(&ErrorCounts {
            mismatch: number(child_kinds, "mismatch")?,
            timeout: number(child_kinds, "timeout")?,
            closed: number(child_kinds, "closed")?,
            connect: number(child_kinds, "connect")?,
            handshake: number(child_kinds, "handshake")?,
            io: number(child_kinds, "io")?,
        });
        let pairs = report["latency_histogram"].as_array().ok_or_else(|| {
            io::Error::other(format!("a child's report has no histogram: {report}"))
        })?;
        for pair in pairs {
            if let (Some(ns), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) {
                tally
                    .latency
                    .record_n(ns.max(1), count)
                    .map_err(|e| io::Error::other(format!("a child's histogram: {e}")))?;
            }
        }
    }
    if errors != kinds.total() {
        return Err(io::Error::other(
            "a child's errors do not add up to its errors by kind",
        ));
    }
    Ok(Report {
        service: "echo-upper",
        url: format!("tcp://{}", config.target),
        transport: "tcp",
        tls,
        mode: Mode::Hold.name(),
        connections: config.connections,
        connected,
        threads,
        processes: reports.len(),
        sources: config.sources.clone(),
        size: config.size,
        warmup_s: 0.0,
        duration_s: config.duration.as_secs_f64(),
        connect_s,
        requests: tally.requests,
        requests_per_sec: None,
        errors,
        error_kinds: kinds,
        lost: 0,
        latency_us: Latency::of(&tally.latency),
        held: Some(held),
        answered: Some(answered),
        delivered: None,
        fanout_ms: None,
        server_kib_per_connection: per_connection(true, server.as_ref(), held),
        server,
        server_error: None,
        server_cpu_s,
        server_cpu_us_per_request: None,
        latency_histogram: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Transport;
    use super::*;

    #[test]
    fn shares_add_up() {
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(95_000, 5), vec![19_000; 5]);
        assert_eq!(shares(2, 2), vec![1, 1]);
    }

    fn child(held: u64, mismatch: u64, histogram: Value) -> Value {
        serde_json::json!({
            "requests": held - mismatch, "connected": held, "threads": 1, "held": held,
            "answered": held - mismatch, "errors": mismatch, "tls": "TLSv1.3",
            "error_kinds": {"mismatch": mismatch, "timeout": 0, "closed": 0, "connect": 0,
                            "handshake": 0, "io": 0},
            "latency_histogram": histogram,
        })
    }

    #[test]
    fn reports_merge() {
        let config = Config {
            mode: Mode::Hold,
            connections: 30,
            ..Config::new("127.0.0.1:9".parse().unwrap(), Transport::Tcp)
        };
        let reports = [
            child(10, 0, serde_json::json!([[1000, 10]])),
            child(20, 1, serde_json::json!([[3000, 19]])),
        ];
        let merged = merge(&config, &reports, 1.5, None, Some(0.25)).unwrap();
        assert_eq!(merged.processes, 2);
        assert_eq!(merged.tls, Some("TLSv1.3"));
        assert_eq!(merged.held, Some(30));
        assert_eq!(merged.answered, Some(29));
        assert_eq!(merged.requests, 29);
        assert_eq!(merged.errors, 1);
        assert_eq!(merged.error_kinds.mismatch, 1);
        assert_eq!(merged.server_cpu_s, Some(0.25));
        assert_eq!(merged.connect_s, 1.5);
        // 10 at 1 µs and 19 at 3 µs: the median is 3 µs, the fastest 1 µs.
        assert!(
            (merged.latency_us.p50 - 3.0).abs() < 0.01,
            "{:?}",
            merged.latency_us
        );
        assert!(
            (merged.latency_us.max - 3.0).abs() < 0.01,
            "{:?}",
            merged.latency_us
        );
        assert!(merged.latency_histogram.is_none());

        let broken = [serde_json::json!({"requests": 1})];
        assert!(merge(&config, &broken, 0.0, None, None).is_err());
        let mut lying = child(10, 1, serde_json::json!([]));
        lying["errors"] = serde_json::json!(5);
        assert!(merge(&config, &[lying], 0.0, None, None).is_err());
    }
}
