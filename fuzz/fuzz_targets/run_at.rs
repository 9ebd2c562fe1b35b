//! Fuzzes `conveyor_fuzz::run_at` (see its doc for what it checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| conveyor_fuzz::run_at(text));
