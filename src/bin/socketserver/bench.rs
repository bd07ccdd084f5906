//! `bench SERVICE`: the load generator ([`crate::loadgen`]) on the
//! command line.

use std::io::{self, Write};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::loadgen::{self, processes, Config, Mode, Service, TlsTarget, Transport};
use clap::{ArgAction, Args, ValueEnum};
use socketserver::layer::tls::rustls::client::Resumption;
use socketserver::SocketUrl;

use crate::common::{parse_duration, parse_size, CliError};
use crate::connect::client_tls;
use crate::services;

/// The services whose answers the load generator knows how to check.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchService {
    /// Every request must come back uppercased.
    EchoUpper,
    /// Members join a chat room; one line must reach every other member.
    Chat,
}

/// What to measure (echo-upper).
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BenchMode {
    /// Request, answer, next request, on every connection at once (TCP, UDP).
    PingPong,
    /// Connect, one request, close, again: connections per second (TCP).
    ConnectRate,
    /// Open every connection, hold them idle for --duration, then check that
    /// each answers (TCP).
    Hold,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The service the server runs (its answers are checked). chat: N members
    /// join, then one says a line, and the time until every other member has
    /// it is measured
    #[arg(value_enum)]
    service: BenchService,
    /// The server's URL: tcp://HOST:PORT or udp://HOST:PORT [default:
    /// tcp://127.0.0.1:9000; chat: tcp://127.0.0.1:9005]
    #[arg(long, value_name = "URL")]
    connect: Option<SocketUrl>,
    /// What to measure (echo-upper) [default: ping-pong]
    #[arg(long, value_enum)]
    mode: Option<BenchMode>,
    /// Connections (UDP: sockets; chat: members) at once
    #[arg(short = 'c', long, value_name = "N", default_value_t = 16)]
    connections: usize,
    /// Seconds to measure (hold mode: to hold the connections idle)
    #[arg(short = 'd', long, value_name = "SECS", value_parser = parse_duration, default_value = "10")]
    duration: Duration,
    /// Seconds to run before measuring
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "1")]
    warmup: Duration,
    /// Bytes per request (chat: of the line; a KiB or MiB suffix is accepted)
    #[arg(short = 's', long, value_name = "BYTES", value_parser = parse_size, default_value = "64")]
    size: u64,
    /// Client threads, each driving its share of the connections with epoll
    #[arg(short = 't', long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// Seconds to wait for an answer or a connect before counting an error
    /// (UDP: a lost datagram)
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "5")]
    timeout: Duration,
    /// Also report this local process's memory, threads and CPU time (the
    /// server's pid), read from /proc; repeat it (or separate with commas)
    /// for a server of several processes, whose figures are added
    #[arg(long, value_name = "PID", action = ArgAction::Append, value_delimiter = ',')]
    watch_pid: Vec<u32>,
    /// Connect from these local addresses, in turn (TCP), e.g.
    /// 127.0.0.1,127.0.0.2: each has its own ephemeral ports, so more than
    /// one address's ~28,000 connections can reach one server port
    #[arg(long, value_name = "ADDRS", value_delimiter = ',')]
    sources: Vec<IpAddr>,
    /// Spread a hold over N processes of this program, a share of the
    /// connections each (each process has its own open-file limit); the
    /// server is read once, while every process holds all its connections
    #[arg(long, value_name = "N", default_value_t = 1)]
    processes: usize,
    /// Speak TLS on every connection (echo-upper over TCP), a full handshake
    /// each (no session is resumed): in connect-rate mode, handshakes per
    /// second
    #[arg(long)]
    tls: bool,
    /// Trust the certificate authorities in FILE (PEM) instead of the
    /// system's roots
    #[arg(long, value_name = "FILE", requires = "tls")]
    tls_ca: Option<PathBuf>,
    /// Check the server's certificate for NAME instead of the URL's host
    #[arg(long, value_name = "NAME", requires = "tls")]
    tls_server_name: Option<String>,
    /// Print only the JSON report on standard output (one line); without it,
    /// the human summary
    #[arg(long)]
    json: bool,
    /// Run as a child of --processes: announce the steps of the hold on
    /// standard output and wait for a line on standard input after each
    #[arg(long, hide = true)]
    coordinate: bool,
}

impl BenchArgs {
    /// A child's command line for `share` of the connections.
    fn child_args(&self, url: &SocketUrl, share: usize) -> Vec<String> {
        let secs = |d: Duration| d.as_secs_f64().to_string();
        let mut args = vec![
            "bench".to_string(),
            "echo-upper".into(),
            "--connect".into(),
            url.to_string(),
            "--mode".into(),
            "hold".into(),
            "--connections".into(),
            share.to_string(),
            "--duration".into(),
            secs(self.duration),
            "--timeout".into(),
            secs(self.timeout),
            "--size".into(),
            self.size.to_string(),
            "--threads".into(),
            self.threads.to_string(),
            "--json".into(),
            "--coordinate".into(),
        ];
        if !self.sources.is_empty() {
            let sources: Vec<String> = self.sources.iter().map(IpAddr::to_string).collect();
            args.push("--sources".into());
            args.push(sources.join(","));
        }
        if self.tls {
            args.push("--tls".into());
            if let Some(ca) = &self.tls_ca {
                args.push("--tls-ca".into());
                args.push(ca.display().to_string());
            }
            if let Some(name) = &self.tls_server_name {
                args.push("--tls-server-name".into());
                args.push(name.clone());
            }
        }
        args
    }

    /// The TLS settings `--tls`, `--tls-ca` and `--tls-server-name` ask for.
    fn tls_target(&self, url: &SocketUrl) -> Result<Option<TlsTarget>, CliError> {
        if !self.tls {
            return Ok(None);
        }
        let tls = client_tls(self.tls_ca.as_deref(), self.tls_server_name.as_deref(), &[])?;
        let name = tls
            .name_for(url)
            .map_err(|e| CliError::Usage(format!("--tls-server-name: {e}")))?;
        // Every connection a full handshake: nothing is resumed.
        let mut config = (**tls.config()).clone();
        config.resumption = Resumption::disabled();
        Ok(Some(TlsTarget {
            config: Arc::new(config),
            name,
        }))
    }
}

pub fn bench(args: BenchArgs) -> Result<(), CliError> {
    let (service, default_url) = match args.service {
        BenchService::EchoUpper => (Service::EchoUpper, services::ECHO_UPPER.default_url),
        BenchService::Chat => (Service::Chat, services::CHAT.default_url),
    };
    let url = args
        .connect
        .clone()
        .unwrap_or_else(|| default_url.parse().expect("default URLs parse"));
    let (address, transport) = match &url {
        SocketUrl::Tcp(address) => (address, Transport::Tcp),
        SocketUrl::Udp(address) if service == Service::EchoUpper => (address, Transport::Udp),
        other => {
            return Err(CliError::Usage(format!(
                "bench {} speaks {}, not {} (--connect {other})",
                service_name(args.service),
                if service == Service::Chat {
                    "tcp"
                } else {
                    "tcp and udp"
                },
                other.scheme()
            )))
        }
    };
    let mode = match (args.service, args.mode) {
        (BenchService::Chat, None) => Mode::FanOut,
        (BenchService::Chat, Some(_)) => {
            return Err(CliError::Usage(
                "bench chat has one measure (a line's fan-out): --mode is for echo-upper".into(),
            ))
        }
        (BenchService::EchoUpper, None | Some(BenchMode::PingPong)) => Mode::PingPong,
        (BenchService::EchoUpper, Some(BenchMode::ConnectRate)) => Mode::ConnectRate,
        (BenchService::EchoUpper, Some(BenchMode::Hold)) => Mode::Hold,
    };
    let target = address
        .to_socket_addrs()
        .map_err(|e| CliError::Failed(format!("cannot resolve {url}: {e}")))?
        .next()
        .ok_or_else(|| CliError::Failed(format!("{url} resolves to no address")))?;
    let config = Config {
        service,
        mode,
        connections: args.connections,
        threads: args.threads,
        size: usize::try_from(args.size).unwrap_or(usize::MAX),
        warmup: args.warmup,
        duration: args.duration,
        timeout: args.timeout,
        watch_pids: args.watch_pid.clone(),
        sources: args.sources.clone(),
        coordinated: args.coordinate,
        tls: args.tls_target(&url)?,
        ..Config::new(target, transport)
    };
    config.validate().map_err(CliError::Usage)?;
    if args.processes == 0 {
        return Err(CliError::Usage("--processes must be at least 1".into()));
    }
    let report = if args.processes > 1 {
        if args.coordinate {
            return Err(CliError::Usage(
                "a child of --processes runs in one process".into(),
            ));
        }
        let program = std::env::current_exe()
            .map_err(|e| CliError::Failed(format!("cannot find this program to run it: {e}")))?;
        processes::run(&config, args.processes, &program, |share| {
            args.child_args(&url, share)
        })
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidInput => CliError::Usage(e.to_string()),
            _ => CliError::Failed(e.to_string()),
        })?
    } else {
        loadgen::run(&config).map_err(|e| CliError::Failed(e.to_string()))?
    };
    let mut stdout = io::stdout().lock();
    if args.json || args.coordinate {
        writeln!(stdout, "{}", report.to_json())?;
    } else {
        writeln!(stdout, "{report}")?;
    }
    stdout.flush()?;
    if report.errors > 0 {
        return Err(CliError::Failed(format!(
            "{} error(s) during the run: the server's answers were wrong or missing",
            report.errors
        )));
    }
    Ok(())
}

fn service_name(service: BenchService) -> &'static str {
    match service {
        BenchService::EchoUpper => "echo-upper",
        BenchService::Chat => "chat",
    }
}
