//! The replicated counter behind `incr`/`decr` under `--peer` (issue #13,
//! docs/REPLICATION.md section 4): a PN-counter per key, on top of a
//! last-writer-wins base.
//!
//! A `set` (any non-counter write) is a base; each node's increments and
//! decrements on that base are its own running totals. Merging keeps the
//! newer base whole and, on the same base, each node's larger totals, so
//! increments made concurrently on different nodes are all counted once
//! the nodes converge, and a duplicated or reordered record counts once.
//! A concurrent `set` is a reset: increments on an older base are
//! dropped once the newer base is seen.
//!
//! Pure; the replication module keeps one of these only for keys that
//! were counted under `--peer`.

use crate::version::{NodeId, Version};

/// One key's counter: its base and each node's totals on that base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterState {
    /// The write that set the value the deltas apply to.
    pub base_version: Version,
    pub base_value: u64,
    /// Per node, sorted by node, at most one entry each: total increments
    /// and total decrements, 128-bit so that 2^64 increments of 2^64 do
    /// not wrap a total (a wrapped total would lose to a smaller one).
    contrib: Vec<(NodeId, u128, u128)>,
}

impl CounterState {
    /// The counter a write of `value` at `version` starts.
    pub fn new(base_version: Version, base_value: u64) -> CounterState {
        CounterState {
            base_version,
            base_value,
            contrib: Vec::new(),
        }
    }

    /// The value clients see: base plus every increment minus every
    /// decrement, floored at 0 (memcached's `decr`), then modulo 2^64
    /// (memcached's `incr` wraps). Both are applied here, on the totals,
    /// so the order deltas arrived in does not matter.
    pub fn value(&self) -> u64 {
        let (mut up, mut down) = (u128::from(self.base_value), 0u128);
        for &(_, p, n) in &self.contrib {
            up = up.saturating_add(p);
            down = down.saturating_add(n);
        }
        // Truncation is the modulo.
        up.saturating_sub(down) as u64
    }

    /// Node `node`'s totals on the current base.
    pub fn totals(&self, node: NodeId) -> (u128, u128) {
        match self.contrib.binary_search_by_key(&node, |c| c.0) {
            Ok(i) => (self.contrib[i].1, self.contrib[i].2),
            Err(_) => (0, 0),
        }
    }

    fn entry(&mut self, node: NodeId) -> &mut (NodeId, u128, u128) {
        let i = match self.contrib.binary_search_by_key(&node, |c| c.0) {
            Ok(i) => i,
            Err(i) => {
                self.contrib.insert(i, (node, 0, 0));
                i
            }
        };
        &mut self.contrib[i]
    }

    /// A local `incr` on `node`: returns the new value, as memcached's
    /// `incr` would on the value this node sees.
    pub fn incr(&mut self, node: NodeId, delta: u64) -> u64 {
        let e = self.entry(node);
        e.1 = e.1.saturating_add(u128::from(delta));
        self.value()
    }

    /// A local `decr` on `node`: floors at 0 as memcached's does, by
    /// counting only the part of `delta` that the value this node sees
    /// can take.
    pub fn decr(&mut self, node: NodeId, delta: u64) -> u64 {
        let took = delta.min(self.value());
        let e = self.entry(node);
        e.2 = e.2.saturating_add(u128::from(took));
        self.value()
    }

    /// Takes in one node's totals on a base (a `COUNTER` record). The same
    /// as merging a state holding only those totals.
    pub fn absorb(&mut self, base: Version, base_value: u64, node: NodeId, p: u128, n: u128) {
        let mut other = CounterState::new(base, base_value);
        other.contrib.push((node, p, n));
        self.merge(&other);
    }

    /// Join: the newer base wins whole (with the greater base value on a
    /// forged tie, so the result is still the same everywhere); on the
    /// same base, each node's larger totals. Commutative, associative,
    /// idempotent.
    pub fn merge(&mut self, other: &CounterState) {
        let mine = (self.base_version, self.base_value);
        let theirs = (other.base_version, other.base_value);
        if theirs > mine {
            *self = other.clone();
            return;
        }
        if theirs < mine {
            return;
        }
        for &(node, p, n) in &other.contrib {
            let e = self.entry(node);
            e.1 = e.1.max(p);
            e.2 = e.2.max(n);
        }
    }
}

#[cfg(test)]
mod tests;
