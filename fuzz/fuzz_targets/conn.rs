//! A whole server connection: fuzz bytes cut into client reads, through
//! the real `Conn` and dispatch into a fresh small engine, whose
//! consistency is checked after the connection ends. The harness is
//! `mnemo_server::fuzzing::conn`, which the stable replay
//! (`cargo test -p mnemo-server --test fuzz_conn`) runs on this corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mnemo_server::fuzzing::conn(data);
});
