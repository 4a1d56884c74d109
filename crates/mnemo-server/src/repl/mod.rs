//! Active-active replication between mnemo servers (issue #13). The
//! design is docs/REPLICATION.md; the pure parts live in the engine
//! (`version`, `counter`, `tombstones`, `apply`) and the protocol crate
//! (`repl`). This module is the server's side: a node's apply rule over
//! engine, tombstones and backlog (`node`, tested by driving links by
//! hand), and the command-line options, which are refused until the link
//! works, so that no half-working replication is reachable.

pub mod node;
pub mod options;
