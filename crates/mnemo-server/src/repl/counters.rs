//! `incr`/`decr` under replication (docs/REPLICATION.md section 4): a
//! PN-counter per key on a last-writer-wins base, so increments made
//! concurrently on different nodes are all counted.
//!
//! The side table holds, per key that was counted under `--peer`, the
//! counter's state and the item version it last produced; an item whose
//! version is not that one was written since by something else (a set,
//! a delete, an eviction and a new write), so its entry is stale and the
//! next increment starts a new base from the item. The item's value in
//! the slabs is always the counter's value, so reads are unchanged.
//!
//! Lock order: a key's shard lock, then this table's mutex; never the
//! other way round.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use mnemo_engine::counter::CounterState;
use mnemo_engine::version::{NodeId, Version};
use mnemo_engine::{ArithOutcome, KeySlot, StoreMode, StoreOutcome};
use mnemo_protocol::repl::Record;
use parking_lot::Mutex;

use super::node::{ApplyError, Node};
use mnemo_engine::ApplyOutcome;

/// Keys tracked at most; past it the table starts over (the keys lose
/// only the concurrent-increment merge until counted again: each still
/// replicates as its newest state).
const MAX_KEYS: usize = 1 << 20;

struct Entry {
    state: CounterState,
    /// The item version this counter last wrote.
    last: u64,
    /// Per node, the version of its newest counted operation: what a full
    /// resync sends that node's totals under.
    nodes: Vec<(NodeId, u64)>,
}

impl Entry {
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
    pub contrib: Vec<Contribution>,
}

#[derive(Default)]
pub struct Counters {
    map: Mutex<HashMap<Box<[u8]>, Entry>>,
    /// Whether any key is tracked: every non-counter write forgets its
    /// key's counter, and must not take the table's lock for nothing.
    any: std::sync::atomic::AtomicBool,
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
    /// Drops `key`'s counter: a non-counter write or a delete is a new
    /// base (or none).
    pub fn forget(&self, key: &[u8]) {
        if !self.any.load(Relaxed) {
            return;
        }
        let mut m = self.map.lock();
        m.remove(key);
        self.any.store(!m.is_empty(), Relaxed);
    }

    /// For an item of version `item_cas`: the base version of the counter
    /// that wrote it, if a counter did.
    pub fn base_of(&self, key: &[u8], item_cas: u64) -> Option<u64> {
        if !self.any.load(Relaxed) {
            return None;
        }
        let m = self.map.lock();
        let e = m.get(key)?;
        (e.last == item_cas).then_some(e.state.base_version.0)
    }

    /// Keys tracked (for `stats replication`).
    pub fn tracked(&self) -> usize {
        self.map.lock().len()
    }

    /// `key`'s counter, if the item of version `item_cas` is its.
    pub fn snapshot(&self, key: &[u8], item_cas: u64) -> Option<Snapshot> {
        let m = self.map.lock();
        let e = m.get(key).filter(|e| e.last == item_cas)?;
        Some(Snapshot {
            base: e.state.base_version.0,
            base_value: e.state.base_value,
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
        let mut m = self.counters.map.lock();
        self.counters.any.store(true, Relaxed);
        if m.len() >= MAX_KEYS && !m.contains_key(key) {
            m.clear();
        }
        let e = m.entry(key.into()).or_insert_with(|| Entry {
            state: CounterState::new(Version(pre.cas), pre.value),
            last: pre.cas,
            nodes: Vec::new(),
        });
        if e.last != pre.cas {
            // Written since by something else: that write is the base.
            *e = Entry {
                state: CounterState::new(Version(pre.cas), pre.value),
                last: pre.cas,
                nodes: Vec::new(),
            };
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
        let mut m = self.counters.map.lock();
        self.counters.any.store(true, Relaxed);
        let tracked = match (&item, m.get(key)) {
            (Some(st), Some(e)) => e.last == st.cas,
            _ => false,
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
            if m.len() >= MAX_KEYS {
                m.clear();
            }
            m.insert(
                key.into(),
                Entry {
                    last: item.as_ref().map_or(0, |s| s.cas),
                    state,
                    nodes: Vec::new(),
                },
            );
        }
        let Some(e) = m.get_mut(key) else {
            return Ok(false);
        };
        let before = e.state.clone();
        e.state.absorb(Version(base), base_value, node, p, n);
        if e.state == before {
            drop(m);
            drop(slot);
            self.stats
                .conflicts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(false);
        }
        e.note(node, version);
        let new_version = item.as_ref().map_or(version, |s| s.cas.max(version));
        let (flags, exptime) = item.as_ref().map_or((0, 0), |s| (s.flags, s.exptime));
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
        let mut m = self.counters.map.lock();
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
}
