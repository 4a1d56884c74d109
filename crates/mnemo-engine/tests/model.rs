//! Property test: any sequence of operations leaves the engine agreeing
//! with a plain map (memory large enough that nothing is evicted) and its
//! allocator accounting exact; with a tiny memory limit, the accounting
//! stays exact and nothing returned is wrong, though keys may be evicted.

use std::collections::HashMap;

use mnemo_engine::{ArithOutcome, Config, Engine, EngineKind, GetMode, StoreMode, StoreOutcome};
use proptest::prelude::*;

/// The engines under test: both, one after the other on the same
/// operations, unless `MNEMO_TEST_ENGINE` names one (as for the server's
/// tests), so one model covers every engine.
fn engine_kinds() -> Vec<EngineKind> {
    match std::env::var("MNEMO_TEST_ENGINE")
        .ok()
        .and_then(|s| EngineKind::parse(&s))
    {
        Some(k) => vec![k],
        None => vec![EngineKind::Slab, EngineKind::Segment],
    }
}

/// Moves a slab page at once (the slab engine's page mover); an engine
/// without slab pages has nothing to move.
fn move_page(e: &Engine, src: u32, dst: u32) -> bool {
    e.as_slab().is_some_and(|slab| slab.move_page_now(src, dst))
}

#[derive(Clone, Debug)]
enum Op {
    Set(u8, usize, u32),
    Add(u8, usize),
    Append(u8, usize),
    Delete(u8),
    Incr(u8, u64),
    Get(u8),
    Reassign(i32, i32),
}

fn op() -> impl Strategy<Value = Op> {
    let len = prop_oneof![0usize..200, 200usize..3000, Just(600_000usize)];
    prop_oneof![
        (any::<u8>(), len.clone(), any::<u32>()).prop_map(|(k, l, f)| Op::Set(k % 32, l, f)),
        (any::<u8>(), 0usize..100).prop_map(|(k, l)| Op::Add(k % 32, l)),
        (any::<u8>(), len).prop_map(|(k, l)| Op::Append(k % 32, l)),
        any::<u8>().prop_map(|k| Op::Delete(k % 32)),
        (any::<u8>(), any::<u64>()).prop_map(|(k, d)| Op::Incr(k % 32, d)),
        any::<u8>().prop_map(|k| Op::Get(k % 32)),
        (1i32..12, 0i32..12).prop_map(|(s, d)| Op::Reassign(s, d)),
    ]
}

fn val(k: u8, len: usize, salt: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i + salt + k as usize) % 251) as u8)
        .collect()
}

fn run(ops: Vec<Op>, mem: usize, exact: bool) -> Result<(), TestCaseError> {
    for kind in engine_kinds() {
        run_on(kind, ops.clone(), mem, exact)?;
    }
    Ok(())
}

fn run_on(kind: EngineKind, ops: Vec<Op>, mem: usize, exact: bool) -> Result<(), TestCaseError> {
    let e = Engine::new(Config {
        mem_limit: mem,
        item_size_max: 4 * 1024 * 1024,
        engine: kind,
        ..Config::default()
    })
    .unwrap();
    let ts = e.new_thread_stats();
    let mut model: HashMap<u8, Vec<u8>> = HashMap::new();
    for (n, op) in ops.into_iter().enumerate() {
        let key = |k: u8| format!("key-{k}").into_bytes();
        match op {
            Op::Set(k, l, f) => {
                let v = val(k, l, n);
                let r = e.store(StoreMode::Set, &key(k), f, 0, &v, 0, &ts);
                match r {
                    StoreOutcome::Stored { .. } => {
                        model.insert(k, v);
                    }
                    _ => {
                        prop_assert!(!exact, "{r:?}");
                        model.remove(&k);
                    }
                }
            }
            Op::Add(k, l) => {
                let v = val(k, l, n);
                let r = e.store(StoreMode::Add, &key(k), 0, 0, &v, 0, &ts);
                if exact {
                    prop_assert_eq!(
                        matches!(r, StoreOutcome::Stored { .. }),
                        !model.contains_key(&k)
                    );
                }
                if matches!(r, StoreOutcome::Stored { .. }) {
                    model.insert(k, v);
                }
            }
            Op::Append(k, l) => {
                let v = val(k, l, n);
                let r = e.store(StoreMode::Append, &key(k), 0, 0, &v, 0, &ts);
                match (r, model.get_mut(&k)) {
                    (StoreOutcome::Stored { .. }, Some(m)) => m.extend_from_slice(&v),
                    (StoreOutcome::Stored { .. }, None) => prop_assert!(!exact),
                    (StoreOutcome::NotStored, m) => prop_assert!(m.is_none() || !exact),
                    (StoreOutcome::TooLarge, Some(_)) => {}
                    (o, _) => prop_assert!(!exact, "{o:?}"),
                }
            }
            Op::Delete(k) => {
                let hit = e.delete(&key(k), &ts);
                let had = model.remove(&k).is_some();
                if exact {
                    prop_assert_eq!(hit, had);
                }
            }
            Op::Incr(k, d) => match (e.arith(&key(k), true, d, &ts), model.get_mut(&k)) {
                (ArithOutcome::Value(v), Some(m)) => {
                    let s = v.to_string().into_bytes();
                    if s.len() <= m.len() {
                        let pad = m.len() - s.len();
                        *m = s;
                        m.extend(std::iter::repeat_n(b' ', pad));
                    } else {
                        *m = s;
                    }
                }
                (ArithOutcome::NonNumeric, Some(_)) => {}
                (ArithOutcome::NotFound, None) => {}
                (ArithOutcome::NotFound, Some(_)) if !exact => {
                    model.remove(&k);
                }
                (o, m) => prop_assert!(!exact, "{o:?} {:?}", m.map(|m| m.len())),
            },
            Op::Get(k) => {
                let got = e.get(&key(k), GetMode::Get, &ts, |it| {
                    let mut v = Vec::new();
                    it.write_value(&mut v);
                    v
                });
                match (got, model.get(&k)) {
                    (Some(g), Some(m)) => prop_assert!(g == *m, "value differs for {}", k),
                    (None, None) => {}
                    (None, Some(_)) if !exact => {
                        model.remove(&k);
                    }
                    (g, m) => prop_assert!(
                        false,
                        "get {k}: {:?} vs {:?}",
                        g.map(|g| g.len()),
                        m.map(|m| m.len())
                    ),
                }
            }
            Op::Reassign(s, d) => {
                // A move may evict what it cannot rescue, but every item
                // still there must be intact.
                if move_page(&e, s as u32, d as u32) {
                    let keys: Vec<u8> = model.keys().copied().collect();
                    for k in keys {
                        let got = e.get(&key(k), GetMode::Get, &ts, |it| {
                            let mut v = Vec::new();
                            it.write_value(&mut v);
                            v
                        });
                        match got {
                            Some(g) => {
                                prop_assert!(g == model[&k], "value differs after move for {}", k)
                            }
                            None => {
                                model.remove(&k);
                            }
                        }
                    }
                }
            }
        }
        if let Err(msg) = e.check_invariants() {
            prop_assert!(false, "{msg}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_a_map(ops in prop::collection::vec(op(), 1..150)) {
        run(ops, 64 * 1024 * 1024, true)?;
    }

    #[test]
    fn accounting_exact_under_memory_pressure(ops in prop::collection::vec(op(), 1..150)) {
        run(ops, 2 * 1024 * 1024, false)?;
    }
}
