//! Counting every increment whatever the delivery, and what a concurrent
//! `set` does.

use super::*;
use proptest::prelude::*;

fn node(n: u8) -> NodeId {
    NodeId::new(n).unwrap()
}

fn v(ms: u64, n: u8) -> Version {
    Version::pack(ms, 0, node(n))
}

#[test]
fn concurrent_increments_on_two_nodes_are_all_counted() {
    // KeyDB #111: two masters incr the same key; both count.
    let mut a = CounterState::new(v(1, 1), 10);
    let mut b = a.clone();
    assert_eq!(a.incr(node(1), 5), 15);
    assert_eq!(b.incr(node(2), 7), 17);
    let a0 = a.clone();
    a.merge(&b);
    b.merge(&a0);
    assert_eq!(a, b);
    assert_eq!(a.value(), 22);
    // A replayed record counts once.
    a.absorb(v(1, 1), 10, node(2), 7, 0);
    assert_eq!(a.value(), 22);
}

#[test]
fn a_newer_set_resets_and_later_increments_count() {
    let mut a = CounterState::new(v(1, 1), 10);
    a.incr(node(1), 5);
    let set = CounterState::new(v(2, 2), 100);
    a.merge(&set);
    assert_eq!(a.value(), 100);
    // Increments on the old base, arriving late, are dropped.
    a.absorb(v(1, 1), 10, node(3), 50, 0);
    assert_eq!(a.value(), 100);
    a.incr(node(1), 1);
    assert_eq!(a.value(), 101);
}

#[test]
fn decr_floors_at_zero_locally_and_after_merging() {
    let mut a = CounterState::new(v(1, 1), 3);
    assert_eq!(a.decr(node(1), 10), 0);
    assert_eq!(a.totals(node(1)), (0, 3));
    let mut b = CounterState::new(v(1, 1), 3);
    b.decr(node(2), 2);
    a.merge(&b);
    // Both decrements together exceed the value: 0, not a wrap.
    assert_eq!(a.value(), 0);
}

#[test]
fn incr_wraps_as_memcached() {
    let mut a = CounterState::new(v(1, 1), u64::MAX);
    assert_eq!(a.incr(node(1), 2), 1);
    assert_eq!(a.decr(node(1), 5), 0);
}

#[derive(Clone, Debug)]
enum Op {
    Incr(u8, u64),
    Decr(u8, u64),
    Set(u64, u8, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u8..4, 0u64..1000).prop_map(|(n, d)| Op::Incr(n, d)),
        (1u8..4, 0u64..1000).prop_map(|(n, d)| Op::Decr(n, d)),
        (0u64..3, 1u8..4, 0u64..1000).prop_map(|(t, n, x)| Op::Set(t, n, x)),
    ]
}

fn state_after(ops: &[Op]) -> CounterState {
    let mut s = CounterState::new(v(0, 1), 0);
    for o in ops {
        match *o {
            Op::Incr(n, d) => {
                s.incr(node(n), d);
            }
            Op::Decr(n, d) => {
                s.decr(node(n), d);
            }
            Op::Set(t, n, x) => s.merge(&CounterState::new(v(t, n), x)),
        }
    }
    s
}

fn joined(a: &CounterState, b: &CounterState) -> CounterState {
    let mut r = a.clone();
    r.merge(b);
    r
}

proptest! {
    #[test]
    fn merge_is_commutative_associative_idempotent(
        x in prop::collection::vec(op(), 0..8),
        y in prop::collection::vec(op(), 0..8),
        z in prop::collection::vec(op(), 0..8),
    ) {
        let (a, b, c) = (state_after(&x), state_after(&y), state_after(&z));
        prop_assert_eq!(joined(&a, &b), joined(&b, &a));
        prop_assert_eq!(joined(&joined(&a, &b), &c), joined(&a, &joined(&b, &c)));
        prop_assert_eq!(joined(&a, &a), a);
    }

    /// Nodes incrementing one base concurrently, their records delivered
    /// in any order with repeats: the sum of every increment.
    #[test]
    fn every_increment_is_counted_in_any_order(
        base in 0u64..1000,
        incrs in prop::collection::vec((1u8..6, 0u64..1000), 1..20),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let b = v(1, 1);
        let mut replicas: Vec<CounterState> = (1..6).map(|_| CounterState::new(b, base)).collect();
        let mut records = Vec::new();
        for &(n, d) in &incrs {
            let r = &mut replicas[usize::from(n - 1)];
            r.incr(node(n), d);
            let (p, m) = r.totals(node(n));
            records.push((n, p, m));
        }
        let mut target = CounterState::new(b, base);
        let picks = order.iter().map(|i| i.index(records.len())).chain(0..records.len());
        for i in picks {
            let (n, p, m) = records[i];
            target.absorb(b, base, node(n), p, m);
        }
        let sum: u64 = incrs.iter().map(|&(_, d)| d).sum();
        prop_assert_eq!(target.value(), base + sum);
    }
}
