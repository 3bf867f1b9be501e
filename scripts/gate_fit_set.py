"""Writes the dermoscopy gate's fitting set: what "a dermoscopic picture of skin" is, and what not.

    python scripts/gate_fit_set.py DATA_DIR OUT_DIR

DATA_DIR holds ham10000/, isic2017/ and not-dermoscopy/ (`../shared/data`). Only `train`
splits are read: every image the gate is measured on (HAM10000 `val`/`test`, the second-source
`val`, not-dermoscopy `val`, the bench's photographs and generated images) stays unseen.

- dermoscopy: HAM10000 `train` (nevi capped at NEVI) and ISIC 2017 `train`, each image as it is
  and once more under one of the bench's shifts (`benches/ood/shifts.py`: other
  dermatoscopes' colours, exposure, blur, JPEG, scale, field stop, rotation, zoom, hairs,
  squashing), so that another clinic's device is not taken for "not dermoscopy";
- other: not-dermoscopy `train` (photographs, chest X-rays), each as it is, in grey, tiny
  (a thumbnail scaled back up) and cropped, and generated images (`make_images.py`, other
  seeds than the bench's).

Writes OUT_DIR/gate.csv (file relative to OUT_DIR; dermoscopy 1/0; label, the lesion class
of dermoscopy; source; variant) and the derived images under OUT_DIR. Seeded: the same set on every machine.
"""

import csv
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benches" / "ood"))
from make_images import generated  # noqa: E402
from shifts import SHIFTS, shifted  # noqa: E402

NEVI = 1200
GENERATED_SEEDS = (101, 102)


def rows(labels: Path, split: str) -> list[dict]:
    with open(labels, newline="") as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def dermoscopy(data: Path) -> list[tuple[Path, str, str]]:
    ham = rows(data / "ham10000/labels.csv", "train")
    nevi = [r for r in ham if r["label"] == "NV"]
    keep = {r["image_id"] for r in np.random.default_rng(0).permutation(nevi)[:NEVI]}
    ham = [r for r in ham if r["label"] != "NV" or r["image_id"] in keep]
    isic = rows(data / "isic2017/labels.csv", "train")
    return [(data / "ham10000/images" / f"{r['image_id']}.jpg", "ham10000", r["label"])
            for r in ham] + [
        (data / "isic2017/images" / f"{r['image_id']}.jpg", "isic2017", r["label"]) for r in isic
    ]


def grey(image, rng):
    return image.convert("L").convert("RGB")


def tiny(image, rng):
    side = int(rng.integers(20, 41))
    scale = side / max(image.size)
    small = image.resize((max(4, round(image.width * scale)), max(4, round(image.height * scale))))
    return small.resize(image.size, Image.BILINEAR)


def crop(image, rng):
    w, h = image.size
    fw, fh = rng.uniform(0.35, 0.6, size=2)
    x, y = rng.uniform(0, 1 - fw) * w, rng.uniform(0, 1 - fh) * h
    return image.crop((x, y, x + fw * w, y + fh * h)).transpose(Image.FLIP_LEFT_RIGHT)


NEGATIVE_VARIANTS = {f.__name__: f for f in (grey, tiny, crop)}


def main() -> None:
    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    (out / "shifted").mkdir(parents=True, exist_ok=True)
    (out / "other").mkdir(parents=True, exist_ok=True)
    table = []

    def add(path: Path, label: str, source: str, variant: str) -> None:
        table.append((os.path.relpath(path, out), int(bool(label)), label, source, variant))

    names = list(SHIFTS)
    for i, (path, source, label) in enumerate(dermoscopy(data)):
        add(path, label, source, "original")
        name = names[i % len(names)]
        derived = out / "shifted" / f"{path.stem}-{name}.png"
        shifted(Image.open(path), name, 7 + i).save(derived)
        add(derived, label, source, name)

    negatives = rows(data / "not-dermoscopy/labels.csv", "train")
    for i, r in enumerate(negatives):
        path = data / "not-dermoscopy/images" / r["file"]
        add(path, "", r["kind"], "original")
        image = Image.open(path).convert("RGB")
        for j, (name, variant) in enumerate(NEGATIVE_VARIANTS.items()):
            derived = out / "other" / f"{path.stem}-{name}.png"
            variant(image, np.random.default_rng(1000 * i + j)).save(derived)
            add(derived, "", r["kind"], name)

    ham = data / "ham10000"
    for seed in GENERATED_SEEDS:
        folder = out / f"generated-{seed}"
        folder.mkdir(exist_ok=True)
        for name in generated(folder, ham / "labels.csv", ham / "images", seed):
            add(folder / name, "", "generated", name.split("-")[0])

    with open(out / "gate.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "dermoscopy", "label", "source", "variant"])
        writer.writerows(table)
    positives = sum(t[1] for t in table)
    print(f"gate fitting set: {positives} dermoscopy, {len(table) - positives} other, in {out}")


if __name__ == "__main__":
    main()
