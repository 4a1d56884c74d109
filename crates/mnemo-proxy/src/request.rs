//! Parsing what a client sent (text, meta and binary framing) and handing
//! each request to routing, or answering it here when no server is needed.

use crate::binproto::{self};
use crate::erasure::ops::UNSUPPORTED;
use crate::meta::{self, MetaCmd};
use crate::worker::Worker;
use mnemo_net::Key;
use mnemo_protocol::binary as pbin;
use mnemo_protocol::meta as pmeta;
use mnemo_protocol::text::{self, Line, Request};
use std::sync::atomic::Ordering::Relaxed;

/// memcached's default item size limit; larger values are refused the way
/// memcached refuses them instead of being forwarded.
pub(crate) const MAX_ITEM: usize = 1024 * 1024;

/// Longest request line buffered while waiting for its end (a multi-get of
/// some 4000 maximal keys).
pub(crate) const MAX_GET_LINE: usize = 1024 * 1024;

/// One complete text request line at the front of a client's buffer.
#[derive(Clone, Copy)]
pub(crate) struct Framed<'a> {
    /// Everything buffered from the request's first byte on (a data block
    /// may follow the line).
    pub(crate) buf: &'a [u8],
    /// The line, without its terminator.
    pub(crate) line: &'a [u8],
    /// What the line takes of `buf`, terminator included.
    pub(crate) consumed: usize,
}

/// Outcome of handling one client request.
pub(crate) enum Step {
    Consumed(usize),
    NeedMore,
    Stop,
}

impl Worker {
    pub(crate) fn process_requests(&mut self, idx: Key) {
        let (mut rb, pool) = match self.clients.get_mut(idx) {
            Some(c) if c.closing => {
                c.rb.clear();
                return;
            }
            Some(c) => (std::mem::take(&mut c.rb), c.pool),
            None => return,
        };
        let mut stop = false;
        loop {
            let buf = rb.filled();
            if buf.is_empty() {
                break;
            }
            if let Some(c) = self.clients.get_mut(idx) {
                if c.over_limits() {
                    c.paused = true;
                    break;
                }
                if c.swallow > 0 {
                    let n = c.swallow.min(buf.len());
                    c.swallow -= n;
                    rb.consume(n);
                    continue;
                }
            }
            let binary = match self.clients.get_mut(idx) {
                Some(c) => *c.binary.get_or_insert(buf[0] == pbin::REQUEST_MAGIC),
                None => break,
            };
            if binary {
                let step = self.bin_frame(idx, pool, buf);
                match step {
                    Step::Consumed(n) => {
                        rb.consume(n);
                        continue;
                    }
                    Step::NeedMore => break,
                    Step::Stop => {
                        stop = true;
                        break;
                    }
                }
            }
            let step = match text::next_line(buf) {
                // memcached keeps reading an unterminated multi-get; the
                // proxy must buffer it whole, so it sets a bound.
                Line::Incomplete if buf.len() > MAX_GET_LINE => {
                    self.answer(idx, b"CLIENT_ERROR line too long\r\n");
                    Step::Stop
                }
                Line::Incomplete => Step::NeedMore,
                Line::TooLong => {
                    self.answer(idx, b"CLIENT_ERROR line too long\r\n");
                    Step::Stop
                }
                Line::Complete { line, consumed } => self.request(
                    idx,
                    pool,
                    Framed {
                        buf,
                        line,
                        consumed,
                    },
                ),
            };
            match step {
                Step::Consumed(n) => rb.consume(n),
                Step::NeedMore => break,
                Step::Stop => {
                    stop = true;
                    break;
                }
            }
        }
        if let Some(c) = self.clients.get_mut(idx) {
            if stop {
                rb.clear();
                c.closing = true;
                c.eof = true;
            }
            c.rb = rb;
        }
        self.mark_client(idx);
    }

    pub(crate) fn count_request(&self, pool: usize, len: usize) {
        if let Some(ps) = self.stats.pools.get(pool) {
            ps.requests.fetch_add(1, Relaxed);
            ps.request_bytes.fetch_add(len as u64, Relaxed);
        }
    }

    /// Handle one complete request line (`consumed` bytes of `buf`).
    pub(crate) fn request(&mut self, idx: Key, pool: usize, f: Framed<'_>) -> Step {
        let Framed {
            buf,
            line,
            consumed,
        } = f;
        let first = line.split(|&c| c == b' ').find(|t| !t.is_empty());
        if first.and_then(pmeta::command).is_some() {
            let mut keybuf = [0u8; pmeta::KEY_BUF_LEN];
            return match pmeta::parse(line, &mut keybuf) {
                Err(e) => {
                    let mut v = e.msg.as_bytes().to_vec();
                    v.extend_from_slice(b"\r\n");
                    self.answer(idx, &v);
                    // A refused ms loses its data block, as in memcached.
                    if let Some(c) = self.clients.get_mut(idx) {
                        c.swallow = e.swallow;
                    }
                    Step::Consumed(consumed)
                }
                Ok(req) => self.meta_request(idx, pool, f, &req),
            };
        }
        match text::parse_line(line) {
            Request::Get {
                kind,
                exptime,
                keys,
            } => {
                self.count_request(pool, consumed);
                if self.pools[pool].ec.is_some() {
                    self.ec_get(idx, pool, kind, exptime, keys);
                } else {
                    self.get_request(idx, pool, &buf[..consumed], kind, exptime, keys);
                }
                Step::Consumed(consumed)
            }
            Request::Store {
                kind,
                key,
                flags,
                exptime,
                bytes,
                cas,
                noreply,
            } => {
                if bytes > MAX_ITEM {
                    if !noreply {
                        self.answer(idx, b"SERVER_ERROR object too large for cache\r\n");
                    }
                    if let Some(c) = self.clients.get_mut(idx) {
                        c.swallow = bytes + 2;
                    }
                    return Step::Consumed(consumed);
                }
                let total = consumed + bytes + 2;
                if buf.len() < total {
                    return Step::NeedMore;
                }
                if &buf[consumed + bytes..total] != b"\r\n" {
                    if !noreply {
                        self.answer(idx, b"CLIENT_ERROR bad data chunk\r\n");
                    }
                    return Step::Consumed(total);
                }
                self.count_request(pool, total);
                if self.pools[pool].ec.is_some() {
                    let data = &buf[consumed..consumed + bytes];
                    self.ec_store(idx, pool, kind, key, flags, exptime, cas, data, noreply);
                } else {
                    self.keyed(idx, pool, key, &buf[..total], noreply, None);
                }
                Step::Consumed(total)
            }
            Request::Delete { key, noreply } if self.pools[pool].ec.is_some() => {
                self.count_request(pool, consumed);
                self.ec_delete(idx, pool, key, noreply);
                Step::Consumed(consumed)
            }
            Request::Touch {
                key,
                exptime,
                noreply,
            } if self.pools[pool].ec.is_some() => {
                self.count_request(pool, consumed);
                self.ec_touch(idx, pool, key, exptime, noreply);
                Step::Consumed(consumed)
            }
            Request::Arith { noreply, .. } if self.pools[pool].ec.is_some() => {
                self.count_request(pool, consumed);
                if !noreply {
                    self.answer(idx, UNSUPPORTED);
                }
                Step::Consumed(consumed)
            }
            Request::Delete { key, noreply }
            | Request::Arith { key, noreply, .. }
            | Request::Touch { key, noreply, .. } => {
                self.count_request(pool, consumed);
                self.keyed(idx, pool, key, &buf[..consumed], noreply, None);
                Step::Consumed(consumed)
            }
            Request::FlushAll { noreply, .. } => {
                self.count_request(pool, consumed);
                self.fanout(idx, pool, &buf[..consumed], noreply);
                Step::Consumed(consumed)
            }
            Request::Version => {
                self.answer(
                    idx,
                    concat!("VERSION mnemo-proxy-", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes(),
                );
                Step::Consumed(consumed)
            }
            Request::Verbosity { noreply, .. } => {
                // The proxy's own verbosity; servers are not asked to change.
                if !noreply {
                    self.answer(idx, b"OK\r\n");
                }
                Step::Consumed(consumed)
            }
            Request::Quit => Step::Stop,
            Request::Close => {
                if let Some(c) = self.clients.get_mut(idx) {
                    c.slots.clear();
                    c.wbuf.clear();
                }
                Step::Stop
            }
            Request::Shutdown { .. } | Request::ShutdownBadMode => {
                self.answer(idx, b"ERROR: shutdown not enabled\r\n");
                Step::Consumed(consumed)
            }
            Request::Stats(text::StatsCmd::General) => {
                let mut out = Vec::new();
                self.stats.stat_lines(&mut out);
                self.answer(idx, &out);
                Step::Consumed(consumed)
            }
            Request::Error { .. }
                if self.pools[pool].ec.is_some()
                    && (line == b"repair" || line.starts_with(b"repair ")) =>
            {
                self.ec_repair_command(idx, pool, line);
                Step::Consumed(consumed)
            }
            Request::Error { msg, noreply } => {
                if !noreply {
                    let mut v = msg.as_bytes().to_vec();
                    v.extend_from_slice(b"\r\n");
                    self.answer(idx, &v);
                }
                Step::Consumed(consumed)
            }
            Request::GetKeyTooLong => {
                // memcached also drops the answers still queued for earlier
                // gets of the batch; the proxy answers every request it
                // took, in order, and only this one with the error.
                let mut v = text::BAD_FORMAT.as_bytes().to_vec();
                v.extend_from_slice(b"\r\n");
                self.answer(idx, &v);
                Step::Consumed(consumed)
            }
            // Server administration concerns one server, not the proxy.
            // Listed one by one so that a new request kind in the parser
            // is a compile error here rather than a silent ERROR.
            Request::Stats(_)
            | Request::CacheMemlimit { .. }
            | Request::SlabsReassign(_)
            | Request::SlabsAutomove { .. }
            | Request::LruCrawler(_)
            | Request::Lru { .. }
            | Request::Watch { .. } => {
                self.answer(idx, b"ERROR\r\n");
                Step::Consumed(consumed)
            }
        }
    }

    /// Frame and validate one binary request with `mnemo_protocol::binary`,
    /// answering refusals as memcached does (bad magic: close; key or extras
    /// beyond the body: UNKNOWN_COMMAND and close; wrong shape: EINVAL and
    /// close; unknown opcode: UNKNOWN_COMMAND and skip its body).
    pub(crate) fn bin_frame(&mut self, idx: Key, pool: usize, buf: &[u8]) -> Step {
        let pk = match pbin::frame(buf) {
            pbin::Frame::Incomplete => return Step::NeedMore,
            pbin::Frame::BadMagic => return Step::Stop,
            pbin::Frame::Packet(pk) => pk,
        };
        let h = pk.header;
        let refuse = |st: u16| {
            let mut e = Vec::new();
            pbin::encode_error(&mut e, h.opcode, st, h.opaque);
            e
        };
        if !pbin::lengths_ok(&h) {
            self.answer(idx, &refuse(pbin::status::UNKNOWN_COMMAND));
            return Step::Stop;
        }
        let cmd = match pbin::decode(&pk, false) {
            Ok(c) => c,
            Err(pbin::Reject::Invalid) => {
                self.answer(idx, &refuse(pbin::status::INVALID_ARGUMENTS));
                return Step::Stop;
            }
            Err(pbin::Reject::Unknown { swallow }) => {
                self.answer(idx, &refuse(pbin::status::UNKNOWN_COMMAND));
                if let Some(c) = self.clients.get_mut(idx) {
                    c.swallow = swallow;
                }
                return Step::Consumed(pk.consumed);
            }
        };
        let vlen = cmd.value_len();
        if vlen > MAX_ITEM {
            // Refused from the header instead of buffered whole.
            self.answer(idx, &refuse(pbin::status::VALUE_TOO_LARGE));
            if let Some(c) = self.clients.get_mut(idx) {
                c.swallow = vlen;
            }
            return Step::Consumed(pk.consumed);
        }
        let total = pk.consumed + vlen;
        if buf.len() < total {
            return Step::NeedMore;
        }
        self.bin_request(
            idx,
            pool,
            &buf[..total],
            &h,
            &cmd,
            pk.key,
            &buf[pk.consumed..total],
        )
    }

    /// One binary request: translated to text for the servers, or answered
    /// here.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bin_request(
        &mut self,
        idx: Key,
        pool: usize,
        p: &[u8],
        h: &pbin::Header,
        cmd: &pbin::Cmd,
        key: &[u8],
        value: &[u8],
    ) -> Step {
        let mut text = std::mem::take(&mut self.bintext);
        text.clear();
        let mut local = Vec::new();
        let (b, action) = binproto::plan(h, cmd, key, value, MAX_ITEM, &mut text, &mut local);
        self.count_request(pool, p.len());
        let step = match action {
            binproto::Action::Local => {
                if b.opcode == pbin::Opcode::Stat as u8 {
                    let mut lines = Vec::new();
                    self.stats.stat_lines(&mut lines);
                    for l in lines.split(|&c| c == b'\n') {
                        let l = l.strip_suffix(b"\r").unwrap_or(l);
                        if let Some(rest) = l.strip_prefix(b"STAT ") {
                            let sp = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
                            let v = rest.get(sp + 1..).unwrap_or(&[]);
                            b.respond(&mut local, pbin::status::OK, 0, &[], &rest[..sp], v);
                        }
                    }
                    b.respond(&mut local, pbin::status::OK, 0, &[], &[], &[]);
                }
                self.answer(idx, &local);
                Step::Consumed(p.len())
            }
            binproto::Action::Quit => {
                self.answer(idx, &local);
                Step::Stop
            }
            binproto::Action::Keyed { .. } if self.pools[pool].ec.is_some() => {
                if let Some(c) = self.clients.get_mut(idx) {
                    c.next_bin = Some(b);
                }
                self.ec_bin(idx, pool, &text, value);
                Step::Consumed(p.len())
            }
            binproto::Action::Keyed { read } => {
                if let Some(c) = self.clients.get_mut(idx) {
                    c.next_bin = Some(b);
                }
                let cmd = match (read, text.get(..2)) {
                    (true, _) => MetaCmd::Get,
                    (false, Some(b"md")) => MetaCmd::Delete,
                    (false, Some(b"ma")) => MetaCmd::Arith,
                    _ => MetaCmd::Set,
                };
                self.keyed_meta(idx, pool, key, &text, cmd, None);
                Step::Consumed(p.len())
            }
            binproto::Action::Flush => {
                if let Some(c) = self.clients.get_mut(idx) {
                    c.next_bin = Some(b);
                }
                self.fanout(idx, pool, &text, false);
                Step::Consumed(p.len())
            }
        };
        if let Some(c) = self.clients.get_mut(idx) {
            c.next_bin = None;
        }
        self.bintext = text;
        step
    }

    pub(crate) fn meta_request(
        &mut self,
        idx: Key,
        pool: usize,
        f: Framed<'_>,
        req: &pmeta::Request<'_>,
    ) -> Step {
        let Framed {
            buf,
            line,
            consumed,
        } = f;
        if req.cmd == MetaCmd::Noop {
            self.answer(idx, b"MN\r\n");
            return Step::Consumed(consumed);
        }
        let total = match req.cmd {
            MetaCmd::Set => consumed + req.datalen + 2,
            _ => consumed,
        };
        if buf.len() < total {
            return Step::NeedMore;
        }
        if req.cmd == MetaCmd::Set && &buf[total - 2..total] != b"\r\n" {
            self.answer(idx, b"CLIENT_ERROR bad data chunk\r\n");
            return Step::Consumed(total);
        }
        self.count_request(pool, total);
        if self.pools[pool].ec.is_some() {
            let data = match req.cmd {
                MetaCmd::Set => &buf[consumed..consumed + req.datalen],
                _ => &[],
            };
            self.ec_meta(idx, pool, req, data);
            return Step::Consumed(total);
        }
        // Keys are hashed decoded (base64 keys arrive decoded from the
        // parser); the q flag is stripped on the way out and applied here,
        // so every request has exactly one reply to pair with.
        let quiet = req.flags.quiet.then_some(req.cmd);
        if req.flags.quiet {
            let mut stripped = Vec::with_capacity(total);
            meta::push_without_quiet(&mut stripped, line);
            stripped.extend_from_slice(&buf[consumed..total]);
            self.keyed_meta(idx, pool, req.key, &stripped, req.cmd, quiet);
        } else {
            self.keyed_meta(idx, pool, req.key, &buf[..total], req.cmd, quiet);
        }
        Step::Consumed(total)
    }
}
