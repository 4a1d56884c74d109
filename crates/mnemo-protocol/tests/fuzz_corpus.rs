//! The bounded, stable-toolchain pass of the fuzz targets (issue #7).
//!
//! cargo-fuzz needs nightly and runs for minutes; CI gets this instead:
//! every file of `fuzz/corpus/<target>/` (the inputs the fuzzer kept, plus
//! hand-written seeds and every crash it found) is replayed through the same
//! invariant checks the fuzz targets run (`fuzz/src/checks.rs`, included by
//! path so both always agree), followed by a short deterministic random
//! pass that mutates corpus entries. Set `MNEMO_FUZZ_SEED` to vary it and
//! `MNEMO_FUZZ_ITERS` to lengthen it.

#[path = "../../../fuzz/src/checks.rs"]
mod checks;

use std::path::PathBuf;

/// Mutated inputs per target in the random pass: enough to shake out a
/// shallow regression, small enough for CI's two cores.
const DEFAULT_ITERS: usize = 100_000;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list the corpus {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus directory entry").path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect();
    files.sort();
    // A corpus that silently went missing would make this test vacuous.
    assert!(
        files.len() >= 10,
        "corpus {} has only {} files",
        dir.display(),
        files.len()
    );
    files
}

/// splitmix64: a tiny deterministic generator, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the parsers, so mutations hit interesting paths.
const MAGIC: &[u8] = b" \r\n\0=-+0123456789\x80\x81\xffkvqbNTRDJMCEFIOS";

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = MAGIC[rng.below(MAGIC.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                input.insert(i, MAGIC[rng.below(MAGIC.len())]);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                input.drain(i..i + n);
            }
            4 if !other.is_empty() => {
                // Splice a piece of another corpus entry in.
                let s = rng.below(other.len());
                let n = 1 + rng.below((other.len() - s).min(64));
                let at = rng.below(len + 1);
                input.splice(at..at, other[s..s + n].iter().copied());
            }
            5 if len > 0 => input.truncate(rng.below(len)),
            _ => {
                let i = rng.below(len + 1);
                let digits = rng.next().to_string();
                input.splice(i..i, digits.bytes());
            }
        }
    }
}

fn run(target: &str, check: fn(&[u8])) {
    let files = corpus(target);
    for (name, bytes) in &files {
        let outcome = std::panic::catch_unwind(|| check(bytes));
        assert!(outcome.is_ok(), "{target}: corpus file {name} fails");
    }
    let seed = std::env::var("MNEMO_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6d6e_656d_6f07);
    let iters = std::env::var("MNEMO_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_ITERS);
    let mut rng = Rng(seed);
    for i in 0..iters {
        let mut input = files[rng.below(files.len())].1.clone();
        let other = &files[rng.below(files.len())].1;
        mutate(&mut rng, &mut input, other);
        let outcome = std::panic::catch_unwind(|| check(&input));
        assert!(
            outcome.is_ok(),
            "{target}: mutated input #{i} (seed {seed}) fails; add it to fuzz/corpus/{target}/: {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

#[test]
fn text_parser_corpus() {
    run("text", checks::check_text);
}

#[test]
fn meta_parser_corpus() {
    run("meta", checks::check_meta);
}

#[test]
fn binary_parser_corpus() {
    run("binary", checks::check_binary);
}

#[test]
fn reply_parser_corpus() {
    run("reply", checks::check_reply);
}
