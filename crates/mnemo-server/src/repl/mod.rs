//! Active-active replication between mnemo servers (issue #13). The
//! design is docs/REPLICATION.md; the pure parts live in the engine
//! (`version`, `counter`) and the protocol crate (`repl`). This module is
//! the server's side; so far only its command-line options, which are
//! refused until the link works, so that no half-working replication is
//! reachable.

pub mod options;
