//! `/metrics` as a real Prometheus parser reads it: Python's
//! `prometheus_client` parses the page that the admin listener serves, and
//! every family, its type, its help and each value is checked against what
//! was put in.
//!
//! Needs `python3` with `prometheus_client` (`pip install prometheus_client`;
//! `.ci/run` installs it). Without it the test fails when `CI` is set, and
//! otherwise prints a SKIPPED line saying why and passes without checking.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use socketserver::ops::admin::{AdminServer, OpsState};
use socketserver::ops::histogram::{Histogram, BUCKET_LABELS};
use socketserver::ops::metrics::{render, ListenerMetrics};
use support::Tool;

/// Parses the text on stdin and prints one tab-separated line per family
/// (`family NAME TYPE HELP-IS-SET`) and per sample (`sample NAME LABELS
/// VALUE`, labels as `name=hex(value)` joined by commas, so that any label
/// value survives).
const PARSER: &str = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print("family", family.name, family.type, "yes" if family.documentation else "no", sep="\t")
    for sample in family.samples:
        labels = ",".join(k + "=" + v.encode().hex() for k, v in sorted(sample.labels.items()))
        print("sample", sample.name, labels, repr(float(sample.value)), sep="\t")
"#;

struct Listeners(Vec<ListenerMetrics>);

impl OpsState for Listeners {
    fn ready(&self) -> bool {
        true
    }
    fn render_metrics(&self, out: &mut String) {
        render(&self.0, out);
    }
}

fn listener(url: &str, base: u64, durations_micros: &[u64]) -> ListenerMetrics {
    let histogram = Histogram::new();
    for &micros in durations_micros {
        histogram.observe(Duration::from_micros(micros));
    }
    ListenerMetrics {
        listener: url.to_string(),
        connections_open: base + 1,
        requests_in_flight: base + 2,
        rejected_total: base + 3,
        dropped_total: base + 4,
        failed_total: base + 5,
        panicked_total: base + 6,
        cut_total: base + 7,
        threads: base + 8,
        queued: base + 9,
        duration: histogram.snapshot(),
    }
}

fn fetch_metrics(state: Arc<Listeners>) -> String {
    let admin = AdminServer::bind("127.0.0.1:0".parse().unwrap(), state).unwrap();
    let mut stream = support::connect(admin.local_addr());
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
        "{head}"
    );
    body.to_string()
}

fn parse_with_prometheus_client(python: &Path, page: &str) -> String {
    let mut child = Command::new(python)
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
        "prometheus_client rejected the page: {}\n{page}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn unhex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    String::from_utf8(bytes).unwrap()
}

/// A sample's name and labels, the key of the parsed values.
type SampleKey = (String, BTreeMap<String, String>);

#[test]
fn prometheus_client_reads_every_family_and_value() {
    let Some(python) = support::tool(Tool::PrometheusClient) else {
        return;
    };
    let weird = "unix:///tmp/odd \"name\"\\with\nline";
    let listeners = vec![
        listener("tcp://127.0.0.1:7000", 10, &[100, 800, 3_000, 70_000_000]),
        listener(weird, 20, &[]),
        listener("udp://[::1]:53", 30, &[2_500, 2_500, 59_999_999]),
    ];
    let page = fetch_metrics(Arc::new(Listeners(listeners.clone())));
    let parsed = parse_with_prometheus_client(&python, &page);

    let mut families = BTreeMap::new();
    let mut samples: BTreeMap<SampleKey, f64> = BTreeMap::new();
    for line in parsed.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["family", name, kind, has_help] => {
                assert_eq!(*has_help, "yes", "{name} has no HELP");
                assert!(
                    families
                        .insert(name.to_string(), kind.to_string())
                        .is_none(),
                    "{name} twice"
                );
            }
            ["sample", name, labels, value] => {
                let labels: BTreeMap<String, String> = labels
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once('=').unwrap();
                        (k.to_string(), unhex(v))
                    })
                    .collect();
                let key = (name.to_string(), labels);
                assert!(samples.insert(key, value.parse().unwrap()).is_none());
            }
            _ => panic!("unexpected parser line {line:?}"),
        }
    }

    // The parser names counter families without `_total`.
    let expected: BTreeMap<String, String> = [
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
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t.to_string()))
    .collect();
    assert_eq!(families, expected);

    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = (name.to_string(), labels);
        *samples
            .get(&key)
            .unwrap_or_else(|| panic!("no sample {key:?}"))
    };

    assert_eq!(
        value(
            "socketserver_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    let mut expected_samples = 1;
    for m in &listeners {
        let l = [("listener", m.listener.as_str())];
        for (name, put_in) in [
            ("socketserver_connections_open", m.connections_open),
            ("socketserver_requests_in_flight", m.requests_in_flight),
            ("socketserver_requests_total", m.duration.count),
            ("socketserver_rejected_total", m.rejected_total),
            ("socketserver_dropped_total", m.dropped_total),
            ("socketserver_failed_total", m.failed_total),
            ("socketserver_panicked_total", m.panicked_total),
            ("socketserver_cut_total", m.cut_total),
            ("socketserver_threads", m.threads),
            ("socketserver_queued", m.queued),
        ] {
            assert_eq!(value(name, &l), put_in as f64, "{name} of {}", m.listener);
        }
        let histogram = "socketserver_request_duration_seconds";
        for (i, le) in BUCKET_LABELS.iter().enumerate() {
            let bucket = value(
                &format!("{histogram}_bucket"),
                &[("le", le), ("listener", &m.listener)],
            );
            assert_eq!(bucket, m.duration.cumulative_counts[i] as f64, "le={le}");
        }
        let inf = value(
            &format!("{histogram}_bucket"),
            &[("le", "+Inf"), ("listener", &m.listener)],
        );
        assert_eq!(inf, m.duration.count as f64);
        assert_eq!(
            value(&format!("{histogram}_count"), &l),
            m.duration.count as f64
        );
        let sum = value(&format!("{histogram}_sum"), &l);
        assert!((sum - m.duration.sum_seconds).abs() < 1e-9, "sum {sum}");
        expected_samples += 10 + BUCKET_LABELS.len() + 3;
    }
    assert_eq!(samples.len(), expected_samples);

    // The cumulative counts of the first listener, worked out by hand:
    // 100 µs and 800 µs and 3 ms and 70 s.
    let first = [("le", "0.001"), ("listener", "tcp://127.0.0.1:7000")];
    assert_eq!(
        value("socketserver_request_duration_seconds_bucket", &first),
        2.0
    );
    let sixty = [("le", "60"), ("listener", "tcp://127.0.0.1:7000")];
    assert_eq!(
        value("socketserver_request_duration_seconds_bucket", &sixty),
        3.0
    );
}

#[test]
fn prometheus_client_reads_a_page_without_listeners() {
    let Some(python) = support::tool(Tool::PrometheusClient) else {
        return;
    };
    let page = fetch_metrics(Arc::new(Listeners(Vec::new())));
    let parsed = parse_with_prometheus_client(&python, &page);
    let families = parsed.lines().filter(|l| l.starts_with("family\t")).count();
    let samples: Vec<&str> = parsed
        .lines()
        .filter(|l| l.starts_with("sample\t"))
        .collect();
    assert_eq!(families, 12);
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert!(samples[0].starts_with("sample\tsocketserver_build_info\t"));
}
