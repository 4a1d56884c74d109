//! Erasure-coded pools (`erasure: K+M`): values split into K data and M
//! parity shards on K+M distinct servers of the key's ring walk, small
//! values copied whole on M+1 of them, every stored item carrying a
//! versioned, checksummed header so that reads decode only from shards of
//! one write and repair what they find missing, stale or corrupt.
//!
//! `shard` (the item format), `codec` (values to shards and back) and
//! `read` (choosing the winning version) are pure; the worker's side is in
//! `ops` (text requests and reads), `write`, `meta` (meta and binary
//! requests), `repair` and `scrub` (the `repair` admin command).

pub mod codec;
pub mod meta;
pub mod ops;
pub mod read;
pub mod repair;
pub mod scrub;
pub mod shard;
pub mod write;
