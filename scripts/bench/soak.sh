#!/usr/bin/env bash
# Issue #7's soak: mnemo at -m 64 under a mixed open-loop mnemo-bench load
# (sets with TTLs over far more keys than fit, so items both expire and get
# evicted) for MINUTES (default 30). RSS and a few stats are sampled every
# 10 s; latency percentiles come from a window at the start and one at the
# end of the same continuous load. Writes a Markdown section to OUT.
#
#   scripts/bench/soak.sh [MINUTES]
#
# Env: MNEMO, BENCH (binaries; default target/release/*), MEM (64), RATE
# (requests/s, 20000), KEYS (2000000), TTL (60), THREADS (server -t, 2),
# SERVER_CPU (1) / BENCH_CPU (0): cores for taskset, OUT
# (default target/soak.md; copy the section into docs/BENCHMARKS.md), WORK (scratch dir for samples and JSON).
# Needs: cargo build --release -p mnemo-server -p mnemo-bench; python3;
# taskset. Not a CI test: it takes MINUTES and a core.
set -euo pipefail
cd "$(dirname "$0")/../.."

MINUTES=${1:-30}
MNEMO=${MNEMO:-target/release/mnemo}
BENCH=${BENCH:-target/release/mnemo-bench}
MEM=${MEM:-64}
RATE=${RATE:-20000}
KEYS=${KEYS:-2000000}
TTL=${TTL:-60}
THREADS=${THREADS:-2}
SERVER_CPU=${SERVER_CPU:-1}
BENCH_CPU=${BENCH_CPU:-0}
OUT=${OUT:-target/soak.md}
WORK=${WORK:-$(mktemp -d /tmp/mnemo-soak.XXXXXX)}
PORT=${PORT:-$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")}

REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -x "$MNEMO" ] && [ -x "$BENCH" ] || { echo "build first: cargo build --release -p mnemo-server -p mnemo-bench" >&2; exit 1; }
mkdir -p "$WORK"

TOTAL=$((MINUTES * 60))
# Latency windows: a minute each on a real soak, a fifth of a short check.
WINDOW=$((TOTAL / 5 < 60 ? TOTAL / 5 : 60))
MIDDLE=$((TOTAL - 2 * WINDOW))
[ "$WINDOW" -ge 5 ] && [ "$MIDDLE" -ge 1 ] || { echo "MINUTES too small" >&2; exit 1; }

# Every stats line from the server as "name value" (no nc needed).
stats() {
    python3 - "$PORT" <<'PY'
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
    if len(f) == 3 and f[0] == "STAT":
        print(f[1], f[2])
PY
}

user=(); [ "$(id -u)" -eq 0 ] && user=(-u root)
taskset -c "$SERVER_CPU" "$MNEMO" "${user[@]}" -p "$PORT" -U 0 -l 127.0.0.1 -m "$MEM" -t "$THREADS" \
    >"$WORK/server.log" 2>&1 &
SERVER=$!
SAMPLER=
cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
    kill "$SERVER" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 200); do
    kill -0 "$SERVER" 2>/dev/null || { echo "server exited" >&2; cat "$WORK/server.log" >&2; exit 1; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    sleep 0.05
done
RSS0=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status")

# Sampler: elapsed s, RSS kB, curr_items, evictions, expired_unfetched,
# reclaimed, then the overhead stats counts (hash_bytes, read_buf_bytes,
# read_buf_bytes_free, response_obj_bytes), every 10 s until the server
# goes away.
START=$(date +%s)
(
    while kill -0 "$SERVER" 2>/dev/null; do
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status" 2>/dev/null || echo 0)
        s=$(stats 2>/dev/null || true)
        get() { awk -v k="$1" '$1 == k {print $2}' <<<"$s"; }
        echo "$(($(date +%s) - START)) $rss $(get curr_items) $(get evictions) $(get expired_unfetched) $(get reclaimed)" \
            "$(get hash_bytes) $(get read_buf_bytes) $(get read_buf_bytes_free) $(get response_obj_bytes)"
        sleep 10
    done
) >"$WORK/samples.tsv" &
SAMPLER=$!

# One continuous workload split in three runs; the gaps are milliseconds.
# Open loop at RATE, so latency includes queueing and the load is the same
# at the start and the end whatever the server does.
load() { # seconds json
    taskset -c "$BENCH_CPU" "$BENCH" run -s "127.0.0.1:$PORT" --server-pid "$SERVER" -q --json \
        -t 1 -c 32 --rate "$RATE" --ratio 1:3 --keys "$KEYS" --pattern zipf:0.9 \
        --value-size 64:40,512:30,2048:20,16384:9,131072:1 --ttl "$TTL" -D "$1" >"$2"
}
echo "soak: ${MINUTES} min at $RATE req/s on port $PORT, pid $SERVER, work dir $WORK" >&2
load "$WINDOW" "$WORK/start.json"
load "$MIDDLE" "$WORK/middle.json"
load "$WINDOW" "$WORK/end.json"
sleep 1
ALIVE=yes; kill -0 "$SERVER" 2>/dev/null || ALIVE=no
stats >"$WORK/final-stats.txt" || true
RSS_END=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status" 2>/dev/null || echo 0)
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=

python3 - "$WORK" "$OUT" "$MINUTES" "$MEM" "$RATE" "$KEYS" "$TTL" "$THREADS" "$RSS0" "$RSS_END" "$ALIVE" \
    "$REV" <<'PY'
import json, sys, datetime
work, out, minutes, mem, rate, keys, ttl, threads, rss0, rss_end, alive, rev = sys.argv[1:]
runs = [(n, json.load(open(f"{work}/{n}.json"))) for n in ("start", "middle", "end")]
samples = [l.split() for l in open(f"{work}/samples.tsv") if len(l.split()) >= 2]
stats = dict(l.split(None, 1) for l in open(f"{work}/final-stats.txt") if l.strip())
stats = {k: v.strip() for k, v in stats.items()}
limit_kb = int(mem) * 1024
rss = [(int(s[0]), int(s[1])) for s in samples if s[1].isdigit() and int(s[1]) > 0]
peak = max(r for _, r in rss) if rss else 0
# Flatness: from the first sample after the cache filled (5 min in on a
# real soak, a quarter in on a short check) to the end.
settle = min(300, int(minutes) * 15)
after = [r for t, r in rss if t >= settle] or [r for _, r in rss]
errors = sum(r["error_replies"] + r["lost"] + r["failed_connections"] for _, r in runs)
fill_errors = sum(r.get("fill_error_replies") or 0 for _, r in runs)
L = []
L.append(f"## Soak: {minutes} minutes at -m {mem} ({datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {rev})\n")
L.append(f"`scripts/bench/soak.sh {minutes}`: release `mnemo -m {mem} -t {threads}` pinned to one core, "
         f"`mnemo-bench` on the other, open loop at {rate} req/s, 32 connections, sets:gets 1:3, "
         f"{keys} keys (Zipf 0.9), values 64 B-128 KB (weighted 40/30/20/9/1% at 64 B, 512 B, 2 KB, 16 KB, 128 KB), "
         f"TTL {ttl} s, so items both expire and are evicted. Shared 2-core development box.\n")
L.append("| window | seconds | req/s | hits/gets | p50 µs | p99 µs | p99.9 µs | max µs | errors | lost |")
L.append("|---|---|---|---|---|---|---|---|---|---|")
for name, r in runs:
    lat = r["latency"]
    hr = r["hits"] / r["gets"] if r["gets"] else 0
    L.append(f"| {name} | {r['seconds']:.0f} | {r['ops_per_s']:.0f} | {hr:.2f} | {lat['p50_us']:.0f} | {lat['p99_us']:.0f} "
             f"| {lat['p999_us']:.0f} | {lat['max_us']:.0f} | {r['error_replies'] + r['failed_connections']} | {r['lost']} |")
L.append("")
L.append(f"- Server alive at the end: **{alive}**; error replies + lost requests + failed connections over the whole run: **{errors}**.")
L.append(f"- RSS: {int(rss0)/1024:.1f} MB at start, peak {peak/1024:.1f} MB, {int(rss_end)/1024:.1f} MB at the end; "
         f"after {settle} s between {min(after)/1024:.1f} and {max(after)/1024:.1f} MB "
         f"(spread {(max(after)-min(after))/1024:.1f} MB). -m is {mem} MB: peak overhead over -m "
         f"{(peak-limit_kb)/1024:+.1f} MB (threads, hash table, buffers, allocator).")
# Each sample against -m plus the overhead the server reported at that
# moment (hash table, read and response buffers) plus the idle RSS.
def over(smp):
    reported = sum(int(x) for x in smp[6:10]) / 1024
    return int(smp[1]) - (int(rss0) + limit_kb + reported), reported
full = [s for s in samples if len(s) >= 10 and all(x.isdigit() for x in s[:10]) and int(s[0]) >= settle]
if full:
    worst = max(full, key=lambda smp: over(smp)[0])
    w_over, w_rep = over(worst)
    e_over, e_rep = over(full[-1])
    L.append(f"- RSS against idle RSS ({int(rss0)/1024:.1f} MB) + -m ({mem} MB) + the overhead `stats` reports "
             f"(hash_bytes + read_buf_bytes + read_buf_bytes_free + response_obj_bytes), sampled together every 10 s "
             f"after {settle} s: at most **{w_over/1024:+.1f} MB** (t={worst[0]} s, reported overhead {w_rep/1024:.1f} MB); "
             f"last sample {e_over/1024:+.1f} MB (reported {e_rep/1024:.1f} MB).")
L.append(f"- Final stats: curr_items {stats.get('curr_items')}, evictions {stats.get('evictions')}, "
         f"expired_unfetched {stats.get('expired_unfetched')}, reclaimed {stats.get('reclaimed')}, "
         f"bytes {stats.get('bytes')} of limit_maxbytes {stats.get('limit_maxbytes')}, "
         f"total_connections {stats.get('total_connections')}.")
L.append("")
L.append("RSS over time (every 60 s of the 10 s samples):\n")
L.append("| t (s) | RSS MB | curr_items | evictions | expired_unfetched |")
L.append("|---|---|---|---|---|")
for s in samples:
    if len(s) >= 5 and int(s[0]) % 60 < 10:
        L.append(f"| {s[0]} | {int(s[1])/1024:.1f} | {s[2]} | {s[3]} | {s[4]} |")
text = "\n".join(L) + "\n"
open(out, "w").write(text)
print(text)
PY
[ "$ALIVE" = yes ]
