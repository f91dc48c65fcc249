#!/usr/bin/env python3
"""The wider-corpus oracle: every retrieve path of a running server against pydicom reading
the original files (issue 13, item 5).

    pydicom_compare.py --root http://127.0.0.1:PORT/dcm4chee-arc/aets/DCM4CHEE/rs FILE...
    pydicom_compare.py --plan DIR      # which files of DIR to compare, in rounds (JSON)

Each FILE must be stored in the server (and be the only file with its SOP Instance UID there).
For each one, with pydicom (not wado) as the reference:

- the instance as stored (`transfer-syntax=*`) is the file, byte for byte;
- the DICOM JSON metadata has every element pydicom reads (group lengths and File Meta aside),
  with pydicom's VR (the dictionary VR for UN elements of known tags; either VR where the
  dictionary allows two) and pydicom's values: strings, numbers, person names by component
  group (pydicom decodes the Specific Character Set), attribute tags, sequences item by item,
  binary values inline or through their BulkDataURI (little endian, as the standard says);
- the DICOM XML metadata names the same attributes with the same VRs and string values;
- the frames as stored are pydicom's: the native pixel bytes (in little endian) or the
  encapsulated frames, frame by frame;
- the frames decoded (`application/octet-stream`, Explicit VR Little Endian) are pydicom's
  `pixel_array`, exactly for lossless transfer syntaxes, within 40 dB PSNR for lossy ones,
  wherever pydicom has a decoder for the file (else said and skipped);
- the instance converted to Explicit VR Little Endian reads in pydicom with the same elements
  and values, and pixel data equal to the decoded frames.

Prints one line per file (`ok`, or what differs) and a summary; exits 1 if anything differs.
"""
import argparse
import base64
import http.client
import io
import math
import sys
import urllib.parse
import xml.etree.ElementTree as ET

import numpy as np
import pydicom
from pydicom.encaps import generate_frames
from pydicom.tag import Tag

LOSSLESS = {
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.92",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
}
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
BIG_ENDIAN = "1.2.840.10008.1.2.2"
STRING_VRS = {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
NUMBER_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "DS", "IS"}
BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
SWAP = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


class Client:
    def __init__(self, root):
        u = urllib.parse.urlparse(root)
        self.host, self.port, self.prefix = u.hostname, u.port, u.path
        self.conn = None

    def get(self, url, accept):
        """(status, content type, body) of a GET; `url` absolute or under the root."""
        path = urllib.parse.urlparse(url).path if url.startswith("http") else self.prefix + url
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
                self.conn.request("GET", path, headers={"Accept": accept})
                r = self.conn.getresponse()
                return r.status, r.getheader("Content-Type", ""), r.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn = None
                if attempt == 2:
                    raise


def parts(content_type, body):
    """The bodies of a multipart/related body."""
    boundary = None
    for p in content_type.split(";"):
        k, _, v = p.strip().partition("=")
        if k.lower() == "boundary":
            boundary = v.strip('"').encode()
    assert boundary, f"no boundary in {content_type!r}"
    out = []
    for seg in body.split(b"--" + boundary)[1:]:
        if seg.startswith(b"--"):
            break
        head, _, data = seg[2:].partition(b"\r\n\r\n")
        out.append(data[:-2] if data.endswith(b"\r\n") else data)
    return out


def gdcm_decoded(path):
    """The pixels GDCM decodes a file to (gdcmconv --raw), as pydicom reads them; None if GDCM
    cannot."""
    import os
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "raw.dcm")
        r = subprocess.run(["gdcmconv", "--raw", path, out], capture_output=True)
        if r.returncode != 0 or not os.path.exists(out):
            return None
        try:
            return pydicom.dcmread(out).pixel_array
        except Exception:  # noqa: BLE001
            return None


def swap(data, vr):
    n = SWAP.get(vr)
    if not n:
        return bytes(data)
    a = np.frombuffer(bytes(data)[: len(data) // n * n], dtype=f">u{n}" if n < 8 else ">u8")
    return a.astype(a.dtype.newbyteorder("<")).tobytes()


class Compare:
    def __init__(self, client, path, ds):
        self.c, self.path, self.ds = client, path, ds
        self.big = ds.file_meta.TransferSyntaxUID == BIG_ENDIAN
        self.diffs = []

    def diff(self, what):
        self.diffs.append(what)

    def vr_ok(self, elem, vr):
        want = elem.VR
        if elem.tag == 0x7FE00010 and getattr(elem, "is_undefined_length", False):
            return vr == "OB"  # encapsulated Pixel Data is OB (PS3.5 A.4), whatever a file says
        return vr == want or vr in want.split(" or ") or (want == "UN" and vr in BINARY_VRS)

    def element(self, where, elem, j):
        """One element against its DICOM JSON attribute `j`."""
        if not self.vr_ok(elem, j.get("vr")):
            self.diff(f"{where}: VR {j.get('vr')} where pydicom reads {elem.VR}")
            return
        vr = j["vr"]
        vals = j.get("Value", [])
        if elem.value is None or elem.value == "" or elem.value == b"" or (
            vr == "SQ" and len(elem.value) == 0
        ):
            if vals and vals != [None] and vr != "SQ":
                self.diff(f"{where}: {vals!r} where pydicom reads an empty value")
            return
        if vr == "SQ":
            if len(vals) != len(elem.value):
                self.diff(f"{where}: {len(vals)} items, pydicom {len(elem.value)}")
                return
            for i, (item, jitem) in enumerate(zip(elem.value, vals)):
                self.dataset(f"{where}/{i + 1}", item, jitem)
            return
        mine = list(elem.value) if elem.VM > 1 else [elem.value]
        if vr in STRING_VRS:
            # An empty value among several is null in DICOM JSON (PS3.18 F.2.5).
            theirs = [str(v).strip() if v not in (None, "") else None for v in mine]
            ours = [v.strip() if isinstance(v, str) else v for v in vals]
            if ours != theirs and not (vr in ("LT", "ST", "UT") and [o.rstrip() for o in ours if o] == [t.rstrip() for t in theirs if t]):
                self.diff(f"{where} {vr}: {ours!r} where pydicom reads {theirs!r}")
        elif vr in NUMBER_VRS:
            try:
                theirs = [float(v) for v in mine]
                ours = [float(v) for v in vals]
            except (TypeError, ValueError) as e:
                # Not a number (an invalid IS or DS): the text as read, on both sides.
                if [str(v).strip() for v in vals] != [str(v).strip() for v in mine]:
                    self.diff(f"{where} {vr}: values {vals!r} vs {mine!r}: {e}")
                return
            if len(ours) != len(theirs) or any(
                not (math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9) or (math.isnan(a) and math.isnan(b)))
                for a, b in zip(ours, theirs)
            ):
                self.diff(f"{where} {vr}: {ours[:8]} where pydicom reads {theirs[:8]}")
        elif vr == "PN":
            # Trailing empty components dropped, and a name of empty components empty, as
            # DCMTK's dcm2json writes them (PS3.5 §6.2: they may be left out).
            theirs = []
            for v in mine:
                groups = str(v).split("=")
                d = {}
                for k, g in zip(("Alphabetic", "Ideographic", "Phonetic"), groups):
                    if g.rstrip("^ "):
                        d[k] = g.rstrip("^ ")
                if d:
                    theirs.append(d)
            ours = [{k: v.rstrip("^ ") for k, v in (x or {}).items() if v} for x in vals]
            ours = [x for x in ours if x]
            if ours != theirs:
                self.diff(f"{where} PN: {ours!r} where pydicom reads {theirs!r}")
        elif vr == "AT":
            theirs = [f"{int(Tag(v)):08X}" for v in mine]
            if [v.upper() for v in vals] != theirs:
                self.diff(f"{where} AT: {vals} where pydicom reads {theirs}")
        elif vr in BINARY_VRS:
            raw = elem.value if isinstance(elem.value, (bytes, bytearray)) else b"".join(elem.value)
            want = swap(raw, vr) if self.big else bytes(raw)
            if "InlineBinary" in j:
                got = base64.b64decode(j["InlineBinary"])
            elif "BulkDataURI" in j:
                if elem.tag == 0x7FE00010 and not elem.is_undefined_length is False:
                    pass
                st, ct, body = self.c.get(
                    j["BulkDataURI"], "multipart/related; type=application/octet-stream"
                )
                if st != 200:
                    if elem.tag == 0x7FE00010:
                        self.decode_failed(f"{where}: BulkDataURI", st)
                    else:
                        self.diff(f"{where}: BulkDataURI answered {st}")
                    return
                got = b"".join(parts(ct, body))
            else:
                self.diff(f"{where} {vr}: neither InlineBinary nor BulkDataURI")
                return
            if elem.tag == 0x7FE00010 and getattr(elem, "is_undefined_length", False):
                return  # encapsulated: the frames below compare it
            if got != want and got.rstrip(b"\0") != want.rstrip(b"\0"):
                self.diff(f"{where} {vr}: {len(got)} bytes differ from pydicom's {len(want)}")

    def dataset(self, where, ds, j):
        for elem in ds:
            if elem.tag.element == 0 or elem.tag.group == 2 or elem.tag == 0xFFFCFFFC:
                continue  # group lengths (retired), File Meta, trailing padding (no data)
            key = f"{int(elem.tag):08X}"
            if key not in j:
                self.diff(f"{where}/{key}: missing")
                continue
            self.element(f"{where}/{key}", elem, j[key])

    def json(self):
        st, _, body = self.c.get(f"{self.path}/metadata", "application/dicom+json")
        if st != 200:
            return self.diff(f"metadata: {st}")
        import json as _json
        self.meta = _json.loads(body)[0]
        self.dataset("", self.ds, self.meta)

    def xml(self):
        st, ct, body = self.c.get(f"{self.path}/metadata", 'multipart/related; type="application/dicom+xml"')
        if st != 200:
            return self.diff(f"XML metadata: {st}")
        root = ET.fromstring(parts(ct, body)[0])
        seen = {}
        for a in root.findall("DicomAttribute"):
            tag, creator = a.get("tag"), a.get("privateCreator")
            if creator is not None:
                # PS3.19 A.1.1: a private element is gggg00ee with its Private Creator named.
                group = int(tag[:4], 16)
                def text(v):
                    return (v.decode("latin-1") if isinstance(v, bytes) else str(v)).strip(" \0")
                block = next(
                    (e for e in range(0x10, 0x100)
                     if (self.ds.get((group, e)) is not None and text(self.ds[group, e].value) == creator.strip())),
                    None,
                )
                if block is None:
                    self.diff(f"XML {tag}: private creator {creator!r} not in the file")
                    continue
                tag = f"{group:04X}{block:02X}{tag[6:]}"
            elif int(tag[:4], 16) % 2 == 1 and tag not in self.meta:
                # A private element whose block has no Private Creator in the file: gggg00ee
                # without privateCreator, as dcm2xml writes it too.
                like = [k for k in self.meta if k[:4] == tag[:4] and k[6:] == tag[6:] and k[4:6] != "00"]
                if len(like) == 1:
                    tag = like[0]
            seen[tag] = a
        for key, j in self.meta.items():
            a = seen.get(key)
            if a is None:
                self.diff(f"XML: {key} missing")
                continue
            if a.get("vr") != j.get("vr"):
                self.diff(f"XML {key}: VR {a.get('vr')}, JSON {j.get('vr')}")
            if j.get("vr") in STRING_VRS:
                xv = [v.text or "" for v in sorted(a.findall("Value"), key=lambda v: int(v.get("number")))]
                jv = [v or "" for v in j.get("Value", [])]
                if [x.strip() for x in xv] != [x.strip() for x in jv]:
                    self.diff(f"XML {key}: {xv!r}, JSON {jv!r}")
        extra = set(seen) - set(self.meta)
        if extra:
            self.diff(f"XML: attributes not in JSON {sorted(extra)[:5]}")

    def decode_failed(self, what, status):
        """A decode-dependent path failed: a difference, unless pydicom cannot decode it either."""
        if status == 500 and getattr(self, "pydicom_cannot_decode", False):
            self.skipped.append(f"{what} (500; pydicom cannot decode it either)")
        else:
            self.diff(f"{what}: {status}")

    def stored(self, raw):
        st, ct, body = self.c.get(self.path, 'multipart/related; type="application/dicom"; transfer-syntax=*')
        if st != 200:
            return self.diff(f"instance as stored: {st}")
        if parts(ct, body) != [raw]:
            self.diff("instance as stored: not the file byte for byte")

    def frames(self):
        ds = self.ds
        if "PixelData" not in ds or ds.get("BitsAllocated", 0) == 1:
            return None
        ts = ds.file_meta.TransferSyntaxUID
        try:
            n = int(ds.get("NumberOfFrames", 1) or 1)
        except ValueError:
            self.skipped.append(f"frames (Number of Frames {ds.NumberOfFrames!r})")
            return None
        if ts.startswith("1.2.840.10008.1.2.4.10"):
            return None  # video: frames are not retrievable one by one
        frames = ",".join(str(i) for i in range(1, n + 1))
        st, ct, body = self.c.get(f"{self.path}/frames/{frames}", "multipart/related; type=application/octet-stream; transfer-syntax=*")
        if st != 200:
            self.diff(f"frames as stored: {st}")
            return None
        got = parts(ct, body)
        if ts in NATIVE:
            # Big endian: each value of the element's VR swapped (OW: 16-bit words, even for
            # 8-bit pixels; pixels wider than the VR's unit: by BitsAllocated).
            # Big endian: swapped by the element's VR (PS3.5 §7.3), as DCMTK and GDCM do: OW
            # swaps 16-bit words even for 8-bit or 32-bit pixels. pydicom reads 32-bit pixels
            # in OW by Bits Allocated instead; its decoded array is then not compared.
            vr = ds["PixelData"].VR
            want = swap(ds.PixelData, vr) if ts == BIG_ENDIAN else bytes(ds.PixelData)
            if ts == BIG_ENDIAN and int(ds.BitsAllocated) > 8 * SWAP.get(vr, 1):
                self.skipped.append(f"decoded frames (Big Endian {ds.BitsAllocated}-bit pixels in {vr}: pydicom swaps by Bits Allocated, DCMTK and GDCM by the VR)")
                self.compare_decoded = False
            if b"".join(got) != want[: len(b"".join(got))] or len(got) != n:
                self.diff(f"frames as stored: {len(got)} frames, {len(b''.join(got))} bytes, not pydicom's pixel bytes ({len(want)})")
        else:
            want = list(generate_frames(ds.PixelData, number_of_frames=n))
            if [bytes(w) for w in want] != got:
                self.diff(f"frames as stored: not pydicom's {n} encapsulated frames")
        # Decoded, against pydicom's decoders, or GDCM's where pydicom has none (JPEG
        # Lossless, 12-bit JPEG: gdcmconv --raw, read back by pydicom). Native frames are
        # their stored bytes (compared above): pydicom's pixel_array would sign-extend them
        # and turn YBR_FULL into RGB, which WADO-RS does not.
        if not getattr(self, "compare_decoded", True):
            return None
        if ts in NATIVE:
            st, ct, body = self.c.get(f"{self.path}/frames/{frames}", "multipart/related; type=application/octet-stream")
            if st != 200 or b"".join(parts(ct, body)) != b"".join(got) and ts != BIG_ENDIAN:
                self.diff(f"native frames in Explicit VR LE: {st}, not the stored bytes")
            return b"".join(parts(ct, body)) if st == 200 else None
        try:
            arr = ds.pixel_array
        except Exception as e:  # noqa: BLE001 - no decoder for this syntax here
            arr = gdcm_decoded(self.file)
            if arr is None:
                self.skipped.append(f"decoded frames (pydicom: {type(e).__name__}: {str(e)[:60]}; GDCM fails too)")
                return None
            self.skipped.append("pydicom cannot decode: GDCM is the oracle for the decoded frames")
        st, ct, body = self.c.get(f"{self.path}/frames/{frames}", "multipart/related; type=application/octet-stream")
        if st != 200:
            self.diff(f"decoded frames: {st}")
            return None
        ours = b"".join(parts(ct, body))
        dt = arr.dtype.newbyteorder("<")
        if ds.get("PhotometricInterpretation") == "YBR_FULL_422" and ts in NATIVE:
            return None  # stored 4:2:2: pydicom upsamples, the bytes as stored are compared above
        if ds.get("SamplesPerPixel", 1) > 1 and ds.get("PlanarConfiguration", 0) == 1 and ts in NATIVE:
            theirs_arr = arr  # pydicom gives interleaved; ours keep the stored planar layout
            ours_arr = np.frombuffer(ours, dtype=dt)
            try:
                ours_arr = ours_arr.reshape((n, ds.SamplesPerPixel, ds.Rows, ds.Columns)).transpose(0, 2, 3, 1).reshape(theirs_arr.shape)
            except ValueError:
                return self.diff(f"decoded frames: {len(ours)} bytes")
        else:
            theirs_arr = arr
            ours_arr = np.frombuffer(ours, dtype=dt)
            if ours_arr.size != theirs_arr.size:
                self.diff(f"decoded frames: {ours_arr.size} samples, pydicom {theirs_arr.size}")
                return None
            ours_arr = ours_arr.reshape(theirs_arr.shape)
        a, b = ours_arr.astype(np.float64), theirs_arr.astype(np.float64)
        if ts in LOSSLESS:
            if not np.array_equal(a, b):
                self.diff(f"decoded frames: differ from pydicom (lossless; max |d| {np.abs(a - b).max()})")
        else:
            peak = float(2 ** int(ds.get("BitsStored", 8)) - 1)
            mse = float(np.mean((a - b) ** 2))
            psnr = math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)
            if psnr < 40:
                self.diff(f"decoded frames: {psnr:.1f} dB PSNR against pydicom (lossy)")
        return ours

    def converted(self, decoded):
        st, ct, body = self.c.get(self.path, 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1')
        if st == 406:
            self.skipped.append("Explicit VR Little Endian (406)")
            return
        if st != 200:
            return self.decode_failed("instance in Explicit VR LE", st)
        out = pydicom.dcmread(io.BytesIO(parts(ct, body)[0]))
        if out.file_meta.TransferSyntaxUID != "1.2.840.10008.1.2.1":
            self.diff(f"instance in Explicit VR LE: says {out.file_meta.TransferSyntaxUID}")
        for elem in self.ds:
            if elem.tag.group == 2 or elem.tag.element == 0 or elem.tag == 0x7FE00010:
                continue
            if elem.tag not in out:
                self.diff(f"instance in Explicit VR LE: {elem.tag} missing")
                continue
            o = out[elem.tag]
            if elem.VR == "SQ" or elem.VR in BINARY_VRS:
                continue
            if elem.tag in (0x00280004, 0x00082111, 0x00282110, 0x00282112, 0x00282114):
                continue  # what decompression may rewrite (colour, lossy history)
            if str(o.value).strip() != str(elem.value).strip():
                self.diff(f"instance in Explicit VR LE: {elem.tag} {o.value!r} vs {elem.value!r}")
        if decoded is not None and "PixelData" in out and bytes(out.PixelData)[: len(decoded)] != decoded:
            self.diff("instance in Explicit VR LE: its pixel data is not the decoded frames")


def plan(top):
    """Every file under `top`, sorted into what the test does with it: `rounds`, lists of files
    pydicom reads with a Study, Series and SOP Instance UID, no two with one SOP Instance UID
    (each round is one store); `others`, the rest, with pydicom's reason; `invalid_uids`, the
    files of the rounds whose UIDs pydicom finds invalid (PS3.5 §9.1)."""
    import json
    import os
    from pydicom.uid import UID
    rounds, others, invalid_uids = [], {}, []
    for d, _, fs in sorted(os.walk(top)):
        for f in sorted(fs):
            p = os.path.join(d, f)
            try:
                ds = pydicom.dcmread(p)
                sop = str(ds.SOPInstanceUID)
                uids = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), sop)
                if not all(UID(u).is_valid for u in uids):
                    invalid_uids.append(p)  # PS3.5 §9.1, as pydicom checks it
            except Exception as e:  # noqa: BLE001 - the reason is the point
                others[p] = f"{type(e).__name__}: {str(e)[:120]}"
                continue
            for r in rounds:
                if sop not in r[1]:
                    r[0].append(p)
                    r[1].add(sop)
                    break
            else:
                rounds.append(([p], {sop}))
    print(json.dumps({"rounds": [r[0] for r in rounds], "others": others, "invalid_uids": invalid_uids}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plan", help="print the test plan for the files under this directory")
    ap.add_argument("--root")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    if a.plan:
        return plan(a.plan)
    assert a.root and a.files, "--root and files"
    c = Client(a.root)
    bad = 0
    for f in a.files:
        raw = open(f, "rb").read()
        ds = pydicom.dcmread(f)
        path = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
        cmp = Compare(c, path, ds)
        cmp.file = f
        cmp.skipped = []
        if "PixelData" in ds and ds.file_meta.TransferSyntaxUID not in NATIVE:
            try:
                ds.pixel_array
            except Exception:  # noqa: BLE001 - no decoder here, or a broken codestream
                cmp.pydicom_cannot_decode = True
        try:
            cmp.stored(raw)
            cmp.json()
            cmp.xml()
            decoded = cmp.frames()
            cmp.converted(decoded)
        except Exception as e:  # noqa: BLE001 - a crash of the comparison is a difference too
            cmp.diff(f"comparison failed: {type(e).__name__}: {e}")
        name = f.rsplit("/", 1)[-1]
        skipped = f" (skipped: {'; '.join(cmp.skipped)})" if cmp.skipped else ""
        if cmp.diffs:
            bad += 1
            print(f"DIFF {name}{skipped}")
            for d in cmp.diffs[:12]:
                print(f"    {d}")
        else:
            print(f"ok   {name}{skipped}")
    print(f"compared {len(a.files)} files, {bad} with differences")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
