//! mnemo-client: a memcached client placing keys exactly where libmemcached
//! (KETAMA_WEIGHTED) and twemproxy put them.
//!
//! - [`hash`]: twemproxy's key hashes, bit for bit.
//! - [`ring`]: ketama / modula / random placement and hash tags.

pub mod hash;
pub mod ring;
