//! [`Slots`]: a table of connections (or anything) addressed by [`Key`],
//! an index plus the generation of the slot at that index.
//!
//! Indices are reused through a free list so the table stays dense; the
//! generation changes each time a slot is freed, so a key kept after its
//! entry was removed (a late event on a mio token, a reply for a closed
//! client) finds nothing instead of the slot's next occupant.
//!
//! A key converts to a mio [`Token`] and back. Layout: index in bits 0..32,
//! generation (mod 2^28) in bits 32..60; the top 4 bits are always zero,
//! free for a caller to tag the kind of source (the proxy does) and never
//! equal to a `Token(usize::MAX)` waker.

use mio::Token;

const _: () = assert!(usize::BITS == 64, "slot keys pack into 64-bit mio tokens");

const INDEX_BITS: u32 = 32;
const GEN_BITS: u32 = 28;
const GEN_MASK: u32 = (1 << GEN_BITS) - 1;

/// Names one entry of a [`Slots`] table for as long as it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    index: u32,
    gen: u32,
}

impl Key {
    /// The slot's position, stable while the entry lives (e.g. for an
    /// io_uring fixed-file table sized like the slot table).
    pub fn index(self) -> usize {
        self.index as usize
    }

    pub fn to_usize(self) -> usize {
        ((self.gen as usize) << INDEX_BITS) | self.index as usize
    }

    /// The inverse of [`Key::to_usize`]; None for numbers no key packs to
    /// (tagged tokens must be untagged first).
    pub fn from_usize(v: usize) -> Option<Key> {
        let gen = v >> INDEX_BITS;
        if gen > GEN_MASK as usize {
            return None;
        }
        Some(Key {
            index: v as u32,
            gen: gen as u32,
        })
    }

    pub fn to_token(self) -> Token {
        Token(self.to_usize())
    }

    pub fn from_token(t: Token) -> Option<Key> {
        Key::from_usize(t.0)
    }
}

struct Slot<T> {
    gen: u32,
    value: Option<T>,
}

/// A generational slot table. See the module docs.
pub struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    live: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots::new()
    }
}

impl<T> Slots<T> {
    pub fn new() -> Self {
        Slots {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    /// The key the next [`Slots::insert`] returns, for registering a
    /// source under its token before the entry exists.
    pub fn vacant_key(&self) -> Key {
        match self.free.last() {
            Some(&i) => Key {
                index: i,
                gen: self.slots[i as usize].gen,
            },
            None => Key {
                index: self.slots.len() as u32,
                gen: 0,
            },
        }
    }

    /// Stores `v`, reusing a freed slot when there is one.
    pub fn insert(&mut self, v: T) -> Key {
        let key = self.vacant_key();
        match self.free.pop() {
            Some(i) => self.slots[i as usize].value = Some(v),
            None => {
                assert!(
                    self.slots.len() < u32::MAX as usize,
                    "slot table over 2^32 entries"
                );
                self.slots.push(Slot {
                    gen: 0,
                    value: Some(v),
                });
            }
        }
        self.live += 1;
        key
    }

    /// Removes the entry; its key (and every copy) goes stale.
    pub fn remove(&mut self, k: Key) -> Option<T> {
        let s = self.slots.get_mut(k.index as usize)?;
        if s.gen != k.gen {
            return None;
        }
        let v = s.value.take()?;
        s.gen = (s.gen + 1) & GEN_MASK;
        self.free.push(k.index);
        self.live -= 1;
        Some(v)
    }

    pub fn get(&self, k: Key) -> Option<&T> {
        let s = self.slots.get(k.index as usize)?;
        if s.gen != k.gen {
            return None;
        }
        s.value.as_ref()
    }

    pub fn get_mut(&mut self, k: Key) -> Option<&mut T> {
        let s = self.slots.get_mut(k.index as usize)?;
        if s.gen != k.gen {
            return None;
        }
        s.value.as_mut()
    }

    pub fn contains(&self, k: Key) -> bool {
        self.get(k).is_some()
    }

    /// The key of the live entry at `index`, if any.
    pub fn key_at(&self, index: usize) -> Option<Key> {
        let s = self.slots.get(index)?;
        s.value.as_ref().map(|_| Key {
            index: index as u32,
            gen: s.gen,
        })
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// One past the highest index ever used: bounds [`Key::index`].
    pub fn index_bound(&self) -> usize {
        self.slots.len()
    }

    /// The keys of all live entries, in index order; a snapshot, so the
    /// table may be changed while walking it.
    pub fn keys(&self) -> Vec<Key> {
        self.iter().map(|(k, _)| k).collect()
    }

    /// Live entries in index order.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.value.as_ref().map(|v| {
                (
                    Key {
                        index: i as u32,
                        gen: s.gen,
                    },
                    v,
                )
            })
        })
    }

    /// Live entries in index order, mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Key, &mut T)> {
        self.slots.iter_mut().enumerate().filter_map(|(i, s)| {
            let gen = s.gen;
            s.value.as_mut().map(|v| {
                (
                    Key {
                        index: i as u32,
                        gen,
                    },
                    v,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_keys_miss_after_reuse() {
        let mut s = Slots::new();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!(s.len(), 2);
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get(a), None);
        let c = s.insert("c");
        // Same index, new generation.
        assert_eq!(c.index(), a.index());
        assert_ne!(c, a);
        assert_eq!(s.get(a), None);
        assert_eq!(s.get_mut(a), None);
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get(c), Some(&"c"));
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn vacant_key_predicts_insert() {
        let mut s = Slots::new();
        let k0 = s.vacant_key();
        assert_eq!(s.insert(1), k0);
        let k1 = s.insert(2);
        s.remove(k0);
        let v = s.vacant_key();
        assert_eq!(s.insert(3), v);
        assert_eq!(v.index(), k0.index());
        assert!(s.contains(k1));
    }

    #[test]
    fn tokens_round_trip_and_leave_top_bits() {
        let mut s = Slots::new();
        let mut k = s.insert(0u8);
        // Wrap the generation past its 28 bits.
        for _ in 0..3 {
            s.remove(k);
            k = s.insert(0);
        }
        assert_eq!(Key::from_token(k.to_token()), Some(k));
        assert_eq!(k.to_usize() >> 60, 0);
        assert_eq!(Key::from_usize(usize::MAX), None);
        assert_eq!(Key::from_usize(1 << 62), None);
        let wrapped = Key {
            index: 5,
            gen: GEN_MASK,
        };
        assert_eq!(Key::from_usize(wrapped.to_usize()), Some(wrapped));
        let mut t = Slots::new();
        t.slots.push(Slot {
            gen: GEN_MASK,
            value: Some(1),
        });
        t.live = 1;
        let k = t.key_at(0).unwrap();
        t.remove(k);
        assert_eq!(t.vacant_key().gen, 0);
    }

    #[test]
    fn iterate_live_entries() {
        let mut s = Slots::new();
        let keys: Vec<Key> = (0..5).map(|i| s.insert(i)).collect();
        s.remove(keys[1]);
        s.remove(keys[3]);
        let got: Vec<i32> = s.iter().map(|(_, v)| *v).collect();
        assert_eq!(got, vec![0, 2, 4]);
        for (_, v) in s.iter_mut() {
            *v *= 10;
        }
        assert_eq!(s.keys(), vec![keys[0], keys[2], keys[4]]);
        assert_eq!(s.get(keys[4]), Some(&40));
        assert_eq!(s.key_at(1), None);
        assert_eq!(s.key_at(2), Some(keys[2]));
        assert_eq!(s.index_bound(), 5);
        assert!(!s.is_empty());
    }
}
