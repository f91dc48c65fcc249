#!/usr/bin/env bash
# Sets everything up, imports the sample study shipped in the repository and serves it on
# http://127.0.0.1:8080, printing curl commands to try. Ctrl-C stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p wado-native
echo "== building the browser demo (wasm)"
bash scripts/demo-build.sh
DATA="${WADO_DATA:-./data}"
BIND="${WADO_BIND:-127.0.0.1:8080}"
echo "== importing the sample study (tests/fixtures/corpus, valid files) into $DATA"
./target/release/wado import --data "$DATA" tests/fixtures/corpus/*.dcm || true
ROOT="http://$BIND/dcm4chee-arc/aets/DCM4CHEE/rs"
study_of() { dcmdump -q -M "$1" | grep '^(0020,000d)' | sed 's/.*\[\(.*\)\].*/\1/'; }
series_of() { dcmdump -q -M "$1" | grep '^(0020,000e)' | sed 's/.*\[\(.*\)\].*/\1/'; }
sop_of() { dcmdump -q -M "$1" | grep '^(0008,0018)' | sed 's/.*\[\(.*\)\].*/\1/'; }
F=tests/fixtures/corpus/emr_10frame_ele.dcm
ST=$(study_of "$F"); SE=$(series_of "$F"); SOP=$(sop_of "$F")
cat <<TXT

wado is starting on $ROOT
Open the demo: http://$BIND/demo/  (study list, series, attributes, frames decoded in wasm)
Try, in another terminal:
  curl -s $ROOT/studies/$ST/metadata | head -c 600; echo
  curl -s -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download} bytes gzip\n' $ROOT/studies/$ST/series/$SE/metadata
  curl -s -H 'Accept: multipart/related; type="application/dicom"; transfer-syntax=*' -o study.multipart $ROOT/studies/$ST
  curl -s -H 'Accept: multipart/related; type=application/octet-stream; transfer-syntax=*' -o frames.multipart $ROOT/studies/$ST/series/$SE/instances/$SOP/frames/1,5,10
  curl -s -H 'Accept: application/dicom' -o instance.dcm $ROOT/studies/$ST/series/$SE/instances/$SOP && dcmdump instance.dcm | head -20

TXT
exec ./target/release/wado serve --data "$DATA" --bind "$BIND" --demo-dir web-demo/dist
