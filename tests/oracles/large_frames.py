#!/usr/bin/env python3
"""A large multi-frame study for the viewer's progressive loading test (issue 27), written by
pydicom so that wado is not the author of what it serves.

    large_frames.py OUT.dcm [FRAMES] [SIZE]

One Multi-frame Grayscale Word Secondary Capture instance, Explicit VR Little Endian, FRAMES
(default 3) frames of SIZE x SIZE (default 2048) 12-bit samples: a CT-like phantom (a body
ellipse, organs, bone rings, a fine grid and seeded noise) that compresses about as a real CT
does (lossless HTJ2K about 2:1), so a byte-range prefix is a few percent of a frame. Seeded:
the same file every run, new UIDs each run (a study of its own). Prints the study UID.
"""
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

out = sys.argv[1]
frames = int(sys.argv[2]) if len(sys.argv) > 2 else 3
size = int(sys.argv[3]) if len(sys.argv) > 3 else 2048

rng = np.random.default_rng(27)
y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
pixels = []
for f in range(frames):
    img = np.full((size, size), 24.0, np.float32)  # air
    body = (x / 0.46) ** 2 + (y / 0.38) ** 2 < 1
    img[body] = 1040  # soft tissue
    for cx, cy, r, v in [(-0.18, -0.05, 0.11, 1080), (0.16, 0.02, 0.09, 960), (0.0, 0.15, 0.06, 1120)]:
        img[(x - cx) ** 2 + (y - cy - 0.01 * f) ** 2 < r * r] = v
    ring = np.abs(np.sqrt(x ** 2 + (y + 0.02) ** 2) - 0.3) < 0.012
    img[ring & body] = 2200  # bone
    img += 30 * np.sin(40 * x) * np.cos(37 * y) * body  # texture
    img += rng.normal(0, 12, img.shape) * body  # quantum noise
    pixels.append(np.clip(img, 0, 4095).astype(np.uint16))

study = generate_uid()
meta = FileMetaDataset()
meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"
meta.MediaStorageSOPInstanceUID = generate_uid()
meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds = Dataset()
ds.file_meta = meta
ds.SOPClassUID = meta.MediaStorageSOPClassUID
ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
ds.StudyInstanceUID = study
ds.SeriesInstanceUID = generate_uid()
ds.StudyDate = "20260101"
ds.StudyTime = "120000"
ds.AccessionNumber = "PROG"
ds.Modality = "OT"
ds.ConversionType = "WSD"
ds.PatientName = "Progressive^Large"
ds.PatientID = "PROG1"
ds.SeriesNumber = 1
ds.InstanceNumber = 1
ds.SamplesPerPixel = 1
ds.PhotometricInterpretation = "MONOCHROME2"
ds.NumberOfFrames = frames
ds.FrameIncrementPointer = 0x00181063  # Frame Time
ds.FrameTime = 100
ds.Rows = size
ds.Columns = size
ds.BitsAllocated = 16
ds.BitsStored = 12
ds.HighBit = 11
ds.PixelRepresentation = 0
ds.RescaleIntercept = -1024
ds.RescaleSlope = 1
ds.RescaleType = "HU"
ds.WindowCenter = 40
ds.WindowWidth = 400
ds.PixelData = np.stack(pixels).tobytes()
ds.save_as(out, enforce_file_format=True)
print(study)
