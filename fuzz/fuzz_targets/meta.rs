#![no_main]
//! cargo-fuzz target: see `mnemo_fuzz::check_meta` for the invariants.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mnemo_fuzz::check_meta(data));
