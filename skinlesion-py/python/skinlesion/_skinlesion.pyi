"""Type stubs of the native module ``skinlesion._skinlesion`` (re-exported by ``skinlesion``)."""

from os import PathLike
from typing import Any, Dict, List, Optional, Tuple, Union

__version__: str
DISCLAIMER: str
#: The keys of ``Prediction.dicom``, in order (the core's one list).
DICOM_FIELDS: Tuple[str, ...]
SHIPPED_MODEL: str

class Prediction:
    """One classification; the answer is "Unknown" when the model abstains."""

    @property
    def class_name(self) -> str:
        """Display name of the answer, e.g. "Melanoma", or "Unknown"."""
    @property
    def code(self) -> str:
        """ISIC code of the answer, e.g. "MEL", or "UNK"."""
    @property
    def is_cancerous(self) -> bool:
        """True when the answer is melanoma, basal cell carcinoma or squamous cell carcinoma."""
    @property
    def is_unknown(self) -> bool:
        """True when the model abstained."""
    @property
    def confidence(self) -> float:
        """Calibrated probability (0–1) of the model's chosen class."""
    @property
    def best_guess(self) -> str:
        """ISIC code of the trained class the model chose, also when the answer is Unknown."""
    @property
    def unknown_reason(self) -> Optional[str]:
        """Why the answer is Unknown: "not_dermoscopy" or "low_confidence"; None otherwise."""
    @property
    def ood_score(self) -> Optional[float]:
        """The gate's out-of-distribution score (larger: less like dermoscopy); None without one."""
    @property
    def dicom(self) -> Optional[Dict[str, Optional[str]]]:
        """For a DICOM file's image: sop_class_uid, sop_class, modality, transfer_syntax_uid,
        body_site, laterality, patient_age, patient_sex (never an identifier); None otherwise."""
    @property
    def all_predictions(self) -> Dict[str, float]:
        """Display name → calibrated probability for every class the model was trained on."""
    def to_dict(self) -> Dict[str, Any]:
        """The HTTP API's ``prediction`` object."""
    def _repr_html_(self) -> str:
        """A small table with a bar per class, for Jupyter."""
    def __eq__(self, other: object) -> bool: ...

class Pixels:
    """Raw interleaved 8-bit pixels (grey, RGB or RGBA) in any C-contiguous buffer."""

    def __new__(cls, data: Any, width: int, height: int, stride: int, channels: int) -> Pixels: ...

ImageArg = Union[str, PathLike[str], bytes, bytearray, Pixels]

class NativeClassifier:
    """The loaded model; use ``skinlesion.Classifier``."""

    def __new__(
        cls,
        model: Union[str, PathLike[str]],
        device: str,
        precision: str,
        threads: Optional[int] = None,
        max_pixels: Optional[int] = None,
        max_bytes: Optional[int] = None,
    ) -> NativeClassifier: ...
    def classify(self, input: ImageArg) -> Prediction:
        """Classifies one input."""
    def classify_many(self, inputs: List[ImageArg]) -> List[Union[Prediction, SkinLesionError]]:
        """Classifies inputs with one forward pass."""
    def explain(self, input: ImageArg, class_: Optional[str] = None) -> NativeExplanation:
        """Classifies one input and explains a class (None: the best guess)."""
    @property
    def metadata(self) -> Dict[str, Any]: ...
    @property
    def classes(self) -> List[str]: ...
    @property
    def model_path(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def max_pixels(self) -> int: ...
    @property
    def max_bytes(self) -> int: ...

def read_metadata(path: Union[str, "PathLike[str]"]) -> Dict[str, Any]:
    """A model's manifest (as ``Classifier.metadata`` gives it), read and checked without
    loading the network. Raises the model's error (e.g. ``ModelNotFoundError``)."""
    ...

def parse_precision(precision: str) -> str:
    """The canonical name of ``auto``, ``fp32``, ``bf16`` or ``bf16-checked``; ConfigError for another."""
def preferred_batch_size(device: str) -> int:
    """Images per forward pass that classify fastest per image on ``device`` (1 on a CPU)."""

def lesion_classes() -> List[Tuple[str, str, str, str]]:
    """Every lesion class as (code, display name, malignancy, probability column)."""

def error_kinds() -> List[Tuple[str, bool, bool, type]]:
    """Every core error kind as (name, is_input_error, is_model_error, exception class)."""

class NativeExplanation:
    """The native half of ``skinlesion.Explanation``."""

    @property
    def prediction(self) -> Prediction: ...
    @property
    def class_code(self) -> str: ...
    def heatmap(self) -> Tuple[int, int, bytes]: ...
    def class_map(self) -> Tuple[int, int, bytes, float]: ...
    def image_png(self) -> bytes: ...
    def overlay_png(self) -> bytes: ...

class SkinLesionError(Exception):
    """Base class of every error skinlesion raises."""

    kind: str
    """The core's name of the error kind (``"decode"``), set on each kind's class."""

class InputError(SkinLesionError):
    """The image is at fault."""

class ModelError(SkinLesionError):
    """The model cannot be used."""

# BEGIN generated from the core's ErrorKind table by tests/test_skinlesion.py
class EmptyInputError(InputError):
    """The image has no bytes."""

class UnsupportedFormatError(InputError):
    """The bytes are not in a supported image format (JPEG, PNG, TIFF, BMP, WebP, GIF, DICOM)."""

class DecodeError(InputError):
    """The image is corrupt or truncated."""

class InputTooLargeError(InputError):
    """The encoded image is larger than the configured byte limit (max_bytes)."""

class ImageTooLargeError(InputError):
    """The image has more pixels than the configured limit (max_pixels); refused before decoding."""

class InvalidPixelsError(InputError):
    """Raw pixels whose width, height, stride, layout and buffer length disagree."""

class ModelNotFoundError(ModelError):
    """No model at the given path."""

class ModelCorruptError(ModelError):
    """The model or its metadata cannot be read or parsed."""

class ChecksumMismatchError(ModelError):
    """The weights file does not match the checksum in the model's metadata."""

class MetadataMismatchError(ModelError):
    """The model's metadata and its network disagree."""

class InferenceError(SkinLesionError):
    """The forward pass failed."""

class ConfigError(SkinLesionError):
    """An option cannot be used here (e.g. an unknown device, or CUDA without a GPU)."""

class ImageReadError(SkinLesionError):
    """A file could not be read."""

class NoClassMapsError(ModelError):
    """The model was exported without class activation maps: it classifies but cannot explain."""

class ClassNotInModelError(SkinLesionError):
    """A class was asked for that the model was not trained on."""

class NoPixelDataError(InputError):
    """The DICOM object holds no image (e.g. a structured report)."""

class UnsupportedTransferSyntaxError(InputError):
    """The DICOM pixels are encoded in a transfer syntax this build cannot decode (e.g. JPEG-LS)."""

class NotColourPhotographError(InputError):
    """The DICOM image is not a colour photograph (monochrome or palette; e.g. an X-ray)."""

class UnsupportedBitDepthError(InputError):
    """The DICOM image's samples are not 8 bits."""

class MultiFrameError(InputError):
    """The DICOM object holds several frames; one picture is classified at a time."""
# END generated
