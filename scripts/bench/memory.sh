#!/usr/bin/env bash
# Issue #3's memory benchmark: how many items each server holds at -m 64
# after 2 million distinct keys, and its RSS; then a Zipf(0.99) get/set run
# over ten times more keys than fit, for the hit ratio. mnemo and memcached
# run one after the other with the same flags and the same load.
#
#   scripts/bench/memory.sh [MEMCACHED_BIN] [MNEMO_BIN]
#
# Needs: cargo build --release; memcached on PATH. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."

MEMCACHED=${1:-memcached}
MNEMO=${2:-target/release/mnemo}
BENCH=target/release/mnemo-bench
MEM=${MEM:-64}
KEYS=${KEYS:-2000000}
PORT=${PORT:-$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")}

[ -x "$MNEMO" ] && [ -x "$BENCH" ] || { echo "build first: cargo build --release" >&2; exit 1; }

# One `stats` value from the server on 127.0.0.1:PORT (no nc needed).
stat_of() { # port name
    python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"stats\r\n")
buf = b""
while not buf.endswith(b"END\r\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
for line in buf.decode().split("\r\n"):
    f = line.split()
    if len(f) == 3 and f[1] == sys.argv[2]:
        print(f[2])
PY
}

start() { # bin
    local user=(); [ "$(id -u)" -eq 0 ] && user=(-u root)
    "$1" "${user[@]}" -p "$PORT" -U 0 -l 127.0.0.1 -m "$MEM" -t 2 >/dev/null 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do
        kill -0 "$SERVER" 2>/dev/null || { echo "server exited: $1" >&2; exit 1; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return; fi
        sleep 0.05
    done
    echo "server did not start: $1" >&2; exit 1
}

stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; }

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$SERVER/status"; }

fill() { # key_size value_size
    "$BENCH" run -s "127.0.0.1:$PORT" --no-stats -q -c 4 --keys "$KEYS" --key-prefix k --key-size "$1" \
        --value-size "$2" --pattern sequential --ratio 1:0 --fill --fill-depth 64 -n 1 >/dev/null
}

echo "| workload | server | curr_items | evictions | RSS MB | items vs memcached |"
echo "|---|---|---:|---:|---:|---:|"
for w in "10 32" "16 100" "16 100-1000"; do
    set -- $w
    base=""
    for bin in "$MEMCACHED" "$MNEMO"; do
        start "$bin"
        fill "$1" "$2"
        items=$(stat_of "$PORT" curr_items)
        ev=$(stat_of "$PORT" evictions)
        rss=$(( $(rss_kb) / 1024 ))
        stop
        name=$(basename "$bin")
        if [ -z "$base" ]; then base=$items; ratio="1.00"; else ratio=$(awk -v a="$items" -v b="$base" 'BEGIN{printf "%.2f", a/b}'); fi
        echo "| ${1}B keys, ${2}B values | $name | $items | $ev | $rss | ${ratio}x |"
    done
done

echo
echo "| Zipf(0.99) 10x keys | server | hits | misses | hit ratio |"
echo "|---|---|---:|---:|---:|"
for bin in "$MEMCACHED" "$MNEMO"; do
    start "$bin"
    out=$("$BENCH" run -s "127.0.0.1:$PORT" --no-stats -q -c 8 --keys 6000000 --key-size 16 --value-size 100 \
        --pattern zipf:0.99 --ratio 1:10 --fill --fill-depth 64 -n 3000000 --json)
    stop
    hits=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["hits"])')
    misses=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["misses"])')
    echo "| 16B keys, 100B values, 6M keys | $(basename "$bin") | $hits | $misses | $(awk -v h="$hits" -v m="$misses" 'BEGIN{printf "%.4f", h/(h+m)}') |"
done
