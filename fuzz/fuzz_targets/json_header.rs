//! JSON-header frames: any input is a header object, a clean end, or a named
//! error; an accepted header writes back and reads again as the same object.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::json_header(data));
