#!/usr/bin/env bash
# Runs every test: set-up (idempotent), unit and end-to-end tests, and the wasm32 build of the
# core. This is the README's test command; .ci/run adds fmt and clippy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== build"
cargo build --workspace --bins --locked
echo "== tests"
cargo test --workspace --locked
echo "== wasm32 build of wado-core"
bash scripts/wasm-check.sh
