//! The proxy's binary-to-meta request translation and meta-to-binary
//! answer translation against a fake server. The harness is
//! `mnemo_proxy::fuzzing::binary`, which the stable replay
//! (`cargo test -p mnemo-proxy --test fuzz_proxy`) runs on this corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mnemo_proxy::fuzzing::binary(data);
});
