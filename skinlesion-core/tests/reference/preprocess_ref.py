"""Independent reference for skinlesion-core's preprocessing, written with PIL + numpy.

Usage: preprocess_ref.py SPEC_JSON OUT_F32 IMAGE...
Writes N x 3 x H x W float32 (C order) to OUT_F32: decode, EXIF transpose, RGB, resize per
the spec (stretch, or centred crop then resize) with PIL's antialiased bilinear filter, then
(x / 255 - mean) / std.
"""
import json
import sys

import numpy as np
from PIL import Image, ImageOps


def center_crop_box(w, h, tw, th):
    # Same integer rule as the Rust side: round-half-up of the target-aspect side.
    if w * th > h * tw:
        cw = min(max((h * tw + th // 2) // th, 1), w)
        x = (w - cw) // 2
        return (x, 0, x + cw, h)
    ch = min(max((w * th + tw // 2) // tw, 1), h)
    y = (h - ch) // 2
    return (0, y, w, y + ch)


def preprocess(path, spec):
    img = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    if spec["resize"] == "center_crop":
        img = img.crop(center_crop_box(img.width, img.height, spec["width"], spec["height"]))
    if img.size != (spec["width"], spec["height"]):
        img = img.resize((spec["width"], spec["height"]), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.array(spec["mean"], np.float32)) / np.array(spec["std"], np.float32)
    return x.transpose(2, 0, 1)


def main():
    spec = json.loads(sys.argv[1])
    out = np.stack([preprocess(p, spec) for p in sys.argv[3:]]).astype(np.float32)
    out.tofile(sys.argv[2])


if __name__ == "__main__":
    main()
