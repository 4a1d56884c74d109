//! Meta requests (`mg`, `ms`, `md`) on an erasure-coded pool, and through
//! them the binary protocol, which the proxy translates to meta (see
//! `binproto`). They run as the text commands do (`ops`); only the answer
//! differs: meta statuses with the return flags the request asked for, in
//! its order, as memcached writes them.
//!
//! Supported: `mg` with `v f c k O s t q b` and `T` (touch); `ms` in set,
//! add (`ME`) and replace (`MR`) modes with `F T C c k O q b`; `md` with
//! `C k O q b`. `c` is the write's version, the same CAS unique text `gets`
//! returns. What needs an atomic read-modify-write on the servers (`ma`,
//! append/prepend modes, `N` vivify, `R` recache, `I` invalidate, `E`
//! explicit CAS) and keys that are not valid text keys (binary keys)
//! answer `SERVER_ERROR` rather than something approximate.

use super::ops::{EcCmd, EcOp, Mode, UNSUPPORTED};
use super::read::Outcome;
use super::write::Tally;
use crate::client::SlotKind;
use crate::meta::MetaCmd;
use crate::worker::Worker;
use mnemo_net::Key;
use mnemo_protocol::client as pclient;
use mnemo_protocol::meta::{self as pmeta, push_flag_u64, push_key, push_opaque, SetMode};
use mnemo_protocol::text::GetKind;

/// How a meta request wants its answer shaped.
pub(crate) struct MetaAsk {
    cmd: MetaCmd,
    /// The return-flag tokens (`O k c f s t`), in request order.
    toks: Vec<Vec<u8>>,
    value: bool,
    quiet: bool,
    base64: bool,
}

/// Whether the request asks for something this pool cannot do exactly.
fn unsupported(req: &pmeta::Request<'_>) -> bool {
    let f = &req.flags;
    if f.new_cas.is_some() || f.invalidate || !pclient::valid_key(req.key) {
        return true;
    }
    match req.cmd {
        MetaCmd::Get => f.vivify.is_some() || f.recache.is_some(),
        MetaCmd::Set => matches!(req.set_mode, SetMode::Append | SetMode::Prepend),
        MetaCmd::Delete => f.ttl.is_some(),
        MetaCmd::Arith | MetaCmd::Debug | MetaCmd::Noop => true,
    }
}

impl Worker {
    /// Answer `msg` through a slot, so that a binary client gets it
    /// translated.
    fn ec_refuse(&mut self, idx: Key, msg: &[u8]) {
        if let Some(to) = self.push_slot(idx, SlotKind::Local) {
            self.complete(to, msg);
        }
    }

    /// A binary request on an erasure-coded pool, as `binproto` translated
    /// it to meta (`line` ends at its `\r\n`; `value` is the data of a
    /// store).
    pub(crate) fn ec_bin(&mut self, idx: Key, pool: usize, text: &[u8], value: &[u8]) {
        let end = text
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(text.len());
        let mut keybuf = [0u8; pmeta::KEY_BUF_LEN];
        match pmeta::parse(&text[..end], &mut keybuf) {
            Ok(req) => self.ec_meta(idx, pool, &req, value),
            Err(_) => self.ec_refuse(idx, UNSUPPORTED),
        }
    }

    /// One parsed meta request (`data`: an `ms`'s value).
    pub(crate) fn ec_meta(&mut self, idx: Key, pool: usize, req: &pmeta::Request<'_>, data: &[u8]) {
        if unsupported(req) {
            self.ec_refuse(idx, UNSUPPORTED);
            return;
        }
        let f = req.flags;
        let ask = Box::new(MetaAsk {
            cmd: req.cmd,
            toks: req
                .flag_tokens()
                .filter(|t| matches!(t.first(), Some(b'O' | b'k' | b'c' | b'f' | b's' | b't')))
                .map(<[u8]>::to_vec)
                .collect(),
            value: f.value,
            quiet: f.quiet,
            base64: f.base64,
        });
        let key = req.key;
        let Some(g) = self
            .pools
            .get(pool)
            .and_then(|p| p.ec.as_ref())
            .map(|e| e.geom)
        else {
            return;
        };
        let (cmd, barrier) = match req.cmd {
            MetaCmd::Get => (EcCmd::Get(GetKind::Get), false),
            MetaCmd::Set => {
                let mode = match (f.compare_cas, req.set_mode) {
                    (Some(c), _) => Mode::Cas(c),
                    (None, SetMode::Add) => Mode::Add,
                    (None, SetMode::Replace) => Mode::Replace,
                    (None, _) => Mode::Set,
                };
                let cmd = EcCmd::Store {
                    mode,
                    flags: f.client_flags,
                    exptime: f.ttl.map_or(0, i64::from),
                    data: data.to_vec(),
                };
                (cmd, mode != Mode::Set)
            }
            MetaCmd::Delete => (EcCmd::Delete(f.compare_cas), f.compare_cas.is_some()),
            _ => return,
        };
        let Some(mut op) = self.ec_op(pool, cmd, &[key], barrier, false) else {
            return;
        };
        op.meta = Some(ask);
        let Some(to) = self.ec_start(idx, op) else {
            return;
        };
        match req.cmd {
            MetaCmd::Get => self.ec_send_reads(to, pool, 0, f.ttl.map(i64::from)),
            MetaCmd::Set if !barrier => {
                let (shards, exptime) = self.ec_store_shards(to, pool);
                self.ec_send_writes(to, pool, 0, shards, exptime);
            }
            MetaCmd::Delete if !barrier => {
                self.ec_delete_now(to, pool, &g);
                return;
            }
            _ => self.ec_send_reads(to, pool, 0, None),
        }
        self.ec_progress(to);
    }
}

/// Append the return flags `ask` wants; `hit` carries what only a found
/// value has (flags, version, length, TTL).
fn push_flags(
    out: &mut Vec<u8>,
    ask: &MetaAsk,
    key: &[u8],
    cas: Option<u64>,
    hit: Option<(u32, usize, i64)>,
) {
    for t in &ask.toks {
        match (t.first(), hit) {
            (Some(b'O'), _) => push_opaque(out, t),
            (Some(b'k'), _) => push_key(out, key, ask.base64),
            (Some(b'c'), _) if cas.is_some() => push_flag_u64(out, b'c', cas.unwrap_or(0)),
            (Some(b'f'), Some((flags, _, _))) => push_flag_u64(out, b'f', u64::from(flags)),
            (Some(b's'), Some((_, len, _))) => push_flag_u64(out, b's', len as u64),
            (Some(b't'), Some((_, _, ttl))) if ttl < 0 => out.extend_from_slice(b" t-1"),
            (Some(b't'), Some((_, _, ttl))) => push_flag_u64(out, b't', ttl as u64),
            _ => {}
        }
    }
}

/// The meta answer to a finished request.
pub(crate) fn answer(op: &EcOp, out: &mut Vec<u8>) {
    let (Some(ask), Some(ek)) = (op.meta.as_deref(), op.keys.first()) else {
        return;
    };
    let hit = match &ek.outcome {
        Some(Outcome::Hit {
            version,
            flags,
            data,
            ttl,
            ..
        }) => Some((*version, *flags, data, *ttl)),
        _ => None,
    };
    let tally = ek.write.as_ref();
    let write = tally.map(Tally::ok);
    let lost = tally.is_some_and(Tally::lost);
    let status: &[u8] = match (ask.cmd, &op.cmd) {
        (MetaCmd::Get, _) => {
            let Some((version, flags, data, ttl)) = hit else {
                if !ask.quiet {
                    out.extend_from_slice(b"EN");
                    push_flags(out, ask, &ek.key, None, None);
                    out.extend_from_slice(b"\r\n");
                }
                return;
            };
            if ask.value {
                out.extend_from_slice(b"VA ");
                out.extend_from_slice(data.len().to_string().as_bytes());
            } else {
                out.extend_from_slice(b"HD");
            }
            push_flags(
                out,
                ask,
                &ek.key,
                Some(version),
                Some((flags, data.len(), ttl)),
            );
            out.extend_from_slice(b"\r\n");
            if ask.value {
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            return;
        }
        (_, EcCmd::Store { mode, .. }) => match (write, mode) {
            (Some(true), _) => b"HD",
            (Some(false), Mode::Cas(_)) if lost => b"EX",
            (Some(false), _) if lost => b"NS",
            (Some(false), _) => b"SERVER_ERROR erasure-coded write reached too few servers",
            (None, Mode::Cas(_)) if hit.is_some() => b"EX",
            (None, Mode::Cas(_)) => b"NF",
            (None, _) => b"NS",
        },
        (_, EcCmd::Delete(cas)) => match (write, cas, hit.is_some()) {
            _ if lost => b"EX",
            (Some(true), Some(_), _) | (Some(true), None, true) => b"HD",
            (Some(false), _, true) => b"SERVER_ERROR erasure-coded delete reached too few servers",
            (_, None, false) | (None, Some(_), false) => b"NF",
            (None, Some(_), true) => b"EX",
            (Some(_), _, false) => b"NF",
            // A plain delete always writes its tombstones.
            (None, None, true) => b"SERVER_ERROR",
        },
        _ => b"SERVER_ERROR",
    };
    let ok = status == b"HD";
    if ok && ask.quiet {
        return;
    }
    out.extend_from_slice(status);
    if !status.starts_with(b"SERVER_ERROR") {
        let cas = (ok && op.written != 0).then_some(op.written);
        push_flags(out, ask, &ek.key, cas, None);
    }
    out.extend_from_slice(b"\r\n");
}
