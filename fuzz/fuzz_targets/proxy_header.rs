//! The PROXY protocol header parser (`socketserver::layer::proxy`): the
//! checks of `../proxy_checks.rs` on every input.
#![no_main]

#[path = "../ppp_reference.rs"]
mod ppp_reference;
#[path = "../proxy_checks.rs"]
mod proxy_checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| proxy_checks::check(data));
