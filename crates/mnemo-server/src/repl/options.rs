//! The replication options on mnemo's command line. They are mnemo's own
//! (memcached has none), so they are long-only, matched exactly and never
//! by prefix: `--t 4` must stay memcached's `--threads 4` and `--n` its
//! `--napi-ids`. Until replication works every one of them is refused
//! with a message saying so, rather than accepted and ignored.

use crate::cli::{CliError, EX_USAGE};

// Letters from Unicode's private use area: no short option can be typed
// as one by accident, and `cli.rs` keys every option by a char.
pub const PEER: char = '\u{e001}';
pub const NODE_ID: char = '\u{e002}';
pub const BACKLOG_SIZE: char = '\u{e003}';
pub const TOMBSTONE_TTL: char = '\u{e004}';

/// (long name, key), for `cli.rs`'s table; each takes a value.
pub const LONG: [(&str, char); 4] = [
    ("peer", PEER),
    ("node-id", NODE_ID),
    ("repl-backlog-size", BACKLOG_SIZE),
    ("tombstone-ttl", TOMBSTONE_TTL),
];

/// Whether `c` keys one of these options (matched exactly, not by prefix).
pub fn is_replication(c: char) -> bool {
    LONG.iter().any(|&(_, k)| k == c)
}

/// The error for giving one of them while replication is not functional.
pub fn refuse(c: char) -> CliError {
    let name = LONG.iter().find(|&&(_, k)| k == c).map_or("?", |&(n, _)| n);
    CliError {
        message: format!(
            "mnemo: --{name}: replication between mnemo servers is not functional yet \
             (issue #13; design in docs/REPLICATION.md)"
        ),
        code: EX_USAGE,
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{parse, Action, EX_USAGE};

    fn refused(args: &[&str]) -> String {
        match parse(args.iter().copied()) {
            Err(e) => {
                if e.message.contains("not functional") {
                    assert_eq!(e.code, EX_USAGE, "{args:?}");
                }
                e.message
            }
            Ok(a) => panic!("{args:?} should be refused, got {a:?}"),
        }
    }

    #[test]
    fn replication_options_are_refused_with_a_reason() {
        for (args, name) in [
            (&["--peer", "127.0.0.1:11212"][..], "peer"),
            (&["--peer=127.0.0.1:11212"][..], "peer"),
            (&["-p", "0", "--node-id", "3"][..], "node-id"),
            (&["--repl-backlog-size=16m"][..], "repl-backlog-size"),
            (&["--tombstone-ttl", "86400"][..], "tombstone-ttl"),
        ] {
            let m = refused(args);
            assert!(m.contains(&format!("--{name}:")), "{m}");
            assert!(m.contains("not functional yet"), "{m}");
        }
        assert!(refused(&["--peer"]).contains("requires an argument"));
    }

    #[test]
    fn they_take_no_prefixes_and_leave_memcacheds_prefixes_alone() {
        assert!(refused(&["--pee", "x"]).contains("unrecognized"));
        assert!(refused(&["--tombstone", "1"]).contains("unrecognized"));
        // Before these options existed `--t` was `--threads` and `--n`
        // `--napi-ids`, as in memcached; they still are.
        match parse(["--t", "3"]) {
            Ok(Action::Run(s)) => assert_eq!(s.threads, 3),
            other => panic!("{other:?}"),
        }
        assert!(refused(&["--n", "1"]).contains("-N"));
    }
}
