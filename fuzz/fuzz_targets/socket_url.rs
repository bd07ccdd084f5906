//! `SocketUrl`: any text parses or is refused; a parsed URL prints back as
//! text that parses to the same URL.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::socket_url(data));
