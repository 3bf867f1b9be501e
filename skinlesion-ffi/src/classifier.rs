//! The classifier handle and single-image classification.

use std::ffi::{c_char, CString};
use std::path::Path;
use std::sync::OnceLock;

use skinlesion_core::{Classifier, ImageInput, Precision};

use crate::error::{call, guard, null, Failure};
use crate::options::skinlesion_options;
use crate::pointers::{bytes, text};
use crate::status::skinlesion_status;
use crate::types::{raw_pixels, skinlesion_prediction, skinlesion_raw_image};

/// A loaded classifier (opaque; made by `skinlesion_classifier_new`). Safe to use from many
/// threads at once.
pub struct skinlesion_classifier {
    pub(crate) inner: Classifier,
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
            builder = builder.device(options.device).precision(options.precision);
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
        // SAFETY: the caller hands back a handle from `skinlesion_classifier_new`.
        guard((), || drop(unsafe { Box::from_raw(classifier) }));
    }
}

/// The arithmetic the classifier's network runs in, "fp32", "bf16" or "bf16-checked" (static;
/// never freed); NULL for a NULL handle.
///
/// # Safety
/// `classifier` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn skinlesion_classifier_precision(
    classifier: *const skinlesion_classifier,
) -> *const c_char {
    // The core's names, as static C strings made once.
    static NAMES: OnceLock<[(Precision, CString); Precision::ALL.len()]> = OnceLock::new();
    guard(std::ptr::null(), || {
        // SAFETY: forwarded from the caller.
        let Ok(classifier) = (unsafe { classifier_ref(classifier) }) else {
            return std::ptr::null();
        };
        let names = NAMES.get_or_init(|| {
            Precision::ALL.map(|p| (p, CString::new(p.to_string()).unwrap_or_default()))
        });
        names
            .iter()
            .find(|(p, _)| *p == classifier.precision())
            .map_or(std::ptr::null(), |(_, name)| name.as_ptr())
    })
}

/// # Safety
/// `classifier` must be NULL or a live handle.
pub(crate) unsafe fn classifier_ref<'a>(
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
pub(crate) unsafe fn classify_one(
    classifier: &Classifier,
    input: ImageInput<'_>,
    out: *mut skinlesion_prediction,
) -> Result<(), Failure> {
    if out.is_null() {
        return Err(null("out"));
    }
    let prediction = classifier.classify(input)?;
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
