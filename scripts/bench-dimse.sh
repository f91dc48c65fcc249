#!/usr/bin/env bash
# DIMSE side by side: wado (release build) and Orthanc (Debian, bench/setup.sh) on the same data
# of the shared harness, in one run, with DCMTK's tools as the modality and the workstation:
#   1. storescu of archive C (20,000 small CT instances) on one association: instances/s;
#   2. storescu of study A (500 x 529 KB): MB/s;
#   3. C-FIND of a study by its UID, 300 times on one association (pynetdicom): ms per query,
#      round trip (the server's time is at most this);
#   4. C-MOVE of study A to a storescp: seconds and MB/s.
# Both store durably as configured by default (wado syncs each object; Orthanc as it does).
# Prints a table and wado/Orthanc ratios, then the modality's own ceiling: storescu into
# DCMTK's storescp, which syncs nothing, both ends with Nagle's algorithm off (measures 1-2).
#
#   scripts/bench-dimse.sh [DATA_DIR]    (default /tmp/benchlab/data-full: ../shared/bench/gen_data.py)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-/tmp/benchlab/data-full}"
BENCH="${BENCH_DIR:-../shared/bench}"
WADO="${WADO_BIN:-target/release/wado}"
PY="$(pwd)/.tools/s3venv/bin/python"
SCRATCH=/tmp/benchlab/dimse
[ -d "$DATA/A" ] && [ -d "$DATA/C" ] || { echo "bench-dimse: no data in $DATA (run $BENCH/gen_data.py)" >&2; exit 2; }
[ -x "$WADO" ] || { echo "bench-dimse: build $WADO first (cargo build --release -p wado-native)" >&2; exit 2; }
command -v Orthanc >/dev/null || { echo "bench-dimse: Orthanc missing ($BENCH/setup.sh)" >&2; exit 2; }
rm -rf "$SCRATCH"; mkdir -p "$SCRATCH"
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# The destination of the moves.
DEST_PORT=$(free_port)
mkdir -p "$SCRATCH/dest"
storescp --fork -aet DEST -od "$SCRATCH/dest" +xa "$DEST_PORT" &
pids+=($!)

start_wado() {
  local port=$1 http=$2
  cat >"$SCRATCH/peers.txt" <<EOF
STORESCU  localhost  DCM4CHEE  store
FINDSCU   localhost  DCM4CHEE  find
MOVESCU   localhost  DCM4CHEE  move
DEST      127.0.0.1:$DEST_PORT  -  -
EOF
  "$WADO" serve --data "$SCRATCH/wado" --bind "127.0.0.1:$http" --dimse-port "$port" \
    --dimse-peers "$SCRATCH/peers.txt" >"$SCRATCH/wado.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.1:$http/dcm4chee-arc/aets/DCM4CHEE/rs/studies?limit=1" && return 0; sleep 0.1; done
  echo "wado did not come up" >&2; tail "$SCRATCH/wado.log" >&2; exit 1
}

start_orthanc() {
  local port=$1 http=$2
  mkdir -p "$SCRATCH/orthanc"
  sed -e 's#^\s*//.*$##' -e 's#\s//\s.*$##' "$BENCH/orthanc.json" | "$PY" -c '
import json, sys
c = json.load(sys.stdin)
d, port, http, dest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
c["StorageDirectory"] = c["IndexDirectory"] = d
c["HttpPort"] = http
c["DicomServerEnabled"] = True
c["DicomAet"] = "ORTHANC"
c["DicomPort"] = port
c["DicomCheckCalledAet"] = False
c["DicomAlwaysAllowStore"] = True
c["DicomAlwaysAllowFind"] = True
c["DicomAlwaysAllowMove"] = True
c["DicomModalities"] = {"dest": ["DEST", "127.0.0.1", dest]}
json.dump(c, open(d + "/orthanc.json", "w"), indent=1)
' "$SCRATCH/orthanc" "$port" "$http" "$DEST_PORT"
  Orthanc "$SCRATCH/orthanc/orthanc.json" >"$SCRATCH/orthanc.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.1:$http/system" && return 0; sleep 0.1; done
  echo "orthanc did not come up" >&2; tail "$SCRATCH/orthanc.log" >&2; exit 1
}

# One server's four measures, as "name value" lines into $SCRATCH/$1.tsv.
measure() {
  local name=$1 aet=$2 port=$3 out="$SCRATCH/$1.tsv"
  : >"$out"
  local n_c n_a bytes_a t0 t1
  n_c=$(find "$DATA/C" -type f | wc -l)
  n_a=$(find "$DATA/A" -type f | wc -l)
  bytes_a=$(du -sb "$DATA/A" | cut -f1)
  # BENCH_NODELAY=1: storescu with Nagle's algorithm off (DCMTK's TCP_NODELAY variable).
  local env=(env)
  [ "${BENCH_NODELAY:-0}" = 1 ] && env=(env TCP_NODELAY=1)
  t0=$(now); "${env[@]}" storescu -aet STORESCU -aec "$aet" +sd +r 127.0.0.1 "$port" "$DATA/C"; t1=$(now)
  echo "storeC_per_s $(echo "$n_c / ($t1 - $t0)" | bc -l)" >>"$out"
  t0=$(now); "${env[@]}" storescu -aet STORESCU -aec "$aet" +sd +r 127.0.0.1 "$port" "$DATA/A"; t1=$(now)
  echo "storeA_MB_s $(echo "$bytes_a / 1000000 / ($t1 - $t0)" | bc -l)" >>"$out"
  "$PY" - "$aet" "$port" "$(ls "$DATA/A" | head -1)" "$DATA/A" >>"$out" <<'EOF'
import sys, time, os
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND
aet, port, first, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
path = os.path.join(folder, first)
while os.path.isdir(path):
    path = os.path.join(path, sorted(os.listdir(path))[0])
study = dcmread(path, stop_before_pixels=True).StudyInstanceUID
ae = AE(ae_title="FINDSCU")
ae.add_requested_context(FIND)
a = ae.associate("127.0.0.1", port, ae_title=aet)
assert a.is_established
times = []
for _ in range(300):
    q = Dataset(); q.QueryRetrieveLevel = "STUDY"; q.StudyInstanceUID = study
    q.PatientName = ""; q.NumberOfStudyRelatedInstances = ""
    t = time.perf_counter(); n = 0
    for status, ident in a.send_c_find(q, FIND):
        if status and status.Status in (0xFF00, 0xFF01): n += 1
    times.append(time.perf_counter() - t)
    assert n == 1, n
a.release()
times.sort()
print("find_ms_p50", times[len(times)//2] * 1000)
print("find_ms_mean", sum(times) / len(times) * 1000)
print("study", study)
EOF
  local study
  study=$(awk '$1=="study"{print $2}' "$out")
  rm -rf "$SCRATCH/dest"; mkdir -p "$SCRATCH/dest"
  t0=$(now)
  movescu -S -aet MOVESCU -aec "$aet" -aem DEST -k QueryRetrieveLevel=STUDY -k "StudyInstanceUID=$study" 127.0.0.1 "$port"
  t1=$(now)
  local moved
  moved=$(find "$SCRATCH/dest" -type f | wc -l)
  [ "$moved" -eq "$n_a" ] || { echo "$name: C-MOVE delivered $moved of $n_a" >&2; exit 1; }
  echo "moveA_s $(echo "$t1 - $t0" | bc -l)" >>"$out"
  echo "moveA_MB_s $(echo "$bytes_a / 1000000 / ($t1 - $t0)" | bc -l)" >>"$out"
}

WADO_DIMSE=$(free_port); WADO_HTTP=$(free_port)
start_wado "$WADO_DIMSE" "$WADO_HTTP"
echo "== wado"
measure wado DCM4CHEE "$WADO_DIMSE"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true

ORTHANC_DIMSE=$(free_port); ORTHANC_HTTP=$(free_port)
start_orthanc "$ORTHANC_DIMSE" "$ORTHANC_HTTP"
echo "== orthanc"
measure orthanc ORTHANC "$ORTHANC_DIMSE"

echo
printf "%-22s %12s %12s %8s\n" measure wado orthanc ratio
for k in storeC_per_s storeA_MB_s find_ms_p50 find_ms_mean moveA_s moveA_MB_s; do
  w=$(awk -v k="$k" '$1==k{print $2}' "$SCRATCH/wado.tsv")
  o=$(awk -v k="$k" '$1==k{print $2}' "$SCRATCH/orthanc.tsv")
  printf "%-22s %12.2f %12.2f %8.2f\n" "$k" "$w" "$o" "$(echo "$w / $o" | bc -l)"
done

# The ceiling: what storescu sends a server that only writes the files it gets.
CEIL_PORT=$(free_port)
mkdir -p "$SCRATCH/ceiling"
TCP_NODELAY=1 storescp -od "$SCRATCH/ceiling" "$CEIL_PORT" &
pids+=($!)
sleep 0.5
n_c=$(find "$DATA/C" -type f | wc -l)
bytes_a=$(du -sb "$DATA/A" | cut -f1)
t0=$(now); TCP_NODELAY=1 storescu -aet STORESCU -aec ANY +sd +r 127.0.0.1 "$CEIL_PORT" "$DATA/C"; t1=$(now)
ceil_c=$(echo "$n_c / ($t1 - $t0)" | bc -l)
rm -rf "$SCRATCH/ceiling"; mkdir -p "$SCRATCH/ceiling"
t0=$(now); TCP_NODELAY=1 storescu -aet STORESCU -aec ANY +sd +r 127.0.0.1 "$CEIL_PORT" "$DATA/A"; t1=$(now)
ceil_a=$(echo "$bytes_a / 1000000 / ($t1 - $t0)" | bc -l)
echo
printf "storescu into DCMTK's storescp (no sync, TCP_NODELAY both ends): %.0f instances/s of C, %.0f MB/s of A\n" "$ceil_c" "$ceil_a"
