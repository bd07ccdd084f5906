//! Stream layers that run on the worker before a connection reaches its
//! handler: the PROXY header, TLS.
//!
//! Each layer reads (and, for TLS, writes) the first bytes of a connection on
//! the thread that will serve it, never on the acceptor, so that a slow or
//! hostile peer costs only its own connection.
//!
//! - [`proxy`]: the PROXY protocol header (versions 1 and 2) that a load
//!   balancer such as HAProxy sends before the client's bytes, carrying the
//!   client's address.
//!
//! ```
//! use socketserver::layer::proxy::{self, Parsed};
//!
//! let wire = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\nhello";
//! let Parsed::Complete { header, length } = proxy::parse(wire)? else {
//!     unreachable!("the whole header is there")
//! };
//! assert_eq!(header.source, Some("192.0.2.7:40000".parse().unwrap()));
//! assert_eq!(&wire[length..], b"hello");
//! # Ok::<(), proxy::ProxyError>(())
//! ```

pub mod proxy;
