//! DICOM in: a hospital's skin photograph read straight from its PACS file.
//!
//! A DICOM Part 10 file is recognised by its content (the `DICM` marker after the 128-byte
//! preamble), whatever its name or declared type. [`header`] checks what the object holds
//! before any pixel is decoded (typed refusals: no pixel data, an encoding, a photometric
//! interpretation or a bit depth this library cannot use, several frames, too many pixels) and
//! keeps the few attributes an answer may carry ([`DicomInfo`]); [`pixels`] decodes the one
//! frame to RGB. Nothing of the header is logged or written anywhere: it is patient data.

mod header;
mod lengths;
mod pixels;
mod rle;

use image::DynamicImage;

use crate::error::Result;
use crate::preprocess::DecodeLimits;

pub use header::DicomInfo;

/// Offset of the `DICM` marker: a DICOM file begins with a 128-byte preamble.
const MARKER_AT: usize = 128;

/// True when `bytes` is a DICOM Part 10 file (the `DICM` marker after the preamble).
pub(crate) fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(MARKER_AT..MARKER_AT + 4) == Some(b"DICM")
}

/// Decodes a DICOM file's one frame to an RGB image, with what the answer may carry about it.
///
/// `cover` is the size the picture has to cover (as for a JPEG): JPEG-in-DICOM goes through
/// the same decoder, at the same reduced scale, as the JPEG it wraps.
pub(crate) fn decode(
    bytes: &[u8],
    limits: &DecodeLimits,
    cover: Option<(u32, u32)>,
) -> Result<(DynamicImage, DicomInfo)> {
    let object = header::parse(&bytes[MARKER_AT..])?;
    let layout = header::check(&object, limits)?;
    let image = pixels::decode_frame(&object, &layout, limits, cover)?;
    Ok((image, DicomInfo::read(&object)))
}

#[cfg(feature = "training")]
pub use pixels::decode_first_frame;
