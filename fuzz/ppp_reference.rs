//! The `ppp` crate's reading of a PROXY protocol header, as a reference for
//! this crate's parser. Shared by the fuzz target (`fuzz_targets/
//! proxy_header.rs`) and the differential test (`tests/proxy_protocol.rs`).

use std::net::{IpAddr, SocketAddr};

use ppp::{v1 as ppp1, v2 as ppp2, HeaderResult};

/// A header's source and destination, when the receiver is to use them.
pub type Addresses = Option<(SocketAddr, SocketAddr)>;

/// The complete header `ppp` finds at the start of `data`, if any: its
/// addresses mapped as this crate's rules map them (a `LOCAL` command,
/// transport UNSPEC, family UNSPEC or UNIX, and `UNKNOWN` all keep the real
/// peer), and its length. `None` when `ppp` finds no header: the input is
/// incomplete or refused.
pub fn ppp_header(data: &[u8]) -> Option<(Addresses, usize)> {
    let pair = |source: IpAddr, source_port, destination: IpAddr, destination_port| {
        Some((
            SocketAddr::new(source, source_port),
            SocketAddr::new(destination, destination_port),
        ))
    };
    match HeaderResult::parse(data) {
        HeaderResult::V1(Ok(header)) => {
            let addresses = match header.addresses {
                ppp1::Addresses::Tcp4(a) => pair(
                    a.source_address.into(),
                    a.source_port,
                    a.destination_address.into(),
                    a.destination_port,
                ),
                ppp1::Addresses::Tcp6(a) => pair(
                    a.source_address.into(),
                    a.source_port,
                    a.destination_address.into(),
                    a.destination_port,
                ),
                ppp1::Addresses::Unknown => None,
            };
            Some((addresses, header.header.len()))
        }
        HeaderResult::V2(Ok(header)) => {
            let ignored = header.command == ppp2::Command::Local
                || header.protocol == ppp2::Protocol::Unspecified;
            let addresses = match header.addresses {
                _ if ignored => None,
                ppp2::Addresses::IPv4(a) => pair(
                    a.source_address.into(),
                    a.source_port,
                    a.destination_address.into(),
                    a.destination_port,
                ),
                ppp2::Addresses::IPv6(a) => pair(
                    a.source_address.into(),
                    a.source_port,
                    a.destination_address.into(),
                    a.destination_port,
                ),
                ppp2::Addresses::Unspecified | ppp2::Addresses::Unix(_) => None,
            };
            Some((addresses, header.len()))
        }
        _ => None,
    }
}
