# Sourced by the codec benchmarks: makes the two 512×512 test frames from the fixtures in
# $work: grey16.raw (a 16-bit MR upsampled 2× with a little noise) and rgb8.raw (an 8-bit
# ultrasound RGB, cropped and mirror-padded). Needs DCMTK and the tools venv (numpy).
work="${TMPDIR:-/tmp}/wado-codec-frames"; mkdir -p "$work"
venv=.tools/s3venv
"$venv/bin/python" -c "import numpy" 2>/dev/null || "$venv/bin/pip" install --quiet numpy
dcmdjpls tests/fixtures/corpus/mr_jpegls_near_16bit_dcmcjpls.dcm "$work/mr.dcm"
dcmdjpls +px tests/fixtures/jpegls/us_rgb_jpegls_near_dcmcjpls.dcm "$work/us.dcm"
rm -rf "$work/px" && mkdir -p "$work/px"
dcmdump -q +W "$work/px" "$work/mr.dcm" >/dev/null
mv "$work/px"/*.raw "$work/mr.raw"
dcmdump -q +W "$work/px" "$work/us.dcm" >/dev/null
mv "$work/px"/*.raw "$work/us.raw"
"$venv/bin/python" - "$work" <<'PY'
import sys, numpy as np
w = sys.argv[1]
mr = np.fromfile(f"{w}/mr.raw", dtype="<u2").reshape(256, 256).astype(np.float64)
# 2× bilinear upsampling plus a little noise: a 512×512 16-bit frame with real structure.
y = np.linspace(0, 255, 512); x = np.linspace(0, 255, 512)
y0 = np.floor(y).astype(int); x0 = np.floor(x).astype(int)
y1 = np.minimum(y0 + 1, 255); x1 = np.minimum(x0 + 1, 255)
fy = (y - y0)[:, None]; fx = (x - x0)[None, :]
up = (mr[y0][:, x0] * (1 - fy) * (1 - fx) + mr[y1][:, x0] * fy * (1 - fx)
      + mr[y0][:, x1] * (1 - fy) * fx + mr[y1][:, x1] * fy * fx)
rng = np.random.default_rng(7)
grey = np.clip(up + rng.normal(0, 2, up.shape), 0, 65535).astype("<u2")
grey.tofile(f"{w}/grey16.raw")
us = np.fromfile(f"{w}/us.raw", dtype=np.uint8).reshape(480, 640, 3)
rgb = np.concatenate([us[:, :512], us[:32, :512][::-1]], axis=0)  # 512×512, mirrored pad
rgb.astype(np.uint8).tofile(f"{w}/rgb8.raw")
PY
