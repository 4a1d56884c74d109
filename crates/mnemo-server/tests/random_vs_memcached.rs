//! Seeded random request batches, valid and malformed, sent to memcached
//! 1.6.18 and to mnemo: the answers must be byte-identical. The batches
//! mix commands from a small vocabulary with edge-case arguments (numbers
//! at the 32/64-bit limits, signs, tabs, over-long keys, noreply in odd
//! places, bare `\n` line ends, stray data lines and raw junk).
//!
//! Commands whose answers legitimately differ (CAS values, stats, version)
//! are left out, and so are declared lengths large enough to make either
//! server swallow gigabytes.

mod support;

use support::{require_tool, show, Client, Server};

/// A small deterministic generator (xorshift64*), so a failure names a
/// seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const COMMANDS: &[&str] = &[
    "get",
    "gat",
    "bget",
    "set",
    "add",
    "replace",
    "append",
    "prepend",
    "incr",
    "decr",
    "delete",
    "touch",
    "flush_all",
    "verbosity",
    "get a b",
    "set a",
    "incr a",
    "decr a",
    "delete a",
    "touch a",
    "set n 0 0 2",
    "gat 0 a n",
];

const ARGS: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "10",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "4294967297",
    "noreply",
    "a",
    "b",
    "n",
    "\t5",
    "+3",
    "-0",
    "1x",
    "",
    "99",
];

fn long_key() -> String {
    "k".repeat(251)
}

fn batch(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(12) {
        if rng.below(20) == 0 {
            for _ in 0..rng.below(30) {
                const JUNK: &[u8] = b"abc \r\n\t0123456789";
                out.push(JUNK[rng.below(JUNK.len())]);
            }
            continue;
        }
        let mut line = rng.pick(COMMANDS).to_string();
        for _ in 0..rng.below(7) {
            line.push(' ');
            if rng.below(15) == 0 {
                line.push_str(&long_key());
            } else {
                line.push_str(rng.pick(ARGS));
            }
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(if rng.below(4) == 0 { b"\n" } else { b"\r\n" });
        if rng.below(2) == 0 {
            out.extend_from_slice(rng.pick(&["x", "12", "", "abc", "99"]).as_bytes());
            out.extend_from_slice(rng.pick(&["\r\n", "\n", ""]).as_bytes());
        }
    }
    out
}

/// Sends the batch and then a fixed tail whose answer ends the exchange;
/// returns everything received through that answer.
fn exchange(c: &mut Client, batch: &[u8]) -> Vec<u8> {
    // The leading line end completes a trailing partial line first.
    const TAIL: &[u8] = b"\r\nflush_all\r\nmnemo_sentinel_line\r\n";
    c.send(batch);
    c.send(TAIL);
    match c.try_read_until(b"OK\r\nERROR\r\n") {
        Ok(bytes) => bytes,
        Err((stop, got)) => {
            let mut v = got;
            v.extend_from_slice(format!("<{stop:?}>").as_bytes());
            v
        }
    }
}

#[test]
fn random_batches_match_memcached() {
    require_tool("memcached");
    let reference = Server::memcached(&[]);
    let mnemo = Server::mnemo(&[]);
    let mut failures = Vec::new();
    for seed in 1..=150u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let req = batch(&mut rng);
        // A fresh connection per batch: some batches close it.
        let a = exchange(&mut reference.connect(), &req);
        let b = exchange(&mut mnemo.connect(), &req);
        if a != b {
            failures.push(format!(
                "seed {seed}\nrequest   {}\nmemcached {}\nmnemo     {}",
                show(&req),
                show(&a),
                show(&b)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of 150 batches differ:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
