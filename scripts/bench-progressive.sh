#!/usr/bin/env bash
# OHIF's first image of a large frame over a throttled link (issue 27): the progressive tests
# of tests/tests/ohif.rs (OHIF 3.13 in headless Chromium at 30 Mbit/s and 20 ms, cornerstone's
# byte-range stages; a 2048 x 2048 16-bit study raw, stored .4.202, and raw behind the worker
# cache with FILL_TRANSCODE), RUNS times (default 3), one test at a time, a release wado.
# Prints each run's figures: ms from the first frame request to the first image and to full
# quality. Needs scripts/setup.sh and scripts/edge-build.sh done.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p wado-native --bin wado
cargo test --locked -q -p wado-tests --test ohif --no-run 2>/dev/null
for run in $(seq "${1:-3}"); do
  echo "== run $run"
  WADO_BIN="$PWD/target/release/wado" cargo test --locked -q -p wado-tests --test ohif \
    -- --test-threads 1 --nocapture from_its_first_bytes 2>&1 | grep -E "first image|FAILED|panicked"
done
