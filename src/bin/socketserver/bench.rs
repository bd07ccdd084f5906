//! `bench SERVICE`: the load generator ([`crate::loadgen`]) on the
//! command line.

use std::io::{self, Write};
use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::loadgen::{self, Config, Mode, Transport};
use clap::{Args, ValueEnum};
use socketserver::SocketUrl;

use crate::common::{parse_duration, parse_size, CliError};

/// The services whose answers the load generator knows how to check.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum BenchService {
    /// Every request must come back uppercased.
    EchoUpper,
}

/// What to measure.
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
    /// The service the server runs (its answers are checked)
    #[arg(value_enum)]
    service: BenchService,
    /// The server's URL: tcp://HOST:PORT or udp://HOST:PORT
    #[arg(long, value_name = "URL", default_value = "tcp://127.0.0.1:9000")]
    connect: SocketUrl,
    /// What to measure
    #[arg(long, value_enum, default_value_t = BenchMode::PingPong)]
    mode: BenchMode,
    /// Connections (UDP: sockets) at once
    #[arg(short = 'c', long, value_name = "N", default_value_t = 16)]
    connections: usize,
    /// Seconds to measure (hold mode: to hold the connections idle)
    #[arg(short = 'd', long, value_name = "SECS", value_parser = parse_duration, default_value = "10")]
    duration: Duration,
    /// Seconds to run before measuring
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "1")]
    warmup: Duration,
    /// Bytes per request (a KiB or MiB suffix is accepted)
    #[arg(short = 's', long, value_name = "BYTES", value_parser = parse_size, default_value = "64")]
    size: u64,
    /// Client threads, each driving its share of the connections with epoll
    #[arg(short = 't', long, value_name = "N", default_value_t = 1)]
    threads: usize,
    /// Seconds to wait for an answer or a connect before counting an error
    /// (UDP: a lost datagram)
    #[arg(long, value_name = "SECS", value_parser = parse_duration, default_value = "5")]
    timeout: Duration,
    /// Also report this local process's memory and threads (the server's pid),
    /// read from /proc while every connection is open
    #[arg(long, value_name = "PID")]
    watch_pid: Option<u32>,
}

pub fn bench(args: BenchArgs) -> Result<(), CliError> {
    let BenchService::EchoUpper = args.service;
    let (address, transport) = match &args.connect {
        SocketUrl::Tcp(address) => (address, Transport::Tcp),
        SocketUrl::Udp(address) => (address, Transport::Udp),
        other => {
            return Err(CliError::Usage(format!(
                "bench speaks tcp and udp, not {} (--connect {other})",
                other.scheme()
            )))
        }
    };
    let target = address
        .to_socket_addrs()
        .map_err(|e| CliError::Failed(format!("cannot resolve {}: {e}", args.connect)))?
        .next()
        .ok_or_else(|| CliError::Failed(format!("{} resolves to no address", args.connect)))?;
    let config = Config {
        mode: match args.mode {
            BenchMode::PingPong => Mode::PingPong,
            BenchMode::ConnectRate => Mode::ConnectRate,
            BenchMode::Hold => Mode::Hold,
        },
        connections: args.connections,
        threads: args.threads,
        size: usize::try_from(args.size).unwrap_or(usize::MAX),
        warmup: args.warmup,
        duration: args.duration,
        timeout: args.timeout,
        watch_pid: args.watch_pid,
        ..Config::new(target, transport)
    };
    config.validate().map_err(CliError::Usage)?;
    let report = loadgen::run(&config).map_err(|e| CliError::Failed(e.to_string()))?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{report}")?;
    writeln!(stdout, "{}", report.to_json())?;
    stdout.flush()?;
    if report.errors > 0 {
        return Err(CliError::Failed(format!(
            "{} error(s) during the run: the server's answers were wrong or missing",
            report.errors
        )));
    }
    Ok(())
}
