//! The operations side: the agent check's line, and `/metrics` pages as
//! Python's `prometheus_client` parses them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

/// The agent check's whole answer (it writes one line and closes).
pub fn agent_says(addr: SocketAddr) -> String {
    let mut stream = super::connect(addr);
    let mut line = String::new();
    stream.read_to_string(&mut line).unwrap();
    line
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
/// refuses a malformed page), run by `python` (from
/// [`tool(Tool::PrometheusClient)`](super::tool)): the families by name.
pub fn parse_metrics(python: &Path, page: &str) -> BTreeMap<String, Family> {
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
        "prometheus_client refused the page: {}\n{page}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["family", name, kind, help] => {
                let family = families.entry(name.to_string()).or_default();
                assert!(family.kind.is_empty(), "the family {name} twice");
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
