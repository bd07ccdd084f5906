//! echo-upper over TLS on tokio's multi-thread runtime (one worker per CPU)
//! and tokio-rustls, written as tokio-rustls's own server example is: a task
//! per TCP connection, which runs the handshake and then the echo.
//!
//! `tokio-tls-echo [HOST] [--port PORT] [--cert FILE --key FILE]` binds TCP
//! on HOST (default 127.0.0.1) and PORT (default 0). Without `--cert` and
//! `--key` it makes a certificate at start (ECDSA P-256, for `localhost`
//! and `127.0.0.1`, self-signed), writes it and its key to a new temporary
//! directory, and prints `certificate PATH` and `key PATH`, so that a bench
//! can trust it and give the same files to another server. It then prints
//! `listening on tcp://...` and serves until SIGINT or SIGTERM, when it
//! removes the directory it made.
//!
//! Its TLS settings are socketserver's: TLS 1.3 and 1.2 on the ring
//! provider, no ALPN, rustls's in-memory session cache, and no TLS 1.3
//! session tickets (`send_tls13_tickets = 0`, as
//! `socketserver::layer::tls::server_config_from_pem` sets).

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The same buffer size as `socketserver::services::EchoUpper`.
const BUFFER: usize = 16 * 1024;

async fn serve_connection(acceptor: TlsAcceptor, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut stream = acceptor.accept(stream).await?;
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            // close_notify, as socketserver sends.
            return stream.shutdown().await;
        }
        buf[..n].make_ascii_uppercase();
        stream.write_all(&buf[..n]).await?;
    }
}

/// The command line: `[HOST] [--port PORT] [--cert FILE --key FILE]`.
struct Args {
    host: String,
    port: u16,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

fn parse_args() -> io::Result<Args> {
    let bad = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let mut parsed = Args {
        host: "127.0.0.1".into(),
        port: 0,
        cert: None,
        key: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| bad(format!("{name} needs a value")));
        match arg.as_str() {
            "--port" => {
                let port = value("--port")?;
                parsed.port = port
                    .parse()
                    .map_err(|e| bad(format!("--port {port}: {e}")))?;
            }
            "--cert" => parsed.cert = Some(value("--cert")?.into()),
            "--key" => parsed.key = Some(value("--key")?.into()),
            _ if arg.starts_with('-') => return Err(bad(format!("unknown option {arg}"))),
            _ => parsed.host = arg,
        }
    }
    if parsed.cert.is_some() != parsed.key.is_some() {
        return Err(bad("--cert and --key go together".into()));
    }
    Ok(parsed)
}

/// Makes a self-signed certificate and writes it and its key into a new
/// temporary directory: (directory, certificate, key).
fn make_certificate() -> io::Result<(PathBuf, PathBuf, PathBuf)> {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(io::Error::other)?;
    let dir = std::env::temp_dir().join(format!("tokio-tls-echo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.signing_key.serialize_pem())?;
    Ok((dir, cert, key))
}

fn server_config(cert: &PathBuf, key: &PathBuf) -> io::Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| io::Error::other(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| io::Error::other(format!("{}: {e}", key.display())))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(io::Error::other)?;
    config.send_tls13_tickets = 0;
    Ok(config)
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let args = parse_args()?;
    let (made, cert, key) = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => (None, cert.clone(), key.clone()),
        _ => {
            let (dir, cert, key) = make_certificate()?;
            println!("certificate {}", cert.display());
            println!("key {}", key.display());
            (Some(dir), cert, key)
        }
    };
    let acceptor = TlsAcceptor::from(Arc::new(server_config(&cert, &key)?));
    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    println!("listening on tcp://{}", listener.local_addr()?);
    io::stdout().flush()?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(acceptor.clone(), stream));
                }
                Err(e) => eprintln!("tokio-tls-echo: accept: {e}"),
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    if let Some(dir) = made {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}
