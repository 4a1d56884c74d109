#!/usr/bin/env bash
# Issue #13: where a replicating node's CPU goes, per thread. Node A
# (`-t 1`, core 1) in a full mesh with two peers (core 0, with the load
# generator) takes SECS seconds of depth-16 pipelined 32 B sets from 50
# connections over 100,000 keys; then A's CPU is read per thread from
# /proc/PID/task (threads of one kind summed: the two link receivers
# `mnemo-repl-in-*`, the two senders `mnemo-repl-out-*`).
#
#   scripts/bench/repl-threads.sh [SECS]
#
# Needs: cargo build --release -p mnemo-server -p mnemo-bench.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-8}
M=target/release/mnemo
BENCH=target/release/mnemo-bench
[ -x "$BENCH" ] && [ -x "$M" ] || { echo "build first: cargo build --release -p mnemo-server -p mnemo-bench" >&2; exit 1; }
user=()
[ "$(id -u)" -eq 0 ] && user=(-u root)
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }
PA=$(free_port); P2=$(free_port); P3=$(free_port)
node() { # core port id peer peer
    taskset -c "$1" "$M" -t 1 -m 1024 -U 0 "${user[@]}" -l 127.0.0.1 -p "$2" --node-id "$3" \
        --repl-backlog-size 256m --peer "127.0.0.1:$4" --peer "127.0.0.1:$5" 2>/dev/null &
}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
node 1 "$PA" 1 "$P2" "$P3"; A=$!; pids+=($A)
node 0 "$P2" 2 "$PA" "$P3"; pids+=($!)
node 0 "$P3" 3 "$PA" "$P2"; pids+=($!)
sleep 1
out=$(taskset -c 0 "$BENCH" run -s "127.0.0.1:$PA" --server-pid "$A" -c 50 --keys 100000 \
    -D "$SECS" --ratio 1:0 -v 32 -d 16 2>&1)
ops=$(sed -n 's/^rate *\([0-9]*\) ops\/s.*/\1/p' <<<"$out")
echo "A: $ops sets/s for $SECS s"
tck=$(getconf CLK_TCK)
for t in /proc/"$A"/task/*; do
    s=($(sed 's/.*) //' "$t/stat"))
    echo "$(sed 's/-[0-9.:]*$//; s/-$//' "$t/comm") $((${s[11]} + ${s[12]}))"
done | awk -v t="$tck" -v ops="$ops" -v secs="$SECS" '
    { cpu[$1] += $2; all += $2 }
    END {
        for (k in cpu) if (cpu[k] > 0) printf "  %-16s %6.2f s\n", k, cpu[k] / t
        printf "  %-16s %6.2f s: %d sets per CPU-second\n", "all", all / t, ops * secs / (all / t)
    }' | sort
