#!/bin/bash
# Issue #14: throughput and latency through mnemo-proxy of a plain pool, an
# `erasure: 3+2` pool, `erasure: 1+2` whole copies (3 copies) and a pool
# mirrored to a backup pool (two more memcached), over the same five
# memcached, 16 KB values by default; STALL=1 adds a get run with one of
# the five stopped (SIGSTOP), STALL=2 one more with two stopped, pool
# timeout 1000 ms. POOLS="ec whole" limits the pools run.
#
#   cargo build --release -p mnemo-proxy -p mnemo-bench
#   BASE=23300 VS=16384 DUR=5 STALL=1 scripts/bench/ec-throughput.sh
#
# BASE is the first of the ports used (BASE..BASE+6 memcached,
# BASE+100..103 the pools, BASE+110 stats); keep it below the ephemeral
# range.
set -u
BASE=${BASE:-23300}
B=${B:-target/release}
D=$(mktemp -d)
ports=(); pids=()
for i in 0 1 2 3 4; do
  p=$((BASE+i)); ports+=($p)
  memcached -p $p -l 127.0.0.1 -U 0 -m 1024 -t 1 -u root & pids+=($!)
done
for i in 5 6; do
  memcached -p $((BASE+i)) -l 127.0.0.1 -U 0 -m 1024 -t 1 -u root & pids+=($!)
done
sleep 0.5
mk() { # name listen extra
  echo "$1:"; echo "  listen: 127.0.0.1:$2"; echo "  hash: md5"; echo "  timeout: 1000"; printf "$3"; echo "  servers:"
  for p in "${ports[@]}"; do echo "   - 127.0.0.1:$p:1"; done
}
{ mk plain $((BASE+100)) ""; mk ec $((BASE+101)) "  erasure: 3+2\n"; mk whole $((BASE+102)) "  erasure: 1+2\n  erasure_min_size: 100000000\n"
  mk mirror $((BASE+103)) "  backup: bkp\n"
  printf "bkp:\n  hash: md5\n  servers:\n   - 127.0.0.1:$((BASE+5)):1\n   - 127.0.0.1:$((BASE+6)):1\n"; } > $D/p.yml
$B/mnemo-proxy -c $D/p.yml -s $((BASE+110)) -a 127.0.0.1 --threads 1 & PX=$!
sleep 0.5
VS=${VS:-16384}
run() { # port ratio label
  $B/mnemo-bench -s 127.0.0.1:$1 --no-stats -c 16 -t 1 -k 2000 -v $VS --ratio $2 --fill -D ${DUR:-5} -q --json > $D/$3.json 2>$D/$3.err
  python3 - $D/$3.json $3 <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
l = j["latency"]
print("%-20s %8.0f ops/s  p50 %8.0f us  p99 %9.0f us  errors %d" % (sys.argv[2], j["ops_per_s"], l["p50_us"], l["p99_us"], j["error_replies"]))
PY
}
pools="plain:$((BASE+100)) ec:$((BASE+101)) whole:$((BASE+102)) mirror:$((BASE+103))"
if [ -n "${POOLS:-}" ]; then
  keep=""
  for pool in $pools; do
    case " $POOLS " in *" ${pool%%:*} "*) keep="$keep $pool";; esac
  done
  pools=$keep
fi
for pool in $pools; do
  n=${pool%%:*}; p=${pool##*:}
  run $p 1:0 $n-set
  run $p 0:1 $n-get
done
for s in $(seq 1 ${STALL:-0}); do
  kill -STOP ${pids[$((s+1))]}
  for pool in $pools; do
    n=${pool%%:*}; p=${pool##*:}
    run $p 0:1 $n-get-stalled$s
  done
done
[ "${STALL:-0}" -ge 1 ] && kill -CONT ${pids[@]:2:${STALL:-0}}
kill $PX ${pids[@]}; wait 2>/dev/null
rm -rf $D
