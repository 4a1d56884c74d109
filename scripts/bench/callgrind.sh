#!/usr/bin/env bash
# User-space instructions per request of one or more mnemo builds, from
# callgrind on the worker thread: `-t 1 -o no_io_uring`, 100,000 keys of
# 32 B filled first, then two runs of different lengths with
# instrumentation on only while they run; the difference of their
# instruction counts over the difference of their lengths removes the
# per-run constant (connect, first-touch). One connection, the load
# generator outside valgrind.
#
#   scripts/bench/callgrind.sh BIN [BIN...]
#   WORKLOADS="get set" SHORT=50000 LONG=150000 EXTRA="-o engine=segment"
#
# get: depth-16 pipelined gets; set: depth-16 pipelined sets.
# Needs valgrind and target/release/mnemo-bench (or BENCH=...).
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH=${BENCH:-target/release/mnemo-bench}
SHORT=${SHORT:-50000}
LONG=${LONG:-150000}
WORKLOADS=${WORKLOADS:-"get set"}
EXTRA=${EXTRA:-}
[ $# -ge 1 ] || { echo "usage: $0 BIN [BIN...]" >&2; exit 2; }
[ -x "$BENCH" ] || { echo "build first: cargo build --release -p mnemo-bench" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
user=()
[ "$(id -u)" -eq 0 ] && user=(-u root)

free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }

# Worker-thread instructions for `n` requests of workload `w` on `bin`.
measure() { # bin workload n
    local bin=$1 w=$2 n=$3 port out pid ratio
    port=$(free_port)
    out="$TMP/cg.$w.$n"
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
        --callgrind-out-file="$out.%p" "$bin" "${user[@]}" -t 1 -m 1024 -U 0 -l 127.0.0.1 \
        -p "$port" -o no_io_uring $EXTRA >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    "$BENCH" run -s "127.0.0.1:$port" --no-stats -q -c 1 --keys 100000 -v 32 --fill \
        --fill-depth 64 --ratio 0:1 -n 1 >/dev/null
    case $w in get) ratio=0:1 ;; set) ratio=1:0 ;; esac
    callgrind_control -i on "$pid" >/dev/null
    "$BENCH" run -s "127.0.0.1:$port" --no-stats -q -c 1 -d 16 --keys 100000 -v 32 \
        --ratio "$ratio" -n "$n" >/dev/null
    callgrind_control -i off "$pid" >/dev/null
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    # The worker is the thread that ran the most instructions.
    for f in "$out.$pid"-*; do
        awk '/^totals:/ {print $2; exit}' "$f"
    done | sort -n | tail -1
}

echo "| build | workload | Ir ($SHORT) | Ir ($LONG) | Ir per request |"
echo "|---|---|---:|---:|---:|"
for bin in "$@"; do
    for w in $WORKLOADS; do
        a=$(measure "$bin" "$w" "$SHORT")
        b=$(measure "$bin" "$w" "$LONG")
        per=$(awk -v a="$a" -v b="$b" -v s="$SHORT" -v l="$LONG" 'BEGIN{printf "%.0f", (b-a)/(l-s)}')
        echo "| $bin | $w | $a | $b | $per |"
    done
done
