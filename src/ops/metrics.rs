//! The `/metrics` page: the server's counters in the Prometheus text format,
//! version 0.0.4, written with plain formatting.
//!
//! The caller fills one [`ListenerMetrics`] per listener (from the server's
//! counters and its duration [`Histogram`](super::histogram::Histogram)) and
//! [`render`] writes every family, each with `# HELP` and `# TYPE`, one series
//! per listener under the label `listener="URL"`, plus
//! `socketserver_build_info{version="X.Y.Z"} 1`.
//!
//! ```
//! use socketserver::ops::histogram::Histogram;
//! use socketserver::ops::metrics::{render, ListenerMetrics};
//! use std::time::Duration;
//!
//! let durations = Histogram::new();
//! durations.observe(Duration::from_millis(3));
//! let listener = ListenerMetrics {
//!     listener: "tcp://127.0.0.1:5000".to_string(),
//!     connections_open: 2,
//!     threads: 4,
//!     duration: durations.snapshot(),
//!     ..ListenerMetrics::default()
//! };
//!
//! let mut page = String::new();
//! render(&[listener], &mut page);
//! assert!(page.contains("# TYPE socketserver_requests_total counter\n"));
//! assert!(page.contains("socketserver_requests_total{listener=\"tcp://127.0.0.1:5000\"} 1\n"));
//! assert!(page.contains(
//!     "socketserver_request_duration_seconds_bucket{listener=\"tcp://127.0.0.1:5000\",le=\"0.005\"} 1\n"
//! ));
//! ```

use std::fmt::Write;

use super::histogram::HistogramSnapshot;
use crate::Metrics;

/// The `Content-Type` of the page [`render`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// One listener's counters at one moment, as [`render`] reads them.
///
/// `socketserver_requests_total` is not a field: it is the histogram's count
/// (`duration.count`), so that it always equals the number of observations.
/// Gauges of the whole process (`threads`, and `queued` when the pool is
/// shared) are repeated in each listener's record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListenerMetrics {
    /// The listener's URL, as on its `listening on` line: the `listener` label.
    pub listener: String,
    /// Connections open now (gauge `socketserver_connections_open`).
    pub connections_open: u64,
    /// Requests admitted and not yet finished (gauge
    /// `socketserver_requests_in_flight`).
    pub requests_in_flight: u64,
    /// Connections closed unserved (counter `socketserver_rejected_total`).
    pub rejected_total: u64,
    /// Datagrams dropped (counter `socketserver_dropped_total`).
    pub dropped_total: u64,
    /// Requests whose handler returned an error (counter
    /// `socketserver_failed_total`).
    pub failed_total: u64,
    /// Requests whose handler panicked (counter `socketserver_panicked_total`).
    pub panicked_total: u64,
    /// Requests cut at the shutdown deadline (counter `socketserver_cut_total`).
    pub cut_total: u64,
    /// Worker threads alive (gauge `socketserver_threads`).
    pub threads: u64,
    /// Requests waiting for a thread (gauge `socketserver_queued`).
    pub queued: u64,
    /// Request durations (histogram `socketserver_request_duration_seconds`);
    /// its count is `socketserver_requests_total`.
    pub duration: HistogramSnapshot,
}

impl From<&Metrics> for ListenerMetrics {
    /// A server's [`Metrics`] (from
    /// [`ServerHandle::metrics`](crate::ServerHandle::metrics)) as one
    /// listener's record, labelled with the server's URL.
    fn from(metrics: &Metrics) -> Self {
        let stats = &metrics.stats;
        ListenerMetrics {
            listener: metrics.url.clone(),
            connections_open: metrics.connections_open as u64,
            requests_in_flight: metrics.requests_in_flight as u64,
            rejected_total: stats.rejected,
            dropped_total: stats.dropped + metrics.dropped_by_kernel,
            failed_total: stats.failed,
            panicked_total: stats.panicked,
            cut_total: stats.cut,
            threads: stats.threads as u64,
            queued: stats.queued as u64,
            duration: metrics.durations,
        }
    }
}

/// The kind of a metric family, as written after `# TYPE`.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A one-value family: one sample per listener.
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    /// Reads the value from a listener's record.
    value: fn(&ListenerMetrics) -> u64,
}

/// The one-value families, in the order they are written.
const SIMPLE_FAMILIES: [Family; 10] = [
    Family {
        name: "socketserver_connections_open",
        kind: Kind::Gauge,
        help: "Connections open now.",
        value: |m| m.connections_open,
    },
    Family {
        name: "socketserver_requests_in_flight",
        kind: Kind::Gauge,
        help: "Requests admitted and not yet finished.",
        value: |m| m.requests_in_flight,
    },
    Family {
        name: "socketserver_requests_total",
        kind: Kind::Counter,
        help: "Requests handled to the end: the observations of socketserver_request_duration_seconds.",
        value: |m| m.duration.count,
    },
    Family {
        name: "socketserver_rejected_total",
        kind: Kind::Counter,
        help: "Connections closed unserved: refused, or turned away while the server was full.",
        value: |m| m.rejected_total,
    },
    Family {
        name: "socketserver_dropped_total",
        kind: Kind::Counter,
        help: "Datagrams dropped: the socket's receive buffer or the queue was full, or they were refused.",
        value: |m| m.dropped_total,
    },
    Family {
        name: "socketserver_failed_total",
        kind: Kind::Counter,
        help: "Requests whose handler returned an error.",
        value: |m| m.failed_total,
    },
    Family {
        name: "socketserver_panicked_total",
        kind: Kind::Counter,
        help: "Requests whose handler panicked.",
        value: |m| m.panicked_total,
    },
    Family {
        name: "socketserver_cut_total",
        kind: Kind::Counter,
        help: "Requests cut at the shutdown deadline, running or queued.",
        value: |m| m.cut_total,
    },
    Family {
        name: "socketserver_threads",
        kind: Kind::Gauge,
        help: "Worker threads alive.",
        value: |m| m.threads,
    },
    Family {
        name: "socketserver_queued",
        kind: Kind::Gauge,
        help: "Requests waiting for a worker thread.",
        value: |m| m.queued,
    },
];

const DURATION: &str = "socketserver_request_duration_seconds";
const DURATION_HELP: &str =
    "Time to handle a request: a connection in threads mode, a message in reactor mode, a datagram.";
const BUILD_INFO: &str = "socketserver_build_info";
const BUILD_INFO_HELP: &str = "The version of socketserver serving; always 1.";

/// Appends the whole metrics page for `listeners` to `out`: every family with
/// `# HELP` and `# TYPE`, even when there is no listener, and one series per
/// listener in each.
pub fn render(listeners: &[ListenerMetrics], out: &mut String) {
    family_head(out, BUILD_INFO, BUILD_INFO_HELP, "gauge");
    out.push_str(BUILD_INFO);
    out.push_str("{version=\"");
    push_label_value(out, env!("CARGO_PKG_VERSION"));
    out.push_str("\"} 1\n");

    for family in &SIMPLE_FAMILIES {
        family_head(out, family.name, family.help, family.kind.name());
        for listener in listeners {
            out.push_str(family.name);
            push_listener_label(out, &listener.listener, None);
            let _ = writeln!(out, " {}", (family.value)(listener));
        }
    }

    family_head(out, DURATION, DURATION_HELP, "histogram");
    for listener in listeners {
        let snapshot = &listener.duration;
        for (le, count) in snapshot.buckets() {
            out.push_str(DURATION);
            out.push_str("_bucket");
            push_listener_label(out, &listener.listener, Some(le));
            let _ = writeln!(out, " {count}");
        }
        out.push_str(DURATION);
        out.push_str("_bucket");
        push_listener_label(out, &listener.listener, Some("+Inf"));
        let _ = writeln!(out, " {}", snapshot.count);
        out.push_str(DURATION);
        out.push_str("_sum");
        push_listener_label(out, &listener.listener, None);
        let _ = writeln!(out, " {}", snapshot.sum_seconds);
        out.push_str(DURATION);
        out.push_str("_count");
        push_listener_label(out, &listener.listener, None);
        let _ = writeln!(out, " {}", snapshot.count);
    }
}

/// Writes `# HELP` and `# TYPE` lines. The help texts are constants without
/// backslashes or line feeds, so they need no escaping.
fn family_head(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes `{listener="URL"}` or `{listener="URL",le="BOUND"}`.
fn push_listener_label(out: &mut String, listener: &str, le: Option<&str>) {
    out.push_str("{listener=\"");
    push_label_value(out, listener);
    out.push('"');
    if let Some(le) = le {
        out.push_str(",le=\"");
        out.push_str(le);
        out.push('"');
    }
    out.push('}');
}

/// Writes a label value escaped as the text format requires: backslash,
/// double quote and line feed become `\\`, `\"` and `\n`.
fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::histogram::{Histogram, BUCKET_COUNT};
    use std::time::Duration;

    fn sample_listener(url: &str) -> ListenerMetrics {
        let histogram = Histogram::new();
        histogram.observe(Duration::from_micros(200));
        histogram.observe(Duration::from_millis(7));
        ListenerMetrics {
            listener: url.to_string(),
            connections_open: 3,
            requests_in_flight: 2,
            rejected_total: 5,
            dropped_total: 6,
            failed_total: 7,
            panicked_total: 8,
            cut_total: 9,
            threads: 10,
            queued: 11,
            duration: histogram.snapshot(),
        }
    }

    fn rendered(listeners: &[ListenerMetrics]) -> String {
        let mut page = String::new();
        render(listeners, &mut page);
        page
    }

    #[test]
    fn every_family_has_help_and_type_even_without_listeners() {
        let page = rendered(&[]);
        for family in &SIMPLE_FAMILIES {
            let (name, kind) = (family.name, family.kind.name());
            assert!(page.contains(&format!("# HELP {name} ")), "{name}");
            assert!(page.contains(&format!("# TYPE {name} {kind}\n")), "{name}");
        }
        assert!(page.contains(&format!("# TYPE {DURATION} histogram\n")));
        assert!(page.contains(&format!("# TYPE {BUILD_INFO} gauge\n")));
        let version = env!("CARGO_PKG_VERSION");
        assert!(page.contains(&format!("{BUILD_INFO}{{version=\"{version}\"}} 1\n")));
        // Only the build info has a sample.
        let samples = page.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, 1);
    }

    #[test]
    fn one_series_per_listener_with_its_values() {
        let page = rendered(&[
            sample_listener("tcp://127.0.0.1:1"),
            sample_listener("udp://[::1]:2"),
        ]);
        let label = "{listener=\"udp://[::1]:2\"}";
        for (line, value) in [
            ("socketserver_connections_open", 3),
            ("socketserver_requests_in_flight", 2),
            ("socketserver_requests_total", 2),
            ("socketserver_rejected_total", 5),
            ("socketserver_dropped_total", 6),
            ("socketserver_failed_total", 7),
            ("socketserver_panicked_total", 8),
            ("socketserver_cut_total", 9),
            ("socketserver_threads", 10),
            ("socketserver_queued", 11),
        ] {
            assert!(page.contains(&format!("{line}{label} {value}\n")), "{line}");
        }
        let buckets = page
            .lines()
            .filter(|l| l.starts_with("socketserver_request_duration_seconds_bucket"))
            .count();
        assert_eq!(buckets, 2 * (BUCKET_COUNT + 1));
        let prefix = "socketserver_request_duration_seconds";
        let tcp = "listener=\"tcp://127.0.0.1:1\"";
        assert!(page.contains(&format!("{prefix}_bucket{{{tcp},le=\"0.0005\"}} 1\n")));
        assert!(page.contains(&format!("{prefix}_bucket{{{tcp},le=\"0.005\"}} 1\n")));
        assert!(page.contains(&format!("{prefix}_bucket{{{tcp},le=\"0.01\"}} 2\n")));
        assert!(page.contains(&format!("{prefix}_bucket{{{tcp},le=\"+Inf\"}} 2\n")));
        assert!(page.contains(&format!("{prefix}_sum{{{tcp}}} 0.0072\n")));
        assert!(page.contains(&format!("{prefix}_count{{{tcp}}} 2\n")));
    }

    #[test]
    fn label_values_are_escaped() {
        let page = rendered(&[ListenerMetrics {
            listener: "unix:///tmp/a\"b\\c\nd".to_string(),
            ..ListenerMetrics::default()
        }]);
        assert!(page.contains("socketserver_threads{listener=\"unix:///tmp/a\\\"b\\\\c\\nd\"} 0\n"));
        // Every line is a comment or a sample: the escaped line feed did not
        // break a line.
        for line in page.lines() {
            assert!(
                line.starts_with('#') || line.starts_with("socketserver_"),
                "{line}"
            );
        }
    }

    #[test]
    fn help_texts_need_no_escaping() {
        let helps = SIMPLE_FAMILIES
            .iter()
            .map(|f| f.help)
            .chain([DURATION_HELP, BUILD_INFO_HELP]);
        for help in helps {
            assert!(!help.contains('\\') && !help.contains('\n'), "{help}");
        }
    }

    #[test]
    fn rendering_appends() {
        let mut page = String::from("kept\n");
        render(&[], &mut page);
        assert!(page.starts_with("kept\n# HELP "));
    }
}
