//! [`ServerOps`]: the [`OpsState`] of running servers, so that the admin
//! listener and the agent check report on them: ready while their
//! [`Readiness`] says so, and one series per server on `/metrics`.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::sync::Arc;
//! use socketserver::ops::admin::AdminServer;
//! use socketserver::ops::ServerOps;
//! use socketserver::services::EchoUpper;
//! use socketserver::ThreadingTcpServer;
//!
//! # fn main() -> std::io::Result<()> {
//! let server = ThreadingTcpServer::bind("127.0.0.1:0", EchoUpper)?;
//! let ops = Arc::new(ServerOps::new(vec![server.handle()]));
//! let admin = AdminServer::bind("127.0.0.1:0".parse().unwrap(), ops)?;
//!
//! let get = |path: &str| -> std::io::Result<String> {
//!     let mut stream = TcpStream::connect(admin.local_addr())?;
//!     write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
//!     let mut answer = String::new();
//!     stream.read_to_string(&mut answer)?;
//!     Ok(answer)
//! };
//! let label = format!("{{listener=\"{}\"}}", server.url());
//! assert!(get("/metrics")?.contains(&format!("socketserver_requests_total{label} 0\n")));
//! assert!(get("/readyz")?.ends_with("ready\n"));
//! server.handle().drain(); // what the first SIGTERM does
//! assert!(get("/readyz")?.ends_with("draining\n"));
//! # Ok(())
//! # }
//! ```

use std::fmt;

use super::admin::OpsState;
use super::metrics::{render, ListenerMetrics};
use crate::{Readiness, ServerHandle};

/// Reports on a set of servers: ready while every one's [`Readiness`] is
/// (and any extra readiness given), metrics with one series per server.
#[derive(Clone)]
pub struct ServerOps {
    servers: Vec<ServerHandle>,
    readiness: Option<Readiness>,
}

impl ServerOps {
    /// Reports on `servers`, in this order on `/metrics`.
    pub fn new(servers: Vec<ServerHandle>) -> Self {
        ServerOps {
            servers,
            readiness: None,
        }
    }

    /// Also reports draining once `readiness` does, when it is not the one
    /// the servers share (a process-wide switch of your own).
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = Some(readiness);
        self
    }

    /// The servers reported on.
    pub fn servers(&self) -> &[ServerHandle] {
        &self.servers
    }
}

impl OpsState for ServerOps {
    fn ready(&self) -> bool {
        self.readiness.as_ref().is_none_or(Readiness::is_ready)
            && self.servers.iter().all(ServerHandle::is_ready)
    }

    fn render_metrics(&self, out: &mut String) {
        let listeners: Vec<ListenerMetrics> = self
            .servers
            .iter()
            .map(|server| ListenerMetrics::from(&server.metrics()))
            .collect();
        render(&listeners, out);
    }
}

impl fmt::Debug for ServerOps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<&str> = self.servers.iter().map(ServerHandle::url).collect();
        f.debug_struct("ServerOps")
            .field("servers", &urls)
            .field("ready", &self.ready())
            .finish()
    }
}
