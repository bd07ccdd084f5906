//! The HTTP request head parser (the framer that cuts a head, then
//! httparse and the service's rules); see `checks::http_head`. Also: the
//! heads read from an input do not depend on how it arrives, whole or a few
//! bytes at a time (the server sees it in whatever pieces the network makes).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use std::io::BufReader;

use socketserver::services::http::{ParsedHead, StaticHttp};

/// The heads read one after another from `data` through a reader of
/// `capacity` bytes, up to the first that is not a request.
fn heads(site: &StaticHttp, data: &[u8], capacity: usize) -> Vec<ParsedHead> {
    let mut reader = BufReader::with_capacity(capacity, data);
    let mut heads = Vec::new();
    for _ in 0..16 {
        let head = site.parse_head(&mut reader).unwrap();
        let last = !matches!(head, ParsedHead::Request { .. });
        heads.push(head);
        if last {
            break;
        }
    }
    heads
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::http_head(data);
    let site = StaticHttp::builtin()
        .max_request_line(256)
        .max_head(1024)
        .max_headers(8);
    let whole = heads(&site, data, data.len().max(1));
    for capacity in [1, 7] {
        assert_eq!(
            heads(&site, data, capacity),
            whole,
            "read {capacity} bytes at a time"
        );
    }
});
