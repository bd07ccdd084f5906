//! The exec command-line splitter: any text splits into words or is refused
//! with the one error; words quoted again split back the same.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::command_line(data));
