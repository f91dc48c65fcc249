#!/usr/bin/env python3
"""STOW-RS throughput of a server, standard library only (docs/BENCHMARKS.md).

Sends the .dcm files under PATHS as STOW-RS requests of --per-request instances each over
--connections keep-alive connections (bodies built before the clock starts), and prints one
JSON line: instances/s, MB/s, statuses, and the server's peak RSS (VmHWM of --pid) after.

    stow_bench.py --url ROOT/studies [--per-request 100] [--connections 1] [--pid PID]
                  [--skip N] [--limit N] PATHS...
    stow_bench.py --sink PATHS...     # the loopback limit: the same bodies to a server that
                                      # only reads them (one connection)
"""
import argparse
import http.client
import json
import os
import socket
import threading
import time
import urllib.parse

BOUNDARY = "wado-stow-bench"


def files(paths):
    out = []
    for p in paths:
        if os.path.isfile(p):
            out.append(p)
            continue
        for root, dirs, names in os.walk(p):
            dirs.sort()
            out += [os.path.join(root, n) for n in sorted(names) if n.endswith(".dcm")]
    return out


def bodies(paths, per_request):
    out = []
    for i in range(0, len(paths), per_request):
        parts = []
        for p in paths[i:i + per_request]:
            with open(p, "rb") as f:
                parts.append(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                             + f.read() + b"\r\n")
        parts.append(b"--" + BOUNDARY.encode() + b"--\r\n")
        out.append((len(parts) - 1, b"".join(parts)))
    return out


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sink_server():
    """An HTTP server that reads each request body and answers 200: the loopback limit."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4)

    def serve(c):
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                d = c.recv(65536)
                if not d:
                    return
                pending += d
            head, pending = pending.split(b"\r\n\r\n", 1)
            length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n")
                          if l.lower().startswith(b"content-length"))
            left = length - len(pending)
            pending = b""
            while left > 0:
                n = c.recv_into(view, min(left, len(buf)))
                if not n:
                    return
                left -= n
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def accept():
        while True:
            c, _ = s.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{s.getsockname()[1]}/studies"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url")
    ap.add_argument("--sink", action="store_true")
    ap.add_argument("--per-request", type=int, default=100)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--label", default="")
    ap.add_argument("--skip", type=int, default=0, help="leave out the first SKIP files (sorted)")
    ap.add_argument("--limit", type=int, help="send at most LIMIT files")
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args()
    url = sink_server() if a.sink else a.url
    u = urllib.parse.urlsplit(url)
    chosen = files(a.paths)[a.skip:]
    if a.limit is not None:
        chosen = chosen[:a.limit]
    work = bodies(chosen, a.per_request)
    total_bytes = sum(len(b) for _, b in work)
    total = sum(n for n, _ in work)
    lock = threading.Lock()
    statuses = {}
    queue = list(reversed(work))

    def worker():
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        while True:
            with lock:
                if not queue:
                    return
                n, body = queue.pop()
            conn.request("POST", u.path, body=body, headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
                "Accept": "application/dicom+json"})
            r = conn.getresponse()
            r.read()
            with lock:
                statuses[r.status] = statuses.get(r.status, 0) + 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(a.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    print(json.dumps({
        "label": a.label, "instances": total, "requests": len(work), "MB": round(total_bytes / 1e6, 1),
        "seconds": round(dt, 3), "instances_per_s": round(total / dt), "MB_per_s": round(total_bytes / 1e6 / dt, 1),
        "statuses": statuses, "peak_rss_MB": peak_rss_mb(a.pid) if a.pid else None,
    }))


if __name__ == "__main__":
    main()
