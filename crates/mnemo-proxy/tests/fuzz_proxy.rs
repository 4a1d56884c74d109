//! Issue #15: the stable replay of the `proxy` fuzz target. Every input of
//! `fuzz/corpus/proxy/` runs through the harness the target runs,
//! `mnemo_proxy::fuzzing::multiget`: a multi-get split over fake servers,
//! their model answers (intact, cut short or damaged) framed and
//! reassembled by the proxy's own code, the client's bytes checked; and
//! of `proxy_bin`, binary requests translated to meta and back.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
    for f in files {
        let input = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if std::panic::catch_unwind(|| run(&input)).is_err() {
            panic!("{}: the proxy harness failed on this input", f.display());
        }
    }
}

#[test]
fn proxy_corpus_replays_clean() {
    replay("proxy", mnemo_proxy::fuzzing::multiget);
}

/// `fuzz/corpus/proxy_bin/`: binary requests translated to meta and the
/// fake server's answers back (`mnemo_proxy::fuzzing::binary`).
#[test]
fn proxy_bin_corpus_replays_clean() {
    replay("proxy_bin", mnemo_proxy::fuzzing::binary);
}
