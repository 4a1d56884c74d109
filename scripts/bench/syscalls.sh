#!/usr/bin/env bash
# Issue #6: system calls per request under the non-pipelined 1:10 load
# (32 B values, 50 connections, 100,000 keys filled first).
#
# Starts SERVER (the rest of the command line) with `-t 1 -m 1024 -U 0`
# pinned to core 1, drives it from core 0 with mnemo-bench, and counts the
# socket and event-loop system calls made on core 1 for 3 s in the middle
# of an 8 s run (`perf stat -a -C 1`, tracepoints, so root is needed).
#
#   scripts/bench/syscalls.sh target/release/mnemo
#   scripts/bench/syscalls.sh target/release/mnemo -o no_io_uring
#   scripts/bench/syscalls.sh memcached
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: $0 SERVER [ARGS...]" >&2; exit 2; }
BENCH=target/release/mnemo-bench
[ -x "$BENCH" ] || { echo "build first: cargo build --release" >&2; exit 1; }
PORT=${PORT:-22133}
user=()
[ "$(id -u)" -eq 0 ] && user=(-u root)
taskset -c 1 "$@" -p "$PORT" -U 0 -t 1 -m 1024 "${user[@]}" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
sleep 0.5
load=(-s "127.0.0.1:$PORT" -c 50 --keys 100000 --ratio 1:10 -v 32 -q --seed 7)
taskset -c 0 "$BENCH" "${load[@]}" --fill -D 1 >/dev/null
out=$(mktemp)
taskset -c 0 "$BENCH" "${load[@]}" -D 8 >"$out" &
bench=$!
sleep 2
events=syscalls:sys_enter_read,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_io_uring_enter
counts=$(perf stat -x, -a -C 1 -e "$events" -- sleep 3 2>&1 >/dev/null)
wait $bench
rate=$(awk '/^rate/ {print $2}' "$out")
rm -f "$out"
echo "server: $*"
echo "rate: $rate ops/s (the 3 s window saw about $((rate * 3)) requests)"
echo "$counts" | awk -F, -v req=$((rate * 3)) '
    $1 ~ /^[0-9]+$/ { sub("syscalls:sys_enter_", "", $3); n[$3] = $1; total += $1 }
    END {
        for (k in n) if (n[k] > 0) printf "  %-14s %9d  %.3f per request\n", k, n[k], n[k] / req
        printf "  %-14s %9d  %.3f per request\n", "total", total, total / req
    }'
