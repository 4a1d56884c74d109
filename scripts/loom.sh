#!/usr/bin/env bash
# The loom models of the engine's concurrent protocols (crates/mnemo-engine/
# tests/loom_*.rs): every interleaving of each model is explored, and each
# deliberately broken variant must be caught. Stable toolchain; builds
# into target/loom (a --cfg loom build swaps the clock's atomics for
# loom's, see crates/mnemo-engine/src/sync.rs).
set -euo pipefail

cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg loom"
tests=()
for f in crates/mnemo-engine/tests/loom_*.rs; do
    tests+=(--test "$(basename "$f" .rs)")
done
[ "${#tests[@]}" -gt 0 ] || { echo "scripts/loom.sh: no loom models found" >&2; exit 1; }
cargo test -p mnemo-engine --target-dir target/loom "${tests[@]}"
