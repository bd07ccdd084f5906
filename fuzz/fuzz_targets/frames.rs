//! Length-prefixed frames and bodies: any input reads as whole frames, a
//! clean end, or a named error; payloads never exceed the limit, buffers
//! grow with what arrives, and what was read writes back byte for byte.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::frames(data));
