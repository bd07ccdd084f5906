//! [`ClientTls`]: what a client needs to speak TLS to a server (whom to
//! trust, which name to check), and the connections it makes.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::layer::tls::rustls::pki_types::ServerName;
use crate::layer::tls::rustls::ClientConfig;
use crate::layer::tls::{client_config, server_name, ClientConfigError, TlsStream};
use crate::SocketUrl;

use super::Connection;

/// How a client speaks TLS: the configuration that verifies servers (the
/// certificate authorities it trusts, the ALPN protocols it offers), and
/// the name it checks the server's certificate against when not the URL's
/// host.
///
/// Cloning it is cheap: the configuration is shared.
///
/// ```no_run
/// use std::time::Duration;
/// use socketserver::client::{ClientTls, Connection};
/// use socketserver::client::qa::QaClient;
///
/// // Trust the CA in ca.pem; the name checked is the URL's host, 127.0.0.1.
/// let tls = ClientTls::new(Some("ca.pem".as_ref()), &[])?;
/// let url = "tcp://127.0.0.1:9001".parse()?;
/// let connection = Connection::connect_tls(&url, Some(Duration::from_secs(5)), &tls)?;
/// let mut bot = QaClient::on(connection)?;
/// println!("{}", bot.ask("你好")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    server_name: Option<String>,
}

impl ClientTls {
    /// Trusts the certificates of `ca_file` (PEM) when given, else the
    /// system's trusted roots (see
    /// [`client_config`](crate::layer::tls::client_config)), and offers the
    /// ALPN protocols `alpn` (empty: none; `b"http/1.1"` for HTTP).
    pub fn new(ca_file: Option<&Path>, alpn: &[&[u8]]) -> Result<ClientTls, ClientConfigError> {
        Ok(ClientTls::with_config(client_config(ca_file, alpn)?))
    }

    /// Uses a configuration made elsewhere (client certificates, other
    /// roots, session resumption settings).
    pub fn with_config(config: Arc<ClientConfig>) -> ClientTls {
        ClientTls {
            config,
            server_name: None,
        }
    }

    /// Checks the server's certificate against `name` (a DNS name or an IP
    /// address), and sends it as SNI, instead of the URL's host.
    pub fn server_name(mut self, name: impl Into<String>) -> ClientTls {
        self.server_name = Some(name.into());
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// The name checked for a server at `url`: the one given to
    /// [`server_name`](ClientTls::server_name), else the URL's host
    /// (`localhost` for a Unix socket, which has none). An invalid name
    /// fails with `InvalidInput`.
    pub fn name_for(&self, url: &SocketUrl) -> io::Result<ServerName<'static>> {
        match &self.server_name {
            Some(name) => server_name(name),
            None => server_name(url_host(url)),
        }
    }
}

/// The host of a URL, as a certificate names it: `example.com`,
/// `127.0.0.1`, `::1` (without brackets); `localhost` for Unix sockets.
fn url_host(url: &SocketUrl) -> &str {
    let authority = match url {
        SocketUrl::Tcp(authority) | SocketUrl::Udp(authority) => authority.as_str(),
        SocketUrl::Unix(_) | SocketUrl::Unixgram(_) => return "localhost",
    };
    if let Some(v6) = authority
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
    {
        return v6.0;
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _port)| host)
}

impl Connection {
    /// Connects to a `tcp://` or `unix:` URL and runs a TLS handshake,
    /// verifying the server as `tls` says. `timeout` bounds the connect
    /// (TCP) and the handshake (`None`: the system's limit, and no limit).
    ///
    /// A server whose certificate does not verify fails with `InvalidData`
    /// and a message naming the reason (`unknown issuer`, `name mismatch`,
    /// `expired`...); a datagram URL fails with `InvalidInput`.
    pub fn connect_tls(
        url: &SocketUrl,
        timeout: Option<Duration>,
        tls: &ClientTls,
    ) -> io::Result<Connection> {
        let name = tls.name_for(url)?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let stream = match Connection::connect(url, timeout)? {
            Connection::Tcp(stream) => {
                TlsStream::connect(stream, Arc::clone(&tls.config), name, deadline)?
            }
            Connection::Unix(stream) => {
                TlsStream::connect(stream, Arc::clone(&tls.config), name, deadline)?
            }
            Connection::Tls(stream) => return Ok(Connection::Tls(stream)),
        };
        Ok(Connection::Tls(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_a_url_is_what_a_certificate_names() {
        let host = |url: &str| url_host(&url.parse().unwrap()).to_string();
        assert_eq!(host("tcp://example.com:443"), "example.com");
        assert_eq!(host("tcp://127.0.0.1:9000"), "127.0.0.1");
        assert_eq!(host("tcp://[::1]:9000"), "::1");
        assert_eq!(host("tcp://[2001:db8::7]:1"), "2001:db8::7");
        assert_eq!(host("unix:/tmp/s.sock"), "localhost");
    }

    #[test]
    fn the_name_checked_is_the_given_one_or_the_host() {
        let config = ClientConfig::builder_with_provider(crate::layer::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(crate::layer::tls::rustls::RootCertStore::empty())
            .with_no_client_auth();
        let url: SocketUrl = "tcp://127.0.0.1:1".parse().unwrap();
        let tls = ClientTls::with_config(Arc::new(config));
        assert_eq!(
            tls.name_for(&url).unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        let tls = tls.server_name("example.com");
        assert_eq!(
            tls.name_for(&url).unwrap(),
            ServerName::try_from("example.com").unwrap()
        );
        let bad = tls.clone().server_name("not a name");
        assert_eq!(
            bad.name_for(&url).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
