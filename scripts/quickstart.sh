#!/usr/bin/env bash
# Builds the server, imports the sample study shipped in the repository and serves it on
# http://127.0.0.1:8080, printing curl commands to try. Ctrl-C stops the server.
#
# Only what serving needs comes first (cargo and the repository: nothing to install); the
# browser demo (wasm: Debian's rustc-web, wasm-bindgen-cli) builds in the background once the
# server is up, and appears at /demo/ when it is ready (its log: .tools/demo-build.log).
# WADO_DEMO=0 skips it. Test tooling is the test command's (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
command -v cargo >/dev/null || { echo "quickstart: cargo (rustup) not found on PATH" >&2; exit 1; }
echo "== building wado (release)"
cargo build --release --locked -p wado-native
DATA="${WADO_DATA:-./data}"
BIND="${WADO_BIND:-127.0.0.1:8080}"
echo "== importing the sample study (tests/fixtures/corpus, valid files) into $DATA"
./target/release/wado import --data "$DATA" tests/fixtures/corpus/*.dcm || true
ROOT="http://$BIND/dcm4chee-arc/aets/DCM4CHEE/rs"
# A 10-frame instance of the sample, found through the layout's own index (no DICOM tools).
index=$(grep -lE '"number_of_frames":10[,}]' "$DATA"/studies/*/series/*/instances/*.index.json | head -1)
rel=${index#"$DATA"/studies/}
ST=${rel%%/*}; rel=${rel#*/series/}
SE=${rel%%/*}; rel=${rel#*/instances/}
SOP=${rel%.index.json}

./target/release/wado serve --data "$DATA" --bind "$BIND" --demo-dir web-demo/dist &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/${BIND%:*}/${BIND##*:}") 2>/dev/null; then break; fi
  sleep 0.1
done
cat <<TXT

wado is serving $ROOT ($(( $(date +%s) - started )) s after the start of this script)
Try, in another terminal:
  curl -s $ROOT/studies | head -c 600; echo
  curl -s "$ROOT/studies?PatientName=*doe*&includefield=00081030" | head -c 600; echo     # QIDO-RS search
  curl -s "$ROOT/studies/$ST/series?includefield=0008103E" | head -c 600; echo
  curl -s $ROOT/studies/$ST/metadata | head -c 600; echo
  curl -s -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download} bytes gzip\n' $ROOT/studies/$ST/series/$SE/metadata
  curl -s -H 'Accept: multipart/related; type="application/dicom"; transfer-syntax=*' -o study.multipart $ROOT/studies/$ST
  curl -s -H 'Accept: multipart/related; type=application/octet-stream; transfer-syntax=*' -o frames.multipart $ROOT/studies/$ST/series/$SE/instances/$SOP/frames/1,5,10
  curl -s -H 'Accept: application/dicom' -o instance.dcm $ROOT/studies/$ST/series/$SE/instances/$SOP

TXT
if [ "${WADO_DEMO:-1}" = 1 ] && [ ! -f web-demo/dist/index.html ]; then
  mkdir -p .tools
  echo "The browser demo is being built in the background (.tools/demo-build.log); it will be at http://$BIND/demo/"
  (bash scripts/setup-wasm.sh && bash scripts/demo-build.sh && echo "the demo is ready: http://$BIND/demo/") \
    > .tools/demo-build.log 2>&1 &
elif [ -f web-demo/dist/index.html ]; then
  echo "Open the demo: http://$BIND/demo/  (study list, series, attributes, frames decoded in wasm)"
fi
wait $server
