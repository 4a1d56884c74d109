#!/usr/bin/env python3
"""A stand-in for a replication peer on its own machine: pulls a mnemo's
stream (`mn_repl HELLO`, full copy then the stream, docs/REPLICATION.md
section 5) and drops it, using next to no CPU, so that a benchmark on
two cores can measure what streaming to peers costs the sending node
without the peers' own work competing for the cores. Reconnects whenever
the node restarts. Never ACKs: the sender does not wait for ACKs.

    scripts/bench/repl-sink.py PORT NODE_ID [BYTES_FILE]

BYTES_FILE, if given, is rewritten with the bytes received so far about
once a second."""
import socket
import sys
import time

port, node = int(sys.argv[1]), int(sys.argv[2])
out = sys.argv[3] if len(sys.argv) > 3 else None
total, last = 0, 0.0
buf = bytearray(1 << 20)
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        time.sleep(0.05)
        continue
    s.settimeout(None)
    s.sendall(b"mn_repl HELLO %d 2 0000000000000000 0 0\r\n" % node)
    try:
        while True:
            n = s.recv_into(buf)
            if n == 0:
                break
            total += n
            now = time.monotonic()
            if out and now - last > 1:
                last = now
                with open(out, "w") as f:
                    f.write("%d\n" % total)
    except OSError:
        pass
    s.close()
