//! The plain C types of results and inputs, and their conversions from the core's.

use std::ffi::c_char;

use skinlesion_core::{DicomInfo, LesionClass, PixelFormat, Prediction, RawPixels, UnknownReason};

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
    /// What a DICOM file said about the image; `dicom.is_dicom` is false for other inputs.
    pub dicom: skinlesion_dicom,
}

/// What a DICOM file says about the image it held (`skinlesion_prediction.dicom`): NUL-terminated
/// strings, empty where the file is silent (a longer value is cut at a character boundary).
/// Never a patient's name, ID, birth date or any other identifier.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct skinlesion_dicom {
    /// True when the image came from a DICOM file; every field below is empty otherwise.
    pub is_dicom: bool,
    /// SOP Class UID, e.g. "1.2.840.10008.5.1.4.1.1.77.1.7".
    pub sop_class_uid: [c_char; 65],
    /// Its name in the standard, e.g. "Dermoscopic Photography Image Storage".
    pub sop_class: [c_char; 129],
    /// Modality: "DMS" dermoscopy, "XC" external-camera photography, ...
    pub modality: [c_char; 17],
    /// The transfer syntax UID the pixels were encoded with.
    pub transfer_syntax_uid: [c_char; 65],
    /// Anatomic Region Sequence code meaning, else Body Part Examined.
    pub body_site: [c_char; 129],
    /// Image Laterality: "L", "R", "U" or "B".
    pub laterality: [c_char; 17],
    /// Patient's Age as written, e.g. "045Y".
    pub patient_age: [c_char; 17],
    /// Patient's Sex: "M", "F" or "O".
    pub patient_sex: [c_char; 17],
}

impl skinlesion_dicom {
    const NONE: Self = Self {
        is_dicom: false,
        sop_class_uid: [0; 65],
        sop_class: [0; 129],
        modality: [0; 17],
        transfer_syntax_uid: [0; 65],
        body_site: [0; 129],
        laterality: [0; 17],
        patient_age: [0; 17],
        patient_sex: [0; 17],
    };
}

impl From<Option<&DicomInfo>> for skinlesion_dicom {
    fn from(info: Option<&DicomInfo>) -> Self {
        let mut out = Self::NONE;
        let Some(info) = info else {
            return out;
        };
        out.is_dicom = true;
        copy_text(&info.sop_class_uid, &mut out.sop_class_uid);
        copy_text(text(&info.sop_class), &mut out.sop_class);
        copy_text(text(&info.modality), &mut out.modality);
        copy_text(&info.transfer_syntax_uid, &mut out.transfer_syntax_uid);
        copy_text(text(&info.body_site), &mut out.body_site);
        copy_text(text(&info.laterality), &mut out.laterality);
        copy_text(text(&info.patient_age), &mut out.patient_age);
        copy_text(text(&info.patient_sex), &mut out.patient_sex);
        out
    }
}

fn text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("")
}

/// `text` into a NUL-terminated buffer, cut at a character boundary when too long.
fn copy_text(text: &str, buffer: &mut [c_char]) {
    let room = buffer.len() - 1;
    let end = (0..=text.len().min(room))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    for (slot, byte) in buffer.iter_mut().zip(&text.as_bytes()[..end]) {
        *slot = *byte as c_char;
    }
    buffer[end] = 0;
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
        dicom: skinlesion_dicom::NONE,
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
            dicom: p.dicom().into(),
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
