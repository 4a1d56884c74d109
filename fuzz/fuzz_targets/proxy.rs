//! The proxy's multi-get split, backend reply framing and reassembly
//! against fake servers answering from a model. The harness is
//! `mnemo_proxy::fuzzing::multiget`, which the stable replay
//! (`cargo test -p mnemo-proxy --test fuzz_proxy`) runs on this corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mnemo_proxy::fuzzing::multiget(data);
});
