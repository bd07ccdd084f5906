//! What every `serve` shares: the addresses, the pool and its limits, the
//! dispatch mode, the stream layers (TLS, PROXY), and the steps from
//! arguments to running servers.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use socketserver::request::MessageHandler;
use socketserver::{
    DatagramRequest, Options, ReactorTcpServer, ReactorUnixStreamServer, RequestHandler,
    ServerGroup, SocketUrl, StreamRequest, ThreadingTcpServer, ThreadingUdpServer,
    ThreadingUnixDatagramServer, ThreadingUnixStreamServer,
};

use crate::common::{parse_duration, raise_open_file_limit, CliError};
use crate::services::Service;

/// How a stream service runs its connections.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DispatchMode {
    /// A pool thread holds each connection for its whole life.
    Threads,
    /// Connections wait on event loops; messages run inline or on the pool.
    Reactor,
}

/// The options of every `serve`.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Listen on URL (repeatable)
    #[arg(long = "bind", value_name = "URL")]
    urls: Vec<SocketUrl>,
    /// How connections are served: a thread each, or parked on event loops between messages (no effect on datagrams)
    #[arg(long, value_enum, value_name = "MODE")]
    dispatch: Option<DispatchMode>,
    /// Event loops in reactor mode [default: number of CPUs]
    #[arg(long, value_name = "N")]
    reactor_threads: Option<usize>,
    /// Worker threads kept warm [default: number of CPUs]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Most worker threads [default: as many as --max-connections]
    #[arg(long, value_name = "N")]
    max_threads: Option<usize>,
    /// Connections waiting for a thread
    #[arg(long, value_name = "N", default_value_t = 1024)]
    queue: usize,
    /// Most connections open at once [default: 10000; reactor: 100000; lowered to fit the open-file limit]
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Close a connection that sends nothing for SECS [default: none; http: 60]
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    idle_timeout: Option<Duration>,
    /// Give up on a client that accepts no byte of a reply for SECS (0: wait for ever)
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "60")]
    write_timeout: Duration,
    /// On shutdown, let requests finish for SECS, then cut them
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "10")]
    shutdown_timeout: Duration,
    /// When full, close new connections at once instead of leaving them in the backlog
    #[arg(long)]
    reject_when_full: bool,
    /// Speak TLS on stream listeners with this certificate chain (PEM); needs --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Close a TLS connection whose handshake is not done SECS after it began (0: no limit)
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "10")]
    tls_handshake_timeout: Duration,
    /// Expect a PROXY protocol header (v1 or v2) on every stream connection, as HAProxy's send-proxy sends: its client address becomes the peer. Only behind a proxy you trust
    #[arg(long)]
    proxy_protocol: bool,
    /// Close a connection whose PROXY header is not complete SECS after accept
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "5")]
    proxy_header_timeout: Duration,
}

impl ServerArgs {
    /// The URLs to bind: those given (each must be a transport of the
    /// service), or the service's default.
    pub fn urls(&self, service: &Service) -> Result<Vec<SocketUrl>, CliError> {
        if self.urls.is_empty() {
            return Ok(vec![service
                .default_url
                .parse()
                .expect("the table's URLs parse")]);
        }
        for url in &self.urls {
            if !service.schemes.contains(&url.scheme()) {
                let speaks: Vec<&str> = service.schemes.iter().map(|s| s.name()).collect();
                return Err(CliError::Usage(format!(
                    "{} does not speak {} (--bind {url}); it speaks {}",
                    service.name,
                    url.scheme(),
                    speaks.join(", ")
                )));
            }
        }
        Ok(self.urls.clone())
    }

    /// The dispatch mode: as given, or the service's default.
    fn dispatch(&self, service: &Service) -> DispatchMode {
        self.dispatch.unwrap_or(service.dispatch)
    }

    /// `--max-connections`, or the mode's default lowered to what the
    /// open-file limit holds (SPEC rule 23); a value given beyond the limit
    /// is kept, with a warning.
    fn max_connections(&self, service: &Service) -> usize {
        let limit = raise_open_file_limit()
            .ok()
            .and_then(|limit| usize::try_from(limit).ok());
        // What the connections may take: the limit less the program's own
        // descriptors (under a tiny limit, half of it rather than nothing).
        let room = limit.map(|limit| limit.saturating_sub(RESERVED_DESCRIPTORS).max(limit / 2));
        match (self.max_connections, limit, room) {
            (Some(given), Some(limit), Some(room)) if given > room => {
                log::warn!(
                    "--max-connections {given} is more than the open-file limit {limit} allows"
                );
                given
            }
            (Some(given), _, _) => given,
            (None, _, room) => {
                let default = match self.dispatch(service) {
                    DispatchMode::Threads => 10_000,
                    DispatchMode::Reactor => 100_000,
                };
                room.map_or(default, |room| default.min(room.max(1)))
            }
        }
    }

    /// The server options these arguments ask for, for `service`.
    pub fn options(&self, service: &Service) -> Result<Options, CliError> {
        let mut options = Options::new()
            .queue(self.queue)
            .max_connections(self.max_connections(service))
            .idle_timeout(self.idle_timeout.or(service.idle_timeout))
            .write_timeout(Some(self.write_timeout))
            .shutdown_timeout(self.shutdown_timeout)
            .reject_when_full(self.reject_when_full)
            .proxy_protocol(self.proxy_protocol)
            .proxy_header_timeout(self.proxy_header_timeout)
            .tls_handshake_timeout(Some(self.tls_handshake_timeout));
        if let Some(threads) = self.threads {
            options = options.threads(threads);
        }
        if let Some(max_threads) = self.max_threads {
            options = options.max_threads(max_threads);
        }
        if let Some(loops) = self.reactor_threads {
            options = options.reactor_threads(loops);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let config = socketserver::layer::tls::server_config_from_pem(cert, key, service.alpn)
                .map_err(|e| {
                    CliError::Failed(format!(
                        "cannot load {} {}: {}",
                        e.file().flag(),
                        e.path().display(),
                        e.reason()
                    ))
                })?;
            options = options.tls(config);
        }
        Ok(options)
    }

    /// Binds every URL for a message handler (streams) and, for a handler
    /// that also serves datagrams, its datagram URLs; then runs them all.
    pub fn launcher(&self, service: &Service) -> Result<Launcher, CliError> {
        Ok(Launcher {
            group: ServerGroup::new(),
            options: self.options(service)?,
            dispatch: self.dispatch(service),
        })
    }

    /// Serves a stream service: binds its URLs, runs until a signal.
    pub fn serve<H: MessageHandler + Clone>(
        &self,
        service: &Service,
        handler: &H,
    ) -> Result<(), CliError> {
        let mut launcher = self.launcher(service)?;
        for url in self.urls(service)? {
            launcher.stream(&url, handler)?;
        }
        launcher.run()
    }

    /// Serves a service of streams and datagrams.
    pub fn serve_any<H>(&self, service: &Service, handler: &H) -> Result<(), CliError>
    where
        H: MessageHandler + RequestHandler<DatagramRequest> + Clone,
    {
        let mut launcher = self.launcher(service)?;
        for url in self.urls(service)? {
            if url.is_stream() {
                launcher.stream(&url, handler)?;
            } else {
                launcher.datagram(&url, handler.clone())?;
            }
        }
        launcher.run()
    }
}

/// Descriptors kept for the program's own use (listeners, pipes, files,
/// the event loops' epoll and eventfd) when the default connection cap is
/// fitted under the open-file limit.
const RESERVED_DESCRIPTORS: usize = 64;

/// Binds servers for a service and runs them together.
pub struct Launcher {
    group: ServerGroup,
    options: Options,
    dispatch: DispatchMode,
}

impl Launcher {
    /// Binds a stream server (TCP or Unix) at `url` for a message handler,
    /// in the chosen dispatch mode.
    pub fn stream<H: MessageHandler + Clone>(
        &mut self,
        url: &SocketUrl,
        handler: &H,
    ) -> Result<(), CliError> {
        let options = self.options.clone();
        let handler = handler.clone();
        match (url, self.dispatch) {
            (SocketUrl::Tcp(addr), DispatchMode::Reactor) => self.group.add(
                ReactorTcpServer::bind_with(addr.as_str(), handler, options)
                    .map_err(|e| cannot_bind(url, e))?,
            ),
            (SocketUrl::Unix(path), DispatchMode::Reactor) => self.group.add(
                ReactorUnixStreamServer::bind_with(path, handler, options)
                    .map_err(|e| cannot_bind(url, e))?,
            ),
            (_, DispatchMode::Threads) => return self.stream_threads(url, handler),
            _ => return Err(CliError::Usage(format!("{url} is not a stream URL"))),
        }
        Ok(())
    }

    /// Binds a threading stream server (TCP or Unix) at `url`.
    fn stream_threads<H: RequestHandler<StreamRequest>>(
        &mut self,
        url: &SocketUrl,
        handler: H,
    ) -> Result<(), CliError> {
        let options = self.options.clone();
        match url {
            SocketUrl::Tcp(addr) => self.group.add(
                ThreadingTcpServer::bind_with(addr.as_str(), handler, options)
                    .map_err(|e| cannot_bind(url, e))?,
            ),
            SocketUrl::Unix(path) => self.group.add(
                ThreadingUnixStreamServer::bind_with(path, handler, options)
                    .map_err(|e| cannot_bind(url, e))?,
            ),
            _ => return Err(CliError::Usage(format!("{url} is not a stream URL"))),
        }
        Ok(())
    }

    /// Binds a threading datagram server (UDP or Unix) at `url`; the
    /// dispatch mode does not apply to datagrams.
    pub fn datagram<H: RequestHandler<DatagramRequest>>(
        &mut self,
        url: &SocketUrl,
        handler: H,
    ) -> Result<(), CliError> {
        let options = self.options.clone();
        match url {
            SocketUrl::Udp(addr) => self.group.add(
                ThreadingUdpServer::bind_with(addr.as_str(), handler, options)
                    .map_err(|e| cannot_bind(url, e))?,
            ),
            SocketUrl::Unixgram(path) => self.group.add(
                ThreadingUnixDatagramServer::bind_with(path, handler, options)
                    .map_err(|e| cannot_bind(url, e))?,
            ),
            _ => return Err(CliError::Usage(format!("{url} is not a datagram URL"))),
        }
        Ok(())
    }

    /// Announces every address on standard output, then serves until
    /// SIGINT/SIGTERM, drains, and logs a summary per server.
    pub fn run(self) -> Result<(), CliError> {
        self.group.shutdown_on_ctrl_c()?;
        let mut stdout = io::stdout().lock();
        for url in self.group.urls() {
            writeln!(stdout, "listening on {url}")?;
        }
        stdout.flush()?;
        drop(stdout);
        // Each server logs its own one-line summary as it shuts down.
        self.group.serve_forever()?;
        Ok(())
    }
}

fn cannot_bind(url: &SocketUrl, e: io::Error) -> CliError {
    CliError::Failed(format!("cannot bind {url}: {e}"))
}
