#!/usr/bin/env python3
"""Issue #7: what a client that pipelines gets of a big value and never
reads the answers costs the server.

Starts SERVER (the rest of the command line) with `-m 64 -t 2`, stores one
512 KB value, then for each protocol (text get, meta mg, binary GET) opens
a connection with a small receive buffer, pipelines up to 100,000 gets of
that value without reading, waits for the server to settle, and reports
how much the server's RSS grew for that stuck reader.

    scripts/bench/stuck-readers.py memcached
    scripts/bench/stuck-readers.py target/release/mnemo
"""
import os
import socket
import struct
import subprocess
import sys
import time

PORT = 22178
VALUE = 512 * 1024


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def flood(one, count):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", PORT))
    s.setblocking(False)
    data = one * count
    sent = 0
    deadline = time.time() + 3
    while sent < len(data) and time.time() < deadline:
        try:
            sent += s.send(data[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.02)
    return s, sent // len(one)


def main():
    cmd = sys.argv[1:] or ["target/release/mnemo"]
    args = cmd + ["-p", str(PORT), "-U", "0", "-l", "127.0.0.1", "-m", "64", "-t", "2"]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    srv = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    held = []
    try:
        time.sleep(0.5)
        c = socket.create_connection(("127.0.0.1", PORT))
        c.sendall(b"set big 0 0 %d\r\n" % VALUE + b"B" * VALUE + b"\r\n")
        assert c.recv(100) == b"STORED\r\n"
        base = rss_kb(srv.pid)
        binary_get = struct.pack(">BBHBBHIIQ", 0x80, 0, 3, 0, 0, 0, 3, 0, 0) + b"big"
        print(f"{cmd[0]}: idle RSS {base / 1024:.1f} MB with one {VALUE // 1024} KB value")
        for name, one in [("text get", b"get big\r\n"), ("meta mg", b"mg big v\r\n"),
                          ("binary GET", binary_get)]:
            before = rss_kb(srv.pid)
            s, taken = flood(one, 100_000)
            time.sleep(1)  # let the server fill its side
            held.append(s)
            grew = rss_kb(srv.pid) - before
            print(f"  {name:10}: {taken} requests sent (socket buffers take them all); "
                  f"RSS +{grew / 1024:.2f} MB")
        c.sendall(b"get big\r\n")
        time.sleep(0.3)
        ok = c.recv(64).startswith(b"VALUE big")
        print(f"  others still served: {'yes' if ok else 'NO'}; "
              f"RSS with all three stuck: +{(rss_kb(srv.pid) - base) / 1024:.2f} MB")
    finally:
        srv.kill()
        srv.wait()


if __name__ == "__main__":
    main()
