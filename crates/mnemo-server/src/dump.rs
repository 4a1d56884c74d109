//! The text of the dump commands: `stats cachedump` and `lru_crawler
//! metadump` lines, byte for byte as memcached 1.6 writes them, from the
//! item records the engine hands out.

use mnemo_engine::{CrawlerCommandError, Engine, ItemRecord, MetadumpCursor};
use mnemo_protocol::text::push_u64;

/// memcached caps a cachedump reply at 2 MB, `END` included.
const CACHEDUMP_MAX: usize = 2 * 1024 * 1024;

/// `stats cachedump <class> <limit>`: `ITEM <key> [<bytes> b; <exptime> s]`
/// per item, then `END`.
pub fn cachedump(engine: &Engine, class_id: u32, limit: u32, out: &mut Vec<u8>) {
    let start = out.len();
    engine.cachedump(class_id, limit, |r| {
        let key = String::from_utf8_lossy(r.key);
        let exp = r.exptime.unwrap_or(0);
        let line = format!("ITEM {key} [{} b; {exp} s]\r\n", r.value_len);
        if out.len() - start + line.len() + 5 > CACHEDUMP_MAX {
            return false;
        }
        out.extend_from_slice(line.as_bytes());
        true
    });
    out.extend_from_slice(b"END\r\n");
}

/// Continues an `lru_crawler metadump` until `out` holds at least
/// `pause_at` bytes (`Ok(false)`) or the walk is over and its `END` is
/// written (`Ok(true)`). Each call walks at least one page or shard.
pub fn metadump_step(
    engine: &Engine,
    cursor: &mut MetadumpCursor,
    out: &mut Vec<u8>,
    pause_at: usize,
) -> Result<bool, CrawlerCommandError> {
    loop {
        if engine.lru_crawler_metadump_step(cursor, |r| metadump_line(r, out))? {
            out.extend_from_slice(b"END\r\n");
            return Ok(true);
        }
        if out.len() >= pause_at {
            return Ok(false);
        }
    }
}

/// `key=<uriencoded> exp=<abs|-1> la=<abs> cas=<n> fetch=<yes|no> cls=<id> size=<n>`.
fn metadump_line(r: &ItemRecord<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"key=");
    uriencode(r.key, out);
    out.extend_from_slice(b" exp=");
    match r.exptime {
        None => out.extend_from_slice(b"-1"),
        Some(exp) => push_u64(out, exp),
    }
    out.extend_from_slice(b" la=");
    push_u64(out, r.last_access);
    out.extend_from_slice(b" cas=");
    push_u64(out, r.cas);
    out.extend_from_slice(if r.fetched {
        b" fetch=yes cls="
    } else {
        b" fetch=no cls="
    });
    push_u64(out, u64::from(r.class_id));
    out.extend_from_slice(b" size=");
    push_u64(out, r.total_size as u64);
    out.push(b'\n');
}

/// memcached's uriencode: everything but unreserved characters as %XX.
fn uriencode(key: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadump_line_is_memcacheds() {
        let r = ItemRecord {
            key: b"a b/\xff",
            exptime: None,
            last_access: 1700000000,
            cas: 7,
            fetched: false,
            class_id: 1,
            value_len: 1,
            total_size: 33,
        };
        let mut out = Vec::new();
        metadump_line(&r, &mut out);
        assert_eq!(
            out,
            b"key=a%20b%2F%FF exp=-1 la=1700000000 cas=7 fetch=no cls=1 size=33\n"
        );
        out.clear();
        metadump_line(
            &ItemRecord {
                exptime: Some(1700000100),
                fetched: true,
                ..r
            },
            &mut out,
        );
        assert!(out.starts_with(b"key=a%20b%2F%FF exp=1700000100 la="));
        assert!(out.ends_with(b" fetch=yes cls=1 size=33\n"));
    }
}
