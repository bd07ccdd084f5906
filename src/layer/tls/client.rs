//! The client side: a configuration that verifies servers against a CA file
//! or the system's trusted roots, server names, and [`TlsStream::connect`].

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore};
use socket2::Socket;

use super::config::{
    crypto_provider, load_certificates, TlsConfigError, TlsFile, PROTOCOL_VERSIONS,
};
use super::handshake::{self, Incoming};
use super::{TlsInfo, TlsStream};

/// Why a client configuration could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientConfigError {
    /// The CA file (`--tls-ca`) could not be used.
    CaFile(TlsConfigError),
    /// No CA file was given and the system has no trusted root certificate
    /// that could be loaded; `detail` says what was tried.
    NoSystemRoots {
        /// What loading the system's roots reported.
        detail: String,
    },
}

impl fmt::Display for ClientConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientConfigError::CaFile(e) => write!(f, "{e}"),
            ClientConfigError::NoSystemRoots { detail } => write!(
                f,
                "no trusted root certificates found on this system ({detail}); name a CA file"
            ),
        }
    }
}

impl std::error::Error for ClientConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientConfigError::CaFile(e) => Some(e),
            ClientConfigError::NoSystemRoots { .. } => None,
        }
    }
}

/// A client configuration offering TLS 1.3 and 1.2 and the ALPN protocols
/// `alpn` (empty: none), that verifies the server's certificate chain and
/// name against the certificates of `ca_file` (PEM) when given, else
/// against the system's trusted roots (the OpenSSL locations of the
/// platform, or the files that `SSL_CERT_FILE` / `SSL_CERT_DIR` name).
pub fn client_config(
    ca_file: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, ClientConfigError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = load_certificates(path, TlsFile::TrustedCertificates)
                .map_err(ClientConfigError::CaFile)?;
            for (index, cert) in certs.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    ClientConfigError::CaFile(TlsConfigError::new(
                        TlsFile::TrustedCertificates,
                        path,
                        format!(
                            "certificate {} is not a usable CA certificate: {e}",
                            index + 1
                        ),
                    ))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let detail = if found.errors.is_empty() {
                    "none were found".to_string()
                } else {
                    found
                        .errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                return Err(ClientConfigError::NoSystemRoots { detail });
            }
        }
    }
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The name to verify the server's certificate against and to send as SNI:
/// a DNS name (`example.com`, `localhost`) or an IP address (`127.0.0.1`,
/// `::1`, or `[::1]` as a URL writes it).
pub fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_string()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host:?} is neither a DNS name nor an IP address"),
        )
    })
}

impl TlsStream {
    /// Runs the client side of a handshake on a connected TCP or Unix
    /// stream socket (a [`std::net::TcpStream`], a
    /// [`std::os::unix::net::UnixStream`], or a [`Socket`]), verifying the
    /// server as `name`, by `handshake_deadline` (`None`: no limit).
    ///
    /// A server whose certificate does not verify fails with
    /// `InvalidData` and a message that names the reason (`unknown issuer`,
    /// `name mismatch`, `expired`, ...). The stream comes back with no read
    /// or write timeout set.
    pub fn connect(
        socket: impl Into<Socket>,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        handshake_deadline: Option<Instant>,
    ) -> io::Result<TlsStream> {
        let socket: Socket = socket.into();
        socket.set_nonblocking(false)?;
        let sni = match &name {
            ServerName::DnsName(dns) => Some(dns.as_ref().to_string()),
            _ => None,
        };
        let mut conn = ClientConnection::new(config, name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut incoming = Incoming::default();
        handshake::drive(&mut conn, &socket, &mut incoming, handshake_deadline).map_err(|e| {
            match handshake::tls_error(&e) {
                Some(tls) => io::Error::new(
                    e.kind(),
                    format!("TLS handshake failed: {}", describe_error(tls)),
                ),
                None => e,
            }
        })?;
        socket.set_read_timeout(None)?;
        socket.set_write_timeout(None)?;
        let info = TlsInfo::of(&conn, sni.as_deref())
            .ok_or_else(|| io::Error::other("the TLS handshake ended without a session"))?;
        Ok(TlsStream::from_parts(
            socket,
            rustls::Connection::Client(conn),
            incoming,
            info,
        ))
    }
}

/// A rustls error in words, naming the reason a certificate was refused.
pub fn describe_error(e: &rustls::Error) -> Cow<'static, str> {
    match e {
        rustls::Error::InvalidCertificate(cert) => format!(
            "the server's certificate was refused: {}",
            describe_certificate_error(cert)
        )
        .into(),
        rustls::Error::AlertReceived(alert) => {
            format!("the server refused the handshake (alert {alert:?})").into()
        }
        other => other.to_string().into(),
    }
}

fn describe_certificate_error(e: &CertificateError) -> String {
    match e {
        CertificateError::UnknownIssuer => {
            "unknown issuer (not signed by a trusted certificate authority)".into()
        }
        CertificateError::NotValidForName => {
            "name mismatch (the certificate is not valid for the server's name)".into()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let valid = if presented.is_empty() {
                "no name".to_string()
            } else {
                presented.join(", ")
            };
            format!(
                "name mismatch (the certificate is not valid for {}; it is for {valid})",
                expected.to_str()
            )
        }
        CertificateError::Expired => "expired".into(),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "expired ({} s ago)",
            time.as_secs().saturating_sub(not_after.as_secs())
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "not valid yet".into()
        }
        CertificateError::Revoked => "revoked".into(),
        CertificateError::BadSignature => "bad signature".into(),
        // A trusted certificate has the issuer's name but a key of another
        // kind (Debian's snakeoil certificate is named `localhost`).
        CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "unknown issuer (a trusted certificate has its issuer's name, but a key of \
             another kind that did not sign it)"
                .into()
        }
        CertificateError::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
            "it is a CA certificate (basicConstraints CA:TRUE), which cannot be a server's \
             own: sign a server certificate with it, or make a self-signed one with \
             basicConstraints CA:FALSE"
                .into()
        }
        CertificateError::BadEncoding => "malformed certificate".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "not meant for a TLS server (extended key usage)".into()
        }
        other => other.to_string(),
    }
}
