//! A client's first flight, arbitrary bytes, through the server's
//! non-blocking TLS session (no socket: the bytes come from a slice that
//! says `WouldBlock` at its end, as a non-blocking socket does). Whatever
//! arrives, the session never panics, never hands out plaintext before a
//! handshake (which arbitrary bytes cannot complete), reads every byte it
//! is offered or stops with an error, and after an error is no longer
//! handshaking and stays failed.
//!
//! The first byte chooses how the rest is cut: into pieces of 1 to 2,332
//! bytes, given through `read_from` or `feed`.
#![no_main]

use std::io::{self, Read};
use std::sync::{Arc, OnceLock};

use socketserver::layer::tls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use socketserver::layer::tls::rustls::ServerConfig;
use socketserver::layer::tls::{server_config_from_der, TlsSession, TlsSessionError};

/// One configuration for the whole run: a certificate made at start-up
/// (no private key is committed), offering ALPN `http/1.1`.
fn config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        server_config_from_der(vec![made.cert.der().clone()], key, &[b"http/1.1"]).unwrap()
    }))
}

/// A slice that reads like a non-blocking socket: `WouldBlock` at its end.
struct WouldBlockAtEnd<'a>(&'a [u8]);

impl Read for WouldBlockAtEnd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.0.read(buf)
    }
}

fn check(data: &[u8]) {
    let Some((&mode, flight)) = data.split_first() else {
        return;
    };
    let piece = 1 + usize::from(mode & 0x3f) * 37;
    let mut session = TlsSession::new(config());
    let mut plaintext = Vec::new();
    let mut failure = None;
    for chunk in flight.chunks(piece) {
        let result = if mode & 0x80 == 0 {
            session
                .read_from(&mut WouldBlockAtEnd(chunk), &mut plaintext, 1 << 16)
                .map(|report| {
                    assert!(report.drained, "a slice ends in WouldBlock");
                    assert_eq!(report.ciphertext, chunk.len(), "every byte is read");
                    assert_eq!(report.plaintext, 0);
                })
        } else {
            session
                .feed(chunk)
                .map(|taken| assert_eq!(taken, chunk.len(), "no plaintext holds bytes back"))
        };
        if let Err(e) = result {
            failure = Some(e);
            break;
        }
    }
    assert!(plaintext.is_empty(), "plaintext before a handshake");
    let mut out = Vec::new();
    let sent = session.write_to(&mut out).expect("a Vec takes everything");
    assert!(sent.all_sent && !session.wants_write());
    assert!(
        session.info().is_none(),
        "arbitrary bytes cannot finish a handshake"
    );
    match failure {
        Some(TlsSessionError::Tls(_)) => {
            assert!(!session.is_handshaking());
            // The failure stays.
            let again = session.read_from(&mut WouldBlockAtEnd(b"\x16\x03\x01"), &mut plaintext, 1);
            assert!(matches!(again, Err(TlsSessionError::Tls(_))));
            assert_eq!(session.send_plaintext(b"after a failure"), 0);
        }
        Some(TlsSessionError::Io(_)) | None => {}
    }
    let _ = session.peer_closed();
    session.close_notify();
    let _ = session.write_to(&mut out);
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
