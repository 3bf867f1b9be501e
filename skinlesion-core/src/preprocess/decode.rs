//! Untrusted bytes to an upright image, within limits.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader};

use super::jpeg_reduced::decode_reduced;
use crate::dicom::{self, DicomInfo};
use crate::error::{Error, Result};

/// Limits applied before and while decoding untrusted images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most pixels (width × height) an image may declare; checked from the header, before any
    /// pixel buffer is allocated, so a decompression bomb is refused cheaply.
    pub max_pixels: u64,
    /// Most bytes of encoded input accepted.
    pub max_bytes: u64,
    /// Most scans a JPEG may have. A progressive JPEG's decoding work grows with its scans
    /// (about 0.6 ms each at 12 megapixels), and the format allows thousands in a small file;
    /// counted from the markers before either decoder runs.
    pub max_jpeg_scans: u32,
}

impl DecodeLimits {
    /// 50 megapixels: more than any dermatoscope or phone camera produces.
    pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;
    /// 64 MiB of encoded input.
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
    /// 100 scans: libjpeg's `cjpeg` writes at most 97, cameras and other encoders about 10,
    /// and the pure-Rust decoder (zune-jpeg) stops at 100 whatever is asked, so a higher limit
    /// would only reach libjpeg-turbo's reduced-scale path.
    pub const DEFAULT_MAX_JPEG_SCANS: u32 = 100;
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: Self::DEFAULT_MAX_PIXELS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_jpeg_scans: Self::DEFAULT_MAX_JPEG_SCANS,
        }
    }
}

/// Decodes encoded image bytes (JPEG, PNG, TIFF, BMP, WebP, GIF, or a DICOM file's one colour
/// frame) into an upright image.
///
/// Enforces `limits` (input bytes, then declared pixels before allocating) and applies the EXIF
/// orientation, so a photo taken with the camera on its side is classified upright.
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<DynamicImage> {
    decode_with_header(bytes, limits, None).map(|(image, _)| image)
}

/// [`decode_image`] (within `cover`, see [`decode_image_covering`]), with what a DICOM file
/// said about itself.
pub(crate) fn decode_with_header(
    bytes: &[u8],
    limits: &DecodeLimits,
    cover: Option<(u32, u32)>,
) -> Result<(DynamicImage, Option<DicomInfo>)> {
    check_length(bytes, limits)?;
    if dicom::is_dicom(bytes) {
        let (image, info) = dicom::decode(bytes, limits, cover)?;
        return Ok((image, Some(info)));
    }
    Ok((decode(bytes, limits, cover)?, None))
}

/// [`decode_image`] for a picture that only has to cover `cover` (width, height, upright): a
/// JPEG at least twice as large is decoded at the smallest DCT scale (1/2, 1/4 or 1/8) whose
/// result still covers it, which skips most of the work of a phone's 12-megapixel photograph
/// (the network sees 192 pixels a side). Classification decodes this way; an explanation,
/// whose heatmap is in the image's own pixels, decodes in full.
pub fn decode_image_covering(
    bytes: &[u8],
    limits: &DecodeLimits,
    cover: (u32, u32),
) -> Result<DynamicImage> {
    decode_with_header(bytes, limits, Some(cover)).map(|(image, _)| image)
}

fn check_length(bytes: &[u8], limits: &DecodeLimits) -> Result<()> {
    if bytes.is_empty() {
        return Err(Error::EmptyInput);
    }
    let len = bytes.len() as u64;
    if len > limits.max_bytes {
        return Err(Error::InputTooLarge {
            bytes: len,
            max_bytes: limits.max_bytes,
        });
    }
    Ok(())
}

/// The image formats (everything but DICOM), lengths checked.
fn decode(bytes: &[u8], limits: &DecodeLimits, cover: Option<(u32, u32)>) -> Result<DynamicImage> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Decode(e.to_string()))?;
    if reader.format().is_none() {
        return Err(Error::UnsupportedFormat(
            "not a recognised image; expected JPEG, PNG, TIFF, BMP, WebP, GIF or DICOM".into(),
        ));
    }
    let jpeg = reader.format() == Some(image::ImageFormat::Jpeg);
    if jpeg {
        check_jpeg_structure(bytes, limits)?;
    }
    let mut reader = reader;
    // A second guard inside the decoder: no allocation beyond what the pixel limit allows
    // (16-bit RGBA is 8 bytes a pixel), whatever the header claimed.
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(1 << 20));
    reader.limits(decoder_limits);

    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(Error::ImageTooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(Error::Decode(format!(
            "image has no pixels ({width}x{height})"
        )));
    }
    // A broken EXIF block should not reject an otherwise good image: treat it as upright.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let scaled = cover.filter(|_| jpeg).and_then(|cover| {
        let cover = upright_to_stored(orientation, cover);
        // A second decoder meets untrusted bytes here: should it fail, the full decode (the
        // one that reports typed errors) answers instead.
        jpeg_scaled(bytes, (width, height), cover)
    });
    let mut image = match scaled {
        Some(image) => image,
        None => DynamicImage::from_decoder(decoder).map_err(image_error)?,
    };
    image.apply_orientation(orientation);
    Ok(image)
}

/// `cover` (upright width, height) in the stored image's axes: an orientation that turns the
/// picture by 90° makes its stored height the upright width.
fn upright_to_stored(orientation: Orientation, (width, height): (u32, u32)) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (height, width),
        _ => (width, height),
    }
}

/// A JPEG of `stored` size decoded at the smallest DCT scale whose result covers `cover`
/// (both in the stored axes) with [`SCALED_MARGIN`] to spare. `None` when no scale below 1
/// would, when the data is not 8-bit grey or colour (CMYK, 12-bit), or when libjpeg finds
/// anything wrong with it: the caller then decodes in full.
fn jpeg_scaled(bytes: &[u8], stored: (u32, u32), cover: (u32, u32)) -> Option<DynamicImage> {
    let scaled = |side: u32, eighths: u32| side.saturating_mul(eighths).div_ceil(8);
    let needed = |side: u32| side.saturating_mul(SCALED_MARGIN);
    let eighths = [1u8, 2, 4].into_iter().find(|&e| {
        let e = u32::from(e);
        scaled(stored.0, e) >= needed(cover.0) && scaled(stored.1, e) >= needed(cover.1)
    })?;
    decode_reduced(bytes, eighths)
}

/// How many times the network's input a reduced-scale decode keeps on each side, so that the
/// final resize still averages several decoded pixels into each input pixel as it does from
/// the full image (measured in the model card: answers and probabilities against the full
/// decode).
const SCALED_MARGIN: u32 = 4;

/// Refuses a JPEG whose data ends before its end-of-image marker (the decoders grey-fill
/// missing data instead of failing; a classifier must not guess from half an image) or that
/// has more than `limits.max_jpeg_scans` scans.
fn check_jpeg_structure(bytes: &[u8], limits: &DecodeLimits) -> Result<()> {
    let structure = jpeg_structure(bytes);
    if structure.scans > limits.max_jpeg_scans {
        return Err(Error::Decode(format!(
            "JPEG with more than {} scans (decoding work grows with each); at most {} accepted",
            limits.max_jpeg_scans, limits.max_jpeg_scans
        )));
    }
    if !structure.ends {
        return Err(Error::Decode(
            "truncated JPEG: the data ends before the end-of-image marker".into(),
        ));
    }
    Ok(())
}

/// What [`jpeg_structure`] found.
#[derive(Debug, PartialEq, Eq)]
struct JpegStructure {
    /// Start-of-scan markers.
    scans: u32,
    /// Whether the entropy-coded data reaches an end-of-image marker (FF D9).
    ends: bool,
}

/// Counts a JPEG's scans and looks for its end. Walks the marker segments by their lengths up
/// to the first start-of-scan (so an EXIF thumbnail's own markers do not count), then reads
/// the rest byte by byte: inside scan data a 0xFF byte is always followed by 0x00, a fill
/// byte or a restart marker, so any other FF xx there is a real marker, whose segment is
/// skipped by its length.
fn jpeg_structure(bytes: &[u8]) -> JpegStructure {
    let mut found = JpegStructure {
        scans: 0,
        ends: false,
    };
    let segment_end = |i: usize| {
        let len = bytes.get(i + 2..i + 4)?;
        Some(i + 2 + usize::from(u16::from_be_bytes([len[0], len[1]])))
    };
    let mut i = 2; // after SOI
    let mut in_scans = false;
    while i + 1 < bytes.len() {
        if bytes[i] != 0xFF {
            if !in_scans {
                return found;
            }
            i += 1; // entropy-coded data
            continue;
        }
        match bytes[i + 1] {
            0xFF => i += 1,                      // fill byte
            0x00 | 0x01 | 0xD0..=0xD7 => i += 2, // stuffed zero, TEM, restart
            0xD9 if in_scans => {
                found.ends = true;
                return found;
            }
            marker => {
                let Some(end) = segment_end(i) else {
                    return found;
                };
                if marker == 0xDA {
                    found.scans = found.scans.saturating_add(1);
                    in_scans = true;
                }
                i = end;
            }
        }
    }
    found
}

fn image_error(e: ImageError) -> Error {
    match e {
        ImageError::Unsupported(u) => Error::UnsupportedFormat(u.to_string()),
        ImageError::Limits(l) => Error::Decode(format!("decoder limit exceeded: {l}")),
        other => Error::Decode(other.to_string()),
    }
}

/// Reads an image file, refusing one longer than `limits.max_bytes` before reading it.
pub fn read_image_file(path: &std::path::Path, limits: &DecodeLimits) -> Result<Vec<u8>> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > limits.max_bytes {
        return Err(Error::InputTooLarge {
            bytes: len,
            max_bytes: limits.max_bytes,
        });
    }
    std::fs::read(path).map_err(io)
}
