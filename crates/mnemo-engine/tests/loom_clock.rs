//! loom model of the engine's clock (`src/clock.rs`), run on the real
//! code: under `--cfg loom` its atomics are loom's (`src/sync.rs`).
//! Run with scripts/loom.sh.
//!
//! The clock thread calls `tick` about once a second while tests move time
//! with `advance`; readers only load `current`. What must hold: time never
//! goes back, so once `advance(n)` has returned, no racing `tick` can
//! store a time computed from the skew before it.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use mnemo_engine::Clock;

#[test]
fn a_racing_tick_never_undoes_an_advance() {
    loom::model(|| {
        let clock = Arc::new(Clock::new());
        let start = clock.now();
        let ticker = {
            let clock = clock.clone();
            thread::spawn(move || {
                clock.tick();
                clock.now()
            })
        };
        clock.advance(100);
        let after_advance = clock.now();
        let seen_by_ticker = ticker.join().expect("ticker");
        assert!(
            after_advance >= start + 100,
            "advance returned at {after_advance}"
        );
        assert!(
            clock.now() >= start + 100,
            "time went back to {} after advance (ticker saw {seen_by_ticker})",
            clock.now()
        );
    });
}

#[test]
fn a_reader_never_sees_time_go_back() {
    loom::model(|| {
        let clock = Arc::new(Clock::new());
        let reader = {
            let clock = clock.clone();
            thread::spawn(move || {
                let a = clock.now();
                let b = clock.now();
                assert!(b >= a, "read {a} then {b}");
            })
        };
        clock.advance(5);
        clock.tick();
        reader.join().expect("reader");
    });
}
