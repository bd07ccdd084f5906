//! Layers a stream connection can pass through between the socket and the
//! handler: TLS (feature `tls`).
//!
//! Each layer is self-contained: it takes a connected socket (or bytes, for
//! an event loop) and gives back a stream that reads and writes what the
//! handler sees.

#[cfg(feature = "tls")]
pub mod tls;
