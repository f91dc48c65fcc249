#!/usr/bin/env bash
# Builds the edge worker offline (docs/WASM.md): cargo for wasm32 with Debian's rustc-web and
# build-std, wasm-bindgen (the CLI at Cargo.lock's version, installed by scripts/setup.sh),
# wasm-opt from npm binaryen. Output: edge/dist/ (index.js, index_bg.wasm), used by
# edge/entry.mjs. Prints the module's host imports (must be none from `env`).
set -euo pipefail
cd "$(dirname "$0")/.."
PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 cargo wasm-build -p wado-edge --locked
wasm="target/wasm32-unknown-unknown/wasm-release/wado_edge.wasm"
node -e '
  const m = new WebAssembly.Module(require("fs").readFileSync(process.argv[1]));
  const mods = [...new Set(WebAssembly.Module.imports(m).map(i => i.module))];
  if (mods.includes("env")) { console.error("unresolved host imports (env):", WebAssembly.Module.imports(m).filter(i => i.module === "env").map(i => i.name)); process.exit(1); }
  console.log("wasm import modules:", mods.join(", "));
' "$wasm"
rm -rf edge/dist
wasm-bindgen --target web --out-dir edge/dist --out-name index --no-typescript "$wasm"
if [ "${WADO_EDGE_OPT:-1}" = 1 ]; then
  node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types --enable-simd \
    edge/dist/index_bg.wasm -o edge/dist/index_bg.wasm
fi
raw=$(stat -c %s edge/dist/index_bg.wasm)
gz=$(gzip -9 -c edge/dist/index_bg.wasm | wc -c)
echo "edge/dist/index_bg.wasm: $raw bytes, $gz gzip"
# Cloudflare's free plan takes 3 MiB of gzip-compressed worker (wasm + JS glue).
js=$(cat edge/dist/index.js edge/entry.mjs | gzip -9 | wc -c)
total=$((gz + js))
echo "worker bundle ≈ $total bytes gzip (limit 3 MiB = 3145728)"
[ "$total" -lt 3145728 ] || { echo "edge-build: the worker is over 3 MiB gzip" >&2; exit 1; }
