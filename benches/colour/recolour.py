"""Writes re-coloured copies of one split of a labelled image set, one folder per colour cast.

    python recolour.py LABELS.csv IMAGES_DIR SPLIT OUT_DIR

Each copy is the decoded image with every channel scaled (then rounded and clipped to 8 bits),
saved as lossless PNG so that only the cast differs; the unchanged set is written the same way.
OUT_DIR/<cast>/labels.csv lists `file,label` for `skinlesion-train evaluate`.
"""

import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# name -> per-channel gains (R, G, B), or a gamma exponent for "gamma-*".
CASTS = {
    "unchanged": (1.0, 1.0, 1.0),
    "warm-10": (1.1, 1.0, 0.9),
    "cool-10": (0.9, 1.0, 1.1),
    "warm-20": (1.2, 1.0, 0.8),
    "cool-20": (0.8, 1.0, 1.2),
    "dark-20": (0.8, 0.8, 0.8),
    "bright-20": (1.2, 1.2, 1.2),
    "gamma-0.8": 0.8,
}


def recolour(rgb: np.ndarray, cast) -> np.ndarray:
    x = rgb.astype(np.float64) / 255.0
    x = x**cast if isinstance(cast, float) else x * np.array(cast)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def main(labels: str, images: str, split: str, out: str) -> None:
    with open(labels, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    if not rows:
        sys.exit(f"no rows with split {split!r} in {labels}")
    for name, cast in CASTS.items():
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "labels.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "label"])
            for r in rows:
                rgb = np.asarray(Image.open(Path(images) / f"{r['image_id']}.jpg").convert("RGB"))
                file = f"{r['image_id']}.png"
                Image.fromarray(recolour(rgb, cast)).save(folder / file)
                w.writerow([file, r["label"]])
    print(f"{len(rows)} {split} images x {len(CASTS)} casts in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
