//! Loading a certificate chain and its private key from PEM files into a
//! [`ServerConfig`], with errors that name the file and the reason.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ParsedCertificate;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ServerConfig, SupportedProtocolVersion};

/// The largest PEM file read, in bytes: far more than any certificate chain
/// or trust bundle, and a bound on what a wrong path (a device, a log file)
/// can make the loader allocate.
pub const MAX_PEM_FILE: u64 = 4 << 20;

/// The protocol versions every configuration made here offers: TLS 1.3 and
/// TLS 1.2.
pub(crate) static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The cryptography behind every configuration made here: *ring*, chosen
/// explicitly so that no process-wide default provider has to be installed
/// (and none installed by another crate is picked up by surprise).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Which file a [`TlsConfigError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    /// The server's certificate chain (the program's `--tls-cert`).
    Certificate,
    /// The server's private key (`--tls-key`).
    PrivateKey,
    /// The certificate authorities a client trusts (`--tls-ca`).
    TrustedCertificates,
}

impl TlsFile {
    /// The program's command-line flag that names this file: `--tls-cert`,
    /// `--tls-key` or `--tls-ca`.
    pub fn flag(self) -> &'static str {
        match self {
            TlsFile::Certificate => "--tls-cert",
            TlsFile::PrivateKey => "--tls-key",
            TlsFile::TrustedCertificates => "--tls-ca",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            TlsFile::Certificate => "TLS certificate",
            TlsFile::PrivateKey => "TLS private key",
            TlsFile::TrustedCertificates => "trusted TLS certificates",
        }
    }
}

/// A PEM file that could not be used: which one, its path, and a one-line
/// reason.
///
/// The program prints it as
/// `error: cannot load {flag} {path}: {reason}`:
///
/// ```
/// # use socketserver::layer::tls::TlsConfigError;
/// fn report(e: &TlsConfigError) -> String {
///     format!("error: cannot load {} {}: {}", e.file().flag(), e.path().display(), e.reason())
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfigError {
    file: TlsFile,
    path: PathBuf,
    reason: String,
}

impl TlsConfigError {
    pub(crate) fn new(file: TlsFile, path: &Path, reason: impl Into<String>) -> Self {
        TlsConfigError {
            file,
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// Which file failed.
    pub fn file(&self) -> TlsFile {
        self.file
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why, in one line: the file cannot be read, is not PEM, holds no
    /// certificate or no private key, or the key does not match the
    /// certificate (exactly `the key does not match the certificate`).
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot load the {} {}: {}",
            self.file.noun(),
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for TlsConfigError {}

/// The reason text for a key that belongs to another certificate.
pub const KEY_MISMATCH: &str = "the key does not match the certificate";

/// Builds a server configuration from a PEM certificate chain (the server's
/// certificate first, then the intermediates) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1), offering TLS 1.3 and 1.2 and the ALPN
/// protocols `alpn` in order of preference (empty: no ALPN).
///
/// The key is checked against the certificate's public key. Client
/// authentication is off. Sessions resume over TLS 1.2 (rustls's in-memory
/// cache of 256 sessions), but the server sends no TLS 1.3 session tickets
/// ([`ServerConfig::send_tls13_tickets`] is 0): tickets are the one thing a
/// TLS 1.3 server sends unasked, and a client that never reads (the
/// course's upload client sends its file and closes) would close with them
/// unread in its socket, which makes its kernel reset the connection, and
/// the server's kernel drop the end of the upload. A program that wants
/// other settings builds its own [`ServerConfig`]: everything in this
/// module takes an `Arc<ServerConfig>`.
///
/// ```no_run
/// use std::path::Path;
/// use socketserver::layer::tls::server_config_from_pem;
///
/// let config = server_config_from_pem(
///     Path::new("cert.pem"),
///     Path::new("key.pem"),
///     &[b"http/1.1"],
/// )
/// .map_err(|e| format!("cannot load {} {}: {}", e.file().flag(), e.path().display(), e.reason()))?;
/// # Ok::<(), String>(())
/// ```
pub fn server_config_from_pem(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let chain = load_certificate_chain(cert)?;
    let key_der = load_private_key(key)?;
    server_config(chain, key_der, alpn, cert, key)
}

/// [`server_config_from_pem`] for a chain and a key already in memory (DER),
/// with rustls's own errors (a key that does not match the certificate is
/// [`rustls::Error::InconsistentKeys`]); the same settings.
pub fn server_config_from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// [`server_config_from_pem`] once the files are read; `cert` and `key` are
/// the paths named in an error.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
    cert: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = crypto_provider();
    let Some(first) = chain.first() else {
        return Err(TlsConfigError::new(
            TlsFile::Certificate,
            cert,
            "no certificate in it",
        ));
    };
    if let Err(e) = ParsedCertificate::try_from(first) {
        return Err(TlsConfigError::new(
            TlsFile::Certificate,
            cert,
            format!("the first certificate is not a valid X.509 certificate: {e}"),
        ));
    }
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| {
            TlsConfigError::new(
                TlsFile::PrivateKey,
                key,
                format!("the private key is not usable: {e}"),
            )
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsConfigError::new(TlsFile::PrivateKey, key, KEY_MISMATCH));
        }
        // The provider cannot tell the key's public half: nothing to check.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(TlsConfigError::new(
                TlsFile::Certificate,
                cert,
                format!("the certificate cannot be used: {e}"),
            ));
        }
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // See above: nothing unasked after the handshake.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Reads a PEM certificate chain: every `CERTIFICATE` section of the file,
/// in order (other sections, such as a private key, are skipped).
pub fn load_certificate_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    load_certificates(path, TlsFile::Certificate)
}

/// Reads every `CERTIFICATE` section of a PEM file, for `file`.
pub(crate) fn load_certificates(
    path: &Path,
    file: TlsFile,
) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let bytes = read_pem_file(path, file)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::new(file, path, pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(TlsConfigError::new(
            file,
            path,
            absent_reason(&bytes, "certificate"),
        ));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file: PKCS#8 (`PRIVATE KEY`),
/// PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let file = TlsFile::PrivateKey;
    let bytes = read_pem_file(path, file)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsConfigError::new(
            file,
            path,
            absent_reason(&bytes, "private key"),
        )),
        Err(e) => Err(TlsConfigError::new(file, path, pem_reason(&e))),
    }
}

fn read_pem_file(path: &Path, file: TlsFile) -> Result<Vec<u8>, TlsConfigError> {
    let unreadable = |e: io::Error| TlsConfigError::new(file, path, io_reason(&e));
    let opened = std::fs::File::open(path).map_err(unreadable)?;
    if opened.metadata().map_err(unreadable)?.is_dir() {
        return Err(TlsConfigError::new(file, path, "is a directory"));
    }
    let mut bytes = Vec::new();
    opened
        .take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(TlsConfigError::new(
            file,
            path,
            format!("too large for a PEM file (over {} MiB)", MAX_PEM_FILE >> 20),
        ));
    }
    Ok(bytes)
}

/// `cannot read it: No such file or directory`, without the `(os error N)`.
fn io_reason(e: &io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    format!("cannot read it: {text}")
}

fn absent_reason(bytes: &[u8], what: &str) -> String {
    if contains(bytes, b"-----BEGIN ") {
        format!("no {what} in it")
    } else {
        format!("not PEM (no -----BEGIN line), so no {what} in it")
    }
}

fn pem_reason(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "not valid PEM: a section does not end (no {} line)",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { .. } => {
            "not valid PEM: a malformed -----BEGIN line".into()
        }
        pem::Error::Base64Decode(detail) => format!("not valid PEM: bad base64 ({detail})"),
        pem::Error::NoItemsFound => "nothing usable in it".into(),
        pem::Error::SectionTooLarge => "not valid PEM: a section is too large".into(),
        other => format!("not valid PEM: {other}"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
