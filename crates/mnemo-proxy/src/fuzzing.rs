//! Issue #15: multi-get assembly against fake backends, shared by the
//! libFuzzer target `fuzz/fuzz_targets/proxy.rs` and its stable replay
//! (`tests/fuzz_proxy.rs`).
//!
//! This drives the layer below the worker loop (which is bound to mio
//! sockets): the real [`MultiGet`] (`encode_part`, `absorb`, `assemble`)
//! and the real backend reply framing ([`scan_retrieval`]). The input names
//! the keys and how many servers there are; each server is a model (a
//! key's presence and value follow from its bytes); the request each
//! server would get is parsed back and must name exactly its part's keys;
//! the server's answer, built from the model, may be cut short or have a
//! byte flipped as the input chooses. A part whose answer does not frame
//! as a retrieval reply fails as the worker fails it (`SERVER_ERROR`).
//! Checks, each a panic: with every part answered intact, the client gets
//! exactly the model's hits in request order (repeats included) then
//! `END`; with a failed part, only the error line; never a key that was
//! not asked for.

use crate::backend::scan_retrieval;
use crate::multiget::{MultiGet, Part};
use mnemo_protocol::text::GetKind;

/// The value the model holds for `key`, if it holds one.
fn model(key: &[u8]) -> Option<Vec<u8>> {
    let sum: u32 = key.iter().map(|&b| b as u32).sum();
    // A third of the keys miss.
    let third = sum % 3;
    if third == 0 {
        return None;
    }
    let mut v: Vec<u8> = key.iter().rev().copied().collect();
    v.resize(v.len() + (sum % 50) as usize, b'v');
    Some(v)
}

fn value_reply(out: &mut Vec<u8>, key: &[u8], v: &[u8]) {
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(key);
    out.extend_from_slice(format!(" 0 {}\r\n", v.len()).as_bytes());
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
}

/// Runs one multi-get described by `data` (byte 0: servers and get kind;
/// bytes 1-4: per server, intact / cut / flipped answer; the rest: keys,
/// space-separated) and checks what the client would get.
pub fn multiget(data: &[u8]) {
    let Some((&b0, rest)) = data.split_first() else {
        return;
    };
    let nservers = 1 + (b0 & 3) as usize;
    let kind = [GetKind::Get, GetKind::Gat][(b0 >> 2 & 1) as usize];
    let (faults, body) = rest.split_at(rest.len().min(4));
    let keys: Vec<&[u8]> = body
        .split(|b| b" \r\n\0".contains(b))
        .filter(|k| !k.is_empty() && k.len() <= 250)
        .take(200)
        .collect();
    if keys.is_empty() {
        return;
    }
    let mut mg = MultiGet {
        kind,
        exptime: 10,
        keys: Vec::new(),
        key_at: Vec::new(),
        found: vec![None; keys.len()],
        data: Vec::new(),
        parts: Vec::new(),
        left: 0,
        error: None,
    };
    for k in &keys {
        let s = mg.keys.len() as u32;
        mg.keys.extend_from_slice(k);
        mg.key_at.push((s, mg.keys.len() as u32));
    }
    let mut by_server: Vec<Vec<u32>> = vec![Vec::new(); nservers];
    for (i, k) in keys.iter().enumerate() {
        let s = k.iter().map(|&b| b as usize).sum::<usize>() % nservers;
        by_server[s].push(i as u32);
    }
    for (server, ks) in by_server.into_iter().enumerate() {
        if !ks.is_empty() {
            mg.parts.push(Part {
                server,
                keys: ks,
                cursor: 0,
                on_backup: false,
            });
        }
    }
    mg.left = mg.parts.len() as u32;
    let mut failed = false;
    for part in 0..mg.parts.len() {
        // What the server receives names exactly its part's keys.
        let mut req = Vec::new();
        mg.encode_part(part, &mut req);
        let line = req
            .strip_suffix(b"\r\n")
            .unwrap_or_else(|| panic!("request not one line: {req:?}"));
        let mut words = line.split(|&b| b == b' ');
        let skip = match kind {
            GetKind::Gat | GetKind::Gats => 2,
            GetKind::Get | GetKind::Gets => 1,
        };
        let sent: Vec<&[u8]> = words.by_ref().skip(skip).collect();
        let want: Vec<&[u8]> = mg.parts[part].keys.iter().map(|&k| mg.key(k)).collect();
        assert_eq!(sent, want, "part {part}'s request");
        // The fake server's answer, from the model.
        let mut reply = Vec::new();
        for k in &want {
            if let Some(v) = model(k) {
                value_reply(&mut reply, k, &v);
            }
        }
        reply.extend_from_slice(b"END\r\n");
        let fault = faults.get(mg.parts[part].server).copied().unwrap_or(0);
        let intact = match fault % 4 {
            1 => {
                reply.truncate(fault as usize % reply.len());
                false
            }
            2 => {
                let at = (fault as usize * 7) % reply.len();
                reply[at] ^= 1 << (fault % 8);
                false
            }
            _ => true,
        };
        // As the backend frames it: a whole retrieval reply is absorbed,
        // an error line or anything else fails the part.
        let mut scan = 0;
        match scan_retrieval(&reply, &mut scan) {
            Ok(Some((used, r))) if !r.is_error() => {
                mg.absorb(part, &reply[..used]);
            }
            // Cut short: the server closes and the part fails, as does a
            // reply that does not frame.
            _ => {
                assert!(!intact, "an intact reply did not frame");
                failed = true;
            }
        }
    }
    if failed {
        mg.error = Some(b"SERVER_ERROR backend reply\r\n".to_vec());
    }
    let mut out = Vec::new();
    mg.assemble(&mut out);
    if failed {
        assert_eq!(out, b"SERVER_ERROR backend reply\r\n");
        return;
    }
    let clean = faults
        .iter()
        .take(nservers)
        .all(|f| f % 4 == 0 || f % 4 == 3);
    if clean {
        let mut want = Vec::new();
        for k in &keys {
            if let Some(v) = model(k) {
                value_reply(&mut want, k, &v);
            }
        }
        want.extend_from_slice(b"END\r\n");
        assert_eq!(out, want, "assembled reply");
    } else {
        // A damaged reply that still framed: whatever it held, only keys
        // that were asked for reach the client.
        let mut pos = 0;
        while let Ok(Some((r, used))) = mnemo_protocol::client::parse_reply(&out[pos..]) {
            if let mnemo_protocol::client::Reply::Value { key, .. } = r {
                let k = &out[pos + key.start..pos + key.end];
                assert!(keys.contains(&k), "a key not asked for reached the client");
            }
            pos += used;
        }
    }
}

/// Checks `out` is exactly one binary response to `opcode`/`opaque`;
/// returns its status and value (after extras and key).
fn one_response(out: &[u8], opcode: u8, opaque: u32) -> (u16, &[u8]) {
    assert!(out.len() >= 24, "short binary response: {out:?}");
    assert_eq!(out[0], 0x81, "response magic");
    assert_eq!(out[1], opcode, "response opcode");
    let be32 = |at: usize| u32::from_be_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
    assert_eq!(be32(12), opaque, "response opaque");
    let body = be32(8) as usize;
    assert_eq!(out.len(), 24 + body, "one response, its length as stated");
    let key_len = u16::from_be_bytes([out[2], out[3]]) as usize;
    let extras = out[4] as usize;
    assert!(extras + key_len <= body, "extras and key within the body");
    let status = u16::from_be_bytes([out[6], out[7]]);
    (status, &out[24 + extras + key_len..])
}

/// Binary-to-meta request translation and meta-to-binary answer
/// translation (`binproto::plan`, `binproto::translate`), as `request.rs`
/// runs them, against a fake server. Byte 0 picks the server's answer
/// (a model answer for the command, a cut one, or garbage); the rest is
/// a stream of binary requests, framed and decoded by the protocol crate
/// with the proxy's checks. Each planned meta request must be one line
/// (plus a store's value, unchanged); each answer must become exactly one
/// binary response carrying the request's opcode and opaque (none for a
/// quiet success), the model's value for a hit, and an error status for
/// an answer that does not parse.
pub fn binary(data: &[u8]) {
    use crate::binproto::{plan, translate, Action};
    use crate::request::MAX_ITEM;
    use mnemo_protocol::binary as pbin;
    let Some((&sel, mut buf)) = data.split_first() else {
        return;
    };
    for _ in 0..64 {
        let pk = match pbin::frame(buf) {
            pbin::Frame::Packet(pk) => pk,
            _ => return,
        };
        let h = pk.header;
        if !pbin::lengths_ok(&h) {
            return;
        }
        let Ok(cmd) = pbin::decode(&pk, false) else {
            return;
        };
        let vlen = cmd.value_len();
        let total = pk.consumed + vlen;
        if vlen > MAX_ITEM || buf.len() < total {
            return;
        }
        let value = &buf[pk.consumed..total];
        let mut text = Vec::new();
        let mut local = Vec::new();
        let (b, action) = plan(&h, &cmd, pk.key, value, MAX_ITEM, &mut text, &mut local);
        buf = &buf[total..];
        match action {
            Action::Local | Action::Quit => {
                if !local.is_empty() {
                    one_response(&local, h.opcode, h.opaque);
                }
                continue;
            }
            Action::Keyed { .. } | Action::Flush => {}
        }
        let eol = text
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("planned request has no line end: {text:?}"));
        let rest = &text[eol + 2..];
        assert!(
            !text[..eol].contains(&b'\n') && !text[..eol].contains(&b'\r'),
            "planned line holds a line break"
        );
        if !rest.is_empty() {
            assert_eq!(rest.strip_suffix(b"\r\n"), Some(value), "a store's value");
        }
        // The fake server's answer.
        let model_value = b"model-value";
        let answer: Vec<u8> = match (sel % 4, text.get(..2)) {
            (0, Some(b"mg")) => b"VA 11 f7 c9\r\nmodel-value\r\n".to_vec(),
            (1, Some(b"mg")) => b"EN\r\n".to_vec(),
            (0 | 1, Some(b"ms")) => b"HD c9\r\n".to_vec(),
            (0 | 1, Some(b"md")) => b"HD\r\n".to_vec(),
            (0 | 1, Some(b"ma")) => b"VA 2 c9\r\n42\r\n".to_vec(),
            (0 | 1, _) => b"OK\r\n".to_vec(),
            (2, _) => b"VA 11 f7 c9\r\nmodel".to_vec(),
            _ => data.iter().rev().take(16).copied().collect(),
        };
        let parses = matches!(
            mnemo_protocol::client::parse_reply(&answer),
            Ok(Some((_, used))) if used == answer.len()
        );
        let mut out = Vec::new();
        translate(&b, &answer, &mut out);
        if out.is_empty() {
            assert!(
                parses && pbin::Opcode::from_u8(h.opcode).is_some_and(pbin::Opcode::is_quiet),
                "no response to a non-quiet request or an unparsed answer"
            );
            continue;
        }
        let (status, v) = one_response(&out, h.opcode, h.opaque);
        if !parses {
            assert_ne!(status, 0, "an unparsed answer became a success");
        } else if sel % 4 == 0
            && text.starts_with(b"mg")
            && text.windows(3).any(|w| w == b" v ")
            && status == 0
        {
            assert_eq!(v, model_value, "a hit's value");
        }
    }
}
