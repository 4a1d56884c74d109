//! Issue #3: filled far past `-m` with a mix of sizes, the server's RSS
//! stays within its idle RSS plus `-m` plus the overhead `stats` reports
//! (hash table, read and reply buffers).
mod support;

use support::{Kind, Server};

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

fn stat(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("STAT {name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in stats"))
}

#[test]
fn rss_stays_within_limit_plus_reported_overhead() {
    let server = Server::start(Kind::Mnemo, &["-m", "16", "-t", "2"]);
    let idle = rss_bytes(server.pid());
    let mut c = server.connect();
    // 40% 64 B, 30% 512 B, 20% 4 KB, 9% 32 KB, 1% 128 KB: about 5 KB a
    // value, so 15,000 sets write about 4x the 16 MB limit.
    let sizes: Vec<usize> = std::iter::repeat_n(64, 40)
        .chain(std::iter::repeat_n(512, 30))
        .chain(std::iter::repeat_n(4096, 20))
        .chain(std::iter::repeat_n(32768, 9))
        .chain(std::iter::once(131072))
        .collect();
    let mut written = 0usize;
    for i in 0..15_000usize {
        let n = sizes[(i * 37) % sizes.len()];
        let mut req = format!("set key:{i} 0 0 {n} noreply\r\n").into_bytes();
        req.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, n));
        req.extend_from_slice(b"\r\n");
        c.send(&req);
        written += n;
    }
    c.send(b"stats\r\n");
    let text = String::from_utf8(c.read_until(b"END\r\n")).expect("utf8");
    let limit = stat(&text, "limit_maxbytes");
    assert!(written as u64 > 3 * limit, "wrote only {written} bytes");
    assert!(stat(&text, "evictions") > 0);
    let reported = stat(&text, "hash_bytes")
        + stat(&text, "read_buf_bytes")
        + stat(&text, "response_obj_bytes");
    let rss = rss_bytes(server.pid());
    // 2 MB of slack: thread stacks and allocator bookkeeping that no stat
    // names.
    let bound = idle + limit + reported + 2 * 1024 * 1024;
    assert!(
        rss <= bound,
        "RSS {rss} over idle {idle} + limit {limit} + reported {reported} + 2 MB"
    );
}

fn anon_huge_bytes(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `-o hugepages`: slab pages come from one range advised for transparent
/// huge pages. Values must come back intact through evictions, and where
/// the kernel offers THP (mode `always` or `madvise`) the slabs must really
/// sit on huge pages.
#[test]
fn huge_page_slabs_serve_values_intact_and_use_huge_pages() {
    support::slab_only!("-o hugepages places slab pages");
    let server = Server::start(Kind::Mnemo, &["-m", "16", "-t", "2", "-o", "hugepages"]);
    let mut c = server.connect();
    let sizes = [64usize, 512, 4096, 32768, 131072, 700];
    let value = |i: usize| -> Vec<u8> {
        let n = sizes[i % sizes.len()];
        (0..n).map(|j| b'a' + ((i * 7 + j) % 26) as u8).collect()
    };
    let total = 6_000;
    for i in 0..total {
        let v = value(i);
        let mut req = format!("set key:{i} {i} 0 {} noreply\r\n", v.len()).into_bytes();
        req.extend_from_slice(&v);
        req.extend_from_slice(b"\r\n");
        c.send(&req);
    }
    // The newest keys survive the evictions the older ones caused.
    for i in total - 50..total {
        let v = value(i);
        let mut want = format!("VALUE key:{i} {i} {}\r\n", v.len()).into_bytes();
        want.extend_from_slice(&v);
        want.extend_from_slice(b"\r\nEND\r\n");
        let got = c.request(format!("get key:{i}\r\n").as_bytes());
        assert!(
            got == want,
            "key:{i} came back altered ({} bytes)",
            got.len()
        );
    }
    let text = String::from_utf8(c.request(b"stats\r\n")).expect("utf8");
    assert!(stat(&text, "evictions") > 0);
    let mode =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let thp = mode.contains("[always]") || mode.contains("[madvise]");
    let huge = anon_huge_bytes(server.pid());
    eprintln!("THP mode {:?}: {huge} bytes on huge pages", mode.trim());
    if thp {
        assert!(huge >= 8 << 20, "only {huge} bytes on huge pages at -m 16");
    }
}
