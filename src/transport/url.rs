//! [`SocketUrl`]: where a server listens or a client connects, as a URL.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::Scheme;

/// A socket address with its transport: `tcp://HOST:PORT`, `udp://HOST:PORT`,
/// `unix:PATH` or `unixgram:PATH`. HOST is a name, an IPv4 address, or an IPv6
/// address in brackets (`tcp://[::1]:9000`); port 0 asks for a free port.
///
/// ```
/// use socketserver::SocketUrl;
///
/// let url: SocketUrl = "tcp://[::1]:9000".parse().unwrap();
/// assert_eq!(url, SocketUrl::Tcp("[::1]:9000".into()));
/// assert_eq!(url.to_string(), "tcp://[::1]:9000");
/// assert!("tcp://localhost".parse::<SocketUrl>().is_err()); // no port
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SocketUrl {
    /// `tcp://HOST:PORT`; holds `HOST:PORT`, ready for `ToSocketAddrs`.
    Tcp(String),
    /// `udp://HOST:PORT`; holds `HOST:PORT`.
    Udp(String),
    /// `unix:PATH`: a Unix stream socket.
    Unix(PathBuf),
    /// `unixgram:PATH`: a Unix datagram socket.
    Unixgram(PathBuf),
}

impl SocketUrl {
    /// The scheme: `tcp`, `udp`, `unix` or `unixgram`.
    pub fn scheme(&self) -> Scheme {
        match self {
            SocketUrl::Tcp(_) => Scheme::Tcp,
            SocketUrl::Udp(_) => Scheme::Udp,
            SocketUrl::Unix(_) => Scheme::Unix,
            SocketUrl::Unixgram(_) => Scheme::Unixgram,
        }
    }

    /// True for the stream transports (`tcp`, `unix`).
    pub fn is_stream(&self) -> bool {
        self.scheme().is_stream()
    }
}

/// Why a [`SocketUrl`] did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseUrlError(String);

impl fmt::Display for ParseUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseUrlError {}

impl SocketUrl {
    /// The URL of `scheme` holding `rest`: `HOST:PORT` for the IP schemes, a
    /// path for the Unix ones.
    fn of(scheme: Scheme, rest: String) -> SocketUrl {
        match scheme {
            Scheme::Tcp => SocketUrl::Tcp(rest),
            Scheme::Udp => SocketUrl::Udp(rest),
            Scheme::Unix => SocketUrl::Unix(PathBuf::from(rest)),
            Scheme::Unixgram => SocketUrl::Unixgram(PathBuf::from(rest)),
        }
    }
}

impl FromStr for SocketUrl {
    type Err = ParseUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |why: &str| ParseUrlError(format!("invalid URL {text:?}: {why}"));
        let known = text
            .split_once(':')
            .and_then(|(name, rest)| Some((Scheme::from_name(name)?, rest)));
        let Some((scheme, rest)) = known else {
            let expected = Scheme::ALL.map(|s| format!("{s}:{}", placeholder(s)));
            let mut why = format!("expected {}", expected.join(", "));
            if host_port(text).is_ok() {
                why.push_str(&format!(" (did you mean tcp://{text}?)"));
            }
            return Err(error(&why));
        };
        if scheme.is_inet() {
            let rest = rest
                .strip_prefix("//")
                .ok_or_else(|| error(&format!("expected {scheme}://HOST:PORT")))?;
            return host_port(rest)
                .map(|addr| SocketUrl::of(scheme, addr))
                .map_err(|why| error(&why));
        }
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(error("the path is empty"));
        }
        Ok(SocketUrl::of(scheme, path.to_string()))
    }
}

/// What follows a scheme's colon, in help texts.
fn placeholder(scheme: Scheme) -> &'static str {
    if scheme.is_inet() {
        "//HOST:PORT"
    } else {
        "PATH"
    }
}

/// Checks `HOST:PORT` (`[V6]:PORT` for IPv6) and returns it unchanged.
fn host_port(text: &str) -> Result<String, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("unclosed '[' in the host")?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{v6:?} is not an IPv6 address"))?;
        let port = after.strip_prefix(':').ok_or("missing :PORT")?;
        (v6, port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or("missing :PORT")?;
        if host.contains(':') {
            return Err("an IPv6 address must be in brackets".into());
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host.contains('/') || port.contains('/') {
        return Err("a path is not allowed".into());
    }
    port.parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port number (0 to 65535)"))?;
    Ok(text.to_string())
}

impl fmt::Display for SocketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme();
        match self {
            SocketUrl::Tcp(addr) | SocketUrl::Udp(addr) => write!(f, "{scheme}://{addr}"),
            SocketUrl::Unix(path) | SocketUrl::Unixgram(path) => {
                write!(f, "{scheme}:{}{}", slashes(path), path.display())
            }
        }
    }
}

/// Parsing drops a `//` after `unix:`, so a path that itself starts with
/// `//` is printed with one more, to read back the same.
fn slashes(path: &std::path::Path) -> &'static str {
    if path.as_os_str().as_encoded_bytes().starts_with(b"//") {
        "//"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scheme() {
        assert_eq!(
            "tcp://127.0.0.1:0".parse(),
            Ok(SocketUrl::Tcp("127.0.0.1:0".into()))
        );
        assert_eq!(
            "udp://localhost:9002".parse(),
            Ok(SocketUrl::Udp("localhost:9002".into()))
        );
        assert_eq!(
            "udp://[::1]:53".parse(),
            Ok(SocketUrl::Udp("[::1]:53".into()))
        );
        assert_eq!(
            "unix:/tmp/a.sock".parse(),
            Ok(SocketUrl::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            "unix:rel.sock".parse(),
            Ok(SocketUrl::Unix("rel.sock".into()))
        );
        assert_eq!(
            "unixgram:/tmp/d.sock".parse(),
            Ok(SocketUrl::Unixgram("/tmp/d.sock".into()))
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://127.0.0.1:80",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:65536",
            "tcp://127.0.0.1:http",
            "tcp://:9000",
            "tcp://::1:9000",
            "tcp://[::1:9000",
            "tcp://[nonsense]:9000",
            "unix:",
            "127.0.0.1:9000",
            "",
        ] {
            assert!(bad.parse::<SocketUrl>().is_err(), "{bad} should not parse");
        }
        let e = "127.0.0.1:9000"
            .parse::<SocketUrl>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean tcp://127.0.0.1:9000?"), "{e}");
        let e = "ftp://x:1".parse::<SocketUrl>().unwrap_err().to_string();
        assert!(
            e.contains("tcp://HOST:PORT, udp://HOST:PORT, unix:PATH, unixgram:PATH"),
            "{e}"
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "tcp://[::1]:9000",
            "udp://127.0.0.1:1",
            "unix:/x",
            "unixgram:/y",
            "unix:////double",
        ] {
            assert_eq!(text.parse::<SocketUrl>().unwrap().to_string(), text);
        }
        // A path that starts with `//` (found by the property tests) prints
        // back as itself, not as a relative path.
        for url in [
            SocketUrl::Unix("//0".into()),
            SocketUrl::Unixgram("//tmp/s".into()),
        ] {
            assert_eq!(url.to_string().parse::<SocketUrl>(), Ok(url));
        }
        assert_eq!(
            "unix:////tmp/s".parse::<SocketUrl>(),
            Ok(SocketUrl::Unix("//tmp/s".into()))
        );
    }
}
