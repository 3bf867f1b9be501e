//! What a DICOM object says about itself: checked before decoding, and the few attributes an
//! answer may carry.

use dicom_core::dictionary::UidDictionary;
use dicom_core::Tag;
use dicom_dictionary_std::{sop_class, tags};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::preprocess::DecodeLimits;

/// What a prediction says about the DICOM object it was made from: how the image was taken
/// and of what, never who (no name, ID, birth date, accession number or other identifier).
///
/// Every field but the SOP class is optional: a PACS fills in what its modality sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DicomInfo {
    /// The SOP Class UID, e.g. `1.2.840.10008.5.1.4.1.1.77.1.7`.
    pub sop_class_uid: String,
    /// Its name in the DICOM standard, e.g. `Dermoscopic Photography Image Storage`; `None`
    /// for a private or unknown class.
    pub sop_class: Option<String>,
    /// Modality (0008,0060): `DMS` dermoscopy, `XC` external-camera photography, `OT`, …
    pub modality: Option<String>,
    /// The transfer syntax UID the pixels were encoded with.
    pub transfer_syntax_uid: String,
    /// The body site: the code meaning of the Anatomic Region Sequence (0008,2218), else Body
    /// Part Examined (0018,0015).
    pub body_site: Option<String>,
    /// Image Laterality (0020,0062), else Laterality (0020,0060): `L`, `R`, `U` or `B`.
    pub laterality: Option<String>,
    /// Patient's Age (0010,1010) as written, e.g. `045Y`.
    pub patient_age: Option<String>,
    /// Patient's Sex (0010,0040): `M`, `F` or `O`.
    pub patient_sex: Option<String>,
}

impl DicomInfo {
    /// The fields' names in order, as the JSON answer, Python's `prediction.dicom` and the
    /// bulk scorer's `dicom` column name them.
    pub const FIELDS: [&'static str; 8] = [
        "sop_class_uid",
        "sop_class",
        "modality",
        "transfer_syntax_uid",
        "body_site",
        "laterality",
        "patient_age",
        "patient_sex",
    ];

    /// The attributes above, read from a parsed object.
    pub(super) fn read(object: &DefaultDicomObject) -> Self {
        let meta = object.meta();
        let sop_class_uid = text(object, tags::SOP_CLASS_UID)
            .unwrap_or_else(|| meta.media_storage_sop_class_uid().to_string());
        Self {
            sop_class: sop_class_name(&sop_class_uid),
            sop_class_uid,
            modality: text(object, tags::MODALITY),
            transfer_syntax_uid: meta.transfer_syntax().to_string(),
            body_site: anatomic_region(object).or_else(|| text(object, tags::BODY_PART_EXAMINED)),
            laterality: text(object, tags::IMAGE_LATERALITY)
                .or_else(|| text(object, tags::LATERALITY)),
            patient_age: text(object, tags::PATIENT_AGE),
            patient_sex: text(object, tags::PATIENT_SEX),
        }
    }
}

/// The standard's name of a SOP class, from the dictionary (never a hand-kept list).
pub(super) fn sop_class_name(uid: &str) -> Option<String> {
    sop_class::registry()
        .by_uid(uid)
        .map(|entry| entry.name.to_string())
}

/// The code meaning of the first item of the Anatomic Region Sequence.
fn anatomic_region(object: &DefaultDicomObject) -> Option<String> {
    let sequence = object.element_opt(tags::ANATOMIC_REGION_SEQUENCE).ok()??;
    let item = sequence.items()?.first()?;
    let meaning = item.element_opt(tags::CODE_MEANING).ok()??;
    tidy(&meaning.to_str().ok()?)
}

/// A text attribute, trimmed; `None` when absent or empty.
pub(super) fn text(object: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let element = object.element_opt(tag).ok()??;
    tidy(&element.to_str().ok()?)
}

fn tidy(value: &str) -> Option<String> {
    let value = value.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!value.is_empty()).then(|| value.to_string())
}

/// A whole-number attribute (US or IS); `None` when absent or not a number.
fn number(object: &DefaultDicomObject, tag: Tag) -> Option<u32> {
    object.element_opt(tag).ok()??.to_int::<u32>().ok()
}

/// Parses a DICOM file from its `DICM` marker on (the preamble skipped). The whole input is in
/// memory already, within the byte limit.
pub(super) fn parse(from_marker: &[u8]) -> Result<DefaultDicomObject> {
    super::lengths::check(from_marker)?;
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Never)
        .from_reader(from_marker)
        .map_err(|e| Error::Decode(format!("not a readable DICOM file: {e}")))
}

/// How the object's pixels are stored, as its header declares.
#[derive(Debug)]
pub(super) struct Layout {
    pub transfer_syntax: String,
    pub photometric: String,
    pub samples_per_pixel: u32,
    pub bits_allocated: u32,
    pub bits_stored: u32,
    pub frames: u32,
    pub width: u32,
    pub height: u32,
}

impl Layout {
    /// The header's image attributes, unchecked.
    pub(super) fn read(object: &DefaultDicomObject) -> Result<Self> {
        let bits_allocated = number(object, tags::BITS_ALLOCATED).unwrap_or(0);
        let (height, width) = (number(object, tags::ROWS), number(object, tags::COLUMNS));
        let (Some(height @ 1..), Some(width @ 1..)) = (height, width) else {
            return Err(Error::Decode(
                "the DICOM object declares no image size (Rows, Columns)".into(),
            ));
        };
        Ok(Self {
            transfer_syntax: object.meta().transfer_syntax().to_string(),
            photometric: text(object, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default(),
            samples_per_pixel: number(object, tags::SAMPLES_PER_PIXEL).unwrap_or(1),
            bits_allocated,
            bits_stored: number(object, tags::BITS_STORED).unwrap_or(bits_allocated),
            frames: number(object, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1),
            width,
            height,
        })
    }
}

/// The photometric interpretations of a colour photograph: RGB, and the YCbCr forms JPEG and
/// JPEG 2000 store it in.
const COLOUR: [&str; 5] = ["RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"];

/// Refuses, before any pixel is decoded, what this library cannot classify; otherwise the
/// frame's layout.
pub(super) fn check(object: &DefaultDicomObject, limits: &DecodeLimits) -> Result<Layout> {
    check_transfer_syntax(object.meta().transfer_syntax())?;
    if object
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .is_none()
    {
        let uid = text(object, tags::SOP_CLASS_UID)
            .unwrap_or_else(|| object.meta().media_storage_sop_class_uid().to_string());
        let sop_class = sop_class_name(&uid).unwrap_or_else(|| format!("SOP class {uid}"));
        return Err(Error::NoPixelData { sop_class });
    }
    let layout = Layout::read(object)?;
    if layout.samples_per_pixel != 3 || !COLOUR.contains(&layout.photometric.as_str()) {
        let photometric = match layout.photometric.as_str() {
            "" => "none".to_string(),
            other => other.to_string(),
        };
        return Err(Error::NotColourPhotograph {
            photometric,
            samples_per_pixel: layout.samples_per_pixel,
        });
    }
    if layout.bits_allocated != 8 || layout.bits_stored != 8 {
        return Err(Error::UnsupportedBitDepth {
            bits_allocated: layout.bits_allocated,
            bits_stored: layout.bits_stored,
        });
    }
    if layout.frames > 1 {
        return Err(Error::MultiFrame {
            frames: layout.frames,
        });
    }
    if u64::from(layout.width) * u64::from(layout.height) > limits.max_pixels {
        return Err(Error::ImageTooLarge {
            width: layout.width,
            height: layout.height,
            max_pixels: limits.max_pixels,
        });
    }
    Ok(layout)
}

/// A transfer syntax whose pixel data this build decodes; otherwise the refusal names it.
fn check_transfer_syntax(uid: &str) -> Result<()> {
    let unsupported = |name: &str| Error::UnsupportedTransferSyntax {
        uid: uid.to_string(),
        name: name.to_string(),
    };
    match TransferSyntaxRegistry.get(uid) {
        None => Err(unsupported("not a transfer syntax this build knows")),
        Some(ts) if !ts.can_decode_all() => Err(unsupported(ts.name())),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::DicomInfo;

    #[test]
    fn fields_name_what_the_answer_serialises() {
        let info = DicomInfo {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.77.1.7".into(),
            sop_class: None,
            modality: None,
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            body_site: None,
            laterality: None,
            patient_age: None,
            patient_sex: None,
        };
        let json = serde_json::to_string(&info).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut fields = DicomInfo::FIELDS.to_vec();
        keys.sort_unstable();
        fields.sort_unstable();
        assert_eq!(keys, fields);
        // Serialised in the declared order: positions rise along FIELDS.
        let at = |f: &str| json.find(&format!("\"{f}\"")).unwrap();
        assert!(
            DicomInfo::FIELDS.windows(2).all(|w| at(w[0]) < at(w[1])),
            "{json}"
        );
    }
}
