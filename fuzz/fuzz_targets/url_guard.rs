//! Fuzzes `conveyor_fuzz::url_guard` (see its doc for what it checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| conveyor_fuzz::url_guard(text));
