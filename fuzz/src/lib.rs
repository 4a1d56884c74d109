//! Fuzz targets for mnemo's protocol parsers; the invariants live in
//! `checks.rs`, which the stable corpus replay test also includes.

mod checks;

pub use checks::{check_binary, check_meta, check_reply, check_text};
