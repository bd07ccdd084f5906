//! The address of a peer or of a server's own socket.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use socket2::SockAddr;

/// Where a request came from, or where a server listens: an IP address and port,
/// or a Unix socket path.
///
/// `Display` writes the form a log line or a user expects: `127.0.0.1:5000`,
/// `[::1]:5000`, `unix:/tmp/app.sock`, or `unix:(unnamed)` for a Unix client that
/// never bound its socket to a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 or IPv6 socket address.
    Inet(SocketAddr),
    /// A Unix-domain socket; `None` when the socket is unnamed.
    Unix(Option<PathBuf>),
}

impl Address {
    /// The IP socket address, if this is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            Address::Inet(addr) => Some(*addr),
            Address::Unix(_) => None,
        }
    }

    /// The Unix socket path, if this is a named Unix socket.
    pub fn as_unix_path(&self) -> Option<&Path> {
        match self {
            Address::Unix(path) => path.as_deref(),
            Address::Inet(_) => None,
        }
    }

    pub(crate) fn from_sockaddr(addr: &SockAddr) -> Address {
        match addr.as_socket() {
            Some(inet) => Address::Inet(inet),
            None => Address::Unix(addr.as_pathname().map(Path::to_path_buf)),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::Inet(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(addr) => write!(f, "{addr}"),
            Address::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Address::Unix(None) => f.write_str("unix:(unnamed)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_forms() {
        let v4: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        assert_eq!(Address::from(v4).to_string(), "127.0.0.1:5000");
        assert_eq!(Address::from(v6).to_string(), "[::1]:5000");
        assert_eq!(
            Address::Unix(Some("/tmp/a.sock".into())).to_string(),
            "unix:/tmp/a.sock"
        );
        assert_eq!(Address::Unix(None).to_string(), "unix:(unnamed)");
    }

    #[test]
    fn conversions_from_sockaddr() {
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        let addr = Address::from_sockaddr(&SockAddr::from(v6));
        assert_eq!(addr.as_inet(), Some(v6));
        assert_eq!(addr.as_unix_path(), None);
        let unix = Address::from_sockaddr(&SockAddr::unix("/tmp/x.sock").unwrap());
        assert_eq!(unix.as_unix_path(), Some(Path::new("/tmp/x.sock")));
        assert_eq!(unix.as_inet(), None);
    }
}
