#!/usr/bin/env bash
# C-MOVE against destinations that write a PDU's header and body apart (Nagle on): DCMTK's
# storescp and scripts/split_writes_scp.py (pynetdicom, the same write pattern, every time).
# Stores FILES (e.g. 50 instances of study A) into a fresh wado per binary, then moves their
# study ROUNDS times to each destination, alternating the binaries; prints seconds a move.
#   scripts/bench-move-acks.sh DIR_OF_FILES [ROUNDS] [WADO_BIN...]   (default: target/release/wado)
set -euo pipefail
cd "$(dirname "$0")/.."
files="$1"; rounds="${2:-8}"; shift 2 || shift $#
bins=("$@"); [ ${#bins[@]} -gt 0 ] || bins=(target/release/wado)
PY="$(pwd)/.tools/s3venv/bin/python"
work="$(mktemp -d)"; pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dest=$(port); split=$(port)
mkdir -p "$work/dest"
storescp -aet DEST -od "$work/dest" "$dest" >/dev/null 2>&1 & pids+=($!)
"$PY" scripts/split_writes_scp.py "$split" >/dev/null 2>&1 & pids+=($!)
sleep 1.5
for b in "${bins[@]}"; do
  for d in "storescp $dest" "split $split"; do
    set -- $d
    printf 'STORESCU localhost DCM4CHEE store\nMOVESCU localhost DCM4CHEE move\nDEST 127.0.0.1:%s - -\n' "$2" > "$work/peers"
    http=$(port); dimse=$(port); data="$work/data-$(basename "$b")"
    "$b" serve --data "$data" --bind "127.0.0.1:$http" --dimse-port "$dimse" --dimse-peers "$work/peers" >/dev/null 2>&1 & pid=$!
    pids+=($pid); sleep 1
    [ -f "$data/wado-index.sqlite" ] && [ "$(sqlite3 "$data/wado-index.sqlite" 'select count(*) from qido_study')" != 0 ] ||
      storescu -aet STORESCU -aec DCM4CHEE +sd +r 127.0.0.1 "$dimse" "$files" >/dev/null
    st=$(sqlite3 "$data/wado-index.sqlite" "select study_uid from qido_study limit 1")
    printf '%-28s %-8s' "$b" "$1"
    for _ in $(seq "$rounds"); do
      s=$(date +%s.%N)
      movescu -S -aet MOVESCU -aec DCM4CHEE -aem DEST -k QueryRetrieveLevel=STUDY -k "StudyInstanceUID=$st" 127.0.0.1 "$dimse"
      printf ' %.2f' "$(echo "$(date +%s.%N) - $s" | bc -l)"
    done
    echo; kill "$pid"; wait "$pid" 2>/dev/null || true
    rm -rf "$work/dest"/*
  done
done
