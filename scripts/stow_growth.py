#!/usr/bin/env python3
"""What one instance costs as its study grows (docs/BENCHMARKS.md, issue 23): N instances of
one study sent one per request, one connection; the median time of the first 100 requests and
of the last 100. A write that rebuilt its study would make the last ones N times slower.
Standard library only.

    stow_growth.py --url ROOT/studies [--n 2000] [--template tests/fixtures/corpus/ct_small_ele.dcm]

The template's SOP Instance UID is renumbered in place (same length) for each instance; its
study and series stay.
"""
import argparse
import http.client
import json
import statistics
import time
import urllib.parse

SOP = b"1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--template", default="tests/fixtures/corpus/ct_small_ele.dcm")
    ap.add_argument("--label", default="")
    ap.add_argument("--shift", type=int, default=2, choices=range(1, 10),
                    help="a digit in the new SOP Instance UIDs: runs with others store other instances")
    a = ap.parse_args()
    template = open(a.template, "rb").read()
    assert SOP in template, "the template is ct_small_ele.dcm"
    u = urllib.parse.urlparse(a.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    boundary = b"wado-growth"
    times = []
    statuses = {}
    for n in range(a.n):
        sop = SOP.replace(b".20040119072730.", b".%d%013d." % (a.shift, n))
        body = (b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n"
                + template.replace(SOP, sop) + b"\r\n--" + boundary + b"--\r\n")
        t = time.perf_counter()
        conn.request("POST", u.path, body=body, headers={
            "Content-Type": 'multipart/related; type="application/dicom"; boundary=wado-growth',
            "Accept": "application/dicom+json"})
        r = conn.getresponse()
        r.read()
        times.append(time.perf_counter() - t)
        statuses[r.status] = statuses.get(r.status, 0) + 1
    first = statistics.median(times[:100]) * 1000
    last = statistics.median(times[-100:]) * 1000
    print(json.dumps({"label": a.label, "n": a.n, "first_100_ms": round(first, 2),
                      "last_100_ms": round(last, 2), "ratio": round(last / first, 2),
                      "statuses": statuses}))


if __name__ == "__main__":
    main()
