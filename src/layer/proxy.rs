//! The PROXY protocol header, versions 1 (text) and 2 (binary), as a server
//! receives it from a load balancer (HAProxy's `send-proxy`/`send-proxy-v2`,
//! the cloud load balancers' "proxy protocol" option).
//!
//! A load balancer that relays a TCP connection opens its own connection to
//! the server, so the server sees the balancer's address as the peer. With
//! the PROXY protocol the balancer first writes one header naming the
//! client's address and port, then relays the client's bytes. The format is
//! haproxy.org's `doc/proxy-protocol.txt`.
//!
//! - [`parse`] looks at the bytes received so far and says whether they hold
//!   a complete header ([`Parsed::Complete`], with the number of bytes it
//!   took), a prefix of one that may still be valid ([`Parsed::Incomplete`]:
//!   read more), or something no further byte can make valid (a
//!   [`ProxyError`]). It refuses at the first byte that rules a header out,
//!   so a client that speaks its own protocol straight away is turned away
//!   at once rather than at the deadline.
//! - [`read_header`] does the reading on a blocking stream (the threads
//!   mode): it reads in chunks, never more than the header needs once a
//!   version 2 length is known, and hands back the service's bytes that came
//!   in with the header.
//! - [`ProxyHeader::source`] is the client's address, or `None` when the
//!   connection's real peer must be kept: a version 2 `LOCAL` header (a
//!   balancer's health check), a version 1 `UNKNOWN` line, or a version 2
//!   header of family UNSPEC or UNIX. [`ProxyHeader::peer_or`] picks the
//!   address to use.
//! - [`v1_header`], [`v1_unknown`], [`v2_header`] and [`v2_local`] write what
//!   a load balancer sends, for clients and tests.
//!
//! Version 2 TLVs (the type-length-value extensions after the addresses) are
//! skipped, not interpreted.
//!
//! # Example
//!
//! A header, then the client's first bytes, arriving in one read:
//!
//! ```
//! use std::net::SocketAddr;
//! use socketserver::layer::proxy::{self, Parsed, Version};
//!
//! let client: SocketAddr = "[2001:db8::7]:5555".parse().unwrap();
//! let server: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
//! let mut wire = proxy::v2_header(client, server);
//! wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
//!
//! // Any strict prefix of the header asks for more bytes.
//! assert_eq!(proxy::parse(&wire[..20])?, Parsed::Incomplete);
//!
//! let Parsed::Complete { header, length } = proxy::parse(&wire)? else {
//!     unreachable!("the whole header is there")
//! };
//! assert_eq!(header.version, Version::V2);
//! assert_eq!(header.source, Some(client));
//! assert_eq!(header.source.unwrap().to_string(), "[2001:db8::7]:5555");
//! assert_eq!(&wire[length..], b"GET / HTTP/1.1\r\n"); // the service's bytes
//!
//! // A client that did not come through the balancer is refused at its first byte.
//! let error = proxy::parse(b"GET / HTTP/1.1\r\n").unwrap_err();
//! assert_eq!(error.to_string(), "not a PROXY protocol header");
//! # Ok::<(), proxy::ProxyError>(())
//! ```
//!
//! On a blocking stream, [`read_header`] returns the header and leaves the
//! bytes that followed it in the buffer:
//!
//! ```
//! use socketserver::layer::proxy;
//!
//! let mut stream: &[u8] = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\nhello\n";
//! let mut buf = Vec::new();
//! let (header, length) = proxy::read_header(&mut stream, &mut buf)?;
//! assert_eq!(header.source.unwrap().to_string(), "192.0.2.7:40000");
//! assert_eq!(&buf[length..], b"hello\n");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # What is refused, and when
//!
//! A header is refused as soon as a byte rules it out: bytes that begin
//! neither with `PROXY ` nor with the 12-byte version 2 signature; in a
//! version 1 line, a line feed without a carriage return (or a carriage
//! return without a line feed), a line that cannot end within 107 bytes
//! (CRLF included), or a field that breaks the grammar below; in a version 2
//! header, a version other than 2, a command other than `LOCAL` or `PROXY`,
//! an address family or transport outside the specification, or an address
//! block shorter than the family needs (INET 12 bytes, INET6 36, UNIX 216).
//! Anything else is a prefix of a valid header, and the caller's deadline
//! decides how long to wait for the rest.
//!
//! Version 1 is read strictly: `PROXY TCP4 <ipv4> <ipv4> <port> <port>\r\n`,
//! `TCP6` with IPv6 addresses, or `PROXY UNKNOWN` followed by anything up to
//! the CRLF; single spaces; IPv4 numbers and ports in decimal without leading
//! zeros or a sign; IPv6 in the RFC 4291 text forms (an embedded IPv4 tail
//! included, as `::ffff:192.0.2.7`). A `LOCAL` header's family byte and
//! address block are ignored, as the specification says.

use std::error::Error;
use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::transport::address::Address;

/// The longest version 1 header, its CRLF included.
pub const V1_MAX_LEN: usize = 107;

/// The longest version 2 header: 16 fixed bytes and a 16-bit length.
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;

/// The first bytes of every version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The signature, the version and command, the family and transport, and
/// the length.
const V2_FIXED_LEN: usize = 16;

/// How a version 1 line begins.
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// What [`parse`] found in the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The bytes are a strict prefix of a header that may still be valid:
    /// read more (until the caller's deadline).
    Incomplete,
    /// A complete, valid header.
    Complete {
        /// What the header says.
        header: ProxyHeader,
        /// How many bytes it took; any bytes after these belong to the
        /// service.
        length: usize,
    },
}

/// The version of the PROXY protocol a header was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The text line, `PROXY TCP4 …\r\n`.
    V1,
    /// The binary header that starts with [`V2_SIGNATURE`].
    V2,
}

/// What a PROXY protocol header says about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProxyHeader {
    /// The version the header was written in.
    pub version: Version,
    /// The client's address, as the load balancer saw it; `None` when the
    /// connection's real peer address must be kept (a version 2 `LOCAL`
    /// header, a version 1 `UNKNOWN` line, a version 2 family UNSPEC or
    /// UNIX, or a version 2 transport UNSPEC).
    pub source: Option<SocketAddr>,
    /// The address the client connected to (the load balancer's listener);
    /// `None` exactly when `source` is.
    pub destination: Option<SocketAddr>,
}

impl ProxyHeader {
    /// The client's address: the header's source, or `real` (the
    /// connection's own peer) when the header says to keep it.
    ///
    /// ```
    /// use socketserver::Address;
    /// use socketserver::layer::proxy::{self, Parsed};
    ///
    /// let balancer = Address::Inet("10.0.0.2:36000".parse().unwrap());
    /// let Parsed::Complete { header, .. } = proxy::parse(&proxy::v2_local())? else {
    ///     unreachable!()
    /// };
    /// assert_eq!(header.peer_or(balancer.clone()), balancer); // a health check
    /// # Ok::<(), proxy::ProxyError>(())
    /// ```
    pub fn peer_or(&self, real: Address) -> Address {
        match self.source {
            Some(source) => Address::Inet(source),
            None => real,
        }
    }
}

/// A version 2 address family, as named in the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// `AF_UNSPEC`: no addresses.
    Unspec,
    /// `AF_INET`: IPv4 addresses and ports, 12 bytes.
    Inet,
    /// `AF_INET6`: IPv6 addresses and ports, 36 bytes.
    Inet6,
    /// `AF_UNIX`: two 108-byte socket paths, 216 bytes.
    Unix,
}

impl AddressFamily {
    /// How many bytes of address block the family needs.
    pub fn address_len(self) -> usize {
        match self {
            AddressFamily::Unspec => 0,
            AddressFamily::Inet => 12,
            AddressFamily::Inet6 => 36,
            AddressFamily::Unix => 216,
        }
    }
}

impl fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressFamily::Unspec => "UNSPEC",
            AddressFamily::Inet => "INET",
            AddressFamily::Inet6 => "INET6",
            AddressFamily::Unix => "UNIX",
        })
    }
}

/// A field of a version 1 line, for [`ProxyError::V1Field`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum V1Field {
    /// The client's address.
    SourceAddress,
    /// The address the client connected to.
    DestinationAddress,
    /// The client's port.
    SourcePort,
    /// The port the client connected to.
    DestinationPort,
}

impl fmt::Display for V1Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            V1Field::SourceAddress => "source address",
            V1Field::DestinationAddress => "destination address",
            V1Field::SourcePort => "source port",
            V1Field::DestinationPort => "destination port",
        })
    }
}

/// What is wrong with a version 1 field, for [`ProxyError::V1Field`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldProblem {
    /// A byte the field cannot hold at that place (a letter in a port, a
    /// space that ends an address too early, `+` before a port...).
    UnexpectedByte(u8),
    /// A number (IPv4 part or port) written with a leading zero.
    LeadingZero,
    /// An IPv4 number above 255.
    OctetAbove255,
    /// A port above 65535.
    PortAbove65535,
    /// An IPv6 group of more than 4 hex digits.
    GroupOverFourDigits,
    /// More IPv6 groups than 128 bits hold.
    TooManyGroups,
    /// A second `::` in an IPv6 address.
    SecondDoubleColon,
    /// An embedded IPv4 address that does not end exactly at 128 bits.
    MisplacedIpv4,
    /// The line ends before the field.
    Missing,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldProblem::UnexpectedByte(byte) => {
                write!(f, "unexpected byte '{}'", byte.escape_ascii())
            }
            FieldProblem::LeadingZero => f.write_str("a number with a leading zero"),
            FieldProblem::OctetAbove255 => f.write_str("an IPv4 number above 255"),
            FieldProblem::PortAbove65535 => f.write_str("a port above 65535"),
            FieldProblem::GroupOverFourDigits => {
                f.write_str("an IPv6 group of more than 4 hex digits")
            }
            FieldProblem::TooManyGroups => f.write_str("more than 8 IPv6 groups"),
            FieldProblem::SecondDoubleColon => f.write_str("a second '::'"),
            FieldProblem::MisplacedIpv4 => {
                f.write_str("an IPv4 part that does not end the IPv6 address")
            }
            FieldProblem::Missing => f.write_str("missing"),
        }
    }
}

/// Why some bytes cannot be (the start of) a PROXY protocol header.
///
/// `Display` writes a one-line reason for a log line. [`read_header`]
/// carries it inside an [`io::Error`] of kind
/// [`InvalidData`](io::ErrorKind::InvalidData); [`ProxyError::from_io`]
/// finds it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyError {
    /// Neither `PROXY ` nor the version 2 signature.
    NotProxyHeader,
    /// A version 1 line with a line feed that no carriage return precedes.
    LineFeedWithoutCarriageReturn,
    /// A version 1 line with a carriage return that no line feed follows.
    CarriageReturnWithoutLineFeed,
    /// A version 1 line that cannot end within [`V1_MAX_LEN`] bytes.
    V1TooLong,
    /// A version 1 protocol other than `TCP4`, `TCP6` or `UNKNOWN`.
    V1UnknownProtocol,
    /// A version 1 address or port that breaks the grammar.
    V1Field {
        /// The field.
        field: V1Field,
        /// What is wrong with it.
        problem: FieldProblem,
    },
    /// A version 2 header of another version (the high 4 bits of byte 13).
    UnsupportedVersion(u8),
    /// A version 2 command other than `LOCAL` (0) or `PROXY` (1).
    UnsupportedCommand(u8),
    /// A version 2 address family outside 0 to 3 (the high 4 bits of byte
    /// 14).
    UnsupportedFamily(u8),
    /// A version 2 transport protocol outside 0 to 2 (the low 4 bits of byte
    /// 14).
    UnsupportedTransport(u8),
    /// A version 2 address block shorter than its family needs.
    AddressBlockTooShort {
        /// The family the header names.
        family: AddressFamily,
        /// The header's length field.
        length: u16,
    },
}

impl ProxyError {
    /// The PROXY protocol error inside an [`io::Error`] from
    /// [`read_header`], if that is what it is.
    pub fn from_io(error: &io::Error) -> Option<&ProxyError> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ProxyError>())
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotProxyHeader => f.write_str("not a PROXY protocol header"),
            ProxyError::LineFeedWithoutCarriageReturn => {
                f.write_str("line feed without carriage return")
            }
            ProxyError::CarriageReturnWithoutLineFeed => {
                f.write_str("carriage return without line feed")
            }
            ProxyError::V1TooLong => write!(f, "v1 header longer than {V1_MAX_LEN} bytes"),
            ProxyError::V1UnknownProtocol => {
                f.write_str("v1 protocol is not TCP4, TCP6 or UNKNOWN")
            }
            ProxyError::V1Field { field, problem } => {
                write!(f, "bad {field} in v1 header: {problem}")
            }
            ProxyError::UnsupportedVersion(version) => {
                write!(f, "unsupported version {version}")
            }
            ProxyError::UnsupportedCommand(command) => {
                write!(f, "unsupported v2 command {command}")
            }
            ProxyError::UnsupportedFamily(family) => {
                write!(f, "unsupported v2 address family {family}")
            }
            ProxyError::UnsupportedTransport(transport) => {
                write!(f, "unsupported v2 transport protocol {transport}")
            }
            ProxyError::AddressBlockTooShort { family, length } => write!(
                f,
                "address block of {length} bytes is shorter than the {} that family {family} needs",
                family.address_len()
            ),
        }
    }
}

impl Error for ProxyError {}

impl From<ProxyError> for io::Error {
    fn from(error: ProxyError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

/// Looks for a PROXY protocol header (either version) at the start of
/// `bytes`, the bytes a connection has received so far.
///
/// Returns [`Parsed::Complete`] with the header and its length (the bytes
/// after it belong to the service), [`Parsed::Incomplete`] when the bytes
/// are a strict prefix of a header that may still be valid, or the reason no
/// further byte can make them valid. The answer for a prefix of `bytes`
/// never contradicts the answer for `bytes`: a refusal or a complete header
/// stays so whatever follows.
pub fn parse(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    match bytes.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'P') => parse_v1(bytes),
        Some(b'\r') => parse_v2(bytes),
        Some(_) => Err(ProxyError::NotProxyHeader),
    }
}

/// Reads a PROXY protocol header from a blocking stream into `buf`.
///
/// Returns the header and its length; `buf[length..]` then holds the bytes
/// of the service that were read along with the header, which the caller
/// must hand to the service before reading the stream again. `buf` normally
/// starts empty; bytes already in it are taken as the first bytes of the
/// stream, so a call that failed with [`WouldBlock`](io::ErrorKind::WouldBlock)
/// or [`TimedOut`](io::ErrorKind::TimedOut) (a socket timeout, the header's
/// deadline) can be repeated with the same buffer to go on where it stopped.
///
/// Reads in chunks of up to [`V1_MAX_LEN`] bytes until the version is known,
/// and then never past the end of a version 2 header, so `buf` never grows
/// beyond [`V2_MAX_LEN`] bytes. Errors:
/// [`InvalidData`](io::ErrorKind::InvalidData) carrying the [`ProxyError`]
/// as soon as a byte rules the header out (see [`ProxyError::from_io`]),
/// [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) when the stream ends
/// before the header does, and the stream's own errors.
///
/// How long this waits is up to the stream: its read timeout bounds each
/// read, not the whole header, and a peer that trickles bytes starts each
/// read afresh. For one deadline from accept (rule 30's 5 s), read through a
/// wrapper that sets the socket's timeout to what is left of the deadline
/// before each read and fails with [`TimedOut`](io::ErrorKind::TimedOut)
/// once nothing is left.
pub fn read_header(
    reader: &mut (impl Read + ?Sized),
    buf: &mut Vec<u8>,
) -> io::Result<(ProxyHeader, usize)> {
    loop {
        match parse(buf)? {
            Parsed::Complete { header, length } => return Ok((header, length)),
            Parsed::Incomplete => {}
        }
        let start = buf.len();
        buf.resize(start + next_read_len(buf), 0);
        let read = loop {
            match reader.read(&mut buf[start..]) {
                Ok(read) => break read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    buf.truncate(start);
                    return Err(error);
                }
            }
        };
        buf.truncate(start + read);
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the connection ended after {start} bytes of a PROXY protocol header"),
            ));
        }
    }
}

/// How many bytes [`read_header`] asks for next, given an incomplete
/// header in `buf`: exactly what a version 2 header lacks once its length
/// is in, otherwise what a version 1 line may still take (which covers the
/// fixed part of version 2).
fn next_read_len(buf: &[u8]) -> usize {
    let wanted = if buf.len() >= V2_FIXED_LEN && buf[0] == V2_SIGNATURE[0] {
        V2_FIXED_LEN + usize::from(u16::from_be_bytes([buf[14], buf[15]]))
    } else {
        V1_MAX_LEN
    };
    // An incomplete header is always shorter than `wanted`.
    wanted.saturating_sub(buf.len()).max(1)
}

/// The text line of a TCP connection from `source` to `destination`, as a
/// load balancer sends it (`send-proxy`): `PROXY TCP4 …` when both are IPv4,
/// otherwise `PROXY TCP6 …` (an IPv4 address then written as
/// `::ffff:a.b.c.d`).
///
/// ```
/// use socketserver::layer::proxy;
///
/// let line = proxy::v1_header("192.0.2.7:40000".parse()?, "198.51.100.1:443".parse()?);
/// assert_eq!(line, b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn v1_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let line = match same_family(source.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => format!("PROXY TCP4 {src} {dst} "),
        (src, dst) => format!("PROXY TCP6 {src} {dst} "),
    };
    let mut line = line.into_bytes();
    line.extend_from_slice(format!("{} {}\r\n", source.port(), destination.port()).as_bytes());
    line
}

/// The version 1 line of a connection whose addresses the load balancer
/// cannot name: `PROXY UNKNOWN\r\n`. The server keeps the real peer.
pub fn v1_unknown() -> Vec<u8> {
    b"PROXY UNKNOWN\r\n".to_vec()
}

/// The binary header of a TCP connection from `source` to `destination`, as
/// a load balancer sends it (`send-proxy-v2`): command `PROXY`, TCP over
/// INET when both addresses are IPv4, otherwise TCP over INET6 (an IPv4
/// address then mapped to `::ffff:a.b.c.d`), and no TLVs.
pub fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x21); // version 2, PROXY
    match same_family(source.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            header.extend_from_slice(&[0x11, 0, 12]); // TCP over INET
            header.extend_from_slice(&src.octets());
            header.extend_from_slice(&dst.octets());
        }
        (src, dst) => {
            header.extend_from_slice(&[0x21, 0, 36]); // TCP over INET6
            header.extend_from_slice(&to_ipv6(src).octets());
            header.extend_from_slice(&to_ipv6(dst).octets());
        }
    }
    header.extend_from_slice(&source.port().to_be_bytes());
    header.extend_from_slice(&destination.port().to_be_bytes());
    header
}

/// The binary header of a connection the load balancer opened on its own
/// behalf, such as a health check (`check-send-proxy`): command `LOCAL`,
/// family UNSPEC, no addresses. The server keeps the real peer.
pub fn v2_local() -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0, 0]); // version 2, LOCAL; UNSPEC; length 0
    header
}

/// Both addresses in one family: unchanged when they share one, otherwise
/// both IPv6.
fn same_family(source: IpAddr, destination: IpAddr) -> (IpAddr, IpAddr) {
    match (source, destination) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => (source, destination),
        _ => (
            IpAddr::V6(to_ipv6(source)),
            IpAddr::V6(to_ipv6(destination)),
        ),
    }
}

fn to_ipv6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    }
}

// ---------------------------------------------------------------- version 2

fn parse_v2(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    let signature = bytes.len().min(V2_SIGNATURE.len());
    if bytes[..signature] != V2_SIGNATURE[..signature] {
        return Err(ProxyError::NotProxyHeader);
    }
    let Some(&version_command) = bytes.get(12) else {
        return Ok(Parsed::Incomplete);
    };
    let version = version_command >> 4;
    if version != 2 {
        return Err(ProxyError::UnsupportedVersion(version));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        command => return Err(ProxyError::UnsupportedCommand(command)),
    };
    let Some(&family_transport) = bytes.get(13) else {
        return Ok(Parsed::Incomplete);
    };
    // LOCAL: "discard the protocol block including the family which is
    // ignored"; only its length counts.
    let family = if local {
        None
    } else {
        let family = match family_transport >> 4 {
            0 => AddressFamily::Unspec,
            1 => AddressFamily::Inet,
            2 => AddressFamily::Inet6,
            3 => AddressFamily::Unix,
            other => return Err(ProxyError::UnsupportedFamily(other)),
        };
        let transport = family_transport & 0x0f;
        if transport > 2 {
            return Err(ProxyError::UnsupportedTransport(transport));
        }
        // Transport UNSPEC (0): "the receiver should ignore address
        // information", whatever the family.
        Some((family, transport != 0))
    };
    let Some(length) = bytes.get(14..16) else {
        return Ok(Parsed::Incomplete);
    };
    let length = u16::from_be_bytes([length[0], length[1]]);
    if let Some((family, _)) = family {
        if usize::from(length) < family.address_len() {
            return Err(ProxyError::AddressBlockTooShort { family, length });
        }
    }
    let total = V2_FIXED_LEN + usize::from(length);
    let Some(block) = bytes.get(V2_FIXED_LEN..total) else {
        return Ok(Parsed::Incomplete);
    };
    let addresses = match family {
        Some((AddressFamily::Inet, true)) => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    block[at],
                    block[at + 1],
                    block[at + 2],
                    block[at + 3],
                ))
            };
            Some((ip(0), ip(4), port_at(block, 8), port_at(block, 10)))
        }
        Some((AddressFamily::Inet6, true)) => {
            let ip = |at: usize| {
                let mut octets = [0; 16];
                octets.copy_from_slice(&block[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            Some((ip(0), ip(16), port_at(block, 32), port_at(block, 34)))
        }
        _ => None,
    };
    let header = match addresses {
        Some((source, destination, source_port, destination_port)) => ProxyHeader {
            version: Version::V2,
            source: Some(SocketAddr::new(source, source_port)),
            destination: Some(SocketAddr::new(destination, destination_port)),
        },
        None => ProxyHeader {
            version: Version::V2,
            source: None,
            destination: None,
        },
    };
    Ok(Parsed::Complete {
        header,
        length: total,
    })
}

fn port_at(block: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([block[at], block[at + 1]])
}

// ---------------------------------------------------------------- version 1

fn parse_v1(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    if let Some((header, length)) = whole_v1_line(bytes) {
        debug_assert_eq!(
            v1_byte_by_byte(bytes),
            Ok(Parsed::Complete { header, length }),
            "the two readings of {:?} differ",
            bytes.escape_ascii().to_string()
        );
        return Ok(Parsed::Complete { header, length });
    }
    v1_byte_by_byte(bytes)
}

/// The common case, quickly: a whole valid line, read field by field with
/// the same field readers as [`V1Line`]. `None` for anything else (a line
/// not yet whole, or invalid), which [`v1_byte_by_byte`] then settles.
fn whole_v1_line(bytes: &[u8]) -> Option<(ProxyHeader, usize)> {
    let window = &bytes[..bytes.len().min(V1_MAX_LEN)];
    let line_feed = window.iter().position(|&byte| byte == b'\n')?;
    // `PROXY ` and CRLF around a body with no other CR.
    let body = window[..line_feed]
        .strip_suffix(b"\r")?
        .strip_prefix(V1_PREFIX)?;
    if body.contains(&b'\r') {
        return None;
    }
    let length = line_feed + 1;
    if let Some(rest) = body.strip_prefix(b"UNKNOWN") {
        return (rest.is_empty() || rest[0] == b' ').then_some((
            ProxyHeader {
                version: Version::V1,
                source: None,
                destination: None,
            },
            length,
        ));
    }
    let (source, destination) = match body.split_at_checked(5)? {
        (b"TCP4 ", fields) => tcp_fields(Ipv4Text::new(), fields)?,
        (b"TCP6 ", fields) => tcp_fields(Ipv6Text::new(), fields)?,
        _ => return None,
    };
    Some((
        ProxyHeader {
            version: Version::V1,
            source: Some(source),
            destination: Some(destination),
        },
        length,
    ))
}

/// `<address> <address> <port> <port>`, exactly.
fn tcp_fields<T: FieldText>(address: T, fields: &[u8]) -> Option<(SocketAddr, SocketAddr)>
where
    T::Value: Into<IpAddr>,
{
    let mut fields = fields.split(|&byte| byte == b' ');
    let source = read_field(address, fields.next()?)?;
    let destination = read_field(address, fields.next()?)?;
    let source_port = read_field(PortText::new(), fields.next()?)?;
    let destination_port = read_field(PortText::new(), fields.next()?)?;
    if fields.next().is_some() {
        return None;
    }
    Some((
        SocketAddr::new(source.into(), source_port),
        SocketAddr::new(destination.into(), destination_port),
    ))
}

/// A whole field, read with `text` (a fresh reader).
fn read_field<T: FieldText>(mut text: T, field: &[u8]) -> Option<T::Value> {
    for &byte in field {
        text.step(byte).ok()?;
    }
    text.finish(b' ').ok()
}

/// A reader of one version 1 field, fed one byte at a time.
trait FieldText: Copy {
    /// What the field holds.
    type Value;
    /// Takes the field's next byte.
    fn step(&mut self, byte: u8) -> Result<(), FieldProblem>;
    /// The field's value, at the byte after it (`terminator`).
    fn finish(&self, terminator: u8) -> Result<Self::Value, FieldProblem>;
}

/// Reads a version 1 line one byte at a time: exact about where a line
/// that is not (yet) whole stands.
fn v1_byte_by_byte(bytes: &[u8]) -> Result<Parsed, ProxyError> {
    let mut line = V1Line::new();
    for (index, &byte) in bytes.iter().enumerate() {
        if line.step(byte)? {
            return Ok(Parsed::Complete {
                header: line.header(),
                length: index + 1,
            });
        }
        // The fewest bytes that can still end the line: past the limit, no
        // byte to come can save it. (That number never shrinks by more than
        // the byte just read, so the first byte to cross the limit is the
        // one that rules the line out.) Early in the line it cannot cross.
        let consumed = index + 1;
        debug_assert!(line.min_remaining() <= MIN_REMAINING_BOUND);
        if consumed + MIN_REMAINING_BOUND > V1_MAX_LEN
            && consumed + line.min_remaining() > V1_MAX_LEN
        {
            return Err(ProxyError::V1TooLong);
        }
    }
    Ok(Parsed::Incomplete)
}

/// No less than [`V1Line::min_remaining`] can ever be: `PROXY `, the
/// longest protocol name, and the most that must follow a name.
const MIN_REMAINING_BOUND: usize = V1_PREFIX.len() + 7 + 1 + IPV4_MIN + rest_after_source(IPV4_MIN);

/// The version 1 protocols, and the fewest bytes that can follow each
/// (its fields and the CRLF).
const V1_PROTOCOLS: [(&[u8], usize); 3] = [
    (b"TCP4", 1 + IPV4_MIN + rest_after_source(IPV4_MIN)),
    (b"TCP6", 1 + IPV6_MIN + rest_after_source(IPV6_MIN)),
    (b"UNKNOWN", 2),
];

/// The shortest IPv4 address text, `0.0.0.0`.
const IPV4_MIN: usize = 7;
/// The shortest IPv6 address text, `::`.
const IPV6_MIN: usize = 2;

/// The fewest bytes after a source address: a space, the destination
/// address, a space, a port, a space, a port, CRLF.
const fn rest_after_source(address_min: usize) -> usize {
    1 + address_min + REST_AFTER_DESTINATION
}
/// The fewest bytes after a destination address: a space, a port, a space,
/// a port, CRLF.
const REST_AFTER_DESTINATION: usize = 1 + 1 + REST_AFTER_SOURCE_PORT;
/// The fewest bytes after a source port: a space, a port, CRLF.
const REST_AFTER_SOURCE_PORT: usize = 1 + 1 + 2;
/// The fewest bytes after a destination port: CRLF.
const REST_AFTER_DESTINATION_PORT: usize = 2;

/// A version 1 line read one byte at a time.
struct V1Line {
    stage: Stage,
    source: Option<IpAddr>,
    destination: Option<IpAddr>,
    source_port: u16,
    destination_port: u16,
}

#[derive(Clone, Copy)]
enum Stage {
    /// Within `PROXY `: how many of its bytes have been seen.
    Prefix(usize),
    /// Within the protocol word: its bytes so far.
    Protocol { word: [u8; 7], len: usize },
    /// Within an address.
    Address { field: V1Field, text: AddressText },
    /// Within a port.
    Port { field: V1Field, text: PortText },
    /// After `UNKNOWN `: anything up to the CRLF.
    UnknownRest,
    /// After the CR: only LF may follow.
    LineFeed,
}

#[derive(Clone, Copy)]
enum AddressText {
    V4(Ipv4Text),
    V6(Ipv6Text),
}

impl AddressText {
    fn new_like(&self) -> AddressText {
        match self {
            AddressText::V4(_) => AddressText::V4(Ipv4Text::new()),
            AddressText::V6(_) => AddressText::V6(Ipv6Text::new()),
        }
    }

    fn step(&mut self, byte: u8) -> Result<(), FieldProblem> {
        match self {
            AddressText::V4(text) => text.step(byte),
            AddressText::V6(text) => text.step(byte),
        }
    }

    fn finish(&self, terminator: u8) -> Result<IpAddr, FieldProblem> {
        match self {
            AddressText::V4(text) => text.finish(terminator).map(IpAddr::V4),
            AddressText::V6(text) => text.finish(terminator).map(IpAddr::V6),
        }
    }

    fn min_remaining(&self) -> usize {
        match self {
            AddressText::V4(text) => text.min_remaining(),
            AddressText::V6(text) => text.min_remaining(),
        }
    }

    fn min_len(&self) -> usize {
        match self {
            AddressText::V4(_) => IPV4_MIN,
            AddressText::V6(_) => IPV6_MIN,
        }
    }
}

impl V1Line {
    fn new() -> V1Line {
        V1Line {
            stage: Stage::Prefix(0),
            source: None,
            destination: None,
            source_port: 0,
            destination_port: 0,
        }
    }

    /// Takes the next byte: whether it completes the line (see
    /// [`V1Line::header`]), or the reason the line cannot be valid.
    fn step(&mut self, byte: u8) -> Result<bool, ProxyError> {
        let bad = |field, problem| ProxyError::V1Field { field, problem };
        if byte == b'\n' && !matches!(self.stage, Stage::Prefix(_) | Stage::LineFeed) {
            return Err(ProxyError::LineFeedWithoutCarriageReturn);
        }
        match &mut self.stage {
            Stage::Prefix(seen) => {
                if byte != V1_PREFIX[*seen] {
                    return Err(ProxyError::NotProxyHeader);
                }
                *seen += 1;
                if *seen == V1_PREFIX.len() {
                    self.stage = Stage::Protocol {
                        word: [0; 7],
                        len: 0,
                    };
                }
            }
            Stage::Protocol { word, len } => match (&word[..*len], byte) {
                (b"TCP4", b' ') => self.start_address(AddressText::V4(Ipv4Text::new())),
                (b"TCP6", b' ') => self.start_address(AddressText::V6(Ipv6Text::new())),
                (b"TCP4" | b"TCP6", b'\r') => {
                    return Err(bad(V1Field::SourceAddress, FieldProblem::Missing))
                }
                (b"UNKNOWN", b' ') => self.stage = Stage::UnknownRest,
                (b"UNKNOWN", b'\r') => self.stage = Stage::LineFeed,
                _ => {
                    // `word` is as long as the longest name, `UNKNOWN`.
                    if *len == word.len() {
                        return Err(ProxyError::V1UnknownProtocol);
                    }
                    word[*len] = byte;
                    *len += 1;
                    let word = &word[..*len];
                    if !V1_PROTOCOLS.iter().any(|(name, _)| name.starts_with(word)) {
                        return Err(ProxyError::V1UnknownProtocol);
                    }
                }
            },
            Stage::Address { field, text } => match byte {
                b' ' => {
                    let address = text.finish(byte).map_err(|problem| bad(*field, problem))?;
                    if *field == V1Field::SourceAddress {
                        self.source = Some(address);
                        self.stage = Stage::Address {
                            field: V1Field::DestinationAddress,
                            text: text.new_like(),
                        };
                    } else {
                        self.destination = Some(address);
                        self.stage = Stage::Port {
                            field: V1Field::SourcePort,
                            text: PortText::new(),
                        };
                    }
                }
                b'\r' => {
                    text.finish(byte).map_err(|problem| bad(*field, problem))?;
                    let next = match field {
                        V1Field::SourceAddress => V1Field::DestinationAddress,
                        _ => V1Field::SourcePort,
                    };
                    return Err(bad(next, FieldProblem::Missing));
                }
                _ => text.step(byte).map_err(|problem| bad(*field, problem))?,
            },
            Stage::Port { field, text } => match byte {
                b' ' if *field == V1Field::SourcePort => {
                    self.source_port = text.finish(byte).map_err(|problem| bad(*field, problem))?;
                    self.stage = Stage::Port {
                        field: V1Field::DestinationPort,
                        text: PortText::new(),
                    };
                }
                b'\r' if *field == V1Field::SourcePort => {
                    text.finish(byte).map_err(|problem| bad(*field, problem))?;
                    return Err(bad(V1Field::DestinationPort, FieldProblem::Missing));
                }
                b'\r' => {
                    self.destination_port =
                        text.finish(byte).map_err(|problem| bad(*field, problem))?;
                    self.stage = Stage::LineFeed;
                }
                _ => text.step(byte).map_err(|problem| bad(*field, problem))?,
            },
            Stage::UnknownRest => {
                if byte == b'\r' {
                    self.stage = Stage::LineFeed;
                }
            }
            Stage::LineFeed => {
                if byte != b'\n' {
                    return Err(ProxyError::CarriageReturnWithoutLineFeed);
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The header of a line whose CRLF is in.
    fn header(&self) -> ProxyHeader {
        // An `UNKNOWN` line has no addresses.
        let (source, destination) = match (self.source, self.destination) {
            (Some(source), Some(destination)) => (
                Some(SocketAddr::new(source, self.source_port)),
                Some(SocketAddr::new(destination, self.destination_port)),
            ),
            _ => (None, None),
        };
        ProxyHeader {
            version: Version::V1,
            source,
            destination,
        }
    }

    fn start_address(&mut self, text: AddressText) {
        self.stage = Stage::Address {
            field: V1Field::SourceAddress,
            text,
        };
    }

    /// The fewest bytes that can still complete the line.
    fn min_remaining(&self) -> usize {
        match &self.stage {
            // The shortest line is `PROXY UNKNOWN\r\n`.
            Stage::Prefix(seen) => V1_PREFIX.len() - seen + b"UNKNOWN\r\n".len(),
            Stage::Protocol { word, len } => V1_PROTOCOLS
                .iter()
                .filter(|(name, _)| name.starts_with(&word[..*len]))
                .map(|(name, rest)| name.len() - len + rest)
                .min()
                .unwrap_or(0),
            Stage::Address { field, text } => {
                text.min_remaining()
                    + match field {
                        V1Field::SourceAddress => rest_after_source(text.min_len()),
                        _ => REST_AFTER_DESTINATION,
                    }
            }
            Stage::Port { field, text } => {
                usize::from(text.digits == 0)
                    + match field {
                        V1Field::SourcePort => REST_AFTER_SOURCE_PORT,
                        _ => REST_AFTER_DESTINATION_PORT,
                    }
            }
            Stage::UnknownRest => 2,
            Stage::LineFeed => 1,
        }
    }
}

/// A port in decimal, read one byte at a time: 0 to 65535 without leading
/// zeros or a sign.
#[derive(Clone, Copy)]
struct PortText {
    value: u32,
    digits: usize,
}

impl PortText {
    fn new() -> PortText {
        PortText {
            value: 0,
            digits: 0,
        }
    }
}

impl FieldText for PortText {
    type Value = u16;

    #[inline]
    fn step(&mut self, byte: u8) -> Result<(), FieldProblem> {
        if !byte.is_ascii_digit() {
            return Err(FieldProblem::UnexpectedByte(byte));
        }
        if self.digits == 1 && self.value == 0 {
            return Err(FieldProblem::LeadingZero);
        }
        self.value = self.value * 10 + u32::from(byte - b'0');
        if self.value > u32::from(u16::MAX) {
            return Err(FieldProblem::PortAbove65535);
        }
        self.digits += 1;
        Ok(())
    }

    #[inline]
    fn finish(&self, terminator: u8) -> Result<u16, FieldProblem> {
        if self.digits == 0 {
            return Err(FieldProblem::UnexpectedByte(terminator));
        }
        Ok(self.value as u16)
    }
}

/// An IPv4 address in dotted decimal, read one byte at a time: four numbers
/// from 0 to 255 without leading zeros, separated by single dots.
#[derive(Clone, Copy)]
struct Ipv4Text {
    octets: [u8; 4],
    /// Numbers complete so far.
    count: usize,
    /// The number being read, and its digits so far.
    value: u16,
    digits: usize,
}

impl Ipv4Text {
    fn new() -> Ipv4Text {
        Ipv4Text {
            octets: [0; 4],
            count: 0,
            value: 0,
            digits: 0,
        }
    }

    /// Starts after a first number already read (an IPv6 address's IPv4
    /// tail) and its dot.
    fn after_first(first: u8) -> Ipv4Text {
        Ipv4Text {
            octets: [first, 0, 0, 0],
            count: 1,
            value: 0,
            digits: 0,
        }
    }

    /// The fewest bytes that complete the address: a digit if the current
    /// number has none, then `.0` for each number still missing.
    fn min_remaining(&self) -> usize {
        usize::from(self.digits == 0) + 2 * (3 - self.count)
    }
}

impl FieldText for Ipv4Text {
    type Value = Ipv4Addr;

    #[inline]
    fn step(&mut self, byte: u8) -> Result<(), FieldProblem> {
        match byte {
            b'0'..=b'9' => {
                if self.digits == 1 && self.value == 0 {
                    return Err(FieldProblem::LeadingZero);
                }
                self.value = self.value * 10 + u16::from(byte - b'0');
                if self.value > 255 {
                    return Err(FieldProblem::OctetAbove255);
                }
                self.digits += 1;
            }
            b'.' if self.digits > 0 && self.count < 3 => {
                self.octets[self.count] = self.value as u8;
                self.count += 1;
                self.value = 0;
                self.digits = 0;
            }
            _ => return Err(FieldProblem::UnexpectedByte(byte)),
        }
        Ok(())
    }

    #[inline]
    fn finish(&self, terminator: u8) -> Result<Ipv4Addr, FieldProblem> {
        if self.count != 3 || self.digits == 0 {
            return Err(FieldProblem::UnexpectedByte(terminator));
        }
        let [a, b, c, _] = self.octets;
        Ok(Ipv4Addr::new(a, b, c, self.value as u8))
    }
}

/// What came last in an IPv6 address text.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ipv6Last {
    /// Nothing yet.
    Start,
    /// A single colon that begins the text (only `::` may begin it).
    LeadingColon,
    /// A colon after a group.
    Colon,
    /// `::`.
    DoubleColon,
    /// A hex digit.
    Digit,
}

/// An IPv6 address in the RFC 4291 text forms, read one byte at a time:
/// groups of 1 to 4 hex digits separated by colons, at most one `::` that
/// stands for one or more zero groups, and optionally an IPv4 address in
/// place of the last two groups.
#[derive(Clone, Copy)]
struct Ipv6Text {
    groups: [u16; 8],
    /// Groups complete so far, on both sides of the `::`.
    count: usize,
    /// How many groups came before the `::`, once it is seen.
    gap: Option<usize>,
    last: Ipv6Last,
    /// The group being read: its value in hex, its digits, and whether it
    /// can still be an IPv4 number (decimal digits only) with that value.
    /// (`u32`, not `u16`: with `u16`, reloading the field just stored
    /// stalled the loop, as a profile showed.)
    group: u32,
    digits: usize,
    decimal: Option<u32>,
    /// The IPv4 tail, once a dot has started it.
    ipv4: Option<Ipv4Text>,
}

impl Ipv6Text {
    fn new() -> Ipv6Text {
        Ipv6Text {
            groups: [0; 8],
            count: 0,
            gap: None,
            last: Ipv6Last::Start,
            group: 0,
            digits: 0,
            decimal: Some(0),
            ipv4: None,
        }
    }

    /// How many groups the text may hold: 8, or 7 around a `::` (which
    /// stands for at least one).
    fn max_groups(&self) -> usize {
        if self.gap.is_some() {
            7
        } else {
            8
        }
    }

    fn end_group(&mut self) {
        self.groups[self.count] = self.group as u16;
        self.count += 1;
        self.group = 0;
        self.digits = 0;
        self.decimal = Some(0);
    }

    /// The fewest bytes that complete the address.
    fn min_remaining(&self) -> usize {
        if let Some(ipv4) = &self.ipv4 {
            return ipv4.min_remaining();
        }
        match self.last {
            Ipv6Last::Start => 2,                          // `::`
            Ipv6Last::LeadingColon | Ipv6Last::Colon => 1, // `:` or a digit
            Ipv6Last::DoubleColon => 0,
            Ipv6Last::Digit if self.gap.is_some() || self.count + 1 == 8 => 0,
            Ipv6Last::Digit => 2, // `::`
        }
    }
}

impl FieldText for Ipv6Text {
    type Value = Ipv6Addr;

    #[inline]
    fn step(&mut self, byte: u8) -> Result<(), FieldProblem> {
        if let Some(ipv4) = &mut self.ipv4 {
            return ipv4.step(byte);
        }
        match byte {
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                if self.last == Ipv6Last::LeadingColon {
                    return Err(FieldProblem::UnexpectedByte(byte));
                }
                if self.digits == 4 {
                    return Err(FieldProblem::GroupOverFourDigits);
                }
                if self.digits == 0 && self.count == self.max_groups() {
                    return Err(FieldProblem::TooManyGroups);
                }
                let digit = (byte as char).to_digit(16).unwrap_or(0);
                self.group = self.group << 4 | digit;
                self.decimal = match (self.decimal, byte) {
                    (Some(value), b'0'..=b'9') => Some(value * 10 + u32::from(byte - b'0')),
                    _ => None,
                };
                self.digits += 1;
                self.last = Ipv6Last::Digit;
            }
            b':' => match self.last {
                Ipv6Last::Start => self.last = Ipv6Last::LeadingColon,
                Ipv6Last::LeadingColon => {
                    self.gap = Some(0);
                    self.last = Ipv6Last::DoubleColon;
                }
                Ipv6Last::Digit => {
                    self.end_group();
                    // Another group must follow this colon (or a second
                    // colon, which makes the `::` stand for one more).
                    if self.count == self.max_groups() {
                        return Err(FieldProblem::TooManyGroups);
                    }
                    self.last = Ipv6Last::Colon;
                }
                Ipv6Last::Colon => {
                    if self.gap.is_some() {
                        return Err(FieldProblem::SecondDoubleColon);
                    }
                    self.gap = Some(self.count);
                    self.last = Ipv6Last::DoubleColon;
                }
                Ipv6Last::DoubleColon => return Err(FieldProblem::UnexpectedByte(byte)),
            },
            b'.' => {
                let (Ipv6Last::Digit, Some(value)) = (self.last, self.decimal) else {
                    return Err(FieldProblem::UnexpectedByte(byte));
                };
                if self.digits > 1 && self.group >> ((self.digits - 1) * 4) == 0 {
                    return Err(FieldProblem::LeadingZero);
                }
                if value > 255 {
                    return Err(FieldProblem::OctetAbove255);
                }
                // The IPv4 address takes the last two groups.
                let fits = match self.gap {
                    None => self.count == 6,
                    Some(_) => self.count + 2 <= 7,
                };
                if !fits {
                    return Err(FieldProblem::MisplacedIpv4);
                }
                self.ipv4 = Some(Ipv4Text::after_first(value as u8));
            }
            _ => return Err(FieldProblem::UnexpectedByte(byte)),
        }
        Ok(())
    }

    #[inline]
    fn finish(&self, terminator: u8) -> Result<Ipv6Addr, FieldProblem> {
        let mut text = *self;
        if let Some(ipv4) = &self.ipv4 {
            let [a, b, c, d] = ipv4.finish(terminator)?.octets();
            text.groups[text.count] = u16::from_be_bytes([a, b]);
            text.groups[text.count + 1] = u16::from_be_bytes([c, d]);
            text.count += 2;
        } else {
            match self.last {
                Ipv6Last::Digit => text.end_group(),
                Ipv6Last::DoubleColon => {}
                _ => return Err(FieldProblem::UnexpectedByte(terminator)),
            }
        }
        let mut groups = [0u16; 8];
        match text.gap {
            None if text.count == 8 => groups = text.groups,
            None => return Err(FieldProblem::UnexpectedByte(terminator)),
            Some(gap) => {
                let tail = text.count - gap;
                groups[..gap].copy_from_slice(&text.groups[..gap]);
                groups[8 - tail..].copy_from_slice(&text.groups[gap..text.count]);
            }
        }
        Ok(Ipv6Addr::from(groups))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> (ProxyHeader, usize) {
        match parse(bytes) {
            Ok(Parsed::Complete { header, length }) => (header, length),
            other => panic!("{:?}: {other:?}", bytes.escape_ascii().to_string()),
        }
    }

    /// Feeds `bytes` one more byte at a time: every prefix up to the ruling
    /// byte is incomplete, and from it on every prefix gets the same error.
    /// Returns the ruling byte's index and the error.
    fn refusal(bytes: &[u8]) -> (usize, ProxyError) {
        let shown = bytes.escape_ascii().to_string();
        for end in 0..=bytes.len() {
            match parse(&bytes[..end]) {
                Ok(Parsed::Incomplete) => continue,
                Ok(complete) => panic!("{shown}: accepted {complete:?}"),
                Err(error) => {
                    for longer in end..=bytes.len() {
                        assert_eq!(parse(&bytes[..longer]), Err(error), "{shown}");
                    }
                    return (end - 1, error);
                }
            }
        }
        panic!("{shown}: still incomplete")
    }

    fn v1(field: V1Field, problem: FieldProblem) -> ProxyError {
        ProxyError::V1Field { field, problem }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn v2(rest: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(rest);
        header
    }

    #[test]
    fn empty_input_is_incomplete() {
        assert_eq!(parse(b""), Ok(Parsed::Incomplete));
    }

    #[test]
    fn v1_tcp4_gives_both_addresses_and_leaves_what_follows() {
        let wire = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
        let (header, length) = complete(wire);
        assert_eq!(header.version, Version::V1);
        assert_eq!(header.source, Some(addr("192.168.0.1:56324")));
        assert_eq!(header.destination, Some(addr("192.168.0.11:443")));
        assert_eq!(&wire[length..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn v1_tcp4_takes_the_extreme_numbers() {
        let (header, length) = complete(b"PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n");
        assert_eq!(length, 44);
        assert_eq!(header.source, Some(addr("255.255.255.255:65535")));
        assert_eq!(header.destination, Some(addr("0.0.0.0:0")));
    }

    #[test]
    fn v1_tcp6_takes_every_text_form() {
        for text in [
            "::",
            "::1",
            "1::",
            "2001:db8::7",
            "2001:DB8:0:0:0:0:0:7",
            "2001:0db8:0000:0000:0000:0000:0000:0007",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3::6:7:8",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:192.0.2.7",
            "::192.0.2.7",
            "1:2:3:4:5:6:1.2.3.4",
            "1::5:6:255.255.255.255",
        ] {
            let line = format!("PROXY TCP6 {text} ::1 5555 443\r\n");
            let (header, length) = complete(line.as_bytes());
            assert_eq!(length, line.len());
            let expected: Ipv6Addr = text.parse().unwrap();
            assert_eq!(
                header.source,
                Some(SocketAddr::new(expected.into(), 5555)),
                "{text}"
            );
            assert_eq!(header.destination, Some(addr("[::1]:443")));
        }
    }

    #[test]
    fn v1_tcp6_addresses_print_canonically() {
        let (header, _) = complete(b"PROXY TCP6 2001:0DB8:0:0:0:0:0:0007 2001:db8::1 5555 443\r\n");
        assert_eq!(header.source.unwrap().to_string(), "[2001:db8::7]:5555");
    }

    #[test]
    fn v1_unknown_keeps_the_real_peer_and_ignores_the_rest_of_the_line() {
        for line in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN \r\n",
            b"PROXY UNKNOWN ffff:f::f 1.2.3.4 65535 1\r\n",
            b"PROXY UNKNOWN \x00\xff\xfe anything but line ends\r\n",
        ] {
            let mut wire = line.to_vec();
            wire.extend_from_slice(b"service");
            let (header, length) = complete(&wire);
            assert_eq!(length, line.len());
            assert_eq!(header.version, Version::V1);
            assert_eq!((header.source, header.destination), (None, None));
            let real = Address::Inet(addr("10.0.0.2:36000"));
            assert_eq!(header.peer_or(real.clone()), real);
        }
    }

    #[test]
    fn a_v1_line_of_107_bytes_is_taken_and_one_of_108_refused_at_its_106th_byte() {
        let mut longest = b"PROXY UNKNOWN ".to_vec();
        longest.resize(105, b'x');
        longest.extend_from_slice(b"\r\n");
        assert_eq!(complete(&longest).1, 107);

        let mut too_long = b"PROXY UNKNOWN ".to_vec();
        too_long.resize(106, b'x');
        too_long.extend_from_slice(b"\r\n");
        assert_eq!(refusal(&too_long), (105, ProxyError::V1TooLong));
    }

    #[test]
    fn a_tcp6_line_is_refused_at_the_first_byte_that_cannot_fit_in_107() {
        let long = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"; // 45 bytes
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"; // 39 bytes
        let fits = format!("PROXY TCP6 {long} {full} 0 0\r\n");
        assert_eq!(fits.len(), 102);
        complete(fits.as_bytes());
        let fits = format!("PROXY TCP6 {long} {full} 65535 0\r\n");
        assert_eq!(fits.len(), 106);
        complete(fits.as_bytes());

        // 11 + 45 + 1 + 45 + " 0 0\r\n" = 108: the last digit of the
        // destination (index 101) leaves no room for the ports.
        let line = format!("PROXY TCP6 {long} {long} 0 0\r\n");
        assert_eq!(refusal(line.as_bytes()), (101, ProxyError::V1TooLong));
        // 11 + 45 + 1 + 39 + " 65535 65" reaches 105 and leaves room for
        // CRLF; a third digit does not.
        let line = format!("PROXY TCP6 {long} {full} 65535 65535\r\n");
        assert_eq!(refusal(line.as_bytes()), (105, ProxyError::V1TooLong));
    }

    #[test]
    fn not_a_header_is_refused_at_its_first_wrong_byte() {
        assert_eq!(
            refusal(b"GET / HTTP/1.1\r\n"),
            (0, ProxyError::NotProxyHeader)
        );
        assert_eq!(
            refusal(b"SSH-2.0-OpenSSH\r\n"),
            (0, ProxyError::NotProxyHeader)
        );
        assert_eq!(refusal(b"PROXZ TCP4"), (4, ProxyError::NotProxyHeader));
        assert_eq!(refusal(b"PROXY\r\n"), (5, ProxyError::NotProxyHeader));
        assert_eq!(
            refusal(b"\r\n\r\n\x01\r\nQUIT\n"),
            (4, ProxyError::NotProxyHeader)
        );
        assert_eq!(
            refusal(b"\r\n\r\n\0\r\nQUIT\r"),
            (11, ProxyError::NotProxyHeader)
        );
        assert_eq!(refusal(b"\rX"), (1, ProxyError::NotProxyHeader));
    }

    #[test]
    fn v1_protocols_other_than_tcp4_tcp6_unknown_are_refused() {
        assert_eq!(refusal(b"PROXY TCP5 "), (9, ProxyError::V1UnknownProtocol));
        assert_eq!(refusal(b"PROXY tcp4 "), (6, ProxyError::V1UnknownProtocol));
        assert_eq!(refusal(b"PROXY UDP4 "), (7, ProxyError::V1UnknownProtocol));
        assert_eq!(refusal(b"PROXY  TCP4"), (6, ProxyError::V1UnknownProtocol));
        assert_eq!(
            refusal(b"PROXY UNKNOWNX\r\n"),
            (13, ProxyError::V1UnknownProtocol)
        );
        assert_eq!(
            refusal(b"PROXY TCP\r\n"),
            (9, ProxyError::V1UnknownProtocol)
        );
        assert_eq!(
            refusal(b"PROXY TCP4\r\n"),
            (10, v1(V1Field::SourceAddress, FieldProblem::Missing))
        );
    }

    #[test]
    fn line_ends_other_than_crlf_are_refused_at_once() {
        let lf = ProxyError::LineFeedWithoutCarriageReturn;
        let cr = ProxyError::CarriageReturnWithoutLineFeed;
        assert_eq!(refusal(b"PROXY UNKNOWN\n"), (13, lf));
        assert_eq!(refusal(b"PROXY UNKNOWN a\nb\r\n"), (15, lf));
        assert_eq!(refusal(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), (30, lf));
        assert_eq!(refusal(b"PROXY TC\n"), (8, lf));
        assert_eq!(refusal(b"PROXY TCP4 1.2\n"), (14, lf));
        assert_eq!(refusal(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"), (31, cr));
        assert_eq!(refusal(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n"), (31, cr));
        assert_eq!(refusal(b"PROXY UNKNOWN abc\rdef\r\n"), (18, cr));
    }

    #[test]
    fn bad_ipv4_text_is_refused_at_the_byte_that_breaks_it() {
        let source = |problem| v1(V1Field::SourceAddress, problem);
        let destination = |problem| v1(V1Field::DestinationAddress, problem);
        let cases: [(&[u8], usize, ProxyError); 10] = [
            (
                b"PROXY TCP4 01.2.3.4 ",
                12,
                source(FieldProblem::LeadingZero),
            ),
            (
                b"PROXY TCP4 1.2.3.00 ",
                18,
                source(FieldProblem::LeadingZero),
            ),
            (
                b"PROXY TCP4 256.1.1.1 ",
                13,
                source(FieldProblem::OctetAbove255),
            ),
            (
                b"PROXY TCP4 1.2.3.4.5 ",
                18,
                source(FieldProblem::UnexpectedByte(b'.')),
            ),
            (
                b"PROXY TCP4 1.2.3 ",
                16,
                source(FieldProblem::UnexpectedByte(b' ')),
            ),
            (
                b"PROXY TCP4 1..2.3 ",
                13,
                source(FieldProblem::UnexpectedByte(b'.')),
            ),
            (
                b"PROXY TCP4 .1.2.3 ",
                11,
                source(FieldProblem::UnexpectedByte(b'.')),
            ),
            (
                b"PROXY TCP4 ::1 ",
                11,
                source(FieldProblem::UnexpectedByte(b':')),
            ),
            (
                b"PROXY TCP4 1.2.3.4  ",
                19,
                destination(FieldProblem::UnexpectedByte(b' ')),
            ),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8\r\n",
                26,
                v1(V1Field::SourcePort, FieldProblem::Missing),
            ),
        ];
        for (line, index, error) in cases {
            assert_eq!(refusal(line), (index, error), "{}", line.escape_ascii());
        }
    }

    #[test]
    fn bad_ipv6_text_is_refused_at_the_byte_that_breaks_it() {
        let source = |problem| v1(V1Field::SourceAddress, problem);
        let cases: [(&[u8], usize, ProxyError); 12] = [
            (
                b"PROXY TCP6 1.2.3.4 ",
                12,
                source(FieldProblem::MisplacedIpv4),
            ),
            (
                b"PROXY TCP6 1:2:3:4:5:1.2.3.4 ",
                22,
                source(FieldProblem::MisplacedIpv4),
            ),
            (
                b"PROXY TCP6 1:2:3:4:5:6:7:1.2.3.4 ",
                26,
                source(FieldProblem::MisplacedIpv4),
            ),
            (
                b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ",
                26,
                source(FieldProblem::TooManyGroups),
            ),
            (
                b"PROXY TCP6 1::3:4:5:6:7:8:9 ",
                25,
                source(FieldProblem::TooManyGroups),
            ),
            (
                b"PROXY TCP6 1:2:3:4:5:6:7::8 ",
                26,
                source(FieldProblem::TooManyGroups),
            ),
            (
                b"PROXY TCP6 1::2::3 ",
                16,
                source(FieldProblem::SecondDoubleColon),
            ),
            (
                b"PROXY TCP6 ::: ",
                13,
                source(FieldProblem::UnexpectedByte(b':')),
            ),
            (
                b"PROXY TCP6 :1 ",
                12,
                source(FieldProblem::UnexpectedByte(b'1')),
            ),
            (
                b"PROXY TCP6 12345:: ",
                15,
                source(FieldProblem::GroupOverFourDigits),
            ),
            (
                b"PROXY TCP6 ::ffff:01.2.3.4 ",
                20,
                source(FieldProblem::LeadingZero),
            ),
            (
                b"PROXY TCP6 ::ffff:256.1.1.1 ",
                21,
                source(FieldProblem::OctetAbove255),
            ),
        ];
        for (line, index, error) in cases {
            assert_eq!(refusal(line), (index, error), "{}", line.escape_ascii());
        }
        let more: [(&[u8], usize, ProxyError); 5] = [
            (
                b"PROXY TCP6 ::abc.1.2.3 ",
                16,
                source(FieldProblem::UnexpectedByte(b'.')),
            ),
            (
                b"PROXY TCP6 1:2 ",
                14,
                source(FieldProblem::UnexpectedByte(b' ')),
            ),
            (
                b"PROXY TCP6 1: ",
                13,
                source(FieldProblem::UnexpectedByte(b' ')),
            ),
            (
                b"PROXY TCP6 ::g ",
                13,
                source(FieldProblem::UnexpectedByte(b'g')),
            ),
            (
                b"PROXY TCP6 [::1] ",
                11,
                source(FieldProblem::UnexpectedByte(b'[')),
            ),
        ];
        for (line, index, error) in more {
            assert_eq!(refusal(line), (index, error), "{}", line.escape_ascii());
        }
    }

    #[test]
    fn bad_ports_are_refused_at_the_byte_that_breaks_them() {
        let head = b"PROXY TCP4 1.2.3.4 5.6.7.8 "; // 27 bytes
        let cases: [(&[u8], usize, ProxyError); 8] = [
            (
                b"+1 2\r\n",
                27,
                v1(V1Field::SourcePort, FieldProblem::UnexpectedByte(b'+')),
            ),
            (
                b"65536 2\r\n",
                31,
                v1(V1Field::SourcePort, FieldProblem::PortAbove65535),
            ),
            (
                b"080 2\r\n",
                28,
                v1(V1Field::SourcePort, FieldProblem::LeadingZero),
            ),
            (
                b"1 00\r\n",
                30,
                v1(V1Field::DestinationPort, FieldProblem::LeadingZero),
            ),
            (
                b"1  2\r\n",
                29,
                v1(V1Field::DestinationPort, FieldProblem::UnexpectedByte(b' ')),
            ),
            (
                b"1 2 \r\n",
                30,
                v1(V1Field::DestinationPort, FieldProblem::UnexpectedByte(b' ')),
            ),
            (
                b"1\r\n",
                28,
                v1(V1Field::DestinationPort, FieldProblem::Missing),
            ),
            (
                b"1 x\r\n",
                29,
                v1(V1Field::DestinationPort, FieldProblem::UnexpectedByte(b'x')),
            ),
        ];
        for (tail, index, error) in cases {
            let line = [&head[..], tail].concat();
            assert_eq!(refusal(&line), (index, error), "{}", line.escape_ascii());
        }
        let (header, _) = complete(&[&head[..], b"0 65535\r\n"].concat());
        assert_eq!(header.source.unwrap().port(), 0);
        assert_eq!(header.destination.unwrap().port(), 65535);
    }

    #[test]
    fn v2_inet_gives_both_addresses_and_skips_tlvs() {
        let mut wire = v2(&[0x21, 0x11, 0, 12 + 7]);
        wire.extend_from_slice(&[192, 0, 2, 7, 198, 51, 100, 1, 0x9c, 0x40, 0x01, 0xbb]);
        wire.extend_from_slice(&[0x04, 0, 4, b'n', b'o', b'o', b'p']); // a NOOP TLV
        wire.extend_from_slice(b"service");
        let (header, length) = complete(&wire);
        assert_eq!(length, 16 + 19);
        assert_eq!(header.version, Version::V2);
        assert_eq!(header.source, Some(addr("192.0.2.7:40000")));
        assert_eq!(header.destination, Some(addr("198.51.100.1:443")));
        assert_eq!(&wire[length..], b"service");
    }

    #[test]
    fn v2_inet6_and_datagram_transports_give_addresses() {
        let source = addr("[2001:db8::7]:5555");
        let destination = addr("[2001:db8::1]:443");
        let mut wire = v2_header(source, destination);
        assert_eq!(complete(&wire).0.source, Some(source));
        wire[13] = 0x22; // UDP over INET6
        let (header, length) = complete(&wire);
        assert_eq!(
            (header.source, header.destination),
            (Some(source), Some(destination))
        );
        assert_eq!(length, 16 + 36);
    }

    #[test]
    fn v2_headers_that_keep_the_real_peer() {
        let none = |wire: &[u8]| {
            let (header, length) = complete(wire);
            assert_eq!((header.source, header.destination), (None, None));
            assert_eq!(length, wire.len());
        };
        none(&v2_local());
        // LOCAL ignores the family byte and the address block.
        none(&v2(&[0x20, 0xff, 0, 3, 1, 2, 3]));
        none(&v2(&[0x20, 0x11, 0, 0]));
        // UNSPEC, with or without bytes.
        none(&v2(&[0x21, 0x00, 0, 0]));
        none(&v2(&[0x21, 0x00, 0, 5, 1, 2, 3, 4, 5]));
        // UNIX, 216 bytes of paths.
        let mut unix = v2(&[0x21, 0x31, 0, 216]);
        unix.resize(16 + 216, b'p');
        none(&unix);
        // Transport UNSPEC over INET: the addresses are to be ignored.
        none(&v2(&[
            0x21, 0x10, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2,
        ]));
    }

    #[test]
    fn v2_refusals_come_at_the_byte_that_rules_them_out() {
        let cases: [(Vec<u8>, usize, ProxyError); 9] = [
            (v2(&[0x31, 0x11]), 12, ProxyError::UnsupportedVersion(3)),
            (v2(&[0x11, 0x11]), 12, ProxyError::UnsupportedVersion(1)),
            (v2(&[0x22, 0x11]), 12, ProxyError::UnsupportedCommand(2)),
            (v2(&[0x2f, 0x11]), 12, ProxyError::UnsupportedCommand(15)),
            (
                v2(&[0x21, 0x41, 0, 12]),
                13,
                ProxyError::UnsupportedFamily(4),
            ),
            (
                v2(&[0x21, 0x13, 0, 12]),
                13,
                ProxyError::UnsupportedTransport(3),
            ),
            (
                v2(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]),
                15,
                ProxyError::AddressBlockTooShort {
                    family: AddressFamily::Inet,
                    length: 4,
                },
            ),
            (
                v2(&[0x21, 0x21, 0, 12]),
                15,
                ProxyError::AddressBlockTooShort {
                    family: AddressFamily::Inet6,
                    length: 12,
                },
            ),
            (
                v2(&[0x21, 0x32, 0, 108]),
                15,
                ProxyError::AddressBlockTooShort {
                    family: AddressFamily::Unix,
                    length: 108,
                },
            ),
        ];
        for (wire, index, error) in cases {
            assert_eq!(refusal(&wire), (index, error), "{}", wire.escape_ascii());
        }
    }

    #[test]
    fn a_v2_header_waits_for_its_whole_length() {
        let mut wire = v2(&[0x21, 0x11, 0xff, 0xff]);
        wire.resize(V2_MAX_LEN - 1, 0);
        assert_eq!(parse(&wire), Ok(Parsed::Incomplete));
        wire.push(0);
        assert_eq!(complete(&wire).1, V2_MAX_LEN);
    }

    #[test]
    fn errors_read_as_one_line_reasons() {
        let cases = [
            (ProxyError::NotProxyHeader, "not a PROXY protocol header"),
            (
                ProxyError::LineFeedWithoutCarriageReturn,
                "line feed without carriage return",
            ),
            (
                ProxyError::CarriageReturnWithoutLineFeed,
                "carriage return without line feed",
            ),
            (ProxyError::V1TooLong, "v1 header longer than 107 bytes"),
            (
                ProxyError::V1UnknownProtocol,
                "v1 protocol is not TCP4, TCP6 or UNKNOWN",
            ),
            (ProxyError::UnsupportedVersion(3), "unsupported version 3"),
            (
                ProxyError::UnsupportedCommand(2),
                "unsupported v2 command 2",
            ),
            (
                ProxyError::UnsupportedFamily(4),
                "unsupported v2 address family 4",
            ),
            (
                ProxyError::UnsupportedTransport(3),
                "unsupported v2 transport protocol 3",
            ),
            (
                ProxyError::AddressBlockTooShort {
                    family: AddressFamily::Inet,
                    length: 4,
                },
                "address block of 4 bytes is shorter than the 12 that family INET needs",
            ),
            (
                v1(V1Field::SourceAddress, FieldProblem::UnexpectedByte(b'\r')),
                "bad source address in v1 header: unexpected byte '\\r'",
            ),
            (
                v1(V1Field::DestinationPort, FieldProblem::PortAbove65535),
                "bad destination port in v1 header: a port above 65535",
            ),
            (
                v1(V1Field::SourcePort, FieldProblem::Missing),
                "bad source port in v1 header: missing",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn peer_or_prefers_the_header_source() {
        let (header, _) = complete(&v1_header(addr("192.0.2.7:1"), addr("192.0.2.1:2")));
        let real = Address::Unix(None);
        assert_eq!(header.peer_or(real), Address::Inet(addr("192.0.2.7:1")));
    }

    #[test]
    fn encoders_write_what_a_load_balancer_sends() {
        assert_eq!(
            v1_header(addr("192.0.2.7:40000"), addr("198.51.100.1:443")),
            b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n"
        );
        assert_eq!(
            v1_header(addr("[2001:db8::7]:5555"), addr("[2001:db8::1]:443")),
            b"PROXY TCP6 2001:db8::7 2001:db8::1 5555 443\r\n"
        );
        assert_eq!(
            v1_header(addr("192.0.2.7:5555"), addr("[2001:db8::1]:443")),
            b"PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 5555 443\r\n"
        );
        assert_eq!(v1_unknown(), b"PROXY UNKNOWN\r\n");
        assert_eq!(
            v2_header(addr("192.0.2.7:40000"), addr("198.51.100.1:443")),
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x07\xc6\x33\x64\x01\x9c\x40\x01\xbb"
        );
        let v6 = v2_header(addr("[::1]:1"), addr("192.0.2.1:2"));
        assert_eq!(&v6[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(&v6[16..32], &Ipv6Addr::LOCALHOST.octets());
        assert_eq!(
            &v6[32..48],
            &Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().octets()
        );
        assert_eq!(&v6[48..], &[0, 1, 0, 2]);
        assert_eq!(v2_local(), b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00");
        // Each one parses back.
        for wire in [v1_unknown(), v2_local(), v6] {
            assert_eq!(complete(&wire).1, wire.len());
        }
    }

    /// A reader that serves `chunks` one per call (an empty chunk is a
    /// would-block) and records how many bytes each call asked for.
    struct Scripted {
        chunks: Vec<Vec<u8>>,
        asked: Vec<usize>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.asked.push(buf.len());
            if self.chunks.is_empty() {
                return Ok(0);
            }
            let chunk = self.chunks.remove(0);
            if chunk.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if chunk == b"EINTR" {
                return Err(io::ErrorKind::Interrupted.into());
            }
            assert!(
                chunk.len() <= buf.len(),
                "the test serves at most what is asked"
            );
            buf[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        }
    }

    #[test]
    fn read_header_never_reads_past_a_v2_header_once_its_length_is_known() {
        let mut wire = v2(&[0x21, 0x11, 0, 212]);
        wire.resize(16 + 212, 7);
        wire.extend_from_slice(b"service");
        let mut reader = Scripted {
            chunks: vec![
                wire[..107].to_vec(),
                b"EINTR".to_vec(),
                wire[107..200].to_vec(),
                wire[200..228].to_vec(),
            ],
            asked: Vec::new(),
        };
        let mut buf = Vec::new();
        let (header, length) = read_header(&mut reader, &mut buf).unwrap();
        assert_eq!(header.source, Some(addr("7.7.7.7:1799")));
        assert_eq!(length, 228);
        assert_eq!(buf.len(), 228, "no service byte read");
        assert_eq!(reader.asked, [107, 121, 121, 28]);
    }

    #[test]
    fn read_header_returns_the_service_bytes_read_with_the_header() {
        let mut wire = v1_header(addr("192.0.2.7:1"), addr("192.0.2.1:2"));
        wire.extend_from_slice(b"hello");
        let mut reader = Scripted {
            chunks: vec![wire.clone()],
            asked: Vec::new(),
        };
        let mut buf = Vec::new();
        let (_, length) = read_header(&mut reader, &mut buf).unwrap();
        assert_eq!(&buf[length..], b"hello");
        assert_eq!(reader.asked, [107]);
    }

    #[test]
    fn read_header_resumes_after_a_timeout() {
        let wire = v1_header(addr("192.0.2.7:1"), addr("192.0.2.1:2"));
        let mut reader = Scripted {
            chunks: vec![wire[..10].to_vec(), Vec::new(), wire[10..].to_vec()],
            asked: Vec::new(),
        };
        let mut buf = Vec::new();
        let error = read_header(&mut reader, &mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(buf, &wire[..10]);
        let (header, length) = read_header(&mut reader, &mut buf).unwrap();
        assert_eq!(header.source, Some(addr("192.0.2.7:1")));
        assert_eq!(length, wire.len());
        assert_eq!(reader.asked, [107, 97, 97]);
    }

    #[test]
    fn read_header_refuses_with_the_reason_and_reports_an_early_end() {
        let mut reader = Scripted {
            chunks: vec![b"GET / HTTP/1.1\r\n".to_vec()],
            asked: Vec::new(),
        };
        let error = read_header(&mut reader, &mut Vec::new()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            ProxyError::from_io(&error),
            Some(&ProxyError::NotProxyHeader)
        );
        assert_eq!(error.to_string(), "not a PROXY protocol header");

        let mut reader = Scripted {
            chunks: vec![b"PROXY TCP4 1.2".to_vec()],
            asked: Vec::new(),
        };
        let error = read_header(&mut reader, &mut Vec::new()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(ProxyError::from_io(&error), None);
    }
}
