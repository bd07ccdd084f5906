//! [`AgentCheck`]: HAProxy's agent check. Each connection is sent one line,
//! `ready\n` while the process accepts new clients or `drain\n` once a
//! shutdown has begun, and is closed.
//!
//! The listener shares the admin listener's event loop: the line is written
//! without blocking as soon as the connection is accepted, so a client that
//! never reads (or never closes) holds up no one, and anything a client sends
//! (HAProxy's `agent-send`) is read and discarded.
//!
//! ```
//! use std::io::Read;
//! use std::net::TcpStream;
//! use std::sync::Arc;
//! use socketserver::ops::admin::OpsState;
//! use socketserver::ops::agent::AgentCheck;
//!
//! struct Draining;
//!
//! impl OpsState for Draining {
//!     fn ready(&self) -> bool {
//!         false
//!     }
//!     fn render_metrics(&self, _out: &mut String) {}
//! }
//!
//! # fn main() -> std::io::Result<()> {
//! let agent = AgentCheck::bind("127.0.0.1:0".parse().unwrap(), Arc::new(Draining))?;
//! let mut line = String::new();
//! TcpStream::connect(agent.local_addr())?.read_to_string(&mut line)?;
//! assert_eq!(line, "drain\n");
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use super::admin::{Limits, OneShotServer, OpsState};

/// What the agent says while the process accepts new clients.
pub const READY_LINE: &str = "ready\n";

/// What the agent says once a shutdown has begun.
pub const DRAIN_LINE: &str = "drain\n";

const LIMITS: Limits = Limits {
    // The line is written at accept; there is no request to wait for.
    head_timeout: Duration::from_secs(5),
    write_timeout: Duration::from_secs(5),
    linger_timeout: Duration::from_secs(1),
    linger_max_bytes: 64 * 1024,
    max_connections: 256,
};

/// The agent-check listener, serving on its own thread until
/// [`shutdown`](AgentCheck::shutdown) or drop.
#[derive(Debug)]
pub struct AgentCheck {
    server: OneShotServer,
}

impl AgentCheck {
    /// Binds `addr` (port 0 picks a free port) and starts answering from
    /// `state`'s [`ready`](OpsState::ready). Fails only if the address cannot
    /// be bound.
    pub fn bind(addr: SocketAddr, state: Arc<dyn OpsState>) -> io::Result<AgentCheck> {
        let answer = move |_received: &[u8]| Some(agent_line(&*state));
        let server = OneShotServer::bind(addr, "socketserver-agent", LIMITS, answer)?;
        Ok(AgentCheck { server })
    }

    /// The address it listens on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr
    }

    /// Stops listening, closes every agent connection and joins the thread.
    pub fn shutdown(mut self) {
        self.server.stop();
    }
}

/// The bytes sent to one agent connection: the line, or nothing (the
/// connection just closes) if asking `state` panicked.
fn agent_line(state: &dyn OpsState) -> Vec<u8> {
    match catch_unwind(AssertUnwindSafe(|| state.ready())) {
        Ok(true) => READY_LINE.as_bytes().to_vec(),
        Ok(false) => DRAIN_LINE.as_bytes().to_vec(),
        Err(_) => {
            log::error!("agent check: asking whether the process is ready panicked");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    struct Switch(AtomicBool);

    impl OpsState for Switch {
        fn ready(&self) -> bool {
            self.0.load(Ordering::Relaxed)
        }
        fn render_metrics(&self, _out: &mut String) {}
    }

    fn line_from(addr: SocketAddr) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut line = String::new();
        stream.read_to_string(&mut line).unwrap();
        line
    }

    #[test]
    fn says_ready_then_drain() {
        let state = Arc::new(Switch(AtomicBool::new(true)));
        let agent = AgentCheck::bind("127.0.0.1:0".parse().unwrap(), state.clone()).unwrap();
        assert_eq!(line_from(agent.local_addr()), "ready\n");
        state.0.store(false, Ordering::Relaxed);
        assert_eq!(line_from(agent.local_addr()), "drain\n");
        agent.shutdown();
    }

    #[test]
    fn answers_over_ipv6_too() {
        let Ok(agent) = AgentCheck::bind(
            "[::1]:0".parse().unwrap(),
            Arc::new(Switch(AtomicBool::new(true))),
        ) else {
            eprintln!("skipped: no IPv6 loopback on this machine");
            return;
        };
        assert_eq!(line_from(agent.local_addr()), "ready\n");
    }

    #[test]
    fn what_the_client_sends_is_ignored() {
        let agent = AgentCheck::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Switch(AtomicBool::new(true))),
        )
        .unwrap();
        let mut stream = TcpStream::connect(agent.local_addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // HAProxy's agent-send, and then some.
        stream.write_all(b"hello agent\n").unwrap();
        stream.write_all(&[0xff; 8192]).unwrap();
        let mut line = String::new();
        stream.read_to_string(&mut line).unwrap();
        assert_eq!(line, "ready\n");
    }

    #[test]
    fn clients_that_never_read_or_close_block_no_one() {
        let agent = AgentCheck::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Switch(AtomicBool::new(false))),
        )
        .unwrap();
        let stuck: Vec<TcpStream> = (0..50)
            .map(|_| TcpStream::connect(agent.local_addr()).unwrap())
            .collect();
        let started = Instant::now();
        assert_eq!(line_from(agent.local_addr()), "drain\n");
        assert!(started.elapsed() < Duration::from_secs(2));
        // The stuck ones were sent their line too, without reading it.
        let mut first = &stuck[0];
        let mut line = String::new();
        first
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        first.read_to_string(&mut line).unwrap();
        assert_eq!(line, "drain\n");
    }

    #[test]
    fn a_panicking_state_closes_the_connection_with_nothing_said() {
        struct Broken;
        impl OpsState for Broken {
            fn ready(&self) -> bool {
                panic!("broken")
            }
            fn render_metrics(&self, _out: &mut String) {}
        }
        let agent = AgentCheck::bind("127.0.0.1:0".parse().unwrap(), Arc::new(Broken)).unwrap();
        assert_eq!(line_from(agent.local_addr()), "");
        assert_eq!(line_from(agent.local_addr()), "");
    }

    #[test]
    fn shutdown_stops_listening() {
        let agent = AgentCheck::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(Switch(AtomicBool::new(true))),
        )
        .unwrap();
        let addr = agent.local_addr();
        drop(agent);
        assert_eq!(
            TcpStream::connect(addr).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
    }
}
