//! The exec and files answer decoders: any header decodes to a typed answer
//! that writes back the same, or is refused.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::answers(data));
