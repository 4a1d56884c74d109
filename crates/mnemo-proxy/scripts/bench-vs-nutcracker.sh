#!/bin/sh
# mnemo-proxy beside nutcracker 0.5.0: same three memcached backends, same
# load (mnemo-bench compare: A = mnemo-proxy, B = nutcracker, A B A B rounds,
# proxies pinned to core 1, load and backends to core 0; the A/B ratios it
# prints are mnemo-proxy over nutcracker).
#
# usage: crates/mnemo-proxy/scripts/bench-vs-nutcracker.sh [mnemo-bench compare flags]
# e.g.   ... --rounds 2 -D 8 -c 50 -d 8 --fill                  (throughput)
#        ... --rounds 2 -D 8 -c 20 -m 100 --ratio 0:1 --fill     (100-key gets)
# Environment: HASH (default md5: spreads the bench's sequential key names
# over the three servers; fnv1a_64 clusters them), BASE_PORT (23500),
# BENCH, PROXY, BACKEND (the backend command, default memcached; both
# proxies always share the same three).
set -eu

BENCH=${BENCH:-target/release/mnemo-bench}
PROXY=${PROXY:-target/release/mnemo-proxy}
HASH=${HASH:-md5}
BACKEND=${BACKEND:-memcached -t 1 -m 256 -u root}
BASE=${BASE_PORT:-23500}
B1=$((BASE + 1)); B2=$((BASE + 2)); B3=$((BASE + 3))

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

conf() { # listen-port
    cat <<YAML
bench:
  listen: 127.0.0.1:$1
  hash: $HASH
  distribution: ketama
  timeout: 2000
  server_connections: 1
  servers:
   - 127.0.0.1:$B1:1
   - 127.0.0.1:$B2:1
   - 127.0.0.1:$B3:1
YAML
}
conf "$BASE" > "$TMP/nutcracker.yml"
conf $((BASE + 8)) > "$TMP/mnemo.yml"

exec "$BENCH" compare \
    --backend "$BACKEND" --backends 3 --backend-ports "$B1,$B2,$B3" \
    --a "$PROXY -v 0 -o $TMP/mp.log -c $TMP/mnemo.yml -s $((BASE + 9)) -a 127.0.0.1" \
    --a-addr "127.0.0.1:$((BASE + 8))" \
    --b "nutcracker -v 0 -o $TMP/nc.log -c $TMP/nutcracker.yml -s $((BASE + 7)) -a 127.0.0.1" \
    --b-addr "127.0.0.1:$BASE" \
    -P text "$@"
