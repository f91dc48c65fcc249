#!/usr/bin/env bash
# Benchmarks wado beside the reference peer (Orthanc + DICOMweb plugin) with the team's shared
# harness (../shared/bench, see its README), in one run, and prints ratios wado/Orthanc.
#   scripts/bench.sh [--scale tiny|small|full] [--runs N] [--duration S] [--servers "wado orthanc"] ...
# Everything after the script name goes to bench/compare.sh. Scratch lives in /tmp/benchlab.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH_DIR:-../shared/bench}"
[ -d "$BENCH" ] || { echo "bench: $BENCH not found (the shared harness sits beside the repository)" >&2; exit 2; }
bash "$BENCH/setup.sh"
cargo build --release --locked -p wado-native
export WADO_BIN="$PWD/target/release/wado"
export OHA="${OHA:-/tmp/benchlab/tools/bin/oha}"
exec bash "$BENCH/compare.sh" "$@"
