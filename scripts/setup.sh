#!/usr/bin/env bash
# Installs what wado needs to build and test on a fresh Debian 12 machine, idempotently:
# a second run installs nothing. (Serving needs none of it: scripts/quickstart.sh installs
# only what it uses.)
#   - DCMTK and GDCM tools: the independent oracles of the end-to-end tests; OpenJPH's tools and
#     library (openjph-tools, libopenjph-dev, built into tests/oracles/ojph_codec.cpp with g++)
#     and OpenJPEG's, for HTJ2K both ways;
#   - Debian's rustc-web, std sources and lld: the offline wasm32 route (docs/WASM.md);
#   - wasm-bindgen-cli at the exact version of Cargo.lock's wasm-bindgen (crates.io);
#   - the node tools of package-lock.json (wrangler, binaryen, playwright-core) from npm;
#   - Debian's chromium, for the browser tests (the demo, and OHIF);
#   - Debian's postgresql, for the search index's PostgreSQL tests (each starts its own cluster);
#   - the OHIF viewer's prebuilt dist/ (npm @ohif/app, pinned) in .tools/ohif-VERSION, for the
#     end-to-end test of a real viewer against the native server and the worker;
#   - a local S3-compatible server (moto, from PyPI) and CharLS's Python binding (pyjpegls) in
#     .tools/s3venv, for the S3 store tests and the JPEG-LS and JPEG interoperability tests
#     (CharLS through pyjpegls, libjpeg-turbo and OpenJPEG through Pillow).
# Rust itself (rustup stable) and node come with the machine image.
set -euo pipefail

. "$(dirname "$0")/lib-setup.sh"

apt_install dcmtk libgdcm-tools libopenjp2-tools openjph-tools libopenjph-dev g++ curl ca-certificates strace
apt_install chromium
# PostgreSQL: the shared search index (`--index postgres://...`); its tests start their own cluster.
apt_install postgresql
cd "$(dirname "$0")/.."
bash scripts/setup-wasm.sh
MOTO_VERSION=5.2.5
PYJPEGLS_VERSION=1.5.1
PILLOW_VERSION=13.0.0
PYDICOM_VERSION=3.0.2
PYDICOM_DATA_VERSION=1.0.0
DICOMWEB_CLIENT_VERSION=0.60.1
PYNETDICOM_VERSION=3.0.4
if [ "$(.tools/s3venv/bin/python -c 'import importlib.metadata as m; print(m.version("moto"), m.version("pyjpegls"), m.version("pillow"), m.version("pydicom"), m.version("pydicom-data"), m.version("dicomweb-client"), m.version("pynetdicom"))' 2>/dev/null)" != "$MOTO_VERSION $PYJPEGLS_VERSION $PILLOW_VERSION $PYDICOM_VERSION $PYDICOM_DATA_VERSION $DICOMWEB_CLIENT_VERSION $PYNETDICOM_VERSION" ]; then
  command -v python3 >/dev/null || apt_install python3 python3-venv
  python3 -m venv .tools/s3venv 2>/dev/null || { apt_install python3-venv; rm -rf .tools/s3venv; python3 -m venv .tools/s3venv; }
  log "pip install moto[server]==$MOTO_VERSION pyjpegls==$PYJPEGLS_VERSION (CharLS) pillow==$PILLOW_VERSION (libjpeg-turbo, OpenJPEG) pydicom==$PYDICOM_VERSION (an oracle, and its test files a corpus) pydicom-data==$PYDICOM_DATA_VERSION (more of them) dicomweb-client==$DICOMWEB_CLIENT_VERSION (a real client) pynetdicom==$PYNETDICOM_VERSION (a DIMSE peer)"
  .tools/s3venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" "pyjpegls==$PYJPEGLS_VERSION" "pillow==$PILLOW_VERSION" "pydicom==$PYDICOM_VERSION" "pydicom-data==$PYDICOM_DATA_VERSION" "dicomweb-client==$DICOMWEB_CLIENT_VERSION" "pynetdicom==$PYNETDICOM_VERSION" numpy
fi
OHIF_VERSION=3.13.2
if [ ! -f ".tools/ohif-$OHIF_VERSION/dist/index.html" ]; then
  log "npm pack @ohif/app@$OHIF_VERSION (the viewer's prebuilt dist/, ~50 MB)"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null && tar xzf "ohif-app-$OHIF_VERSION.tgz")
  rm -rf ".tools/ohif-$OHIF_VERSION"
  mkdir -p .tools
  mv "$tmp/package" ".tools/ohif-$OHIF_VERSION"
  rm -rf "$tmp"
fi
log "ok"
