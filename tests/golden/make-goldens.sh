#!/usr/bin/env bash
# Regenerates the JSON goldens from independent tools (not from wado). Run from tests/.
#   dcm2json: Debian dcmtk 3.6.7; pydicom: PyPI pydicom 3.0.2.
# dcm2json refuses compressed Pixel Data in JSON, so for encapsulated files the golden is made
# from a copy without (7FE0,0010) (dcmodify -ea) and named *.nopixels.json; dcm2json's iconv
# cannot decode ISO 2022 IR 87, so that file's golden comes from pydicom.
set -euo pipefail
cd "$(dirname "$0")/.."
G=golden/dcm2json
mkdir -p "$G" golden/pydicom
for f in fixtures/corpus/*.dcm; do
  n=$(basename "$f" .dcm)
  [ "$n" = charset_japanese_chrH31 ] && continue
  if dcm2json -q -fc "$f" "$G/$n.json" 2>/dev/null; then continue; fi
  rm -f "$G/$n.json"
  tmp=$(mktemp --suffix=.dcm); cp "$f" "$tmp"
  dcmodify -q -nb -ea "(7fe0,0010)" "$tmp"
  dcm2json -q -fc "$tmp" "$G/$n.nopixels.json"
  rm -f "$tmp"
done
python3 - <<'PY'
import json, pydicom
ds = pydicom.dcmread("fixtures/corpus/charset_japanese_chrH31.dcm")
with open("golden/pydicom/charset_japanese_chrH31.json", "w", encoding="utf-8") as f:
    json.dump(ds.to_json_dict(), f, ensure_ascii=False)
PY
# The character set files (tests/fixtures/charset, from pydicom's data/charset_files): pydicom
# decodes every code extension of PS3.3 C.12.1.1.2, so it is the oracle for them all.
python3 - <<'PY'
import glob, json, os, pydicom
os.makedirs("golden/pydicom-charset", exist_ok=True)
for f in sorted(glob.glob("fixtures/charset/*.dcm")):
    n = os.path.basename(f)[:-4]
    with open(f"golden/pydicom-charset/{n}.json", "w", encoding="utf-8") as o:
        json.dump(pydicom.dcmread(f).to_json_dict(), o, ensure_ascii=False)
PY
