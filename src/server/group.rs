//! [`ServerGroup`]: several servers, of any types, run and stopped together.

use std::io;
use std::thread;

use super::{Metrics, Server, ServerHandle, Summary};
use crate::dispatch::Dispatch;
use crate::transport::Transport;

/// Servers of any transports run together, one thread each, and shut down
/// together: a service on TCP and UDP at once, say.
///
/// ```no_run
/// use std::sync::Arc;
/// use socketserver::services::EchoUpper;
/// use socketserver::{ServerGroup, ThreadingTcpServer, ThreadingUdpServer};
///
/// let echo = Arc::new(EchoUpper);
/// let mut group = ServerGroup::new();
/// group.add(ThreadingTcpServer::bind("127.0.0.1:9000", echo.clone())?);
/// group.add(ThreadingUdpServer::bind("127.0.0.1:9000", echo)?);
/// group.shutdown_on_ctrl_c()?;
/// for summary in group.serve_forever()? {
///     println!("{summary}");
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Default)]
pub struct ServerGroup {
    servers: Vec<Box<dyn AnyServer>>,
}

/// What the group needs of a server, whatever its type parameters.
trait AnyServer: Send + Sync {
    fn url(&self) -> String;
    fn handle(&self) -> ServerHandle;
    fn serve_forever(&self) -> io::Result<Summary>;
}

impl<T, H, D> AnyServer for Server<T, H, D>
where
    T: Transport,
    H: Send + Sync + 'static,
    D: Dispatch<T, H>,
{
    fn url(&self) -> String {
        Server::url(self)
    }
    fn handle(&self) -> ServerHandle {
        Server::handle(self)
    }
    fn serve_forever(&self) -> io::Result<Summary> {
        Server::serve_forever(self)
    }
}

impl ServerGroup {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a bound server.
    pub fn add<T, H, D>(&mut self, server: Server<T, H, D>)
    where
        T: Transport,
        H: Send + Sync + 'static,
        D: Dispatch<T, H>,
    {
        self.servers.push(Box::new(server));
    }

    /// The listening URLs, in the order the servers were added.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.url()).collect()
    }

    /// Handles to every server.
    pub fn handles(&self) -> Vec<ServerHandle> {
        self.servers.iter().map(|s| s.handle()).collect()
    }

    /// Each server's metrics now, in the order the servers were added.
    pub fn metrics(&self) -> Vec<Metrics> {
        self.servers.iter().map(|s| s.handle().metrics()).collect()
    }

    /// True while every server takes new clients (see
    /// [`ServerHandle::is_ready`]).
    pub fn is_ready(&self) -> bool {
        self.servers.iter().all(|s| s.handle().is_ready())
    }

    /// [Drains](ServerHandle::drain) every server: readiness off at once,
    /// each shutdown after its [drain delay](crate::Options::drain_delay).
    pub fn drain(&self) {
        self.servers.iter().for_each(|s| s.handle().drain());
    }

    /// Shuts every server down on SIGINT, SIGTERM or SIGHUP, each after its
    /// [drain delay](crate::Options::drain_delay), announced at warn (a
    /// second signal, more than 100 ms after the first, exits with status
    /// 130). See [`ServerHandle::shutdown_on_ctrl_c`].
    pub fn shutdown_on_ctrl_c(&self) -> io::Result<()> {
        self.servers
            .iter()
            .try_for_each(|s| s.handle().shutdown_on_ctrl_c())
    }

    /// Serves on every server until all have shut down (when one fails, the
    /// others are shut down too); returns their summaries in order.
    pub fn serve_forever(self) -> io::Result<Vec<Summary>> {
        let handles = self.handles();
        let results: Vec<io::Result<Summary>> = thread::scope(|scope| {
            let running: Vec<_> = self
                .servers
                .iter()
                .map(|server| {
                    let handles = &handles;
                    scope.spawn(move || {
                        let result = server.serve_forever();
                        if result.is_err() {
                            handles.iter().for_each(ServerHandle::shutdown);
                        }
                        result
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(io::Error::other("a server thread panicked")))
                })
                .collect()
        });
        results.into_iter().collect()
    }
}
