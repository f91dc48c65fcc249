#!/usr/bin/env bash
# Installs the offline wasm32 route (docs/WASM.md), idempotently: Debian's rustc-web, its std
# sources and lld; wasm-bindgen-cli at the exact version of Cargo.lock's wasm-bindgen
# (crates.io); the node tools of package-lock.json (wasm-opt from binaryen, wrangler,
# playwright-core). What the browser demo and the edge worker need to build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-setup.sh
apt_install rustc-web cargo-web rust-web-src rust-web-llvm
# rust-web-llvm ships /usr/bin/rust-lld as a link to lld-NN without depending on it.
if [ -L /usr/bin/rust-lld ]; then
  lld_pkg="$(basename "$(readlink /usr/bin/rust-lld)")"
  case "$lld_pkg" in lld-[0-9]*) apt_install "$lld_pkg" ;; esac
fi
command -v cargo >/dev/null || { echo "setup: cargo (rustup) not found on PATH" >&2; exit 1; }
# wasm-bindgen-cli must match the wasm-bindgen crate exactly (docs/WASM.md).
wb_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -n "$wb_version" ] && [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]; then
  log "cargo install wasm-bindgen-cli $wb_version"
  cargo install wasm-bindgen-cli --version "$wb_version" --quiet
fi
command -v node >/dev/null || apt_install nodejs npm
if [ ! -x node_modules/.bin/wrangler ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
log "wasm32 tools ok"
