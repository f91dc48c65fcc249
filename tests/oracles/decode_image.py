#!/usr/bin/env python3
"""An image file decoded by Pillow (libjpeg, zlib, its own GIF reader), written as a binary
PGM or PPM: the oracle that reads what wado renders.

    decode_image.py IN OUT MODE      # MODE: L (grey) or RGB

Prints `FORMAT WIDTH HEIGHT` (Pillow's name of the format it found).
"""
import sys

from PIL import Image

src, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
im = Image.open(src)
fmt = im.format
im = im.convert(mode)
im.save(out, format="PPM")
print(fmt, im.width, im.height)
