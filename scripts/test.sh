#!/usr/bin/env bash
# Runs every test: set-up (idempotent), unit and end-to-end tests, and the wasm32 build of the
# core. This is the README's test command; .ci/run adds fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== build"
cargo build --workspace --bins --locked
echo "== wasm32 build of wado-core"
bash scripts/wasm-check.sh
echo "== wasm32 build of the edge worker"
bash scripts/edge-build.sh
echo "== wasm32 build of the browser demo"
bash scripts/demo-build.sh
echo "== tests (native server)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
echo "== the same end-to-end suites against the edge worker (wrangler dev, local R2)"
WADO_TARGET=edge cargo test -p wado-tests --locked --test e2e --test auth --test jpegls --test htj2k --test rendered 2>&1 | tee -a "$log"
edge_status=${PIPESTATUS[0]}
[ "$status" -ne 0 ] || status=$edge_status
set -e
# One plain closing line with the totals of every test binary.
echo
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
