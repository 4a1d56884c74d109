//! `incr`/`decr` under replication (docs/REPLICATION.md section 4): a
//! PN-counter per key on a last-writer-wins base, so increments made
//! concurrently on different nodes are all counted.
//!
//! The side table holds, per key that was counted (or touched) under
//! `--peer`, the counter's state and the item version it last produced,
//! and the version of its newest TTL change (a touched plain item is a
//! counter no node has counted: its base is its value); an item whose
//! version is not that one was written since by something else (a set,
//! a delete, an eviction and a new write), so its entry is stale and the
//! next increment starts a new base from the item. The item's value in
//! the slabs is always the counter's value, so reads are unchanged.
//!
//! Lock order: a key's shard lock, then this table's mutex; never the
//! other way round.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

use mnemo_engine::counter::CounterState;
use mnemo_engine::version::{NodeId, Version};
use mnemo_engine::{ArithOutcome, KeySlot, StoreMode, StoreOutcome};
use mnemo_protocol::repl::Record;
use parking_lot::{Mutex, MutexGuard};

use super::node::{ApplyError, Node};
use mnemo_engine::ApplyOutcome;

/// Keys a shard tracks at most: 7/8 of 16,384, so that its hash table
/// never grows past 16,384 slots (with the keys, about 35 MB for the 16
/// shards, bounded). Past it a shard makes room (see
/// [`Shard::make_room`]): each key still replicates as its newest state.
const SHARD_CAP: usize = 14_336;
#[cfg(test)]
const MAX_KEYS: usize = SHARD_CAP * SHARDS;

struct Entry {
    state: CounterState,
    /// The item version this counter last wrote.
    last: u64,
    /// The version of the counter's expiry: its base's, or that of the
    /// newest TTL change (touch, gat, `T`) since, which replicates on its
    /// own (a TOUCH frame) so that the totals stay.
    ttl: u64,
    /// Per node, the version of its newest counted operation: what a full
    /// resync sends that node's totals under.
    nodes: Vec<(NodeId, u64)>,
    /// With `last` 0 (no item here: a TOUCH came before the write it was
    /// made on, or after an eviction), the absolute expiry the TTL change
    /// set, which a SET older than it arriving later keeps.
    exptime: u64,
}

impl Entry {
    /// A counter on `state`'s base whose item is at version `last`.
    fn new(state: CounterState, last: u64) -> Entry {
        Entry {
            ttl: state.base_version.0,
            state,
            last,
            nodes: Vec::new(),
            exptime: 0,
        }
    }

    fn note(&mut self, node: NodeId, version: u64) {
        match self.nodes.iter_mut().find(|n| n.0 == node) {
            Some(n) => n.1 = n.1.max(version),
            None => self.nodes.push((node, version)),
        }
    }
}

/// One node's totals, as a resync sends them.
pub struct Contribution {
    pub node: NodeId,
    pub version: u64,
    pub p: u128,
    pub n: u128,
}

/// A counter as a full resync sends it: its base, then each node's totals.
pub struct Snapshot {
    pub base: u64,
    pub base_value: u64,
    /// The version of the expiry, when a TTL change came after the base.
    pub ttl: Option<u64>,
    pub contrib: Vec<Contribution>,
}

/// The table's shards: every touch under `--peer` takes one, so the
/// workers must not all wait on one lock.
const SHARDS: usize = 16;

type Map = HashMap<Box<[u8]>, Entry>;

pub struct Counters {
    shards: Box<[Mutex<Map>]>,
    /// Keys tracked: every non-counter write forgets its key's counter,
    /// and must not take a lock for nothing when there are none.
    count: AtomicUsize,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            shards: (0..SHARDS).map(|_| Mutex::new(Map::new())).collect(),
            count: AtomicUsize::new(0),
        }
    }
}

/// One shard, locked; keeps [`Counters::count`] as entries come and go.
struct Shard<'a> {
    map: MutexGuard<'a, Map>,
    before: usize,
    count: &'a AtomicUsize,
}

impl std::ops::Deref for Shard<'_> {
    type Target = Map;
    fn deref(&self) -> &Map {
        &self.map
    }
}

impl std::ops::DerefMut for Shard<'_> {
    fn deref_mut(&mut self) -> &mut Map {
        &mut self.map
    }
}

impl Drop for Shard<'_> {
    fn drop(&mut self) {
        let now = self.map.len();
        if now > self.before {
            self.count.fetch_add(now - self.before, Relaxed);
        } else if now < self.before {
            self.count.fetch_sub(self.before - now, Relaxed);
        }
    }
}

impl Shard<'_> {
    /// Room for one more key. Past its share of the bound the shard
    /// drops its entries no node has counted (touched items, which lose
    /// only their expiry's version); if that frees less than a quarter of
    /// it, it starts over (counters lose only the merge until counted
    /// again). A quarter at least freed each time: amortised O(1).
    fn make_room(&mut self, key: &[u8]) {
        let cap = SHARD_CAP;
        if self.map.len() < cap || self.map.contains_key(key) {
            return;
        }
        self.map.retain(|_, e| !e.nodes.is_empty());
        if self.map.len() > cap - cap / 4 {
            self.map.clear();
        }
    }

    /// `key`'s item of version `cas` takes `ttl` as its expiry's version,
    /// unless it has one as new; whether it did. A key not tracked yet
    /// becomes a counter on its item as base, whose number `number`
    /// reads (only then: it copies the value).
    fn take_ttl(&mut self, key: &[u8], cas: u64, ttl: u64, number: impl FnOnce() -> u64) -> bool {
        if let Some(e) = self.map.get_mut(key).filter(|e| e.last == cas) {
            if e.ttl >= ttl {
                return false;
            }
            e.ttl = ttl;
            return true;
        }
        self.make_room(key);
        let mut e = Entry::new(CounterState::new(Version(cas), number()), cas);
        e.ttl = ttl;
        self.map.insert(key.into(), e);
        true
    }
}

/// The number the item under `slot` holds as a counter's base (0 if it
/// is not one).
fn item_number(slot: &KeySlot<'_>) -> u64 {
    let mut v = Vec::new();
    if let Some(it) = slot.item() {
        it.write_value(&mut v);
    }
    parse(&v).unwrap_or(0)
}

/// A counter's value as text, as memcached stores it.
fn digits(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// memcached's reading of a counter: digits, then anything after a space
/// ignored (incr pads in place with spaces).
fn parse(v: &[u8]) -> Option<u64> {
    let end = v.iter().position(|&b| b == b' ').unwrap_or(v.len());
    let d = &v[..end];
    if d.is_empty() || d.len() > 20 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    d.iter().try_fold(0u64, |a, &b| {
        a.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

impl Counters {
    /// `key`'s shard, locked.
    fn lock(&self, key: &[u8]) -> Shard<'_> {
        let map = self.shards[super::shard_of(key, SHARDS)].lock();
        Shard {
            before: map.len(),
            map,
            count: &self.count,
        }
    }

    /// Whether any key is tracked.
    fn any(&self) -> bool {
        self.count.load(Relaxed) != 0
    }

    /// Drops `key`'s counter: a non-counter write or a delete is a new
    /// base (or none).
    pub fn forget(&self, key: &[u8]) {
        if !self.any() {
            return;
        }
        let mut m = self.lock(key);
        m.remove(key);
    }

    /// A peer's write (SET or DELETE) at `version` replaced `key`'s item:
    /// drops its counter, but not a TTL change kept for a newer write yet
    /// to arrive (see [`Counters::early_ttl`]).
    pub fn superseded(&self, key: &[u8], version: u64) {
        if !self.any() {
            return;
        }
        let mut m = self.lock(key);
        if m.get(key)
            .is_some_and(|e| !(e.last == 0 && e.state.base_version.0 > version))
        {
            m.remove(key);
        }
    }

    /// For an item of version `item_cas`: the base version of the counter
    /// that wrote it, if a counter did.
    pub fn base_of(&self, key: &[u8], item_cas: u64) -> Option<u64> {
        if !self.any() {
            return None;
        }
        let m = self.lock(key);
        let e = m.get(key)?;
        (e.last == item_cas).then_some(e.state.base_version.0)
    }

    /// A TTL change (touch, gat, `T`) of the item under `slot` drew
    /// version `ttl`. The item's CAS stays (the value did not change, and
    /// memcached's touch leaves it too); the entry keeps `ttl` as the
    /// expiry's version, and the change replicates on its own (a TOUCH
    /// frame), so that the value, or a counter's totals, are never
    /// rewritten by it.
    pub fn touch(&self, slot: &KeySlot<'_>, key: &[u8], ttl: u64) {
        let Some(cas) = slot.item().map(|i| i.cas()) else {
            return;
        };
        self.lock(key).take_ttl(key, cas, ttl, || item_number(slot));
    }

    /// For a peer's SET at `version`: the TTL change made on that very
    /// write that came before it (a TOUCH whose base had not arrived),
    /// as its version and absolute expiry.
    pub fn early_ttl(&self, key: &[u8], version: u64) -> Option<(u64, u64)> {
        if !self.any() {
            return None;
        }
        let m = self.lock(key);
        let e = m.get(key)?;
        (e.last == 0 && e.state.base_version.0 == version && e.ttl > version)
            .then_some((e.ttl, e.exptime))
    }

    /// After a SET at `version` took the expiry of a TTL change `ttl`
    /// made on it (see [`Counters::early_ttl`]): the item's entry.
    pub fn rebase(&self, key: &[u8], version: u64, value: &[u8], ttl: u64) {
        let mut m = self.lock(key);
        m.make_room(key);
        let state = CounterState::new(Version(version), parse(value).unwrap_or(0));
        let mut e = Entry::new(state, version);
        e.ttl = ttl;
        m.insert(key.into(), e);
    }

    /// For the item of version `cas`: the version of its value's newest
    /// TTL change and the value's version (a counter's base), if a TTL
    /// change came after the value: a client's touch, to replicate as a
    /// TOUCH frame.
    pub fn touched(&self, key: &[u8], cas: u64) -> Option<(u64, u64)> {
        if !self.any() {
            return None;
        }
        let m = self.lock(key);
        let e = m.get(key).filter(|e| e.last == cas)?;
        let base = e.state.base_version.0;
        (e.ttl > base).then_some((e.ttl, base))
    }

    /// Keys tracked (for `stats replication`).
    pub fn tracked(&self) -> usize {
        self.count.load(Relaxed)
    }

    /// `key`'s counter, if the item of version `item_cas` is its.
    pub fn snapshot(&self, key: &[u8], item_cas: u64) -> Option<Snapshot> {
        let m = self.lock(key);
        let e = m.get(key).filter(|e| e.last == item_cas)?;
        Some(Snapshot {
            base: e.state.base_version.0,
            base_value: e.state.base_value,
            ttl: (e.ttl > e.state.base_version.0).then_some(e.ttl),
            contrib: e
                .nodes
                .iter()
                .map(|&(node, version)| {
                    let (p, n) = e.state.totals(node);
                    Contribution {
                        node,
                        version,
                        p,
                        n,
                    }
                })
                .collect(),
        })
    }
}

/// What an increment saw before it ran: the item's version and number.
pub struct Pre {
    cas: u64,
    value: u64,
}

impl Node {
    /// Before a client's incr/decr, under the key's lock.
    pub fn counter_pre(&self, slot: &KeySlot<'_>) -> Option<Pre> {
        let it = slot.item()?;
        let mut v = Vec::new();
        it.write_value(&mut v);
        Some(Pre {
            cas: it.cas(),
            value: parse(&v)?,
        })
    }

    /// After a client's incr/decr, still under the key's lock: counts the
    /// delta on the counter and records this node's totals.
    pub fn counter_post(
        &self,
        slot: &mut KeySlot<'_>,
        key: &[u8],
        incr: bool,
        delta: u64,
        pre: Option<Pre>,
        outcome: ArithOutcome,
    ) {
        let (ArithOutcome::Value(got), Some(pre)) = (outcome, pre) else {
            return;
        };
        let Some(new_cas) = slot.item().map(|i| i.cas()) else {
            return;
        };
        // memcached's in-place decr pads a shorter number with spaces, and
        // whether it shrinks in place depends on this node's memory (a
        // pinned item is copied). Peers compute the value from the
        // counter, so under replication the item holds the bare digits:
        // the same bytes under the same version everywhere.
        let mut value = Vec::new();
        if let Some(st) = self.read_item(slot, &mut value) {
            if value.last() == Some(&b' ') {
                let mut buf = [0u8; 20];
                let exp = i64::try_from(st.exptime).unwrap_or(i64::MAX);
                let text = digits(got, &mut buf);
                let _ = slot.store(StoreMode::Set, st.flags, exp, text, 0, Some(new_cas));
            }
        }
        let me = self.id();
        let mut m = self.counters.lock(key);
        m.make_room(key);
        let e = m
            .entry(key.into())
            .or_insert_with(|| Entry::new(CounterState::new(Version(pre.cas), pre.value), pre.cas));
        if e.last != pre.cas {
            // Written since by something else: that write is the base.
            *e = Entry::new(CounterState::new(Version(pre.cas), pre.value), pre.cas);
        }
        let mine = if incr {
            e.state.incr(me, delta)
        } else {
            e.state.decr(me, delta)
        };
        if mine != got {
            // The engine and the counter disagree (cannot happen while
            // both follow memcached's rules); the item's state wins as a
            // plain write rather than a wrong delta going out.
            m.remove(key);
            drop(m);
            self.log_item(slot, key);
            return;
        }
        e.last = new_cas;
        e.note(me, new_cas);
        let (p, n) = e.state.totals(me);
        let rec = Record::Counter {
            origin: me.get(),
            version: new_cas,
            key,
            base: e.state.base_version.0,
            base_value: e.state.base_value,
            p,
            n,
        };
        drop(m);
        self.log(&rec);
    }

    /// Logs the item under `slot` as a SET.
    fn log_item(&self, slot: &KeySlot<'_>, key: &[u8]) {
        let mut value = Vec::new();
        if let Some(st) = self.read_item(slot, &mut value) {
            self.log(&Record::Set {
                origin: self.id().get(),
                version: st.cas,
                key,
                flags: st.flags,
                exptime: st.exptime,
                value: &value,
            });
        }
    }

    /// A peer's TOUCH record (its version already observed): the expiry
    /// of the value written at `base`, last writer wins by version; the
    /// value, a counter's totals and the CAS are left alone. Held over a
    /// newer value: nothing (a write resets the expiry). Over an older
    /// value or none, the write it was made on may still be on its way by
    /// another path: the side table keeps it for that write (see
    /// [`Counters::early_ttl`]). Returns whether it was news (and goes on
    /// to this node's peers).
    pub(super) fn apply_touch(
        &self,
        key: &[u8],
        base: u64,
        version: u64,
        exptime: u64,
    ) -> Result<bool, ApplyError> {
        if base == 0 || version <= base || self.tombs.get(key).is_some_and(|t| t.0 >= base) {
            // Made on a value deleted since (or a malformed frame).
            return Ok(false);
        }
        let slot = self.engine().lock_key(key, self.ts());
        let cas = slot.item().map_or(0, |i| i.cas());
        let mut m = self.counters.lock(key);
        // The version of the value held (a counter's base).
        let held = match m.get(key).filter(|e| e.last == cas && cas != 0) {
            Some(e) => e.state.base_version.0,
            None => cas,
        };
        if held > base {
            return Ok(false);
        }
        if held == base {
            if !m.take_ttl(key, cas, version, || item_number(&slot)) {
                return Ok(false);
            }
            drop(m);
            slot.set_exptime(i64::try_from(exptime).unwrap_or(i64::MAX));
            return Ok(true);
        }
        // Early: kept for the write at `base`.
        match m
            .get_mut(key)
            .filter(|e| e.last == 0 && e.state.base_version.0 == base)
        {
            Some(e) if e.ttl >= version => return Ok(false),
            Some(e) => {
                e.ttl = version;
                e.exptime = exptime;
            }
            None => {
                m.make_room(key);
                let mut e = Entry::new(CounterState::new(Version(base), 0), 0);
                e.ttl = version;
                e.exptime = exptime;
                m.insert(key.into(), e);
            }
        }
        Ok(true)
    }

    /// A peer's COUNTER record (its version already observed).
    pub(super) fn apply_counter(&self, rec: &Record<'_>) -> Result<bool, ApplyError> {
        let Record::Counter {
            origin,
            version,
            key,
            base,
            base_value,
            p,
            n,
        } = *rec
        else {
            return Ok(false);
        };
        let Some(node) = NodeId::new(origin) else {
            return Ok(false);
        };
        if self.tombs.get(key).is_some_and(|t| t.0 >= base) {
            // The base was deleted after it was written.
            self.stats
                .conflicts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(false);
        }
        let mut value = Vec::new();
        let mut slot = self.engine().lock_key(key, self.ts());
        let item = self.read_item(&slot, &mut value);
        let mut m = self.counters.lock(key);
        let tracked = match (&item, m.get(key)) {
            (Some(st), Some(e)) => e.last == st.cas,
            _ => false,
        };
        // A TTL change that came before the counter's item (section 2).
        let ghost = match (&item, m.get(key)) {
            (None, Some(e)) if e.last == 0 && e.state.base_version.0 == base && e.ttl > base => {
                Some((e.ttl, e.exptime))
            }
            _ => None,
        };
        if !tracked {
            let state = match &item {
                Some(st) => match parse(&value) {
                    Some(v) => CounterState::new(Version(st.cas), v),
                    // Not a number here: a newer non-numeric write beats
                    // the record, an older one is replaced by its base.
                    None => CounterState::new(Version(st.cas), 0),
                },
                None => CounterState::new(Version(base), base_value),
            };
            m.make_room(key);
            let last = item.as_ref().map_or(0, |s| s.cas);
            let mut e = Entry::new(state, last);
            if let Some((ttl, _)) = ghost {
                e.ttl = ttl;
            }
            m.insert(key.into(), e);
        }
        let Some(e) = m.get_mut(key) else {
            return Ok(false);
        };
        let before = e.state.clone();
        e.state.absorb(Version(base), base_value, node, p, n);
        // An operation that moved no total (`incr` by 0) still gave the
        // item its version where it was made: every node on the same
        // base takes it, so that all end with the same CAS.
        let later =
            e.state.base_version.0 == base && item.as_ref().is_some_and(|s| version > s.cas);
        if e.state == before && !later {
            drop(m);
            drop(slot);
            self.stats
                .conflicts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(false);
        }
        e.note(node, version);
        let new_version = item.as_ref().map_or(version, |s| s.cas.max(version));
        let (flags, exptime) = item
            .as_ref()
            .map_or((0, ghost.map_or(0, |g| g.1)), |s| (s.flags, s.exptime));
        let mut buf = [0u8; 20];
        let text = digits(e.state.value(), &mut buf);
        let exp = i64::try_from(exptime).unwrap_or(i64::MAX);
        // The counters lock ranks below the key's lock, and the segment
        // engine's store lets go of the key's lock while it makes room
        // (evicting locks other keys) and takes it again: holding the
        // counters lock across it deadlocked against a client's incr,
        // which holds its key and waits for the counters.
        drop(m);
        let stored = slot.store(StoreMode::Set, flags, exp, text, 0, Some(new_version));
        let mut m = self.counters.lock(key);
        match stored {
            StoreOutcome::Stored { .. } => {
                if let Some(e) = m.get_mut(key) {
                    e.last = new_version;
                }
            }
            StoreOutcome::OutOfMemory => {
                m.remove(key);
                return Err(ApplyError::Engine(ApplyOutcome::OutOfMemory));
            }
            _ => {
                m.remove(key);
                return Err(ApplyError::Engine(ApplyOutcome::TooLarge));
            }
        }
        drop(m);
        drop(slot);
        self.tombs.supersede(key, Version(base));
        self.log(rec);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_text_round_trips_as_memcached_writes_it() {
        let mut b = [0u8; 20];
        assert_eq!(digits(0, &mut b), b"0");
        assert_eq!(digits(u64::MAX, &mut b), b"18446744073709551615");
        assert_eq!(parse(b"42   "), Some(42));
        assert_eq!(parse(b"18446744073709551616"), None);
        assert_eq!(parse(b"x"), None);
        assert_eq!(parse(b""), None);
    }

    fn counted(c: &Counters, key: &[u8], node: NodeId) {
        let mut m = c.lock(key);
        m.make_room(key);
        let mut e = Entry::new(CounterState::new(Version(1), 0), 5);
        e.note(node, 5);
        m.insert(key.into(), e);
    }

    /// Touches of many keys do not push counters out of the table: a
    /// full shard drops its touched items first, and the table stays
    /// within its bound.
    #[test]
    fn a_full_shard_drops_touched_items_before_counters() {
        let c = Counters::default();
        let node = NodeId::new(1).unwrap();
        for i in 0..1000u32 {
            counted(&c, format!("c{i}").as_bytes(), node);
        }
        for i in 0..2 * MAX_KEYS as u32 {
            let key = format!("t{i}");
            c.lock(key.as_bytes()).take_ttl(key.as_bytes(), 7, 9, || 0);
            assert!(c.tracked() <= MAX_KEYS);
        }
        for i in 0..1000u32 {
            assert_eq!(c.base_of(format!("c{i}").as_bytes(), 5), Some(1), "c{i}");
        }
        // The latest touches are still known.
        assert_eq!(
            c.touched(format!("t{}", 2 * MAX_KEYS - 1).as_bytes(), 7),
            Some((9, 7))
        );
    }

    /// Counters alone past the bound: shards start over, the table stays
    /// within it.
    #[test]
    fn counters_past_the_bound_start_their_shard_over() {
        let c = Counters::default();
        let node = NodeId::new(1).unwrap();
        for i in 0..MAX_KEYS as u32 + MAX_KEYS as u32 / 2 {
            counted(&c, format!("c{i}").as_bytes(), node);
            assert!(c.tracked() <= MAX_KEYS);
        }
        assert!(c.tracked() > 0);
    }
}
