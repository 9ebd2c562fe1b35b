//! Fuzzes `conveyor_fuzz::config` (see its doc for what it checks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| conveyor_fuzz::config(text));
