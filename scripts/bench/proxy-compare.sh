#!/bin/sh
# Compare two memcached proxies over the same backends with `mnemo-bench compare`.
#
# Starts N memcached backends on fixed loopback ports, writes one twemproxy
# (nutcracker) YAML config per side for them, and runs side A and side B
# with the nutcracker command line (-c conf -s stats-port -a addr -o log
# -v level), which mnemo-proxy accepts too. Proxies speak text here.
#
# usage: [A_PROXY=nutcracker] [B_PROXY=target/release/mnemo-proxy] \
#        scripts/bench/proxy-compare.sh [mnemo-bench compare flags]
# e.g.   B_PROXY=target/release/mnemo-proxy scripts/bench/proxy-compare.sh \
#            --rounds 3 -D 5 -c 50 --fill
# Ports are overridable: BASE_PORT (default 23400) .. BASE_PORT+9.
set -eu

BENCH=${BENCH:-target/release/mnemo-bench}
A_PROXY=${A_PROXY:-nutcracker}
B_PROXY=${B_PROXY:-nutcracker}
BASE=${BASE_PORT:-23400}
BACKENDS=${BACKENDS:-2}
BACKEND_CMD=${BACKEND_CMD:-memcached -t 1 -m 256 -u nobody}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

ports=""
servers=""
i=0
while [ "$i" -lt "$BACKENDS" ]; do
    p=$((BASE + 1 + i))
    ports="${ports:+$ports,}$p"
    servers="$servers   - 127.0.0.1:$p:1
"
    i=$((i + 1))
done

conf() { # listen-port
    cat <<YAML
bench:
  listen: 127.0.0.1:$1
  hash: fnv1a_64
  distribution: ketama
  timeout: 1000
  auto_eject_hosts: false
  server_connections: 1
  servers:
$servers
YAML
}
conf "$BASE" > "$TMP/a.yml"
conf $((BASE + 8)) > "$TMP/b.yml"

"$BENCH" compare \
    --backend "$BACKEND_CMD" --backends "$BACKENDS" --backend-ports "$ports" \
    --a "$A_PROXY -v 0 -o $TMP/a.log -c $TMP/a.yml -s $((BASE + 7)) -a 127.0.0.1" \
    --a-addr "127.0.0.1:$BASE" \
    --b "$B_PROXY -v 0 -o $TMP/b.log -c $TMP/b.yml -s $((BASE + 9)) -a 127.0.0.1" \
    --b-addr "127.0.0.1:$((BASE + 8))" \
    -P text "$@"
