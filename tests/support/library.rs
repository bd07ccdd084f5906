//! A library server running `serve_forever` on its own thread, in either
//! dispatch mode.

use std::thread;
use std::time::{Duration, Instant};

use super::{Mode, STEP};

/// A library server running `serve_forever` on its own thread; shut down
/// and joined on drop.
pub struct Running {
    pub handle: socketserver::ServerHandle,
    pub addr: socketserver::Address,
    thread: Option<thread::JoinHandle<std::io::Result<socketserver::Summary>>>,
}

impl Running {
    /// Starts `serve_forever` on a new thread.
    pub fn start<T, H, D>(server: socketserver::Server<T, H, D>) -> Running
    where
        T: socketserver::transport::Transport,
        H: Send + Sync + 'static,
        D: socketserver::dispatch::Dispatch<T, H>,
    {
        let handle = server.handle();
        let addr = server.local_addr().clone();
        let thread = thread::spawn(move || server.serve_forever());
        Running {
            handle,
            addr,
            thread: Some(thread),
        }
    }

    /// The IP address the server listens on.
    pub fn inet(&self) -> std::net::SocketAddr {
        self.addr.as_inet().expect("an IP server")
    }

    /// Asks for a shutdown and waits (at most [`STEP`]) for `serve_forever`'s
    /// summary.
    pub fn stop(mut self) -> socketserver::Summary {
        self.handle.shutdown();
        self.join()
    }

    /// Waits (at most [`STEP`]) for `serve_forever` to return by itself.
    pub fn join(&mut self) -> socketserver::Summary {
        let thread = self.thread.take().expect("joined once");
        let deadline = Instant::now() + STEP;
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "serve_forever did not return within {STEP:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
        thread
            .join()
            .expect("serve_forever panicked")
            .expect("serve_forever failed")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a library TCP server on 127.0.0.1 for a message handler, in
/// `mode`: a `ThreadingTcpServer` or a `ReactorTcpServer`.
pub fn run_messages<H>(mode: Mode, handler: H, options: socketserver::Options) -> Running
where
    H: socketserver::request::MessageHandler,
{
    match mode {
        Mode::Threads => Running::start(
            socketserver::ThreadingTcpServer::bind_with("127.0.0.1:0", handler, options)
                .expect("bind"),
        ),
        Mode::Reactor => Running::start(
            socketserver::ReactorTcpServer::bind_with("127.0.0.1:0", handler, options)
                .expect("bind"),
        ),
    }
}
