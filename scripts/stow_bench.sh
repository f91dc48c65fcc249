#!/usr/bin/env bash
# STOW-RS beside Orthanc's (DICOMweb plugin) on the same files, in one run (docs/BENCHMARKS.md).
# Needs the shared harness's data (../shared/bench/gen_data.py: A = one 264 MB study of 500
# instances, C = 200 studies of 100 small ones) and its Orthanc control script.
#   scripts/stow_bench.sh [DATA_DIR=/tmp/benchlab/data-full] [OUT_DIR=/tmp/stow-bench]
# Env: WADO_BIN (target/release/wado), BENCH (../shared/bench)
# Three servers at once: wado durable (every write synced: the default), wado --no-fsync (as
# Orthanc, which does not sync its writes), Orthanc; each measure stores other studies.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-/tmp/benchlab/data-full}"
OUT="${2:-/tmp/stow-bench}"
BIN="${WADO_BIN:-target/release/wado}"
BENCH="${BENCH:-../shared/bench}"
PORT=18190
NPORT=18191
rm -rf "$OUT" && mkdir -p "$OUT"
export ORTHANC_DIR="$OUT/orthanc" ORTHANC_PORT=18143
bash "$BENCH/servers/orthanc.sh" start >/dev/null
"$BIN" serve --allow-anonymous-writes --data "$OUT/wado-data" --bind "127.0.0.1:$PORT" >"$OUT/wado.log" 2>&1 &
WPID=$!
"$BIN" serve --allow-anonymous-writes --no-fsync --data "$OUT/wado-nofsync" --bind "127.0.0.1:$NPORT" >"$OUT/wado-nofsync.log" 2>&1 &
NPID=$!
trap 'kill $WPID $NPID 2>/dev/null; bash "$BENCH/servers/orthanc.sh" stop >/dev/null' EXIT
for p in $PORT $NPORT; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$p/health" && break; sleep 0.1; done
done
OPID=$(cat "$ORTHANC_DIR/orthanc.pid")
W="http://127.0.0.1:$PORT/dcm4chee-arc/aets/DCM4CHEE/rs/studies"
N="http://127.0.0.1:$NPORT/dcm4chee-arc/aets/DCM4CHEE/rs/studies"
O="http://127.0.0.1:$ORTHANC_PORT/dicom-web/studies"
run() { python3 scripts/stow_bench.py "$@" | tee -a "$OUT/results.jsonl"; }
# Small instances, 100 per request, one connection, in turns (3 × 10 studies each).
for g in 0 1 2; do
  run --label "wado 100/request" --url "$W" --pid "$WPID" "$DATA"/C/S00${g}?
  run --label "orthanc 100/request" --url "$O" --pid "$OPID" "$DATA"/C/S01${g}?
done
# One instance per request (a modality's or a router's shape): 500 into 5 studies of 100,
# one connection then eight.
for c in 1 8; do
  g=$([ $c = 1 ] && echo 3 || echo 6)
  run --label "wado 1/request c=$c" --per-request 1 --connections $c --url "$W" --pid "$WPID" "$DATA"/C/S00${g}[0-4]
  run --label "wado --no-fsync 1/request c=$c" --per-request 1 --connections $c --url "$N" --pid "$NPID" "$DATA"/C/S00$((g + 1))[0-4]
  run --label "orthanc 1/request c=$c" --per-request 1 --connections $c --url "$O" --pid "$OPID" "$DATA"/C/S00$((g + 2))[0-4]
done
# 529 KB CT slices one per request: 100 of study A with one connection, 100 others with eight.
for c in 1 8; do
  skip=$([ $c = 1 ] && echo 300 || echo 400)
  run --label "wado 529 KB 1/request c=$c" --per-request 1 --connections $c --skip $skip --limit 100 --url "$W" --pid "$WPID" "$DATA/A"
  run --label "wado --no-fsync 529 KB 1/request c=$c" --per-request 1 --connections $c --skip $skip --limit 100 --url "$N" --pid "$NPID" "$DATA/A"
  run --label "orthanc 529 KB 1/request c=$c" --per-request 1 --connections $c --skip $skip --limit 100 --url "$O" --pid "$OPID" "$DATA/A"
done
# The first 300 of study A (158 MB) in one request, beside the loopback limit.
run --label "loopback sink" --sink --per-request 100000 --limit 300 "$DATA/A"
run --label "wado 158 MB in one request" --per-request 100000 --limit 300 --url "$W" --pid "$WPID" "$DATA/A"
run --label "orthanc 158 MB in one request" --per-request 100000 --limit 300 --url "$O" --pid "$OPID" "$DATA/A"
# One study growing to 2,000 instances, one per request: the last 100 against the first 100.
python3 scripts/stow_growth.py --label "wado growth" --url "$W" --n 2000 | tee -a "$OUT/results.jsonl"
python3 scripts/stow_growth.py --label "orthanc growth" --url "$O" --n 2000 | tee -a "$OUT/results.jsonl"
echo "results: $OUT/results.jsonl"
