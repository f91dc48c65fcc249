#!/usr/bin/env bash
# JPEG-LS speed: wado's pure-Rust codec beside CharLS (pyjpegls, from PyPI) on the same two
# 512×512 frames, made from the fixtures: a 16-bit MR upsampled 2× and an 8-bit ultrasound RGB
# cropped. Prints median milliseconds and megapixels per second. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-frames.sh
venv=.tools/s3venv
"$venv/bin/python" -c 'import jpeg_ls' 2>/dev/null || "$venv/bin/pip" install --quiet pyjpegls
cargo build --release --locked -q -p wado-tests --bin jls-bench
./target/release/jls-bench "$work/grey16.raw" "$work/rgb8.raw" "${ITERATIONS:-30}"
"$venv/bin/python" - "$work" "${ITERATIONS:-30}" <<'PY'
import sys, time, numpy as np, jpeg_ls
w, n = sys.argv[1], int(sys.argv[2])
frames = {
    "16-bit grey": np.fromfile(f"{w}/grey16.raw", dtype="<u2").reshape(512, 512),
    "8-bit RGB": np.fromfile(f"{w}/rgb8.raw", dtype=np.uint8).reshape(512, 512, 3),
}
for name, a in frames.items():
    enc_t, dec_t = [], []
    for _ in range(n):
        t = time.perf_counter(); enc = jpeg_ls.encode(a); enc_t.append(time.perf_counter() - t)
        t = time.perf_counter(); back = jpeg_ls.decode(enc); dec_t.append(time.perf_counter() - t)
        assert (back == a).all()
    e, d = sorted(enc_t)[n // 2] * 1000, sorted(dec_t)[n // 2] * 1000
    print(f"CharLS {name:<12} encode {e:6.2} ms ({0.262144 / (e / 1000):5.1f} MP/s)  decode {d:6.2} ms ({0.262144 / (d / 1000):5.1f} MP/s)  {len(enc)} bytes")
PY
# The same codec compiled to wasm32 (the demo's module), under node.
if [ -f web-demo/dist/pkg/wado_web_demo_bg.wasm ]; then
  node --input-type=module - "$work" "${ITERATIONS:-30}" <<'JS'
import fs from "node:fs";
import { initSync, encodeJls, decodeJls } from "./web-demo/dist/pkg/wado_web_demo.js";
initSync({ module: fs.readFileSync("web-demo/dist/pkg/wado_web_demo_bg.wasm") });
const [w, n] = [process.argv[2], Number(process.argv[3])];
const grey = new Uint16Array(new Uint8Array(fs.readFileSync(`${w}/grey16.raw`)).buffer);
const rgb = Uint16Array.from(fs.readFileSync(`${w}/rgb8.raw`));
for (const [name, s, c, bits, ilv] of [["16-bit grey", grey, 1, 16, 0], ["8-bit RGB", rgb, 3, 8, 2]]) {
  const et = [], dt = [];
  let enc;
  for (let i = 0; i < n; i++) {
    let t = performance.now(); enc = encodeJls(s, 512, 512, c, bits, 0, ilv); et.push(performance.now() - t);
    t = performance.now(); const back = decodeJls(enc); dt.push(performance.now() - t);
    if (back.length !== s.length || back.some((v, k) => v !== s[k])) throw new Error("wasm round trip differs");
  }
  const med = (a) => a.sort((x, y) => x - y)[a.length >> 1];
  const [e, d] = [med(et), med(dt)];
  console.log(`wasm  ${name.padEnd(12)} encode ${e.toFixed(2).padStart(6)} ms (${(0.262144 / (e / 1000)).toFixed(1).padStart(5)} MP/s)  decode ${d.toFixed(2).padStart(6)} ms (${(0.262144 / (d / 1000)).toFixed(1).padStart(5)} MP/s)  ${enc.length} bytes`);
}
JS
else
  echo "(build the demo, bash scripts/demo-build.sh, for the wasm figures)"
fi
