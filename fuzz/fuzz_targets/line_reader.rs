//! The bounded line reader of qa, dict and chat; see `checks::line_reader`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::line_reader(data));
