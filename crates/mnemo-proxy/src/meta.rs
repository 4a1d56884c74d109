//! Framing of meta-protocol requests (`mg`, `ms`, `md`, `ma`, `mn`, `me`)
//! on the proxy's client side. `mnemo_protocol::text` parses the classic text
//! commands only, so the proxy frames meta lines here: just enough to find
//! the key, the data length and the `q` flag; flags are forwarded untouched.

/// The meta commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaCmd {
    Get,
    Set,
    Delete,
    Arith,
    Noop,
    Debug,
}

/// A framed meta request; slices point into the request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaReq<'a> {
    pub cmd: MetaCmd,
    /// The key token as sent (base64 when `b` is among the flags).
    pub key: &'a [u8],
    pub base64: bool,
    /// The `q` flag: the client wants nominal replies suppressed.
    pub quiet: bool,
    /// `ms` only: bytes of data following the line.
    pub datalen: usize,
}

const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";

/// If `line` is a meta command, frame it; `Err` carries the error line
/// memcached would send.
pub fn parse(line: &[u8]) -> Option<Result<MetaReq<'_>, &'static str>> {
    if line.len() < 2 || line[0] != b'm' || (line.len() > 2 && line[2] != b' ') {
        return None;
    }
    let cmd = match line[1] {
        b'g' => MetaCmd::Get,
        b's' => MetaCmd::Set,
        b'd' => MetaCmd::Delete,
        b'a' => MetaCmd::Arith,
        b'n' => MetaCmd::Noop,
        b'e' => MetaCmd::Debug,
        _ => return None,
    };
    Some(frame(cmd, line))
}

fn frame(cmd: MetaCmd, line: &[u8]) -> Result<MetaReq<'_>, &'static str> {
    let mut toks = line.split(|&c| c == b' ').filter(|t| !t.is_empty());
    toks.next();
    if cmd == MetaCmd::Noop {
        return Ok(MetaReq {
            cmd,
            key: &[],
            base64: false,
            quiet: false,
            datalen: 0,
        });
    }
    let key = toks.next().ok_or(BAD_FORMAT)?;
    let mut datalen = 0;
    if cmd == MetaCmd::Set {
        let d = toks.next().ok_or(BAD_FORMAT)?;
        datalen = mnemo_protocol::reply::parse_u64(d)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or("CLIENT_ERROR bad data chunk")?;
    }
    let mut base64 = false;
    let mut quiet = false;
    for f in toks {
        match f[0] {
            b'b' => base64 = true,
            b'q' => quiet = true,
            _ => {}
        }
    }
    let max = if base64 { 336 } else { 250 };
    if key.len() > max || key.iter().any(|&c| c < b' ' || c == 0x7f) {
        return Err(BAD_FORMAT);
    }
    if base64 && decode_base64(key, &mut [0u8; 256]).is_none() {
        return Err("CLIENT_ERROR error decoding key");
    }
    Ok(MetaReq {
        cmd,
        key,
        base64,
        quiet,
        datalen,
    })
}

/// Whether a reply with this status is suppressed by `q` for `cmd`
/// (memcached 1.6: a miss for mg, the nominal HD for the others, and any
/// success of ma).
pub fn quiet_suppresses(cmd: MetaCmd, status: mnemo_protocol::reply::MetaStatus) -> bool {
    use mnemo_protocol::reply::MetaStatus as S;
    match cmd {
        MetaCmd::Get => status == S::En,
        MetaCmd::Set | MetaCmd::Delete => status == S::Hd,
        MetaCmd::Arith => matches!(status, S::Hd | S::Va),
        MetaCmd::Noop | MetaCmd::Debug => false,
    }
}

/// Append `line` without its `q` flag, plus `\r\n`: the proxy must see every
/// reply to keep requests and replies paired, and drops the suppressed ones
/// itself.
pub fn push_without_quiet(out: &mut Vec<u8>, line: &[u8]) {
    let mut first = true;
    for t in line.split(|&c| c == b' ').filter(|t| !t.is_empty()) {
        if t == b"q" {
            continue;
        }
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(t);
        first = false;
    }
    out.extend_from_slice(b"\r\n");
}

/// Decode standard base64 into `out`; returns the decoded length.
pub fn decode_base64(s: &[u8], out: &mut [u8; 256]) -> Option<usize> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    let mut n = 0;
    for chunk in s.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut acc = 0u32;
        for &c in &chunk[..4 - pad] {
            acc = (acc << 6) | val(c)?;
        }
        acc <<= 6 * pad as u32;
        let bytes = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        for &b in &bytes[..3 - pad] {
            *out.get_mut(n)? = b;
            n += 1;
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnemo_protocol::reply::MetaStatus;

    #[test]
    fn frames() {
        assert_eq!(parse(b"get a"), None);
        assert_eq!(parse(b"mz a"), None);
        let r = parse(b"ms key 5 T0 q").unwrap().unwrap();
        assert_eq!(
            (r.cmd, r.key, r.datalen, r.quiet),
            (MetaCmd::Set, &b"key"[..], 5, true)
        );
        let r = parse(b"mg key v f").unwrap().unwrap();
        assert_eq!((r.cmd, r.quiet), (MetaCmd::Get, false));
        assert_eq!(parse(b"mn").unwrap().unwrap().cmd, MetaCmd::Noop);
        assert!(parse(b"mg").unwrap().is_err());
        assert!(parse(b"ms k x").unwrap().is_err());
        let long = format!("mg {}", "k".repeat(251));
        assert!(parse(long.as_bytes()).unwrap().is_err());
        let r = parse(b"mg Zm9v b v").unwrap().unwrap();
        let mut buf = [0u8; 256];
        let n = decode_base64(r.key, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"foo");
        assert!(parse(b"mg Zm9v! b v").unwrap().is_err());
    }

    #[test]
    fn quiet() {
        let mut o = Vec::new();
        push_without_quiet(&mut o, b"mg k q v O123");
        assert_eq!(o, b"mg k v O123\r\n");
        assert!(quiet_suppresses(MetaCmd::Get, MetaStatus::En));
        assert!(!quiet_suppresses(MetaCmd::Get, MetaStatus::Va));
        assert!(quiet_suppresses(MetaCmd::Set, MetaStatus::Hd));
        assert!(!quiet_suppresses(MetaCmd::Set, MetaStatus::Ns));
    }

    #[test]
    fn base64() {
        let mut b = [0u8; 256];
        assert_eq!(decode_base64(b"YQ==", &mut b), Some(1));
        assert_eq!(&b[..1], b"a");
        assert_eq!(decode_base64(b"YWI=", &mut b), Some(2));
        assert_eq!(decode_base64(b"YWJj", &mut b), Some(3));
        assert_eq!(decode_base64(b"YWJ", &mut b), None);
    }
}
