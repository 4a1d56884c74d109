//! The shard format: what every item an erasure-coded pool stores on a
//! server holds, so that a reader can trust it without asking anyone else.
//!
//! An item is a 32-byte header followed by a payload:
//!
//! | bytes  | field                                                   |
//! |--------|---------------------------------------------------------|
//! | 0..3   | magic `MEC`                                             |
//! | 3      | format (1)                                              |
//! | 4      | kind: data/parity shard, whole copy, stub, tombstone    |
//! | 5, 6   | K, M                                                    |
//! | 7      | shard index (0..K data, K..K+M parity)                  |
//! | 8..16  | version (little-endian u64, see [`Versioner`])          |
//! | 16..20 | value length                                            |
//! | 20..24 | the client's flags                                      |
//! | 24..28 | CRC-32 of the whole value                               |
//! | 28..32 | CRC-32 of bytes 0..28, the key and the payload          |
//!
//! The shard CRC covers the key without storing it, so an item copied
//! under another key fails its check like a damaged one; either counts as
//! missing. The
//! value CRC is checked again after decoding, so shards of two writes that
//! happened to share a version still cannot be mixed into one answer.
//! Parsing is pure and refuses anything inconsistent rather than guessing.

/// First bytes of every shard.
pub const MAGIC: [u8; 3] = *b"MEC";
/// Bumped if the layout changes; older proxies then see foreign items.
pub const FORMAT: u8 = 1;
pub const HEADER_LEN: usize = 32;
/// Reed-Solomon over GF(2^8) allows 256 shards; one fewer keeps K+M in
/// the index byte's range.
pub const MAX_SHARDS: usize = 255;

/// What a shard's payload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// One of K data or M parity shards (index tells which).
    Coded = 0,
    /// The whole value (small values, on M+1 servers).
    Whole = 1,
    /// No payload: the write of this version put whole copies elsewhere.
    /// It lets a reader that finds only stubs know a newer write exists.
    Stub = 2,
    /// No payload: the key was deleted by the write of this version.
    Tombstone = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Coded,
            1 => Kind::Whole,
            2 => Kind::Stub,
            3 => Kind::Tombstone,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    pub kind: Kind,
    pub k: u8,
    pub m: u8,
    pub index: u8,
    pub version: u64,
    pub value_len: u32,
    pub flags: u32,
    pub value_crc: u32,
}

/// Why bytes read from a server are not a shard this proxy can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardError {
    Short,
    Magic,
    Format,
    Kind,
    Geometry,
    Length,
    Checksum,
}

/// Bytes per coded shard for a value of `len` bytes split K ways: never
/// zero, and even (the format's rule since its first codec, which needed
/// it).
pub fn shard_size(len: usize, k: usize) -> usize {
    let per = len.div_ceil(k.max(1)).max(2);
    per + (per & 1)
}

pub fn crc(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

fn payload_len_ok(h: &Header, len: usize) -> bool {
    match h.kind {
        Kind::Coded => len == shard_size(h.value_len as usize, h.k as usize),
        Kind::Whole => len == h.value_len as usize,
        Kind::Stub | Kind::Tombstone => len == 0,
    }
}

/// Append the shard (header then `payload`) to `out`.
pub fn encode(h: &Header, key: &[u8], payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT);
    out.push(h.kind as u8);
    out.push(h.k);
    out.push(h.m);
    out.push(h.index);
    out.extend_from_slice(&h.version.to_le_bytes());
    out.extend_from_slice(&h.value_len.to_le_bytes());
    out.extend_from_slice(&h.flags.to_le_bytes());
    out.extend_from_slice(&h.value_crc.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[start..start + 28]);
    hasher.update(key);
    hasher.update(payload);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// Parse and verify one item stored under `key`; the payload borrows from
/// `bytes`.
pub fn parse<'b>(bytes: &'b [u8], key: &[u8]) -> Result<(Header, &'b [u8]), ShardError> {
    if bytes.len() < HEADER_LEN {
        return Err(ShardError::Short);
    }
    if bytes[..3] != MAGIC {
        return Err(ShardError::Magic);
    }
    if bytes[3] != FORMAT {
        return Err(ShardError::Format);
    }
    let kind = Kind::from_u8(bytes[4]).ok_or(ShardError::Kind)?;
    let (k, m, index) = (bytes[5], bytes[6], bytes[7]);
    if k == 0 || m == 0 || k as usize + m as usize > MAX_SHARDS || index >= k + m {
        return Err(ShardError::Geometry);
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&bytes[8..16]);
    let h = Header {
        kind,
        k,
        m,
        index,
        version: u64::from_le_bytes(v),
        value_len: le32(bytes, 16),
        flags: le32(bytes, 20),
        value_crc: le32(bytes, 24),
    };
    let payload = &bytes[HEADER_LEN..];
    if !payload_len_ok(&h, payload.len()) {
        return Err(ShardError::Length);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..28]);
    hasher.update(key);
    hasher.update(payload);
    if hasher.finalize() != le32(bytes, 28) {
        return Err(ShardError::Checksum);
    }
    Ok((h, payload))
}

/// Versions unique to each write and totally ordered, newest largest:
/// milliseconds since the epoch (42 bits), a counter (12 bits) and a node
/// id (10 bits) that tells workers and proxies apart. A version never goes
/// backwards within one `Versioner` even if the clock does, and the value
/// CRC in every shard guards the rare case of two nodes drawing the same
/// id in the same millisecond.
pub struct Versioner {
    node: u64,
    last: u64,
}

const NODE_BITS: u32 = 10;
const COUNTER_BITS: u32 = 12;
const LOW_BITS: u32 = NODE_BITS + COUNTER_BITS;

impl Versioner {
    pub fn new(node: u64) -> Versioner {
        Versioner {
            node: node & ((1 << NODE_BITS) - 1),
            last: 0,
        }
    }

    /// A node id for this process and worker: the pid and the start time
    /// mixed, so that proxies sharing servers rarely draw the same one.
    pub fn node_for(worker: usize) -> u64 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut x =
            t ^ (u64::from(std::process::id()) << 20) ^ (worker as u64).wrapping_mul(0x9e37);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }

    /// The next version at `now_ms`.
    pub fn next(&mut self, now_ms: u64) -> u64 {
        let clock = now_ms << LOW_BITS;
        let bumped = (self.last | ((1 << NODE_BITS) - 1)).saturating_add(1);
        let base = clock.max(bumped) & !((1 << NODE_BITS) - 1);
        self.last = base | self.node;
        self.last
    }

    /// Make the next version newer than `seen`.
    pub fn observe(&mut self, seen: u64) {
        self.last = self.last.max(seen);
    }

    /// The clock (ms since the epoch) `version` was drawn at.
    pub fn ms_of(version: u64) -> u64 {
        version >> LOW_BITS
    }

    pub fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(kind: Kind, len: u32) -> Header {
        Header {
            kind,
            k: 3,
            m: 2,
            index: 1,
            version: 77,
            value_len: len,
            flags: 0xdead_beef,
            value_crc: 5,
        }
    }

    #[test]
    fn header_round_trip_and_refusals() {
        let h = hdr(Kind::Coded, 10);
        let payload = vec![7u8; shard_size(10, 3)];
        let mut b = Vec::new();
        encode(&h, b"k", &payload, &mut b);
        assert_eq!(b.len(), HEADER_LEN + payload.len());
        assert_eq!(parse(&b, b"other"), Err(ShardError::Checksum));
        let (h2, p2) = parse(&b, b"k").unwrap();
        assert_eq!(h2, h);
        assert_eq!(p2, &payload[..]);

        assert_eq!(parse(&b[..20], b"k"), Err(ShardError::Short));
        assert_eq!(parse(&b[..b.len() - 1], b"k"), Err(ShardError::Length));
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert!(parse(&bad, b"k").is_err(), "flipped byte {i} accepted");
        }
        let mut bad = b.clone();
        bad[7] = 5; // index past K+M
        assert_eq!(parse(&bad, b"k"), Err(ShardError::Geometry));
        let mut bad = b.clone();
        bad[5] = 0;
        assert_eq!(parse(&bad, b"k"), Err(ShardError::Geometry));
        assert_eq!(
            parse(b"VALUE not a shard at all.......", b"k"),
            Err(ShardError::Short)
        );
        assert_eq!(
            parse(&[b'x'; HEADER_LEN], b"k").map(|_| ()),
            Err(ShardError::Magic)
        );
    }

    #[test]
    fn stubs_and_tombstones_carry_no_payload() {
        let mut b = Vec::new();
        encode(&hdr(Kind::Tombstone, 0), b"k", &[], &mut b);
        assert_eq!(parse(&b, b"k").unwrap().0.kind, Kind::Tombstone);
        let mut b = Vec::new();
        encode(&hdr(Kind::Stub, 0), b"k", b"x", &mut b);
        assert_eq!(parse(&b, b"k"), Err(ShardError::Length));
    }

    #[test]
    fn versions_are_unique_increasing_and_survive_a_clock_step_back() {
        let mut v = Versioner::new(3);
        let a = v.next(1000);
        let b = v.next(1000);
        let c = v.next(900);
        let d = v.next(2000);
        assert!(a < b && b < c && c < d);
        assert_eq!(a & 1023, 3);
        assert_eq!(d >> 22, 2000);
        let mut w = Versioner::new(4);
        assert_ne!(w.next(1000), a);
    }

    #[test]
    fn a_version_drawn_after_seeing_another_is_newer_than_it() {
        // Another worker drew `seen` in the same millisecond with more
        // writes behind it, and a larger node id.
        let mut other = Versioner::new(1000);
        let mut seen = 0;
        for _ in 0..5 {
            seen = other.next(7000);
        }
        let mut v = Versioner::new(2);
        assert!(v.next(7000) < seen, "clocks alone order it first");
        v.observe(seen);
        let mine = v.next(7000);
        assert!(mine > seen);
        assert_eq!((mine & 1023, Versioner::ms_of(mine)), (2, 7000));
        // Observing an older version changes nothing.
        v.observe(1);
        assert!(v.next(7000) > mine);
    }
}
