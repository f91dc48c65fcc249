#!/usr/bin/env bash
# Builds the browser demo offline (docs/WASM.md): wado-web-demo for wasm32 with Debian's
# rustc-web and build-std, wasm-bindgen --target web, then the static page. Output:
# web-demo/dist/ (served by `wado serve` at /demo/; any static server works too).
set -euo pipefail
cd "$(dirname "$0")/.."
PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 cargo wasm-build -p wado-web-demo --locked
wasm="target/wasm32-unknown-unknown/wasm-release/wado_web_demo.wasm"
node -e '
  const m = new WebAssembly.Module(require("fs").readFileSync(process.argv[1]));
  const env = WebAssembly.Module.imports(m).filter(i => i.module === "env");
  if (env.length) { console.error("unresolved host imports (env):", env.map(i => i.name)); process.exit(1); }
' "$wasm"
rm -rf web-demo/dist
mkdir -p web-demo/dist
wasm-bindgen --target web --out-dir web-demo/dist/pkg --no-typescript "$wasm"
if [ "${WADO_DEMO_OPT:-1}" = 1 ] && [ -x node_modules/.bin/wasm-opt ]; then
  node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types --enable-simd \
    web-demo/dist/pkg/wado_web_demo_bg.wasm -o web-demo/dist/pkg/wado_web_demo_bg.wasm
fi
cp web-demo/www/* web-demo/dist/
echo "web-demo/dist: $(stat -c %s web-demo/dist/pkg/wado_web_demo_bg.wasm) bytes of wasm, $(gzip -9 -c web-demo/dist/pkg/wado_web_demo_bg.wasm | wc -c) gzip"
