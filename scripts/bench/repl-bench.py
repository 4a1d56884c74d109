#!/usr/bin/env python3
"""Issue #13 benchmarks (b), (c) and (d), on release builds of mnemo.

    scripts/bench/repl-bench.py lag [--rate 50000] [--seconds 12]
    scripts/bench/repl-bench.py resync [--mb 1024]
    scripts/bench/repl-bench.py memory [--keys 200000]

lag:    two nodes A (core 1) and B (core 0) pulling from each other;
        mnemo-bench (core 0) sets 32-byte values on A at --rate. A probe
        sets a fresh key on A every 20 ms and polls B until it is there:
        lag = first read on B that sees it - the set's send time (so it
        includes one client round trip and the polling interval, ~0.3 ms).
        Also samples B's own `peer:A:lag_ms` (from PING frames).
resync: A (core 1) filled with ~--mb of 1000-byte values by mnemo-bench;
        then an empty B (core 0) starts with --peer A; the time from B's
        start to its link streaming gives items/s and MB/s (B's bytes_in).
memory: the same writes (and deletes) on a standalone node and on a node
        with a peer; RSS of both and the `stats replication` backlog and
        tombstone figures.

Prints the machine's load average before and after each run: the machine
is shared, and only figures from the same run compare.
"""

import argparse
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MNEMO = os.path.join(ROOT, "target/release/mnemo")
BENCH = os.path.join(ROOT, "target/release/mnemo-bench")
USER = ["-u", "root"] if os.geteuid() == 0 else []
procs = []


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(port, core, args, log):
    cmd = ["taskset", "-c", str(core), MNEMO, "-U", "0", "-l", "127.0.0.1",
           "-p", str(port)] + USER + args
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    procs.append(p)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            time.sleep(0.05)
    sys.exit(f"mnemo on {port} did not start; see {log}")


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def until_end(self, req):
        self.s.sendall(req)
        out = []
        while True:
            line = self.line()
            if line == b"END":
                return out
            out.append(line)

    def stats(self, sub=""):
        req = f"stats {sub}\r\n" if sub else "stats\r\n"
        d = {}
        for line in self.until_end(req.encode()):
            p = line.decode().split(" ", 2)
            if len(p) == 3 and p[0] == "STAT":
                d[p[1]] = p[2]
        return d

    def pipeline(self, reqs, reply_lines=1, batch=1000):
        for i in range(0, len(reqs), batch):
            part = reqs[i:i + batch]
            self.s.sendall(b"".join(part))
            for _ in range(len(part) * reply_lines):
                self.line()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_streaming(conn, peer, limit=600):
    t0 = time.time()
    while time.time() - t0 < limit:
        if conn.stats("replication").get(f"peer:{peer}:state") == "streaming":
            return time.time() - t0
        time.sleep(0.01)
    sys.exit(f"link to {peer} not streaming after {limit} s")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def lag(args):
    pa, pb = free_port(), free_port()
    tmp = os.path.join(ROOT, "target/bench-repl")
    os.makedirs(tmp, exist_ok=True)
    a = start(pa, 1, ["-t", "1", "-m", "1024", "--node-id", "1", "--peer", f"127.0.0.1:{pb}"], f"{tmp}/lag-a.log")
    start(pb, 0, ["-t", "1", "-m", "1024", "--node-id", "2", "--peer", f"127.0.0.1:{pa}"], f"{tmp}/lag-b.log")
    ca, cb = Conn(pa), Conn(pb)
    wait_streaming(cb, f"127.0.0.1:{pa}")
    print(f"load average before: {load()}")
    bench = subprocess.Popen(
        ["taskset", "-c", "0", BENCH, "-s", f"127.0.0.1:{pa}", "--ratio", "1:0", "-v", "32",
         "--keys", "100000", "-c", "20", "--rate", str(args.rate), "-D", str(args.seconds),
         "-q", "--server-pid", str(a.pid)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    lags, stat_lags, missing = [], [], 0
    end = time.time() + args.seconds - 2
    i = 0
    while time.time() < end:
        i += 1
        key = f"lagprobe{i}".encode()
        t0 = time.perf_counter()
        ca.s.sendall(b"set " + key + b" 0 0 1\r\nx\r\n")
        ca.line()
        seen = None
        while time.perf_counter() - t0 < 5:
            cb.s.sendall(b"mg " + key + b"\r\n")
            if cb.line() != b"EN":
                seen = time.perf_counter()
                break
            # B, the load generator and this probe share core 0: poll
            # gently, so the probe measures B rather than starving it.
            time.sleep(0.0002)
        if seen is None:
            missing += 1
        else:
            lags.append((seen - t0) * 1000)
        if i % 10 == 0:
            v = cb.stats("replication").get(f"peer:127.0.0.1:{pa}:lag_ms")
            if v is not None:
                stat_lags.append(int(v))
        time.sleep(0.02)
    out, _ = bench.communicate()
    print(out.strip())
    # The same load on a standalone node, for its CPU: the cost of
    # replicating at this rate.
    ps = free_port()
    alone = start(ps, 1, ["-t", "1", "-m", "1024"], f"{tmp}/lag-standalone.log")
    ref = subprocess.run(
        ["taskset", "-c", "0", BENCH, "-s", f"127.0.0.1:{ps}", "--ratio", "1:0", "-v", "32",
         "--keys", "100000", "-c", "20", "--rate", str(args.rate), "-D", str(args.seconds),
         "-q", "--server-pid", str(alone.pid)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    print("standalone, same load: " + " ".join(l for l in ref.splitlines() if l.startswith("server")))
    print(f"load average after: {load()}")
    print(f"probes {len(lags)} (missing {missing}): lag p50 {pct(lags, .5):.2f} ms, "
          f"p99 {pct(lags, .99):.2f} ms, max {max(lags):.2f} ms")
    if stat_lags:
        print(f"B's peer lag_ms stat: p50 {pct(stat_lags, .5)} ms, p99 {pct(stat_lags, .99)} ms "
              f"({len(stat_lags)} samples)")


def resync(args):
    pa, pb = free_port(), free_port()
    tmp = os.path.join(ROOT, "target/bench-repl")
    os.makedirs(tmp, exist_ok=True)
    mem = str(args.mb + args.mb // 4)
    # A is replicating (it names B, which is not there yet) so its items
    # carry versions, as a node of a cluster would.
    start(pa, 1, ["-t", "1", "-m", mem, "--node-id", "1", "--peer", f"127.0.0.1:{pb}"], f"{tmp}/resync-a.log")
    keys = args.mb * 1000
    subprocess.run(
        ["taskset", "-c", "0", BENCH, "-s", f"127.0.0.1:{pa}", "--ratio", "0:1", "-v", "1000",
         "--keys", str(keys), "--fill", "-D", "1", "-q", "-c", "8"],
        check=True, stdout=subprocess.DEVNULL)
    ca = Conn(pa)
    s = ca.stats()
    print(f"A: {s['curr_items']} items, {int(s['bytes']) / 1e6:.0f} MB")
    print(f"load average before: {load()}")
    t0 = time.time()
    start(pb, 0, ["-t", "1", "-m", mem, "--node-id", "2", "--peer", f"127.0.0.1:{pa}"], f"{tmp}/resync-b.log")
    cb = Conn(pb)
    wait_streaming(cb, f"127.0.0.1:{pa}")
    took = time.time() - t0
    sb = cb.stats()
    rb = cb.stats("replication")
    items = int(sb["curr_items"])
    bytes_in = int(rb[f"peer:127.0.0.1:{pa}:bytes_in"])
    print(f"load average after: {load()}")
    print(f"full resync: {items} items, {bytes_in / 1e6:.0f} MB on the wire in {took:.2f} s "
          f"(from B's start, its start-up included): {items / took:,.0f} items/s, "
          f"{bytes_in / 1e6 / took:.1f} MB/s")


def memory(args):
    pa, pb, ps = free_port(), free_port(), free_port()
    tmp = os.path.join(ROOT, "target/bench-repl")
    os.makedirs(tmp, exist_ok=True)
    a = start(pa, 1, ["-t", "1", "-m", "1024", "--node-id", "1", "--peer", f"127.0.0.1:{pb}"], f"{tmp}/mem-a.log")
    b = start(pb, 0, ["-t", "1", "-m", "1024", "--node-id", "2", "--peer", f"127.0.0.1:{pa}"], f"{tmp}/mem-b.log")
    s = start(ps, 1, ["-t", "1", "-m", "1024"], f"{tmp}/mem-s.log")
    ca, cb, cs = Conn(pa), Conn(pb), Conn(ps)
    wait_streaming(cb, f"127.0.0.1:{pa}")
    print(f"load average: {load()}")
    rows = [("start", rss_kb(a.pid), rss_kb(s.pid), ca.stats("replication"))]
    sets = [f"set key:{i:08d} 0 0 32\r\n{'v' * 32}\r\n".encode() for i in range(args.keys)]
    for c in (ca, cs):
        c.pipeline(sets)
    time.sleep(1)
    rows.append((f"{args.keys} sets of 32 B", rss_kb(a.pid), rss_kb(s.pid), ca.stats("replication")))
    # A TTL change on a replicating node keeps its value's and its
    # expiry's versions in the side table (docs/REPLICATION.md section 2).
    touches = [f"touch key:{i:08d} 100000\r\n".encode() for i in range(args.keys)]
    for c in (ca, cs):
        c.pipeline(touches)
    time.sleep(1)
    rows.append((f"{args.keys} touches", rss_kb(a.pid), rss_kb(s.pid), ca.stats("replication")))
    dels = [f"delete key:{i:08d}\r\n".encode() for i in range(args.keys)]
    for c in (ca, cs):
        c.pipeline(dels)
    time.sleep(1)
    rows.append((f"{args.keys} deletes", rss_kb(a.pid), rss_kb(s.pid), ca.stats("replication")))
    print("| after | RSS replicated (MB) | RSS standalone (MB) | difference (MB) | backlog bytes | tombstones | tombstone bytes | side-table entries |")
    print("|---|---|---|---|---|---|---|---|")
    for name, ra, rs, st in rows:
        print(f"| {name} | {ra / 1024:.1f} | {rs / 1024:.1f} | {(ra - rs) / 1024:.1f} | "
              f"{st.get('repl_backlog_bytes')} of {st.get('repl_backlog_size')} | "
              f"{st.get('repl_tombstones')} | {st.get('repl_tombstone_bytes')} | {st.get('repl_counters')} |")
    print(f"B (the peer) RSS {rss_kb(b.pid) / 1024:.1f} MB, curr_items {cb.stats()['curr_items']}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    l = sub.add_parser("lag")
    l.add_argument("--rate", type=int, default=50000)
    l.add_argument("--seconds", type=int, default=12)
    r = sub.add_parser("resync")
    r.add_argument("--mb", type=int, default=1024)
    m = sub.add_parser("memory")
    m.add_argument("--keys", type=int, default=200000)
    args = p.parse_args()
    for binary in (MNEMO, BENCH):
        if not os.access(binary, os.X_OK):
            sys.exit("build first: cargo build --release -p mnemo-server -p mnemo-bench")
    try:
        {"lag": lag, "resync": resync, "memory": memory}[args.what](args)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
