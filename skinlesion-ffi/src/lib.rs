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

// One concern per file, as rustls-ffi does: statuses and the panic boundary (error), static
// facts (info), C-side types (types), pointer checks (pointers), then one file per handle and
// the batch calls. The header lists everything by name (cbindgen.toml).
mod batch;
mod classifier;
mod error;
mod explain;
mod info;
mod lesion_class;
mod options;
mod pointers;
mod status;
mod types;

pub use batch::{skinlesion_classify_encoded_batch, skinlesion_classify_pixels_batch};
pub use classifier::{
    skinlesion_classifier, skinlesion_classifier_free, skinlesion_classifier_new,
    skinlesion_classify_encoded, skinlesion_classify_pixels,
};
pub use error::{skinlesion_last_error_message, skinlesion_status_description};
pub use explain::{
    skinlesion_explain_encoded, skinlesion_explain_pixels, skinlesion_explanation,
    skinlesion_explanation_class, skinlesion_explanation_free, skinlesion_explanation_heatmap,
    skinlesion_explanation_overlay_png, skinlesion_explanation_prediction,
};
pub use info::{
    skinlesion_class_code, skinlesion_class_count, skinlesion_class_is_cancerous,
    skinlesion_class_name, skinlesion_disclaimer, skinlesion_unknown_reason_code,
    skinlesion_version,
};
pub use lesion_class::skinlesion_lesion_class;
pub use options::{
    skinlesion_options, skinlesion_options_free, skinlesion_options_new,
    skinlesion_options_set_device, skinlesion_options_set_max_bytes,
    skinlesion_options_set_max_pixels, skinlesion_options_set_threads,
};
pub use status::skinlesion_status;
pub use types::{
    skinlesion_dicom, skinlesion_encoded_image, skinlesion_pixel_format, skinlesion_prediction,
    skinlesion_raw_image, skinlesion_unknown_reason,
};

/// Number of diagnostic classes a model can be trained on (every class but UNKNOWN); the length
/// of `skinlesion_prediction.probabilities`.
pub const SKINLESION_DIAGNOSIS_COUNT: usize = 8;
