//! # skinlesion C API
//!
//! Classifies dermoscopic images of skin lesions into the ISIC 2019 categories from C and C++.
//! **Research and education only: not a medical device, it does not diagnose.**
//!
//! Conventions (modelled on rustls-ffi):
//! - Opaque handles (`skinlesion_options`, `skinlesion_classifier`), each made by one `*_new`
//!   and released by one `*_free`; `*_free(NULL)` does nothing.
//! - Every fallible function returns a `skinlesion_status`; on failure,
//!   `skinlesion_last_error_message()` describes it (per thread).
//!   Statuses 3–15 and 17 onwards are the core's error kinds (`skinlesion_core::ErrorKind`,
//!   the table `src/status.rs` is generated from), with their descriptions; 0–2 and 16 are
//!   this API's own.
//! - Results are plain structs (`skinlesion_prediction`) written into caller-owned memory:
//!   nothing in a result is ever freed by the caller.
//! - Null pointers, zero lengths, wrong strides and undecodable data are errors, never crashes;
//!   no Rust panic crosses the boundary (it becomes `SKINLESION_STATUS_PANIC`).
//! - Thread safety: one `skinlesion_classifier` may be used from many threads at once; an
//!   options handle must not be modified from two threads at once.
//!
//! Strings returned as `const char *` are static unless documented otherwise.
#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::OnceLock;

use skinlesion_core::{
    Classifier, Device, Error, ErrorKind, ImageInput, LesionClass, PixelFormat, Prediction,
    RawPixels, UnknownReason,
};

/// Number of diagnostic classes a model can be trained on (every class but UNKNOWN); the length
/// of `skinlesion_prediction.probabilities`.
pub const SKINLESION_DIAGNOSIS_COUNT: usize = 8;

mod status;
pub use status::skinlesion_status;

impl skinlesion_status {
    fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| *s as u32 == code)
    }
}

/// The core's error kinds carry their own codes; the statuses are generated from them.
impl From<ErrorKind> for skinlesion_status {
    fn from(kind: ErrorKind) -> Self {
        // A kind newer than this table is still a failure (the unit test keeps them in step).
        Self::from_code(kind.code()).unwrap_or(Self::InferenceError)
    }
}

mod lesion_class;
pub use lesion_class::skinlesion_lesion_class;

impl From<LesionClass> for skinlesion_lesion_class {
    fn from(class: LesionClass) -> Self {
        Self::ALL[class_index(class)]
    }
}

/// Position of a class in `LesionClass::ALL`, which is the C enum's numbering.
fn class_index(class: LesionClass) -> usize {
    LesionClass::ALL
        .iter()
        .position(|c| *c == class)
        .expect("every class is in ALL")
}

/// Why a prediction is UNKNOWN (`skinlesion_prediction.unknown_reason`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum skinlesion_unknown_reason {
    /// The model answered a lesion class.
    None = 0,
    /// The image does not look like dermoscopy of a skin lesion (the model's out-of-distribution
    /// gate refused it): its probabilities mean nothing and should not be shown.
    NotDermoscopy = 1,
    /// No lesion class is probable enough to name.
    LowConfidence = 2,
}

impl From<Option<UnknownReason>> for skinlesion_unknown_reason {
    fn from(reason: Option<UnknownReason>) -> Self {
        match reason {
            None => Self::None,
            Some(UnknownReason::NotDermoscopy) => Self::NotDermoscopy,
            Some(UnknownReason::LowConfidence) => Self::LowConfidence,
        }
    }
}

/// Channel layout of raw pixels (`skinlesion_raw_image.format`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum skinlesion_pixel_format {
    /// One byte per pixel, grey.
    Gray8 = 0,
    /// Three bytes per pixel: red, green, blue.
    Rgb8 = 1,
    /// Four bytes per pixel: red, green, blue, alpha (alpha is ignored).
    Rgba8 = 2,
}

/// One classification, written into memory the caller owns; it holds no pointers and is never
/// freed.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct skinlesion_prediction {
    /// The answer: a trained class, or `SKINLESION_LESION_CLASS_UNKNOWN` when the model abstains
    /// (see `unknown_reason`).
    pub lesion_class: skinlesion_lesion_class,
    /// The trained class the model chose, also when the answer is UNKNOWN.
    pub best_guess: skinlesion_lesion_class,
    /// Calibrated probability of `best_guess` (0 to 1).
    pub confidence: f32,
    /// True when the answer is melanoma, basal cell carcinoma or squamous cell carcinoma.
    pub is_cancerous: bool,
    /// True when the model abstained (`lesion_class` is UNKNOWN).
    pub is_unknown: bool,
    /// Calibrated probability of each diagnosis, indexed by `skinlesion_lesion_class`; only
    /// meaningful where `has_probability` is true (classes the model was not trained on have
    /// none, and read 0).
    pub probabilities: [f32; SKINLESION_DIAGNOSIS_COUNT],
    /// Whether the model was trained on each diagnosis, indexed like `probabilities`.
    pub has_probability: [bool; SKINLESION_DIAGNOSIS_COUNT],
    /// Why the answer is UNKNOWN; `SKINLESION_UNKNOWN_REASON_NONE` when it is not.
    pub unknown_reason: skinlesion_unknown_reason,
    /// The model's out-of-distribution score (larger: less like its training dermoscopy); only
    /// meaningful where `has_ood_score` is true (models without a gate have none).
    pub ood_score: f32,
    pub has_ood_score: bool,
}

impl skinlesion_prediction {
    /// What a failed item of a batch reads as: an abstention with no probabilities.
    const NONE: Self = Self {
        lesion_class: skinlesion_lesion_class::Unknown,
        best_guess: skinlesion_lesion_class::Unknown,
        confidence: 0.0,
        is_cancerous: false,
        is_unknown: true,
        probabilities: [0.0; SKINLESION_DIAGNOSIS_COUNT],
        has_probability: [false; SKINLESION_DIAGNOSIS_COUNT],
        unknown_reason: skinlesion_unknown_reason::None,
        ood_score: 0.0,
        has_ood_score: false,
    };
}

impl From<&Prediction> for skinlesion_prediction {
    fn from(p: &Prediction) -> Self {
        let mut out = Self {
            lesion_class: p.class().into(),
            best_guess: p.best_guess().into(),
            confidence: p.confidence(),
            is_cancerous: p.is_cancerous(),
            is_unknown: p.is_unknown(),
            unknown_reason: p.unknown_reason().into(),
            ood_score: p.ood_score().unwrap_or(0.0),
            has_ood_score: p.ood_score().is_some(),
            ..Self::NONE
        };
        for &(class, probability) in p.probabilities() {
            let i = class_index(class);
            out.probabilities[i] = probability;
            out.has_probability[i] = true;
        }
        out
    }
}

/// Encoded image bytes (JPEG, PNG, TIFF, BMP, WebP or GIF), one item of a batch.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct skinlesion_encoded_image {
    pub data: *const u8,
    pub len: usize,
}

/// Raw interleaved 8-bit pixels: `height` rows, `stride` bytes apart, each starting with `width`
/// pixels of `format`. `len` is the length of the buffer at `data`, which must be at least
/// `stride * (height - 1) + width * channels`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct skinlesion_raw_image {
    pub data: *const u8,
    pub len: usize,
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    /// A `skinlesion_pixel_format` value (a plain integer so that a wrong value is an error,
    /// not undefined behaviour).
    pub format: u32,
}

/// Options for `skinlesion_classifier_new` (opaque; made by `skinlesion_options_new`).
pub struct skinlesion_options {
    device: Device,
    threads: Option<usize>,
    max_pixels: Option<u64>,
    max_bytes: Option<u64>,
}

/// A loaded classifier (opaque; made by `skinlesion_classifier_new`). Safe to use from many
/// threads at once.
pub struct skinlesion_classifier {
    inner: Classifier,
}

/// A failure on its way to the caller: status plus message.
struct Failure(skinlesion_status, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(e.kind().into(), e.to_string())
    }
}

fn null(name: &str) -> Failure {
    Failure(
        skinlesion_status::NullArgument,
        format!("{name} must not be NULL"),
    )
}

fn invalid(message: String) -> Failure {
    Failure(skinlesion_status::InvalidArgument, message)
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // Interior NULs cannot be shown by C; drop them rather than lose the message.
    let message = CString::new(message.replace('\0', "")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
}

/// Runs one API call: clears the thread's last error, catches panics, and turns a failure into
/// its status with the message stored for `skinlesion_last_error_message`.
fn call(f: impl FnOnce() -> Result<(), Failure>) -> skinlesion_status {
    // Successful calls (the common case) leave an already empty message untouched.
    LAST_ERROR.with(|e| {
        if !e.borrow().is_empty() {
            *e.borrow_mut() = CString::default();
        }
    });
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return skinlesion_status::Ok,
        Ok(Err(failure)) => failure,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Failure(
                skinlesion_status::Panic,
                format!("internal error (please report): {what}"),
            )
        }
    };
    set_last_error(&failure.1);
    failure.0
}

/// A byte slice from C; NULL with length 0 is the empty slice.
///
/// # Safety
/// `data` must be NULL or valid for `len` bytes.
unsafe fn bytes<'a>(data: *const u8, len: usize, name: &str) -> Result<&'a [u8], Failure> {
    match (data.is_null(), len) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(null(name)),
        // SAFETY: the caller guarantees `data` is valid for `len` bytes.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(data, len) }),
    }
}

/// # Safety
/// `ptr` must be NULL or point to `count` valid items.
unsafe fn items<'a, T>(ptr: *const T, count: usize, name: &str) -> Result<&'a [T], Failure> {
    match (ptr.is_null(), count) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(null(name)),
        // SAFETY: the caller guarantees `ptr` points to `count` items.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(ptr, count) }),
    }
}

/// # Safety
/// `s` must be NULL or a NUL-terminated string.
unsafe fn text<'a>(s: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(null(name));
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    unsafe { CStr::from_ptr(s) }
        .to_str()
        .map_err(|_| invalid(format!("{name} is not valid UTF-8")))
}

fn pixel_format(format: u32) -> Result<PixelFormat, Failure> {
    match format {
        0 => Ok(PixelFormat::Gray8),
        1 => Ok(PixelFormat::Rgb8),
        2 => Ok(PixelFormat::Rgba8),
        other => Err(Failure(
            skinlesion_status::InvalidPixels,
            format!("unknown pixel format {other} (expected 0 = GRAY8, 1 = RGB8, 2 = RGBA8)"),
        )),
    }
}

/// # Safety
/// `image.data` must be NULL or valid for `image.len` bytes.
unsafe fn raw_pixels<'a>(image: &skinlesion_raw_image) -> Result<RawPixels<'a>, Failure> {
    Ok(RawPixels {
        // SAFETY: forwarded from the caller.
        data: unsafe { bytes(image.data, image.len, "pixel data")? },
        width: image.width,
        height: image.height,
        stride: image.stride,
        format: pixel_format(image.format)?,
    })
}

/// Static NUL-terminated copies of the core's class codes and names, made once.
fn class_strings() -> &'static [(CString, CString)] {
    static STRINGS: OnceLock<Vec<(CString, CString)>> = OnceLock::new();
    STRINGS.get_or_init(|| {
        LesionClass::ALL
            .iter()
            .map(|c| {
                let cstr = |s: &str| CString::new(s).expect("class strings have no NUL");
                (cstr(c.code()), cstr(c.name()))
            })
            .collect()
    })
}

fn class_at(index: u32) -> Option<LesionClass> {
    LesionClass::ALL.get(index as usize).copied()
}

/// The library's version, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn skinlesion_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => panic!("version has no interior NUL"),
        };
    VERSION.as_ptr()
}

/// The statement every program built on this library must show its users: research and
/// education only, not a medical device.
#[no_mangle]
pub extern "C" fn skinlesion_disclaimer() -> *const c_char {
    static DISCLAIMER: OnceLock<CString> = OnceLock::new();
    DISCLAIMER
        .get_or_init(|| CString::new(skinlesion_core::DISCLAIMER).expect("no NUL"))
        .as_ptr()
}

/// Number of lesion classes, UNKNOWN included (9): valid `skinlesion_lesion_class` values are
/// 0 to count - 1.
#[no_mangle]
pub extern "C" fn skinlesion_class_count() -> usize {
    LesionClass::ALL.len()
}

/// The ISIC code of a class ("MEL"), or NULL for a value out of range.
#[no_mangle]
pub extern "C" fn skinlesion_class_code(lesion_class: u32) -> *const c_char {
    class_at(lesion_class).map_or(std::ptr::null(), |c| {
        class_strings()[class_index(c)].0.as_ptr()
    })
}

/// The wire name of an abstention reason ("not_dermoscopy", "low_confidence"; "" for NONE, as
/// in the HTTP API's `unknown_reason`), or NULL for a value out of range.
#[no_mangle]
pub extern "C" fn skinlesion_unknown_reason_code(reason: u32) -> *const c_char {
    static CODES: OnceLock<[CString; 3]> = OnceLock::new();
    let codes = CODES.get_or_init(|| {
        [
            None,
            Some(UnknownReason::NotDermoscopy),
            Some(UnknownReason::LowConfidence),
        ]
        .map(|r| CString::new(r.map_or("", UnknownReason::code)).expect("no NUL"))
    });
    codes
        .get(reason as usize)
        .map_or(std::ptr::null(), |c| c.as_ptr())
}

/// The display name of a class ("Melanoma"), or NULL for a value out of range.
#[no_mangle]
pub extern "C" fn skinlesion_class_name(lesion_class: u32) -> *const c_char {
    class_at(lesion_class).map_or(std::ptr::null(), |c| {
        class_strings()[class_index(c)].1.as_ptr()
    })
}

/// True for melanoma, basal cell carcinoma and squamous cell carcinoma; false otherwise and for
/// a value out of range.
#[no_mangle]
pub extern "C" fn skinlesion_class_is_cancerous(lesion_class: u32) -> bool {
    class_at(lesion_class).is_some_and(LesionClass::is_cancerous)
}

/// A short, static description of a status code ("undecodable image"); never NULL.
#[no_mangle]
pub extern "C" fn skinlesion_status_description(status: u32) -> *const c_char {
    // The core's kinds describe themselves; the C API adds its own four statuses.
    static KINDS: OnceLock<Vec<(u32, CString)>> = OnceLock::new();
    let kinds = KINDS.get_or_init(|| {
        ErrorKind::ALL
            .iter()
            .map(|k| (k.code(), CString::new(k.description()).expect("no NUL")))
            .collect()
    });
    let text: &CStr = match skinlesion_status::from_code(status) {
        Some(skinlesion_status::Ok) => c"success",
        Some(skinlesion_status::NullArgument) => c"a required argument was NULL",
        Some(skinlesion_status::InvalidArgument) => c"invalid argument",
        Some(skinlesion_status::Panic) => c"internal error",
        _ => kinds
            .iter()
            .find(|(code, _)| *code == status)
            .map_or(c"unknown status", |(_, text)| text.as_c_str()),
    };
    text.as_ptr()
}

/// The message of the most recent failed call on this thread, or "" when the most recent call
/// succeeded. Never NULL; valid until the next skinlesion call on this thread.
#[no_mangle]
pub extern "C" fn skinlesion_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Makes an options handle with the defaults: device "auto", threads = all cores, 50
/// megapixels and 64 MiB per image. Free it with `skinlesion_options_free`.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_new(
    out: *mut *mut skinlesion_options,
) -> skinlesion_status {
    call(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        let options = Box::new(skinlesion_options {
            device: Device::default(),
            threads: None,
            max_pixels: None,
            max_bytes: None,
        });
        // SAFETY: checked non-NULL; the caller guarantees it is writable.
        unsafe { out.write(Box::into_raw(options)) };
        Ok(())
    })
}

/// Frees an options handle; NULL does nothing. A classifier made with it does not need it.
///
/// # Safety
/// `options` must be NULL or a handle from `skinlesion_options_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_free(options: *mut skinlesion_options) {
    if !options.is_null() {
        // SAFETY: the caller hands back a handle from `skinlesion_options_new`.
        drop(unsafe { Box::from_raw(options) });
    }
}

/// # Safety
/// `options` must be NULL or a live handle.
unsafe fn options_mut<'a>(
    options: *mut skinlesion_options,
) -> Result<&'a mut skinlesion_options, Failure> {
    // SAFETY: the caller guarantees a live handle or NULL.
    unsafe { options.as_mut() }.ok_or_else(|| null("options"))
}

/// Sets one option that must be at least 1.
///
/// # Safety
/// `options` must be NULL or a live handle.
unsafe fn set_positive<T: PartialEq + Default>(
    options: *mut skinlesion_options,
    value: T,
    name: &str,
    set: impl FnOnce(&mut skinlesion_options, T),
) -> skinlesion_status {
    call(|| {
        if value == T::default() {
            return Err(invalid(format!("{name} must be at least 1")));
        }
        // SAFETY: forwarded from the caller.
        set(unsafe { options_mut(options)? }, value);
        Ok(())
    })
}

/// Sets where inference runs: "cpu", "cuda", "cuda:N", or "auto" (CUDA when available). An
/// unknown name is `SKINLESION_STATUS_CONFIG_ERROR`; a GPU that is missing is reported by
/// `skinlesion_classifier_new`.
///
/// # Safety
/// `options` must be a live handle; `device` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_set_device(
    options: *mut skinlesion_options,
    device: *const c_char,
) -> skinlesion_status {
    call(|| {
        // SAFETY: forwarded from the caller.
        let (options, device) = unsafe { (options_mut(options)?, text(device, "device")?) };
        options.device = device.parse::<Device>()?;
        Ok(())
    })
}

/// Sets how many CPU threads inference and image decoding use (at least 1).
///
/// # Safety
/// `options` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_set_threads(
    options: *mut skinlesion_options,
    threads: usize,
) -> skinlesion_status {
    // SAFETY: forwarded from the caller.
    unsafe { set_positive(options, threads, "threads", |o, v| o.threads = Some(v)) }
}

/// Sets the largest image accepted, in pixels (width × height, at least 1); larger images are
/// refused from their header, before decoding.
///
/// # Safety
/// `options` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_set_max_pixels(
    options: *mut skinlesion_options,
    max_pixels: u64,
) -> skinlesion_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        set_positive(options, max_pixels, "max_pixels", |o, v| {
            o.max_pixels = Some(v)
        })
    }
}

/// Sets the largest encoded image accepted, in bytes (at least 1).
///
/// # Safety
/// `options` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_options_set_max_bytes(
    options: *mut skinlesion_options,
    max_bytes: u64,
) -> skinlesion_status {
    // SAFETY: forwarded from the caller.
    unsafe {
        set_positive(options, max_bytes, "max_bytes", |o, v| {
            o.max_bytes = Some(v)
        })
    }
}

/// Loads a model (its `.json` manifest, or its `.pt` weights beside one), verifying its
/// checksum, and makes a classifier. `options` may be NULL for the defaults. Free the result
/// with `skinlesion_classifier_free`.
///
/// # Safety
/// `model_path` must be a NUL-terminated string; `options` NULL or a live handle; `out`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_classifier_new(
    model_path: *const c_char,
    options: *const skinlesion_options,
    out: *mut *mut skinlesion_classifier,
) -> skinlesion_status {
    call(|| {
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: forwarded from the caller.
        let path = unsafe { text(model_path, "model_path")? };
        let mut builder = Classifier::builder(Path::new(path));
        // SAFETY: the caller guarantees NULL or a live handle.
        if let Some(options) = unsafe { options.as_ref() } {
            builder = builder.device(options.device);
            if let Some(threads) = options.threads {
                builder = builder.threads(threads);
            }
            if let Some(max_pixels) = options.max_pixels {
                builder = builder.max_pixels(max_pixels);
            }
            if let Some(max_bytes) = options.max_bytes {
                builder = builder.max_bytes(max_bytes);
            }
        }
        let classifier = Box::new(skinlesion_classifier {
            inner: builder.build()?,
        });
        // SAFETY: checked non-NULL; the caller guarantees it is writable.
        unsafe { out.write(Box::into_raw(classifier)) };
        Ok(())
    })
}

/// Frees a classifier; NULL does nothing. No other thread may be using it.
///
/// # Safety
/// `classifier` must be NULL or a handle from `skinlesion_classifier_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_classifier_free(classifier: *mut skinlesion_classifier) {
    if !classifier.is_null() {
        // Dropping frees libtorch memory; a panic there must not unwind into C.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the caller hands back a handle from `skinlesion_classifier_new`.
            drop(unsafe { Box::from_raw(classifier) })
        }));
    }
}

/// # Safety
/// `classifier` must be NULL or a live handle.
unsafe fn classifier_ref<'a>(
    classifier: *const skinlesion_classifier,
) -> Result<&'a Classifier, Failure> {
    // SAFETY: the caller guarantees a live handle or NULL.
    unsafe { classifier.as_ref() }
        .map(|c| &c.inner)
        .ok_or_else(|| null("classifier"))
}

/// Classifies one input into `out`.
///
/// # Safety
/// `out` must be NULL or writable.
unsafe fn classify_one(
    classifier: &Classifier,
    input: ImageInput<'_>,
    out: *mut skinlesion_prediction,
) -> Result<(), Failure> {
    if out.is_null() {
        return Err(null("out"));
    }
    let prediction = classifier.classify_input(input)?;
    // SAFETY: checked non-NULL; the caller guarantees it is writable.
    unsafe { out.write((&prediction).into()) };
    Ok(())
}

/// Classifies one encoded image (JPEG, PNG, TIFF, BMP, WebP or GIF) of `len` bytes.
///
/// # Safety
/// `classifier` must be a live handle; `data` valid for `len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_classify_encoded(
    classifier: *const skinlesion_classifier,
    data: *const u8,
    len: usize,
    out: *mut skinlesion_prediction,
) -> skinlesion_status {
    call(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            let classifier = classifier_ref(classifier)?;
            let data = bytes(data, len, "data")?;
            classify_one(classifier, ImageInput::Encoded(data), out)
        }
    })
}

/// Classifies one image of raw interleaved pixels.
///
/// # Safety
/// `classifier` must be a live handle; `image` point to a description whose `data` is valid
/// for `len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_classify_pixels(
    classifier: *const skinlesion_classifier,
    image: *const skinlesion_raw_image,
    out: *mut skinlesion_prediction,
) -> skinlesion_status {
    call(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            let classifier = classifier_ref(classifier)?;
            let image = image.as_ref().ok_or_else(|| null("image"))?;
            classify_one(classifier, ImageInput::Pixels(raw_pixels(image)?), out)
        }
    })
}

/// A prediction with where the model looked (opaque; made by `skinlesion_explain_encoded` or
/// `skinlesion_explain_pixels`, freed by `skinlesion_explanation_free`). Holds the heatmap,
/// and the decoded image for its overlay.
pub struct skinlesion_explanation {
    explanation: skinlesion_core::Explanation,
    image: skinlesion_core::image::DynamicImage,
    /// The overlay as PNG, made on first request.
    overlay_png: OnceLock<Vec<u8>>,
}

/// Classifies and explains one input into a new handle at `out`.
///
/// # Safety
/// `out` must be NULL or writable.
unsafe fn explain_one(
    classifier: &Classifier,
    input: ImageInput<'_>,
    lesion_class: u32,
    out: *mut *mut skinlesion_explanation,
) -> Result<(), Failure> {
    if out.is_null() {
        return Err(null("out"));
    }
    let class = match class_at(lesion_class) {
        Some(LesionClass::Unknown) => None,
        Some(class) => Some(class),
        None => return Err(invalid(format!("lesion_class {lesion_class} is no class"))),
    };
    let image = classifier.decode_input(input)?.into_owned();
    let explanation = classifier.explain(&image, class)?;
    let handle = Box::new(skinlesion_explanation {
        explanation,
        image,
        overlay_png: OnceLock::new(),
    });
    // SAFETY: checked non-NULL; the caller guarantees it is writable.
    unsafe { out.write(Box::into_raw(handle)) };
    Ok(())
}

/// Classifies one encoded image and explains `lesion_class` (a `skinlesion_lesion_class`;
/// `SKINLESION_LESION_CLASS_UNKNOWN` for the prediction's best guess). A class the model was
/// not trained on is `SKINLESION_STATUS_CONFIG_ERROR`; a model without class maps
/// `SKINLESION_STATUS_NO_CLASS_MAPS`. Free the result with `skinlesion_explanation_free`.
///
/// # Safety
/// `classifier` must be a live handle; `data` valid for `len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_explain_encoded(
    classifier: *const skinlesion_classifier,
    data: *const u8,
    len: usize,
    lesion_class: u32,
    out: *mut *mut skinlesion_explanation,
) -> skinlesion_status {
    call(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            let classifier = classifier_ref(classifier)?;
            let data = bytes(data, len, "data")?;
            explain_one(classifier, ImageInput::Encoded(data), lesion_class, out)
        }
    })
}

/// `skinlesion_explain_encoded` for raw interleaved pixels.
///
/// # Safety
/// `classifier` must be a live handle; `image` point to a description whose `data` is valid
/// for `len` bytes; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_explain_pixels(
    classifier: *const skinlesion_classifier,
    image: *const skinlesion_raw_image,
    lesion_class: u32,
    out: *mut *mut skinlesion_explanation,
) -> skinlesion_status {
    call(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            let classifier = classifier_ref(classifier)?;
            let image = image.as_ref().ok_or_else(|| null("image"))?;
            let input = ImageInput::Pixels(raw_pixels(image)?);
            explain_one(classifier, input, lesion_class, out)
        }
    })
}

/// Frees an explanation; NULL does nothing.
///
/// # Safety
/// `explanation` must be NULL or a handle from `skinlesion_explain_*`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_explanation_free(explanation: *mut skinlesion_explanation) {
    if !explanation.is_null() {
        // SAFETY: the caller hands back a handle from `skinlesion_explain_*`.
        drop(unsafe { Box::from_raw(explanation) })
    }
}

/// # Safety
/// `explanation` must be NULL or a live handle.
unsafe fn explanation_ref<'a>(
    explanation: *const skinlesion_explanation,
) -> Option<&'a skinlesion_explanation> {
    // SAFETY: the caller guarantees a live handle or NULL.
    unsafe { explanation.as_ref() }
}

/// Writes the explanation's prediction (the same as `skinlesion_classify_*` gives) to `out`.
///
/// # Safety
/// `explanation` must be a live handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_explanation_prediction(
    explanation: *const skinlesion_explanation,
    out: *mut skinlesion_prediction,
) -> skinlesion_status {
    call(|| {
        // SAFETY: forwarded from the caller.
        let e = unsafe { explanation_ref(explanation) }.ok_or_else(|| null("explanation"))?;
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: checked non-NULL; the caller guarantees it is writable.
        unsafe { out.write(e.explanation.prediction().into()) };
        Ok(())
    })
}

/// The class explained (a `skinlesion_lesion_class`); UNKNOWN for NULL.
///
/// # Safety
/// `explanation` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_explanation_class(
    explanation: *const skinlesion_explanation,
) -> u32 {
    // SAFETY: forwarded from the caller.
    let class = unsafe { explanation_ref(explanation) }
        .map_or(LesionClass::Unknown, |e| e.explanation.class());
    class_index(class) as u32
}

/// The heatmap: `*width` × `*height` floats in [0, 1], row-major, in the explained image's
/// own pixels (warmer: more evidence for the class). The pointer stays valid until the
/// explanation is freed. NULL (and 0 × 0) for NULL.
///
/// # Safety
/// `explanation` must be NULL or a live handle; `width` and `height` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_explanation_heatmap(
    explanation: *const skinlesion_explanation,
    width: *mut u32,
    height: *mut u32,
) -> *const f32 {
    // SAFETY: forwarded from the caller.
    let heatmap = unsafe { explanation_ref(explanation) }.map(|e| e.explanation.heatmap());
    let (w, h) = heatmap.map_or((0, 0), |m| (m.width(), m.height()));
    // SAFETY: the caller guarantees NULL or writable.
    unsafe {
        if let Some(width) = width.as_mut() {
            *width = w;
        }
        if let Some(height) = height.as_mut() {
            *height = h;
        }
    }
    heatmap.map_or(std::ptr::null(), |m| m.values().as_ptr())
}

/// The image with the heatmap blended over it, encoded as PNG: `*len` bytes at `*png`, valid
/// until the explanation is freed (write them to a file as they are).
///
/// # Safety
/// `explanation` must be a live handle; `png` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_explanation_overlay_png(
    explanation: *const skinlesion_explanation,
    png: *mut *const u8,
    len: *mut usize,
) -> skinlesion_status {
    call(|| {
        // SAFETY: forwarded from the caller.
        let e = unsafe { explanation_ref(explanation) }.ok_or_else(|| null("explanation"))?;
        if png.is_null() || len.is_null() {
            return Err(null("png and len"));
        }
        let bytes = (e.overlay_png).get_or_init(|| e.explanation.heatmap().overlay_png(&e.image));
        // SAFETY: checked non-NULL; the caller guarantees they are writable.
        unsafe {
            png.write(bytes.as_ptr());
            len.write(bytes.len());
        }
        Ok(())
    })
}

/// Shared tail of the batch calls: one forward pass over the inputs that are usable, a result
/// and status per item; the call's status is that of the first failed item.
///
/// # Safety
/// `out` must be NULL or hold `inputs.len()` writable items; `statuses` likewise.
unsafe fn classify_batch(
    classifier: &Classifier,
    inputs: Vec<Result<ImageInput<'_>, Failure>>,
    out: *mut skinlesion_prediction,
    statuses: *mut skinlesion_status,
) -> Result<(), Failure> {
    if out.is_null() && !inputs.is_empty() {
        return Err(null("out"));
    }
    let usable: Vec<ImageInput<'_>> = inputs
        .iter()
        .filter_map(|i| i.as_ref().ok().copied())
        .collect();
    let mut results = classifier.classify_inputs(&usable).into_iter();
    let mut first_failure = None;
    for (index, input) in inputs.into_iter().enumerate() {
        let result = match input {
            Ok(_) => results
                .next()
                .expect("one result per usable input")
                .map_err(Failure::from),
            Err(failure) => Err(failure),
        };
        let (prediction, status) = match result {
            Ok(p) => ((&p).into(), skinlesion_status::Ok),
            Err(Failure(status, message)) => {
                first_failure.get_or_insert(Failure(status, format!("image {index}: {message}")));
                (skinlesion_prediction::NONE, status)
            }
        };
        // SAFETY: the caller guarantees `count` writable items in each array.
        unsafe {
            out.add(index).write(prediction);
            if !statuses.is_null() {
                statuses.add(index).write(status);
            }
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// Classifies `count` encoded images with one forward pass. `out` receives one prediction per
/// image, in order; `statuses` (may be NULL) one status per image. A failed image reads as
/// UNKNOWN with no probabilities; the others are classified regardless. Returns OK when every
/// image succeeded, else the first failed image's status (its index is in the message).
///
/// # Safety
/// `classifier` must be a live handle; `images` point to `count` items, each valid for its
/// `len` bytes; `out` and `statuses` (when not NULL) to `count` writable items.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_classify_encoded_batch(
    classifier: *const skinlesion_classifier,
    images: *const skinlesion_encoded_image,
    count: usize,
    out: *mut skinlesion_prediction,
    statuses: *mut skinlesion_status,
) -> skinlesion_status {
    call(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            let classifier = classifier_ref(classifier)?;
            let inputs = items(images, count, "images")?
                .iter()
                .map(|i| bytes(i.data, i.len, "data").map(ImageInput::Encoded))
                .collect();
            classify_batch(classifier, inputs, out, statuses)
        }
    })
}

/// Classifies `count` raw-pixel images with one forward pass; results as for
/// `skinlesion_classify_encoded_batch`.
///
/// # Safety
/// `classifier` must be a live handle; `images` point to `count` descriptions, each `data`
/// valid for its `len` bytes; `out` and `statuses` (when not NULL) to `count` writable items.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_classify_pixels_batch(
    classifier: *const skinlesion_classifier,
    images: *const skinlesion_raw_image,
    count: usize,
    out: *mut skinlesion_prediction,
    statuses: *mut skinlesion_status,
) -> skinlesion_status {
    call(|| {
        // SAFETY: forwarded from the caller.
        unsafe {
            let classifier = classifier_ref(classifier)?;
            let inputs = items(images, count, "images")?
                .iter()
                .map(|i| raw_pixels(i).map(ImageInput::Pixels))
                .collect();
            classify_batch(classifier, inputs, out, statuses)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description(status: u32) -> String {
        // SAFETY: the function returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(skinlesion_status_description(status)) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn every_core_error_kind_has_its_own_status_and_description() {
        for &kind in ErrorKind::ALL {
            let status = skinlesion_status::from(kind);
            assert_eq!(status as u32, kind.code(), "{kind}");
            assert_eq!(description(status as u32), kind.description(), "{kind}");
        }
        // The C API's own statuses are none of the core's.
        for own in [0, 1, 2, 16] {
            assert!(ErrorKind::from_code(own).is_none());
            assert_ne!(description(own), "unknown status");
        }
        let past = 1 + ErrorKind::ALL.iter().map(|k| k.code()).max().unwrap();
        assert_eq!(description(past), "unknown status");
        assert_eq!(skinlesion_status::ALL.len(), ErrorKind::ALL.len() + 4);
    }
}
