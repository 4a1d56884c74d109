#!/usr/bin/env bash
# Issue #16's throughput benchmark: ops per server CPU-second of mnemo's
# segment engine against its slab engine, and of the slab engine against
# memcached 1.6.18 (so all three are on one scale). As server.sh: each
# server `-t 1 -m 1024` (the evicting workload `-m 64`), pinned to core 1
# while mnemo-bench runs on core 0 (taskset), keys filled first, 50
# connections, A B A B rounds (`mnemo-bench compare`); the figure is the
# median of the per-round A/B ratios.
#
#   scripts/bench/engine-throughput.sh [ROUNDS] [SECONDS]
#   PAIRS="segment:slab slab:memcached" (default; A:B, any of memcached,
#   slab, segment)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-5}
PAIRS=${PAIRS:-"segment:slab slab:memcached"}
BENCH=target/release/mnemo-bench
MNEMO=target/release/mnemo
[ -x "$BENCH" ] && [ -x "$MNEMO" ] || { echo "build first: cargo build --release -p mnemo-server -p mnemo-bench" >&2; exit 1; }
OUT=${OUT:-target/bench-engine}
mkdir -p "$OUT"
user=""
[ "$(id -u)" -eq 0 ] && user="-u root"

cmd() { # name mem
    case $1 in
        memcached) echo "memcached -t 1 -m $2 -U 0 $user" ;;
        slab) echo "$MNEMO -o engine=slab -t 1 -m $2 -U 0 $user" ;;
        segment) echo "$MNEMO -o engine=segment -t 1 -m $2 -U 0 $user" ;;
        *) echo "unknown server $1" >&2; exit 1 ;;
    esac
}

run() { # pair name mem, then mnemo-bench options
    local a=${1%%:*} b=${1##*:} name=$2 mem=$3
    shift 3
    "$BENCH" compare --a "$(cmd "$a" "$mem")" --b "$(cmd "$b" "$mem")" --rounds "$ROUNDS" -c 50 \
        --fill -D "$SECS" -q "$@" >"$OUT/$a-$b-$name.txt" 2>&1
    echo "| $name | $a / $b | $(grep -E '^median' "$OUT/$a-$b-$name.txt" | sed 's/^median A\/B over [0-9]* rounds: //') |"
}

echo "| workload | A / B | median ratios |"
echo "|---|---|---|"
for pair in $PAIRS; do
    run "$pair" nonpipelined-1:10-32B 1024 --keys 100000 --ratio 1:10 -v 32
    run "$pair" pipelined-gets-d16 1024 --keys 100000 --ratio 0:1 -d 16 -v 32
    run "$pair" pipelined-sets-d16 1024 --keys 100000 --ratio 1:0 -d 16 -v 32
    # More keys than fit: sets evict, gets miss.
    run "$pair" evicting-1:10-100-1000B 64 --keys 2000000 --ratio 1:10 -v 100-1000 --pattern zipf:0.99
done
