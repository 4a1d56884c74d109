//! The clock's monotonicity under any wall clock, and the merge rule's
//! lattice laws, which are what make replicas converge.

use super::*;
use proptest::prelude::*;

const T0: u64 = EPOCH_UNIX_MS + 1_000_000;

fn node(n: u8) -> NodeId {
    NodeId::new(n).unwrap()
}

#[test]
fn node_zero_is_refused() {
    assert_eq!(NodeId::new(0), None);
    assert_eq!(Version(0x1234_5600).node(), None);
}

#[test]
fn pack_round_trips_and_orders_by_time_then_counter_then_node() {
    let v = Version::pack(123_456, 789, node(42));
    assert_eq!(
        (v.ms(), v.counter(), v.node()),
        (123_456, 789, Some(node(42)))
    );
    assert!(Version::pack(2, 0, node(1)) > Version::pack(1, COUNTER_MAX, node(255)));
    assert!(Version::pack(1, 2, node(1)) > Version::pack(1, 1, node(255)));
    assert!(Version::pack(1, 1, node(2)) > Version::pack(1, 1, node(1)));
}

#[test]
fn draws_follow_the_wall_clock_and_restart_the_counter() {
    let c = Hlc::new(node(3), Version(0));
    let a = c.next(T0);
    assert_eq!(
        (a.ms(), a.counter(), a.node()),
        (1_000_000, 0, Some(node(3)))
    );
    let b = c.next(T0);
    assert_eq!((b.ms(), b.counter()), (1_000_000, 1));
    let d = c.next(T0 + 5);
    assert_eq!((d.ms(), d.counter()), (1_000_005, 0));
}

#[test]
fn wall_clock_going_backwards_never_moves_versions_back() {
    let c = Hlc::new(node(1), Version(0));
    let a = c.next(T0 + 10_000);
    let b = c.next(T0);
    assert!(b > a);
    assert_eq!(b.ms(), a.ms());
}

#[test]
fn a_full_counter_runs_the_clock_ahead() {
    let c = Hlc::new(node(1), Version::pack(1_000_000, COUNTER_MAX - 1, node(1)));
    assert_eq!(c.next(T0).counter(), COUNTER_MAX);
    let v = c.next(T0);
    assert_eq!((v.ms(), v.counter()), (1_000_001, 0));
}

#[test]
fn a_local_draw_after_observing_a_peer_is_newer_even_with_our_clock_behind() {
    let c = Hlc::new(node(1), Version(0));
    // The peer's clock is 30 s ahead and its node id higher.
    let remote = Version::pack(1_030_000, 7, node(200));
    c.observe(remote, T0).unwrap();
    let v = c.next(T0);
    assert!(v > remote);
    assert_eq!(v.node(), Some(node(1)));
}

#[test]
fn a_version_too_far_ahead_is_refused_and_changes_nothing() {
    let c = Hlc::new(node(1), Version(0));
    let before = c.next(T0);
    let far = Version::pack(1_000_000 + MAX_DRIFT_MS + 1, 0, node(2));
    assert_eq!(
        c.observe(far, T0),
        Err(SkewError {
            ahead_ms: MAX_DRIFT_MS + 1
        })
    );
    assert_eq!(c.last(), before);
    let edge = Version::pack(1_000_000 + MAX_DRIFT_MS, 0, node(2));
    assert!(c.observe(edge, T0).is_ok());
}

#[test]
fn resuming_draws_above_the_saved_version() {
    let saved = Version::pack(5_000_000, 9, node(4));
    let c = Hlc::new(node(4), saved);
    assert!(c.next(T0) > saved);
}

#[test]
fn concurrent_draws_are_unique() {
    let c = Hlc::new(node(9), Version(0));
    let all: Vec<Vec<Version>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..5_000).map(|_| c.next(T0)).collect::<Vec<_>>()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut flat: Vec<Version> = all.concat();
    let n = flat.len();
    flat.sort();
    flat.dedup();
    assert_eq!(flat.len(), n);
}

#[test]
fn tombstones_and_barriers() {
    let v = Version::pack(10, 0, node(1));
    let w = Version::pack(11, 0, node(2));
    let set = Entry {
        version: v,
        tombstone: false,
        expiry: 0,
        flags: 0,
        value: b"x",
    };
    let del = Entry::tombstone(w);
    // A delete after the set wins, and the set arriving late does not
    // bring the key back.
    assert_eq!(merge(set, del), del);
    assert!(!replaces(&set, Some(&del)));
    assert!(replaces(&set, None));
    assert!(set.flushed_by(w));
    assert!(!del.flushed_by(w));
}

fn entry() -> impl Strategy<Value = (u64, bool, u64, u32, Vec<u8>)> {
    // A small domain so that equal versions with different contents, the
    // case the total order exists for, come up often.
    (
        0u64..6,
        any::<bool>(),
        0u64..3,
        0u32..3,
        prop::collection::vec(0u8..3, 0..3),
    )
}

fn as_entry(t: &(u64, bool, u64, u32, Vec<u8>)) -> Entry<'_> {
    Entry {
        version: Version(t.0),
        tombstone: t.1,
        expiry: t.2,
        flags: t.3,
        value: &t.4,
    }
}

proptest! {
    #[test]
    fn merge_is_commutative_associative_idempotent(a in entry(), b in entry(), c in entry()) {
        let (a, b, c) = (as_entry(&a), as_entry(&b), as_entry(&c));
        prop_assert_eq!(merge(a, b), merge(b, a));
        prop_assert_eq!(merge(merge(a, b), c), merge(a, merge(b, c)));
        prop_assert_eq!(merge(a, a), a);
    }

    /// Replicas applying the same writes in any order, each with
    /// duplicates, and applying only what `replaces` accepts, end equal.
    #[test]
    fn any_delivery_order_converges(
        writes in prop::collection::vec(entry(), 1..12),
        order in prop::collection::vec(any::<prop::sample::Index>(), 1..30),
    ) {
        let entries: Vec<Entry<'_>> = writes.iter().map(as_entry).collect();
        let mut in_order: Option<Entry<'_>> = None;
        for e in &entries {
            if replaces(e, in_order.as_ref()) {
                in_order = Some(*e);
            }
        }
        let mut shuffled: Option<Entry<'_>> = None;
        for i in order.iter().map(|i| i.index(entries.len())).chain(0..entries.len()).rev() {
            let e = &entries[i];
            if replaces(e, shuffled.as_ref()) {
                shuffled = Some(*e);
            }
        }
        prop_assert_eq!(in_order, shuffled);
    }

    #[test]
    fn draws_are_strictly_increasing_whatever_the_wall_clock(
        walls in prop::collection::vec(0u64..4_000, 1..200),
        seen in prop::collection::vec((0u64..4_000, 0u64..COUNTER_MAX, 1u8..=255), 0..20),
    ) {
        let c = Hlc::new(node(7), Version(0));
        let mut prev = Version(0);
        let mut peers = seen.iter();
        for (i, w) in walls.iter().enumerate() {
            if i % 10 == 0 {
                if let Some(&(ms, n, id)) = peers.next() {
                    let r = Version::pack(ms, n, node(id));
                    // Every wall time here is well within the drift limit.
                    prop_assert!(c.observe(r, EPOCH_UNIX_MS + w).is_ok());
                    prop_assert!(c.last().logical() >= r.logical());
                    let v = c.next(EPOCH_UNIX_MS + w);
                    prop_assert!(v > r);
                    prop_assert!(v > prev);
                    prev = v;
                }
            }
            let v = c.next(EPOCH_UNIX_MS + w);
            prop_assert!(v > prev);
            prop_assert_eq!(v.node(), Some(node(7)));
            prop_assert!(v.ms() >= *w);
            prev = v;
        }
    }
}
