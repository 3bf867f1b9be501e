"""Classify dermoscopic skin-lesion images into the ISIC 2019 categories.

**Research and education only.** skinlesion is not a medical device and does not diagnose;
anyone worried about a skin lesion should see a dermatologist.

>>> import skinlesion
>>> classifier = skinlesion.Classifier()              # the shipped model
>>> prediction = classifier.classify("lesion.jpg")    # path, bytes, numpy array or PIL image
>>> prediction.class_name, prediction.confidence
('Melanocytic nevi', 0.94)

The answer is "Unknown" when the model's calibrated confidence is below its threshold: an
abstention, never a trained class. Decoding and inference run in Rust with the GIL released; a
``Classifier`` can be shared by many threads.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Union

from ._skinlesion import (
    DISCLAIMER,
    SHIPPED_MODEL as _SHIPPED_MODEL,
    ChecksumMismatchError,
    ConfigError,
    DecodeError,
    EmptyInputError,
    ImageReadError,
    ImageTooLargeError,
    InferenceError,
    InputError,
    InputTooLargeError,
    InvalidPixelsError,
    MetadataMismatchError,
    ModelCorruptError,
    ModelError,
    ModelNotFoundError,
    NativeClassifier as _NativeClassifier,
    Pixels as _Pixels,
    Prediction,
    SkinLesionError,
    UnsupportedFormatError,
    __version__,
    lesion_classes as _lesion_classes,
    preferred_batch_size,
)

__all__ = [
    "DISCLAIMER",
    "DEFAULT_MODEL",
    "LESION_CLASSES",
    "Classifier",
    "LesionClass",
    "Prediction",
    "preferred_batch_size",
    "SkinLesionError",
    "InputError",
    "EmptyInputError",
    "UnsupportedFormatError",
    "DecodeError",
    "InputTooLargeError",
    "ImageTooLargeError",
    "InvalidPixelsError",
    "ModelError",
    "ModelNotFoundError",
    "ModelCorruptError",
    "ChecksumMismatchError",
    "MetadataMismatchError",
    "InferenceError",
    "ConfigError",
    "ImageReadError",
    "__version__",
]

#: The model shipped inside this package (manifest path), used when ``Classifier(model=None)``.
DEFAULT_MODEL: Path = Path(__file__).resolve().parent / "models" / _SHIPPED_MODEL


class LesionClass(str, enum.Enum):
    """A lesion category, valued by its ISIC code (``LesionClass("MEL")``, ``LesionClass.MEL == "MEL"``).

    The eight diagnoses are in ISIC code order; ``UNK`` is the abstention and never has a
    probability.
    """

    AK = "AK"
    BCC = "BCC"
    BKL = "BKL"
    DF = "DF"
    MEL = "MEL"
    NV = "NV"
    SCC = "SCC"
    VASC = "VASC"
    UNK = "UNK"

    @property
    def code(self) -> str:
        """The ISIC code, e.g. ``"MEL"``."""
        return self.value

    @property
    def display_name(self) -> str:
        """The display name, e.g. ``"Melanoma"`` (a prediction's ``class_name``)."""
        return _CLASS_INFO[self.value][0]

    @property
    def malignancy(self) -> str:
        """``"cancerous"``, ``"precancerous"``, ``"benign"`` or ``"undetermined"`` (Unknown)."""
        return _CLASS_INFO[self.value][1]

    @property
    def is_cancerous(self) -> bool:
        """True for melanoma, basal cell carcinoma and squamous cell carcinoma."""
        return self.malignancy == "cancerous"

    def __str__(self) -> str:
        return self.value


# Names and malignancy come from the Rust core, the single source of the taxonomy.
_CLASS_INFO = {code: (name, malignancy) for code, name, malignancy in _lesion_classes()}
assert list(_CLASS_INFO) == [c.value for c in LesionClass], "taxonomy out of sync with the core"

#: Every lesion class, the eight diagnoses then Unknown.
LESION_CLASSES: List[LesionClass] = list(LesionClass)

ImageLike = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Any]
"""A path, encoded bytes, a numpy ``uint8`` array (H×W, H×W×1, H×W×3, H×W×4) or a PIL image."""


class Classifier:
    """A loaded skin-lesion classifier.

    Args:
        model: Path to a model manifest (``.json``) or its weights (``.pt``); ``None`` for the
            model shipped with this package.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        threads: CPU threads for inference and decoding; ``None`` for all available cores.
        max_pixels: Largest image accepted, in pixels (refused from the header, before decoding).
        max_bytes: Largest encoded image accepted, in bytes.

    Raises:
        ModelError: the model is missing, corrupt, or fails its checksum.
        ConfigError: the device cannot be used.

    Thread-safe: one instance may classify from many threads at once.
    """

    def __init__(
        self,
        model: Union[str, "os.PathLike[str]", None] = None,
        *,
        device: str = "auto",
        threads: Optional[int] = None,
        max_pixels: Optional[int] = None,
        max_bytes: Optional[int] = None,
    ) -> None:
        if model is None:
            model = DEFAULT_MODEL
        if not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a path or None, not {type(model).__name__}")
        if not isinstance(device, str):
            raise TypeError(f"device must be a str, not {type(device).__name__}")
        for name, value in (("threads", threads), ("max_pixels", max_pixels), ("max_bytes", max_bytes)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self._native = _NativeClassifier(os.fspath(model), device, threads, max_pixels, max_bytes)

    def classify(self, image: ImageLike) -> Prediction:
        """Classifies one image: a path, encoded bytes, a numpy ``uint8`` array or a PIL image.

        Raises:
            TypeError: ``image`` is none of the accepted kinds (or a numpy array not of uint8).
            InputError: the image is empty, unsupported, corrupt, too large or malformed.
            ImageReadError: the file cannot be read.
        """
        return self._native.classify(_to_input(image))

    def classify_batch(self, images: Iterable[ImageLike], *, errors: str = "raise") -> List[Any]:
        """Classifies many images (of any accepted kinds, mixed) with one forward pass.

        Args:
            images: the images.
            errors: ``"raise"`` raises the first image's error (its index in the message) if any
                image fails; ``"return"`` puts the exception object in that image's place and
                classifies the rest.

        Returns:
            One ``Prediction`` per image (or exception, with ``errors="return"``), in order.
        """
        if errors not in ("raise", "return"):
            raise ValueError(f'errors must be "raise" or "return", not {errors!r}')
        if isinstance(images, (str, bytes, bytearray, os.PathLike)):
            raise TypeError("classify_batch takes a list of images; use classify for one image")
        results = self._native.classify_many([_to_input(image) for image in images])
        if errors == "raise":
            for index, result in enumerate(results):
                if isinstance(result, BaseException):
                    raise type(result)(f"image {index}: {result}") from result
        return results

    @property
    def classes(self) -> List[LesionClass]:
        """The classes the model was trained on, in output order."""
        return [LesionClass(code) for code in self._native.classes]

    @property
    def metadata(self) -> dict:
        """The model's manifest: name, version, architecture, classes, input, calibration, weights, provenance."""
        return self._native.metadata

    @property
    def model_path(self) -> Path:
        """The manifest this classifier was loaded from."""
        return Path(self._native.model_path)

    @property
    def device(self) -> str:
        """Where inference runs (``"cpu"`` or ``"cuda:N"``)."""
        return self._native.device

    @property
    def threads(self) -> int:
        """CPU threads used for inference and decoding."""
        return self._native.threads

    def __repr__(self) -> str:
        meta = self.metadata
        return (
            f"Classifier(model={meta['name']!r} v{meta['version']}, "
            f"device={self.device!r}, threads={self.threads})"
        )


def _to_input(image: Any) -> Any:
    """What the native classifier takes: a path, bytes, or ``Pixels``, from any accepted kind."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return image if isinstance(image, bytes) else bytes(image)
    module = type(image).__module__
    if module.startswith("PIL."):
        return _from_pil(image)
    if module == "numpy" and type(image).__name__ == "ndarray":
        return _from_numpy(image)
    raise TypeError(
        "image must be a path (str or os.PathLike), bytes, a numpy uint8 array or a PIL image, "
        f"not {type(image).__module__}.{type(image).__qualname__}"
    )


def _from_numpy(array: Any) -> _Pixels:
    import numpy as np

    if array.dtype != np.uint8:
        raise TypeError(f"pixel arrays must have dtype uint8, not {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InvalidPixelsError(
            f"pixel arrays must be H×W, H×W×1, H×W×3 (RGB) or H×W×4 (RGBA), not shape {array.shape}"
        )
    array = np.ascontiguousarray(array)
    height, width, channels = array.shape
    return _Pixels(array, width, height, width * channels, channels)


def _from_pil(image: Any) -> _Pixels:
    mode = image.mode
    if mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in mode or "transparency" in image.info else "RGB")
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[image.mode]
    width, height = image.size
    return _Pixels(image.tobytes(), width, height, width * channels, channels)
