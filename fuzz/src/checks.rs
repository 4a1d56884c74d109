//! Invariants the protocol parsers must keep on any input.
//!
//! Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and by the
//! stable corpus replay in `crates/mnemo-protocol/tests/fuzz_corpus.rs`,
//! which includes this file by path, so a crash found by either is checked
//! the same way by both. Every check panics on a violation; "no panic" on
//! hostile bytes is itself the first invariant.

use mnemo_protocol::{binary, client, meta, text, MAX_KEY_LEN};

/// True when `inner` lies entirely within `outer` (the parsers return
/// slices of their input, never copies or other memory).
fn within(outer: &[u8], inner: &[u8]) -> bool {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

/// Splits the input into request lines as the server does and parses each.
pub fn check_text(data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        match text::next_line(rest) {
            text::Line::Incomplete => {
                assert!(
                    !rest.contains(&b'\n'),
                    "Incomplete although a newline is buffered"
                );
                break;
            }
            text::Line::TooLong => {
                assert!(
                    rest.len() > text::MAX_LINE_WITHOUT_NEWLINE || !rest.contains(&b'\n'),
                    "TooLong for a short buffer with a newline"
                );
                break;
            }
            text::Line::Complete { line, consumed } => {
                assert!(
                    consumed > 0 && consumed <= rest.len(),
                    "consumed out of range"
                );
                assert_eq!(
                    rest[consumed - 1],
                    b'\n',
                    "consumed must end at the newline"
                );
                assert!(within(&rest[..consumed], line), "line outside its buffer");
                assert!(!line.contains(&b'\n'), "line holds a newline");
                assert!(!line.contains(&0), "line holds a NUL (C string semantics)");
                // Finding the line must not depend on bytes after it.
                assert_eq!(
                    text::next_line(&rest[..consumed]),
                    text::Line::Complete { line, consumed },
                    "line depends on bytes after its newline"
                );
                check_request(line, text::parse_line(line));
                rest = &rest[consumed..];
            }
        }
    }
}

fn check_request(line: &[u8], req: text::Request<'_>) {
    use text::Request as R;
    let key_ok = |key: &[u8]| {
        assert!(within(line, key), "key outside its line");
        assert!(!key.is_empty(), "empty key accepted");
        assert!(key.len() <= MAX_KEY_LEN, "over-long key accepted");
        assert!(!key.contains(&b' '), "key holds a space");
    };
    match req {
        R::Get { keys, .. } => {
            assert!(within(line, keys.remaining()), "keys outside their line");
            let mut n = 0usize;
            for key in keys {
                key_ok(key);
                n += 1;
                // A line of 2 MB has at most a million keys; bounds the walk.
                assert!(n <= line.len(), "key iterator does not advance");
            }
        }
        R::Store { key, .. }
        | R::Delete { key, .. }
        | R::Arith { key, .. }
        | R::Touch { key, .. } => key_ok(key),
        R::Stats(text::StatsCmd::Engine(arg)) => assert!(within(line, arg)),
        R::LruCrawler(text::CrawlerCmd::Crawl(arg) | text::CrawlerCmd::Metadump(arg)) => {
            assert!(within(line, arg))
        }
        R::Error { msg, .. } => reply_line_ok(msg),
        R::Stats(text::StatsCmd::CacheDump(Err(msg))) => reply_line_ok(msg),
        _ => {}
    }
}

/// An error the server sends verbatim must be one clean reply line.
fn reply_line_ok(msg: &str) {
    assert!(!msg.is_empty(), "empty error reply");
    assert!(
        !msg.contains('\r') && !msg.contains('\n'),
        "error reply holds a line break: {msg:?}"
    );
}

/// Parses every line of the input as a meta request.
pub fn check_meta(data: &[u8]) {
    let mut rest = data;
    while let text::Line::Complete { line, consumed } = text::next_line(rest) {
        let mut keybuf = [0u8; meta::KEY_BUF_LEN];
        match meta::parse(line, &mut keybuf) {
            Ok(req) => {
                assert!(
                    !req.flags.base64 || req.key.len() <= meta::KEY_BUF_LEN,
                    "decoded meta key longer than its buffer"
                );
                assert!(
                    req.flags.base64 || within(line, req.key),
                    "plain meta key outside its line"
                );
                if !req.flags.base64 {
                    assert!(req.key.len() <= MAX_KEY_LEN, "over-long meta key");
                }
                for tok in req.flag_tokens() {
                    assert!(within(line, tok), "meta flag token outside its line");
                    assert!(!tok.is_empty(), "empty meta flag token");
                }
            }
            Err(e) => reply_line_ok(e.msg),
        }
        rest = &rest[consumed..];
    }
    // The base64 helpers see raw client bytes too.
    let mut out = [0u8; meta::KEY_BUF_LEN];
    if data.len() <= 4 * out.len() / 3 {
        if let Some(n) = meta::base64_decode(data, &mut out) {
            assert!(n <= out.len(), "base64 decoded past its buffer");
            let mut enc = Vec::new();
            meta::base64_encode(&out[..n], &mut enc);
            let mut back = [0u8; meta::KEY_BUF_LEN];
            assert_eq!(
                meta::base64_decode(&enc, &mut back),
                Some(n),
                "base64 round trip changed the length"
            );
            assert_eq!(&back[..n], &out[..n], "base64 round trip changed the bytes");
        }
    }
}

/// Frames and decodes pipelined binary requests, as the server's loop does.
pub fn check_binary(data: &[u8]) {
    let mut rest = data;
    loop {
        let p = match binary::frame(rest) {
            binary::Frame::Incomplete | binary::Frame::BadMagic => return,
            binary::Frame::Packet(p) => p,
        };
        let h = &p.header;
        assert_eq!(
            p.consumed,
            binary::HEADER_LEN + h.extras_len as usize + h.key_len as usize,
            "consumed is not header + extras + key"
        );
        assert!(p.consumed <= rest.len(), "packet past its buffer");
        assert_eq!(p.extras.len(), h.extras_len as usize);
        assert_eq!(p.key.len(), h.key_len as usize);
        assert!(within(rest, p.extras) && within(rest, p.key));
        if !binary::lengths_ok(h) {
            return;
        }
        let body_rest = h.body_len as usize - h.extras_len as usize - h.key_len as usize;
        for sasl in [false, true] {
            match binary::decode(&p, sasl) {
                Ok(cmd) => {
                    assert!(p.key.len() <= MAX_KEY_LEN, "over-long key accepted");
                    assert!(
                        cmd.value_len() <= body_rest,
                        "value_len {} exceeds the body's {body_rest}",
                        cmd.value_len()
                    );
                }
                Err(binary::Reject::Unknown { swallow }) => {
                    assert!(swallow <= h.body_len as usize, "swallow past the body")
                }
                Err(binary::Reject::Invalid) => {}
            }
        }
        let end = p.consumed + body_rest;
        if end > rest.len() {
            return;
        }
        rest = &rest[end..];
    }
}

/// Parses a server's reply stream as the proxy and the client do, text and
/// binary, checking that every range is inside the element it came from
/// and that a reply is not recognised before all its bytes are there.
pub fn check_reply(data: &[u8]) {
    let mut rest = data;
    while let Ok(Some((r, used))) = client::parse_reply(rest) {
        assert!(used > 0 && used <= rest.len(), "used out of range");
        let ranges: Vec<std::ops::Range<usize>> = match &r {
            client::Reply::Value { key, data, .. } => vec![key.clone(), data.clone()],
            client::Reply::Version(v)
            | client::Reply::ClientError(v)
            | client::Reply::ServerError(v) => vec![v.clone()],
            client::Reply::Stat { name, value } => vec![name.clone(), value.clone()],
            client::Reply::Meta { flags, data, .. } => {
                let mut v = vec![flags.clone()];
                v.extend(data.clone());
                v
            }
            _ => vec![],
        };
        for range in &ranges {
            assert!(
                range.start <= range.end && range.end <= used,
                "range {range:?} outside the {used}-byte element"
            );
        }
        // Prefix stability: the element alone parses the same, and any
        // shorter prefix is "need more" or an error, never a different reply.
        assert_eq!(
            client::parse_reply(&rest[..used]),
            Ok(Some((r.clone(), used))),
            "reply depends on bytes after it"
        );
        for cut in [used - 1, used / 2] {
            if let Ok(Some((early, n))) = client::parse_reply(&rest[..cut]) {
                panic!("prefix of {cut}/{used} bytes parsed as {early:?} ({n} bytes), full element is {r:?}");
            }
        }
        rest = &rest[used..];
    }

    let mut rest = data;
    while let Ok(Some((p, used))) = client::binary::parse_packet(rest) {
        assert!(
            used >= binary::HEADER_LEN && used <= rest.len(),
            "used out of range"
        );
        for range in [&p.extras, &p.key, &p.value] {
            assert!(
                range.start <= range.end && range.end <= used,
                "binary range {range:?} outside the {used}-byte packet"
            );
        }
        assert_eq!(
            p.extras.len() + p.key.len() + p.value.len(),
            p.header.body_len as usize,
            "extras + key + value != body"
        );
        assert_eq!(
            client::binary::parse_packet(&rest[..used - 1]),
            Ok(None),
            "a packet missing its last byte was accepted"
        );
        rest = &rest[used..];
    }
}
