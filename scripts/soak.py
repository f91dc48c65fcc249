#!/usr/bin/env python3
"""Soak: mixed load against a running `wado serve` for a while, RSS sampled every second.

    scripts/soak.py --base http://127.0.0.1:8080 --pid PID --data DIR --minutes 30

The mix (each worker thread picks at random, keep-alive connections): study and series
metadata, raw frames, frames transcoded to JPEG 2000 / JPEG-LS / JPEG, whole instances and
studies (multipart and zip), the study list, searches (wildcard and fuzzy names, modalities
through the series, a study's instances, a 999-value list, one past the caps: 400), STOW-RS of
a new study (with --stow FILE: the file with its UIDs renumbered; the server must allow the
write), and the requests a client gets wrong (bad UIDs, unknown studies, frame 0, an Accept
nothing satisfies); beside them, slow clients: some dribble
their headers, some request a study and stop reading. Statuses are counted per kind; any 5xx
is a failure (none is provoked), and so is RSS growth past --max-growth-mb: the median of the
last quarter of the run over the median of the second (after warm-up). Peaks are printed but
not judged: conversions and glibc's per-thread arenas make spikes that come and go; a leak
raises the whole curve. --rss-csv writes every sample. Prints the RSS curve (one line a minute) and a summary.
Standard library only.
"""
import argparse, http.client, json, os, random, socket, sys, threading, time, urllib.parse
from collections import Counter

ROOT = "/dcm4chee-arc/aets/DCM4CHEE/rs"


def instances(data):
    """(study, series, sop, frames, ts) of every stored instance, from the indexes."""
    out = []
    for d, _, files in os.walk(os.path.join(data, "studies")):
        for f in files:
            if f.endswith(".index.json"):
                idx = json.load(open(os.path.join(d, f)))
                px = idx.get("pixel") or {}
                video = idx["transfer_syntax"].startswith("1.2.840.10008.1.2.4.10")
                out.append((idx["study"], idx["series"], idx["sop_instance"],
                            px.get("number_of_frames", 0) if idx.get("frames") and not video else 0,
                            idx["transfer_syntax"]))
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def requests_for(insts):
    """(kind, path, accept, expected statuses) generators."""
    mp = lambda t, ts=None: f'multipart/related; type="{t}"' + (f"; transfer-syntax={ts}" if ts else "")
    def pick():
        st, se, sop, frames, ts = random.choice(insts)
        inst = f"{ROOT}/studies/{st}/series/{se}/instances/{sop}"
        r = random.random()
        if r < 0.10:
            q = random.choice([
                ("search-name", "studies?PatientName=*a*&limit=50", {200}),
                ("search-modality", "studies?ModalitiesInStudy=CT%5CMR&limit=50", {200}),
                ("search-series", "series?Modality=MR&limit=100", {200}),
                ("search-fuzzy", "studies?PatientName=do&fuzzymatching=true", {200}),
                ("search-instances", f"studies/{st}/instances", {200}),
                ("search-long-list", "studies?PatientID=" + "%5C".join(f"P{i}" for i in range(999)), {200}),
                ("search-over-cap", "studies?PatientName=" + "%5C".join(["*a*"] * 33), {400}),
            ])
            return (q[0], f"{ROOT}/{q[1]}", "application/dicom+json", q[2])
        if r < 0.13 and STOW:
            return ("stow", None, "application/dicom+json", {200})
        if r < 0.15:
            return ("metadata", f"{ROOT}/studies/{st}/metadata", "application/dicom+json", {200})
        if r < 0.25:
            return ("series-metadata", f"{ROOT}/studies/{st}/series/{se}/metadata", "application/dicom+json", {200})
        if r < 0.45 and frames:
            return ("frame-raw", f"{inst}/frames/{random.randint(1, frames)}", mp("application/octet-stream", "*"), {200})
        if r < 0.55 and frames:
            kind, t = random.choice([("frame-j2k", "image/jp2"), ("frame-jls", "image/jls"), ("frame-jpeg", "image/jpeg")])
            return (kind, f"{inst}/frames/1", mp(t), {200, 206, 406})
        if r < 0.62:
            return ("instance", inst, mp("application/dicom", "*"), {200})
        if r < 0.66:
            return ("instance-ele", inst, mp("application/dicom", "1.2.840.10008.1.2.1"), {200, 406})
        if r < 0.70:
            return ("study", f"{ROOT}/studies/{st}", mp("application/dicom", "*"), {200})
        if r < 0.72:
            # Without transfer-syntax, ZIP holds Explicit VR LE: a video study is 406 (never transcoded).
            return ("study-zip", f"{ROOT}/studies/{st}", "application/zip", {200, 406})
        if r < 0.76:
            return ("studies", f"{ROOT}/studies", "application/dicom+json", {200})
        if r < 0.82:
            return ("bad-uid", f"{ROOT}/studies/1.2.x/metadata", "application/dicom+json", {400})
        if r < 0.88:
            return ("unknown", f"{ROOT}/studies/1.2.3.4.5.6.7/metadata", "application/dicom+json", {404})
        if r < 0.92:
            return ("frame-0", f"{inst}/frames/0", mp("application/octet-stream", "*"), {400})
        if r < 0.96:
            return ("not-acceptable", f"{inst}/metadata", "image/gif", {406})
        return ("metadata-gzip", f"{ROOT}/studies/{st}/metadata", "application/dicom+json", {200})
    return pick


STOW = None  # (template bytes, a counter) when --stow is given
STOW_LOCK = threading.Lock()


def stow_body():
    """The template with a new study, series and instance: its UIDs' 14-digit component
    renumbered in place (same length), in a multipart/related body."""
    global STOW
    template, n = STOW
    with STOW_LOCK:
        STOW = (template, n + 1)
    stamp = b".20040119072730."
    new = b".20040%09d." % (n % 10**9)
    b = b"wado-soak"
    return (b"--" + b + b"\r\nContent-Type: application/dicom\r\n\r\n" + template.replace(stamp, new)
            + b"\r\n--" + b + b"--\r\n", f'multipart/related; type="application/dicom"; boundary={b.decode()}')


def worker(host, port, pick, stop, counts, failures, lock):
    conn = None
    while not stop.is_set():
        kind, path, accept, ok = pick()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=60)
            headers = {"Accept": accept}
            if kind == "metadata-gzip":
                headers["Accept-Encoding"] = "gzip"
            if kind == "stow":
                body, headers["Content-Type"] = stow_body()
                conn.request("POST", f"{ROOT}/studies", body=body, headers=headers)
            else:
                conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            r.read()
            status = r.status
        except Exception as e:  # noqa: BLE001 - a transport failure is a result here
            status = f"error:{type(e).__name__}"
            if conn is not None:
                conn.close()
            conn = None
        with lock:
            counts[(kind, status)] += 1
            if status not in ok:
                failures.append((kind, path, accept, status))


def slow_clients(host, port, insts, stop, counts, lock):
    """Dribblers and non-readers, one at a time, for ever."""
    while not stop.is_set():
        st, _, _, _, _ = random.choice(insts)
        s = socket.create_connection((host, port))
        try:
            if random.random() < 0.5:
                # Dribble a request line, a byte a second, then give up.
                for b in f"GET {ROOT}/studies/{st}/metadata HTTP/1.1\r\nHo".encode()[:8]:
                    if stop.is_set():
                        break
                    s.send(bytes([b]))
                    time.sleep(1)
                kind = "slow-headers"
            else:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.send(f'GET {ROOT}/studies/{st} HTTP/1.1\r\nHost: x\r\nAccept: multipart/related; type="application/dicom"; transfer-syntax=*\r\n\r\n'.encode())
                s.recv(100)
                time.sleep(5)  # reads nothing more
                kind = "stalled-reader"
        except OSError:
            kind = "slow-closed-by-server"
        finally:
            s.close()
        with lock:
            counts[(kind, "done")] += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-growth-mb", type=float, default=64)
    ap.add_argument("--rss-csv", help="write (seconds, RSS KiB) samples here")
    ap.add_argument("--stow", help="a DICOM file whose UIDs hold .20040119072730. (ct_small_ele.dcm): STOW-RS new studies made of it")
    a = ap.parse_args()
    global STOW
    if a.stow:
        template = open(a.stow, "rb").read()
        assert b".20040119072730." in template, "--stow: a file with the stamp to renumber"
        STOW = (template, 1)
    u = urllib.parse.urlparse(a.base)
    insts = instances(a.data)
    assert insts, "no instances in --data"
    pick = requests_for(insts)
    stop, lock = threading.Event(), threading.Lock()
    counts, failures = Counter(), []
    threads = [threading.Thread(target=worker, args=(u.hostname, u.port, pick, stop, counts, failures, lock), daemon=True)
               for _ in range(a.clients)]
    threads += [threading.Thread(target=slow_clients, args=(u.hostname, u.port, insts, stop, counts, lock), daemon=True)
                for _ in range(2)]
    for t in threads:
        t.start()
    t0, samples = time.time(), []
    end = t0 + a.minutes * 60
    while time.time() < end:
        time.sleep(1)
        try:
            samples.append((time.time() - t0, rss_kib(a.pid)))
        except FileNotFoundError:
            print("the server exited", file=sys.stderr)
            stop.set()
            sys.exit(2)
        if len(samples) % 60 == 0 or len(samples) == 10:
            with lock:
                n = sum(counts.values())
            print(f"{samples[-1][0] / 60:5.1f} min  RSS {samples[-1][1] / 1024:7.1f} MiB  requests {n}", flush=True)
    stop.set()
    for t in threads[: a.clients]:
        t.join(timeout=70)
    rss = [r for _, r in samples]
    if a.rss_csv:
        with open(a.rss_csv, "w") as f:
            f.write("seconds,rss_kib\n")
            for t, r in samples:
                f.write(f"{t:.0f},{r}\n")
    q = max(1, len(rss) // 4)
    median = lambda xs: sorted(xs)[len(xs) // 2] if xs else 0
    second, last = median(rss[q:2 * q]), median(rss[-q:])
    growth = (last - second) / 1024
    half = len(rss) // 2
    print("\nstatus counts:")
    for (kind, status), n in sorted(counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"  {kind:22} {status!s:28} {n}")
    print(f"\nRSS MiB: min {min(rss) / 1024:.1f}, peak of the first half {max(rss[:half] or [0]) / 1024:.1f}, of the second {max(rss[half:]) / 1024:.1f}, end {rss[-1] / 1024:.1f}; median of the second quarter {second / 1024:.1f}, of the last {last / 1024:.1f} (growth {growth:+.1f})")
    five = [f for f in failures if isinstance(f[3], int) and f[3] >= 500]
    other = [f for f in failures if f not in five]
    print(f"unexpected statuses: {len(other)}; 5xx: {len(five)}")
    for f in (five + other)[:20]:
        print("  ", f)
    if five or growth > a.max_growth_mb:
        sys.exit(1)


if __name__ == "__main__":
    main()
