//! `skinlesion._skinlesion`: the native half of the Python package. It translates between
//! Python objects and `skinlesion_core`; the public API (input dispatch for paths, bytes, numpy
//! arrays and PIL images, the default model) is `python/skinlesion/__init__.py`.
//!
//! Inputs cross as typed values (`OwnedInput`: bytes, a path, or a `Pixels` object the Python
//! layer builds from numpy or PIL), so anything else is a `TypeError` naming what was passed.
//! Every core error kind has one exception class, made from the core's table in a loop
//! (`kind_classes`) and registered by the module.
//!
//! Decoding and inference run with the GIL released, on borrowed buffers where Python allows
//! (bytes objects, C-contiguous uint8 buffers), so many Python threads can classify at once.

use std::ffi::CString;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use skinlesion_core::{
    Classifier, Device, Error, ErrorFamily, ErrorKind, ImageInput, LesionClass, PixelFormat,
    Precision, Prediction, RawPixels, UnknownReason,
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
    ModelError,
    SkinLesionError,
    "The model cannot be used: missing, corrupt, wrong checksum, or inconsistent metadata."
);

/// One exception class per core error kind, made from the core's table when the module loads:
/// named and documented there, a subclass of `InputError`, `ModelError` or `SkinLesionError`
/// by the kind's family. A new kind in the core is a new class here with no edit.
fn kind_classes(py: Python<'_>) -> &[(ErrorKind, Py<PyType>)] {
    static CLASSES: PyOnceLock<Vec<(ErrorKind, Py<PyType>)>> = PyOnceLock::new();
    CLASSES.get_or_init(py, || {
        ErrorKind::ALL
            .iter()
            .map(|&kind| {
                let base = match kind.family() {
                    ErrorFamily::Input => py.get_type::<InputError>(),
                    ErrorFamily::Model => py.get_type::<ModelError>(),
                    _ => py.get_type::<SkinLesionError>(),
                };
                let name = format!("skinlesion.{}", kind.python_exception());
                let name = CString::new(name).expect("no NUL in the table");
                let doc = CString::new(kind.explanation()).expect("no NUL in the table");
                let class = PyErr::new_type(py, &name, Some(&doc), Some(&base), None)
                    .expect("Python makes an exception class");
                // The core's name of the kind ("decode"), as logs and tables write it.
                (class.bind(py).setattr("kind", kind.name()))
                    .expect("an exception class takes attributes");
                (kind, class)
            })
            .collect()
    })
}

/// The Python exception class of a core error kind.
fn exception_type(py: Python<'_>, kind: ErrorKind) -> Bound<'_, PyType> {
    let classes = kind_classes(py);
    let found = classes.iter().find(|(k, _)| *k == kind);
    found.map_or_else(
        || py.get_type::<SkinLesionError>(),
        |(_, c)| c.bind(py).clone(),
    )
}

/// The Python exception for a core error, carrying the core's message.
fn to_py_err(e: Error) -> PyErr {
    Python::attach(|py| PyErr::from_type(exception_type(py, e.kind()), e.to_string()))
}

/// Every core error kind as (name, is_input_error, is_model_error, exception class,
/// explanation), so the Python tests can check the classes and generate the stubs.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn error_kinds(py: Python<'_>) -> Vec<(&'static str, bool, bool, Bound<'_, PyType>, &'static str)> {
    ErrorKind::ALL
        .iter()
        .map(|&k| {
            (
                k.name(),
                k.is_input_error(),
                k.is_model_error(),
                exception_type(py, k),
                k.explanation(),
            )
        })
        .collect()
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

    /// Why the answer is "Unknown": "not_dermoscopy" (the image does not look like dermoscopy
    /// of a skin lesion; its lesion probabilities mean nothing) or "low_confidence"; None when
    /// the model answered.
    #[getter]
    fn unknown_reason(&self) -> Option<&'static str> {
        self.inner.unknown_reason().map(|r| r.code())
    }

    /// The model's out-of-distribution score (larger is less like its training dermoscopy), or
    /// None for a model without a gate.
    #[getter]
    fn ood_score(&self) -> Option<f32> {
        self.inner.ood_score()
    }

    /// For an image read from a DICOM file, what the file says about it: ``sop_class_uid``,
    /// ``sop_class``, ``modality``, ``transfer_syntax_uid``, ``body_site``, ``laterality``,
    /// ``patient_age``, ``patient_sex`` (None where the file is silent); never a name, ID or
    /// other identifier. None for other images.
    #[getter]
    fn dicom(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some(dicom) = self.inner.dicom() else {
            return Ok(None);
        };
        let json =
            serde_json::to_string(dicom).map_err(|e| SkinLesionError::new_err(e.to_string()))?;
        json_to_py(py, &json).map(Some)
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
    /// all_predictions, unknown_reason, ood_score, and `dicom` for a DICOM file's image.
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
        if let Some(reason) = self.inner.unknown_reason() {
            repr += &format!(
                ", unknown_reason='{}', best_guess='{}'",
                reason.code(),
                self.inner.best_guess().code()
            );
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
        let headline = if self.inner.unknown_reason() == Some(UnknownReason::NotDermoscopy) {
            // Lesion probabilities of such an image mean nothing: no table.
            rows.clear();
            format!("Unknown: {}", UnknownReason::NotDermoscopy.explanation())
        } else if self.inner.is_unknown() {
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

/// Raw interleaved 8-bit pixels from Python: the Python layer makes one from a numpy array
/// or a PIL image. Holds the buffer export, so the memory stays alive and unmoved.
#[pyclass(frozen, module = "skinlesion._skinlesion", name = "Pixels")]
struct PyPixels {
    buffer: PyBuffer<u8>,
    width: u32,
    height: u32,
    stride: usize,
    format: PixelFormat,
}

#[pymethods]
impl PyPixels {
    #[new]
    fn new(
        data: &Bound<'_, PyAny>,
        width: u32,
        height: u32,
        stride: usize,
        channels: usize,
    ) -> PyResult<Self> {
        let buffer = PyBuffer::<u8>::get(data)?;
        if !buffer.is_c_contiguous() {
            return Err(to_py_err(Error::InvalidPixels(
                "the pixel buffer must be C-contiguous".into(),
            )));
        }
        let format = match channels {
            1 => PixelFormat::Gray8,
            3 => PixelFormat::Rgb8,
            4 => PixelFormat::Rgba8,
            n => {
                return Err(to_py_err(Error::InvalidPixels(format!(
                    "{n} channels: expected 1 (grey), 3 (RGB) or 4 (RGBA)"
                ))))
            }
        };
        Ok(Self {
            buffer,
            width,
            height,
            stride,
            format,
        })
    }
}

impl PyPixels {
    fn as_input(&self) -> ImageInput<'_> {
        // SAFETY: the buffer export is held (and so the memory kept alive) for as long as
        // `self`, and it is C-contiguous, so `len_bytes` bytes from `buf_ptr` are readable.
        // Python code mutating the array from another thread meanwhile would race, as with
        // any buffer consumer.
        let data = unsafe {
            std::slice::from_raw_parts(self.buffer.buf_ptr() as *const u8, self.buffer.len_bytes())
        };
        ImageInput::Pixels(RawPixels {
            data,
            width: self.width,
            height: self.height,
            stride: self.stride,
            format: self.format,
        })
    }
}

/// One image argument, held by Rust while the GIL is released: encoded bytes, a file path, or
/// [`PyPixels`].
enum OwnedInput {
    Encoded(PyBackedBytes),
    File(PathBuf),
    Pixels(Py<PyPixels>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for OwnedInput {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(pixels) = obj.cast::<PyPixels>() {
            return Ok(Self::Pixels(pixels.to_owned().unbind()));
        }
        if let Ok(bytes) = obj.extract::<PyBackedBytes>() {
            return Ok(Self::Encoded(bytes));
        }
        if let Ok(path) = obj.extract::<PathBuf>() {
            return Ok(Self::File(path));
        }
        let ty = obj.get_type();
        Err(PyTypeError::new_err(format!(
            "an image must be encoded bytes, a path or skinlesion Pixels, not {}",
            ty.fully_qualified_name()?
        )))
    }
}

impl OwnedInput {
    fn as_input(&self) -> ImageInput<'_> {
        match self {
            Self::Encoded(bytes) => ImageInput::Encoded(bytes),
            Self::File(path) => ImageInput::File(path),
            Self::Pixels(pixels) => pixels.get().as_input(),
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
    #[pyo3(signature = (model, device, precision, threads=None, max_pixels=None, max_bytes=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: PathBuf,
        device: &str,
        precision: &str,
        threads: Option<usize>,
        max_pixels: Option<u64>,
        max_bytes: Option<u64>,
    ) -> PyResult<Self> {
        let device: Device = device.parse().map_err(to_py_err)?;
        let precision: Precision = precision.parse().map_err(to_py_err)?;
        let mut builder = Classifier::builder(&model)
            .device(device)
            .precision(precision);
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

    /// Classifies one input.
    fn classify(&self, py: Python<'_>, owned: OwnedInput) -> PyResult<PyPrediction> {
        let inner = py
            .detach(|| self.inner.classify(owned.as_input()))
            .map_err(to_py_err)?;
        Ok(PyPrediction { inner })
    }

    /// Classifies inputs with one forward pass: a Prediction or an exception object per
    /// input, in order.
    fn classify_many(&self, py: Python<'_>, owned: Vec<OwnedInput>) -> PyResult<Vec<Py<PyAny>>> {
        let results = py.detach(|| {
            let inputs: Vec<ImageInput<'_>> = owned.iter().map(OwnedInput::as_input).collect();
            self.inner.classify_batch(&inputs)
        });
        results
            .into_iter()
            .map(|r| match r {
                Ok(inner) => Ok(Py::new(py, PyPrediction { inner })?.into_any()),
                Err(e) => Ok(to_py_err(e).into_value(py).into_any()),
            })
            .collect()
    }

    /// Classifies one input and explains `class_` (an ISIC code or name; None: the best
    /// guess).
    #[pyo3(signature = (owned, class_=None))]
    fn explain(
        &self,
        py: Python<'_>,
        owned: OwnedInput,
        class_: Option<&str>,
    ) -> PyResult<PyExplanation> {
        let class = class_.map(parse_class).transpose()?;
        py.detach(|| {
            let image = self.inner.decode(owned.as_input())?.into_owned();
            let explanation = self.inner.explain(&image, class)?;
            Ok(PyExplanation { explanation, image })
        })
        .map_err(to_py_err)
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
        self.inner.device().to_string()
    }

    /// `"fp32"` or `"bf16"`: the arithmetic the network runs in.
    #[getter]
    fn precision(&self) -> String {
        self.inner.precision().to_string()
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

/// A class from its ISIC code or display name, else a ValueError naming the codes.
fn parse_class(text: &str) -> PyResult<LesionClass> {
    LesionClass::from_code_or_name(text).ok_or_else(|| {
        let codes: Vec<_> = LesionClass::ALL.iter().map(|c| c.code()).collect();
        PyValueError::new_err(format!(
            "unknown lesion class {text:?}: use one of {}",
            codes.join(", ")
        ))
    })
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The native half of `skinlesion.Explanation`: the core's explanation and the decoded image
/// it explains (for the overlay).
#[pyclass(frozen, module = "skinlesion._skinlesion", name = "NativeExplanation")]
struct PyExplanation {
    explanation: skinlesion_core::Explanation,
    image: skinlesion_core::image::DynamicImage,
}

#[pymethods]
impl PyExplanation {
    #[getter]
    fn prediction(&self) -> PyPrediction {
        PyPrediction {
            inner: self.explanation.prediction().clone(),
        }
    }

    /// ISIC code of the class explained.
    #[getter]
    fn class_code(&self) -> &'static str {
        self.explanation.class().code()
    }

    /// (height, width, little-endian f32 bytes) of the heatmap over the image.
    fn heatmap(&self) -> (u32, u32, Vec<u8>) {
        let h = self.explanation.heatmap();
        (h.height(), h.width(), f32_bytes(h.values()))
    }

    /// (height, width, little-endian f32 bytes, bias) of the raw class map.
    fn class_map(&self) -> (u32, u32, Vec<u8>, f32) {
        let m = self.explanation.class_map();
        (m.height(), m.width(), f32_bytes(m.values()), m.bias())
    }

    fn image_png(&self) -> PyResult<Vec<u8>> {
        let mut png = std::io::Cursor::new(Vec::new());
        (self.image.to_rgb8())
            .write_to(&mut png, skinlesion_core::image::ImageFormat::Png)
            .map_err(|e| {
                pyo3::exceptions::PyRuntimeError::new_err(format!("PNG encoding failed: {e}"))
            })?;
        Ok(png.into_inner())
    }

    fn overlay_png(&self) -> Vec<u8> {
        self.explanation.heatmap().overlay_png(&self.image)
    }
}

/// Every lesion class as (code, display name, malignancy, probability column), the eight
/// diagnoses in ISIC code order, then Unknown.
#[pyfunction]
fn lesion_classes() -> Vec<(&'static str, &'static str, String, String)> {
    LesionClass::ALL
        .iter()
        .map(|c| {
            let malignancy = serde_json::to_value(c.malignancy())
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            (c.code(), c.name(), malignancy, c.probability_column())
        })
        .collect()
}

/// A model's manifest as a dict, read and checked without loading the network.
#[pyfunction]
fn read_metadata(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Py<PyAny>> {
    let metadata = py
        .detach(|| skinlesion_core::ModelMetadata::read(&path))
        .map_err(to_py_err)?;
    let json =
        serde_json::to_string(&metadata).map_err(|e| SkinLesionError::new_err(e.to_string()))?;
    json_to_py(py, &json)
}

/// The canonical name of a precision (`auto`, `fp32`, `bf16`, `bf16-checked`); a ConfigError
/// for another: bulk scoring checks its option with the core's own parser before any job
/// starts.
#[pyfunction]
fn parse_precision(precision: &str) -> PyResult<String> {
    let precision: Precision = precision.parse().map_err(to_py_err)?;
    Ok(precision.to_string())
}

/// Images per forward pass that classify fastest per image on `device` ("cpu", "cuda",
/// "cuda:N", "auto"): the core's rule, which bulk scoring uses when not told.
#[pyfunction]
fn preferred_batch_size(device: &str) -> PyResult<usize> {
    let device: Device = device.parse().map_err(to_py_err)?;
    Ok(device.preferred_batch_size())
}

#[pymodule]
fn _skinlesion(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<NativeClassifier>()?;
    m.add_class::<PyPrediction>()?;
    m.add_class::<PyExplanation>()?;
    m.add_function(wrap_pyfunction!(lesion_classes, m)?)?;
    m.add_function(wrap_pyfunction!(preferred_batch_size, m)?)?;
    m.add_function(wrap_pyfunction!(parse_precision, m)?)?;
    m.add_function(wrap_pyfunction!(read_metadata, m)?)?;
    m.add("DISCLAIMER", skinlesion_core::DISCLAIMER)?;
    let dicom_fields = pyo3::types::PyTuple::new(m.py(), skinlesion_core::DicomInfo::FIELDS)?;
    m.add("DICOM_FIELDS", dicom_fields)?;
    m.add("SHIPPED_MODEL", skinlesion_core::SHIPPED_MODEL)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<PyPixels>()?;
    m.add_function(wrap_pyfunction!(error_kinds, m)?)?;
    // The base classes, then one class per core error kind.
    for ty in [
        py.get_type::<SkinLesionError>(),
        py.get_type::<InputError>(),
        py.get_type::<ModelError>(),
    ] {
        m.add(ty.name()?, ty)?;
    }
    for (kind, class) in kind_classes(py) {
        m.add(kind.python_exception(), class.bind(py))?;
    }
    Ok(())
}
