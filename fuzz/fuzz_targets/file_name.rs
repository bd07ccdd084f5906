//! The files name checker: an accepted name is one plain component of at
//! most 255 bytes that stays in the directory.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::file_name(data));
