//! Where the protocols report to `watch`: the lines memcached's
//! `do_item_get` (fetchers), `do_store_item` (mutations) and newer
//! memcached's delete paths (deletions) write, built from what the engine
//! answers. Callers check [`super::Logger::wants`] first, so none of this
//! runs while nobody watches; some of it looks the key up once more, which
//! only a watched server pays.

use super::lines::{self, GetLine, GetStatus, StoreLine};
use super::{DELETIONS, FETCHERS, MUTATIONS};
use crate::dispatch::Ctx;
use mnemo_engine::{KeySlot, StoreMode, StoreOutcome, ThreadStats};

/// What a read found, given the thread's expired/flushed counts from
/// before it ([`ThreadStats::expired_flushed`]) and the item's class and
/// value length on a hit.
#[cold]
#[inline(never)]
pub fn status(ts: &ThreadStats, before: (u64, u64), hit: Option<(u32, usize)>) -> GetLine {
    match hit {
        Some((clsid, size)) => GetLine {
            status: GetStatus::Found,
            clsid,
            size,
        },
        None => {
            let (exp, fl) = ts.expired_flushed();
            let status = if fl != before.1 {
                GetStatus::Flushed
            } else if exp != before.0 {
                GetStatus::Expired
            } else {
                GetStatus::NotFound
            };
            GetLine {
                status,
                ..GetLine::MISS
            }
        }
    }
}

/// A `type=item_get` line.
#[cold]
#[inline(never)]
pub fn fetch(ctx: &Ctx, key: &[u8], g: GetLine) {
    let fd = ctx.fd;
    ctx.shared
        .log
        .log(ctx.ring, FETCHERS, |out| lines::item_get(out, key, g, fd));
}

/// `touch` while fetchers are watched: the lookup line memcached's
/// `do_item_touch` writes; whether the key was there.
#[cold]
#[inline(never)]
pub fn touch(ctx: &Ctx, key: &[u8], exptime: i64) -> bool {
    let before = ctx.ts.expired_flushed();
    let found = ctx
        .shared
        .engine
        .get(key, mnemo_engine::GetMode::Touch(exptime), ctx.ts, |it| {
            (it.class_id(), it.value_len())
        });
    fetch(ctx, key, status(ctx.ts, before, found));
    found.is_some()
}

/// Before a text `delete` runs while fetchers or deletions are watched:
/// the lookup line, and the `type=deleted` line when it will delete.
#[cold]
#[inline(never)]
pub fn before_delete(ctx: &Ctx, key: &[u8]) {
    let g = probe(ctx, key);
    if ctx.shared.log.wants(FETCHERS) {
        fetch(ctx, key, g);
    }
    deleted(ctx, key, "delete", g);
}

/// Looks `key` up as memcached's internal `do_item_get` would (dropping
/// it if expired or flushed, not bumping it) and reports the
/// `type=item_get` line for it when fetchers are watched; returns it.
#[cold]
#[inline(never)]
pub fn probe(ctx: &Ctx, key: &[u8]) -> GetLine {
    let before = ctx.ts.expired_flushed();
    let hit = ctx
        .shared
        .engine
        .lock_key(key, ctx.ts)
        .item()
        .map(|it| (it.class_id(), it.value_len()));
    status(ctx.ts, before, hit)
}

/// memcached's `store_item_type` and command names.
fn store_names(mode: StoreMode, outcome: StoreOutcome) -> (&'static str, &'static str) {
    let status = match outcome {
        StoreOutcome::Stored { .. } => "stored",
        StoreOutcome::NotStored => "not_stored",
        StoreOutcome::Exists => "exists",
        StoreOutcome::NotFound => "not_found",
        StoreOutcome::TooLarge => "too_large",
        StoreOutcome::OutOfMemory => "no_memory",
    };
    let cmd = match mode {
        StoreMode::Add => "add",
        StoreMode::Set => "set",
        StoreMode::Replace => "replace",
        StoreMode::Append => "append",
        StoreMode::Prepend => "prepend",
        StoreMode::Cas => "cas",
    };
    (status, cmd)
}

/// A store as it is about to run: `fetchers` gets the line for the item
/// it will replace (memcached's store looks it up first).
pub struct Store<'a> {
    pub key: &'a [u8],
    pub mode: StoreMode,
    pub flags: u32,
    pub exptime: i64,
    pub bytes: usize,
    /// The item under the key before the store, when fetchers watch.
    before: Option<GetLine>,
}

impl<'a> Store<'a> {
    #[cold]
    #[inline(never)]
    pub fn start(
        ctx: &Ctx,
        key: &'a [u8],
        mode: StoreMode,
        flags: u32,
        exptime: i64,
        bytes: usize,
    ) -> Store<'a> {
        let before = ctx.shared.log.wants(FETCHERS).then(|| probe(ctx, key));
        Store {
            before,
            ..Store::new(key, mode, flags, exptime, bytes)
        }
    }

    /// A store whose lookup is reported elsewhere ([`lock_key`]).
    pub fn new(key: &'a [u8], mode: StoreMode, flags: u32, exptime: i64, bytes: usize) -> Self {
        Store {
            key,
            mode,
            flags,
            exptime,
            bytes,
            before: None,
        }
    }

    /// Reports the store's outcome: the lookup line, then memcached's
    /// `type=item_store` line, describing the stored item (an append's
    /// whole value and the old item's TTL) or, when nothing was stored,
    /// the item the request would have made.
    #[cold]
    #[inline(never)]
    pub fn done(self, ctx: &Ctx, outcome: StoreOutcome) {
        let sh = ctx.shared;
        let failed_alloc = matches!(outcome, StoreOutcome::OutOfMemory | StoreOutcome::TooLarge);
        if !failed_alloc {
            if let Some(g) = self.before {
                fetch(ctx, self.key, g);
            }
        }
        if sh.log.wants(MUTATIONS) {
            let stored = match outcome {
                StoreOutcome::Stored { .. } => sh
                    .engine
                    .lock_key(self.key, ctx.ts)
                    .item()
                    .map(|it| (it.class_id(), it.value_len(), it.exptime())),
                _ => None,
            };
            self.mutation(ctx, outcome, stored);
        }
        if failed_alloc && self.mode == StoreMode::Set {
            // memcached then looks the key up to drop its stale value.
            if let Some(g) = self.before {
                fetch(ctx, self.key, g);
            }
        }
    }
}

impl Store<'_> {
    /// The `type=item_store` line; `stored` is the class, value length and
    /// expiry time of the item now under the key when one was stored.
    #[cold]
    #[inline(never)]
    pub fn mutation(&self, ctx: &Ctx, outcome: StoreOutcome, stored: Option<(u32, usize, u32)>) {
        let e = &ctx.shared.engine;
        let now = e.clock().now();
        let ttl_of = |exp: u32| if exp == 0 { 0 } else { exp.wrapping_sub(now) };
        let (clsid, size, ttl) = match stored {
            Some((c, s, exp)) => (c, s, ttl_of(exp)),
            None => {
                let exp = if self.exptime == 0 {
                    0
                } else {
                    e.clock().realtime(self.exptime)
                };
                (
                    e.class_id_for(self.key.len(), self.flags, self.bytes),
                    self.bytes,
                    ttl_of(exp),
                )
            }
        };
        let (status, cmd) = store_names(self.mode, outcome);
        let line = StoreLine {
            status,
            cmd,
            ttl,
            clsid,
            size,
        };
        let fd = ctx.fd;
        ctx.shared.log.log(ctx.ring, MUTATIONS, |out| {
            lines::item_store(out, self.key, line, fd)
        });
    }
}

/// Locks `key` for a meta command, reporting the lookup to fetchers as
/// memcached's `do_item_get` does.
#[inline]
pub fn lock_key<'a>(ctx: &Ctx<'a>, key: &'a [u8]) -> KeySlot<'a> {
    if !ctx.shared.log.wants(FETCHERS) {
        return ctx.shared.engine.lock_key(key, ctx.ts);
    }
    lock_key_watched(ctx, key)
}

#[cold]
#[inline(never)]
fn lock_key_watched<'a>(ctx: &Ctx<'a>, key: &'a [u8]) -> KeySlot<'a> {
    let engine = &ctx.shared.engine;
    let before = ctx.ts.expired_flushed();
    let slot = engine.lock_key(key, ctx.ts);
    let hit = slot.item().map(|it| (it.class_id(), it.value_len()));
    fetch(ctx, key, status(ctx.ts, before, hit));
    slot
}

/// What [`lock_key`] reported, for a delete's `type=deleted` line.
#[cold]
#[inline(never)]
pub fn slot_line(slot: &KeySlot) -> GetLine {
    match slot.item() {
        Some(it) => GetLine {
            status: GetStatus::Found,
            clsid: it.class_id(),
            size: it.value_len(),
        },
        None => GetLine::MISS,
    }
}

/// Newer memcached's `type=deleted` line for a delete that found `g`.
#[cold]
#[inline(never)]
pub fn deleted(ctx: &Ctx, key: &[u8], cmd: &str, g: GetLine) {
    if g.status == GetStatus::Found && ctx.shared.log.wants(DELETIONS) {
        ctx.shared.log.log(ctx.ring, DELETIONS, |out| {
            lines::deleted(out, key, cmd, g.clsid, g.size)
        });
    }
}
