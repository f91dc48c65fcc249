#!/usr/bin/env bash
# Builds wado-core for wasm32-unknown-unknown with Debian's rustc-web and build-std
# (docs/WASM.md), so nothing that cannot run in a Worker or a browser creeps into the core.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 cargo wasm-build -p wado-core --features openjp2 --locked
ls -l target/wasm32-unknown-unknown/wasm-release/libwado_core.rlib
echo "wasm32: wado-core builds"
