#!/usr/bin/env bash
# AddressSanitizer run: the engine's tests and the server's integration
# tests that load it hardest, with the engine, the server binary and the
# tests all built with -Zsanitizer=address on the nightly toolchain
# (`cargo +nightly`). The integration tests start the instrumented binary
# (CARGO_BIN_EXE_mnemo of this same build), so a heap error in the server
# aborts it and fails the test that was talking to it.
#
# Chosen server tests (the budget of .ci/run is 30 minutes on 2 cores):
# stress (mixed load, pinned and reserved values, page moves, flushes),
# hardening and hardening_consistency (hostile clients, disconnects, floods),
# protocol, batched_io (io_uring rounds). The differential and client tests
# add protocol breadth, not memory paths.
#
# ASan's quarantine keeps freed memory from being reused for 256 MB by
# default, which the RSS bounds of the hardening tests would count as
# growth: 8 MB still catches use-after-free on the request path, where
# buffers are reused within a few requests. Leak detection stays on for
# the test processes; the servers they start end by SIGKILL (no exit-time
# leak check there: scripts/valgrind.sh checks the server's leaks).
#
# Usage: scripts/asan.sh. Builds into target/asan; needs no rust-src.
set -euo pipefail

cd "$(dirname "$0")/.."

die() {
    echo "scripts/asan.sh: $*" >&2
    exit 1
}

cargo +nightly --version >/dev/null 2>&1 ||
    die "the nightly toolchain is missing: AddressSanitizer needs it (rustup toolchain install nightly). Not skipping."

target=x86_64-unknown-linux-gnu
[ "$(uname -m)" = x86_64 ] || die "this script builds for $target; this machine is $(uname -m)"

export RUSTFLAGS="-Zsanitizer=address"
export ASAN_OPTIONS="quarantine_size_mb=8:detect_leaks=1:abort_on_error=0"
common=(+nightly test --target "$target" --target-dir target/asan --no-fail-fast)

echo "== asan: mnemo-engine" >&2
cargo "${common[@]}" -p mnemo-engine --lib --tests

echo "== asan: mnemo-server integration tests" >&2
cargo "${common[@]}" -p mnemo-server \
    --test stress --test hardening --test hardening_consistency \
    --test protocol --test batched_io
