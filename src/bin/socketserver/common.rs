//! What every command shares: errors and exit codes, pool and bind options,
//! size and duration parsing, and running a group of servers.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use socketserver::dispatch::ThreadsError;
use socketserver::request::MessageHandler;
use socketserver::transport::Scheme;
use socketserver::{
    DatagramRequest, Options, ReactorTcpServer, ReactorUnixStreamServer, RequestHandler,
    ServerGroup, SocketUrl, StreamRequest, ThreadingTcpServer, ThreadingUdpServer,
    ThreadingUnixDatagramServer, ThreadingUnixStreamServer,
};

/// How a command failed: a usage error exits 2, anything else 1.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments: exit 2.
    Usage(String),
    /// Anything else: exit 1.
    Failed(String),
}

impl CliError {
    pub fn report(self) -> ExitCode {
        match self {
            CliError::Usage(why) => {
                eprintln!("error: {why}\n\nFor more information, try '--help'.");
                ExitCode::from(2)
            }
            CliError::Failed(why) => {
                eprintln!("error: {why}");
                ExitCode::from(1)
            }
        }
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Failed(e.to_string())
    }
}

/// Options of the thread pool and the limits, shared by every `serve`.
#[derive(Args, Debug)]
pub struct PoolArgs {
    /// Worker threads kept warm [default: number of CPUs]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Most worker threads [default: as many as --max-connections]
    #[arg(long, value_name = "N")]
    max_threads: Option<usize>,
    /// Connections waiting for a thread
    #[arg(long, value_name = "N", default_value_t = 1024)]
    queue: usize,
    /// Most connections open at once
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_connections: usize,
    /// Close a connection that sends nothing for SECS
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
    /// How connections are served: a thread each, or parked on event loops between messages (no effect on datagrams)
    #[arg(long, value_enum, value_name = "MODE", default_value = "threads")]
    pub dispatch: DispatchMode,
    /// Event loops in reactor mode [default: number of CPUs]
    #[arg(long, value_name = "N")]
    reactor_threads: Option<usize>,
}

/// How a stream service runs its connections.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DispatchMode {
    /// A pool thread holds each connection for its whole life.
    Threads,
    /// Connections wait on event loops; messages run inline or on the pool.
    Reactor,
}

impl PoolArgs {
    /// The server options these arguments ask for; `default_idle` applies when
    /// `--idle-timeout` is not given.
    pub fn options(&self, default_idle: Option<Duration>) -> Options {
        let mut options = Options::new()
            .queue(self.queue)
            .max_connections(self.max_connections)
            .idle_timeout(self.idle_timeout.or(default_idle))
            .write_timeout(Some(self.write_timeout))
            .shutdown_timeout(self.shutdown_timeout)
            .reject_when_full(self.reject_when_full);
        if let Some(threads) = self.threads {
            options = options.threads(threads);
        }
        if let Some(max_threads) = self.max_threads {
            options = options.max_threads(max_threads);
        }
        if let Some(loops) = self.reactor_threads {
            options = options.reactor_threads(loops);
        }
        options
    }
}

/// The `--bind` option, repeatable.
#[derive(Args, Debug)]
pub struct BindArgs {
    /// Listen on URL: tcp://HOST:PORT, udp://HOST:PORT, unix:PATH or unixgram:PATH (repeatable)
    #[arg(long = "bind", value_name = "URL")]
    urls: Vec<SocketUrl>,
}

impl BindArgs {
    /// The URLs to bind, or `default` when none was given; every one must use
    /// one of `schemes`.
    pub fn urls(&self, default: &str, schemes: &[Scheme]) -> Result<Vec<SocketUrl>, CliError> {
        if self.urls.is_empty() {
            return Ok(vec![default.parse().expect("default URLs parse")]);
        }
        for url in &self.urls {
            if !schemes.contains(&url.scheme()) {
                return Err(CliError::Usage(format!(
                    "this service does not speak {} (--bind {url}); it speaks {}",
                    url.scheme(),
                    schemes
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        Ok(self.urls.clone())
    }
}

/// Binds servers for a service and runs them together.
pub struct Launcher {
    group: ServerGroup,
    options: Options,
    dispatch: DispatchMode,
}

impl Launcher {
    pub fn new(options: Options, dispatch: DispatchMode) -> Self {
        Launcher {
            group: ServerGroup::new(),
            options,
            dispatch,
        }
    }

    /// Binds a stream server (TCP or Unix) at `url` for a message handler,
    /// in the chosen dispatch mode.
    pub fn stream<H: MessageHandler + Clone>(
        &mut self,
        url: &SocketUrl,
        handler: &H,
    ) -> Result<(), CliError> {
        if self.dispatch == DispatchMode::Threads {
            return self.bind_threads(url, handler.clone());
        }
        let options = self.options.clone();
        let handler = handler.clone();
        match url {
            SocketUrl::Tcp(addr) => self.group.add(
                ReactorTcpServer::bind_with(addr.as_str(), handler, options)
                    .map_err(|e| cannot_bind(url, e))?,
            ),
            SocketUrl::Unix(path) => self.group.add(
                ReactorUnixStreamServer::bind_with(path, handler, options)
                    .map_err(|e| cannot_bind(url, e))?,
            ),
            _ => return Err(CliError::Usage(format!("{url} is not a stream URL"))),
        }
        Ok(())
    }

    /// Binds a threading stream server (TCP or Unix) at `url`.
    fn bind_threads<H: RequestHandler<StreamRequest>>(
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

    /// Binds a threading datagram server (UDP or Unix) at `url`.
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

    /// Binds a threading server at `url`, stream or datagram as the URL
    /// says, for a handler that serves both.
    pub fn any<H>(&mut self, url: &SocketUrl, handler: &H) -> Result<(), CliError>
    where
        H: MessageHandler + RequestHandler<DatagramRequest> + Clone,
    {
        if url.is_stream() {
            self.stream(url, handler)
        } else {
            self.datagram(url, handler.clone())
        }
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

/// The error of a server that could not start at `url`: a thread count the
/// system cannot honour is a usage error, a thread the system refused is
/// said to be one; anything else is a bind error.
fn cannot_bind(url: &SocketUrl, e: io::Error) -> CliError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ThreadsError>())
    {
        Some(threads) if threads.is_over_limit() => CliError::Usage(format!(
            "{threads} (see --threads, --max-threads, --reactor-threads)"
        )),
        Some(threads) => CliError::Failed(format!("cannot start the server for {url}: {threads}")),
        None => CliError::Failed(format!("cannot bind {url}: {e}")),
    }
}

#[allow(dead_code)] // used by the services that take sizes
/// Calls `send` with each of `args`, or, when there are none, with each line
/// of standard input (without its terminator; bytes that are not UTF-8 are
/// replaced): how the line clients read their messages.
pub fn for_each_message(
    args: &[String],
    mut send: impl FnMut(&str) -> Result<(), CliError>,
) -> Result<(), CliError> {
    if !args.is_empty() {
        return args.iter().try_for_each(|message| send(message));
    }
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    while stdin.read_until(b'\n', &mut line)? > 0 {
        send(String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']))?;
        line.clear();
    }
    Ok(())
}

/// Parses a byte count with an optional KiB, MiB or GiB suffix (also K, M, G,
/// KB, MB, GB, all meaning powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 1024, 64KiB, 16MiB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use KiB, MiB or GiB)"
            ))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The longest duration any flag takes: a year, in seconds (SPEC rule 6).
pub const MAX_SECONDS: u64 = 365 * 24 * 3600;

/// Parses a duration in seconds, fractions allowed (`0.5`, `10`), at most
/// [`MAX_SECONDS`] (a year); negative values, NaN and infinity are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!(
            "{text:?} is not a valid number of seconds (0 to {MAX_SECONDS})"
        ));
    }
    if seconds > MAX_SECONDS as f64 {
        return Err(format!(
            "{text:?} seconds is too long: at most {MAX_SECONDS} (a year)"
        ));
    }
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text:?} is not a valid number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn durations_are_at_most_a_year() {
        assert_eq!(
            parse_duration("31536000"),
            Ok(Duration::from_secs(MAX_SECONDS))
        );
        for text in [
            "31536000.5",
            "31536001",
            "1e19",
            "1e400",
            "inf",
            "-inf",
            "NaN",
            "nan",
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains(text), "{err}");
        }
        assert!(parse_duration("1e19")
            .unwrap_err()
            .contains("at most 31536000"));
    }

    proptest::proptest! {
        #[test]
        fn any_number_is_a_duration_of_at_most_a_year_or_refused(seconds: f64) {
            match parse_duration(&seconds.to_string()) {
                Ok(d) => proptest::prop_assert!(
                    seconds >= 0.0 && d <= Duration::from_secs(MAX_SECONDS)
                ),
                Err(_) => proptest::prop_assert!(
                    !(0.0..=MAX_SECONDS as f64).contains(&seconds)
                ),
            }
        }
    }
}
