//! Three nodes joined by hand-driven links (reads of each other's
//! backlogs, cut at arbitrary bytes, interleaved with writes anywhere):
//! after the links drain, every node holds the newest write of every key,
//! deletes included, in a mesh, a one-way ring and a chain.

use super::*;
use mnemo_engine::{Config, GetMode};
use mnemo_protocol::repl::{decode, Decoded};
use proptest::prelude::*;

const KEYS: u8 = 5;

fn nodes() -> Vec<Node> {
    (1..=3u8)
        .map(|i| {
            let e = Engine::new(Config::default()).unwrap();
            Node::new(
                NodeId::new(i).unwrap(),
                e,
                u64::from(i),
                1 << 20,
                3_600_000,
                1 << 20,
            )
            .unwrap()
        })
        .collect()
}

/// `to` pulls from `from`'s backlog.
struct Link {
    from: usize,
    to: usize,
    offset: u64,
    pending: Vec<u8>,
}

impl Link {
    fn new(from: usize, to: usize) -> Link {
        Link {
            from,
            to,
            offset: 0,
            pending: Vec::new(),
        }
    }

    /// Moves up to `max` bytes and applies the whole frames among them;
    /// false if there was nothing to move.
    fn pump(&mut self, nodes: &[Node], max: usize) -> bool {
        let n = nodes[self.from]
            .backlog()
            .lock()
            .read(self.offset, max, &mut self.pending)
            .expect("backlog large enough for the test");
        self.offset += n as u64;
        while let Decoded::Frame(rec, used) =
            decode(&self.pending, 1 << 20).expect("our own frames decode")
        {
            nodes[self.to].apply(&rec).expect("applies");
            self.pending.drain(..used);
        }
        n > 0
    }
}

fn state(n: &Node, key: &[u8]) -> Option<(Vec<u8>, u64)> {
    let ts = n.engine().new_thread_stats();
    n.engine().get(key, GetMode::Get, &ts, |i| {
        let mut v = Vec::new();
        i.write_value(&mut v);
        (v, i.cas())
    })
}

/// The item's absolute expiry (Unix seconds, 0 for never), as frames
/// carry it.
fn expiry(n: &Node, key: &[u8]) -> Option<u64> {
    let ts = n.engine().new_thread_stats();
    let rel = n.engine().get(key, GetMode::Get, &ts, |i| i.exptime())?;
    Some(n.unix_exptime(rel))
}

/// A client's `incr` of `key` by `d` on `n`, as the protocol makes it.
fn incr(n: &Node, key: &[u8], d: u64) {
    let e = n.engine();
    let ts = e.new_thread_stats();
    let mut slot = e.lock_key(key, &ts);
    let pre = n.counter_pre(&slot);
    let o = slot.arith(true, d, None);
    n.counter_post(&mut slot, key, true, d, pre, o);
}

#[derive(Clone, Debug)]
enum Step {
    Set(usize, u8, u8),
    Delete(usize, u8),
    /// touch with a TTL of 1000 s plus this.
    Touch(usize, u8, u16),
    Pump(usize, usize),
}

fn step(links: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..3, 0..KEYS, any::<u8>()).prop_map(|(n, k, v)| Step::Set(n, k, v)),
        (0usize..3, 0..KEYS).prop_map(|(n, k)| Step::Delete(n, k)),
        (0usize..3, 0..KEYS, any::<u16>()).prop_map(|(n, k, t)| Step::Touch(n, k, t)),
        (0..links, 1usize..80).prop_map(|(l, m)| Step::Pump(l, m)),
        (0..links, 1usize..80).prop_map(|(l, m)| Step::Pump(l, m)),
    ]
}

fn run(mut links: Vec<Link>, steps: &[Step]) -> Result<(), TestCaseError> {
    let nodes = nodes();
    // Every write made anywhere: (version, value or None for a delete).
    let mut writes: Vec<Vec<(Version, Option<Vec<u8>>)>> = vec![Vec::new(); KEYS as usize];
    // Every TTL change: (the version of the value it was made on, its
    // own version, the absolute expiry it set).
    let mut touches: Vec<Vec<(u64, u64, u64)>> = vec![Vec::new(); KEYS as usize];
    for s in steps {
        match *s {
            Step::Touch(n, k, t) => {
                let key = [b'k', k];
                let ts = nodes[n].engine().new_thread_stats();
                if nodes[n].engine().touch(&key, 1000 + i64::from(t), &ts) {
                    nodes[n].record_state(&key, true, &ts);
                    let (_, cas) = state(&nodes[n], &key).expect("touched");
                    let (ttl, base) = nodes[n].counters.touched(&key, cas).expect("recorded");
                    let exp = expiry(&nodes[n], &key).expect("touched");
                    touches[usize::from(k)].push((base, ttl, exp));
                }
            }
            Step::Set(n, k, v) => {
                let value = vec![b'a' + v % 26; 1 + usize::from(v % 7)];
                let ver = nodes[n]
                    .local_set(&[b'k', k], 0, 0, &value)
                    .expect("stored");
                writes[usize::from(k)].push((ver, Some(value)));
            }
            Step::Delete(n, k) => {
                if let Some(ver) = nodes[n].local_delete(&[b'k', k]) {
                    writes[usize::from(k)].push((ver, None));
                }
            }
            Step::Pump(l, max) => {
                links[l].pump(&nodes, max);
            }
        }
    }
    // Heal: drain until nothing moves.
    while links
        .iter_mut()
        .fold(false, |moved, l| l.pump(&nodes, usize::MAX) | moved)
    {}
    for k in 0..KEYS {
        let key = [b'k', k];
        let newest = writes[usize::from(k)].iter().max_by_key(|w| w.0);
        let want = newest.and_then(|(v, val)| val.clone().map(|x| (x, v.0)));
        // The expiry: the newest TTL change made on the surviving write,
        // else the write's own (none).
        let want_exp = want.as_ref().map(|(_, v)| {
            touches[usize::from(k)]
                .iter()
                .filter(|t| t.0 == *v)
                .max_by_key(|t| t.1)
                .map_or(0, |t| t.2)
        });
        for n in &nodes {
            prop_assert_eq!(state(n, &key), want.clone(), "node {:?} key {}", n.id(), k);
            prop_assert_eq!(
                expiry(n, &key),
                want_exp,
                "expiry: node {:?} key {}",
                n.id(),
                k
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn a_full_mesh_converges(steps in prop::collection::vec(step(6), 0..60)) {
        let links = vec![
            Link::new(0, 1), Link::new(0, 2), Link::new(1, 0),
            Link::new(1, 2), Link::new(2, 0), Link::new(2, 1),
        ];
        run(links, &steps)?;
    }

    #[test]
    fn a_one_way_ring_converges(steps in prop::collection::vec(step(3), 0..60)) {
        run(vec![Link::new(0, 1), Link::new(1, 2), Link::new(2, 0)], &steps)?;
    }

    #[test]
    fn a_chain_converges(steps in prop::collection::vec(step(4), 0..60)) {
        let links = vec![Link::new(0, 1), Link::new(1, 0), Link::new(1, 2), Link::new(2, 1)];
        run(links, &steps)?;
    }
}

#[test]
fn a_write_stops_where_it_is_known() {
    let nodes = nodes();
    nodes[0].local_set(b"k", 0, 0, b"v").unwrap();
    let mut links = [Link::new(0, 1), Link::new(1, 2), Link::new(2, 0)];
    while links
        .iter_mut()
        .fold(false, |m, l| l.pump(&nodes, usize::MAX) | m)
    {}
    // Round the ring once: node 0's write is in 1's and 2's backlogs, and
    // node 0 did not log it again when it came back.
    let b0 = nodes[0].backlog().lock().next_offset();
    let b1 = nodes[1].backlog().lock().next_offset();
    let b2 = nodes[2].backlog().lock().next_offset();
    assert_eq!((b0, b1), (b1, b2));
    assert!(b0 > 0);
}

#[test]
fn a_late_older_write_does_not_bring_a_deleted_key_back() {
    let nodes = nodes();
    nodes[0].local_set(b"k", 0, 0, b"old").unwrap();
    let mut to1 = Link::new(0, 1);
    to1.pump(&nodes, usize::MAX);
    nodes[1].local_delete(b"k").unwrap();
    // Node 2 hears of the delete before the set it removed.
    let mut from1 = Link::new(1, 2);
    from1.pump(&nodes, usize::MAX);
    let mut from0 = Link::new(0, 2);
    from0.pump(&nodes, usize::MAX);
    for n in &nodes[1..] {
        assert_eq!(state(n, b"k"), None);
    }
}

#[test]
fn a_flush_barrier_applies_once_and_own_frames_merge_as_any_other() {
    let nodes = nodes();
    nodes[0].local_set(b"old", 0, 0, b"x").unwrap();
    let barrier = nodes[1].engine().draw_cas();
    let flush = Record::Flush {
        origin: 2,
        version: barrier,
    };
    assert_eq!(nodes[0].apply(&flush), Ok(true));
    assert_eq!(nodes[0].apply(&flush), Ok(false));
    assert_eq!(state(&nodes[0], b"old"), None);
    // A write after the barrier (a newer version) lives.
    nodes[0].local_set(b"new", 0, 0, b"y").unwrap();
    assert!(state(&nodes[0], b"new").is_some());
    // Our own write come back round: known, not applied again.
    let v = nodes[0].local_set(b"k", 0, 0, b"x").unwrap();
    let own = Record::Set {
        origin: 1,
        version: v.0,
        key: b"k",
        flags: 0,
        exptime: 0,
        value: b"x",
    };
    assert_eq!(nodes[0].apply(&own), Ok(false));
    assert_eq!(state(&nodes[0], b"k"), Some((b"x".to_vec(), v.0)));
    // Our own write from before a restart (an older run's version): applied.
    let older = Record::Set {
        origin: 1,
        version: Version::pack(1, 0, NodeId::new(1).unwrap()).0,
        key: b"lost",
        flags: 0,
        exptime: 0,
        value: b"y",
    };
    assert_eq!(nodes[0].apply(&older), Ok(true));
}

#[test]
fn concurrent_increments_on_two_nodes_are_all_counted() {
    let nodes = nodes();
    nodes[0].local_set(b"c", 0, 0, b"10").unwrap();
    let mut l01 = Link::new(0, 1);
    l01.pump(&nodes, usize::MAX);
    for (n, d) in [(0usize, 3u64), (1, 5), (0, 1), (1, 2)] {
        incr(&nodes[n], b"c", d);
    }
    let mut l10 = Link::new(1, 0);
    l01.pump(&nodes, usize::MAX);
    l10.pump(&nodes, usize::MAX);
    l01.pump(&nodes, usize::MAX);
    for n in &nodes[..2] {
        assert_eq!(state(n, b"c").map(|s| s.0), Some(b"21".to_vec()));
    }
}

#[test]
fn a_version_of_ours_we_never_drew_is_refused() {
    let nodes = nodes();
    let now = wall_unix_ms() - mnemo_engine::version::EPOCH_UNIX_MS;
    let ahead = Version::pack(now + 5_000, 0, NodeId::new(1).unwrap()).0;
    let forged = Record::Set {
        origin: 1,
        version: ahead,
        key: b"k",
        flags: 0,
        exptime: 0,
        value: b"x",
    };
    assert_eq!(nodes[0].apply(&forged), Err(ApplyError::ForgedOwn(ahead)));
    assert_eq!(state(&nodes[0], b"k"), None);
    // The same version from node 2's id is merely a fast clock, within
    // the drift the skew guard allows.
    let theirs = Version::pack(now + 5_000, 0, NodeId::new(2).unwrap()).0;
    let ok = Record::Set {
        origin: 2,
        version: theirs,
        key: b"k",
        flags: 0,
        exptime: 0,
        value: b"x",
    };
    assert_eq!(nodes[0].apply(&ok), Ok(true));
}

/// A node whose tombstones live 1 ms: its deletes are forgotten at once.
fn forgetful(id: u8) -> Node {
    let e = Engine::new(Config::default()).unwrap();
    Node::new(
        NodeId::new(id).unwrap(),
        e,
        u64::from(id),
        1 << 20,
        1,
        1 << 20,
    )
    .unwrap()
}

fn forget_now(n: &Node) {
    std::thread::sleep(std::time::Duration::from_millis(5));
    n.expire_tombstones();
}

/// KeyDB #447 past the tombstone bound: node 0 deleted `k` and forgot
/// the tombstone; node 1, which never heard of the delete, sends its old
/// `k` again. Node 0 cannot tell it from a write it deleted: it refuses
/// it and deletes it at that very version everywhere, the writer
/// included (a DELETE of the writer's own version is not skipped as its
/// own write come back would be).
#[test]
fn an_old_write_of_a_key_deleted_and_forgotten_is_refused_and_deleted_everywhere() {
    let nodes = [forgetful(1), forgetful(2)];
    let v = nodes[1].local_set(b"k", 0, 0, b"old").unwrap();
    let set = Record::Set {
        origin: 2,
        version: v.0,
        key: b"k",
        flags: 0,
        exptime: 0,
        value: b"old",
    };
    assert_eq!(nodes[0].apply(&set), Ok(true));
    nodes[0].local_delete(b"k").unwrap();
    forget_now(&nodes[0]);
    assert!(nodes[0].horizon() > v.0);
    let mut l01 = Link::new(0, 1);
    l01.offset = nodes[0].backlog().lock().next_offset();
    // The write comes back (a resync from node 1): refused.
    assert_eq!(nodes[0].apply(&set), Ok(true));
    assert_eq!(state(&nodes[0], b"k"), None);
    assert_eq!(nodes[0].stats.horizon_refused.load(Relaxed), 1);
    assert_eq!(nodes[0].tombs.get(b"k"), Some(v));
    // Again: the tombstone now decides, nothing more is logged.
    let at = nodes[0].backlog().lock().next_offset();
    assert_eq!(nodes[0].apply(&set), Ok(false));
    assert_eq!(nodes[0].backlog().lock().next_offset(), at);
    // Node 1 takes node 0's delete of its own write.
    l01.pump(&nodes, usize::MAX);
    assert_eq!(state(&nodes[1], b"k"), None);
    // A write newer than the horizon is news as ever.
    let w = nodes[1].local_set(b"k2", 0, 0, b"new").unwrap();
    let newer = Record::Set {
        origin: 2,
        version: w.0,
        key: b"k2",
        flags: 0,
        exptime: 0,
        value: b"new",
    };
    assert!(w.0 > nodes[0].horizon());
    assert_eq!(nodes[0].apply(&newer), Ok(true));
    assert!(state(&nodes[0], b"k2").is_some());
}

/// The other half: a full copy from a node that forgot deletes up to H
/// leaves on the receiver only what the copy carried, at or below H.
#[test]
fn a_sweep_after_a_copy_drops_only_old_items_the_copy_lacked() {
    use std::hash::BuildHasher;
    let n = forgetful(1);
    let stale = n.local_set(b"stale", 0, 0, b"x").unwrap();
    let kept = n.local_set(b"kept", 0, 0, b"y").unwrap();
    let horizon = n.local_set(b"new", 0, 0, b"z").unwrap();
    let later = n.local_set(b"later", 0, 0, b"w").unwrap();
    assert!(stale < kept && kept < horizon && horizon < later);
    let h = std::collections::hash_map::RandomState::new();
    let mut copied = vec![h.hash_one(&b"kept"[..])];
    copied.sort_unstable();
    assert_eq!(n.sweep_forgotten(horizon, &copied, &h), Ok(2));
    assert_eq!(state(&n, b"stale"), None);
    assert_eq!(state(&n, b"new"), None);
    assert!(state(&n, b"kept").is_some());
    assert!(state(&n, b"later").is_some());
    // The node now distrusts what it holds nothing for up to H, and its
    // next write is drawn above it.
    assert_eq!(n.horizon(), horizon.0);
    assert!(n.local_set(b"next", 0, 0, b"v").unwrap() > horizon);
}

/// A counter's TTL changed on one node while another incremented it:
/// once the TOUCH and COUNTER records cross, both nodes hold every
/// increment, the newer expiry and the same version; replayed records
/// change nothing.
#[test]
fn a_counter_touch_and_a_concurrent_increment_both_survive() {
    let nodes = nodes();
    nodes[0].local_set(b"c", 0, 0, b"10").unwrap();
    let mut l01 = Link::new(0, 1);
    let mut l10 = Link::new(1, 0);
    l01.pump(&nodes, usize::MAX);
    let incr = |n: usize, d: u64| incr(&nodes[n], b"c", d);
    incr(0, 1);
    l01.pump(&nodes, usize::MAX);
    // Concurrently: node 1 adds 5, node 0 sets a TTL.
    incr(1, 5);
    let ts = nodes[0].engine().new_thread_stats();
    assert!(nodes[0].engine().touch(b"c", 1000, &ts));
    nodes[0].record_state(b"c", true, &ts);
    l01.pump(&nodes, usize::MAX);
    l10.pump(&nodes, usize::MAX);
    let exp = |n: &Node| expiry(n, b"c");
    for n in &nodes[..2] {
        assert_eq!(state(n, b"c").map(|s| s.0), Some(b"16".to_vec()));
        assert!(exp(n).is_some_and(|t| t > 0), "the TTL was lost");
    }
    assert_eq!(state(&nodes[0], b"c"), state(&nodes[1], b"c"));
    let before = nodes[1].backlog().lock().next_offset();
    l01.offset = 0;
    l01.pump(&nodes, usize::MAX);
    assert_eq!(state(&nodes[0], b"c"), state(&nodes[1], b"c"));
    assert_eq!(state(&nodes[1], b"c").map(|s| s.0), Some(b"16".to_vec()));
    assert_eq!(nodes[1].backlog().lock().next_offset(), before);
}

#[derive(Clone, Debug)]
enum CStep {
    Incr(usize, u8),
    Touch(usize),
    Pump(usize, usize),
    /// A set of a new number: after it no sum holds, only agreement.
    Set(usize, u8),
}

/// Increments and TTL changes of one counter anywhere, in any
/// interleaving with the links: once drained, every node holds the
/// base plus every increment, and the same state.
fn run_counter(mut links: Vec<Link>, steps: &[CStep]) -> Result<(), TestCaseError> {
    let nodes = nodes();
    nodes[0].local_set(b"c", 0, 0, b"1000").unwrap();
    while links
        .iter_mut()
        .fold(false, |moved, l| l.pump(&nodes, usize::MAX) | moved)
    {}
    let mut sum = 1000u64;
    let mut sets = false;
    for s in steps {
        match *s {
            CStep::Incr(n, d) => {
                incr(&nodes[n], b"c", u64::from(d));
                sum += u64::from(d);
            }
            CStep::Touch(n) => {
                let ts = nodes[n].engine().new_thread_stats();
                prop_assert!(nodes[n].engine().touch(b"c", 1000 + n as i64, &ts));
                nodes[n].record_state(b"c", true, &ts);
            }
            CStep::Pump(l, max) => {
                links[l].pump(&nodes, max);
            }
            CStep::Set(n, v) => {
                nodes[n]
                    .local_set(b"c", 0, 0, v.to_string().as_bytes())
                    .unwrap();
                sets = true;
            }
        }
    }
    while links
        .iter_mut()
        .fold(false, |moved, l| l.pump(&nodes, usize::MAX) | moved)
    {}
    let exp = |n: &Node| expiry(n, b"c");
    prop_assert_eq!(exp(&nodes[0]), exp(&nodes[1]));
    prop_assert_eq!(exp(&nodes[0]), exp(&nodes[2]));
    let want = sum.to_string().into_bytes();
    for n in nodes.iter().filter(|_| !sets) {
        prop_assert_eq!(
            state(n, b"c").map(|s| s.0),
            Some(want.clone()),
            "node {:?}",
            n.id()
        );
    }
    prop_assert_eq!(state(&nodes[0], b"c"), state(&nodes[1], b"c"));
    prop_assert_eq!(state(&nodes[0], b"c"), state(&nodes[2], b"c"));
    Ok(())
}

fn cstep(links: usize, sets: bool) -> impl Strategy<Value = CStep> {
    let set = (0usize..3, any::<u8>()).prop_map(|(n, v)| CStep::Set(n, v));
    prop_oneof![
        3 => (0usize..3, 1u8..10).prop_map(|(n, d)| CStep::Incr(n, d)),
        3 => (0usize..3).prop_map(CStep::Touch),
        3 => (0..links, 1usize..200).prop_map(|(l, m)| CStep::Pump(l, m)),
        if sets { 1 } else { 0 } => set,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn counters_with_ttl_changes_converge_in_a_chain(steps in prop::collection::vec(cstep(4, false), 0..40)) {
        let links = vec![Link::new(0, 1), Link::new(1, 0), Link::new(1, 2), Link::new(2, 1)];
        run_counter(links, &steps)?;
    }

    #[test]
    fn counters_with_ttl_changes_converge_in_a_ring(steps in prop::collection::vec(cstep(3, false), 0..40)) {
        run_counter(vec![Link::new(0, 1), Link::new(1, 2), Link::new(2, 0)], &steps)?;
    }

    #[test]
    fn counters_with_ttl_changes_and_sets_agree_in_a_mesh(steps in prop::collection::vec(cstep(6, true), 0..40)) {
        let links = vec![
            Link::new(0, 1), Link::new(0, 2), Link::new(1, 0),
            Link::new(1, 2), Link::new(2, 0), Link::new(2, 1),
        ];
        run_counter(links, &steps)?;
    }
}

/// Touches `key` on `n` as a client's `touch` does; its absolute expiry.
fn touch(n: &Node, key: &[u8], ttl: i64) -> u64 {
    let ts = n.engine().new_thread_stats();
    assert!(n.engine().touch(key, ttl, &ts));
    n.record_state(key, true, &ts);
    expiry(n, key).expect("touched")
}

/// Every frame in `n`'s backlog, as (start, end) in `buf`.
fn frames(n: &Node, buf: &mut Vec<u8>) -> Vec<(usize, usize)> {
    n.backlog()
        .lock()
        .read(0, usize::MAX, buf)
        .expect("backlog large enough for the test");
    let mut at = 0;
    let mut out = Vec::new();
    while let Decoded::Frame(_, used) = decode(&buf[at..], 1 << 20).expect("our own frames") {
        out.push((at, at + used));
        at += used;
    }
    out
}

/// A TTL change leaves the value, and so the CAS a client holds, as it
/// was (as memcached's does): a `cas` made with it still succeeds.
#[test]
fn a_touch_leaves_the_cas_under_replication() {
    let nodes = nodes();
    let v = nodes[0].local_set(b"k", 0, 0, b"v").unwrap();
    touch(&nodes[0], b"k", 100);
    assert_eq!(state(&nodes[0], b"k"), Some((b"v".to_vec(), v.0)));
    Link::new(0, 1).pump(&nodes, usize::MAX);
    assert_eq!(state(&nodes[1], b"k"), Some((b"v".to_vec(), v.0)));
    assert_eq!(expiry(&nodes[1], b"k"), expiry(&nodes[0], b"k"));
}

/// A touch made on a node that had not yet seen a delete does not bring
/// the key back: the delete is newer than the value the touch was made
/// on, and a touch never creates an item (memcached's touch neither).
#[test]
fn a_touch_concurrent_with_a_delete_does_not_bring_the_key_back() {
    let nodes = nodes();
    nodes[0].local_set(b"k", 0, 0, b"v").unwrap();
    let mut l01 = Link::new(0, 1);
    let mut l10 = Link::new(1, 0);
    l01.pump(&nodes, usize::MAX);
    nodes[1].local_delete(b"k").unwrap();
    touch(&nodes[0], b"k", 100);
    l01.pump(&nodes, usize::MAX);
    l10.pump(&nodes, usize::MAX);
    assert_eq!(state(&nodes[0], b"k"), None);
    assert_eq!(state(&nodes[1], b"k"), None);
}

/// A touch made on an older value does not move the expiry of a newer
/// one written concurrently elsewhere: a write resets the expiry, and
/// the touch was not made on it.
#[test]
fn a_touch_on_an_older_value_leaves_a_newer_ones_expiry() {
    let nodes = nodes();
    nodes[0].local_set(b"k", 0, 0, b"old").unwrap();
    let mut l01 = Link::new(0, 1);
    let mut l10 = Link::new(1, 0);
    l01.pump(&nodes, usize::MAX);
    touch(&nodes[0], b"k", 100);
    let new = nodes[1].local_set(b"k", 0, 0, b"new").unwrap();
    l01.pump(&nodes, usize::MAX);
    l10.pump(&nodes, usize::MAX);
    for n in &nodes[..2] {
        assert_eq!(state(n, b"k"), Some((b"new".to_vec(), new.0)));
        assert_eq!(expiry(n, b"k"), Some(0));
    }
}

/// A TOUCH that arrives before the write it was made on (by another
/// path, or after an eviction) is kept for it and passed on: the write,
/// when it comes, takes the newer expiry, as where it came first.
#[test]
fn a_touch_that_arrives_before_its_write_is_kept_for_it() {
    let nodes = nodes();
    nodes[0].local_set(b"k", 0, 0, b"v").unwrap();
    let exp = touch(&nodes[0], b"k", 100);
    let mut buf = Vec::new();
    let fs = frames(&nodes[0], &mut buf);
    assert_eq!(fs.len(), 2, "a SET, then a TOUCH");
    for &(a, b) in fs.iter().rev() {
        let Decoded::Frame(rec, _) = decode(&buf[a..b], 1 << 20).unwrap() else {
            unreachable!("a whole frame");
        };
        assert_eq!(nodes[2].apply(&rec), Ok(true), "{rec:?}");
    }
    assert_eq!(state(&nodes[2], b"k"), state(&nodes[0], b"k"));
    assert_eq!(expiry(&nodes[2], b"k"), Some(exp));
    // Passed on in the order it came: the next node ends the same.
    Link::new(2, 1).pump(&nodes, usize::MAX);
    assert_eq!(state(&nodes[1], b"k"), state(&nodes[0], b"k"));
    assert_eq!(expiry(&nodes[1], b"k"), Some(exp));
}

/// `incr` by 0 moves no total but gives the item a new CAS where it is
/// made (as memcached's does): every node takes that version too.
#[test]
fn an_incr_by_zero_gives_every_node_the_same_cas() {
    let nodes = nodes();
    nodes[0].local_set(b"c", 0, 0, b"10").unwrap();
    let mut l01 = Link::new(0, 1);
    let mut l10 = Link::new(1, 0);
    l01.pump(&nodes, usize::MAX);
    let incr = |d: u64| incr(&nodes[1], b"c", d);
    // Counted once, so that both nodes track it.
    incr(1);
    l10.pump(&nodes, usize::MAX);
    incr(0);
    l10.pump(&nodes, usize::MAX);
    let held = state(&nodes[1], b"c");
    assert_eq!(held.as_ref().map(|h| h.0.as_slice()), Some(&b"11"[..]));
    assert_eq!(state(&nodes[0], b"c"), held);
}

/// The side table's count (`repl_counters`, and whether a plain write
/// must look at the table at all) follows entries across its shards.
#[test]
fn the_side_tables_count_follows_its_entries() {
    let nodes = nodes();
    for i in 0..40u8 {
        nodes[0].local_set(&[b't', i], 0, 0, b"v").unwrap();
        touch(&nodes[0], &[b't', i], 100);
    }
    assert_eq!(nodes[0].counters.tracked(), 40);
    for i in 0..10u8 {
        nodes[0].local_delete(&[b't', i]).unwrap();
    }
    for i in 10..20u8 {
        nodes[0].local_set(&[b't', i], 0, 0, b"w").unwrap();
    }
    assert_eq!(nodes[0].counters.tracked(), 20);
    for i in 20..40u8 {
        nodes[0].local_delete(&[b't', i]).unwrap();
    }
    assert_eq!(nodes[0].counters.tracked(), 0);
}

/// The tombstones are sharded by key: counted, superseded and bounded as
/// one table, the bound shared among the shards, and a tombstone the
/// bound drops raises the node's horizon wherever its shard is.
#[test]
fn sharded_tombstones_count_supersede_and_bound_as_one_table() {
    let nodes = nodes();
    let n = &nodes[0];
    for i in 0..1000u32 {
        let key = format!("d{i}");
        n.local_set(key.as_bytes(), 0, 0, b"v").unwrap();
        n.local_delete(key.as_bytes()).unwrap();
    }
    assert_eq!(n.tombstone_stats().0, 1000);
    assert_eq!(n.tombs.forgotten(), 0);
    for i in 0..1000u32 {
        n.local_set(format!("d{i}").as_bytes(), 0, 0, b"w").unwrap();
    }
    assert_eq!(n.tombstone_stats().0, 0);

    // 16 KB among 16 shards: about six tombstones of these keys each.
    let small = Node::new(
        NodeId::new(4).unwrap(),
        Engine::new(Config::default()).unwrap(),
        4,
        1 << 20,
        3_600_000,
        16 * 1024,
    )
    .unwrap();
    let mut last = Version(0);
    for i in 0..2000u32 {
        let key = format!("gone{i}");
        small.local_set(key.as_bytes(), 0, 0, b"v").unwrap();
        last = small.local_delete(key.as_bytes()).unwrap();
    }
    let (held, bytes, _) = small.tombstone_stats();
    assert!(bytes <= 16 * 1024, "{bytes} bytes");
    assert!(held > 0 && held < 2000, "{held} held");
    let f = small.tombs.forgotten();
    assert!(f > 0 && f < last.0, "forgotten {f}, last delete {}", last.0);
}
