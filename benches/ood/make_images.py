"""Writes the out-of-distribution image set: pictures that are not dermoscopy of a skin lesion.

    python make_images.py HAM_LABELS.csv HAM_IMAGES_DIR OUT_DIR

Nothing is downloaded. Two families, each in its own folder with a `files.txt`:

- natural/: the photographs and scans bundled inside the scikit-image wheel (pinned in
  run.sh): people, animals, objects, text pages, textures, microscopy, a retina, the Hubble
  deep field, and 50 of its small face photos (`lfw_subset`). Each photo also as a centre
  crop and a mirrored corner crop, as a user would frame it.
- generated/: solid colours, uniform and Gaussian noise, colour gradients, checkerboards,
  rendered text, and dermoscopy images of the `train` split with their pixels scrambled
  (the colours of a lesion without its structure).

Generated images are seeded, so the set is the same on every machine.

    python make_images.py --fixtures OUT_DIR

writes the small copies of public-domain / CC0 photos that the workspace's tests read
(skinlesion-core/tests/data/not-dermoscopy), so that tests need no scikit-image.
"""

import csv
import sys
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Bundled files that are colour or grey photographs/scans; data arrays and masks are left out.
NATURAL = [
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
    "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
    "ihc.png", "logo.png", "microaneurysms.png", "moon.png", "motorcycle_left.png", "page.png",
    "retina.jpg", "rocket.jpg", "text.png",
]
FACES = 50
# Public domain or CC0 (see each function's docstring in skimage.data), for the test fixtures.
FIXTURES = [
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "grass.png",
    "gravel.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "rocket.jpg",
]
SIDE = 192


def rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, image)
    return image.convert("RGB")


def natural(out: Path) -> list[str]:
    data = resources.files("skimage") / "data"
    names = []
    for file in NATURAL:
        with resources.as_file(data / file) as path:
            image = rgb(Image.open(path))
        stem = file.rsplit(".", 1)[0]
        w, h = image.size
        side = min(w, h)
        centre = image.crop(((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2))
        corner = image.crop((0, 0, side * 2 // 3, side * 2 // 3)).transpose(Image.FLIP_LEFT_RIGHT)
        for suffix, view in (("", image), ("-centre", centre), ("-corner", corner)):
            names.append(save(view, out / f"{stem}{suffix}.png"))
    with resources.as_file(data / "lfw_subset.npy") as path:
        faces = np.load(path)
    for i, face in enumerate(faces[:FACES]):
        grey = (np.clip(face, 0, 1) * 255).astype(np.uint8)
        names.append(save(Image.fromarray(grey).convert("RGB"), out / f"face-{i:02d}.png"))
    return names


def generated(out: Path, ham_labels: Path, ham_images: Path, seed: int = 19) -> list[str]:
    """The generated family; the bench's is seed 19, the gate's fitting set uses another."""
    rng = np.random.default_rng(seed)
    names = []
    shape = (SIDE, SIDE, 3)
    for i in range(12):
        colour = rng.integers(0, 256, 3, dtype=np.uint8)
        names.append(save_array(np.broadcast_to(colour, shape), out / f"solid-{i:02d}.png"))
    for i in range(10):
        names.append(save_array(rng.integers(0, 256, shape, dtype=np.uint8), out / f"noise-{i:02d}.png"))
    for i in range(10):
        mean, sd = rng.uniform(60, 200, 3), rng.uniform(10, 60)
        noise = np.clip(rng.normal(mean, sd, shape), 0, 255).astype(np.uint8)
        names.append(save_array(noise, out / f"gaussian-{i:02d}.png"))
    ramp = np.linspace(0, 1, SIDE)[None, :, None]
    for i in range(10):
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        grad = np.broadcast_to(a + (b - a) * ramp, shape)
        grad = grad if i % 2 else grad.transpose(1, 0, 2)
        names.append(save_array(grad.astype(np.uint8), out / f"gradient-{i:02d}.png"))
    for i, cell in enumerate((4, 8, 16, 24, 48)):
        board = ((np.arange(SIDE)[:, None] // cell + np.arange(SIDE)[None, :] // cell) % 2) * 255
        names.append(save_array(np.repeat(board[:, :, None], 3, 2).astype(np.uint8), out / f"checkerboard-{i}.png"))
    font = ImageFont.load_default()
    words = "patient record dermatology clinic scan page report invoice screenshot menu".split()
    for i in range(10):
        page = Image.new("RGB", (SIDE, SIDE), tuple(int(v) for v in rng.integers(200, 256, 3)))
        draw = ImageDraw.Draw(page)
        for line in range(12):
            text = " ".join(rng.choice(words, 3))
            draw.text((6, 4 + line * 15), text, fill=(20, 20, 20), font=font)
        names.append(save(page, out / f"text-{i:02d}.png"))
    for i, path in enumerate(train_images(ham_labels, ham_images, 20, rng)):
        pixels = np.asarray(rgb(Image.open(path)))
        flat = pixels.reshape(-1, 3).copy()
        rng.shuffle(flat)
        names.append(save_array(flat.reshape(pixels.shape), out / f"scrambled-{i:02d}.png"))
    return names


def train_images(labels: Path, images: Path, n: int, rng) -> list[Path]:
    with open(labels, newline="") as f:
        rows = [r["image_id"] for r in csv.DictReader(f) if r["split"] == "train"]
    return [images / f"{rows[i]}.jpg" for i in sorted(rng.choice(len(rows), n, replace=False))]


def save_array(array: np.ndarray, path: Path) -> str:
    return save(Image.fromarray(np.ascontiguousarray(array)), path)


def save(image: Image.Image, path: Path) -> str:
    image.save(path)
    return path.name


def fixtures(out: Path) -> None:
    data = resources.files("skimage") / "data"
    out.mkdir(parents=True, exist_ok=True)
    for file in FIXTURES:
        with resources.as_file(data / file) as path:
            image = rgb(Image.open(path))
        image.thumbnail((256, 256))
        image.save(out / (file.rsplit(".", 1)[0] + ".jpg"), quality=90)
    print(f"{len(FIXTURES)} fixtures in {out}")


def main() -> None:
    if sys.argv[1] == "--fixtures":
        fixtures(Path(sys.argv[2]))
        return
    labels, images, out = (Path(a) for a in sys.argv[1:4])
    for family, make in (("natural", natural), ("generated", lambda o: generated(o, labels, images))):
        folder = out / family
        folder.mkdir(parents=True, exist_ok=True)
        names = make(folder)
        (folder / "files.txt").write_text("\n".join(names) + "\n")
        print(f"{family}: {len(names)} images in {folder}")


if __name__ == "__main__":
    main()
