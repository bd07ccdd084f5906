//! What every `serve` shares: the addresses (given, or inherited from
//! systemd), the pool and its limits, the dispatch mode, the stream layers
//! (TLS, PROXY), the operations side (admin listener, agent check, drain
//! delay, systemd notifications), and the steps from arguments to running
//! servers.

use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use socketserver::dispatch::{Dispatch, ThreadsError};
use socketserver::ops::admin::AdminServer;
use socketserver::ops::agent::AgentCheck;
use socketserver::ops::systemd::{inherited_sockets, InheritedSocket, Notifier, NotifyConfig};
use socketserver::ops::ServerOps;
use socketserver::request::MessageHandler;
use socketserver::transport::{Scheme, Transport};
use socketserver::{
    DatagramRequest, Options, ReactorTcpServer, ReactorUnixStreamServer, Readiness, RequestHandler,
    Server, ServerGroup, SocketUrl, ThreadingTcpServer, ThreadingUdpServer,
    ThreadingUnixDatagramServer, ThreadingUnixStreamServer,
};

use crate::common::{parse_duration, raise_open_file_limit, CliError};
use crate::services::Service;

/// What systemd (or another supervisor) handed the process through its
/// environment: the sockets of socket activation and where to send
/// notifications. Read once, at the start of `main`, before any thread
/// starts, because reading removes the variables (rules 37, 51).
struct Environment {
    /// The inherited sockets in descriptor order, or why they cannot be
    /// used.
    sockets: io::Result<Vec<InheritedSocket>>,
    notify: NotifyConfig,
}

static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// Takes `LISTEN_PID`/`LISTEN_FDS`/`LISTEN_FDNAMES` (marking the inherited
/// descriptors close-on-exec) and `NOTIFY_SOCKET`/`WATCHDOG_USEC`/
/// `WATCHDOG_PID` out of the environment, so that the programs `exec` runs
/// inherit none of them. Call it first in `main`, while the process has one
/// thread.
pub fn take_environment() {
    let environment = Environment {
        sockets: inherited_sockets(),
        notify: NotifyConfig::take_from_env(),
    };
    *ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner()) = Some(environment);
}

/// What [`take_environment`] found, once.
fn environment() -> Environment {
    ENVIRONMENT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or(Environment {
            sockets: Ok(Vec::new()),
            notify: NotifyConfig::default(),
        })
}

/// Parses an `--admin` or `--agent-check` URL: tcp only (rule 48).
fn parse_ops_url(text: &str) -> Result<SocketUrl, String> {
    let url: SocketUrl = text.parse().map_err(|e| format!("{e}"))?;
    match url {
        SocketUrl::Tcp(_) => Ok(url),
        other => Err(format!(
            "{other}: the admin and agent-check listeners take tcp://HOST:PORT only"
        )),
    }
}

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
    /// In reactor mode, each event loop accepts on its own SO_REUSEPORT listener (TCP) instead of one listener dealing connections to the loops
    #[arg(long)]
    listener_per_loop: bool,
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
    /// On shutdown (SIGINT, SIGTERM or SIGHUP), let requests finish for SECS, then cut them
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
    /// Serve /healthz, /readyz and /metrics (Prometheus) over HTTP on tcp://HOST:PORT
    #[arg(long, value_name = "URL", value_parser = parse_ops_url)]
    admin: Option<SocketUrl>,
    /// Answer HAProxy's agent check (`ready` or `drain`) on tcp://HOST:PORT
    #[arg(long, value_name = "URL", value_parser = parse_ops_url)]
    agent_check: Option<SocketUrl>,
    /// At the first SIGINT/SIGTERM, report draining (/readyz 503, agent `drain`) and keep serving for SECS before shutting down
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "0")]
    drain_delay: Duration,
    /// Set SO_REUSEPORT, so that several processes listen on one address and the kernel spreads connections among them
    #[arg(long)]
    reuse_port: bool,
}

impl ServerArgs {
    /// The URLs to bind: those given (each must be a transport of the
    /// service), or, when none is given and no socket was inherited, the
    /// service's default.
    pub fn urls(&self, service: &Service, inherited: usize) -> Result<Vec<SocketUrl>, CliError> {
        if self.urls.is_empty() && inherited > 0 {
            return Ok(Vec::new());
        }
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
            .tls_handshake_timeout(Some(self.tls_handshake_timeout))
            .drain_delay(self.drain_delay)
            .reuse_port(self.reuse_port);
        if let Some(threads) = self.threads {
            options = options.threads(threads);
        }
        if let Some(max_threads) = self.max_threads {
            options = options.max_threads(max_threads);
        }
        if let Some(loops) = self.reactor_threads {
            options = options.reactor_threads(loops);
        }
        if self.listener_per_loop {
            options = options.listener_per_loop(true);
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

    /// A launcher for `service` with these arguments' options, holding the
    /// sockets systemd passed (checked against the service's transports).
    pub fn launcher(&self, service: &Service) -> Result<Launcher, CliError> {
        let environment = environment();
        let inherited = environment
            .sockets
            .map_err(|e| CliError::Failed(format!("socket activation: {e}")))?;
        for socket in &inherited {
            if !service.schemes.contains(&socket.scheme()) {
                let speaks: Vec<&str> = service.schemes.iter().map(|s| s.name()).collect();
                return Err(CliError::Failed(format!(
                    "socket activation: descriptor {} is a {} socket; {} speaks {}",
                    socket.as_raw_fd(),
                    socket.kind(),
                    service.name,
                    speaks.join(", ")
                )));
            }
        }
        let readiness = Readiness::new();
        Ok(Launcher {
            group: ServerGroup::new(),
            options: self.options(service)?.readiness(readiness.clone()),
            dispatch: self.dispatch(service),
            readiness,
            inherited_count: inherited.len(),
            inherited,
            notify: environment.notify,
            admin: self.admin.clone(),
            agent_check: self.agent_check.clone(),
        })
    }

    /// Serves a stream service: the inherited sockets, then its URLs; runs
    /// until a signal.
    pub fn serve<H: MessageHandler + Clone>(
        &self,
        service: &Service,
        handler: &H,
    ) -> Result<(), CliError> {
        let mut launcher = self.launcher(service)?;
        for (scheme, socket) in launcher.take_inherited() {
            launcher.stream_on(scheme, socket, handler)?;
        }
        for url in self.urls(service, launcher.inherited_count())? {
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
        for (scheme, socket) in launcher.take_inherited() {
            if scheme.is_stream() {
                launcher.stream_on(scheme, socket, handler)?;
            } else {
                launcher.datagram_on(scheme, socket, handler.clone())?;
            }
        }
        for url in self.urls(service, launcher.inherited_count())? {
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

/// Binds servers for a service and runs them together, with the admin
/// listener, the agent check and systemd's notifications around them.
pub struct Launcher {
    group: ServerGroup,
    options: Options,
    dispatch: DispatchMode,
    /// Shared by every server (through `options`) and the ops listeners.
    readiness: Readiness,
    inherited: Vec<InheritedSocket>,
    inherited_count: usize,
    notify: NotifyConfig,
    admin: Option<SocketUrl>,
    agent_check: Option<SocketUrl>,
}

impl Launcher {
    /// The inherited sockets, in descriptor order, with their transports.
    fn take_inherited(&mut self) -> Vec<(Scheme, OwnedFd)> {
        let inherited = std::mem::take(&mut self.inherited);
        self.inherited_count = inherited.len();
        inherited
            .into_iter()
            .map(|socket| (socket.scheme(), OwnedFd::from(socket)))
            .collect()
    }

    /// How many sockets were inherited.
    fn inherited_count(&self) -> usize {
        self.inherited_count
    }

    /// Serves a message handler on an inherited stream socket.
    fn stream_on<H: MessageHandler + Clone>(
        &mut self,
        scheme: Scheme,
        socket: OwnedFd,
        handler: &H,
    ) -> Result<(), CliError> {
        let options = self.options.clone();
        let handler = handler.clone();
        let fd = socket.as_raw_fd();
        let failed = |e: io::Error| cannot_serve_inherited(fd, e);
        match (scheme, self.dispatch) {
            (Scheme::Tcp, DispatchMode::Reactor) => self.add_started(
                ReactorTcpServer::from_listener(socket, handler, options),
                failed,
            ),
            (Scheme::Unix, DispatchMode::Reactor) => self.add_started(
                ReactorUnixStreamServer::from_listener(socket, handler, options),
                failed,
            ),
            (Scheme::Tcp, DispatchMode::Threads) => self.add_started(
                ThreadingTcpServer::from_listener(socket, handler, options),
                failed,
            ),
            (Scheme::Unix, DispatchMode::Threads) => self.add_started(
                ThreadingUnixStreamServer::from_listener(socket, handler, options),
                failed,
            ),
            _ => Err(failed(io::Error::other("not a stream socket"))),
        }
    }

    /// Serves a datagram handler on an inherited datagram socket.
    fn datagram_on<H: RequestHandler<DatagramRequest>>(
        &mut self,
        scheme: Scheme,
        socket: OwnedFd,
        handler: H,
    ) -> Result<(), CliError> {
        let options = self.options.clone();
        let fd = socket.as_raw_fd();
        let failed = |e: io::Error| cannot_serve_inherited(fd, e);
        match scheme {
            Scheme::Udp => self.add_started(
                ThreadingUdpServer::from_listener(socket, handler, options),
                failed,
            ),
            Scheme::Unixgram => self.add_started(
                ThreadingUnixDatagramServer::from_listener(socket, handler, options),
                failed,
            ),
            _ => Err(failed(io::Error::other("not a datagram socket"))),
        }
    }

    /// Binds a stream server (TCP or Unix) at `url` for a message handler,
    /// in the chosen dispatch mode.
    pub fn stream<H: MessageHandler + Clone>(
        &mut self,
        url: &SocketUrl,
        handler: &H,
    ) -> Result<(), CliError> {
        let options = self.options.clone();
        let handler = handler.clone();
        let failed = |e: io::Error| cannot_bind(url, e);
        match (url, self.dispatch) {
            (SocketUrl::Tcp(addr), DispatchMode::Reactor) => self.add_started(
                ReactorTcpServer::bind_with(addr.as_str(), handler, options),
                failed,
            ),
            (SocketUrl::Unix(path), DispatchMode::Reactor) => self.add_started(
                ReactorUnixStreamServer::bind_with(path, handler, options),
                failed,
            ),
            (SocketUrl::Tcp(addr), DispatchMode::Threads) => self.add_started(
                ThreadingTcpServer::bind_with(addr.as_str(), handler, options),
                failed,
            ),
            (SocketUrl::Unix(path), DispatchMode::Threads) => self.add_started(
                ThreadingUnixStreamServer::bind_with(path, handler, options),
                failed,
            ),
            _ => Err(CliError::Usage(format!("{url} is not a stream URL"))),
        }
    }

    /// Binds a threading datagram server (UDP or Unix) at `url`; the
    /// dispatch mode does not apply to datagrams.
    pub fn datagram<H: RequestHandler<DatagramRequest>>(
        &mut self,
        url: &SocketUrl,
        handler: H,
    ) -> Result<(), CliError> {
        let options = self.options.clone();
        let failed = |e: io::Error| cannot_bind(url, e);
        match url {
            SocketUrl::Udp(addr) => self.add_started(
                ThreadingUdpServer::bind_with(addr.as_str(), handler, options),
                failed,
            ),
            SocketUrl::Unixgram(path) => self.add_started(
                ThreadingUnixDatagramServer::bind_with(path, handler, options),
                failed,
            ),
            _ => Err(CliError::Usage(format!("{url} is not a datagram URL"))),
        }
    }

    /// Adds a server that has just bound (or adopted) its socket to the
    /// group, or returns the error of one that could not start, worded by
    /// `failed`.
    fn add_started<T, H, D>(
        &mut self,
        started: io::Result<Server<T, H, D>>,
        failed: impl FnOnce(io::Error) -> CliError,
    ) -> Result<(), CliError>
    where
        T: Transport,
        H: Send + Sync + 'static,
        D: Dispatch<T, H>,
    {
        self.group.add(started.map_err(failed)?);
        Ok(())
    }

    /// Opens the admin and agent-check listeners, announces every address
    /// on standard output (theirs first), tells systemd it is ready, then
    /// serves until SIGINT/SIGTERM, drains, and logs a summary per server.
    pub fn run(self) -> Result<(), CliError> {
        if self.group.urls().is_empty() {
            return Err(CliError::Failed("nothing to serve on".to_string()));
        }
        self.group.shutdown_on_ctrl_c()?;
        let ops = Arc::new(ServerOps::new(self.group.handles()));
        let admin = match &self.admin {
            Some(url) => Some(
                resolve(url)
                    .and_then(|addr| AdminServer::bind(addr, ops.clone()))
                    .map_err(|e| cannot_bind(url, e))?,
            ),
            None => None,
        };
        let agent = match &self.agent_check {
            Some(url) => Some(
                resolve(url)
                    .and_then(|addr| AgentCheck::bind(addr, ops.clone()))
                    .map_err(|e| cannot_bind(url, e))?,
            ),
            None => None,
        };
        let mut stdout = io::stdout().lock();
        if let Some(admin) = &admin {
            writeln!(stdout, "admin on tcp://{}", admin.local_addr())?;
        }
        if let Some(agent) = &agent {
            writeln!(stdout, "agent-check on tcp://{}", agent.local_addr())?;
        }
        let urls = self.group.urls();
        for url in &urls {
            writeln!(stdout, "listening on {url}")?;
        }
        stdout.flush()?;
        drop(stdout);
        let notifier = Arc::new(Notifier::new(self.notify));
        notifier.ready();
        notifier.status(&format!("listening on {}", urls.join(", ")));
        let stopping = Arc::clone(&notifier);
        self.readiness.on_drain(move || {
            stopping.stopping();
            stopping.status("draining, then shutting down");
        });
        // Each server logs its own one-line summary as it shuts down. The
        // admin listener answers /readyz 503 until the process exits.
        let result = self.group.serve_forever();
        drop(agent);
        drop(admin);
        result?;
        Ok(())
    }
}

/// The first address a tcp URL resolves to.
fn resolve(url: &SocketUrl) -> io::Result<SocketAddr> {
    let SocketUrl::Tcp(host_port) = url else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a tcp URL"));
    };
    host_port.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    })
}

/// The error of a server that could not start at `url`: see
/// [`threads_error`]; anything else is a bind error.
fn cannot_bind(url: &SocketUrl, e: io::Error) -> CliError {
    threads_error(&url.to_string(), &e)
        .unwrap_or_else(|| CliError::Failed(format!("cannot bind {url}: {e}")))
}

/// The error of a server that could not start on an inherited socket.
fn cannot_serve_inherited(fd: i32, e: io::Error) -> CliError {
    threads_error(&format!("descriptor {fd}"), &e).unwrap_or_else(|| {
        CliError::Failed(format!(
            "socket activation: cannot serve on descriptor {fd}: {e}"
        ))
    })
}

/// A thread count the system cannot honour is a usage error; a thread the
/// system refused is said to be one. `None` when `e` is about neither.
fn threads_error(place: &str, e: &io::Error) -> Option<CliError> {
    let threads = e.get_ref()?.downcast_ref::<ThreadsError>()?;
    Some(if threads.is_over_limit() {
        CliError::Usage(format!(
            "{threads} (see --threads, --max-threads, --reactor-threads)"
        ))
    } else {
        CliError::Failed(format!("cannot start the server for {place}: {threads}"))
    })
}
