"""Writes the shift bench's images: held-out dermoscopy as other devices would take it.

    python make_shifted.py DATA_DIR OUT_DIR [PER_SOURCE]

DATA_DIR holds ham10000/, isic2017/ and not-dermoscopy/ (`../shared/data`). For each shift of
`shifts.py`, PER_SOURCE (default 300) seeded images of HAM10000 `test` and as many of the
second source's `val` (ISIC 2017), shifted, as OUT_DIR/shifted/SHIFT/SOURCE/ with a
`labels.csv` (file,label) that `skinlesion-train evaluate` reads. The same images unshifted
are in OUT_DIR/shifted/none/. Also copies not-dermoscopy `val` (photographs, X-rays) to
OUT_DIR/not-dermoscopy/KIND/. None of these images is ever fitted on.
"""

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from shifts import SHIFTS, shifted

SOURCES = {
    "ham10000-test": ("ham10000", "test"),
    "isic2017-val": ("isic2017", "val"),
}


def held_out(data: Path, folder: str, split: str, n: int) -> list[tuple[Path, str]]:
    with open(data / folder / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    picked = np.random.default_rng(30).permutation(len(rows))[:n]
    return [(data / folder / "images" / f"{rows[i]['image_id']}.jpg", rows[i]["label"])
            for i in sorted(picked)]


def write(images: list[tuple[Path, str]], name: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "labels.csv", "w", newline="") as f:
        table = csv.writer(f)
        table.writerow(["file", "label"])
        for i, (path, label) in enumerate(images):
            image = Image.open(path).convert("RGB")
            if name != "none":
                image = shifted(image, name, 100_000 + i)
            file = f"{path.stem}.png"
            image.save(out / file)
            table.writerow([file, label])


def main() -> None:
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    per_source = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    for source, (folder, split) in SOURCES.items():
        images = held_out(data, folder, split, per_source)
        for name in ["none", *SHIFTS]:
            write(images, name, out / "shifted" / name / source)
        print(f"{source}: {len(images)} images under {len(SHIFTS)} shifts and none")
    with open(data / "not-dermoscopy/labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "val"]
    for r in rows:
        folder = out / "not-dermoscopy" / r["kind"]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data / "not-dermoscopy/images" / r["file"], folder / r["file"])
    print(f"not-dermoscopy val: {len(rows)} images")


if __name__ == "__main__":
    main()
