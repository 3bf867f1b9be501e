//! `skinlesion._skinlesion`: the native half of the Python package. It translates between
//! Python objects and `skinlesion_core`; the public API (input dispatch for paths, bytes, numpy
//! arrays and PIL images, the default model) is `python/skinlesion/__init__.py`.
//!
//! Decoding and inference run with the GIL released, on borrowed buffers where Python allows
//! (bytes objects, C-contiguous uint8 buffers), so many Python threads can classify at once.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyDict, PyTuple};
use skinlesion_core::{
    Classifier, Device, Error, ImageInput, LesionClass, PixelFormat, Prediction, RawPixels,
};

create_exception!(
    skinlesion,
    SkinLesionError,
    PyException,
    "Base class of every error skinlesion raises."
);
create_exception!(
    skinlesion,
    InputError,
    SkinLesionError,
    "The image is at fault: empty, unsupported, corrupt, too large, or malformed pixels."
);
create_exception!(
    skinlesion,
    EmptyInputError,
    InputError,
    "The image has no bytes."
);
create_exception!(
    skinlesion,
    UnsupportedFormatError,
    InputError,
    "The bytes are not in a supported image format (JPEG, PNG, TIFF, BMP, WebP, GIF)."
);
create_exception!(
    skinlesion,
    DecodeError,
    InputError,
    "The image is corrupt or truncated."
);
create_exception!(
    skinlesion,
    InputTooLargeError,
    InputError,
    "The encoded image is larger than the classifier's byte limit (max_bytes)."
);
create_exception!(
    skinlesion,
    ImageTooLargeError,
    InputError,
    "The image has more pixels than the classifier's limit (max_pixels); refused before decoding."
);
create_exception!(
    skinlesion,
    InvalidPixelsError,
    InputError,
    "A pixel array whose shape, strides or size cannot be an image."
);
create_exception!(
    skinlesion,
    ModelError,
    SkinLesionError,
    "The model cannot be used: missing, corrupt, wrong checksum, or inconsistent metadata."
);
create_exception!(
    skinlesion,
    ModelNotFoundError,
    ModelError,
    "No model at the given path."
);
create_exception!(
    skinlesion,
    ModelCorruptError,
    ModelError,
    "The model or its metadata cannot be read or parsed."
);
create_exception!(
    skinlesion,
    ChecksumMismatchError,
    ModelError,
    "The weights file does not match the checksum in the model's metadata."
);
create_exception!(
    skinlesion,
    MetadataMismatchError,
    ModelError,
    "The model's metadata and its network disagree."
);
create_exception!(
    skinlesion,
    InferenceError,
    SkinLesionError,
    "The forward pass failed."
);
create_exception!(
    skinlesion,
    ConfigError,
    SkinLesionError,
    "An option cannot be used here (e.g. an unknown device, or CUDA without a GPU)."
);
create_exception!(
    skinlesion,
    ImageReadError,
    SkinLesionError,
    "An image file could not be read."
);

/// The Python exception for a core error, carrying the core's message.
fn to_py_err(e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::EmptyInput => EmptyInputError::new_err(message),
        Error::UnsupportedFormat(_) => UnsupportedFormatError::new_err(message),
        Error::Decode(_) => DecodeError::new_err(message),
        Error::InputTooLarge { .. } => InputTooLargeError::new_err(message),
        Error::ImageTooLarge { .. } => ImageTooLargeError::new_err(message),
        Error::InvalidPixels(_) => InvalidPixelsError::new_err(message),
        Error::ModelNotFound { .. } => ModelNotFoundError::new_err(message),
        Error::ModelCorrupt { .. } => ModelCorruptError::new_err(message),
        Error::ChecksumMismatch { .. } => ChecksumMismatchError::new_err(message),
        Error::MetadataMismatch(_) => MetadataMismatchError::new_err(message),
        Error::Inference(_) => InferenceError::new_err(message),
        Error::Config(_) => ConfigError::new_err(message),
        Error::Io { .. } => ImageReadError::new_err(message),
        _ => SkinLesionError::new_err(message),
    }
}

/// Parses a JSON text produced by serde into Python objects with Python's own `json`.
fn json_to_py(py: Python<'_>, json: &str) -> PyResult<Py<PyAny>> {
    Ok(py.import("json")?.call_method1("loads", (json,))?.unbind())
}

/// One classification.
///
/// The answer (`class_name`, `code`) is a trained class, or "Unknown" when the model abstains
/// because its calibrated confidence is below the model's threshold; `all_predictions` still
/// holds the calibrated probability of every class the model was trained on. Research and
/// education only: not a diagnosis.
#[pyclass(frozen, module = "skinlesion", name = "Prediction")]
struct PyPrediction {
    inner: Prediction,
}

#[pymethods]
impl PyPrediction {
    /// Display name of the answer, e.g. "Melanoma", or "Unknown".
    #[getter]
    fn class_name(&self) -> &'static str {
        self.inner.class().name()
    }

    /// ISIC code of the answer, e.g. "MEL", or "UNK".
    #[getter]
    fn code(&self) -> &'static str {
        self.inner.class().code()
    }

    /// True when the answer is melanoma, basal cell carcinoma or squamous cell carcinoma.
    #[getter]
    fn is_cancerous(&self) -> bool {
        self.inner.is_cancerous()
    }

    /// True when the model abstained (the answer is "Unknown").
    #[getter]
    fn is_unknown(&self) -> bool {
        self.inner.is_unknown()
    }

    /// Calibrated probability (0–1) of the model's chosen class.
    #[getter]
    fn confidence(&self) -> f32 {
        self.inner.confidence()
    }

    /// ISIC code of the trained class the model chose, also when the answer is "Unknown".
    #[getter]
    fn best_guess(&self) -> &'static str {
        self.inner.best_guess().code()
    }

    /// Display name → calibrated probability for every class the model was trained on.
    #[getter]
    fn all_predictions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (class, p) in self.inner.probabilities() {
            dict.set_item(class.name(), p)?;
        }
        Ok(dict)
    }

    /// The HTTP API's `prediction` object: class_name, is_cancerous, confidence,
    /// all_predictions.
    fn to_dict(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let json = serde_json::to_string(&self.inner)
            .map_err(|e| SkinLesionError::new_err(e.to_string()))?;
        json_to_py(py, &json)
    }

    fn __repr__(&self) -> String {
        let c = self.inner.class();
        let mut repr = format!(
            "Prediction(class_name='{}', code='{}', confidence={:.3}, is_cancerous={}",
            c.name(),
            c.code(),
            self.inner.confidence(),
            if c.is_cancerous() { "True" } else { "False" },
        );
        if self.inner.is_unknown() {
            repr += &format!(", best_guess='{}'", self.inner.best_guess().code());
        }
        repr + ")"
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyPrediction>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    /// A small table with a bar per class, for Jupyter.
    fn _repr_html_(&self) -> String {
        let answer = self.inner.class();
        let mut rows = String::new();
        for (class, p) in self.inner.probabilities() {
            let chosen = *class == self.inner.best_guess();
            rows += &format!(
                "<tr{}><td>{}</td><td><code>{}</code></td><td style=\"text-align:right\">{:.1}%</td>\
                 <td style=\"width:12em\"><div style=\"background:{};height:0.8em;width:{:.1}%\"></div></td></tr>",
                if chosen { " style=\"font-weight:bold\"" } else { "" },
                class.name(),
                class.code(),
                100.0 * p,
                if class.is_cancerous() { "#c0392b" } else { "#2e86c1" },
                100.0 * p,
            );
        }
        let headline = if self.inner.is_unknown() {
            format!(
                "Unknown: no confident answer (best guess {}, {:.1}%)",
                self.inner.best_guess().name(),
                100.0 * self.inner.confidence()
            )
        } else {
            format!(
                "{} ({:.1}%){}",
                answer.name(),
                100.0 * self.inner.confidence(),
                if answer.is_cancerous() {
                    ", cancerous class"
                } else {
                    ""
                }
            )
        };
        format!(
            "<div><b>{headline}</b><table>{rows}</table>\
             <small>{}</small></div>",
            skinlesion_core::DISCLAIMER
        )
    }
}

/// An input held by Rust while the GIL is released.
enum OwnedInput {
    Encoded(PyBackedBytes),
    File(PathBuf),
    Pixels {
        buffer: PyBuffer<u8>,
        width: u32,
        height: u32,
        stride: usize,
        format: PixelFormat,
    },
}

impl OwnedInput {
    /// Reads one tagged tuple from the Python layer: ("encoded", bytes), ("file", path) or
    /// ("pixels", buffer, width, height, stride, channels).
    fn extract(item: &Bound<'_, PyAny>) -> PyResult<Self> {
        let tuple = item.cast::<PyTuple>()?;
        let kind: String = tuple.get_item(0)?.extract()?;
        match kind.as_str() {
            "encoded" => Ok(Self::Encoded(tuple.get_item(1)?.extract()?)),
            "file" => Ok(Self::File(tuple.get_item(1)?.extract()?)),
            "pixels" => {
                let buffer = PyBuffer::<u8>::get(&tuple.get_item(1)?)?;
                if !buffer.is_c_contiguous() {
                    return Err(InvalidPixelsError::new_err(
                        "the pixel buffer must be C-contiguous",
                    ));
                }
                let format = match tuple.get_item(5)?.extract::<usize>()? {
                    1 => PixelFormat::Gray8,
                    3 => PixelFormat::Rgb8,
                    4 => PixelFormat::Rgba8,
                    n => {
                        return Err(InvalidPixelsError::new_err(format!(
                            "{n} channels: expected 1 (grey), 3 (RGB) or 4 (RGBA)"
                        )))
                    }
                };
                Ok(Self::Pixels {
                    buffer,
                    width: tuple.get_item(2)?.extract()?,
                    height: tuple.get_item(3)?.extract()?,
                    stride: tuple.get_item(4)?.extract()?,
                    format,
                })
            }
            other => Err(PyTypeError::new_err(format!(
                "unknown input kind {other:?}"
            ))),
        }
    }

    fn as_input(&self) -> ImageInput<'_> {
        match self {
            Self::Encoded(bytes) => ImageInput::Encoded(bytes),
            Self::File(path) => ImageInput::File(path),
            Self::Pixels {
                buffer,
                width,
                height,
                stride,
                format,
            } => {
                // SAFETY: the buffer export is held (and so the memory kept alive) for as long
                // as `self`, and it is C-contiguous, so `len_bytes` bytes from `buf_ptr` are
                // readable. Python code mutating the array from another thread meanwhile
                // would race, as with any buffer consumer.
                let data = unsafe {
                    std::slice::from_raw_parts(buffer.buf_ptr() as *const u8, buffer.len_bytes())
                };
                ImageInput::Pixels(RawPixels {
                    data,
                    width: *width,
                    height: *height,
                    stride: *stride,
                    format: *format,
                })
            }
        }
    }
}

/// The loaded model; `skinlesion.Classifier` wraps it. Immutable and thread-safe.
#[pyclass(frozen, module = "skinlesion._skinlesion")]
struct NativeClassifier {
    inner: Arc<Classifier>,
}

#[pymethods]
impl NativeClassifier {
    #[new]
    #[pyo3(signature = (model, device, threads=None, max_pixels=None, max_bytes=None))]
    fn new(
        py: Python<'_>,
        model: PathBuf,
        device: &str,
        threads: Option<usize>,
        max_pixels: Option<u64>,
        max_bytes: Option<u64>,
    ) -> PyResult<Self> {
        let device: Device = device.parse().map_err(to_py_err)?;
        let mut builder = Classifier::builder(&model).device(device);
        if let Some(threads) = threads {
            builder = builder.threads(threads);
        }
        if let Some(max_pixels) = max_pixels {
            builder = builder.max_pixels(max_pixels);
        }
        if let Some(max_bytes) = max_bytes {
            builder = builder.max_bytes(max_bytes);
        }
        let classifier = py.detach(|| builder.build()).map_err(to_py_err)?;
        Ok(Self {
            inner: Arc::new(classifier),
        })
    }

    /// Classifies one tagged input.
    fn classify(&self, py: Python<'_>, input: &Bound<'_, PyAny>) -> PyResult<PyPrediction> {
        let owned = OwnedInput::extract(input)?;
        let inner = py
            .detach(|| self.inner.classify_input(owned.as_input()))
            .map_err(to_py_err)?;
        Ok(PyPrediction { inner })
    }

    /// Classifies tagged inputs with one forward pass: a Prediction or an exception object per
    /// input, in order.
    fn classify_many(
        &self,
        py: Python<'_>,
        inputs: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Py<PyAny>>> {
        let owned = inputs
            .iter()
            .map(OwnedInput::extract)
            .collect::<PyResult<Vec<_>>>()?;
        let results = py.detach(|| {
            let inputs: Vec<ImageInput<'_>> = owned.iter().map(OwnedInput::as_input).collect();
            self.inner.classify_inputs(&inputs)
        });
        results
            .into_iter()
            .map(|r| match r {
                Ok(inner) => Ok(Py::new(py, PyPrediction { inner })?.into_any()),
                Err(e) => Ok(to_py_err(e).into_value(py).into_any()),
            })
            .collect()
    }

    /// The model's manifest as a dict (name, version, classes, input, calibration, weights,
    /// provenance).
    #[getter]
    fn metadata(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let json = serde_json::to_string(self.inner.metadata())
            .map_err(|e| SkinLesionError::new_err(e.to_string()))?;
        json_to_py(py, &json)
    }

    /// ISIC codes of the classes the model was trained on, in output order.
    #[getter]
    fn classes(&self) -> Vec<&'static str> {
        self.inner.classes().iter().map(|c| c.code()).collect()
    }

    #[getter]
    fn model_path(&self) -> PathBuf {
        self.inner.manifest_path().to_path_buf()
    }

    #[getter]
    fn device(&self) -> String {
        format!("{:?}", self.inner.device()).to_lowercase()
    }

    #[getter]
    fn threads(&self) -> usize {
        self.inner.threads()
    }

    #[getter]
    fn max_pixels(&self) -> u64 {
        self.inner.decode_limits().max_pixels
    }

    #[getter]
    fn max_bytes(&self) -> u64 {
        self.inner.decode_limits().max_bytes
    }
}

/// Every lesion class as (code, display name, malignancy), the eight diagnoses in ISIC code
/// order, then Unknown.
#[pyfunction]
fn lesion_classes() -> Vec<(&'static str, &'static str, String)> {
    LesionClass::ALL
        .iter()
        .map(|c| {
            let malignancy = serde_json::to_value(c.malignancy())
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            (c.code(), c.name(), malignancy)
        })
        .collect()
}

#[pymodule]
fn _skinlesion(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<NativeClassifier>()?;
    m.add_class::<PyPrediction>()?;
    m.add_function(wrap_pyfunction!(lesion_classes, m)?)?;
    m.add("DISCLAIMER", skinlesion_core::DISCLAIMER)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    for (name, ty) in [
        ("SkinLesionError", py.get_type::<SkinLesionError>()),
        ("InputError", py.get_type::<InputError>()),
        ("EmptyInputError", py.get_type::<EmptyInputError>()),
        (
            "UnsupportedFormatError",
            py.get_type::<UnsupportedFormatError>(),
        ),
        ("DecodeError", py.get_type::<DecodeError>()),
        ("InputTooLargeError", py.get_type::<InputTooLargeError>()),
        ("ImageTooLargeError", py.get_type::<ImageTooLargeError>()),
        ("InvalidPixelsError", py.get_type::<InvalidPixelsError>()),
        ("ModelError", py.get_type::<ModelError>()),
        ("ModelNotFoundError", py.get_type::<ModelNotFoundError>()),
        ("ModelCorruptError", py.get_type::<ModelCorruptError>()),
        (
            "ChecksumMismatchError",
            py.get_type::<ChecksumMismatchError>(),
        ),
        (
            "MetadataMismatchError",
            py.get_type::<MetadataMismatchError>(),
        ),
        ("InferenceError", py.get_type::<InferenceError>()),
        ("ConfigError", py.get_type::<ConfigError>()),
        ("ImageReadError", py.get_type::<ImageReadError>()),
    ] {
        m.add(name, ty)?;
    }
    Ok(())
}
