//! The files request decoder: any payload is a request that writes back
//! the same, or a named refusal that closes exactly when a body may follow.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::files_request(data));
