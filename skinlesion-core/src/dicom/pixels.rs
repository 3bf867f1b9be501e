//! One DICOM frame to RGB pixels.
//!
//! JPEG Baseline/Extended holding YCbCr (what dermatoscopes and the 2020 SIIM-ISIC release
//! write) is handed to the same JPEG decoder as a `.jpg` file, so a JPEG wrapped in DICOM gives
//! exactly the JPEG's answer; an RGB JPEG is decoded without a colour transform. Uncompressed
//! pixels are read here and RLE is unpacked here ([`super::rle`]). JPEG lossless and JPEG 2000
//! are decoded by dicom-pixeldata, asked for raw samples only: its YCbCr → RGB conversion
//! (0.10.1) adds the Cb term to green where it should subtract, and it cannot read
//! uncompressed YBR_FULL_422, so colour conversion is always done here.

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{PixelDecoder, PlanarConfiguration};
use image::{DynamicImage, RgbImage};

use super::header::Layout;
use super::rle::{self, RLE_LOSSLESS};
use crate::error::{Error, Result};
use crate::preprocess::{decode_image, decode_image_covering, DecodeLimits};

/// JPEG Baseline (Process 1) and Extended (Process 2 & 4).
const JPEG_LOSSY: [&str; 2] = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"];

/// Decodes the object's one frame (the header was checked) to RGB.
pub(super) fn decode_frame(
    object: &DefaultDicomObject,
    layout: &Layout,
    limits: &DecodeLimits,
    cover: Option<(u32, u32)>,
) -> Result<DynamicImage> {
    let element = object
        .element(tags::PIXEL_DATA)
        .map_err(|e| Error::Decode(format!("DICOM pixel data: {e}")))?;
    let jpeg_lossy = JPEG_LOSSY.contains(&layout.transfer_syntax.as_str());
    let image = match element.value().fragments() {
        Some(fragments) if jpeg_lossy && layout.photometric.starts_with("YBR_FULL") => {
            let image = match cover {
                Some(cover) => {
                    decode_image_covering(&first_frame(fragments, layout), limits, cover)?
                }
                None => decode_image(&first_frame(fragments, layout), limits)?,
            };
            check_jpeg_size(&image, layout, cover.is_some())?;
            return Ok(image);
        }
        Some(fragments) if jpeg_lossy && layout.photometric == "RGB" => {
            rgb_jpeg(&first_frame(fragments, layout), layout, limits)?
        }
        Some(fragments) if layout.transfer_syntax == RLE_LOSSLESS => {
            let (width, height) = (layout.width, layout.height);
            let planes = rle::decode(
                &first_frame(fragments, layout),
                3,
                (width * height) as usize,
            )?;
            to_rgb(&planes, width, height, &layout.photometric, true)?
        }
        Some(_) => library_frame(object, limits)?,
        None => {
            let bytes = element
                .to_bytes()
                .map_err(|e| Error::Decode(format!("DICOM pixel data: {e}")))?;
            let planar = planar(object);
            to_rgb(
                &bytes,
                layout.width,
                layout.height,
                &layout.photometric,
                planar,
            )?
        }
    };
    Ok(DynamicImage::ImageRgb8(image))
}

/// The first frame's encoded bytes: one frame may span fragments; of several frames, each is
/// one fragment.
fn first_frame(fragments: &[Vec<u8>], layout: &Layout) -> Vec<u8> {
    match layout.frames {
        1 => fragments.concat(),
        _ => fragments.first().cloned().unwrap_or_default(),
    }
}

/// A JPEG whose header says RGB: its samples are R, G and B as stored, with no YCbCr
/// transform (which a JPEG decoder assumes for three components without an Adobe marker).
fn rgb_jpeg(jpeg: &[u8], layout: &Layout, limits: &DecodeLimits) -> Result<RgbImage> {
    let mut decoder = jpeg_decoder::Decoder::new(jpeg);
    // `RGB` interleaves the components as stored (`None` would leave them line by line).
    decoder.set_color_transform(jpeg_decoder::ColorTransform::RGB);
    let most = limits.max_pixels.saturating_mul(3);
    decoder.set_max_decoding_buffer_size(usize::try_from(most).unwrap_or(usize::MAX));
    let pixels = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder.decode()))
        .map_err(|_| Error::Decode("the JPEG decoder failed on this data".into()))?
        .map_err(|e| Error::Decode(format!("the JPEG in the DICOM object: {e}")))?;
    let info = decoder
        .info()
        .filter(|i| i.pixel_format == jpeg_decoder::PixelFormat::RGB24);
    let info =
        info.ok_or_else(|| Error::Decode("the JPEG in the DICOM object is not RGB".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    if (width, height) != (layout.width, layout.height) {
        return Err(Error::Decode(format!(
            "the JPEG in the DICOM object is {width}x{height}, its header says {}x{}",
            layout.width, layout.height
        )));
    }
    to_rgb(&pixels, width, height, "RGB", false)
}

/// The JPEG inside must be the image the header describes (a reduced-scale decode is smaller).
fn check_jpeg_size(image: &DynamicImage, layout: &Layout, scaled: bool) -> Result<()> {
    let (w, h) = (image.width(), image.height());
    let full = (w, h) == (layout.width, layout.height);
    let smaller = scaled && w <= layout.width && h <= layout.height;
    if full || smaller {
        return Ok(());
    }
    Err(Error::Decode(format!(
        "the JPEG in the DICOM object is {w}x{h}, its header says {}x{}",
        layout.width, layout.height
    )))
}

/// Planar Configuration (0028,0006): 1 when each colour is stored as its own plane.
fn planar(object: &DefaultDicomObject) -> bool {
    let value = object
        .element_opt(tags::PLANAR_CONFIGURATION)
        .ok()
        .flatten();
    value.and_then(|e| e.to_int::<u16>().ok()) == Some(1)
}

/// An encapsulated frame decoded by dicom-pixeldata to raw samples, converted here.
fn library_frame(object: &DefaultDicomObject, limits: &DecodeLimits) -> Result<RgbImage> {
    let decoded = std::panic::catch_unwind(|| object.decode_pixel_data_frame(0))
        .map_err(|_| Error::Decode("the DICOM pixel decoder failed on this data".into()))?
        .map_err(|e| Error::Decode(format!("DICOM pixel data: {e}")))?;
    let (width, height) = (decoded.columns(), decoded.rows());
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(Error::ImageTooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    let samples = decoded
        .frame_data(0)
        .map_err(|e| Error::Decode(format!("DICOM pixel data: {e}")))?;
    // dicom-pixeldata's `PixelFirst` is the standard's planar configuration 1: plane by plane.
    let planar = decoded.planar_configuration() == PlanarConfiguration::PixelFirst;
    let photometric = decoded.photometric_interpretation().as_str().to_string();
    to_rgb(samples, width, height, &photometric, planar)
}

/// 8-bit samples of one frame in `photometric` (RGB, YBR_FULL, YBR_FULL_422; by pixel or,
/// when `planar`, by plane) to RGB.
fn to_rgb(
    samples: &[u8],
    width: u32,
    height: u32,
    photometric: &str,
    planar: bool,
) -> Result<RgbImage> {
    let pixels = width as usize * height as usize;
    let interleaved = match photometric {
        "YBR_FULL_422" => expand_422(samples, width as usize, height as usize)?,
        _ => {
            let samples = samples
                .get(..pixels * 3)
                .ok_or_else(|| short(samples.len(), pixels * 3))?;
            if planar {
                interleave_planes(samples)
            } else {
                samples.to_vec()
            }
        }
    };
    let mut rgb = interleaved;
    if photometric.starts_with("YBR_FULL") {
        rgb.chunks_exact_mut(3).for_each(ybr_full_to_rgb);
    }
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| short(0, pixels * 3))
}

fn short(have: usize, need: usize) -> Error {
    Error::Decode(format!(
        "DICOM pixel data too short: {have} bytes for a frame of {need}"
    ))
}

/// Planes (all R, all G, all B) to pixels (RGB RGB …).
fn interleave_planes(samples: &[u8]) -> Vec<u8> {
    let plane = samples.len() / 3;
    let (first, rest) = samples.split_at(plane);
    let (second, third) = rest.split_at(plane);
    let pixels = first.iter().zip(second).zip(third);
    pixels.flat_map(|((&a, &b), &c)| [a, b, c]).collect()
}

/// YBR_FULL_422 (Y Y Cb Cr for each pair of pixels on a row) to YBR_FULL (Y Cb Cr each).
fn expand_422(samples: &[u8], width: usize, height: usize) -> Result<Vec<u8>> {
    if width % 2 != 0 {
        return Err(Error::Decode(format!(
            "YBR_FULL_422 needs an even number of columns, the image has {width}"
        )));
    }
    let need = width * height * 2;
    let samples = samples
        .get(..need)
        .ok_or_else(|| short(samples.len(), need))?;
    let pairs = samples.chunks_exact(4);
    Ok(pairs
        .flat_map(|p| [p[0], p[2], p[3], p[1], p[2], p[3]])
        .collect())
}

/// One YCbCr (full range, ITU-R BT.601) pixel to RGB, with the arithmetic pydicom uses (f32,
/// rounded half up, clipped), so that uncompressed pixels agree exactly.
fn ybr_full_to_rgb(pixel: &mut [u8]) {
    let y = f32::from(pixel[0]);
    let cb = f32::from(pixel[1]) - 128.0;
    let cr = f32::from(pixel[2]) - 128.0;
    let round = |v: f32| (v + 0.5).floor().clamp(0.0, 255.0) as u8;
    pixel[0] = round(y + 1.402 * cr);
    pixel[1] = round(y + (-0.114 * 1.772 / 0.587) * cb + (-0.299 * 1.402 / 0.587) * cr);
    pixel[2] = round(y + 1.772 * cb);
}

/// The first frame of a DICOM file, a multi-frame object's included, without the checks
/// classification makes: for tests that compare decoded colours with another reader's.
#[cfg(feature = "training")]
pub fn decode_first_frame(bytes: &[u8]) -> Result<DynamicImage> {
    let object = super::header::parse(bytes.get(super::MARKER_AT..).unwrap_or_default())?;
    let layout = Layout::read(&object)?;
    decode_frame(&object, &layout, &DecodeLimits::default(), None)
}
