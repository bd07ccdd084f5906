//! Behind a load balancer: the PROXY protocol (SPEC section 9, rules 30 to
//! 32, 39, 40, 46). The header parser on its own (properties, a
//! differential test against the `ppp` crate, `read_header` over real
//! sockets); the protocol end to end through the program in both dispatch
//! modes; and a rolling restart behind a real HAProxy, in both modes.
//!
//! `cargo test --all-features --test proxy_protocol`

mod support;

#[path = "../fuzz/ppp_reference.rs"]
mod ppp_reference;

mod header {
    //! The PROXY protocol header parser (`socketserver::layer::proxy`): property
    //! tests, a differential test against the `ppp` crate, and `read_header` over
    //! real sockets.
    //!
    //! `cargo test --all-features --test proxy_protocol header`
    //!
    //! Where `ppp` and this parser part ways, on purpose (`explained` below):
    //! - ports with a `+` sign: `ppp` reads them with `u16::from_str`, which
    //!   takes one; the specification wants a plain decimal number.
    //! - a line feed without a carriage return: `ppp` splits fields at spaces
    //!   and takes a lone `\n` as the line end when it falls in the right place
    //!   (`PROXY UNKNOWN a\nb\r\n`, `PROXY TCP4 … 1 2 \n`); rule 46 and the
    //!   specification ("must not tolerate a single CR or LF") refuse it.
    //! - a v2 `LOCAL` header with a family, transport or address block that
    //!   `ppp` checks: the specification says the family "is ignored" for
    //!   `LOCAL`, so it is accepted here (and the real peer kept).
    //! - a v1 `UNKNOWN` line that is not UTF-8, or has more than four fields
    //!   after `UNKNOWN`: the specification says to ignore the rest of the line;
    //!   `ppp` refuses the first and waits forever on the second.
    //! - addresses that the header tells the receiver to ignore: `ppp` decodes
    //!   them for a v2 `LOCAL` command and for transport UNSPEC; here both keep
    //!   the real peer (`source == None`), as the specification says. The
    //!   comparison maps `ppp`'s answer the same way.

    use std::io::{self, Read, Write};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use ppp::{v2 as ppp2, HeaderResult, PartialResult};
    use proptest::prelude::*;

    use crate::ppp_reference::ppp_header;
    use socketserver::layer::proxy::{
        self, read_header, Parsed, ProxyError, ProxyHeader, Version, V1_MAX_LEN, V2_SIGNATURE,
    };

    // ------------------------------------------------------------ generators

    fn port() -> impl Strategy<Value = u16> {
        prop_oneof![Just(0u16), Just(65535u16), any::<u16>()]
    }

    fn socket_v4() -> impl Strategy<Value = SocketAddr> {
        (any::<[u8; 4]>(), port())
            .prop_map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port))
    }

    /// IPv6 groups, often zero so that `::` has runs to stand for.
    fn groups() -> impl Strategy<Value = [u16; 8]> {
        prop::array::uniform8(prop_oneof![Just(0u16), Just(0xffff), any::<u16>()])
    }

    fn socket_v6() -> impl Strategy<Value = SocketAddr> {
        (groups(), port())
            .prop_map(|(groups, port)| SocketAddr::new(Ipv6Addr::from(groups).into(), port))
    }

    fn socket() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![socket_v4(), socket_v6()]
    }

    /// How to write an IPv6 address: any case, any padding of each group, an
    /// IPv4 tail or not, and `::` over any run of zero groups (not only the
    /// longest).
    #[derive(Debug, Clone)]
    struct Ipv6Style {
        upper: bool,
        padding: [usize; 8],
        ipv4_tail: bool,
        gap: (usize, usize),
    }

    fn ipv6_style() -> impl Strategy<Value = Ipv6Style> {
        (
            any::<bool>(),
            prop::array::uniform8(0usize..5),
            any::<bool>(),
            (0usize..9, 0usize..9),
        )
            .prop_map(|(upper, padding, ipv4_tail, gap)| Ipv6Style {
                upper,
                padding,
                ipv4_tail,
                gap,
            })
    }

    /// `ip` written in `style`; where the style asks for something the address
    /// cannot take (a `::` over non-zero groups), it is left out.
    fn ipv6_text(ip: Ipv6Addr, style: &Ipv6Style) -> String {
        let groups = ip.segments();
        let mut parts: Vec<String> = groups
            .iter()
            .zip(style.padding)
            .map(|(group, width)| {
                let text = format!("{group:0width$x}");
                if style.upper {
                    text.to_uppercase()
                } else {
                    text
                }
            })
            .collect();
        let hex_groups = if style.ipv4_tail {
            let [.., a, b, c, d] = ip.octets();
            parts.truncate(6);
            parts.push(format!("{a}.{b}.{c}.{d}"));
            6
        } else {
            8
        };
        let (mut start, mut end) = (style.gap.0.min(style.gap.1), style.gap.0.max(style.gap.1));
        end = end.min(hex_groups);
        start = start.min(end);
        let zeros = start < end && groups[start..end].iter().all(|&group| group == 0);
        if zeros {
            let tail = parts.split_off(end);
            parts.truncate(start);
            format!("{}::{}", parts.join(":"), tail.join(":"))
        } else {
            parts.join(":")
        }
    }

    /// A valid header of any kind, with what it must parse to.
    fn valid_header() -> BoxedStrategy<(Vec<u8>, ProxyHeader)> {
        let v1_tcp4 = (socket_v4(), socket_v4()).prop_map(|(source, destination)| {
            (
                proxy::v1_header(source, destination),
                header(Version::V1, source, destination),
            )
        });
        let v1_tcp6 = (socket_v6(), socket_v6(), ipv6_style(), ipv6_style())
            .prop_map(|(source, destination, source_style, destination_style)| {
                let text = |address: SocketAddr, style| match address.ip() {
                    IpAddr::V6(ip) => ipv6_text(ip, style),
                    IpAddr::V4(_) => unreachable!(),
                };
                let line = format!(
                    "PROXY TCP6 {} {} {} {}\r\n",
                    text(source, &source_style),
                    text(destination, &destination_style),
                    source.port(),
                    destination.port()
                );
                (line.into_bytes(), header(Version::V1, source, destination))
            })
            .prop_filter("fits in 107 bytes", |(line, _)| line.len() <= V1_MAX_LEN);
        // The ignored rest: printable text (what a sender writes) or any bytes.
        let rest = prop_oneof![
            prop::collection::vec(0x20u8..0x7f, 0..92),
            prop::collection::vec(
                any::<u8>().prop_filter("no line end", |b| *b != b'\r' && *b != b'\n'),
                0..92
            ),
        ];
        let v1_unknown = rest.prop_map(|rest| {
            let mut line = b"PROXY UNKNOWN".to_vec();
            if !rest.is_empty() {
                line.push(b' ');
                line.extend_from_slice(&rest);
            }
            line.extend_from_slice(b"\r\n");
            (line, keep_peer(Version::V1))
        });
        let v2_tcp = (socket(), socket(), tlvs()).prop_map(|(source, destination, tlvs)| {
            let mut builder = ppp2::Builder::with_addresses(
                0x21,
                ppp2::Protocol::Stream,
                ppp2::Addresses::from((source, destination)),
            );
            for (kind, value) in &tlvs {
                builder = builder.write_tlv(*kind, value).unwrap();
            }
            let wire = builder.build().unwrap();
            let expected = match (source, destination) {
                (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
                    header(Version::V2, source, destination)
                }
                // ppp writes a mixed pair as UNSPEC.
                _ => keep_peer(Version::V2),
            };
            (wire, expected)
        });
        let v2_keep = (0usize..4, tlvs()).prop_map(|(kind, tlvs)| {
            let mut wire = match kind {
                0 => proxy::v2_local(),
                1 => [&V2_SIGNATURE[..], &[0x21, 0x00, 0, 0]].concat(),
                2 => {
                    let mut unix = [&V2_SIGNATURE[..], &[0x21, 0x31, 0, 216]].concat();
                    unix.resize(16 + 216, b'/');
                    unix
                }
                _ => [&V2_SIGNATURE[..], &[0x21, 0x12, 0, 12], &[1; 12]].concat(),
            };
            let extra: Vec<u8> = tlvs
                .iter()
                .flat_map(|(kind, value)| {
                    let mut tlv = vec![*kind];
                    tlv.extend_from_slice(&(value.len() as u16).to_be_bytes());
                    tlv.extend_from_slice(value);
                    tlv
                })
                .collect();
            let length = u16::from_be_bytes([wire[14], wire[15]]) + extra.len() as u16;
            wire[14..16].copy_from_slice(&length.to_be_bytes());
            wire.extend_from_slice(&extra);
            let expected = if kind == 3 {
                let ip = IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1));
                header(
                    Version::V2,
                    SocketAddr::new(ip, 257),
                    SocketAddr::new(ip, 257),
                )
            } else {
                keep_peer(Version::V2)
            };
            (wire, expected)
        });
        prop_oneof![v1_tcp4, v1_tcp6, v1_unknown, v2_tcp, v2_keep].boxed()
    }

    fn tlvs() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
        prop::collection::vec(
            (any::<u8>(), prop::collection::vec(any::<u8>(), 0..40)),
            0..4,
        )
    }

    fn header(version: Version, source: SocketAddr, destination: SocketAddr) -> ProxyHeader {
        ProxyHeader {
            version,
            source: Some(source),
            destination: Some(destination),
        }
    }

    fn keep_peer(version: Version) -> ProxyHeader {
        ProxyHeader {
            version,
            source: None,
            destination: None,
        }
    }

    fn complete(bytes: &[u8]) -> Option<(ProxyHeader, usize)> {
        match proxy::parse(bytes) {
            Ok(Parsed::Complete { header, length }) => Some((header, length)),
            _ => None,
        }
    }

    // ------------------------------------------------------------ properties

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn encoded_headers_parse_back(source in socket(), destination in socket()) {
            let (expected_source, expected_destination) = match (source, destination) {
                (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
                    (source, destination)
                }
                _ => (mapped(source), mapped(destination)),
            };
            for (version, wire) in [
                (Version::V1, proxy::v1_header(source, destination)),
                (Version::V2, proxy::v2_header(source, destination)),
            ] {
                let parsed = proxy::parse(&wire);
                prop_assert_eq!(
                    parsed,
                    Ok(Parsed::Complete {
                        header: header(version, expected_source, expected_destination),
                        length: wire.len(),
                    })
                );
            }
        }

        #[test]
        fn valid_headers_parse_and_leave_what_follows((wire, expected) in valid_header(), rest in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(complete(&wire), Some((expected, wire.len())));
            let mut longer = wire.clone();
            longer.extend_from_slice(&rest);
            prop_assert_eq!(complete(&longer), Some((expected, wire.len())), "trailing bytes are never consumed");
        }

        #[test]
        fn every_strict_prefix_of_a_valid_header_is_incomplete((wire, _) in valid_header()) {
            for end in 0..wire.len() {
                prop_assert_eq!(proxy::parse(&wire[..end]), Ok(Parsed::Incomplete), "prefix of {} bytes", end);
            }
        }

        #[test]
        fn ipv6_text_in_any_form_parses(ip in groups().prop_map(Ipv6Addr::from), style in ipv6_style()) {
            let text = ipv6_text(ip, &style);
            prop_assert_eq!(text.parse::<Ipv6Addr>(), Ok(ip), "the generator writes valid text");
            let line = format!("PROXY TCP6 {text} ::1 1 2\r\n");
            let source = complete(line.as_bytes()).map(|(header, _)| header.source);
            prop_assert_eq!(source, Some(Some(SocketAddr::new(ip.into(), 1))));
        }

        /// Random bytes never panic, never claim more than they have, and their
        /// prefixes agree: incomplete, then at most one verdict that stays.
        #[test]
        fn any_bytes_get_one_verdict_that_longer_input_keeps(bytes in arbitrary_input()) {
            let mut verdict = None;
            for end in 0..=bytes.len() {
                let parsed = proxy::parse(&bytes[..end]);
                if let Ok(Parsed::Complete { length, .. }) = parsed {
                    prop_assert!(length <= end);
                }
                match (&verdict, parsed) {
                    (None, Ok(Parsed::Incomplete)) => {}
                    (None, decided) => verdict = Some(decided),
                    (Some(decided), now) => prop_assert_eq!(decided, &now),
                }
            }
        }
    }

    /// Bytes that reach deep into both versions: a valid header, mutated and
    /// cut, or plain noise after a valid start.
    fn arbitrary_input() -> BoxedStrategy<Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            mutated_header(),
            (
                prop_oneof![Just(b"PROXY ".to_vec()), Just(V2_SIGNATURE.to_vec())],
                prop::collection::vec(any::<u8>(), 0..120)
            )
                .prop_map(|(start, rest)| [start, rest].concat()),
        ]
        .boxed()
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Replace(usize, u8),
        Insert(usize, u8),
        Delete(usize),
        Truncate(usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let byte = prop_oneof![
            any::<u8>(),
            prop::sample::select(b" .:\r\n0159afAF+-PTCUXQ\x00\x11\x12\x20\x21\x22\x31".to_vec())
        ];
        prop_oneof![
            (any::<usize>(), byte.clone()).prop_map(|(at, byte)| Mutation::Replace(at, byte)),
            (any::<usize>(), byte).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
            any::<usize>().prop_map(Mutation::Delete),
            any::<usize>().prop_map(Mutation::Truncate),
        ]
    }

    fn mutated_header() -> BoxedStrategy<Vec<u8>> {
        (
            valid_header(),
            prop::collection::vec(mutation(), 1..4),
            prop::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(|((mut wire, _), mutations, rest)| {
                wire.extend_from_slice(&rest);
                for mutation in mutations {
                    let len = wire.len().max(1);
                    match mutation {
                        Mutation::Replace(at, byte) if !wire.is_empty() => wire[at % len] = byte,
                        Mutation::Insert(at, byte) => wire.insert(at % (wire.len() + 1), byte),
                        Mutation::Delete(at) if !wire.is_empty() => {
                            wire.remove(at % len);
                        }
                        Mutation::Truncate(at) => wire.truncate(at % (wire.len() + 1)),
                        _ => {}
                    }
                }
                wire
            })
            .boxed()
    }

    fn mapped(address: SocketAddr) -> SocketAddr {
        match address.ip() {
            IpAddr::V4(ip) => SocketAddr::new(ip.to_ipv6_mapped().into(), address.port()),
            IpAddr::V6(_) => address,
        }
    }

    // ------------------------------------------- exactness of `Incomplete`

    /// Whether some suffix of up to `depth` bytes from `alphabet`, followed by
    /// `tail`, makes `prefix` a complete header.
    fn completable(prefix: &[u8], alphabet: &[u8], depth: usize, tail: &[u8]) -> bool {
        let mut line = prefix.to_vec();
        fn search(line: &mut Vec<u8>, alphabet: &[u8], depth: usize, tail: &[u8]) -> bool {
            let len = line.len();
            line.extend_from_slice(tail);
            let done = complete(line).is_some();
            line.truncate(len);
            if done {
                return true;
            }
            if depth == 0 || proxy::parse(line).is_err() {
                return false;
            }
            for &byte in alphabet {
                line.push(byte);
                let found = search(line, alphabet, depth - 1, tail);
                line.pop();
                if found {
                    return true;
                }
            }
            false
        }
        search(&mut line, alphabet, depth, tail)
    }

    fn text_from(alphabet: &'static [u8], max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(alphabet), 0..max)
    }

    /// Text near the edges of the IPv6 grammar: 0 to 9 groups, `::` in no,
    /// one or two places, an IPv4 tail or not, a stray colon at either end.
    fn ipv6_tokens() -> impl Strategy<Value = Vec<u8>> {
        let group = prop::sample::select(vec!["0", "1", "f", "ffff", "255", "01", "12345"]);
        (
            prop_oneof![
                prop::collection::vec(group.clone(), 0..10),
                prop::collection::vec(group, 5..10)
            ],
            prop::collection::vec(prop_oneof![0usize..10, 5usize..10], 0..3),
            prop::option::of(prop::sample::select(vec![
                "1.2.3.4",
                "255.0.0.1",
                "1.2.3",
                "01.2.3.4",
            ])),
            (any::<bool>(), any::<bool>()),
        )
            .prop_map(|(groups, gaps, ipv4, (lead, trail))| {
                let mut parts: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
                if let Some(ipv4) = ipv4 {
                    parts.push(ipv4.to_string());
                }
                let mut text = String::new();
                if lead {
                    text.push(':');
                }
                for (at, part) in parts.iter().enumerate() {
                    if at > 0 {
                        text.push(':');
                    }
                    if gaps.contains(&at) {
                        text.push(':');
                        if at == 0 {
                            text.push(':');
                        }
                    }
                    text.push_str(part);
                }
                if gaps.contains(&parts.len()) {
                    text.push_str("::");
                }
                if trail {
                    text.push(':');
                }
                text.truncate(48);
                text.into_bytes()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// `Incomplete` is exact inside an IPv6 field: a prefix is waited on if
        /// and only if some bytes can still complete it (within 107 bytes: the
        /// long source address makes the limit bind).
        #[test]
        fn an_ipv6_prefix_is_incomplete_exactly_when_it_can_be_completed(
            field in prop_oneof![text_from(b"01f:.", 48), ipv6_tokens()],
            long_source in any::<bool>(),
        ) {
            let head: &[u8] = if long_source {
                b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
            } else {
                b"PROXY TCP6 "
            };
            let tail: &[u8] = if long_source { b" 0 0\r\n" } else { b" :: 0 0\r\n" };
            let prefix = [head, &field].concat();
            let incomplete = proxy::parse(&prefix) == Ok(Parsed::Incomplete);
            prop_assert_eq!(incomplete, completable(&prefix, b"01:.", 7, tail), "{}", prefix.escape_ascii());
        }

        #[test]
        fn an_ipv4_prefix_is_incomplete_exactly_when_it_can_be_completed(field in text_from(b"01259.", 20)) {
            let prefix = [&b"PROXY TCP4 "[..], &field].concat();
            let incomplete = proxy::parse(&prefix) == Ok(Parsed::Incomplete);
            prop_assert_eq!(incomplete, completable(&prefix, b"0.", 7, b" 0.0.0.0 0 0\r\n"), "{}", prefix.escape_ascii());
        }

        #[test]
        fn a_port_prefix_is_incomplete_exactly_when_it_can_be_completed(field in text_from(b"015679+", 8)) {
            let prefix = [&b"PROXY TCP4 0.0.0.0 0.0.0.0 1 "[..], &field].concat();
            let incomplete = proxy::parse(&prefix) == Ok(Parsed::Incomplete);
            prop_assert_eq!(incomplete, completable(&prefix, b"0", 5, b"\r\n"), "{}", prefix.escape_ascii());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Address text is read as the standard library reads it (which is
        /// what `inet_pton`, behind HAProxy's own parser, takes).
        #[test]
        fn address_text_agrees_with_the_standard_library(
            text in prop_oneof![text_from(b"0123456789abcdefABCDEF:.", 46), text_from(b"0129f:.", 20), ipv6_tokens()],
            v4 in any::<bool>(),
        ) {
            let text = String::from_utf8(text).unwrap();
            let line = if v4 {
                format!("PROXY TCP4 {text} 0.0.0.0 1 2\r\n")
            } else {
                format!("PROXY TCP6 {text} :: 1 2\r\n")
            };
            let ours = complete(line.as_bytes()).and_then(|(header, _)| header.source).map(|source| source.ip());
            let std = if v4 {
                text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
            } else {
                text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
            };
            prop_assert_eq!(ours, std, "{}", text);
        }

        #[test]
        fn port_text_is_plain_decimal(text in text_from(b"0123456789+-", 7)) {
            let text = String::from_utf8(text).unwrap();
            let line = format!("PROXY TCP4 0.0.0.0 0.0.0.0 {text} 2\r\n");
            let ours = complete(line.as_bytes()).map(|(header, _)| header.source.unwrap().port());
            let plain = !text.is_empty()
                && text.bytes().all(|b| b.is_ascii_digit())
                && (text == "0" || !text.starts_with('0'));
            let expected = if plain { text.parse::<u16>().ok() } else { None };
            prop_assert_eq!(ours, expected, "{}", text);
        }
    }

    // ------------------------------------------------------ against `ppp`

    /// What a parser made of some bytes.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Verdict {
        /// A complete header: its source and destination, and its length.
        Header(Option<(SocketAddr, SocketAddr)>, usize),
        Incomplete,
        Refused,
    }

    fn ours(bytes: &[u8]) -> Verdict {
        match proxy::parse(bytes) {
            Ok(Parsed::Complete { header, length }) => {
                Verdict::Header(header.source.zip(header.destination), length)
            }
            Ok(Parsed::Incomplete) => Verdict::Incomplete,
            Err(_) => Verdict::Refused,
        }
    }

    /// `ppp`'s verdict, its addresses mapped as this crate's rules map them: a
    /// `LOCAL` command, transport UNSPEC, family UNSPEC or UNIX, and `UNKNOWN`
    /// all keep the real peer.
    fn theirs(bytes: &[u8]) -> Verdict {
        if HeaderResult::parse(bytes).is_incomplete() {
            return Verdict::Incomplete;
        }
        match ppp_header(bytes) {
            Some((addresses, length)) => Verdict::Header(addresses, length),
            None => Verdict::Refused,
        }
    }

    /// Why the two parsers may part ways on `bytes`, if they may (see the
    /// module documentation).
    fn explained(bytes: &[u8], ours: &Verdict, theirs: &Verdict) -> Option<&'static str> {
        match (ours, theirs) {
            // Where both accept, nothing excuses a difference.
            (Verdict::Header(..), Verdict::Header(..)) => None,
            (Verdict::Header(_, length), _) => {
                if let Some(rest) = bytes[..*length].strip_prefix(b"PROXY UNKNOWN") {
                    if std::str::from_utf8(rest).is_err() {
                        return Some("ppp wants UTF-8 in the ignored rest of an UNKNOWN line");
                    }
                    if rest.iter().filter(|&&b| b == b' ').count() > 4 {
                        return Some(
                            "ppp waits forever on an UNKNOWN line of more than four fields",
                        );
                    }
                }
                if bytes.starts_with(&V2_SIGNATURE) && bytes[12] == 0x20 {
                    return Some("the family of a LOCAL header is ignored");
                }
                None
            }
            (_, Verdict::Header(_, length)) => {
                let line = &bytes[..*length];
                if line.starts_with(b"PROXY TCP") && line.windows(2).any(|w| w == b" +") {
                    return Some("ppp takes a port with a + sign");
                }
                let bare_line_feed = line
                    .iter()
                    .enumerate()
                    .any(|(at, &b)| b == b'\n' && (at == 0 || line[at - 1] != b'\r'));
                if line.starts_with(b"PROXY ") && bare_line_feed {
                    return Some("ppp takes a line feed without carriage return");
                }
                None
            }
            _ => None,
        }
    }

    fn compare(bytes: &[u8]) -> Result<(), TestCaseError> {
        let (ours, theirs) = (ours(bytes), theirs(bytes));
        let agree = match (&ours, &theirs) {
            (Verdict::Header(..), _) | (_, Verdict::Header(..)) => ours == theirs,
            // Where neither accepts, only the timing may differ: this parser
            // refuses at the first byte that rules a header out, ppp often
            // waits for the CR.
            _ => true,
        };
        if !agree {
            prop_assert!(
                explained(bytes, &ours, &theirs).is_some(),
                "{}: ours {:?}, ppp {:?}",
                bytes.escape_ascii(),
                ours,
                theirs
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn ppp_agrees_on_valid_headers((wire, _) in valid_header(), rest in prop::collection::vec(any::<u8>(), 0..16)) {
            compare(&[wire, rest].concat())?;
        }

        #[test]
        fn ppp_agrees_on_mutated_headers(bytes in mutated_header()) {
            compare(&bytes)?;
        }
    }

    #[test]
    fn the_deliberate_differences_from_ppp_are_real() {
        let cases: [&[u8]; 6] = [
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY UNKNOWN a\nb\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \n",
            b"PROXY UNKNOWN \xff\r\n",
            b"PROXY UNKNOWN a b c d e\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x20\x11\x00\x00",
        ];
        for bytes in cases {
            let (ours, theirs) = (ours(bytes), theirs(bytes));
            assert_ne!(ours, theirs, "{}", bytes.escape_ascii());
            assert!(
                explained(bytes, &ours, &theirs).is_some(),
                "{}",
                bytes.escape_ascii()
            );
        }
    }

    // ------------------------------------------------ read_header on sockets

    const PATIENCE: Duration = Duration::from_secs(10);

    fn unix_pair() -> (UnixStream, UnixStream) {
        let (client, server) = UnixStream::pair().unwrap();
        server.set_read_timeout(Some(PATIENCE)).unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        (client, server)
    }

    fn source_of(wire: &[u8]) -> Option<SocketAddr> {
        complete(wire).unwrap().0.source
    }

    #[test]
    fn a_header_and_service_bytes_in_one_write_leave_the_service_bytes() {
        let source: SocketAddr = "[2001:db8::7]:5555".parse().unwrap();
        let destination: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        for header in [
            proxy::v1_header(source, destination),
            proxy::v2_header(source, destination),
        ] {
            let (mut client, mut server) = unix_pair();
            client
                .write_all(&[&header[..], b"hello\n"].concat())
                .unwrap();
            let mut buf = Vec::new();
            let (parsed, length) = read_header(&mut server, &mut buf).unwrap();
            assert_eq!(parsed.source, Some(source));
            assert_eq!(length, header.len());
            assert_eq!(&buf[length..], b"hello\n");
        }
    }

    #[test]
    fn over_tcp_the_service_bytes_are_the_leftover_then_the_stream() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.set_read_timeout(Some(PATIENCE)).unwrap();

        let source: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let mut wire = proxy::v2_header(source, "198.51.100.1:443".parse().unwrap());
        // A TLV block that makes the header longer than the first read.
        let length = u16::from_be_bytes([wire[14], wire[15]]) + 300;
        wire[14..16].copy_from_slice(&length.to_be_bytes());
        wire.extend_from_slice(&[0x04, 0x01, 0x29]);
        wire.resize(16 + usize::from(length), 0);
        let service = b"the service's first bytes";
        client.write_all(&[&wire[..], service].concat()).unwrap();
        client.shutdown(Shutdown::Write).unwrap();

        let mut buf = Vec::new();
        let (header, length) = read_header(&mut server, &mut buf).unwrap();
        assert_eq!(header.source, Some(source));
        assert_eq!(length, wire.len());
        assert_eq!(
            buf.len(),
            length,
            "no byte read past a v2 header of known length"
        );
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, service);
    }

    /// Counts the bytes of each read and reports them, so that the writer
    /// sends the next byte only once the last one has been read.
    struct Reporting<R> {
        inner: R,
        reads: mpsc::Sender<usize>,
    }

    impl<R: Read> Read for Reporting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let read = self.inner.read(buf)?;
            self.reads.send(read).unwrap();
            Ok(read)
        }
    }

    #[test]
    fn a_header_trickled_byte_by_byte_is_read_whole() {
        let source: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let destination: SocketAddr = "198.51.100.1:443".parse().unwrap();
        for wire in [
            proxy::v1_header(source, destination),
            proxy::v2_header(source, destination),
        ] {
            let (mut client, server) = unix_pair();
            let (reads, read) = mpsc::channel();
            let writer = {
                let wire = wire.clone();
                thread::spawn(move || {
                    for byte in &wire {
                        client.write_all(std::slice::from_ref(byte)).unwrap();
                        assert_eq!(
                            read.recv_timeout(PATIENCE),
                            Ok(1),
                            "each read gets the one byte sent"
                        );
                    }
                    client
                })
            };
            let mut reader = Reporting {
                inner: server,
                reads,
            };
            let mut buf = Vec::new();
            let (header, length) = read_header(&mut reader, &mut buf).unwrap();
            assert_eq!(header.source, Some(source));
            assert_eq!(length, wire.len());
            assert_eq!(buf, wire);
            drop(reader); // ends the writer's wait if a read were missing
            writer.join().unwrap();
        }
    }

    #[test]
    fn a_connection_that_ends_mid_header_is_an_unexpected_eof() {
        let wire = proxy::v2_header(
            "192.0.2.7:1".parse().unwrap(),
            "192.0.2.1:2".parse().unwrap(),
        );
        for cut in [1, 15, 20] {
            let (mut client, mut server) = unix_pair();
            client.write_all(&wire[..cut]).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let mut buf = Vec::new();
            let error = read_header(&mut server, &mut buf).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
            assert_eq!(buf, &wire[..cut]);
        }
    }

    #[test]
    fn a_client_without_a_header_is_refused_without_waiting() {
        let (mut client, mut server) = unix_pair();
        // The client stays connected: only its bytes can end the wait early.
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let error = read_header(&mut server, &mut Vec::new()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            ProxyError::from_io(&error),
            Some(&ProxyError::NotProxyHeader)
        );
        drop(client);
    }

    #[test]
    fn a_timed_out_read_resumes_where_it_stopped() {
        let (mut client, mut server) = unix_pair();
        server
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let wire = proxy::v1_header(
            "192.0.2.7:1".parse().unwrap(),
            "192.0.2.1:2".parse().unwrap(),
        );
        client.write_all(&wire[..10]).unwrap();
        let mut buf = Vec::new();
        let error = read_header(&mut server, &mut buf).unwrap_err();
        assert!(
            matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{error}"
        );
        assert_eq!(buf, &wire[..10]);

        client.write_all(&wire[10..]).unwrap();
        server.set_read_timeout(Some(PATIENCE)).unwrap();
        let (header, length) = read_header(&mut server, &mut buf).unwrap();
        assert_eq!(header.source, source_of(&wire));
        assert_eq!(length, wire.len());
    }
}

mod end_to_end {
    //! The PROXY protocol end to end, in both dispatch modes (rules 30, 31, 39,
    //! 40, 46): the header's client is the peer of the handler, of
    //! `verify_request`, of log lines, of chat's names and of the auth failure
    //! limit; `LOCAL` and `UNKNOWN` keep the real peer; a header trickled and
    //! never finished is closed at its deadline without delaying anyone.
    //!
    //! `cargo test --all-features --test proxy_protocol end_to_end`

    use std::io::{self, BufRead, BufReader, Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpStream};
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    use crate::support::http::get;
    use crate::support::proxy::{proxy_v1, proxy_v2, proxy_v2_local};
    use crate::support::{program, ServerProcess, STEP};
    use crate::support::{run_messages, Mode, TempDir};
    use parking_lot::Mutex;
    use socketserver::protocol::auth::Key;
    use socketserver::protocol::framing::FrameCodec;
    use socketserver::request::{Conn, Framing, MessageHandler, Next};
    use socketserver::{Address, Options};

    fn serve(service: &str, mode: Mode, args: &[&str]) -> ServerProcess {
        ServerProcess::start_with(
            program()
                .args(["serve", service, "--proxy-protocol"])
                .args(mode.flag())
                .args(args),
            1,
        )
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    /// A connection that starts with `header`.
    fn connect_with(server: &str, header: &[u8]) -> TcpStream {
        let mut stream = TcpStream::connect(server).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.write_all(header).unwrap();
        stream
    }

    /// Reads until the server closes; what came (a reset counts as closed).
    fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
        let mut rest = Vec::new();
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{e}"),
        }
        rest
    }

    /// A chat member behind a header.
    struct Member {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    impl Member {
        fn join(server: &str, header: &[u8]) -> Member {
            let stream = connect_with(server, header);
            let mut member = Member {
                writer: stream.try_clone().unwrap(),
                reader: BufReader::new(stream),
            };
            // The room has it once it refuses an empty nick (its first line).
            member.say("/nick");
            assert_eq!(member.line(), "* a nick cannot be empty (use /nick NAME)");
            member
        }

        fn say(&mut self, text: &str) {
            writeln!(self.writer, "{text}").unwrap();
        }

        fn line(&mut self) -> String {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            line.trim_end_matches('\n').to_string()
        }

        fn local(&self) -> SocketAddr {
            self.writer.local_addr().unwrap()
        }
    }

    /// Echoes the peer it was given, once, and closes; refuses 192.0.2.66.
    #[derive(Clone, Default)]
    struct WhoAmI {
        verified: Arc<Mutex<Vec<Address>>>,
    }

    impl MessageHandler for WhoAmI {
        type Session = ();

        fn framing(&self, _: &()) -> Framing {
            Framing::Line { max: 64 }
        }

        fn open(&self, conn: &mut Conn<'_>) -> io::Result<()> {
            let peer = conn.peer().clone();
            writeln!(conn, "you are {peer}")
        }

        fn on_message(&self, _: &mut (), _: &[u8], _: &mut Conn<'_>) -> io::Result<Next> {
            Ok(Next::Close)
        }

        fn verify_request(&self, peer: &Address) -> bool {
            self.verified.lock().push(peer.clone());
            peer.as_inet().map(|a| a.ip().to_string()) != Some("192.0.2.66".to_string())
        }
    }

    crate::both_modes! {
        fn the_handler_and_verify_request_see_the_header_address(mode) {
            let handler = WhoAmI::default();
            let server = run_messages(mode, handler.clone(), Options::new().proxy_protocol(true));
            let target = server.inet().to_string();
            let ask = |header: &[u8]| -> String {
                let mut stream = connect_with(&target, header);
                let mut answer = String::new();
                BufReader::new(&mut stream).read_line(&mut answer).unwrap();
                answer
            };
            let dst = server.inet();
            assert_eq!(ask(&proxy_v1(addr("203.0.113.7:5555"), dst)), "you are 203.0.113.7:5555\n");
            let v6 = addr("[2001:db8::7]:6666");
            assert_eq!(ask(&proxy_v2(v6, addr("[2001:db8::1]:443"))), "you are [2001:db8::7]:6666\n");
            // LOCAL and UNKNOWN keep the real peer.
            let mut local = connect_with(&target, &proxy_v2_local());
            let mut answer = String::new();
            BufReader::new(&mut local).read_line(&mut answer).unwrap();
            assert_eq!(answer, format!("you are {}\n", local.local_addr().unwrap()));
            let mut unknown = connect_with(&target, b"PROXY UNKNOWN\r\n");
            let mut answer = String::new();
            BufReader::new(&mut unknown).read_line(&mut answer).unwrap();
            assert_eq!(answer, format!("you are {}\n", unknown.local_addr().unwrap()));
            // verify_request judged the header's client and refused this one.
            let mut refused = connect_with(&target, &proxy_v1(addr("192.0.2.66:1"), dst));
            assert!(until_closed(&mut refused).is_empty());
            let verified = handler.verified.lock().clone();
            assert!(verified.contains(&Address::Inet(addr("192.0.2.66:1"))), "{verified:?}");
            assert!(verified.contains(&Address::Inet(v6)), "{verified:?}");
            // Counted as rejected once the worker is done with it.
            crate::support::eventually("the refusal to be counted", || server.handle.stats().rejected == 1);
        }

        fn chat_names_come_from_the_header(mode) {
            let server = serve("chat", mode, &["--bind", "tcp://127.0.0.1:0"]);
            let target = server.addr_of(0);
            let dst = addr(&target);
            let mut first = Member::join(&target, &proxy_v1(addr("203.0.113.7:5555"), dst));
            let mut second = Member::join(&target, &proxy_v2(addr("[2001:db8::7]:6666"), addr("[2001:db8::1]:7000")));
            assert_eq!(first.line(), "* [2001:db8::7]:6666 joined");
            let local = Member::join(&target, &proxy_v2_local());
            assert_eq!(first.line(), format!("* {} joined", local.local()));
            let unknown = Member::join(&target, b"PROXY UNKNOWN TCP4 a b c d\r\n");
            assert_eq!(first.line(), format!("* {} joined", unknown.local()));
            second.say("hello from behind the proxy");
            assert_eq!(first.line(), "[2001:db8::7]:6666: hello from behind the proxy");
            first.say("hi");
            assert_eq!(second.line(), format!("* {} joined", local.local()));
            assert_eq!(second.line(), format!("* {} joined", unknown.local()));
            assert_eq!(second.line(), "203.0.113.7:5555: hi");
        }

        fn http_logs_the_header_address(mode) {
            let mut server = ServerProcess::start_with(
                program()
                    .args(["serve", "http", "--proxy-protocol", "--bind", "tcp://127.0.0.1:0"])
                    .args(mode.flag())
                    .env("RUST_LOG", "info"),
                1,
            );
            let target = server.addr_of(0);
            let mut stream = connect_with(&target, &proxy_v2(addr("198.51.100.23:4444"), addr(&target)));
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let answer = until_closed(&mut stream);
            assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&answer));
            server.signal("TERM");
            assert_eq!(server.wait(STEP).and_then(|s| s.code()), Some(0));
            let log = server.stderr_text();
            assert!(log.contains("198.51.100.23:4444 \"GET / HTTP/1.0\" 200"), "{log}");
            assert!(!log.contains(&format!("{} \"GET", stream.local_addr().unwrap())), "{log}");
        }

        fn exec_and_files_count_auth_failures_by_the_header_address(mode) {
            for service in ["exec", "files"] {
                let dir = TempDir::new("proxy-auth");
                std::fs::write(dir.join("key"), b"the key").unwrap();
                let key = dir.join("key").display().to_string();
                let files = dir.join("files").display().to_string();
                let mut args = vec!["--bind", "tcp://127.0.0.1:0", "--key-file", &key, "--auth-max-failures", "2"];
                if service == "files" {
                    args.extend(["--dir", &files]);
                }
                let server = serve(service, mode, &args);
                let target = server.addr_of(0);
                let dst = addr(&target);
                let banned = addr("203.0.113.50:1000");
                let challenge = |source: SocketAddr| -> Option<TcpStream> {
                    let mut stream = connect_with(&target, &proxy_v1(source, dst));
                    let mut challenge = [0u8; 32];
                    stream.read_exact(&mut challenge).ok().map(|()| {
                        stream.write_all(&Key::new(&b"a wrong key"[..]).unwrap().answer(&challenge)).unwrap();
                        stream
                    })
                };
                // Two wrong answers from the header's address...
                for _ in 0..2 {
                    let mut stream = challenge(banned).expect("a challenge");
                    let mut len = [0u8; 4];
                    stream.read_exact(&mut len).unwrap();
                    let mut verdict = vec![0u8; u32::from_le_bytes(len) as usize];
                    stream.read_exact(&mut verdict).unwrap();
                    assert_eq!(verdict, br#"{"status":"denied"}"#, "{service}");
                }
                // ...refuse that address before the challenge, from any port...
                let mut stream = connect_with(&target, &proxy_v1(addr("203.0.113.50:2000"), dst));
                assert!(until_closed(&mut stream).is_empty(), "{service}: challenged after the limit");
                // ...but not another client behind the same proxy (the real
                // peer of every connection is 127.0.0.1).
                let mut other = connect_with(&target, &proxy_v1(addr("203.0.113.51:1000"), dst));
                let mut challenge = [0u8; 32];
                other.read_exact(&mut challenge).unwrap();
                let mut authenticated = TcpStream::connect(&target).unwrap();
                authenticated.set_read_timeout(Some(STEP)).unwrap();
                authenticated.write_all(&proxy_v2(addr("203.0.113.52:1"), dst)).unwrap();
                socketserver::protocol::auth::client_handshake(
                    &mut authenticated,
                    &Key::new(&b"the key"[..]).unwrap(),
                    &FrameCodec::new(),
                )
                .unwrap_or_else(|e| panic!("{service}: {e}"));
            }
        }

        fn a_trickled_header_is_cut_at_its_deadline_and_delays_no_one(mode) {
            let server = serve(
                "echo-upper",
                mode,
                &[
                    "--bind", "tcp://127.0.0.1:0",
                    "--proxy-header-timeout", "1",
                    "--admin", "tcp://127.0.0.1:0",
                    "--threads", "1",
                ],
            );
            let target = server.addr_of(0);
            let started = Instant::now();
            let mut slow = TcpStream::connect(&target).unwrap();
            slow.set_read_timeout(Some(STEP)).unwrap();
            let mut writer = slow.try_clone().unwrap();
            // One byte every 50 ms of a header that could still be valid, and
            // never ends: 1.8 s of bytes against a 1 s deadline.
            let trickle = thread::spawn(move || {
                for byte in b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 " {
                    if writer.write_all(&[*byte]).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            });
            // Meanwhile others are served at once.
            for n in 0..3 {
                let mut fast = connect_with(&target, &proxy_v1(addr("192.0.2.9:9"), addr(&target)));
                fast.write_all(format!("fast {n}").as_bytes()).unwrap();
                fast.shutdown(Shutdown::Write).unwrap();
                assert_eq!(until_closed(&mut fast), format!("FAST {n}").as_bytes());
            }
            assert!(started.elapsed() < Duration::from_secs(1), "the others waited for the slow header");
            // The slow one is closed unanswered at its deadline.
            assert!(until_closed(&mut slow).is_empty());
            let waited = started.elapsed();
            assert!(waited >= Duration::from_millis(900), "closed after {waited:?}");
            assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
            trickle.join().unwrap();
            // A connection without a header is closed at once, unanswered.
            let garbage_at = Instant::now();
            let mut garbage = connect_with(&target, b"GET / HTTP/1.1\r\n\r\n");
            assert!(until_closed(&mut garbage).is_empty());
            assert!(garbage_at.elapsed() < Duration::from_millis(900));
            // Both are counted as rejected (once their workers are done).
            let rejected = format!("socketserver_rejected_total{{listener=\"{}\"}} 2\n", server.urls[0]);
            crate::support::eventually("two rejections on /metrics", || {
                get(server.admin(), "/metrics").1.contains(&rejected)
            });
        }
    }
}

mod behind_haproxy {
    //! A rolling restart behind a real HAProxy (Debian's `haproxy`; skipped
    //! unless `CI` is set when it is not installed), in both dispatch modes.
    //!
    //! Three echo-upper and three http backends on loopback ports, each with
    //! `--proxy-protocol`, `--agent-check` and `--drain-delay`; HAProxy in front
    //! with `send-proxy-v2`, `check` and `agent-check`. While clients of both
    //! services run through HAProxy, each backend in turn gets SIGTERM, drains
    //! (HAProxy's stats show `DRAIN`), exits, and is started again on the same
    //! ports (HAProxy's stats show `UP` again). No request may fail, and the
    //! http backends' access logs must show each client's own address (the
    //! PROXY header's), not HAProxy's.
    //!
    //! `cargo test --all-features --test proxy_protocol behind_haproxy`

    use std::collections::BTreeSet;
    use std::fmt::Write as _;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    use std::thread;
    use std::time::{Duration, Instant};

    use crate::support::{program, Mode, ServerProcess, TempDir, Tool, STEP};

    /// How long a backend keeps serving after SIGTERM: many agent-check
    /// intervals (100 ms), so HAProxy has stopped sending it clients before its
    /// listener closes.
    const DRAIN_DELAY: &str = "1";
    /// The whole test's bound.
    const BUDGET: Duration = Duration::from_secs(60);

    /// One backend process and the ports it keeps across restarts.
    struct Backend {
        service: &'static str,
        name: String,
        port: u16,
        agent_port: u16,
        process: ServerProcess,
        /// Standard error of its earlier lives (the access logs).
        logs: String,
    }

    impl Backend {
        fn start(
            service: &'static str,
            name: String,
            mode: Mode,
            ports: Option<(u16, u16)>,
        ) -> Backend {
            let (bind, agent) = match ports {
                Some((port, agent)) => (
                    format!("tcp://127.0.0.1:{port}"),
                    format!("tcp://127.0.0.1:{agent}"),
                ),
                None => (
                    "tcp://127.0.0.1:0".to_string(),
                    "tcp://127.0.0.1:0".to_string(),
                ),
            };
            let process = ServerProcess::start_with(
                program()
                    .args(["serve", service, "--proxy-protocol"])
                    .args(mode.flag())
                    .args(["--bind", &bind, "--agent-check", &agent])
                    .args(["--drain-delay", DRAIN_DELAY, "--shutdown-timeout", "5"])
                    .env("RUST_LOG", "info"),
                1,
            );
            let port = process
                .addr_of(0)
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let agent_port = process.agent().port();
            Backend {
                service,
                name,
                port,
                agent_port,
                process,
                logs: String::new(),
            }
        }

        /// SIGTERM, then the exit (status 0); keeps its log.
        fn stop(&mut self) {
            self.process.signal("TERM");
            let status = self.process.wait(STEP).expect("the backend exits");
            assert_eq!(status.code(), Some(0), "{} exited with {status}", self.name);
            self.logs.push_str(&self.process.stderr_text());
        }

        fn restart(&mut self, mode: Mode) {
            let again = Backend::start(
                self.service,
                self.name.clone(),
                mode,
                Some((self.port, self.agent_port)),
            );
            self.process = again.process;
        }
    }

    /// HAProxy in the foreground, killed on drop.
    struct Haproxy {
        child: Child,
        stats: PathBuf,
    }

    impl Drop for Haproxy {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Haproxy {
        fn start(dir: &Path, echo_port: u16, http_port: u16, backends: &[Backend]) -> Haproxy {
            let stats = dir.join("haproxy.sock");
            let mut config = format!(
            "global\n    stats socket {} mode 600 level admin\n    maxconn 4000\n\
             defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 20s\n    timeout server 20s\n\
             frontend echo\n    bind 127.0.0.1:{echo_port}\n    default_backend echo_servers\n\
             frontend web\n    bind 127.0.0.1:{http_port}\n    default_backend web_servers\n",
            stats.display()
        );
            for (backend, service) in [("echo_servers", "echo-upper"), ("web_servers", "http")] {
                writeln!(config, "backend {backend}").unwrap();
                writeln!(
                config,
                "    default-server send-proxy-v2 check inter 100 fall 1 rise 2 agent-check agent-inter 100"
            )
            .unwrap();
                for b in backends.iter().filter(|b| b.service == service) {
                    writeln!(
                        config,
                        "    server {} 127.0.0.1:{} agent-port {}",
                        b.name, b.port, b.agent_port
                    )
                    .unwrap();
                }
            }
            let path = dir.join("haproxy.cfg");
            std::fs::write(&path, config).unwrap();
            let child = Command::new("haproxy")
                .arg("-f")
                .arg(&path)
                .arg("-db")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start haproxy");
            Haproxy { child, stats }
        }

        /// Each server's status, by `backend/server`, from `show stat`.
        fn statuses(&self) -> Vec<(String, String)> {
            let Ok(mut socket) = UnixStream::connect(&self.stats) else {
                return Vec::new();
            };
            socket.set_read_timeout(Some(STEP)).unwrap();
            socket.write_all(b"show stat\n").unwrap();
            let mut csv = String::new();
            socket.read_to_string(&mut csv).unwrap();
            let mut lines = csv.lines();
            let Some(header) = lines.next() else {
                return Vec::new();
            };
            let columns: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
            let column = |name: &str| columns.iter().position(|c| *c == name).unwrap();
            let (px, sv, status) = (column("pxname"), column("svname"), column("status"));
            lines
                .map(|line| line.split(',').collect::<Vec<_>>())
                .filter(|f| f.len() > status && f[sv] != "FRONTEND" && f[sv] != "BACKEND")
                .map(|f| (format!("{}/{}", f[px], f[sv]), f[status].to_string()))
                .collect()
        }

        fn status_of(&self, server: &str) -> String {
            self.statuses()
                .into_iter()
                .find(|(name, _)| name.ends_with(&format!("/{server}")))
                .map(|(_, status)| status)
                .unwrap_or_default()
        }
    }

    /// A free loopback port (bound, then released for HAProxy to take).
    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// What the clients did.
    #[derive(Default)]
    struct Tally {
        ok: AtomicU64,
        failed: AtomicU64,
        errors: Mutex<Vec<String>>,
        /// The local address of every http client whose request succeeded.
        http_clients: Mutex<BTreeSet<String>>,
    }

    impl Tally {
        fn fail(&self, what: String) {
            self.failed.fetch_add(1, SeqCst);
            let mut errors = self.errors.lock().unwrap();
            if errors.len() < 10 {
                errors.push(what);
            }
        }
    }

    fn echo_request(port: u16, n: u64) -> Result<(), String> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(STEP)).unwrap();
        let text = format!("hello {n}\n");
        stream
            .write_all(text.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        stream
            .shutdown(Shutdown::Write)
            .map_err(|e| format!("shutdown: {e}"))?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(|e| format!("read: {e}"))?;
        if answer != text.to_uppercase() {
            return Err(format!("echo answered {answer:?} to {text:?}"));
        }
        Ok(())
    }

    fn http_request(port: u16) -> Result<String, String> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(STEP)).unwrap();
        let local = stream.local_addr().unwrap().to_string();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(|e| format!("read: {e}"))?;
        if !answer.starts_with("HTTP/1.1 200 OK\r\n") || !answer.ends_with("</html>\n") {
            return Err(format!(
                "http answered {:?}",
                &answer[..answer.len().min(80)]
            ));
        }
        Ok(local)
    }

    /// Waits until `condition` holds of HAProxy's statuses.
    fn until(
        haproxy: &Haproxy,
        what: &str,
        started: Instant,
        mut condition: impl FnMut(&Haproxy) -> bool,
    ) {
        while !condition(haproxy) {
            assert!(
                started.elapsed() < BUDGET,
                "timed out waiting for {what}: {:?}",
                haproxy.statuses()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    crate::both_modes! {
        fn a_rolling_restart_behind_haproxy_fails_no_request(mode) {
            if crate::support::tool(Tool::Haproxy).is_none() {
                return;
            }
            let started = Instant::now();
            let dir = TempDir::new("haproxy");
            let mut backends: Vec<Backend> = (1..=3)
                .map(|n| Backend::start("echo-upper", format!("echo{n}"), mode, None))
                .chain((1..=3).map(|n| Backend::start("http", format!("web{n}"), mode, None)))
                .collect();
            let (echo_port, http_port) = (free_port(), free_port());
            let haproxy = Haproxy::start(&dir.0, echo_port, http_port, &backends);
            until(&haproxy, "every server UP", started, |h| {
                let statuses = h.statuses();
                statuses.len() == 6 && statuses.iter().all(|(_, s)| s == "UP")
            });

            let stop = Arc::new(AtomicBool::new(false));
            let tally = Arc::new(Tally::default());
            let clients: Vec<_> = (0..6)
                .map(|i| {
                    let (stop, tally) = (Arc::clone(&stop), Arc::clone(&tally));
                    thread::spawn(move || {
                        let mut n = 0u64;
                        while !stop.load(SeqCst) {
                            n += 1;
                            let result = if i % 2 == 0 {
                                echo_request(echo_port, n).map(|()| None)
                            } else {
                                http_request(http_port).map(Some)
                            };
                            match result {
                                Ok(local) => {
                                    tally.ok.fetch_add(1, SeqCst);
                                    if let Some(local) = local {
                                        tally.http_clients.lock().unwrap().insert(local);
                                    }
                                }
                                Err(e) => tally.fail(e),
                            }
                        }
                    })
                })
                .collect();

            for backend in backends.iter_mut() {
                let name = backend.name.clone();
                let before = tally.ok.load(SeqCst);
                backend.process.signal("TERM");
                until(&haproxy, &format!("{name} to drain"), started, |h| h.status_of(&name).starts_with("DRAIN"));
                let status = backend.process.wait(STEP).expect("the backend exits");
                assert_eq!(status.code(), Some(0), "{name}");
                backend.logs.push_str(&backend.process.stderr_text());
                backend.restart(mode);
                until(&haproxy, &format!("{name} to be UP again"), started, |h| h.status_of(&name) == "UP");
                assert!(tally.ok.load(SeqCst) > before, "no request went through while {name} restarted");
            }
            // Some load on the restarted set, then stop.
            let settled = tally.ok.load(SeqCst);
            while tally.ok.load(SeqCst) < settled + 50 {
                assert!(started.elapsed() < BUDGET);
                thread::sleep(Duration::from_millis(10));
            }
            stop.store(true, SeqCst);
            for client in clients {
                client.join().unwrap();
            }
            for backend in backends.iter_mut() {
                backend.stop();
            }
            let (ok, failed) = (tally.ok.load(SeqCst), tally.failed.load(SeqCst));
            eprintln!("rolling restart ({mode:?}): {ok} requests, {failed} failed, {:.1} s", started.elapsed().as_secs_f64());
            assert_eq!(failed, 0, "failed requests: {:?}", tally.errors.lock().unwrap());
            assert!(ok > 100, "only {ok} requests");

            // Each http client's own address (the PROXY header's) is in a
            // backend's access log; HAProxy's side of the connection is not
            // what the backends saw.
            let logged: BTreeSet<&str> = backends
                .iter()
                .filter(|b| b.service == "http")
                .flat_map(|b| b.logs.lines())
                .filter_map(|line| line.split_once(" \"GET / HTTP/1.1\" 200 "))
                .filter_map(|(before, _)| before.rsplit(' ').next())
                .collect();
            let clients = tally.http_clients.lock().unwrap();
            assert!(!clients.is_empty());
            for local in clients.iter() {
                assert!(logged.contains(local.as_str()), "{local} is in no access log");
            }
            assert!(started.elapsed() < BUDGET);
        }
    }
}
