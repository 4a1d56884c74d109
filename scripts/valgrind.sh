#!/usr/bin/env bash
# Runs the server under valgrind memcheck while tests/stress.rs drives it
# (mixed text/meta/binary load, large chained and pinned values,
# pipelining, slow readers, disconnects mid-value, slabs reassign/automove,
# flush_all), then stops it with SIGTERM. Fails on any memcheck error or a
# definite leak.
#
# io_uring is off (-o no_io_uring): valgrind does not model the kernel
# reading and writing our buffers through the ring, so it would report
# every completed read as uninitialised memory. The plain read/writev path
# is what is checked here; the ring path is covered by the ASan run
# (scripts/asan.sh) and the ordinary suite.
#
# Usage: scripts/valgrind.sh [seconds of load, default 20]
set -euo pipefail

cd "$(dirname "$0")/.."

die() {
    echo "scripts/valgrind.sh: $*" >&2
    exit 1
}

if ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "scripts/valgrind.sh: installing valgrind" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update && apt-get install -y valgrind
    else
        die "valgrind not found (Debian: sudo apt-get install -y valgrind)"
    fi
fi

secs="${1:-20}"
# The test build of the binary (opt-level 1, debug info), which
# `cargo test` builds for the integration tests.
cargo test -p mnemo-server --test stress --no-run
server=target/debug/mnemo
[ -x "$server" ] || die "$server was not built"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp -t mnemo-valgrind.XXXXXX)
user_args=()
[ "$(id -u)" -eq 0 ] && user_args=(-u root)

valgrind --tool=memcheck --error-exitcode=1 --leak-check=full \
    --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --log-file="$log" \
    "$server" -l 127.0.0.1 -p "$port" -U 0 -m 16 -t 2 -o no_io_uring "${user_args[@]}" &
vg=$!
trap 'kill -KILL $vg 2>/dev/null || true' EXIT

for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        break
    fi
    kill -0 $vg 2>/dev/null || { cat "$log" >&2; die "server exited at start"; }
    sleep 0.2
done

echo "scripts/valgrind.sh: load for ${secs}s on port $port" >&2
load_ok=1
MNEMO_STRESS_ADDR="127.0.0.1:$port" MNEMO_STRESS_SECS="$secs" \
    cargo test -p mnemo-server --test stress -- --nocapture || load_ok=0

kill -TERM $vg
status=0
wait $vg || status=$?
trap - EXIT
grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable' "$log" >&2 || true
if [ "$status" -ne 0 ]; then
    cat "$log" >&2
    die "memcheck failed (server exit status $status)"
fi
[ "$load_ok" -eq 1 ] || die "the stress load failed against the server under valgrind"
grep -q 'ERROR SUMMARY: 0 errors' "$log" || { cat "$log" >&2; die "memcheck reported errors"; }
echo "scripts/valgrind.sh: 0 errors" >&2
rm -f "$log"
