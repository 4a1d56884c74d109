#!/usr/bin/env python3
"""Issue #14: bytes held across the backends per byte of value, an
`erasure: 3+2` pool against 3 whole copies (`erasure: 1+2` with
`erasure_min_size` above the value: the value whole on M+1 = 3 servers).

Starts five memcached (-m 1024) and PROXY per size and pool, writes
20 MB of values (500 to 20000 keys) through the proxy, then sums every
backend's `bytes` stat (item bytes) and, from `stats slabs`, used chunks
times chunk size (memory including slab rounding).

    cargo build --release -p mnemo-proxy
    scripts/bench/ec-memory.py target/release/mnemo-proxy 16384,1024,256
"""
import socket, subprocess, time, sys, os, tempfile
PROXY = sys.argv[1]
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def wait(p):
    for _ in range(500):
        try: socket.create_connection(("127.0.0.1", p)).close(); return
        except OSError: time.sleep(0.01)
    raise SystemExit("no port %d" % p)
def cmd(p, data, end=b"END\r\n"):
    s = socket.create_connection(("127.0.0.1", p)); s.sendall(data); b = b""
    while not b.endswith(end): 
        c = s.recv(1 << 20)
        if not c: break
        b += c
    s.close(); return b
def slab_bytes(p):
    b = cmd(p, b"stats slabs\r\n").decode()
    sz, used = {}, {}
    for l in b.split("\r\n"):
        parts = l.split(" ")
        if len(parts) == 3 and ":" in parts[1]:
            cls, name = parts[1].split(":")
            if name == "chunk_size": sz[cls] = int(parts[2])
            if name == "used_chunks": used[cls] = int(parts[2])
    return sum(sz[c] * used.get(c, 0) for c in sz)
def item_bytes(p):
    b = cmd(p, b"stats\r\n").decode()
    for l in b.split("\r\n"):
        if l.startswith("STAT bytes "): return int(l.split()[2])
def run(vsize, nkeys, min_size, km):
    procs = []; ports = []
    for _ in range(5):
        p = free_port(); ports.append(p)
        procs.append(subprocess.Popen(["/usr/bin/memcached", "-p", str(p), "-l", "127.0.0.1", "-U", "0", "-m", "1024", "-u", "root"]))
        wait(p)
    lp = free_port()
    conf = os.path.join(tempfile.mkdtemp(prefix="ec-memory-"), "p.yml")
    with open(conf, "w") as f:
        f.write("ec:\n  listen: 127.0.0.1:%d\n  hash: md5\n  erasure: %s\n  erasure_min_size: %d\n  servers:\n" % (lp, km, min_size))
        for p in ports: f.write("   - 127.0.0.1:%d:1\n" % p)
    px = subprocess.Popen([PROXY, "-c", conf, "-s", str(free_port()), "-a", "127.0.0.1", "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait(lp)
    s = socket.create_connection(("127.0.0.1", lp))
    val = b"v" * vsize
    for i in range(nkeys):
        s.sendall(b"set key:%08d 0 0 %d noreply\r\n%s\r\n" % (i, vsize, val))
    s.sendall(b"get key:00000000\r\n"); b = b""
    while not b.endswith(b"END\r\n"): b += s.recv(1 << 20)
    time.sleep(0.5)
    ib = sum(item_bytes(p) for p in ports); sb = sum(slab_bytes(p) for p in ports)
    px.kill(); [p.kill() for p in procs]; [p.wait() for p in procs + [px]]
    return ib / (nkeys * vsize), sb / (nkeys * vsize)
out = []
for vsize in [int(x) for x in sys.argv[2].split(",")]:
    n = max(500, min(20000, 20_000_000 // vsize))
    ec = run(vsize, n, 0, "3+2"); whole = run(vsize, n, 1 << 30, "1+2")
    out.append((vsize, n, ec, whole))
    print("value %6d B, %5d keys: items/value-byte EC 3+2 %.3f, 3 copies %.3f (ratio %.2f); slab chunks EC %.3f, 3 copies %.3f (ratio %.2f)" % (vsize, n, ec[0], whole[0], ec[0]/whole[0], ec[1], whole[1], ec[1]/whole[1]), flush=True)
