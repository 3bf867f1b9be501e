"""How other dermatoscopes and cameras differ from HAM10000's: image shifts for the OOD bench.

Each shift takes a PIL RGB image and a seeded `numpy.random.Generator` and returns the image as
another clinic's device might have taken it. The bench (`make_shifted.py`) applies each one to
HAM10000 `test` and the second-source `val`; the dermoscopy gate must accept what comes out
(it is still a dermoscopic picture of skin). The gate is fitted on `train` images shifted the
same way (`SHIFTS`), never on the images the bench scores.
"""

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 255.0


def _image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def _gains(image, gains):
    return _image(_pixels(image) * np.asarray(gains, dtype=np.float32))


def warm(image, rng):
    """A warmer lamp or white balance: red up, blue down by 10-20 %."""
    s = rng.uniform(0.1, 0.2)
    return _gains(image, (1 + s, 1.0, 1 - s))


def cool(image, rng):
    """A cooler lamp (LED dermatoscopes): blue up, red down by 10-20 %."""
    s = rng.uniform(0.1, 0.2)
    return _gains(image, (1 - s, 1.0, 1 + s))


def colour_cast(image, rng):
    """Another camera's white balance: each channel's gain in 0.8-1.2."""
    return _gains(image, rng.uniform(0.8, 1.2, size=3))


def dark(image, rng):
    """Under-exposed by 25-40 %."""
    return _gains(image, [rng.uniform(0.6, 0.75)] * 3)


def bright(image, rng):
    """Over-exposed by 20-35 % (highlights clip)."""
    return _gains(image, [rng.uniform(1.2, 1.35)] * 3)


def low_contrast(image, rng):
    """Contrast halved towards the image's mean (a hazy contact plate)."""
    p = _pixels(image)
    return _image(p.mean() + (p - p.mean()) * rng.uniform(0.5, 0.65))


def high_contrast(image, rng):
    """Contrast raised by 30-50 %."""
    p = _pixels(image)
    return _image(p.mean() + (p - p.mean()) * rng.uniform(1.3, 1.5))


def gamma(image, rng):
    """Another tone curve: gamma 0.6-0.8 or 1.3-1.6."""
    g = rng.uniform(0.6, 0.8) if rng.random() < 0.5 else rng.uniform(1.3, 1.6)
    return _image(_pixels(image) ** g)


def blur(image, rng):
    """Out of focus: a Gaussian blur of 1-2 % of the image's width."""
    return image.filter(ImageFilter.GaussianBlur(image.width * rng.uniform(0.01, 0.02)))


def jpeg(image, rng):
    """Saved by a gateway at JPEG quality 30-60."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(30, 61)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def downscale(image, rng):
    """A low-resolution camera: a third to a half of the pixels on each side, scaled back."""
    f = rng.uniform(0.33, 0.5)
    small = image.resize((max(8, round(image.width * f)), max(8, round(image.height * f))),
                         Image.BILINEAR)
    return small.resize(image.size, Image.BILINEAR)


def upscale(image, rng):
    """A large photograph: 3-5 times the pixels on each side (bicubic)."""
    f = rng.uniform(3.0, 5.0)
    return image.resize((round(image.width * f), round(image.height * f)), Image.BICUBIC)


def field_stop(image, rng):
    """A dermatoscope's round field of view: black outside a centred circle whose diameter is
    90-110 % of the short side (corners and, when larger, nothing else black)."""
    w, h = image.size
    r = min(w, h) * rng.uniform(0.45, 0.55)
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).ellipse((w / 2 - r, h / 2 - r, w / 2 + r, h / 2 + r), fill=255)
    return Image.composite(image, Image.new("RGB", image.size, (0, 0, 0)), mask)


def rotate(image, rng):
    """Held at another angle: 15-75 degrees either way, corners black as a rotated field."""
    angle = rng.uniform(15, 75) * (1 if rng.random() < 0.5 else -1)
    return image.rotate(angle, resample=Image.BILINEAR, fillcolor=(0, 0, 0))


def zoom_in(image, rng):
    """Higher magnification: the centre 55-75 % of each side."""
    f = rng.uniform(0.55, 0.75)
    w, h = image.size
    cw, ch = w * f, h * f
    return image.crop(((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)).resize(
        image.size, Image.BILINEAR)


def zoom_out(image, rng):
    """Lower magnification: the image at 60-80 % in the middle of its own mirrored surround
    (more skin around the lesion)."""
    f = rng.uniform(0.6, 0.8)
    w, h = image.size
    p = _pixels(image.resize((max(1, round(w * f)), max(1, round(h * f))), Image.BILINEAR))
    top, left = (h - p.shape[0]) // 2, (w - p.shape[1]) // 2
    padded = np.pad(p, ((top, h - p.shape[0] - top), (left, w - p.shape[1] - left), (0, 0)),
                    mode="reflect")
    return _image(padded)


def hairs(image, rng):
    """Hair over the lesion: 8-20 dark, slightly curved strands 1-3 px wide."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    w, h = image.size
    for _ in range(int(rng.integers(8, 21))):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        heading = rng.uniform(0, 2 * math.pi)
        length, bend = rng.uniform(0.3, 0.8) * max(w, h), rng.uniform(-0.03, 0.03)
        tone = tuple(int(v) for v in rng.integers(10, 60, size=3))
        points = []
        for _ in range(12):
            points.append((x, y))
            x, y = x + math.cos(heading) * length / 11, y + math.sin(heading) * length / 11
            heading += bend * 11
        draw.line(points, fill=tone, width=int(rng.integers(1, 4)))
    return image


def squash(image, rng):
    """Squashed to a square (aspect ratio not kept), as some archives store images."""
    side = min(image.size)
    return image.resize((side, side), Image.BILINEAR)


SHIFTS = {f.__name__: f for f in (
    warm, cool, colour_cast, dark, bright, low_contrast, high_contrast, gamma, blur, jpeg,
    downscale, upscale, field_stop, rotate, zoom_in, zoom_out, hairs, squash,
)}


def shifted(image: Image.Image, name: str, seed: int) -> Image.Image:
    """`image` under shift `name`, the same on every machine for the same seed."""
    return SHIFTS[name](image.convert("RGB"), np.random.default_rng(seed))
