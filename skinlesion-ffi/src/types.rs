//! The plain C types of results and inputs, and their conversions from the core's.

use skinlesion_core::{LesionClass, PixelFormat, Prediction, RawPixels, UnknownReason};

use crate::error::Failure;
use crate::lesion_class::skinlesion_lesion_class;
use crate::pointers::bytes;
use crate::status::skinlesion_status;
use crate::SKINLESION_DIAGNOSIS_COUNT;

impl From<LesionClass> for skinlesion_lesion_class {
    fn from(class: LesionClass) -> Self {
        Self::ALL[class_index(class)]
    }
}

/// Position of a class in `LesionClass::ALL`, which is the C enum's numbering.
pub(crate) fn class_index(class: LesionClass) -> usize {
    // Every class is in ALL; were one not, it would read as UNKNOWN (the last).
    LesionClass::ALL
        .iter()
        .position(|c| *c == class)
        .unwrap_or(LesionClass::ALL.len() - 1)
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
    pub(crate) const NONE: Self = Self {
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

pub(crate) fn pixel_format(format: u32) -> Result<PixelFormat, Failure> {
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
pub(crate) unsafe fn raw_pixels<'a>(
    image: &skinlesion_raw_image,
) -> Result<RawPixels<'a>, Failure> {
    Ok(RawPixels {
        // SAFETY: forwarded from the caller.
        data: unsafe { bytes(image.data, image.len, "pixel data")? },
        width: image.width,
        height: image.height,
        stride: image.stride,
        format: pixel_format(image.format)?,
    })
}
