//! What every `client` shares: where to connect, how long to wait, and
//! TLS (`--tls`, `--tls-ca`, `--tls-server-name`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use socketserver::client::{ClientTls, Connection};
use socketserver::layer::tls::ClientConfigError;
use socketserver::SocketUrl;

use crate::common::{parse_duration, CliError};
use crate::services::Service;

/// The connection options of every `client SERVICE`. The defaults of
/// `--connect` and `--timeout` are the service's (from the table in
/// `services.rs`).
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The server's URL
    #[arg(long, value_name = "URL")]
    pub connect: SocketUrl,
    /// Give up after SECS: connecting, the TLS handshake, and each wait for an answer
    #[arg(long, value_name = "SECS", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Speak TLS (tcp:// and unix: only), verifying the server's certificate against --tls-ca, or the system's trusted roots
    #[arg(long)]
    pub tls: bool,
    /// Trust the certificate authorities in FILE (PEM) instead of the system's roots
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_ca: Option<PathBuf>,
    /// Check the server's certificate for NAME (and send it as SNI) instead of the URL's host (unix: localhost)
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub tls_server_name: Option<String>,
}

impl ConnectArgs {
    /// Refuses what the arguments ask for that cannot be: TLS over a
    /// datagram URL (a usage error). Call it before anything else.
    pub fn check(&self) -> Result<(), CliError> {
        if self.tls && !self.connect.is_stream() {
            return Err(CliError::Usage(format!(
                "--tls needs a stream URL (tcp:// or unix:), not {}: datagrams stay plaintext",
                self.connect
            )));
        }
        Ok(())
    }

    /// Connects to `--connect`, with TLS when `--tls` is given (offering
    /// the service's ALPN protocols), and sets each read's timeout to
    /// `read_timeout`. A certificate that does not verify, like any
    /// failure to connect, is an error naming the reason (exit 1).
    pub fn open(
        &self,
        service: &Service,
        read_timeout: Option<Duration>,
    ) -> Result<Connection, CliError> {
        self.check()?;
        let connection = if self.tls {
            let tls = client_tls(
                self.tls_ca.as_deref(),
                self.tls_server_name.as_deref(),
                service.alpn,
            )?;
            Connection::connect_tls(&self.connect, Some(self.timeout), &tls)
        } else {
            Connection::connect(&self.connect, Some(self.timeout))
        };
        let connection = connection
            .map_err(|e| CliError::Failed(format!("cannot connect to {}: {e}", self.connect)))?;
        connection.set_read_timeout(read_timeout)?;
        Ok(connection)
    }
}

/// The client TLS settings that `--tls-ca` (trusted roots; the system's when
/// `None`) and `--tls-server-name` (the name to verify; the URL's host when
/// `None`) ask for, offering the ALPN protocols `alpn`. A CA file that cannot
/// be loaded is an error naming the flag, the file and the reason.
pub fn client_tls(
    ca: Option<&Path>,
    server_name: Option<&str>,
    alpn: &[&[u8]],
) -> Result<ClientTls, CliError> {
    let tls = ClientTls::new(ca, alpn).map_err(|e| match e {
        ClientConfigError::CaFile(e) => CliError::Failed(format!(
            "cannot load {} {}: {}",
            e.file().flag(),
            e.path().display(),
            e.reason()
        )),
        other => CliError::Failed(format!("--tls: {other}")),
    })?;
    Ok(match server_name {
        Some(name) => tls.server_name(name),
        None => tls,
    })
}
