#!/usr/bin/env bash
# Issue #12's TLS benchmark: mnemo -Z beside memcached 1.6.18 -Z (Debian's,
# OpenSSL), and both without TLS for scale. Each server `-t 1 -m 1024`,
# pinned to core 1 (taskset) while mnemo-bench runs on core 0; one ECDSA
# P-256 certificate for both; 100,000 keys filled in each server's first
# round; 50 connections; rounds interleaved (memcached, mnemo, memcached,
# mnemo...) on servers started once. Server CPU from /proc/PID/stat
# (--server-pid). Prints per-round figures and the medians of the
# per-round mnemo/memcached ratios.
#
#   scripts/bench/tls.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-5}
BENCH=target/release/mnemo-bench
MNEMO=target/release/mnemo
[ -x "$BENCH" ] && [ -x "$MNEMO" ] || { echo "build first: cargo build --release -p mnemo-server -p mnemo-bench" >&2; exit 1; }
OUT=${OUT:-target/bench-tls}
mkdir -p "$OUT/pki"
PKI=$OUT/pki
user=()
[ "$(id -u)" -eq 0 ] && user=(-u root)

# A CA and a server certificate for 127.0.0.1 (v3, SAN), as an operator
# would make them with openssl.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$PKI/ca.key" -out "$PKI/ca.pem" -subj /CN=bench-ca -days 2 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$PKI/server.key" -out "$PKI/server.csr" -subj /CN=bench-server 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$PKI/ext"
openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" \
    -CAcreateserial -out "$PKI/server.pem" -days 2 -extfile "$PKI/ext" 2>/dev/null
SSL="ssl_chain_cert=$PKI/server.pem,ssl_key=$PKI/server.key"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start NAME MODE(tls|plain) -> sets PORT_<NAME>_<MODE>, PID_<NAME>_<MODE>
start() {
    local name=$1 mode=$2 port bin tlsopt=()
    port=$(free_port)
    [ "$name" = mnemo ] && bin=$MNEMO || bin=memcached
    [ "$mode" = tls ] && tlsopt=(-Z -o "$SSL")
    taskset -c 1 "$bin" -t 1 -m 1024 -U 0 -p "$port" -l 127.0.0.1 "${user[@]}" "${tlsopt[@]}" \
        >"$OUT/$name-$mode.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    printf -v "PORT_${name}_${mode}" %s "$port"
    printf -v "PID_${name}_${mode}" %s "$pid"
}

for mode in tls plain; do
    for name in memcached mnemo; do start "$name" "$mode"; done
done

# run WORKLOAD MODE NAME ROUND -- bench options
run() {
    local wl=$1 mode=$2 name=$3 r=$4
    shift 4
    local pv="PORT_${name}_${mode}" pidv="PID_${name}_${mode}" tlsopt=() fill=()
    [ "$mode" = tls ] && tlsopt=(--tls --tls-ca "$PKI/ca.pem")
    [ "$r" = 1 ] && fill=(--fill)
    taskset -c 0 "$BENCH" run -s "127.0.0.1:${!pv}" --server-pid "${!pidv}" "${tlsopt[@]}" \
        -c 50 --keys 100000 --key-prefix "${wl:0:2}:" "${fill[@]}" -D "$SECS" -q --json "$@" \
        >"$OUT/$wl-$mode-$name-$r.json"
}

WORKLOADS=(nonpipelined pipelined)
declare -A OPTS=(
    [nonpipelined]="--ratio 1:10 -v 32"
    [pipelined]="--ratio 1:10 -v 32 -d 16"
)
for r in $(seq "$ROUNDS"); do
    for wl in "${WORKLOADS[@]}"; do
        for mode in tls plain; do
            for name in memcached mnemo; do
                # shellcheck disable=SC2086
                run "$wl" "$mode" "$name" "$r" ${OPTS[$wl]}
            done
        done
    done
done

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def get(wl, mode, name, r):
    j = json.load(open(f"{out}/{wl}-{mode}-{name}-{r}.json"))
    assert j["lost"] == 0 and j.get("error_replies", 0) == 0, j
    return j["ops_per_s"], j["server_cpu"]["ops_per_cpu_s"]
print("workload      mode   memcached ops/s  mnemo ops/s  memcached ops/CPU-s  mnemo ops/CPU-s  ratio ops/s  ratio ops/CPU-s (rounds)")
for wl in ("nonpipelined", "pipelined"):
    for mode in ("tls", "plain"):
        m = [get(wl, mode, "memcached", r) for r in range(1, rounds + 1)]
        n = [get(wl, mode, "mnemo", r) for r in range(1, rounds + 1)]
        rs = [b[0] / a[0] for a, b in zip(m, n)]
        rc = [b[1] / a[1] for a, b in zip(m, n)]
        med = lambda xs: statistics.median(xs)
        print(f"{wl:13} {mode:5} {med([x[0] for x in m]):16,.0f} {med([x[0] for x in n]):12,.0f}"
              f" {med([x[1] for x in m]):20,.0f} {med([x[1] for x in n]):16,.0f}"
              f" {med(rs):12.2f} {med(rc):10.2f} ({', '.join(f'{x:.2f}' for x in rc)})")
EOF
