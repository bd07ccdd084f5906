//! TLS 1.2 and 1.3 for stream connections, on rustls (with *ring*): the
//! server side for both dispatch modes, and the client side.
//!
//! - [`server_config_from_pem`] loads a certificate chain and its private
//!   key (PKCS#8, PKCS#1 or SEC1) from PEM files into a
//!   [`rustls::ServerConfig`], checking that they belong together; a file
//!   that cannot be used is a [`TlsConfigError`] naming the file and the
//!   reason. A program that wants client authentication or its own session
//!   cache builds its own `Arc<ServerConfig>`: everything here takes one.
//! - [`TlsStream::accept`] runs the handshake on a pool thread, under a
//!   deadline, and returns a full-duplex blocking stream (one thread reads
//!   while others write through a [`TlsWriter`]).
//! - [`TlsSession`] is the same server side for an event loop: it is given
//!   ciphertext from a non-blocking socket and hands back plaintext.
//! - [`client_config`], [`server_name`] and [`TlsStream::connect`] are the
//!   client side.
//!
//! Both server sides answer a client that is not speaking TLS with an alert
//! and refuse it as soon as its first bytes arrive, and let a client whose
//! ALPN offer the server does not speak go on without ALPN.
//!
//! # Example
//!
//! A server and a client on loopback, with a certificate made on the spot:
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use std::net::{TcpListener, TcpStream};
//! use std::time::{Duration, Instant};
//! use socketserver::layer::tls::{client_config, server_config_from_pem, server_name, TlsStream};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A self-signed certificate for "localhost" (rcgen), in two PEM files.
//! let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
//! let dir = std::env::temp_dir().join(format!("tls-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
//! std::fs::write(&cert, made.cert.pem())?;
//! std::fs::write(&key, made.signing_key.serialize_pem())?;
//!
//! let server_config = server_config_from_pem(&cert, &key, &[])?;
//! let client_config = client_config(Some(&cert), &[])?; // trust that certificate
//!
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?;
//! let server = std::thread::spawn(move || -> std::io::Result<()> {
//!     let (socket, _) = listener.accept()?;
//!     // On a pool thread, never the accepting one; 10 s to finish the handshake.
//!     let deadline = Instant::now() + Duration::from_secs(10);
//!     let stream = TlsStream::accept(socket.into(), server_config, &[], Some(deadline))?;
//!     let mut line = String::new();
//!     BufReader::new(&stream).read_line(&mut line)?;
//!     (&stream).write_all(line.to_uppercase().as_bytes())?;
//!     stream.close_notify(Duration::from_secs(1))
//! });
//!
//! let tcp = TcpStream::connect(addr)?;
//! let mut client = TlsStream::connect(tcp, client_config, server_name("localhost")?, None)?;
//! client.write_all(b"hello\n")?;
//! let mut answer = String::new();
//! BufReader::new(&client).read_line(&mut answer)?;
//! assert_eq!(answer, "HELLO\n");
//! server.join().unwrap()?;
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Trusted roots: `rustls-native-certs`, not `rustls-platform-verifier`
//!
//! Without a CA file, a client trusts the system's roots, loaded by
//! `rustls-native-certs` into rustls's own (webpki) verifier. The other
//! candidate, `rustls-platform-verifier`, hands verification to the
//! operating system (Security.framework, CryptoAPI, Android); on Linux, the
//! platform this crate serves from, it does what `rustls-native-certs`
//! does, with more dependencies. The choice keeps one verifier for both
//! cases, so that a refused certificate is described the same way with or
//! without `--tls-ca`, and honours `SSL_CERT_FILE` / `SSL_CERT_DIR`, which
//! containers and tests use. What it gives up: on macOS and Windows,
//! revocation checks and enterprise policies of the system verifier.
//!
//! # rustls
//!
//! rustls 0.23 is re-exported as [`rustls`] (its [`pki_types`] too), so a
//! program can build configurations with the same version.
//!
//! [`pki_types`]: rustls::pki_types

mod client;
mod config;
mod handshake;
mod session;
mod stream;

pub use client::{client_config, describe_error, server_name, ClientConfigError};
pub use config::{
    crypto_provider, load_certificate_chain, load_private_key, server_config_from_der,
    server_config_from_pem, TlsConfigError, TlsFile, KEY_MISMATCH, MAX_PEM_FILE,
};
pub use rustls;
pub use session::{PeerClose, ReadReport, TlsSession, TlsSessionError, WriteReport};
pub use stream::{TlsStream, TlsWriter};

use rustls::{CipherSuite, CommonState, ProtocolVersion};

/// What a handshake agreed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1_3` or `TLSv1_2`.
    pub protocol_version: ProtocolVersion,
    /// The cipher suite, such as `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: CipherSuite,
    /// The ALPN protocol chosen, if any (`http/1.1`).
    pub alpn: Option<Vec<u8>>,
    /// The server name the client asked for (SNI): on the server, what the
    /// client sent; on a client, what it sent. IP addresses are never sent.
    pub server_name: Option<String>,
}

impl TlsInfo {
    /// What a connection agreed, once its handshake is done.
    pub(crate) fn of(state: &CommonState, server_name: Option<&str>) -> Option<TlsInfo> {
        Some(TlsInfo {
            protocol_version: state.protocol_version()?,
            cipher_suite: state.negotiated_cipher_suite()?.suite(),
            alpn: state.alpn_protocol().map(<[u8]>::to_vec),
            server_name: server_name.map(str::to_string),
        })
    }

    /// The protocol version as people write it: `TLSv1.3`, `TLSv1.2`.
    pub fn protocol_name(&self) -> String {
        match self.protocol_version {
            ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
            ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
            other => format!("{other:?}"),
        }
    }
}
