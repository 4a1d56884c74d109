//! Warm restart (`-e PATH`) through the real binary: a graceful stop
//! (SIGUSR1, `shutdown graceful`) keeps the cache for the next start with
//! the same file and settings; anything else (a kill -9, other settings,
//! a damaged or foreign file) starts cold with a log line, never a crash.
//! Where memcached 1.6.18 has the same behaviour (its log lines, `stats
//! settings`, `cache_memlimit`), the two are compared.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{show, Client, Kind, Server};

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("mnemo-warm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }
    fn file(&self) -> String {
        self.0.join("cache").display().to_string()
    }
    fn meta(&self) -> PathBuf {
        self.0.join("cache.meta")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(kind: Kind, dir: &Dir, extra: &[&str]) -> Server {
    let file = dir.file();
    let mut args = vec!["-e", file.as_str(), "-m", "64"];
    args.extend_from_slice(extra);
    Server::start(kind, &args)
}

fn signal(s: &Server, sig: i32) {
    // SAFETY: kill with a pid we started.
    unsafe {
        libc::kill(s.pid() as i32, sig);
    }
}

/// Stops `s` with SIGUSR1 and waits for it to exit.
fn graceful(mut s: Server) -> String {
    signal(&s, libc::SIGUSR1);
    let status = s
        .wait_exit(Duration::from_secs(20))
        .expect("exits on SIGUSR1");
    assert!(status.success(), "{status}: {}", s.log());
    s.log()
}

fn value(i: usize) -> Vec<u8> {
    let len = [0, 5, 100, 1_000, 20_000, 100_000, 600_000][i % 7];
    (0..len).map(|j| b'a' + ((i + j) % 26) as u8).collect()
}

const N: usize = 40;

fn fill(c: &mut Client) {
    for i in 0..N {
        let v = value(i);
        let exp = if i % 2 == 0 { 0 } else { 1000 };
        let mut req = format!("set key{i} {} {exp} {}\r\n", i * 13, v.len()).into_bytes();
        req.extend_from_slice(&v);
        req.extend_from_slice(b"\r\n");
        assert_eq!(c.request(&req), b"STORED\r\n", "key{i}");
    }
}

/// Every item with flags, CAS and value, as `gets` returns them.
fn gets_all(c: &mut Client) -> Vec<u8> {
    let keys: Vec<String> = (0..N).map(|i| format!("key{i}")).collect();
    c.request(format!("gets {}\r\n", keys.join(" ")).as_bytes())
}

fn until_end(c: &mut Client, req: &str) -> Vec<u8> {
    c.send(req.as_bytes());
    c.read_until(b"END\r\n")
}

/// Remaining TTL of `key` (meta `t`), -1 for none.
fn ttl(c: &mut Client, key: &str) -> i64 {
    let line = c.request(format!("mg {key} t\r\n").as_bytes());
    let s = String::from_utf8_lossy(&line);
    s.trim_end()
        .strip_prefix("HD t")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("mg {key} t: {s:?}"))
}

#[test]
fn sigusr1_keeps_items_flags_cas_ttl_and_lru_order() {
    support::slab_only!("-e keeps slab pages in the memory file");
    let dir = Dir::new("usr1");
    // Flat LRU: every item in COLD, whose order `stats cachedump` lists.
    let flat = ["-o", "no_lru_maintainer"];
    let s = start(Kind::Mnemo, &dir, &flat);
    assert!(
        s.log()
            .contains("[restart] no metadata save file, starting with a clean cache"),
        "{}",
        s.log()
    );
    let mut c = s.connect();
    fill(&mut c);
    assert_eq!(c.request(b"set ttl 0 100 1\r\nx\r\n"), b"STORED\r\n");
    // Time passes before the stop: the remaining TTL must carry on from
    // there, not start again at 100.
    std::thread::sleep(Duration::from_millis(2100));
    let ttl_before = ttl(&mut c, "ttl");
    assert!(ttl_before <= 98, "{ttl_before}");
    let before = gets_all(&mut c);
    let dump = until_end(&mut c, "lru_crawler metadump all\r\n");
    let order: Vec<Vec<u8>> = (1..=40)
        .map(|cls| until_end(&mut c, &format!("stats cachedump {cls} 0\r\n")))
        .collect();
    drop(c);
    let log = graceful(s);
    assert!(log.contains("Gracefully stopping"), "{log}");
    assert!(dir.meta().exists(), "no metadata after SIGUSR1: {log}");

    let s = start(Kind::Mnemo, &dir, &flat);
    assert!(!s.log().contains("[restart]"), "{}", s.log());
    assert!(
        !dir.meta().exists(),
        "metadata left while the file is in use"
    );
    let mut c = s.connect();
    assert_eq!(
        show(&until_end(&mut c, "lru_crawler metadump all\r\n")),
        show(&dump)
    );
    for (cls, o) in order.iter().enumerate() {
        let now = until_end(&mut c, &format!("stats cachedump {} 0\r\n", cls + 1));
        assert_eq!(show(&now), show(o), "class {}", cls + 1);
    }
    let after = gets_all(&mut c);
    assert!(after == before, "gets differ after the restart");
    let t = ttl(&mut c, "ttl");
    assert!(
        t <= ttl_before && t >= ttl_before - 5,
        "{t} vs {ttl_before}"
    );
    // New CAS values go on past the restored ones.
    assert_eq!(c.request(b"set fresh 0 0 1\r\nz\r\n"), b"STORED\r\n");
    let g = String::from_utf8_lossy(&c.request(b"gets fresh\r\n")).into_owned();
    let fresh: u64 = g
        .split_whitespace()
        .nth(4)
        .and_then(|v| v.parse().ok())
        .expect("cas");
    let max = String::from_utf8_lossy(&before)
        .lines()
        .filter(|l| l.starts_with("VALUE"))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(4)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .max()
        .expect("cas values");
    assert!(fresh > max, "{fresh} <= {max}");
}

#[test]
fn shutdown_graceful_keeps_the_cache_with_dash_a() {
    support::slab_only!("-e keeps slab pages in the memory file");
    let dir = Dir::new("shutdown");
    let mut s = start(Kind::Mnemo, &dir, &["-A"]);
    let mut c = s.connect();
    fill(&mut c);
    let before = gets_all(&mut c);
    c.send(b"shutdown graceful\r\n");
    let status = s.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success());
    drop(c);
    let s2 = start(Kind::Mnemo, &dir, &["-A"]);
    let mut c = s2.connect();
    assert!(
        gets_all(&mut c) == before,
        "items differ after shutdown graceful"
    );
    drop(s);
}

#[test]
fn kill_9_and_sigterm_start_cold() {
    support::slab_only!("-e keeps slab pages in the memory file");
    let dir = Dir::new("kill");
    for sig in [libc::SIGKILL, libc::SIGTERM] {
        let mut s = start(Kind::Mnemo, &dir, &[]);
        let mut c = s.connect();
        fill(&mut c);
        signal(&s, sig);
        s.wait_exit(Duration::from_secs(20)).expect("exits");
        drop(c);
        let s = start(Kind::Mnemo, &dir, &[]);
        assert!(
            s.log().contains("[restart] no metadata save file"),
            "{}",
            s.log()
        );
        let mut c = s.connect();
        assert_eq!(c.request(b"get key1\r\n"), b"END\r\n");
    }
    // Killed after a warm start: the metadata went when the file was taken.
    let s = start(Kind::Mnemo, &dir, &[]);
    fill(&mut s.connect());
    graceful(s);
    let mut s = start(Kind::Mnemo, &dir, &[]);
    assert!(!s.connect().request(b"get key1\r\n").starts_with(b"END"));
    signal(&s, libc::SIGKILL);
    s.wait_exit(Duration::from_secs(20)).expect("exits");
    let s = start(Kind::Mnemo, &dir, &[]);
    assert_eq!(s.connect().request(b"get key1\r\n"), b"END\r\n");
}

/// The `[restart]` lines of a start's log.
fn restart_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.starts_with("[restart]"))
        .map(str::to_string)
        .collect()
}

/// Saves a cache with `-m 64`, then starts `kind` again with `extra`.
fn restart_with(kind: Kind, dir: &Dir, extra: &[&str]) -> (Server, Vec<String>) {
    let s = start(kind, dir, &[]);
    fill(&mut s.connect());
    graceful(s);
    let file = dir.file();
    let mut args = vec!["-e", file.as_str()];
    args.extend_from_slice(extra);
    let s = Server::start(kind, &args);
    let lines = restart_lines(&s.log());
    (s, lines)
}

#[test]
fn other_settings_start_cold_with_memcacheds_log_lines() {
    support::slab_only!("-e keeps slab pages in the memory file");
    for extra in [
        &["-m", "128"][..],
        &["-m", "64", "-I", "2m"][..],
        &["-m", "64", "-C"][..],
    ] {
        let dm = Dir::new("settings-mc");
        let (_, mc) = restart_with(Kind::Memcached, &dm, extra);
        let dn = Dir::new("settings-mnemo");
        let (s, mn) = restart_with(Kind::Mnemo, &dn, extra);
        assert_eq!(mn, mc, "{extra:?}");
        assert!(
            mn.iter().any(|l| l.contains("restart incompatible")),
            "{mn:?}"
        );
        assert_eq!(s.connect().request(b"get key1\r\n"), b"END\r\n");
    }
}

fn cold_after(dir: &Dir, damage: impl Fn(&Dir), expect: &str) {
    let s = start(Kind::Mnemo, dir, &[]);
    fill(&mut s.connect());
    graceful(s);
    damage(dir);
    let s = start(Kind::Mnemo, dir, &[]);
    let log = s.log();
    assert!(log.contains(expect), "{log}");
    let mut c = s.connect();
    assert_eq!(c.request(b"get key1\r\n"), b"END\r\n");
    fill(&mut c);
    assert!(!c.request(b"get key1\r\n").starts_with(b"END"));
}

#[test]
fn damaged_or_foreign_files_start_cold() {
    support::slab_only!("-e keeps slab pages in the memory file");
    let dir = Dir::new("damage");
    let file = PathBuf::from(dir.file());
    let truncate = |d: &Dir| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.file())
            .expect("file");
        f.set_len(1 << 20).expect("truncate");
    };
    cold_after(&dir, truncate, "memory file is 1048576 bytes");
    let garbage = |d: &Dir| std::fs::write(d.meta(), b"garbage\n\x00\xff").expect("write");
    cold_after(&dir, garbage, "[restart] corrupt metadata file");
    let cut = |d: &Dir| {
        let m = std::fs::read(d.meta()).expect("meta");
        std::fs::write(d.meta(), &m[..m.len() - 30]).expect("write");
    };
    cold_after(&dir, cut, "[restart] corrupt metadata file");
    // Pages overwritten after the stop: caught by the page checksums.
    let scribble = |_: &Dir| {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .expect("file");
        f.seek(SeekFrom::Start(4096)).expect("seek");
        f.write_all(&[0x5a; 64]).expect("write");
    };
    cold_after(&dir, scribble, "does not match its metadata");
    // memcached's own metadata is not ours.
    let dm = Dir::new("foreign-mc");
    let s = start(Kind::Memcached, &dm, &[]);
    fill(&mut s.connect());
    graceful(s);
    let theirs = std::fs::read(dm.meta()).expect("memcached wrote metadata");
    cold_after(
        &dir,
        |d| std::fs::write(d.meta(), &theirs).expect("write"),
        "[restart] corrupt metadata file",
    );
}

#[test]
fn stats_settings_and_cache_memlimit_match_memcached() {
    support::slab_only!("-e keeps slab pages in the memory file");
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let dir = Dir::new(&format!("settings-{}", kind.name()));
        let s = start(kind, &dir, &[]);
        let mut c = s.connect();
        let st = String::from_utf8_lossy(&c.request(b"stats settings\r\n")).into_owned();
        assert!(
            st.contains(&format!("STAT memory_file {}\r\n", dir.file())),
            "{}: {st}",
            kind.name()
        );
        // Memory from the file cannot grow or shrink at run time.
        assert_eq!(
            show(&c.request(b"cache_memlimit 64\r\n")),
            show(b"MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n"),
            "{}",
            kind.name()
        );
    }
    let s = Server::mnemo(&[]);
    let st = String::from_utf8_lossy(&s.connect().request(b"stats settings\r\n")).into_owned();
    assert!(st.contains("STAT memory_file (null)\r\n"), "{st}");
}

/// SIGUSR1 at an awkward moment: one client part-way through a large
/// value (chunks reserved, not linked), another holding a large value it
/// does not read (pinned for its reply). The restart brings back exactly
/// the stored items: not the half-sent one, every other one intact.
#[test]
fn sigusr1_mid_value_and_mid_reply() {
    support::slab_only!("-e keeps slab pages in the memory file");
    let dir = Dir::new("awkward");
    let s = start(Kind::Mnemo, &dir, &[]);
    let mut c = s.connect();
    fill(&mut c);
    let before = gets_all(&mut c);
    let mut half = s.connect();
    half.send(b"set big 0 0 600000\r\n");
    half.send(&vec![b'x'; 300_000]);
    let mut slow = Client::connect_small_window(s.addr(), 4096);
    slow.send(b"get key6 key13 key20\r\n");
    // Let both requests reach the server before the signal.
    std::thread::sleep(Duration::from_millis(300));
    let log = graceful(s);
    assert!(dir.meta().exists(), "{log}");
    drop((half, slow));
    let s = start(Kind::Mnemo, &dir, &[]);
    let mut c = s.connect();
    assert_eq!(c.request(b"get big\r\n"), b"END\r\n");
    assert!(gets_all(&mut c) == before, "items differ after the restart");
}

/// A second server given a memory file in use refuses to start, and the
/// running one keeps its items (the file is neither emptied nor shared).
#[test]
fn a_memory_file_in_use_is_refused() {
    support::slab_only!("-e keeps slab pages in the memory file");
    let dir = Dir::new("locked");
    let s = start(Kind::Mnemo, &dir, &[]);
    let mut c = s.connect();
    fill(&mut c);
    let before = gets_all(&mut c);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .args(["-e", &dir.file(), "-m", "64", "-p", "0", "-U", "0"])
        .output()
        .expect("run a second mnemo");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    assert!(
        gets_all(&mut c) == before,
        "the running server's items changed"
    );
    graceful(s);
    assert!(dir.meta().exists());
}

fn stat(c: &mut Client, cmd: &str, name: &str) -> Vec<String> {
    String::from_utf8_lossy(&c.request(format!("{cmd}\r\n").as_bytes()))
        .lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| k.ends_with(name))
        .map(|(_, v)| v.to_string())
        .collect()
}

/// As memcached with `-e`, a cold start gives every class its first page
/// and puts the rest of the file in the global page pool (no class can
/// then need a page past the limit, which the file could not hold), and a
/// memory limit below one page per class is refused with its message.
#[test]
fn a_memory_file_is_preallocated_as_memcached_does() {
    support::slab_only!("-e keeps slab pages in the memory file");
    for kind in [Kind::Memcached, Kind::Mnemo] {
        let dir = Dir::new(&format!("prealloc-{}", kind.name()));
        let s = start(kind, &dir, &[]);
        let mut c = s.connect();
        let pages = stat(&mut c, "stats slabs", ":total_pages");
        assert!(
            pages.len() > 30 && pages.iter().all(|p| p == "1"),
            "{}: {pages:?}",
            kind.name()
        );
        let pool = stat(&mut c, "stats", "slab_global_page_pool");
        assert_eq!(
            pool,
            vec![(64 - pages.len()).to_string()],
            "{}",
            kind.name()
        );
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let small = dir.0.join("small").display().to_string();
        let out = std::process::Command::new(kind.program())
            .args(["-e", &small, "-m", "16", "-p", "0", "-U", "0"])
            .args(if root { &["-u", "root"][..] } else { &[][..] })
            .output()
            .expect("run");
        assert!(!out.status.success(), "{}", kind.name());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "Error while preallocating slab memory!\nIf using -L or other prealloc options, max memory must be at least {} megabytes.",
                pages.len()
            )),
            "{}: {err}",
            kind.name()
        );
    }
}
