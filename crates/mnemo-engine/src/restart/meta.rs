//! `PATH.meta`: what a graceful stop records beside the memory file.
//!
//! Text, one `name value` line each as memcached's metadata is, so an
//! operator can read it; the last line is an FNV-1a checksum of all the
//! bytes before it, so truncation or damage is caught before any value is
//! believed. Every field is parsed strictly; an unknown or missing line
//! rejects the file.

use crate::clock::Clock;
use crate::config::Config;
use crate::slabs::{SavedPage, Slabs};

const MAGIC: &str = "mnemo-memory-file";
/// Bumped whenever the item layout or this file's lines change meaning.
const FORMAT: &str = "1";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One non-empty LRU segment's ends, as chunk id words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SavedLru {
    pub class: u8,
    pub seg: u8,
    pub head: u32,
    pub tail: u32,
    pub count: u64,
}

/// The engine's running state at the stop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub process_started: u64,
    /// Relative time at the stop.
    pub current_time: u32,
    /// Wall time at the stop.
    pub stop_time: u64,
    pub cas_id: u64,
    pub oldest_live: u32,
    pub oldest_cas: u64,
}

#[derive(Debug)]
pub(crate) struct Meta {
    /// The layout-deciding settings, name and value, in file order.
    settings: Vec<(String, String)>,
    state: State,
    pub pages: Vec<SavedPage>,
    pub lrus: Vec<SavedLru>,
    pub cas_id: u64,
    pub oldest_live: u32,
    pub oldest_cas: u64,
}

/// The settings that decide where every item sits in the file; a
/// restart needs all of them unchanged. `-I` decides no position, but
/// memcached refuses a changed one too (an item past the new limit must
/// not come back).
fn layout_settings(cfg: &Config, slabs: &Slabs) -> Vec<(String, String)> {
    let sizes: Vec<String> = slabs
        .info()
        .iter()
        .map(|c| c.chunk_size.to_string())
        .collect();
    [
        // memcached's names, in the order its metadata has them, so the
        // first difference is the one memcached would name.
        ("maxbytes", cfg.mem_limit.to_string()),
        ("chunk_size", cfg.chunk_size.to_string()),
        ("item_size_max", cfg.item_size_max.to_string()),
        ("slab_chunk_size_max", cfg.chunk_max().to_string()),
        ("slab_page_size", cfg.page_size.to_string()),
        ("use_cas", cfg.use_cas.to_string()),
        // Debug prints the shortest string that reads back as the same f64.
        ("growth_factor", format!("{:?}", cfg.growth_factor)),
        ("slab_classes", sizes.join(",")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn corrupt(why: impl std::fmt::Display) -> String {
    format!("[restart] corrupt metadata file: {why}")
}

fn num<T: std::str::FromStr>(name: &str, v: Option<&str>) -> Result<T, String> {
    v.filter(|s| s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt(format!("bad {name}")))
}

impl Meta {
    pub fn current(
        cfg: &Config,
        slabs: &Slabs,
        state: State,
        pages: Vec<SavedPage>,
        lrus: Vec<SavedLru>,
    ) -> Meta {
        Meta {
            settings: layout_settings(cfg, slabs),
            state,
            pages,
            lrus,
            cas_id: state.cas_id,
            oldest_live: state.oldest_live,
            oldest_cas: state.oldest_cas,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "{MAGIC} {FORMAT}");
        let _ = writeln!(s, "version {VERSION}");
        for (k, v) in &self.settings {
            let _ = writeln!(s, "{k} {v}");
        }
        let st = &self.state;
        let _ = writeln!(s, "process_started {}", st.process_started);
        let _ = writeln!(s, "current_time {}", st.current_time);
        let _ = writeln!(s, "stop_time {}", st.stop_time);
        let _ = writeln!(s, "current_cas {}", st.cas_id);
        let _ = writeln!(s, "oldest_live {}", st.oldest_live);
        let _ = writeln!(s, "oldest_cas {}", st.oldest_cas);
        for p in &self.pages {
            let class = p.class.map_or("-".to_string(), |c| c.to_string());
            let _ = writeln!(s, "page {} {} {class} {:016x}", p.slot, p.off, p.sum);
        }
        for l in &self.lrus {
            let _ = writeln!(
                s,
                "lru {} {} {} {} {}",
                l.class, l.seg, l.head, l.tail, l.count
            );
        }
        let sum = fnv1a(s.as_bytes());
        let _ = writeln!(s, "checksum {sum:016x}");
        s.into_bytes()
    }

    /// Reads a metadata file; Err is the log line saying why it is not one.
    pub fn parse(bytes: &[u8]) -> Result<Meta, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| corrupt("not text"))?;
        let body_end = text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
        let (body, last) = text.split_at(body_end);
        let sum = last
            .strip_prefix("checksum ")
            .and_then(|s| s.strip_suffix('\n'))
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| corrupt("no checksum line (truncated?)"))?;
        if sum != fnv1a(body.as_bytes()) {
            return Err(corrupt("checksum mismatch"));
        }
        let mut lines = body.lines();
        let head = lines.next().unwrap_or("");
        if head != format!("{MAGIC} {FORMAT}") {
            return Err(format!(
                "[restart] metadata is not mnemo's format {FORMAT} ({head:?})"
            ));
        }
        let mut m = Meta {
            settings: Vec::new(),
            state: State::default(),
            pages: Vec::new(),
            lrus: Vec::new(),
            cas_id: 0,
            oldest_live: 0,
            oldest_cas: 0,
        };
        let mut seen_state = 0;
        let mut version = None;
        for line in lines {
            let mut f = line.split(' ');
            let name = f.next().unwrap_or("");
            let v = f.next();
            match name {
                "version" => version = v.map(str::to_string),
                "maxbytes"
                | "slab_page_size"
                | "chunk_size"
                | "growth_factor"
                | "slab_chunk_size_max"
                | "item_size_max"
                | "use_cas"
                | "slab_classes" => {
                    m.settings
                        .push((name.to_string(), v.unwrap_or("").to_string()));
                }
                "process_started" => m.state.process_started = num(name, v)?,
                "current_time" => m.state.current_time = num(name, v)?,
                "stop_time" => m.state.stop_time = num(name, v)?,
                "current_cas" => m.state.cas_id = num(name, v)?,
                "oldest_live" => m.state.oldest_live = num(name, v)?,
                "oldest_cas" => m.state.oldest_cas = num(name, v)?,
                "page" => {
                    let off = f.next();
                    let class = match f.next() {
                        Some("-") => None,
                        c => Some(num::<u8>("page class", c)?),
                    };
                    let sum = f
                        .next()
                        .filter(|s| s.len() == 16)
                        .and_then(|s| u64::from_str_radix(s, 16).ok())
                        .ok_or_else(|| corrupt("bad page checksum"))?;
                    m.pages.push(SavedPage {
                        slot: num("page slot", v)?,
                        off: num("page offset", off)?,
                        class,
                        sum,
                    });
                }
                "lru" => {
                    let (seg, head, tail, count) = (f.next(), f.next(), f.next(), f.next());
                    m.lrus.push(SavedLru {
                        class: num("lru class", v)?,
                        seg: num("lru segment", seg)?,
                        head: num("lru head", head)?,
                        tail: num("lru tail", tail)?,
                        count: num("lru count", count)?,
                    });
                }
                _ => return Err(corrupt(format!("unknown line {name:?}"))),
            }
            if matches!(
                name,
                "process_started"
                    | "current_time"
                    | "stop_time"
                    | "current_cas"
                    | "oldest_live"
                    | "oldest_cas"
            ) {
                seen_state += 1;
            }
            if f.next().is_some() {
                return Err(corrupt(format!("extra fields on {name:?}")));
            }
        }
        match version.as_deref() {
            Some(VERSION) => {}
            v => {
                return Err(format!(
                    "[restart] metadata from mnemo {} (this is {VERSION})",
                    v.unwrap_or("?")
                ))
            }
        }
        if seen_state != 6 || m.settings.len() != 8 {
            return Err("[restart] missing some metadata lines".into());
        }
        m.cas_id = m.state.cas_id;
        m.oldest_live = m.state.oldest_live;
        m.oldest_cas = m.state.oldest_cas;
        Ok(m)
    }

    /// Whether these settings lay items out as the saved ones did; Err is
    /// memcached's log line naming the first that differs.
    pub fn check(&self, cfg: &Config, slabs: &Slabs) -> Result<(), String> {
        for (k, v) in layout_settings(cfg, slabs) {
            match self.settings.iter().find(|(name, _)| *name == k) {
                Some((_, old)) if *old == v => {}
                // memcached stops reading at the difference, so it also
                // finds lines missing; its log says both.
                Some((_, old)) => {
                    return Err(format!(
                    "[restart] restart incompatible due to setting for [{k}] [old value: {old}]\n\
                         [restart] missing some metadata lines"
                ))
                }
                None => return Err("[restart] missing some metadata lines".into()),
            }
        }
        Ok(())
    }

    pub fn resume_clock(&self) -> Result<Clock, String> {
        Clock::resumed(
            self.state.process_started,
            self.state.current_time,
            self.state.stop_time,
        )
        .ok_or_else(|| "the wall clock is before the stop".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::Layout;

    fn slabs(cfg: &Config) -> Slabs {
        Slabs::new(
            Layout::new(cfg.use_cas),
            cfg.page_size,
            cfg.growth_factor,
            cfg.chunk_size,
            cfg.chunk_max(),
            cfg.mem_limit,
            false,
        )
    }

    fn sample(cfg: &Config) -> Meta {
        Meta::current(
            cfg,
            &slabs(cfg),
            State {
                process_started: 1_700_000_000,
                current_time: 500,
                stop_time: 1_700_000_500,
                cas_id: 42,
                oldest_live: 0,
                oldest_cas: 0,
            },
            vec![
                SavedPage {
                    slot: 0,
                    off: 0,
                    class: Some(3),
                    sum: 0x1234,
                },
                SavedPage {
                    slot: 1,
                    off: 5,
                    class: None,
                    sum: 0,
                },
            ],
            vec![SavedLru {
                class: 3,
                seg: 0,
                head: 1,
                tail: 2,
                count: 2,
            }],
        )
    }

    #[test]
    fn round_trips_and_checks_settings() {
        let cfg = Config::default();
        let bytes = sample(&cfg).encode();
        let m = Meta::parse(&bytes).expect("parses");
        assert_eq!(m.pages, sample(&cfg).pages);
        assert_eq!(m.lrus, sample(&cfg).lrus);
        assert_eq!(m.cas_id, 42);
        assert!(m.check(&cfg, &slabs(&cfg)).is_ok());
        let other = Config {
            item_size_max: 2 << 20,
            ..Config::default()
        };
        let e = m.check(&other, &slabs(&other)).unwrap_err();
        assert!(e.contains("[item_size_max] [old value: 1048576]"), "{e}");
    }

    #[test]
    fn any_damage_is_refused_without_panicking() {
        let bytes = sample(&Config::default()).encode();
        for cut in 0..bytes.len() {
            assert!(Meta::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x04;
            assert!(Meta::parse(&b).is_err(), "flip at {i}");
        }
        let other = String::from_utf8(bytes)
            .expect("text")
            .replace(&format!("version {VERSION}"), "version 0.0.0-other");
        // Re-sealed, so only the version is wrong.
        let body = other.rsplit_once("checksum").expect("sum").0.to_string();
        let resealed = format!("{body}checksum {:016x}\n", fnv1a(body.as_bytes()));
        let e = Meta::parse(resealed.as_bytes()).unwrap_err();
        assert!(e.contains("0.0.0-other"), "{e}");
    }
}
