#!/usr/bin/env bash
# Runs the core's fuzz targets (cargo-fuzz, nightly) for SECONDS each (default 60).
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: prepare accept route multipart xml jpegls jpegdct htj2k htj2k_decode j2k_decode j2k_encode qido_query stow_parts
# Seeds: the fixture DICOM files for `prepare`. Crashes land in core/fuzz/artifacts/; turn each
# into a regression test (core/tests/fuzz_regressions.rs, or the codec module's tests with its
# input in codec/tests/fuzz_regressions/) before fixing it.
set -euo pipefail
cd "$(dirname "$0")/../core"
secs="${1:-60}"; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(prepare accept route multipart xml jpegls jpegdct htj2k htj2k_decode j2k_decode j2k_encode qido_query stow_parts)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2
corpus="${FUZZ_CORPUS:-/tmp/wado-fuzz}"
mkdir -p "$corpus/prepare"
cp ../tests/fixtures/corpus/*.dcm ../tests/fixtures/corpus/malformed/*.dcm "$corpus/prepare/" 2>/dev/null || true
# Codestreams inside the fixtures, cut out as seeds: every stream that starts with START (hex)
# and runs to the next EOI.
seeds() { # DIR START FILES...
  local dir="$1" start="$2"; shift 2
  mkdir -p "$dir"
  python3 - "$dir" "$start" "$@" <<'PY'
import sys, os
out, start = sys.argv[1], bytes.fromhex(sys.argv[2])
for f in sys.argv[3:]:
    b = open(f, "rb").read()
    i = b.find(start)
    while i >= 0:
        j = b.find(b"\xff\xd9", i)
        if j < 0:
            break
        open(os.path.join(out, f"{os.path.basename(f)}-{i}.bin"), "wb").write(b[i:j + 2])
        i = b.find(start, j)
PY
}
# JPEG-LS: CharLS-made, every interleave mode. JPEG DCT: baseline and 12-bit extended.
seeds "$corpus/jpegls" ffd8fff7 ../tests/fixtures/corpus/*jpegls*.dcm ../tests/fixtures/jpegls/*.dcm
seeds "$corpus/jpegdct" ffd8ff ../tests/fixtures/corpus/*jpeg_baseline*.dcm ../tests/fixtures/corpus/*jpeg_extended*.dcm
# HTJ2K: OpenJPH's codestreams in every shape our decoder's test makes (orders, precincts,
# block sizes, tiles, offsets; reversible and not), each after a mode byte of 0.
if command -v ojph_compress >/dev/null; then
  mkdir -p "$corpus/htj2k_decode"
  python3 - "$corpus/htj2k_decode" <<'PY'
import os, subprocess, sys, tempfile
out = sys.argv[1]
shapes = [[], ["-prog_order", "LRCP"], ["-prog_order", "PCRL"], ["-prog_order", "CPRL"],
          ["-precincts", "{32,32},{64,64}"], ["-block_size", "{16,64}"], ["-tile_size", "{40,40}"],
          ["-image_offset", "{3,5}", "-tile_size", "{50,30}", "-tile_offset", "{1,2}"]]
with tempfile.TemporaryDirectory() as d:
    src = os.path.join(d, "in.pgm")
    w, h = 96, 72
    open(src, "wb").write(b"P5\n%d %d\n4095\n" % (w, h) + b"".join(((x * 37 + y * 11) % 4096).to_bytes(2, "big") for y in range(h) for x in range(w)))
    for i, opts in enumerate(shapes):
        for rev in ("true", "false"):
            cs = os.path.join(d, "o.j2c")
            subprocess.run(["ojph_compress", "-i", src, "-o", cs, "-reversible", rev, *opts], check=True, capture_output=True)
            open(os.path.join(out, f"ojph{i}-{rev}"), "wb").write(b"\x00" + open(cs, "rb").read())
PY
fi
# QIDO-RS: the searches the engines' comparison asks (tests/tests/index_engines.rs), each after
# a level byte; STOW-RS: a body of two fixture instances (boundary length, chunk size, boundary).
mkdir -p "$corpus/qido_query" "$corpus/stow_parts"
python3 - "$corpus" ../tests/tests/index_engines.rs ../tests/fixtures/corpus/ct_small_ele.dcm ../tests/fixtures/corpus/sc_rgb_odd_3x3.dcm <<'PY'
import os, re, sys
out, src, a, b = sys.argv[1:5]
for i, q in enumerate(re.findall(r'"/(?:studies|series|instances)\?([^"]+)"', open(src).read())):
    open(os.path.join(out, "qido_query", f"seed{i}"), "wb").write(bytes([i % 9]) + q.encode())
body = b"".join(b"--wado\r\nContent-Type: application/dicom\r\n\r\n" + open(f, "rb").read() + b"\r\n" for f in (a, b)) + b"--wado--\r\n"
for step in (0, 7, 255):
    open(os.path.join(out, "stow_parts", f"seed{step}"), "wb").write(bytes([3, step]) + b"wado" + body)
PY
for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t"
  echo "== $t ($secs s)"
  # j2k_encode without debug assertions: see its header (openjp2's null deallocation).
  opt=(); [ "$t" = j2k_encode ] && opt=(-O)
  cargo +nightly fuzz run "${opt[@]}" "$t" "$corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | grep -E '^Done|SUMMARY|panicked' || true
done
