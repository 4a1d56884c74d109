//! What to send: key choice, value sizes, the set:get mix, and the encoding of
//! each request straight into a connection's output buffer.
//!
//! Nothing here allocates per request: keys are rewritten in place in a fixed
//! scratch buffer, values are slices of one shared filler buffer, and requests
//! are appended to a reused `Vec<u8>` whose capacity settles after warm-up.

use mnemo_protocol::binary::Opcode;
use mnemo_protocol::client::{self, StoreCmd};
use mnemo_protocol::{text, MAX_KEY_LEN};
use std::fmt;
use std::str::FromStr;

/// Wire protocol spoken to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Text,
    Meta,
    Binary,
}

/// splitmix64: tiny, fast and good enough to pick keys and sizes; the bench
/// needs speed and reproducibility, not cryptographic quality.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n) without the modulo bias mattering (Lemire's multiply-shift).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// How keys are chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyPattern {
    Sequential,
    Uniform,
    Zipf(f64),
}

impl FromStr for KeyPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sequential" | "seq" => Ok(KeyPattern::Sequential),
            "uniform" | "random" => Ok(KeyPattern::Uniform),
            _ => {
                let rest = s.strip_prefix("zipf").ok_or_else(|| {
                    format!("unknown key pattern {s:?} (sequential, uniform, zipf:S)")
                })?;
                let rest = rest
                    .trim_start_matches([':', '=', '('])
                    .trim_end_matches(')');
                let exp = if rest.is_empty() {
                    1.0
                } else {
                    rest.parse::<f64>()
                        .map_err(|_| format!("bad zipf exponent in {s:?}"))?
                };
                // Past ~40 every draw is rank 1 anyway, and the arithmetic
                // would underflow.
                if !(exp > 0.0 && exp <= 40.0) {
                    return Err(format!("zipf exponent must be in (0, 40], got {exp}"));
                }
                Ok(KeyPattern::Zipf(exp))
            }
        }
    }
}

impl fmt::Display for KeyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPattern::Sequential => write!(f, "sequential"),
            KeyPattern::Uniform => write!(f, "uniform"),
            KeyPattern::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

/// Zipf over ranks 1..=n by rejection-inversion (Hörmann & Derflinger 1996):
/// O(1) memory and time per sample, so a 100M-key space costs nothing to set up.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    threshold: f64,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Self {
        let nf = n as f64;
        let mut z = Zipf {
            n: nf,
            s,
            h_x1: 0.0,
            h_n: 0.0,
            threshold: 0.0,
        };
        z.h_x1 = z.big_h(1.5) - 1.0;
        z.h_n = z.big_h(nf + 0.5);
        z.threshold = 2.0 - z.big_h_inv(z.big_h(2.5) - z.h(2.0));
        z
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    /// Integral of h, written so that s == 1 needs no special case.
    fn big_h(&self, x: f64) -> f64 {
        let lx = x.ln();
        expm1_over_x((1.0 - self.s) * lx) * lx
    }

    fn big_h_inv(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (ln1p_over_x(t) * x).exp()
    }

    /// A rank in 1..=n; rank 1 is the most popular.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_n + rng.unit() * (self.h_x1 - self.h_n);
            let x = self.big_h_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.threshold || u >= self.big_h(k + 0.5) - self.h(k) {
                return (k as u64).clamp(1, self.n as u64);
            }
        }
    }
}

fn expm1_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + 0.25 * x))
    }
}

fn ln1p_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// Value sizes: `N`, `A-B` (uniform), or `S:W,S:W,...` (weighted list).
#[derive(Clone, Debug, PartialEq)]
pub enum ValueSize {
    Fixed(usize),
    Range(usize, usize),
    /// (size, cumulative weight)
    Weighted(Vec<(usize, u64)>),
}

impl ValueSize {
    pub fn max(&self) -> usize {
        match self {
            ValueSize::Fixed(n) => *n,
            ValueSize::Range(_, b) => *b,
            ValueSize::Weighted(v) => v.iter().map(|x| x.0).max().unwrap_or(0),
        }
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        match self {
            ValueSize::Fixed(n) => *n,
            ValueSize::Range(a, b) => a + rng.below((b - a + 1) as u64) as usize,
            ValueSize::Weighted(v) => {
                let total = v.last().map_or(0, |x| x.1);
                let r = rng.below(total);
                v.iter().find(|x| r < x.1).map_or(0, |x| x.0)
            }
        }
    }
}

impl FromStr for ValueSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |t: &str| -> Result<u64, String> {
            t.trim()
                .parse::<u64>()
                .map_err(|_| format!("bad number {t:?} in value size {s:?}"))
        };
        if s.contains(':') {
            let mut v = Vec::new();
            let mut cum = 0u64;
            for part in s.split(',') {
                let (size, w) = part.split_once(':').ok_or_else(|| {
                    format!("weighted value size needs SIZE:WEIGHT, got {part:?}")
                })?;
                let w = num(w)?;
                if w == 0 {
                    continue;
                }
                cum += w;
                v.push((num(size)? as usize, cum));
            }
            if v.is_empty() {
                return Err(format!("value size list {s:?} has no positive weight"));
            }
            Ok(ValueSize::Weighted(v))
        } else if let Some((a, b)) = s.split_once('-') {
            let (a, b) = (num(a)? as usize, num(b)? as usize);
            if a > b {
                return Err(format!("value size range {s:?} is backwards"));
            }
            if b > MAX_VALUE {
                return Err(format!("value size {b} above {MAX_VALUE}"));
            }
            Ok(ValueSize::Range(a, b))
        } else {
            Ok(ValueSize::Fixed(num(s)? as usize))
        }
    }
}

/// `SETS:GETS`, e.g. `1:10`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ratio {
    pub sets: u32,
    pub gets: u32,
}

impl FromStr for Ratio {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once(':')
            .ok_or_else(|| format!("ratio must be SETS:GETS, got {s:?}"))?;
        let p = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("bad number in ratio {s:?}"))
        };
        let r = Ratio {
            sets: p(a)?,
            gets: p(b)?,
        };
        if r.sets == 0 && r.gets == 0 {
            return Err("ratio 0:0 sends nothing".into());
        }
        Ok(r)
    }
}

/// What a sent request expects back; kept in the in-flight ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Set,
    /// A get of this many keys (multi-get when > 1).
    Get(u16),
}

/// Everything needed to build requests; shared read-only by all threads.
#[derive(Clone, Debug)]
pub struct Spec {
    pub protocol: Protocol,
    pub key_count: u64,
    pub pattern: KeyPattern,
    pub key_prefix: String,
    pub key_size: usize,
    pub value_size: ValueSize,
    pub ratio: Ratio,
    pub multiget: u16,
    /// Expiry sent with sets, seconds (0 never): fixed, a uniform range or
    /// a weighted list, picked per set as value sizes are.
    pub ttl: ValueSize,
}

impl Spec {
    /// Digits after the prefix; checked so every key index fits.
    pub fn validate(&self) -> Result<(), String> {
        if self.key_count == 0 {
            return Err("--keys must be at least 1".into());
        }
        let need = digits(self.key_count - 1);
        if self.key_size > MAX_KEY_LEN {
            return Err(format!(
                "--key-size over {MAX_KEY_LEN} (memcached's key limit)"
            ));
        }
        if self.key_size < self.key_prefix.len() + need {
            return Err(format!(
                "--key-size {} too small for prefix {:?} plus {} digits",
                self.key_size, self.key_prefix, need
            ));
        }
        if self.key_prefix.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("--key-prefix may not contain spaces or control bytes".into());
        }
        if self.multiget == 0 {
            return Err("--multiget must be at least 1".into());
        }
        // The filler buffer is this big; memcached's own ceiling is 1 GB.
        if self.value_size.max() > MAX_VALUE {
            return Err(format!(
                "value sizes above {MAX_VALUE} bytes are not supported"
            ));
        }
        Ok(())
    }
}

pub const MAX_VALUE: usize = 1 << 30;

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Per-thread request builder.
/// Meta set flags for `ttl` (none for 0, never), replacing `f`'s bytes.
fn meta_ttl(f: &mut Vec<u8>, ttl: usize) {
    f.clear();
    if ttl != 0 {
        f.push(b'T');
        text::push_u64(f, ttl as u64);
    }
}

pub struct Gen {
    spec: Spec,
    rng: Rng,
    zipf: Option<Zipf>,
    /// Next key for the sequential pattern; threads stride so they interleave.
    seq: u64,
    stride: u64,
    key: [u8; 256],
    filler: Vec<u8>,
    set_threshold: u64,
    ratio_total: u64,
    /// `T<ttl>` (or nothing): formatted once for a fixed TTL, per set
    /// (into the same buffer) for a mix.
    meta_set_flags: Vec<u8>,
}

impl Gen {
    pub fn new(spec: &Spec, seed: u64, thread: u64, threads: u64) -> Self {
        let mut key = [b'0'; 256];
        key[..spec.key_prefix.len()].copy_from_slice(spec.key_prefix.as_bytes());
        // Printable, recognisable, and not all one byte so compressing links
        // or dedup would not flatter the numbers.
        let filler = (0..spec.value_size.max())
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        let zipf = match spec.pattern {
            KeyPattern::Zipf(s) => Some(Zipf::new(spec.key_count, s)),
            _ => None,
        };
        Gen {
            rng: Rng::new(seed.wrapping_add(thread.wrapping_mul(0x1234_5678_9abc_def1))),
            zipf,
            seq: thread % spec.key_count,
            stride: threads.max(1),
            key,
            filler,
            meta_set_flags: {
                let mut f = Vec::with_capacity(24);
                if let ValueSize::Fixed(ttl) = spec.ttl {
                    meta_ttl(&mut f, ttl);
                }
                f
            },
            set_threshold: spec.ratio.sets as u64,
            ratio_total: spec.ratio.sets as u64 + spec.ratio.gets as u64,
            spec: spec.clone(),
        }
    }

    fn next_key_index(&mut self) -> u64 {
        match self.spec.pattern {
            KeyPattern::Sequential => {
                let k = self.seq;
                self.seq = (self.seq + self.stride) % self.spec.key_count;
                k
            }
            KeyPattern::Uniform => self.rng.below(self.spec.key_count),
            KeyPattern::Zipf(_) => match &self.zipf {
                Some(z) => z.sample(&mut self.rng) - 1,
                None => 0,
            },
        }
    }

    /// Rewrites the digits of the key scratch in place and returns the key.
    fn key_for(&mut self, mut idx: u64) -> &[u8] {
        let end = self.spec.key_size;
        let start = self.spec.key_prefix.len();
        let mut i = end;
        while i > start {
            i -= 1;
            self.key[i] = b'0' + (idx % 10) as u8;
            idx /= 10;
        }
        &self.key[..end]
    }

    /// Appends the next workload request to `out`.
    pub fn next(&mut self, out: &mut Vec<u8>) -> Kind {
        let is_set = self.rng.below(self.ratio_total) < self.set_threshold;
        if is_set {
            let idx = self.next_key_index();
            self.encode_set(idx, out);
            Kind::Set
        } else {
            let n = self.spec.multiget;
            self.encode_get_start(out, n);
            for i in 0..n {
                let idx = self.next_key_index();
                self.encode_get_key(idx, out, i + 1 == n);
            }
            self.encode_get_end(out, n);
            Kind::Get(n)
        }
    }

    /// Appends a set of key `idx` (used by the fill phase).
    pub fn set(&mut self, idx: u64, out: &mut Vec<u8>) -> Kind {
        self.encode_set(idx, out);
        Kind::Set
    }

    fn encode_set(&mut self, idx: u64, out: &mut Vec<u8>) {
        let len = self.spec.value_size.pick(&mut self.rng);
        let ttl = match self.spec.ttl {
            ValueSize::Fixed(t) => t as u32,
            ref mix => {
                let t = mix.pick(&mut self.rng);
                meta_ttl(&mut self.meta_set_flags, t);
                t as u32
            }
        };
        let proto = self.spec.protocol;
        self.key_for(idx);
        let key = &self.key[..self.spec.key_size];
        let value = &self.filler[..len];
        match proto {
            Protocol::Text => {
                client::encode_store(out, StoreCmd::Set, key, 0, ttl as i64, value, false);
            }
            Protocol::Meta => client::encode_meta_set(out, key, value, &self.meta_set_flags),
            Protocol::Binary => {
                client::binary::encode_store(out, Opcode::Set, key, 0, ttl, value, 0, 0);
            }
        }
    }

    fn encode_get_start(&mut self, out: &mut Vec<u8>, _n: u16) {
        if self.spec.protocol == Protocol::Text {
            out.extend_from_slice(b"get");
        }
    }

    fn encode_get_key(&mut self, idx: u64, out: &mut Vec<u8>, _last: bool) {
        let multi = self.spec.multiget > 1;
        let proto = self.spec.protocol;
        self.key_for(idx);
        let key = &self.key[..self.spec.key_size];
        match proto {
            Protocol::Text => {
                out.push(b' ');
                out.extend_from_slice(key);
            }
            // Quiet mode hides misses so a multi-get ends with one MN.
            Protocol::Meta => client::encode_meta_get(out, key, if multi { b"v q" } else { b"v" }),
            Protocol::Binary => {
                // GETKQ answers only hits; the trailing NOOP closes the batch.
                let op = if multi { Opcode::GetKQ } else { Opcode::Get };
                client::binary::encode_get(out, op, key, 0);
            }
        }
    }

    fn encode_get_end(&mut self, out: &mut Vec<u8>, n: u16) {
        match self.spec.protocol {
            Protocol::Text => out.extend_from_slice(b"\r\n"),
            Protocol::Meta if n > 1 => client::encode_meta_noop(out),
            Protocol::Binary if n > 1 => client::binary::encode_simple(out, Opcode::Noop, 0),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(protocol: Protocol) -> Spec {
        Spec {
            protocol,
            key_count: 1000,
            pattern: KeyPattern::Sequential,
            key_prefix: "k:".into(),
            key_size: 6,
            value_size: ValueSize::Fixed(3),
            ratio: Ratio { sets: 1, gets: 0 },
            multiget: 1,
            ttl: ValueSize::Fixed(0),
        }
    }

    #[test]
    fn parses_value_sizes() {
        assert_eq!("32".parse(), Ok(ValueSize::Fixed(32)));
        assert_eq!("10-20".parse(), Ok(ValueSize::Range(10, 20)));
        assert_eq!(
            "32:9,1024:1".parse(),
            Ok(ValueSize::Weighted(vec![(32, 9), (1024, 10)]))
        );
        assert!("20-10".parse::<ValueSize>().is_err());
        assert!("x".parse::<ValueSize>().is_err());
        assert!("32:0".parse::<ValueSize>().is_err());
    }

    #[test]
    fn parses_patterns_and_ratio() {
        assert_eq!("zipf:0.99".parse(), Ok(KeyPattern::Zipf(0.99)));
        assert_eq!("zipf".parse(), Ok(KeyPattern::Zipf(1.0)));
        assert!("zipf:-1".parse::<KeyPattern>().is_err());
        assert!("gauss".parse::<KeyPattern>().is_err());
        assert_eq!("1:10".parse(), Ok(Ratio { sets: 1, gets: 10 }));
        assert!("0:0".parse::<Ratio>().is_err());
        assert!("5".parse::<Ratio>().is_err());
    }

    #[test]
    fn zipf_stays_in_range_for_any_exponent_and_size() {
        let mut rng = Rng::new(3);
        for &n in &[1u64, 2, 10, 1_000_000, u32::MAX as u64 * 4] {
            for &s in &[0.01, 0.5, 0.99, 1.0, 1.01, 2.0, 10.0, 40.0] {
                let z = Zipf::new(n, s);
                for _ in 0..2_000 {
                    let k = z.sample(&mut rng);
                    assert!((1..=n).contains(&k), "n={n} s={s} k={k}");
                }
            }
        }
    }

    #[test]
    fn weighted_sizes_follow_weights() {
        let v: ValueSize = "1:1,2:3".parse().unwrap_or(ValueSize::Fixed(0));
        let mut rng = Rng::new(7);
        let twos = (0..40_000).filter(|_| v.pick(&mut rng) == 2).count();
        assert!((29_000..31_000).contains(&twos), "{twos}");
    }

    #[test]
    fn zipf_rank_frequencies_follow_power_law() {
        let z = Zipf::new(1000, 1.0);
        let mut rng = Rng::new(1);
        let mut counts = vec![0u32; 1001];
        for _ in 0..200_000 {
            let k = z.sample(&mut rng);
            assert!((1..=1000).contains(&k));
            counts[k as usize] += 1;
        }
        let r = counts[1] as f64 / counts[2] as f64;
        assert!((1.8..2.2).contains(&r), "rank1/rank2 = {r}");
        let r = counts[1] as f64 / counts[10] as f64;
        assert!((8.0..12.5).contains(&r), "rank1/rank10 = {r}");
    }

    #[test]
    fn encodes_text_set_and_multiget() {
        let mut g = Gen::new(&spec(Protocol::Text), 1, 0, 1);
        let mut out = Vec::new();
        assert_eq!(g.set(42, &mut out), Kind::Set);
        assert_eq!(out, b"set k:0042 0 0 3\r\nabc\r\n");
        let mut s = spec(Protocol::Text);
        s.ratio = Ratio { sets: 0, gets: 1 };
        s.multiget = 3;
        let mut g = Gen::new(&s, 1, 0, 1);
        out.clear();
        assert_eq!(g.next(&mut out), Kind::Get(3));
        assert_eq!(out, b"get k:0000 k:0001 k:0002\r\n");
    }

    #[test]
    fn ttl_mix_is_picked_per_set() {
        let mut s = spec(Protocol::Meta);
        s.ttl = "5:1,0:1".parse().expect("ttl mix");
        let mut g = Gen::new(&s, 3, 0, 1);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..200 {
            let mut out = Vec::new();
            g.set(i, &mut out);
            let line = String::from_utf8(out).expect("ascii");
            let head = line.split("\r\n").next().unwrap_or_default();
            seen.insert(head.split(' ').nth(3).unwrap_or("none").to_string());
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["T5", "none"]);
        let mut s = spec(Protocol::Text);
        s.ttl = ValueSize::Range(7, 7);
        let mut out = Vec::new();
        Gen::new(&s, 1, 0, 1).set(2, &mut out);
        assert_eq!(out, b"set k:0002 0 7 3\r\nabc\r\n");
    }

    #[test]
    fn encodes_meta_requests() {
        let mut s = spec(Protocol::Meta);
        s.ttl = ValueSize::Fixed(60);
        let mut g = Gen::new(&s, 1, 0, 1);
        let mut out = Vec::new();
        g.set(7, &mut out);
        assert_eq!(out, b"ms k:0007 3 T60\r\nabc\r\n");
        s.ratio = Ratio { sets: 0, gets: 1 };
        s.multiget = 2;
        let mut g = Gen::new(&s, 1, 1, 2);
        out.clear();
        g.next(&mut out);
        assert_eq!(out, b"mg k:0001 v q\r\nmg k:0003 v q\r\nmn\r\n");
    }

    #[test]
    fn encodes_binary_set() {
        let mut g = Gen::new(&spec(Protocol::Binary), 1, 0, 1);
        let mut out = Vec::new();
        g.set(1, &mut out);
        assert_eq!(out.len(), 24 + 8 + 6 + 3);
        assert_eq!(&out[..2], &[0x80, 0x01]);
        assert_eq!(&out[2..4], &6u16.to_be_bytes());
        assert_eq!(out[4], 8);
        assert_eq!(&out[8..12], &17u32.to_be_bytes());
        assert_eq!(&out[32..38], b"k:0001");
    }

    #[test]
    fn encoding_and_scanning_do_not_allocate() {
        use crate::scan::{scan, Scan};
        for proto in [Protocol::Text, Protocol::Meta, Protocol::Binary] {
            let mut s = spec(proto);
            s.ratio = Ratio { sets: 1, gets: 3 };
            s.value_size = ValueSize::Range(1, 300);
            s.multiget = 4;
            s.ttl = ValueSize::Weighted(vec![(30, 1), (0, 2), (5, 3)]);
            let mut g = Gen::new(&s, 9, 0, 1);
            let mut out = Vec::with_capacity(1 << 16);
            let reply: &[u8] = match proto {
                Protocol::Text => b"VALUE k:0001 0 1\r\nx\r\nEND\r\n",
                Protocol::Meta => b"VA 1\r\nx\r\nMN\r\n",
                Protocol::Binary => &[
                    0x81, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                ],
            };
            let before = crate::alloc_count::allocations();
            for _ in 0..10_000 {
                out.clear();
                let kind = g.next(&mut out);
                if kind != Kind::Set {
                    assert!(matches!(scan(proto, reply, kind), Scan::Reply { .. }));
                }
            }
            assert_eq!(crate::alloc_count::allocations(), before, "{proto:?}");
        }
    }

    #[test]
    fn rejects_keys_that_do_not_fit() {
        let mut s = spec(Protocol::Text);
        s.key_size = 4;
        assert!(s.validate().is_err());
        s.key_size = 5;
        assert!(s.validate().is_ok());
    }
}
