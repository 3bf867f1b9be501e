//! Explanations: a prediction with where the model looked, as an opaque handle.

use std::sync::OnceLock;

use skinlesion_core::{Classifier, ImageInput, LesionClass};

use crate::classifier::{classifier_ref, skinlesion_classifier};
use crate::error::{call, guard, invalid, null, Failure};
use crate::info::class_at;
use crate::pointers::bytes;
use crate::status::skinlesion_status;
use crate::types::{class_index, raw_pixels, skinlesion_prediction, skinlesion_raw_image};

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
pub(crate) unsafe fn explain_one(
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
    let image = classifier.decode(input)?.into_owned();
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
/// not trained on is `SKINLESION_STATUS_CLASS_NOT_IN_MODEL`; a model without class maps
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
        guard((), || drop(unsafe { Box::from_raw(explanation) }));
    }
}

/// # Safety
/// `explanation` must be NULL or a live handle.
pub(crate) unsafe fn explanation_ref<'a>(
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
    let unknown = class_index(LesionClass::Unknown) as u32;
    guard(unknown, || {
        // SAFETY: forwarded from the caller.
        let class = unsafe { explanation_ref(explanation) }
            .map_or(LesionClass::Unknown, |e| e.explanation.class());
        class_index(class) as u32
    })
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
    guard(std::ptr::null(), || {
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
    })
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
