#!/usr/bin/env python3
"""Issue #7: where a server keeps values that are still arriving.

Starts SERVER (the rest of the command line, e.g. `memcached` or
`target/release/mnemo`) with `-m 16`, opens CLIENTS connections that each
send a 1 MB `set` but stall after 900 KB, and reports the server's RSS
before and during the stall, whether a small set and an item stored
before are still served meanwhile, and how the sets end once completed.

    scripts/bench/partial-values.py memcached
    scripts/bench/partial-values.py target/release/mnemo
"""
import os
import socket
import subprocess
import sys
import time

PORT = 22177
CLIENTS = 40
N = 1_000_000
SENT = 900_000


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def recv_line(s):
    data = b""
    try:
        while not data.endswith(b"\r\n"):
            chunk = s.recv(1)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    return data


def main():
    cmd = sys.argv[1:] or ["target/release/mnemo"]
    args = cmd + ["-p", str(PORT), "-U", "0", "-l", "127.0.0.1", "-m", "16"]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    srv = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        probe = socket.create_connection(("127.0.0.1", PORT))
        probe.settimeout(2)
        probe.sendall(b"set early 0 0 5\r\nfirst\r\n")
        assert recv_line(probe) == b"STORED\r\n"
        base = rss_mb(srv.pid)
        conns = []
        for i in range(CLIENTS):
            s = socket.create_connection(("127.0.0.1", PORT))
            s.settimeout(0.3)
            s.sendall(b"set part%d 0 0 %d\r\n" % (i, N) + b"x" * SENT)
            conns.append(s)
        time.sleep(1)
        stalled = rss_mb(srv.pid)
        early = {}
        for s in conns:
            line = recv_line(s)
            early[line] = early.get(line, 0) + 1
        probe.sendall(b"set small 0 0 1\r\nz\r\nget early\r\n")
        small = recv_line(probe)
        got_early = recv_line(probe)
        for s in conns:
            s.sendall(b"y" * (N - SENT) + b"\r\n")
        time.sleep(1)
        final = dict(early)
        final.pop(b"", None)
        for s in conns:
            line = recv_line(s)
            if line:
                final[line] = final.get(line, 0) + 1
        print(f"{cmd[0]}: RSS {base:.1f} MB idle, {stalled:.1f} MB with "
              f"{CLIENTS} values stalled at {SENT} of {N} bytes (-m 16)")
        print(f"  answered before the data was complete: "
              f"{ {k.decode().strip(): v for k, v in early.items() if k} }")
        print(f"  during the stall: small set {small.decode().strip()!r}, "
              f"earlier item {'kept' if got_early.startswith(b'VALUE') else 'gone'}")
        print(f"  final replies: { {k.decode().strip(): v for k, v in final.items()} }")
    finally:
        srv.kill()
        srv.wait()


if __name__ == "__main__":
    main()
