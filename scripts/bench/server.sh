#!/usr/bin/env bash
# Issue #6's server benchmarks: mnemo beside memcached 1.6.18, both
# `-t 1 -m 1024`, each pinned to core 1 while the load runs on core 0,
# 100,000 keys filled first, 50 connections, A B A B rounds
# (`mnemo-bench compare`). Prints the median line of each workload.
#
#   scripts/bench/server.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-5}
BENCH=target/release/mnemo-bench
[ -x "$BENCH" ] && [ -x target/release/mnemo ] || { echo "build first: cargo build --release" >&2; exit 1; }
user=()
[ "$(id -u)" -eq 0 ] && user=(-u root)
A="target/release/mnemo -t 1 -m 1024 -U 0 ${user[*]}"
B="memcached -t 1 -m 1024 -U 0 ${user[*]}"
OUT=${OUT:-target/bench-server}
mkdir -p "$OUT"

run() { # name, then mnemo-bench options
    local name=$1
    shift
    "$BENCH" compare --a "$A" --b "$B" --rounds "$ROUNDS" -c 50 --keys 100000 --fill -D "$SECS" -q "$@" \
        >"$OUT/$name.txt" 2>&1
    echo "$name: $(grep -E '^median' "$OUT/$name.txt")"
}

run nonpipelined-32B --ratio 1:10 -v 32
run nonpipelined-1KB --ratio 1:10 -v 1024
run pipelined-gets-d16 --ratio 0:1 -d 16 -v 32
run pipelined-sets-d16 --ratio 1:0 -d 16 -v 32
run multiget-16 --ratio 0:1 -m 16 -v 32

# Open loop at half of memcached's closed-loop peak for the first workload.
peak=$(awk '/ B memcached/ {print $3}' "$OUT/nonpipelined-32B.txt" | sort -n | tail -1)
rate=$((peak / 2))
run "openloop-${rate}rps" --ratio 1:10 -v 32 --rate "$rate"
grep -E "^  [AB] " "$OUT/openloop-${rate}rps.txt"
