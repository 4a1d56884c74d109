//! Replication (issue #13) from outside the binary. Until the link works
//! its options must be refused at start, never accepted and ignored.

use std::process::Command;

#[test]
fn replication_options_refuse_to_start() {
    for args in [
        &["-p", "0", "--peer", "127.0.0.1:1"][..],
        &["-p", "0", "--node-id=2"][..],
        &["-p", "0", "--repl-backlog-size", "1m"][..],
        &["-p", "0", "--tombstone-ttl", "60"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .args(args)
            .output()
            .expect("run mnemo");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains("not functional yet"), "{args:?}: {err}");
    }
}
