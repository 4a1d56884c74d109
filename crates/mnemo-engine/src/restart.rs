//! Warm restart (`-e PATH`, memcached's restartable cache).
//!
//! The slab pages live in the memory file, mapped shared (`arena.rs`).
//! A graceful stop (SIGUSR1, `shutdown graceful`) writes `PATH.meta`: the
//! settings that decide where items sit (`-m`, `-n`, `-f`, `-I`,
//! `slab_chunk_max`, CAS on or off, the class sizes), the page table, each
//! LRU's head and tail, the clock and the CAS counter, with a checksum.
//! Everything else (free lists, the hash index, counts) is rebuilt at the
//! next start by walking every page.
//!
//! A cold start preallocates as memcached's `-e` does: a page for every
//! class, the rest of the file in the global page pool; no page ever comes
//! from outside the file, and `cache_memlimit` cannot change its size.
//!
//! The start reads the metadata and deletes it before the memory is
//! used, so a crash afterwards never restarts warm from a half-changed
//! file. Both files are untrusted input: a missing, truncated, corrupt,
//! foreign-version or incompatible metadata file, a memory file of the
//! wrong size, or pages that do not agree with the metadata (every id,
//! length and link is checked before it is followed) give a log line and
//! a cold start over an emptied file, never a panic or a wrong value.

mod meta;
mod recover;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crate::arena::Arena;
use crate::assoc::Index;
use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::engine::SlabEngine;
use crate::slabs::Slabs;

pub(crate) use meta::Meta;

/// How the engine started with a memory file, for the server to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestartOutcome {
    /// No `-e`.
    NoFile,
    /// Started empty; the lines say why (memcached's `[restart]` wording
    /// where it has one).
    Cold(Vec<String>),
    /// The previous run's items are back.
    Warm {
        items: u64,
        /// Time spent rebuilding, in milliseconds.
        millis: u64,
    },
}

/// What a successful recovery carries into the new engine.
pub(crate) struct Resumed {
    pub clock: Clock,
    pub cas_id: u64,
    pub oldest_live: u32,
    pub oldest_cas: u64,
}

/// `PATH.meta`, where memcached keeps its metadata too.
fn meta_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".meta");
    PathBuf::from(p)
}

/// Where the metadata is written before it is renamed into place.
fn tmp_path(meta: &Path) -> PathBuf {
    let mut p = meta.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

/// The memory file's size for these settings: all of `-m`, in pages.
fn file_len(cfg: &Config) -> usize {
    (cfg.mem_limit / cfg.page_size).max(1) * cfg.page_size
}

/// Maps the memory file under `slabs` and, when its metadata allows,
/// brings the previous run's items back into `slabs` and `index`.
/// Err only when the file cannot be opened or mapped at all.
pub(crate) fn open(
    cfg: &Config,
    path: &Path,
    slabs: &mut Slabs,
    index: &mut Index,
    fresh: impl Fn() -> (Slabs, Index),
) -> Result<(RestartOutcome, Option<Resumed>), ConfigError> {
    let started = Instant::now();
    let len = file_len(cfg);
    let open_err = |e: std::io::Error| {
        ConfigError(format!(
            "failed to open file for mmap: {}: {e}",
            path.display()
        ))
    };
    // Locked before the metadata is read: a second process on the same
    // file stops here and leaves both files to the running one.
    let (file, before) = Arena::lock_file(path).map_err(open_err)?;
    let mpath = meta_path(path);
    // Left by a stop killed while saving; never renamed, so never valid.
    let _ = std::fs::remove_file(tmp_path(&mpath));
    let saved = match std::fs::read(&mpath) {
        Ok(bytes) => {
            // Gone before the memory is touched: from here on only another
            // graceful stop makes the file restartable again.
            let _ = std::fs::remove_file(&mpath);
            Some(Meta::parse(&bytes).and_then(|m| m.check(cfg, slabs).map(|()| m)))
        }
        Err(_) => None,
    };
    let keep = matches!(saved, Some(Ok(_))) && before == len as u64;
    let arena = Arena::map_file(file, len, keep).map_err(open_err)?;
    slabs.use_arena(arena);
    let cold = |slabs: &Slabs, lines: Vec<String>| {
        slabs.prefill().map_err(ConfigError)?;
        Ok((RestartOutcome::Cold(lines), None))
    };
    let meta = match saved {
        None => {
            return cold(
                slabs,
                vec!["[restart] no metadata save file, starting with a clean cache".into()],
            )
        }
        Some(Err(why)) => {
            let mut lines: Vec<String> = why.lines().map(str::to_string).collect();
            lines.push("[restart] failed to validate metadata, starting with a clean cache".into());
            return cold(slabs, lines);
        }
        Some(Ok(m)) => m,
    };
    let result = if before != len as u64 {
        Err(format!(
            "memory file is {before} bytes, the metadata says {len}"
        ))
    } else {
        meta.resume_clock()
            .and_then(|clock| recover::recover(slabs, index, &meta, cfg).map(|r| (clock, r)))
    };
    match result {
        Ok((clock, r)) => Ok((
            RestartOutcome::Warm {
                items: r.items,
                millis: started.elapsed().as_millis() as u64,
            },
            Some(Resumed {
                clock,
                cas_id: meta.cas_id.max(r.max_cas),
                oldest_live: meta.oldest_live,
                oldest_cas: meta.oldest_cas,
            }),
        )),
        Err(why) => {
            // Start again from nothing over the same mapping, emptied so no
            // byte of the rejected contents can be read as an item.
            let arena = slabs.take_arena();
            let (s, i) = fresh();
            *slabs = s;
            *index = i;
            let wiped = arena.wipe();
            slabs.use_arena(arena);
            if let Err(e) = wiped {
                return Err(ConfigError(format!(
                    "failed to empty memory file {}: {e}",
                    path.display()
                )));
            }
            cold(
                slabs,
                vec![format!(
                    "[restart] memory file does not match its metadata ({why}), starting with a clean cache"
                )],
            )
        }
    }
}

impl SlabEngine {
    /// How this engine started with its memory file.
    pub fn restart_outcome(&self) -> &RestartOutcome {
        &self.restart
    }

    /// Keeps the cache for the next start (memcached's graceful stop with
    /// `-e`): writes the memory file back and then its metadata. Call
    /// after [`SlabEngine::shutdown`], once no connection is left. Does
    /// nothing without a memory file.
    pub fn save_memory_file(&self) -> Result<(), String> {
        let Some(path) = &self.cfg.memory_file else {
            return Ok(());
        };
        let mut pages = self.slabs.saved_pages()?;
        for p in pages.iter_mut().filter(|p| p.class.is_some()) {
            // SAFETY: every thread that writes items has stopped (this
            // method's contract) and saved pages lie inside the file.
            p.sum = page_sum(unsafe { self.slabs.file_page(p.off) });
        }
        let mut lrus = Vec::new();
        for (ci, class) in self.slabs.classes.iter().enumerate() {
            let st = class.state.lock();
            for (seg, l) in st.lru.iter().enumerate() {
                if l.count != 0 {
                    lrus.push(meta::SavedLru {
                        class: ci as u8,
                        seg: seg as u8,
                        head: l.head.to_word(),
                        tail: l.tail.to_word(),
                        count: l.count,
                    });
                }
            }
        }
        let m = Meta::current(
            &self.cfg,
            &self.slabs,
            meta::State {
                process_started: self.clock.process_started(),
                current_time: self.clock.now(),
                stop_time: crate::clock::wall_now(),
                cas_id: self.cas_id.load(Relaxed),
                oldest_live: self.oldest_live.load(Relaxed),
                oldest_cas: self.oldest_cas.load(Relaxed),
            },
            pages,
            lrus,
        );
        self.slabs
            .arena()
            .sync()
            .map_err(|e| format!("failed to sync memory file: {e}"))?;
        let mpath = meta_path(path);
        let tmp = tmp_path(&mpath);
        write_synced(&tmp, &m.encode())
            .and_then(|()| std::fs::rename(&tmp, &mpath))
            .map_err(|e| format!("failed to write {}: {e}", mpath.display()))
    }
}

/// A checksum of one page, so that any change to a used page between the
/// stop and the next start (a stray write, a damaged or swapped file) is
/// seen before a value is served from it. Four independent lanes of
/// multiply-xor over 8-byte words keep it near memory speed; each step
/// is a bijection of its lane, so a changed word always changes the sum.
pub(crate) fn page_sum(page: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut lanes = [K, K ^ 1, K ^ 2, K ^ 3];
    let mut blocks = page.chunks_exact(32);
    for b in &mut blocks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *lane = (*lane ^ u64::from_le_bytes(w))
                .wrapping_mul(K)
                .rotate_left(29);
        }
    }
    let mut h = page.len() as u64;
    for b in blocks.remainder() {
        h = (h ^ u64::from(*b)).wrapping_mul(K);
    }
    for lane in lanes {
        h = (h ^ lane).wrapping_mul(K).rotate_left(29);
    }
    h
}

/// Writes `bytes` to a new owner-only file and syncs it, so a rename
/// publishes either nothing or all of it.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
