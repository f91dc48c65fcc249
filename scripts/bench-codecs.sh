#!/usr/bin/env bash
# Encode/decode speed of each codec wado writes (through the core's frame transcoding) beside
# the C libraries behind DCMTK and GDCM, in process, on the very same 512×512 frames
# (scripts/bench-frames.sh): libjpeg-turbo and OpenJPEG through Pillow (PyPI wheels), CharLS
# through pyjpegls. Median milliseconds and megapixels per second. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-frames.sh
"$venv/bin/python" -c 'import PIL, jpeg_ls' 2>/dev/null || "$venv/bin/pip" install --quiet pillow pyjpegls
cargo build --release --locked -q -p wado-tests --bin codec-bench
./target/release/codec-bench "$work/grey16.raw" "$work/rgb8.raw" "${ITERATIONS:-20}"
"$venv/bin/python" - "$work" "${ITERATIONS:-20}" <<'PY'
import io, sys, time, numpy as np, jpeg_ls
from PIL import Image, features
w, n = sys.argv[1], int(sys.argv[2])
g16 = np.fromfile(f"{w}/grey16.raw", dtype="<u2").reshape(512, 512)
frames = {
    "16-bit grey": g16,
    "12-bit grey": (g16 >> 4).astype("<u2"),
    "8-bit grey": (g16 >> 8).astype(np.uint8),
    "8-bit RGB": np.fromfile(f"{w}/rgb8.raw", dtype=np.uint8).reshape(512, 512, 3),
}
def pil_codec(fmt, **kw):
    def enc(a):
        b = io.BytesIO(); Image.fromarray(a).save(b, fmt, **kw); return b.getvalue()
    def dec(s):
        im = Image.open(io.BytesIO(s)); im.load(); return im
    return enc, dec
codecs = {
    f"JPEG Baseline q90 (libjpeg-turbo {features.version('libjpeg_turbo')})":
        (lambda a: a.dtype == np.uint8, *pil_codec("JPEG", quality=90, subsampling=1)),
    f"JPEG 2000 lossless (OpenJPEG {features.version('jpg_2000')})":
        (lambda a: True, *pil_codec("JPEG2000", irreversible=False, no_jp2=True)),
    f"JPEG-LS lossless (CharLS)":
        (lambda a: True, jpeg_ls.encode, jpeg_ls.decode),
}
mp = 512 * 512 / 1e6
for fname, a in frames.items():
    for cname, (ok, enc, dec) in codecs.items():
        if not ok(a):
            continue
        try:
            e_t, d_t = [], []
            for _ in range(n):
                t = time.perf_counter(); s = enc(a); e_t.append(time.perf_counter() - t)
                t = time.perf_counter(); dec(s); d_t.append(time.perf_counter() - t)
        except Exception as x:  # e.g. a mode the binding cannot write
            print(f"C     {fname:<12} {cname}: {x}")
            continue
        e, d = sorted(e_t)[n // 2] * 1000, sorted(d_t)[n // 2] * 1000
        print(f"C     {fname:<12} {cname:<40} encode {e:7.2f} ms ({mp / e * 1000:6.1f} MP/s)  decode {d:7.2f} ms ({mp / d * 1000:6.1f} MP/s)  {len(s)} bytes")
PY
# HTJ2K: OpenJPH's library in process (tests/oracles/ojph_codec.cpp, libopenjph-dev), lossless
# RPCL, on the same frames.
mkdir -p target/oracles
g++ -O2 -o target/oracles/ojph_codec-bench tests/oracles/ojph_codec.cpp -lopenjph
"$venv/bin/python" - "$work" <<'PY'
import sys, numpy as np
w = sys.argv[1]
g16 = np.fromfile(f"{w}/grey16.raw", dtype="<u2")
(g16.astype("<i4")).tofile(f"{w}/grey16.i32")
((g16 >> 4).astype("<i4")).tofile(f"{w}/grey12.i32")
((g16 >> 8).astype("<i4")).tofile(f"{w}/grey8.i32")
np.fromfile(f"{w}/rgb8.raw", dtype=np.uint8).astype("<i4").tofile(f"{w}/rgb8.i32")
PY
for f in "16-bit grey:grey16:1:16" "12-bit grey:grey12:1:12" "8-bit grey:grey8:1:8" "8-bit RGB:rgb8:3:8"; do
  IFS=: read -r label file comps bits <<<"$f"
  read -r e d size < <(target/oracles/ojph_codec-bench bench "$work/$file.i32" 512 512 "$comps" "$bits" "${ITERATIONS:-20}")
  awk -v l="$label" -v e="$e" -v d="$d" -v s="$size" 'BEGIN { mp = 512*512/1e6;
    printf "C     %-12s %-40s encode %7.2f ms (%6.1f MP/s)  decode %7.2f ms (%6.1f MP/s)  %d bytes\n",
      l, "HTJ2K lossless RPCL (OpenJPH 0.9)", e, mp/e*1000, d, mp/d*1000, s }'
done
# HTJ2K in wasm32 (the demo's module: our encoder, openjp2's decoder), under node.
if [ -f web-demo/dist/pkg/wado_web_demo_bg.wasm ]; then
  node --input-type=module - "$work" "${ITERATIONS:-20}" <<'JS'
import fs from "node:fs";
import { initSync, encodeHtj2k, decodeHtj2k } from "./web-demo/dist/pkg/wado_web_demo.js";
initSync({ module: fs.readFileSync("web-demo/dist/pkg/wado_web_demo_bg.wasm") });
const [w, n] = [process.argv[2], Number(process.argv[3])];
const grey = new Uint16Array(new Uint8Array(fs.readFileSync(`${w}/grey16.raw`)).buffer);
const rgb = Uint16Array.from(fs.readFileSync(`${w}/rgb8.raw`));
for (const [name, s, c, bits] of [["16-bit grey", grey, 1, 16], ["8-bit RGB", rgb, 3, 8]]) {
  const et = [], dt = [];
  let enc;
  for (let i = 0; i < n; i++) {
    let t = performance.now(); enc = encodeHtj2k(s, 512, 512, c, bits, true); et.push(performance.now() - t);
    t = performance.now(); const back = decodeHtj2k(enc, 512, 512, c, bits); dt.push(performance.now() - t);
    const vals = bits > 8 ? new Uint16Array(back.buffer, back.byteOffset, back.length / 2) : back;
    if (vals.length !== s.length || vals.some((v, k) => v !== s[k])) throw new Error("wasm round trip differs");
  }
  const med = (a) => a.sort((x, y) => x - y)[a.length >> 1];
  const [e, d] = [med(et), med(dt)];
  console.log(`wasm  ${name.padEnd(12)} ${"HTJ2K RPCL lossless".padEnd(22)} encode ${e.toFixed(2).padStart(7)} ms (${(0.262144 / (e / 1000)).toFixed(1).padStart(6)} MP/s)  decode ${d.toFixed(2).padStart(7)} ms (${(0.262144 / (d / 1000)).toFixed(1).padStart(6)} MP/s)  ${enc.length} bytes`);
}
JS
else
  echo "(build the demo, bash scripts/demo-build.sh, for the wasm figures)"
fi
