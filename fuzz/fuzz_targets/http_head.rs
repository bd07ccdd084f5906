//! The HTTP request head parser (the framer that cuts a head, then
//! httparse and the service's rules); see `checks::http_head`. Also: the
//! heads read from an input do not depend on how it arrives, whole or a few
//! bytes at a time (the server sees it in whatever pieces the network makes).
#![no_main]

#[path = "../checks.rs"]
mod checks;

use checks::http_heads;
use socketserver::services::http::StaticHttp;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::http_head(data);
    let site = StaticHttp::builtin()
        .max_request_line(256)
        .max_head(1024)
        .max_headers(8);
    let whole = http_heads(&site, data, data.len().max(1));
    for capacity in [1, 7] {
        assert_eq!(
            http_heads(&site, data, capacity),
            whole,
            "read {capacity} bytes at a time"
        );
    }
});
