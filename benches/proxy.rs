//! The PROXY protocol header parser against the `ppp` crate: the time to
//! parse one complete header (and find its addresses) that a load balancer
//! sends, per header.
//!
//! `cargo bench --bench proxy` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ppp::v2::{Builder, Command, Protocol, Type, Version};
use ppp::HeaderResult;
use socketserver::layer::proxy;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// The headers: what HAProxy's `send-proxy` and `send-proxy-v2` write, and
/// a version 2 header with the TLVs a TLS-terminating balancer adds.
fn headers() -> Vec<(&'static str, Vec<u8>)> {
    let v4 = (addr("192.168.0.1:56324"), addr("192.168.0.11:443"));
    let v6 = (
        addr("[2001:db8:85a3::8a2e:370:7334]:56324"),
        addr("[2001:db8::1]:443"),
    );
    let with_tlvs = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        ppp::v2::Addresses::from(v4),
    )
    .write_tlv(Type::ALPN, b"h2")
    .unwrap()
    .write_tlv(Type::Authority, b"www.example.com")
    .unwrap()
    .write_tlv(Type::UniqueId, &[0x5a; 32])
    .unwrap()
    .write_tlv(Type::NoOp, &[0; 16])
    .unwrap()
    .build()
    .unwrap();
    vec![
        ("v1_tcp4", proxy::v1_header(v4.0, v4.1)),
        ("v1_tcp6", proxy::v1_header(v6.0, v6.1)),
        ("v2_tcp6", proxy::v2_header(v6.0, v6.1)),
        ("v2_tcp4_tlvs", with_tlvs),
    ]
}

fn parse_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("proxy_header");
    for (name, wire) in headers() {
        // Both parsers must read the same header before they are timed.
        let ours = match proxy::parse(&wire).unwrap() {
            proxy::Parsed::Complete { header, length } => (header.source, length),
            proxy::Parsed::Incomplete => panic!("{name} is incomplete"),
        };
        assert_eq!(ours.1, wire.len());
        assert!(ours.0.is_some());
        assert!(matches!(
            HeaderResult::parse(&wire),
            HeaderResult::V1(Ok(_)) | HeaderResult::V2(Ok(_))
        ));

        group.bench_with_input(BenchmarkId::new("socketserver", name), &wire, |b, wire| {
            b.iter(|| black_box(proxy::parse(black_box(wire))))
        });
        group.bench_with_input(BenchmarkId::new("ppp", name), &wire, |b, wire| {
            b.iter(|| black_box(HeaderResult::parse(black_box(wire))))
        });
    }
    group.finish();
}

criterion_group!(benches, parse_header);
criterion_main!(benches);
