//! Fuzzes `conveyor_fuzz::envelope` (see its doc for what it checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| conveyor_fuzz::envelope(raw));
