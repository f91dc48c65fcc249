#!/usr/bin/env bash
# The lifecycle at scale on each search index (docs/LIFECYCLE.md, docs/BENCHMARKS.md): one study
# stored with STOW-RS, corrected twice (the second time nothing changes), then deleted, on
#   sqlite  wado serve over a directory and its SQLite index (the default),
#   pg      wado serve over a directory and a PostgreSQL index (a throwaway cluster, fsync on),
#   d1      the worker under wrangler dev: R2 and D1 local (Miniflare's SQLite).
#   scripts/bench-lifecycle.sh [STUDY_DIR=/tmp/benchlab/lifecycle/A] [OUT_DIR=/tmp/lifecycle-bench] [ENGINES="sqlite pg d1"]
# STUDY_DIR: the files of one study; by default 1,000 CT slices of 128² (40 MB), made by the
# shared harness's generator (../shared/bench/gen_data.py, pydicom + numpy from .tools/s3venv).
# Env: WADO_BIN (target/release/wado); the worker needs `bash scripts/edge-build.sh` first.
# Prints one JSON line per step: {"engine", "step", "seconds", "status"}.
set -euo pipefail
cd "$(dirname "$0")/.."
STUDY="${1:-/tmp/benchlab/lifecycle/A}"
OUT="${2:-/tmp/lifecycle-bench}"
ENGINES="${3:-sqlite pg d1}"
BIN="$(realpath "${WADO_BIN:-target/release/wado}")"
BENCH="${BENCH:-../shared/bench}"
if [ ! -d "$STUDY" ]; then
  .tools/s3venv/bin/python "$BENCH/gen_data.py" --out "$(dirname "$STUDY")" --only A \
    --a-n 1000 --size 128 --no-validate >/dev/null
fi
N=$(find "$STUDY" -name '*.dcm' | wc -l)
UID_=$(.tools/s3venv/bin/python -c "import pydicom,sys,glob; print(pydicom.dcmread(sorted(glob.glob(sys.argv[1]+'/*.dcm'))[0], stop_before_pixels=True).StudyInstanceUID)" "$STUDY")
rm -rf "$OUT" && mkdir -p "$OUT"
TOKEN=writerwriterwriter2
printf 'writerwriterwriter2 DCM4CHEE write,delete\n' >"$OUT/tokens"
PIDS=()
PGBIN=""
cleanup() {
  for p in "${PIDS[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
  if [ -n "$PGBIN" ]; then runpg "$PGBIN/pg_ctl" -D "$OUT/pg/db" -m immediate stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
runpg() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 900); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }
# One step timed: its wall time, and the HTTP status (or the command's exit code).
step() {
  local engine=$1 name=$2; shift 2
  local t0 t1 status
  t0=$(date +%s.%N)
  status=$("$@")
  t1=$(date +%s.%N)
  printf '{"engine": "%s", "step": "%s", "instances": %s, "seconds": %.3f, "status": "%s"}\n' \
    "$engine" "$name" "$N" "$(echo "$t1 - $t0" | bc)" "$status" | tee -a "$OUT/results.jsonl"
}
store() { "$BIN" store --token "$TOKEN" "$1" "$STUDY" >"$OUT/store-$2.log" 2>&1 && echo ok || echo "failed: $(tail -1 "$OUT/store-$2.log")"; }
correct() {
  curl -s -o "$OUT/patch.out" -D "$OUT/patch.headers" -w '%{http_code}' -X PATCH \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/dicom+json' \
    --data "{\"00100010\": {\"vr\": \"PN\", \"Value\": [{\"Alphabetic\": \"$2\"}]}, \"00080050\": {\"vr\": \"SH\", \"Value\": [\"ACC-$2\"]}}" \
    "$1/studies/$UID_"
}
delete() { curl -s -o "$OUT/delete.out" -w '%{http_code}' -X DELETE -H "Authorization: Bearer $TOKEN" "$1/studies/$UID_"; }
count() {
  curl -s -H "Authorization: Bearer $TOKEN" "$1/studies?StudyInstanceUID=$UID_&includefield=00201208" |
    python3 -c 'import json,sys; a=json.load(sys.stdin) or [{}]; print(a[0].get("00201208",{}).get("Value",[0])[0])'
}
run_engine() {
  local engine=$1 root=$2
  step "$engine" "stow (100 a request, 2 connections)" store "$root" "$engine"
  echo "  searched: $(count "$root") instances" >&2
  step "$engine" "correct (2 attributes)" correct "$root" "Doe^Jane"
  step "$engine" "correct again, same values" correct "$root" "Doe^Jane"
  step "$engine" "correct (new values)" correct "$root" "Roe^Rita"
  step "$engine" "delete study" delete "$root"
  echo "  searched after delete: $(count "$root") instances" >&2
}
for engine in $ENGINES; do
  port=$(free_port)
  case $engine in
  sqlite)
    setsid "$BIN" serve --tokens-file "$OUT/tokens" --data "$OUT/sqlite" --bind "127.0.0.1:$port" >"$OUT/sqlite.log" 2>&1 &
    PIDS+=($!) ;;
  pg)
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    mkdir -p "$OUT/pg" && if [ "$(id -u)" = 0 ]; then chown nobody "$OUT/pg"; fi
    runpg "$PGBIN/initdb" -D "$OUT/pg/db" -U wado --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    pgport=$(free_port)
    runpg "$PGBIN/pg_ctl" -D "$OUT/pg/db" -o "-k $OUT/pg -p $pgport -c listen_addresses=127.0.0.1 ${PG_OPTS:-}" -w -l "$OUT/pg/pg.log" start >/dev/null
    setsid "$BIN" serve --tokens-file "$OUT/tokens" --data "$OUT/pgdata" --index "postgres://wado@127.0.0.1:$pgport/postgres" \
      --bind "127.0.0.1:$port" >"$OUT/pg-wado.log" 2>&1 &
    PIDS+=($!) ;;
  d1)
    mkdir -p "$OUT/d1"
    (cd edge && setsid env WRANGLER_SEND_METRICS=false CI=1 ../node_modules/.bin/wrangler dev --ip 127.0.0.1 --port "$port" \
      --inspector-port "$(free_port)" --persist-to "$OUT/d1" --show-interactive-dev-session=false \
      --var "TOKENS:$(cat "$OUT/tokens")" --var MAX_STORE_MB:100 </dev/null >"$OUT/wrangler.log" 2>&1 &
      echo $! >"$OUT/wrangler.pid")
    PIDS+=("$(cat "$OUT/wrangler.pid")") ;;
  *) echo "unknown engine $engine" >&2; exit 2 ;;
  esac
  root="http://127.0.0.1:$port/dcm4chee-arc/aets/DCM4CHEE/rs"
  wait_up "$root/studies"
  run_engine "$engine" "$root"
done
echo "results: $OUT/results.jsonl"
