#!/usr/bin/env python3
"""HTJ2K DICOM files made by OpenJPH (Debian's openjph-tools: ojph_compress, ojph_expand), the
reference implementation of JPEG 2000 Part 15, for wado's interoperability tests.

    ojph_dicom.py CORPUS_DIR OUT_DIR OJPH_CODEC

OJPH_CODEC is `tests/oracles/ojph_codec.cpp` built against libopenjph: signed images go through
it (OpenJPH's library, samples as 32-bit integers), because the 0.9 command-line tools read
signed raw files as unsigned.

For each case below, the source file's pixels (read by pydicom) are compressed frame by frame
by `ojph_compress`, and a copy of the source data set is written with the codestreams
encapsulated (one fragment per frame), the transfer syntax of the case, a new SOP Instance UID
and the Photometric Interpretation the codestream implies (YBR_RCT / YBR_ICT when OpenJPH
applied its colour transform, PS3.5 §8.2.14). Beside each `NAME.dcm`, `NAME.want` holds the
samples a decoder must give, native little endian, samples interleaved, frames in order:
the source's own pixels for lossless cases, `ojph_expand`'s decoding for lossy ones.

Prints a JSON list: [{"file", "want", "ts", "lossless", "bits_allocated", "frames"}].
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

HT_LOSSLESS = "1.2.840.10008.1.2.4.201"
HT_RPCL = "1.2.840.10008.1.2.4.202"
HT_LOSSY = "1.2.840.10008.1.2.4.203"

# (name, source, transfer syntax, extra ojph_compress options)
CASES = [
    ("ct_small_201", "ct_small_ele.dcm", HT_LOSSLESS, []),
    ("mr_small_202", "mr_small_implicit.dcm", HT_RPCL,
     ["-prog_order", "RPCL"]),
    ("emr_10frame_201", "emr_10frame_ele.dcm", HT_LOSSLESS, ["-num_decomps", "3"]),
    ("us_rgb_201", "us_rgb_planar1_ele.dcm", HT_LOSSLESS, ["-colour_trans", "true"]),
    ("sc_rgb_odd_201", "sc_rgb_odd_3x3.dcm", HT_LOSSLESS, ["-num_decomps", "1"]),
    ("cr_202", "study77654033_CR1_6154.dcm", HT_RPCL,
     ["-prog_order", "RPCL", "-block_size", "{32,32}"]),
    ("ct_small_203", "ct_small_ele.dcm", HT_LOSSY, ["-reversible", "false", "-qstep", "0.002"]),
]


def frames_of(ds):
    """Each frame as an array (rows, columns[, samples]) of the stored sample type."""
    arr = ds.pixel_array
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if n == 1:
        return [arr]
    return [arr[i] for i in range(n)]


def compress(frame, ds, opts, work, codec):
    """One frame through ojph_compress (PGM/PPM: unsigned), or OpenJPH's library (signed)."""
    spp = int(ds.SamplesPerPixel)
    bits = int(ds.BitsStored)
    signed = int(ds.PixelRepresentation) == 1
    rows, cols = frame.shape[0], frame.shape[1]
    src = os.path.join(work, "in")
    if spp == 3:
        src += ".ppm"
        with open(src, "wb") as f:
            f.write(b"P6\n%d %d\n255\n" % (cols, rows))
            f.write(frame.astype(np.uint8).tobytes())
        args = []
    elif not signed:
        src += ".pgm"
        maxval = (1 << bits) - 1
        with open(src, "wb") as f:
            f.write(b"P5\n%d %d\n%d\n" % (cols, rows, maxval))
            f.write(frame.astype(">u2" if maxval > 255 else np.uint8).tobytes())
        args = []
    else:
        src += ".i32"
        frame.astype("<i4").tofile(src)
        out = os.path.join(work, "out.j2c")
        order = opts[opts.index("-prog_order") + 1] if "-prog_order" in opts else "LRCP"
        qstep = [opts[opts.index("-qstep") + 1]] if "-qstep" in opts else []
        subprocess.run([codec, "encode", src, str(cols), str(rows), "1", str(bits), "1", order,
                        out] + qstep, check=True, stdout=subprocess.DEVNULL)
        with open(out, "rb") as f:
            return f.read(), out
    out = os.path.join(work, "out.j2c")
    subprocess.run(["ojph_compress", "-i", src, "-o", out] + args + opts, check=True,
                   stdout=subprocess.DEVNULL)
    with open(out, "rb") as f:
        return f.read(), out


def expand(j2c, ds, work, codec):
    """OpenJPH's decoding of a codestream, as samples of the source's type."""
    spp = int(ds.SamplesPerPixel)
    signed = int(ds.PixelRepresentation) == 1
    rows, cols = int(ds.Rows), int(ds.Columns)
    if spp == 1 and signed:
        out = os.path.join(work, "back.i32")
        subprocess.run([codec, "decode", j2c, out], check=True, stdout=subprocess.DEVNULL)
        return np.fromfile(out, "<i4").reshape(rows, cols)
    out = os.path.join(work, "back.ppm" if spp == 3 else "back.pgm")
    subprocess.run(["ojph_expand", "-i", j2c, "-o", out], check=True, stdout=subprocess.DEVNULL)
    with open(out, "rb") as f:
        data = f.read()
    # Netpbm header: magic, width, height, maxval, one whitespace byte.
    fields, pos = [], 0
    while len(fields) < 4:
        while data[pos:pos + 1].isspace():
            pos += 1
        start = pos
        while not data[pos:pos + 1].isspace():
            pos += 1
        fields.append(data[start:pos])
    pos += 1
    maxval = int(fields[3])
    dt = ">u2" if maxval > 255 else np.uint8
    shape = (rows, cols, 3) if spp == 3 else (rows, cols)
    return np.frombuffer(data[pos:], dt).reshape(shape)


def main():
    corpus, out_dir, codec = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(out_dir, exist_ok=True)
    made = []
    for name, source, ts, opts in CASES:
        ds = pydicom.dcmread(os.path.join(corpus, source))
        ds.decompress() if ds.file_meta.TransferSyntaxUID.is_compressed else None
        lossless = ts != HT_LOSSY
        colour = int(ds.SamplesPerPixel) == 3
        store_dtype = "<i2" if int(ds.PixelRepresentation) == 1 else (
            "<u2" if int(ds.BitsAllocated) == 16 else np.uint8)
        fragments, want = [], []
        with tempfile.TemporaryDirectory() as work:
            for frame in frames_of(ds):
                stream, path = compress(
                    frame, ds, opts + (["-reversible", "true"] if lossless else []), work, codec)
                fragments.append(stream)
                expected = frame if lossless else expand(path, ds, work, codec)
                want.append(np.ascontiguousarray(expected).astype(store_dtype).tobytes())
        ds.PixelData = encapsulate(fragments)
        ds["PixelData"].is_undefined_length = True
        ds["PixelData"].VR = "OB"
        if colour:
            ds.PlanarConfiguration = 0
            ds.PhotometricInterpretation = "YBR_RCT" if lossless else "YBR_ICT"
        if not lossless:
            ds.LossyImageCompression = "01"
            ds.LossyImageCompressionMethod = "ISO_15444_15"
        uid = generate_uid(entropy_srcs=["wado htj2k fixture", name])
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.file_meta.TransferSyntaxUID = ts
        path = os.path.join(out_dir, name + ".dcm")
        ds.save_as(path, enforce_file_format=True)
        want_path = os.path.join(out_dir, name + ".want")
        with open(want_path, "wb") as f:
            f.write(b"".join(want))
        made.append({"file": path, "want": want_path, "ts": ts, "lossless": lossless,
                     "bits_allocated": int(ds.BitsAllocated), "frames": len(fragments)})
    print(json.dumps(made))


if __name__ == "__main__":
    main()
