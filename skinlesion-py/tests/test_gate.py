"""The shipped model's dermoscopy gate on dermoscopy from other devices and another source.

Real held-out images only (HAM10000 `test`, the second source's `val`, neither fitted on),
shifted in memory by the OOD bench's own shifts (`benches/ood/shifts.py`: colour, exposure,
blur, JPEG, scale, field stop, rotation, zoom, hairs, squashing). The gate must take them for
what they are: dermoscopy. The refusals it must make are tested in test_skinlesion.py and the
Rust core's shipped-model tests.
"""

from __future__ import annotations

import csv
import io
import os
import pathlib
import sys

import numpy as np
import pytest
from PIL import Image

import skinlesion

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("SKINLESION_SHARED_DATA", REPO.parent / "shared" / "data"))
MODEL = REPO / "models" / skinlesion.DEFAULT_MODEL.name
sys.path.insert(0, str(REPO / "benches" / "ood"))
from shifts import SHIFTS, shifted  # noqa: E402

PER_SOURCE = 3


def held_out(folder: str, split: str, n: int, seed: int) -> list[pathlib.Path]:
    with open(SHARED / folder / "labels.csv", newline="") as f:
        ids = [r["image_id"] for r in csv.DictReader(f) if r["split"] == split]
    picked = np.random.default_rng(seed).choice(len(ids), n, replace=False)
    return [SHARED / folder / "images" / f"{ids[i]}.jpg" for i in sorted(picked)]


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def classifier() -> skinlesion.Classifier:
    return skinlesion.Classifier(MODEL, device="cpu")


def refused_under(classifier, shift: str) -> list[str]:
    seed = sorted(SHIFTS).index(shift)
    paths = held_out("ham10000", "test", PER_SOURCE, seed) + held_out(
        "isic2017", "val", PER_SOURCE, seed)
    images = [png(shifted(Image.open(p), shift, 7 * seed + i)) for i, p in enumerate(paths)]
    return [p.name for p, r in zip(paths, classifier.classify_batch(images))
            if r.unknown_reason == "not_dermoscopy"]


def test_the_gate_accepts_dermoscopy_from_other_devices(classifier):
    refused = {shift: refused_under(classifier, shift) for shift in sorted(SHIFTS)}
    # The bench measures 0-6 % refused per shift on 600 images each; here 6 per shift. v5 when
    # shipped: none refused (v4.3: one, ISIC_0032656 under colour_cast).
    assert all(len(r) <= 1 for r in refused.values()), refused
    assert sum(map(len, refused.values())) <= 3, refused


def test_the_gate_accepts_the_second_source(classifier):
    paths = held_out("isic2017", "val", 60, 2017)
    refused = [p.name for p, r in zip(paths, classifier.classify_batch(paths))
               if r.unknown_reason == "not_dermoscopy"]
    # Measured on all 497 second-source val images in the model card; 60 of them here.
    assert len(refused) <= 1, refused
