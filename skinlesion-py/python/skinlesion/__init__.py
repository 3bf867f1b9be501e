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
import sys
from pathlib import Path
from typing import Any, Iterable, List, Optional, Union

from ._skinlesion import (
    DICOM_FIELDS,
    DISCLAIMER,
    SHIPPED_MODEL as _SHIPPED_MODEL,
    InputError,
    ModelError,
    NativeClassifier as _NativeClassifier,
    NativeExplanation as _NativeExplanation,
    Pixels as _Pixels,
    Prediction,
    SkinLesionError,
    __version__,
    lesion_classes as _lesion_classes,
    preferred_batch_size,
    read_metadata,
)

# BEGIN generated from the core's ErrorKind table by tests/test_skinlesion.py
from ._skinlesion import (  # noqa: E402
    EmptyInputError,
    UnsupportedFormatError,
    DecodeError,
    InputTooLargeError,
    ImageTooLargeError,
    InvalidPixelsError,
    ModelNotFoundError,
    ModelCorruptError,
    ChecksumMismatchError,
    MetadataMismatchError,
    InferenceError,
    ConfigError,
    ImageReadError,
    NoClassMapsError,
    ClassNotInModelError,
    NoPixelDataError,
    UnsupportedTransferSyntaxError,
    NotColourPhotographError,
    UnsupportedBitDepthError,
    MultiFrameError,
)

_ERROR_CLASSES = [
    "EmptyInputError",
    "UnsupportedFormatError",
    "DecodeError",
    "InputTooLargeError",
    "ImageTooLargeError",
    "InvalidPixelsError",
    "ModelNotFoundError",
    "ModelCorruptError",
    "ChecksumMismatchError",
    "MetadataMismatchError",
    "InferenceError",
    "ConfigError",
    "ImageReadError",
    "NoClassMapsError",
    "ClassNotInModelError",
    "NoPixelDataError",
    "UnsupportedTransferSyntaxError",
    "NotColourPhotographError",
    "UnsupportedBitDepthError",
    "MultiFrameError",
]
# END generated

__all__ = [
    "DICOM_FIELDS",
    "DISCLAIMER",
    "DEFAULT_MODEL",
    "LESION_CLASSES",
    "Classifier",
    "Explanation",
    "LesionClass",
    "Prediction",
    "preferred_batch_size",
    "read_metadata",
    "SkinLesionError",
    "InputError",
    "ModelError",
    *_ERROR_CLASSES,
    "__version__",
]

#: The model shipped inside this package (manifest path), used when ``Classifier(model=None)``.
DEFAULT_MODEL: Path = Path(__file__).resolve().parent / "models" / _SHIPPED_MODEL


class LesionClass(str, enum.Enum):
    """A lesion category, valued by its ISIC code (``LesionClass("MEL")``, ``LesionClass.MEL == "MEL"``).

    The eight diagnoses are in ISIC code order; ``UNK`` is the abstention and never has a
    probability.
    """

    # BEGIN generated from the core's LesionClass table by tests/test_skinlesion.py
    AK = "AK"  # Actinic keratosis
    BCC = "BCC"  # Basal cell carcinoma
    BKL = "BKL"  # Benign keratosis
    DF = "DF"  # Dermatofibroma
    MEL = "MEL"  # Melanoma
    NV = "NV"  # Melanocytic nevi
    SCC = "SCC"  # Squamous cell carcinoma
    VASC = "VASC"  # Vascular lesion
    UNK = "UNK"  # Unknown
    # END generated

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
    def probability_column(self) -> str:
        """This class's probability column in every table the project writes, e.g.
        ``"probability_MEL"`` (bulk scoring's rows, the training CLI's CSVs)."""
        return _CLASS_INFO[self.value][2]

    @property
    def is_cancerous(self) -> bool:
        """True for melanoma, basal cell carcinoma and squamous cell carcinoma."""
        return self.malignancy == "cancerous"

    def __str__(self) -> str:
        return self.value


# Names and malignancy come from the Rust core, the single source of the taxonomy.
_CLASS_INFO = {code: (name, malignancy, column) for code, name, malignancy, column in _lesion_classes()}
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
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"bf16-checked"`` (bf16, with the
            answers close to a decision boundary re-run in fp32). ``"auto"`` runs the model's
            bf16 network, checked or not, where this CPU computes bfloat16 natively and its
            recorded agreement with fp32 meets the library's bar; ``"bf16"`` runs it wherever
            the model has one (slow where bfloat16 is emulated). The ``precision`` property
            says which runs.
        threads: CPU threads for inference and decoding; ``None`` for all available cores.
        max_pixels: Largest image accepted, in pixels (refused from the header, before decoding).
        max_bytes: Largest encoded image accepted, in bytes.

    Raises:
        ModelError: the model is missing, corrupt, or fails its checksum.
        ConfigError: the device cannot be used, or the precision is unknown or not offered.

    Thread-safe: one instance may classify from many threads at once.
    """

    def __init__(
        self,
        model: Union[str, "os.PathLike[str]", None] = None,
        *,
        device: str = "auto",
        precision: str = "auto",
        threads: Optional[int] = None,
        max_pixels: Optional[int] = None,
        max_bytes: Optional[int] = None,
    ) -> None:
        if model is None:
            model = DEFAULT_MODEL
        if not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a path or None, not {type(model).__name__}")
        for name, value in (("device", device), ("precision", precision)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, not {type(value).__name__}")
        for name, value in (("threads", threads), ("max_pixels", max_pixels), ("max_bytes", max_bytes)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self._native = _NativeClassifier(
            os.fspath(model), device, precision, threads, max_pixels, max_bytes
        )

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

    def explain(self, image: ImageLike, class_: Union[str, "LesionClass", None] = None) -> "Explanation":
        """Classifies one image and shows where the model looked for ``class_``.

        Args:
            image: as for :meth:`classify`.
            class_: the class to explain (an ISIC code such as ``"MEL"``, a display name, or a
                :class:`LesionClass`); ``None`` for the prediction's best guess.

        Raises:
            NoClassMapsError: the model was exported without class maps.
            ConfigError: the model was not trained on ``class_``.
            ValueError: ``class_`` names no lesion class.
            and the errors of :meth:`classify`.
        """
        if class_ is not None and not isinstance(class_, str):
            raise TypeError(f"class_ must be a str, a LesionClass or None, not {type(class_).__name__}")
        code = class_.value if isinstance(class_, LesionClass) else class_
        return Explanation(self._native.explain(_to_input(image), code))

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
    def precision(self) -> str:
        """The arithmetic the network runs in: ``"fp32"``, ``"bf16"`` or ``"bf16-checked"``."""
        return self._native.precision

    @property
    def threads(self) -> int:
        """CPU threads used for inference and decoding."""
        return self._native.threads

    def __repr__(self) -> str:
        meta = self.metadata
        return (
            f"Classifier(model={meta['name']!r} v{meta['version']}, "
            f"device={self.device!r}, precision={self.precision!r}, threads={self.threads})"
        )


class Explanation:
    """A prediction and where the model looked: a class activation map of one class.

    ``heatmap`` is in the original image's pixels, in [0, 1] (positive evidence for the class,
    the hottest region 1); ``class_map`` is the raw map at the network's resolution, whose mean
    plus ``bias`` is the class's logit. Research and education only: a heatmap shows what the
    network used, not what a dermatologist would, and is not a diagnosis.
    """

    def __init__(self, native: _NativeExplanation) -> None:
        self._native = native
        self.prediction: Prediction = native.prediction
        self.lesion_class: LesionClass = LesionClass(native.class_code)

    @property
    def heatmap(self) -> Any:
        """numpy ``float32`` array, height × width of the image, values in [0, 1]."""
        return _float_array(*self._native.heatmap())

    @property
    def class_map(self) -> Any:
        """numpy ``float32`` array at the network's resolution (e.g. 6×6), in logit units."""
        height, width, data, _ = self._native.class_map()
        return _float_array(height, width, data)

    @property
    def bias(self) -> float:
        """The classifier head's bias for the class: ``class_map.mean() + bias`` is its logit."""
        return self._native.class_map()[3]

    def overlay(self) -> Any:
        """The image with the heatmap blended over it, as a PIL image."""
        import io

        from PIL import Image

        return Image.open(io.BytesIO(self._native.overlay_png()))

    def _repr_html_(self) -> str:
        import base64

        def img(png: bytes, alt: str) -> str:
            data = base64.b64encode(png).decode("ascii")
            return f'<img src="data:image/png;base64,{data}" alt="{alt}" style="max-height:240px;margin-right:8px">'

        return (
            "<div><div>"
            + img(self._native.image_png(), "the image")
            + img(self._native.overlay_png(), f"where the model looked for {self.lesion_class.display_name}")
            + f"</div><small>Heatmap: evidence for {self.lesion_class.display_name} "
            f"({self.lesion_class.code})</small>"
            + self.prediction._repr_html_()
            + "</div>"
        )

    def __repr__(self) -> str:
        height, width, _ = self._native.heatmap()
        return f"Explanation(class={self.lesion_class.code!r}, heatmap={height}x{width}, prediction={self.prediction!r})"


def _float_array(height: int, width: int, data: bytes) -> Any:
    import numpy as np

    return np.frombuffer(data, dtype="<f4").reshape(height, width).copy()


def _to_input(image: Any) -> Any:
    """What the native classifier takes: a path, bytes, or ``Pixels``, from any accepted kind."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return image if isinstance(image, bytes) else bytes(image)
    # Only a program that imported numpy or PIL can pass their objects: no import here.
    numpy, pil = sys.modules.get("numpy"), sys.modules.get("PIL.Image")
    if pil is not None and isinstance(image, pil.Image):
        return _from_pil(image)
    if numpy is not None and isinstance(image, numpy.ndarray):  # subclasses too (np.memmap)
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
