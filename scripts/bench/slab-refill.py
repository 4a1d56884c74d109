#!/usr/bin/env python3
"""Issue #12: how long a refill in another size waits for slab pages.

Starts SERVER with `-m MB` (and any further flags), fills it with 100 B
values (twice what fits), sends `flush_all`, then keeps writing 10 KB
values and prints once a second how many pages the 10 KB class holds.
Done when it holds all but one page per class: memcached's automover
returns an idle class's pages to the global pool once its window
(`slab_automove_window`, 30 s) has passed without the class growing or
evicting, and the class being written takes them from there.

    scripts/bench/slab-refill.py memcached 64
    scripts/bench/slab-refill.py target/debug/mnemo 64
    scripts/bench/slab-refill.py target/debug/mnemo 16 -o slab_automove_window=3
"""
import os
import re
import socket
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    server, mb, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    port = free_port()
    args = [server, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", str(mb)]
    if os.getuid() == 0:
        args += ["-u", "root"]
    proc = subprocess.Popen(args + extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run(port, mb)
    finally:
        proc.kill()


def run(port, mb):
    for _ in range(200):
        try:
            conn = socket.create_connection(("127.0.0.1", port))
            break
        except OSError:
            time.sleep(0.05)
    else:
        sys.exit("server did not start")
    reader = conn.makefile("rb")

    def request(line):
        conn.sendall(line)
        out = b""
        while True:
            got = reader.readline()
            out += got
            if got in (b"END\r\n", b"OK\r\n") or got.startswith((b"VERSION", b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
                return out.decode()

    def stat(text, name):
        return int(re.search(r"STAT %s (\d+)" % name, text).group(1))

    def slabs():
        text = request(b"stats slabs\r\n")
        pages = {int(k): int(v) for k, v in re.findall(r"STAT (\d+):total_pages (\d+)", text)}
        chunk = {int(k): int(v) for k, v in re.findall(r"STAT (\d+):chunk_size (\d+)", text)}
        return pages, chunk, stat(request(b"stats\r\n"), "slab_global_page_pool")

    def write(prefix, size, n, batch=500):
        value = b"v" * size
        for start in range(0, n, batch):
            conn.sendall(b"".join(
                b"set %s%d 0 0 %d noreply\r\n%s\r\n" % (prefix, i, size, value)
                for i in range(start, min(n, start + batch))))
        request(b"version\r\n")

    write(b"s", 100, mb * 2 * 1024 * 1024 // 100)
    pages, _, _ = slabs()
    print(f"filled: pages per class {pages}", flush=True)
    request(b"flush_all\r\n")
    flushed = time.time()
    n = 0
    last = 0.0
    while time.time() - flushed < 180:
        write(b"b%d_" % n, 10 * 1024, 50)
        n += 1
        if time.time() - last < 1:
            continue
        last = time.time()
        pages, chunk, pool = slabs()
        big = sum(p for k, p in pages.items() if chunk[k] > 10 * 1024)
        total = sum(pages.values())
        t = time.time() - flushed
        print(f"t={t:5.1f}s 10 KB class {big} of {total} pages, pool {pool}", flush=True)
        if big >= total - len(pages):
            print(f"refilled {t:.1f} s after flush_all")
            return
    print("not refilled after 180 s")


main()
