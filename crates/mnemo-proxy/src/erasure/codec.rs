//! Values to shards and back: K data plus M parity shards through
//! Reed-Solomon (`reed-solomon-erasure`, a Vandermonde-derived matrix code
//! over GF(2^8): decoding inverts a K x K matrix, cached per erasure
//! pattern, then costs K x M multiply-adds per byte), or, below the pool's
//! `erasure_min_size`, whole copies on M+1 servers and header-only stubs on
//! the other K-1, so that every one of the K+M servers learns the version
//! of every write. Pure functions, no I/O.

use super::shard::{self, Header, Kind, HEADER_LEN, MAX_SHARDS};
use reed_solomon_erasure::galois_8::ReedSolomon;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// One codec per (K, M) and thread: building one computes its matrix,
    /// and each keeps the inverses of the erasure patterns it has seen.
    static CODECS: RefCell<HashMap<(usize, usize), ReedSolomon>> = RefCell::new(HashMap::new());
}

fn with_codec<T>(
    k: usize,
    m: usize,
    f: impl FnOnce(&ReedSolomon) -> Result<T, reed_solomon_erasure::Error>,
) -> Result<T, CodecError> {
    CODECS.with(|c| {
        let mut c = c.borrow_mut();
        let rs = match c.entry((k, m)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(ReedSolomon::new(k, m).map_err(|_| CodecError::Library)?)
            }
        };
        f(rs).map_err(|_| CodecError::Library)
    })
}

/// The shape of a pool's coding: K data and M parity shards, and the value
/// size from which values are coded rather than copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub k: u8,
    pub m: u8,
    pub min_size: usize,
}

impl Geometry {
    pub fn new(k: usize, m: usize, min_size: usize) -> Option<Geometry> {
        if k == 0 || m == 0 || k + m > MAX_SHARDS {
            return None;
        }
        Some(Geometry {
            k: k as u8,
            m: m as u8,
            min_size,
        })
    }

    pub fn n(&self) -> usize {
        self.k as usize + self.m as usize
    }

    /// Whether a value of `len` bytes is coded (else copied whole).
    pub fn codes(&self, len: usize) -> bool {
        len >= self.min_size.max(1)
    }

    /// Bytes stored across all servers for a value of `len` bytes, headers
    /// included (memcached's own per-item overhead not counted).
    pub fn stored_bytes(&self, len: usize) -> usize {
        let (k, m) = (self.k as usize, self.m as usize);
        if self.codes(len) {
            (k + m) * (HEADER_LEN + shard::shard_size(len, k))
        } else {
            (m + 1) * (HEADER_LEN + len) + (k - 1) * HEADER_LEN
        }
    }
}

/// Why shards could not be made or turned back into a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// Fewer than K distinct shards (or no whole copy).
    NotEnough,
    /// Shards that do not belong together (versions, sizes, K/M differ).
    Inconsistent,
    /// The decoded value does not match the value CRC.
    Checksum,
    /// The Reed-Solomon library refused (cannot happen with checked input).
    Library,
    /// Values this large do not fit the shard header.
    TooLarge,
}

/// Every shard of one write of `value` (index i goes to the i-th server of
/// the key's placement).
pub fn encode_value(
    g: &Geometry,
    key: &[u8],
    version: u64,
    flags: u32,
    value: &[u8],
) -> Result<Vec<Vec<u8>>, CodecError> {
    let value_len = u32::try_from(value.len()).map_err(|_| CodecError::TooLarge)?;
    let (k, m) = (g.k as usize, g.m as usize);
    let mut h = Header {
        kind: Kind::Whole,
        k: g.k,
        m: g.m,
        index: 0,
        version,
        value_len,
        flags,
        value_crc: shard::crc(value),
    };
    let mut out = Vec::with_capacity(k + m);
    if !g.codes(value.len()) {
        for i in 0..k + m {
            h.index = i as u8;
            let mut b = Vec::new();
            if i <= m {
                b.reserve(HEADER_LEN + value.len());
                shard::encode(&h, key, value, &mut b);
            } else {
                let stub = Header {
                    kind: Kind::Stub,
                    ..h
                };
                shard::encode(&stub, key, &[], &mut b);
            }
            out.push(b);
        }
        return Ok(out);
    }
    h.kind = Kind::Coded;
    let size = shard::shard_size(value.len(), k);
    let mut data: Vec<Vec<u8>> = Vec::with_capacity(k + m);
    for i in 0..k {
        let start = (i * size).min(value.len());
        let end = ((i + 1) * size).min(value.len());
        let mut d = Vec::with_capacity(size);
        d.extend_from_slice(&value[start..end]);
        d.resize(size, 0);
        data.push(d);
    }
    data.resize(k + m, vec![0u8; size]);
    with_codec(k, m, |rs| rs.encode(&mut data))?;
    for (i, payload) in data.iter().enumerate() {
        h.index = i as u8;
        let mut b = Vec::with_capacity(HEADER_LEN + size);
        shard::encode(&h, key, payload, &mut b);
        out.push(b);
    }
    Ok(out)
}

/// The tombstone for position `index` of a key deleted by `version`.
pub fn tombstone(g: &Geometry, key: &[u8], version: u64, index: usize) -> Vec<u8> {
    let h = Header {
        kind: Kind::Tombstone,
        k: g.k,
        m: g.m,
        index: index as u8,
        version,
        value_len: 0,
        flags: 0,
        value_crc: shard::crc(&[]),
    };
    let mut b = Vec::with_capacity(HEADER_LEN);
    shard::encode(&h, key, &[], &mut b);
    b
}

/// What shards of one version say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    Value { flags: u32, data: Vec<u8> },
    Deleted,
}

/// Two headers belong to the same write.
pub fn same_write(a: &Header, b: &Header) -> bool {
    a.version == b.version
        && a.k == b.k
        && a.m == b.m
        && a.value_len == b.value_len
        && a.flags == b.flags
        && a.value_crc == b.value_crc
}

/// Rebuild the value from parsed shards that must all be of one write.
/// Anything short of that is refused: never a value that is not exactly
/// the one written.
pub fn decode(shards: &[(Header, &[u8])]) -> Result<Decoded, CodecError> {
    let Some((first, _)) = shards.first() else {
        return Err(CodecError::NotEnough);
    };
    if shards.iter().any(|(h, _)| !same_write(h, first)) {
        return Err(CodecError::Inconsistent);
    }
    if shards.iter().any(|(h, _)| h.kind == Kind::Tombstone) {
        return Ok(Decoded::Deleted);
    }
    if let Some((_, p)) = shards.iter().find(|(h, _)| h.kind == Kind::Whole) {
        if p.len() != first.value_len as usize || shard::crc(p) != first.value_crc {
            return Err(CodecError::Checksum);
        }
        return Ok(Decoded::Value {
            flags: first.flags,
            data: p.to_vec(),
        });
    }
    let (k, m) = (first.k as usize, first.m as usize);
    let len = first.value_len as usize;
    let size = shard::shard_size(len, k);
    let mut by_index: Vec<Option<&[u8]>> = vec![None; k + m];
    for (h, p) in shards {
        if h.kind != Kind::Coded {
            continue;
        }
        if p.len() != size || h.index as usize >= k + m {
            return Err(CodecError::Inconsistent);
        }
        by_index[h.index as usize] = Some(p);
    }
    if by_index.iter().flatten().count() < k {
        return Err(CodecError::NotEnough);
    }
    let mut value = Vec::with_capacity(k * size);
    if by_index[..k].iter().all(Option::is_some) {
        for p in by_index[..k].iter().flatten() {
            value.extend_from_slice(p);
        }
    } else {
        let mut all: Vec<Option<Vec<u8>>> =
            by_index.iter().map(|p| p.map(<[u8]>::to_vec)).collect();
        with_codec(k, m, |rs| rs.reconstruct_data(&mut all))?;
        for p in all.iter().take(k) {
            value.extend_from_slice(p.as_deref().ok_or(CodecError::Library)?);
        }
    }
    value.truncate(len);
    if value.len() != len || shard::crc(&value) != first.value_crc {
        return Err(CodecError::Checksum);
    }
    Ok(Decoded::Value {
        flags: first.flags,
        data: value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parsed(shards: &[Vec<u8>]) -> Vec<(Header, &[u8])> {
        shards
            .iter()
            .map(|b| shard::parse(b, b"k").unwrap())
            .collect()
    }

    #[test]
    fn whole_copies_below_min_size_and_stubs_elsewhere() {
        let g = Geometry::new(3, 2, 1024).unwrap();
        let s = encode_value(&g, b"k", 9, 4, b"hello").unwrap();
        assert_eq!(s.len(), 5);
        let p = parsed(&s);
        let kinds: Vec<Kind> = p.iter().map(|(h, _)| h.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Whole,
                Kind::Whole,
                Kind::Whole,
                Kind::Stub,
                Kind::Stub
            ]
        );
        // Any one whole copy is enough; stubs alone are not.
        assert_eq!(
            decode(&p[2..3]),
            Ok(Decoded::Value {
                flags: 4,
                data: b"hello".to_vec()
            })
        );
        assert_eq!(decode(&p[3..]), Err(CodecError::NotEnough));
    }

    #[test]
    fn mixed_versions_sizes_and_geometries_are_refused() {
        let g = Geometry::new(3, 2, 4).unwrap();
        let a = encode_value(&g, b"k", 1, 0, &[1u8; 300]).unwrap();
        let b = encode_value(&g, b"k", 2, 0, &[2u8; 300]).unwrap();
        let mut mix = parsed(&a)[..2].to_vec();
        mix.extend(parsed(&b)[2..3].iter().copied());
        assert_eq!(decode(&mix), Err(CodecError::Inconsistent));
        // Same version, different value (two writers sharing a version).
        let c = encode_value(&g, b"k", 1, 0, &[3u8; 300]).unwrap();
        let mut mix = parsed(&a)[..2].to_vec();
        mix.extend(parsed(&c)[4..5].iter().copied());
        assert_eq!(decode(&mix), Err(CodecError::Inconsistent));
        let g2 = Geometry::new(2, 3, 4).unwrap();
        let d = encode_value(&g2, b"k", 1, 0, &[1u8; 300]).unwrap();
        let mut mix = parsed(&a)[..2].to_vec();
        mix.extend(parsed(&d)[4..5].iter().copied());
        assert_eq!(decode(&mix), Err(CodecError::Inconsistent));
        // Too few.
        assert_eq!(decode(&parsed(&a)[..2]), Err(CodecError::NotEnough));
        assert_eq!(decode(&[]), Err(CodecError::NotEnough));
    }

    #[test]
    fn a_forged_shard_that_passes_its_own_checksum_is_caught_by_the_value_crc() {
        let g = Geometry::new(3, 2, 4).unwrap();
        let a = encode_value(&g, b"k", 1, 0, &[1u8; 300]).unwrap();
        let (h, p) = shard::parse(&a[0], b"k").unwrap();
        let mut forged_payload = p.to_vec();
        forged_payload[0] ^= 1;
        let mut forged = Vec::new();
        shard::encode(&h, b"k", &forged_payload, &mut forged);
        let mut set = vec![shard::parse(&forged, b"k").unwrap()];
        set.extend(parsed(&a)[1..3].iter().copied());
        assert_eq!(decode(&set), Err(CodecError::Checksum));
    }

    #[test]
    fn tombstones_decode_as_deleted() {
        let g = Geometry::new(3, 2, 4).unwrap();
        let t = tombstone(&g, b"k", 5, 4);
        let p = shard::parse(&t, b"k").unwrap();
        assert_eq!(p.0.index, 4);
        assert_eq!(decode(&[p]), Ok(Decoded::Deleted));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trip_with_any_m_erased(
            k in 1usize..8,
            m in 1usize..5,
            len in 0usize..5000,
            seed in any::<u64>(),
            min_size in prop_oneof![Just(0usize), Just(1024usize)],
            flags in any::<u32>(),
        ) {
            let g = Geometry::new(k, m, min_size).unwrap();
            let mut x = seed | 1;
            let value: Vec<u8> = (0..len).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect();
            let shards = encode_value(&g, b"k", 42, flags, &value).unwrap();
            prop_assert_eq!(shards.len(), k + m);
            // Erase M positions chosen from the seed.
            let mut keep: Vec<usize> = (0..k + m).collect();
            for _ in 0..m {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                let i = (x as usize) % keep.len();
                keep.remove(i);
            }
            let left: Vec<(Header, &[u8])> = keep.iter().map(|&i| shard::parse(&shards[i], b"k").unwrap()).collect();
            let got = decode(&left);
            let whole_left = left.iter().any(|(h, _)| h.kind == Kind::Whole);
            if g.codes(len) || whole_left {
                prop_assert_eq!(got, Ok(Decoded::Value { flags, data: value.clone() }));
            } else {
                prop_assert_eq!(got, Err(CodecError::NotEnough));
            }
            // Short shards never parse; shards with one flipped bit never do either.
            for s in &shards {
                prop_assert!(shard::parse(&s[..s.len() - 1], b"k").is_err());
                let mut bad = s.clone();
                let bit = (x as usize) % (bad.len() * 8);
                bad[bit / 8] ^= 1 << (bit % 8);
                prop_assert!(shard::parse(&bad, b"k").is_err());
            }
        }
    }
}
