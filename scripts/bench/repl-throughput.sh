#!/usr/bin/env bash
# Issue #13, benchmark (a): sets per server CPU-second on a node that
# replicates to two peers (A) beside the same node standalone (B), in one
# run, A B A B rounds (`mnemo-bench compare`). A and B run `-t 1 -m 1024`
# pinned to core 1, the load generator to core 0, A's two peers (each
# pulling from A and from each other, a full mesh) to PEERS_CORE. Server CPU is
# A's or B's own process (/proc/PID/stat), so A's figure includes the
# cost of recording every write and of streaming it to both peers.
#
#   scripts/bench/repl-throughput.sh [ROUNDS] [SECONDS]
#
# Needs: cargo build --release -p mnemo-server -p mnemo-bench.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}
SECS=${2:-5}
BENCH=target/release/mnemo-bench
MNEMO=target/release/mnemo
[ -x "$BENCH" ] && [ -x "$MNEMO" ] || { echo "build first: cargo build --release -p mnemo-server -p mnemo-bench" >&2; exit 1; }
user=()
[ "$(id -u)" -eq 0 ] && user=(-u root)
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
PA=$(free_port); P2=$(free_port); P3=$(free_port)
OUT=${OUT:-target/bench-repl}
mkdir -p "$OUT"

# The backlog covers a few seconds of these write rates (about 60 bytes a
# set): the peers share a core with the generator and fall behind under
# pipelined load, and with the 16 MB default each fall past the ring is a
# full copy walked on A during the round.
BACKLOG=${BACKLOG:-256m}
# PEERS_CORE=0 (the default): the peers share the generator's core, which
# then drives A less hard than B, and A's per-set CPU rises with the
# smaller batches. PEERS_CORE=1: they share A's core instead; the
# generator drives both alike, and A pays in cache and scheduling.
PEERS_CORE=${PEERS_CORE:-0}

peers=()
cleanup() { for p in "${peers[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
if [ "${PEERS:-mnemo}" = sink ]; then
    # PEERS=sink: two stand-ins for peers on machines of their own, which
    # pull A's stream and drop it (scripts/bench/repl-sink.py): A pays for
    # recording and sending everything twice, the cores stay free for A
    # and the generator. A cannot pull from them: MESH is 0.
    MESH=0
    for n in 2 3; do
        taskset -c "$PEERS_CORE" python3 scripts/bench/repl-sink.py "$PA" "$n" "$OUT/sink$n.bytes" &
        peers+=($!)
    done
else
    # The two peers: empty, pulling from A and from each other.
    taskset -c "$PEERS_CORE" "$MNEMO" -t 1 -m 1024 -U 0 "${user[@]}" -l 127.0.0.1 -p "$P2" --node-id 2 --repl-backlog-size "$BACKLOG" \
        --peer "127.0.0.1:$PA" --peer "127.0.0.1:$P3" 2>"$OUT/peer2.log" &
    peers+=($!)
    taskset -c "$PEERS_CORE" "$MNEMO" -t 1 -m 1024 -U 0 "${user[@]}" -l 127.0.0.1 -p "$P3" --node-id 3 --repl-backlog-size "$BACKLOG" \
        --peer "127.0.0.1:$PA" --peer "127.0.0.1:$P2" 2>"$OUT/peer3.log" &
    peers+=($!)
fi

# MESH=0: A only sends (its peers pull from it; any replication option
# turns replication on). MESH=1 (the default): A also pulls from both,
# as in an active-active mesh, so it receives each of its writes back
# from each peer and, at each run's start (A starts empty), takes a full
# copy of what they hold.
A="$MNEMO -t 1 -m 1024 -U 0 ${user[*]} -l 127.0.0.1 -p $PA --node-id 1 --repl-backlog-size $BACKLOG"
[ "${MESH:-1}" = 1 ] && A="$A --peer 127.0.0.1:$P2 --peer 127.0.0.1:$P3"
B="$MNEMO -t 1 -m 1024 -U 0 ${user[*]}"

# The peers must hold what A took: all three agree on curr_items.
stat_of() { # port name [stats sub-command]
    python3 - "$1" "$2" "${3:-}" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(("stats %s\r\n" % sys.argv[3]).encode())
buf = b""
while not buf.endswith(b"END\r\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
for line in buf.decode().splitlines():
    p = line.split()
    if len(p) == 3 and p[1] == sys.argv[2]:
        print(p[2])
PY
}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
run() { # name, then mnemo-bench options
    local name=$1
    shift
    "$BENCH" compare --a "$A" --a-addr "127.0.0.1:$PA" --b "$B" --rounds "$ROUNDS" \
        -c 50 --keys 100000 -D "$SECS" -q "$@" >"$OUT/$name.txt" 2>&1 ||
        { cat "$OUT/$name.txt" >&2; exit 1; }
    grep -E "^round|^  [AB] |A/B" "$OUT/$name.txt"
    echo "$name: $(grep -E '^median' "$OUT/$name.txt")"
    # A is gone now; its peers keep what it streamed (100000 keys if they kept up).
    sleep 2
    if [ "${PEERS:-mnemo}" = sink ]; then
        echo "$name: sinks received $(cat "$OUT/sink2.bytes") and $(cat "$OUT/sink3.bytes") bytes so far"
        return
    fi
    echo "$name: peers hold curr_items $(stat_of "$P2" curr_items) and $(stat_of "$P3" curr_items)"
    for p in "$P2" "$P3"; do
        echo "  peer $p: resyncs from A full $(stat_of "$p" "peer:127.0.0.1:$PA:full_resyncs" replication)" \
            "partial $(stat_of "$p" "peer:127.0.0.1:$PA:partial_resyncs" replication)"
    done
}

run sets-32B --ratio 1:0 -v 32
run sets-32B-pipelined-d16 --ratio 1:0 -v 32 -d 16
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
