//! Running a server in production: health and readiness probes, Prometheus
//! metrics, HAProxy's agent check, and systemd.
//!
//! - [`histogram`] (always built): the lock-free request-duration histogram
//!   behind `socketserver_request_duration_seconds`.
//! - `metrics` (feature `ops`): the `/metrics` page in the Prometheus text
//!   format.
//! - `admin` (feature `ops`): the admin HTTP listener, `/healthz`,
//!   `/readyz` and `/metrics`, on its own thread.
//! - `agent` (feature `ops`): HAProxy's agent check, `ready` or `drain`.
//! - `systemd` (feature `systemd`, Linux): readiness notifications, the
//!   watchdog, and socket activation.
//! - `ServerOps` (feature `ops`): the `OpsState` of running servers, from
//!   their [`ServerHandle`](crate::ServerHandle)s.
//!
//! The listeners report on the process through one `OpsState`: whether it is
//! ready, and its metrics page. `ServerOps` is that state for a set of
//! servers; the example below builds one by hand.
//!
//! ```
//! # #[cfg(feature = "ops")]
//! # fn main() -> std::io::Result<()> {
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::sync::Arc;
//! use std::time::Duration;
//! use socketserver::ops::admin::{AdminServer, OpsState};
//! use socketserver::ops::histogram::Histogram;
//! use socketserver::ops::metrics::{render, ListenerMetrics};
//!
//! struct Process {
//!     durations: Histogram,
//! }
//!
//! impl OpsState for Process {
//!     fn ready(&self) -> bool {
//!         true
//!     }
//!     fn render_metrics(&self, out: &mut String) {
//!         let listener = ListenerMetrics {
//!             listener: "tcp://127.0.0.1:5000".to_string(),
//!             duration: self.durations.snapshot(),
//!             ..ListenerMetrics::default()
//!         };
//!         render(&[listener], out);
//!     }
//! }
//!
//! let process = Arc::new(Process { durations: Histogram::new() });
//! process.durations.observe(Duration::from_millis(2)); // a request was served
//! let admin = AdminServer::bind("127.0.0.1:0".parse().unwrap(), process)?;
//!
//! let mut stream = TcpStream::connect(admin.local_addr())?;
//! stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
//! let mut page = String::new();
//! stream.read_to_string(&mut page)?;
//! assert!(page.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(page.contains("Content-Type: text/plain; version=0.0.4\r\n"));
//! assert!(page.contains("socketserver_requests_total{listener=\"tcp://127.0.0.1:5000\"} 1\n"));
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "ops"))]
//! # fn main() {}
//! ```

#[cfg(feature = "ops")]
pub mod admin;
#[cfg(feature = "ops")]
pub mod agent;
pub mod histogram;
#[cfg(feature = "ops")]
pub mod metrics;
#[cfg(feature = "ops")]
mod servers;
#[cfg(feature = "ops")]
pub use servers::ServerOps;
#[cfg(all(feature = "systemd", target_os = "linux"))]
pub mod systemd;
