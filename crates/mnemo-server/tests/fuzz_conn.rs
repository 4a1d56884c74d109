//! Issue #15: the stable replay of the `conn` fuzz target. Every input of
//! `fuzz/corpus/conn/` (grown by `cargo fuzz run conn`, crashes kept as
//! regressions) runs through the same harness the target runs,
//! `mnemo_server::fuzzing::conn`: a whole connection over the real `Conn`
//! against a fresh small engine, whose consistency is checked after it.
//! The parser corpora ride along, each input cut into reads and run
//! under the protocol its target speaks.

use std::path::{Path, PathBuf};

use mnemo_server::fuzzing;

fn files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files
}

fn replay(path: &Path, input: &[u8]) {
    let r = std::panic::catch_unwind(|| fuzzing::conn(input));
    if r.is_err() {
        panic!("{}: the conn harness failed on this input", path.display());
    }
}

#[test]
fn conn_corpus_replays_clean() {
    let files = files("conn");
    assert!(!files.is_empty(), "fuzz/corpus/conn is empty");
    for f in files {
        let input = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        replay(&f, &input);
    }
}

/// The parser corpora as whole connections of three reads (cut at a
/// third and two thirds), under the protocol of their target or, every
/// third input, `-B auto`, with `-m` from 2 to 8 in turn.
#[test]
fn parser_corpora_as_connections() {
    for (target, proto) in [("text", 1u8), ("meta", 1), ("binary", 2)] {
        for (i, f) in files(target).into_iter().enumerate() {
            let body = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let proto = if i % 3 == 0 { 0 } else { proto };
            let first = 0x40 | ((i % 4) as u8) << 2 | proto;
            let mut input = vec![first, 85, 128];
            input.extend_from_slice(&body);
            replay(&f, &input);
        }
    }
}

/// The harness answers as the server does: a value stored in one read and
/// read back across a cut in the next, pipelined.
#[test]
fn the_harness_carries_a_real_conversation() {
    let mut input = vec![0x01 | 0x20, 100];
    input.extend_from_slice(b"set a 0 0 5\r\nhello\r\nget a\r\nmg a v\r\n");
    let got = fuzzing::conn(&input);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "STORED\r\nVALUE a 0 5\r\nhello\r\nEND\r\nVA 5\r\nhello\r\n"
    );
}
