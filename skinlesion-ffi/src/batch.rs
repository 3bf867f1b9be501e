//! Many images with one forward pass: a prediction and a status per image.

use skinlesion_core::{Classifier, ImageInput};

use crate::classifier::{classifier_ref, skinlesion_classifier};
use crate::error::{call, null, Failure};
use crate::pointers::{bytes, items};
use crate::status::skinlesion_status;
use crate::types::{
    raw_pixels, skinlesion_encoded_image, skinlesion_prediction, skinlesion_raw_image,
};

/// Shared tail of the batch calls: one forward pass over the inputs that are usable, a result
/// and status per item; the call's status is that of the first failed item.
///
/// # Safety
/// `out` must be NULL or hold `inputs.len()` writable items; `statuses` likewise.
pub(crate) unsafe fn classify_batch(
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
    let mut results = classifier.classify_batch(&usable).into_iter();
    let mut first_failure = None;
    for (index, input) in inputs.into_iter().enumerate() {
        let result = match input {
            Ok(_) => match results.next() {
                Some(result) => result.map_err(Failure::from),
                None => Err(Failure(
                    skinlesion_status::InferenceError,
                    "the forward pass answered fewer images".into(),
                )),
            },
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

/// The inputs of `count` image descriptions at `images`, each read by `input` (a bad one is
/// that item's failure, not the call's).
///
/// # Safety
/// `images` must be NULL or point to `count` descriptions that `input` may read.
unsafe fn described<'a, T: 'a>(
    images: *const T,
    count: usize,
    input: impl Fn(&'a T) -> Result<ImageInput<'a>, Failure>,
) -> Result<Vec<Result<ImageInput<'a>, Failure>>, Failure> {
    // SAFETY: forwarded from the caller.
    let images = unsafe { items(images, count, "images")? };
    Ok(images.iter().map(input).collect())
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
            let input = |i: &skinlesion_encoded_image| bytes(i.data, i.len, "data");
            let inputs = described(images, count, |i| input(i).map(ImageInput::Encoded))?;
            classify_batch(classifier_ref(classifier)?, inputs, out, statuses)
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
            let inputs = described(images, count, |i| raw_pixels(i).map(ImageInput::Pixels))?;
            classify_batch(classifier_ref(classifier)?, inputs, out, statuses)
        }
    })
}
