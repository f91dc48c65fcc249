#!/usr/bin/env bash
# STOW-RS beside Orthanc's (DICOMweb plugin) on the same files, in one run (docs/BENCHMARKS.md).
# Needs the shared harness's data (../shared/bench/gen_data.py: A = one 264 MB study of 500
# instances, C = 200 studies of 100 small ones) and its Orthanc control script.
#   scripts/stow_bench.sh [DATA_DIR=/tmp/benchlab/data-full] [OUT_DIR=/tmp/stow-bench]
# Env: WADO_BIN (target/release/wado), BENCH (../shared/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-/tmp/benchlab/data-full}"
OUT="${2:-/tmp/stow-bench}"
BIN="${WADO_BIN:-target/release/wado}"
BENCH="${BENCH:-../shared/bench}"
PORT=18190
rm -rf "$OUT" && mkdir -p "$OUT"
export ORTHANC_DIR="$OUT/orthanc" ORTHANC_PORT=18143
bash "$BENCH/servers/orthanc.sh" start >/dev/null
"$BIN" serve --data "$OUT/wado-data" --bind "127.0.0.1:$PORT" >"$OUT/wado.log" 2>&1 &
WPID=$!
trap 'kill $WPID 2>/dev/null; bash "$BENCH/servers/orthanc.sh" stop >/dev/null' EXIT
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 0.1; done
OPID=$(cat "$ORTHANC_DIR/orthanc.pid")
W="http://127.0.0.1:$PORT/dcm4chee-arc/aets/DCM4CHEE/rs/studies"
O="http://127.0.0.1:$ORTHANC_PORT/dicom-web/studies"
run() { python3 scripts/stow_bench.py "$@" | tee -a "$OUT/results.jsonl"; }
# Small instances, 100 per request, one connection: wado and Orthanc in turns, other studies
# each time (nothing is "already stored").
for g in 0 1 2; do
  set -- "$DATA"/C/S00${g}?
  run --label "wado 100/request" --url "$W" --pid "$WPID" "$@"
  set -- "$DATA"/C/S01${g}?
  run --label "orthanc 100/request" --url "$O" --pid "$OPID" "$@"
done
# One instance per request (what load_rest.py --stow sends).
run --label "wado 1/request" --per-request 1 --url "$W" --pid "$WPID" "$DATA"/C/S002[0-4]
run --label "orthanc 1/request" --per-request 1 --url "$O" --pid "$OPID" "$DATA"/C/S003[0-4]
# The 264 MB study in one request, beside the loopback limit (a server that only reads).
run --label "loopback sink" --sink --per-request 100000 "$DATA/A"
run --label "wado 264 MB study" --per-request 100000 --url "$W" --pid "$WPID" "$DATA/A"
run --label "orthanc 264 MB study" --per-request 100000 --url "$O" --pid "$OPID" "$DATA/A"
echo "results: $OUT/results.jsonl"
