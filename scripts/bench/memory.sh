#!/usr/bin/env bash
# Issues #3 and #16's memory benchmark: how many items each server holds
# at -m 64 after 2 million distinct keys, its RSS, and how much of the
# memory limit the stored keys and values themselves fill; then Zipf(0.99)
# get/set runs over ten times more keys than fit, for the hit ratio,
# without and with expiry times. memcached, mnemo's slab engine and
# mnemo's segment engine run one after the other with the same flags and
# the same load, in one run.
#
#   scripts/bench/memory.sh [MEMCACHED_BIN] [MNEMO_BIN]
#   SERVERS="memcached slab segment" (default; any subset, in that order)
#   TTLS="2:1,10:1,0:2" (the expiry mix of the last table, mnemo-bench --ttl)
#
# Needs: cargo build --release; memcached on PATH. Prints Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/../.."

MEMCACHED=${1:-memcached}
MNEMO=${2:-target/release/mnemo}
BENCH=target/release/mnemo-bench
MEM=${MEM:-64}
KEYS=${KEYS:-2000000}
SERVERS=${SERVERS:-"memcached slab segment"}
TTLS=${TTLS:-"2:1,10:1,0:2"}
PORT=${PORT:-$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")}

[ -x "$MNEMO" ] && [ -x "$BENCH" ] || { echo "build first: cargo build --release" >&2; exit 1; }

# The command line of server NAME (before the shared flags).
server_cmd() { # name
    case $1 in
        memcached) echo "$MEMCACHED" ;;
        slab) echo "$MNEMO -o engine=slab" ;;
        segment) echo "$MNEMO -o engine=segment" ;;
        *) echo "unknown server $1 (memcached, slab, segment)" >&2; exit 1 ;;
    esac
}

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

start() { # name
    local user=() cmd
    [ "$(id -u)" -eq 0 ] && user=(-u root)
    read -r -a cmd <<<"$(server_cmd "$1")"
    "${cmd[@]}" "${user[@]}" -p "$PORT" -U 0 -l 127.0.0.1 -m "$MEM" -t 2 >/dev/null 2>&1 &
    SERVER=$!
    for _ in $(seq 100); do
        kill -0 "$SERVER" 2>/dev/null || { echo "server exited: ${cmd[*]}" >&2; exit 1; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return; fi
        sleep 0.05
    done
    echo "server did not start: ${cmd[*]}" >&2; exit 1
}

stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; }

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$SERVER/status"; }

fill() { # key_size value_size
    "$BENCH" run -s "127.0.0.1:$PORT" --no-stats -q -c 4 --keys "$KEYS" --key-prefix k --key-size "$1" \
        --value-size "$2" --pattern sequential --ratio 1:0 --fill --fill-depth 64 -n 1 >/dev/null
}

# Mean of a value size as mnemo-bench takes it (N or A-B).
mean_size() { # size
    awk -v s="$1" 'BEGIN{n=split(s,p,"-"); if (n==2) print (p[1]+p[2])/2; else print s}'
}

echo "| workload | server | curr_items | evictions | RSS MB | RSS / -m | payload / -m | items vs memcached | items vs slab |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for w in "10 32" "16 100" "16 100-1000"; do
    set -- $w
    declare -A got=()
    for name in $SERVERS; do
        start "$name"
        fill "$1" "$2"
        items=$(stat_of "$PORT" curr_items)
        ev=$(stat_of "$PORT" evictions)
        rss=$(( $(rss_kb) / 1024 ))
        stop
        got[$name]=$items
        ratio() { [ -n "${got[$1]:-}" ] && awk -v a="$items" -v b="${got[$1]}" 'BEGIN{printf "%.2fx", a/b}' || echo "-"; }
        payload=$(awk -v n="$items" -v k="$1" -v v="$(mean_size "$2")" -v m="$MEM" 'BEGIN{printf "%.2f", n*(k+v)/(m*1048576)}')
        echo "| ${1}B keys, ${2}B values | $name | $items | $ev | $rss | $(awk -v r="$rss" -v m="$MEM" 'BEGIN{printf "%.2f", r/m}') | $payload | $(ratio memcached) | $(ratio slab) |"
    done
    unset got
done

# Zipf(0.99) over 6M keys of 16 B / 100 B at 1 set : 10 gets, after a
# fill; TTL "0" is the run without expiry, then the mix in $TTLS.
echo
echo "| Zipf(0.99), 16B keys, 100B values, 6M keys | server | hits | misses | hit ratio | vs slab |"
echo "|---|---|---:|---:|---:|---:|"
for ttl in 0 "$TTLS"; do
    slab_ratio=""
    for name in $SERVERS; do
        start "$name"
        out=$("$BENCH" run -s "127.0.0.1:$PORT" --no-stats -q -c 8 --keys 6000000 --key-size 16 --value-size 100 \
            --pattern zipf:0.99 --ratio 1:10 --ttl "$ttl" --fill --fill-depth 64 -n 3000000 --json)
        stop
        hits=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["hits"])')
        misses=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["misses"])')
        hr=$(awk -v h="$hits" -v m="$misses" 'BEGIN{printf "%.4f", h/(h+m)}')
        [ "$name" = slab ] && slab_ratio=$hr
        vs=$([ -n "$slab_ratio" ] && awk -v a="$hr" -v b="$slab_ratio" 'BEGIN{printf "%.3f", a/b}' || echo "-")
        echo "| ttl $ttl | $name | $hits | $misses | $hr | $vs |"
    done
done
