#!/usr/bin/env bash
# Installs what wado needs to build and test on a fresh Debian 12 machine, idempotently:
# a second run installs nothing.
#   - DCMTK and GDCM tools: the independent oracles of the end-to-end tests;
#   - Debian's rustc-web, std sources and lld: the offline wasm32 route (docs/WASM.md);
#   - wasm-bindgen-cli at the exact version of Cargo.lock's wasm-bindgen (crates.io);
#   - the node tools of package-lock.json (wrangler, binaryen, playwright-core) from npm;
#   - Debian's chromium, for the browser test of the demo;
#   - a local S3-compatible server (moto, from PyPI) and CharLS's Python binding (pyjpegls) in
#     .tools/s3venv, for the S3 store tests and the JPEG-LS and JPEG interoperability tests
#     (CharLS through pyjpegls, libjpeg-turbo and OpenJPEG through Pillow).
# Rust itself (rustup stable) and node come with the machine image.
set -euo pipefail

log() { echo "setup: $*"; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

is_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
APT_UPDATED=0
apt_install() {
  local missing=()
  for p in "$@"; do is_installed "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ $APT_UPDATED -eq 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install dcmtk libgdcm-tools libopenjp2-tools curl ca-certificates
apt_install chromium
apt_install rustc-web cargo-web rust-web-src rust-web-llvm
# rust-web-llvm ships /usr/bin/rust-lld as a link to lld-NN without depending on it.
if [ -L /usr/bin/rust-lld ]; then
  lld_pkg="$(basename "$(readlink /usr/bin/rust-lld)")"
  case "$lld_pkg" in lld-[0-9]*) apt_install "$lld_pkg" ;; esac
fi
command -v cargo >/dev/null || { echo "setup: cargo (rustup) not found on PATH" >&2; exit 1; }

cd "$(dirname "$0")/.."
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
MOTO_VERSION=5.2.5
PYJPEGLS_VERSION=1.5.1
PILLOW_VERSION=13.0.0
if [ "$(.tools/s3venv/bin/python -c 'import importlib.metadata as m; print(m.version("moto"), m.version("pyjpegls"), m.version("pillow"))' 2>/dev/null)" != "$MOTO_VERSION $PYJPEGLS_VERSION $PILLOW_VERSION" ]; then
  command -v python3 >/dev/null || apt_install python3 python3-venv
  python3 -m venv .tools/s3venv 2>/dev/null || { apt_install python3-venv; rm -rf .tools/s3venv; python3 -m venv .tools/s3venv; }
  log "pip install moto[server]==$MOTO_VERSION pyjpegls==$PYJPEGLS_VERSION (CharLS) pillow==$PILLOW_VERSION (libjpeg-turbo, OpenJPEG)"
  .tools/s3venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" "pyjpegls==$PYJPEGLS_VERSION" "pillow==$PILLOW_VERSION" numpy
fi
log "ok"
