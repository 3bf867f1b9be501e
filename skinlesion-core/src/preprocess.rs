//! Image decoding and preprocessing: the one path from an image to the network's input tensor,
//! shared by inference and training so the two cannot drift apart.

use std::io::Cursor;

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// Limits applied before and while decoding untrusted images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most pixels (width × height) an image may declare; checked from the header, before any
    /// pixel buffer is allocated, so a decompression bomb is refused cheaply.
    pub max_pixels: u64,
    /// Most bytes of encoded input accepted.
    pub max_bytes: u64,
}

impl DecodeLimits {
    /// 50 megapixels: more than any dermatoscope or phone camera produces.
    pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;
    /// 64 MiB of encoded input.
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_pixels: Self::DEFAULT_MAX_PIXELS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
        }
    }
}

/// How an image of any aspect ratio is brought to the network's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizePolicy {
    /// Resize to exactly width × height, changing the aspect ratio if needed (keeps the whole field
    /// of view, as the original app did).
    Stretch,
    /// Cut the largest centred region with the target aspect ratio, then resize it.
    CenterCrop,
}

/// Colour normalisation of the resized pixels, before `mean`/`std`: part of what a model was
/// trained on, so it is stored in its metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColourConstancy {
    /// The pixels as the camera recorded them.
    #[default]
    None,
    /// Shades of Gray (Finlayson & Trezzi 2004, p = 6; used for dermoscopy by Barata et al.
    /// 2015 and the ISIC challenges' winners): each channel is scaled so that the image's
    /// p-norm estimate of the illuminant becomes a fixed grey (0.8 on the 0–1 scale). Cancels
    /// the colour cast and exposure of a camera or lamp: any per-channel gain, overall
    /// brightness included, leaves the result unchanged, up to saturation and rounding.
    ShadesOfGray,
}

impl std::str::FromStr for ColourConstancy {
    type Err = Error;

    /// The manifest's spelling: `none` or `shades-of-gray`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Self::None),
            "shades-of-gray" => Ok(Self::ShadesOfGray),
            _ => Err(Error::Config(format!(
                "unknown colour constancy {s:?}: use none or shades-of-gray"
            ))),
        }
    }
}

impl ColourConstancy {
    fn is_none(&self) -> bool {
        *self == Self::None
    }

    /// The per-channel factors applied to `rgb` (on the 0–1 scale, before clamping to 1).
    pub fn gains(self, rgb: &RgbImage) -> [f32; 3] {
        match self {
            Self::None => [1.0; 3],
            Self::ShadesOfGray => {
                let mut sums = [0f64; 3];
                for px in rgb.pixels() {
                    for (sum, &v) in sums.iter_mut().zip(&px.0) {
                        *sum += (f64::from(v) / 255.0).powi(6);
                    }
                }
                let n = f64::from(rgb.width()) * f64::from(rgb.height());
                let illuminant = sums.map(|s| (s / n.max(1.0)).powf(1.0 / 6.0));
                // Close to the brightest skin, so that little saturates.
                const GREY: f64 = 0.8;
                // A channel with no light at all cannot be corrected; and no cast is stronger
                // than 5x, which keeps noise in a nearly empty channel from being amplified.
                illuminant.map(|e| match e > 0.0 {
                    true => (GREY / e).clamp(0.2, 5.0) as f32,
                    false => 1.0,
                })
            }
        }
    }
}

/// What the network expects as input; part of the model's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
    pub resize: ResizePolicy,
    /// Per-channel (R, G, B) mean, on the 0–1 scale, subtracted before dividing by `std`.
    pub mean: [f32; 3],
    /// Per-channel (R, G, B) standard deviation, on the 0–1 scale.
    pub std: [f32; 3],
    /// Colour normalisation before `mean`/`std` (absent from a manifest: none).
    #[serde(default, skip_serializing_if = "ColourConstancy::is_none")]
    pub colour_constancy: ColourConstancy,
}

impl InputSpec {
    /// Checks that the spec can be applied at all.
    pub fn validate(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 || self.width > 4096 || self.height > 4096 {
            return Err(Error::MetadataMismatch(format!(
                "input size {}x{} is outside 1..=4096",
                self.width, self.height
            )));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(Error::MetadataMismatch(format!(
                "normalisation mean {:?} / std {:?} must be finite with std > 0",
                self.mean, self.std
            )));
        }
        Ok(())
    }
}

/// Decodes encoded image bytes (JPEG, PNG, TIFF, BMP, WebP, GIF) into an upright image.
///
/// Enforces `limits` (input bytes, then declared pixels before allocating) and applies the EXIF
/// orientation, so a photo taken with the camera on its side is classified upright.
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<DynamicImage> {
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
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::Decode(e.to_string()))?;
    if reader.format().is_none() {
        return Err(Error::UnsupportedFormat(
            "not a recognised image; expected JPEG, PNG, TIFF, BMP, WebP or GIF".into(),
        ));
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_has_end_marker(bytes) {
        // The JPEG decoder grey-fills missing data instead of failing; a classifier must not
        // guess from half an image.
        return Err(Error::Decode(
            "truncated JPEG: the data ends before the end-of-image marker".into(),
        ));
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
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Whether a JPEG's entropy-coded data reaches an end-of-image marker (FF D9).
///
/// Walks the marker segments by their lengths (so an EXIF thumbnail's own end marker does not
/// count) to the first start-of-scan, then looks for FF D9: inside scan data a 0xFF byte is
/// always followed by 0x00 or a restart marker, so FF D9 there is the real end.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let mut i = 2; // after SOI
    while i + 1 < bytes.len() {
        if bytes[i] != 0xFF {
            return false;
        }
        let marker = bytes[i + 1];
        match marker {
            0xFF => i += 1, // fill byte
            0xDA => return bytes[i + 2..].windows(2).any(|w| w == [0xFF, 0xD9]),
            0x01 | 0xD0..=0xD7 => i += 2,
            _ => {
                let Some(len) = bytes.get(i + 2..i + 4) else {
                    return false;
                };
                i += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
            }
        }
    }
    false
}

fn image_error(e: ImageError) -> Error {
    match e {
        ImageError::Unsupported(u) => Error::UnsupportedFormat(u.to_string()),
        ImageError::Limits(l) => Error::Decode(format!("decoder limit exceeded: {l}")),
        other => Error::Decode(other.to_string()),
    }
}

/// Channel layout of a raw pixel buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Gray8,
    Rgb8,
    Rgba8,
}

impl PixelFormat {
    pub const fn channels(self) -> usize {
        match self {
            PixelFormat::Gray8 => 1,
            PixelFormat::Rgb8 => 3,
            PixelFormat::Rgba8 => 4,
        }
    }
}

/// A borrowed buffer of raw interleaved 8-bit pixels (as cameras, scanners, numpy arrays and
/// C callers hold them): `height` rows of `stride` bytes, each starting with `width` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPixels<'a> {
    pub data: &'a [u8],
    pub width: u32,
    pub height: u32,
    /// Bytes from the start of one row to the next; at least `width × channels`.
    pub stride: usize,
    pub format: PixelFormat,
}

impl<'a> RawPixels<'a> {
    /// Tightly packed rows (`stride = width × channels`).
    pub fn packed(data: &'a [u8], width: u32, height: u32, format: PixelFormat) -> Self {
        Self {
            data,
            width,
            height,
            stride: width as usize * format.channels(),
            format,
        }
    }

    /// Copies the pixels into an image, checking every size against the buffer and `limits`.
    pub fn to_image(&self, limits: &DecodeLimits) -> Result<DynamicImage> {
        image_from_pixels(
            self.data,
            self.width,
            self.height,
            self.stride,
            self.format,
            limits,
        )
    }
}

/// Builds an image from raw interleaved 8-bit pixels, row by row with `stride` bytes per row
/// (at least `width × channels`), checking every size against `data` and `limits`.
pub fn image_from_pixels(
    data: &[u8],
    width: u32,
    height: u32,
    stride: usize,
    format: PixelFormat,
    limits: &DecodeLimits,
) -> Result<DynamicImage> {
    if width == 0 || height == 0 {
        return Err(Error::InvalidPixels(format!(
            "image has no pixels ({width}x{height})"
        )));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(Error::ImageTooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
        });
    }
    let row = width as usize * format.channels();
    if stride < row {
        return Err(Error::InvalidPixels(format!(
            "stride {stride} is less than width × channels = {row}"
        )));
    }
    // The last row needs only `row` bytes, not a whole stride.
    let needed = stride
        .checked_mul(height as usize - 1)
        .and_then(|n| n.checked_add(row))
        .ok_or_else(|| Error::InvalidPixels("stride × height overflows".into()))?;
    if data.len() < needed {
        return Err(Error::InvalidPixels(format!(
            "buffer has {} bytes, {width}x{height} with stride {stride} needs {needed}",
            data.len()
        )));
    }
    let mut packed = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        packed.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    let image = match format {
        PixelFormat::Gray8 => image::GrayImage::from_raw(width, height, packed).map(Into::into),
        PixelFormat::Rgb8 => image::RgbImage::from_raw(width, height, packed).map(Into::into),
        PixelFormat::Rgba8 => image::RgbaImage::from_raw(width, height, packed).map(Into::into),
    };
    image.ok_or_else(|| Error::InvalidPixels("buffer does not match its dimensions".into()))
}

/// Converts to 8-bit RGB and brings the image to the spec's size: the resampling step alone,
/// for callers (training) that cache resized pixels.
///
/// Grey images are replicated to three channels, alpha is dropped, 16-bit and float images are
/// scaled to 8 bits. Resampling is bilinear with antialiasing (support widened by the
/// downscale factor), as PIL's `Image.resize(..., BILINEAR)` does.
pub fn resize_rgb(image: &DynamicImage, spec: &InputSpec) -> RgbImage {
    let rgb = image.to_rgb8();
    let (w, h) = rgb.dimensions();
    let rgb = match spec.resize {
        ResizePolicy::Stretch => rgb,
        ResizePolicy::CenterCrop => {
            let (cx, cy, cw, ch) = center_crop_box(w, h, spec.width, spec.height);
            imageops::crop_imm(&rgb, cx, cy, cw, ch).to_image()
        }
    };
    if rgb.dimensions() == (spec.width, spec.height) {
        return rgb;
    }
    imageops::resize(&rgb, spec.width, spec.height, FilterType::Triangle)
}

/// The largest centred box of the target aspect ratio: (x, y, width, height).
pub fn center_crop_box(w: u32, h: u32, target_w: u32, target_h: u32) -> (u32, u32, u32, u32) {
    // Compare w/h with target_w/target_h without floating point.
    let (w64, h64, tw, th) = (w as u64, h as u64, target_w as u64, target_h as u64);
    if w64 * th > h64 * tw {
        let cw = ((h64 * tw + th / 2) / th).clamp(1, w64) as u32;
        ((w - cw) / 2, 0, cw, h)
    } else {
        let ch = ((w64 * th + tw / 2) / tw).clamp(1, h64) as u32;
        (0, (h - ch) / 2, w, ch)
    }
}

/// Normalises resized RGB pixels into a 1×3×H×W `f32` tensor (NCHW): the spec's colour
/// constancy, then `mean`/`std`.
pub fn normalize(rgb: &RgbImage, spec: &InputSpec) -> Tensor {
    let (w, h) = rgb.dimensions();
    let plane = (w * h) as usize;
    let mut chw = vec![0f32; 3 * plane];
    let gains = spec.colour_constancy.gains(rgb);
    // Per channel: (min(p / 255 * gain, 1) - mean) / std.
    let recip_std: [f32; 3] = std::array::from_fn(|c| 1.0 / spec.std[c]);
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            let v = (f32::from(px.0[c]) / 255.0 * gains[c]).min(1.0);
            chw[c * plane + i] = (v - spec.mean[c]) * recip_std[c];
        }
    }
    Tensor::from_slice(&chw)
        .view([1, 3, h as i64, w as i64])
        .to_kind(Kind::Float)
}

/// The preprocessing function: an already decoded image to the network's 1×3×H×W input.
///
/// Training calls this very function, so a model always sees at inference exactly what it was
/// trained on.
pub fn preprocess_image(image: &DynamicImage, spec: &InputSpec) -> Tensor {
    normalize(&resize_rgb(image, spec), spec)
}

/// Encoded bytes all the way to the network's input: decode (within `limits`), EXIF orientation,
/// RGB, resize per `spec`, normalise, 1×3×H×W `f32`.
pub fn preprocess(bytes: &[u8], spec: &InputSpec, limits: &DecodeLimits) -> Result<Tensor> {
    Ok(preprocess_image(&decode_image(bytes, limits)?, spec))
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

/// Applies `prepare` to every item on up to `threads` scoped threads (contiguous chunks),
/// keeping order: how the classifier prepares a batch and training decodes its data set. A
/// panic in `prepare` (a decoder bug) fails that chunk's items, never the caller.
pub fn prepare_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    prepare: impl Fn(&T) -> Result<R> + Sync,
) -> Vec<Result<R>> {
    let workers = threads.min(items.len());
    if workers <= 1 {
        return items.iter().map(&prepare).collect();
    }
    let chunk = items.len().div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let handle = s.spawn(|| part.iter().map(&prepare).collect::<Vec<_>>());
                (part.len(), handle)
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(len, h)| {
                h.join().unwrap_or_else(|_| {
                    (0..len)
                        .map(|_| Err(Error::Decode("the image decoder failed internally".into())))
                        .collect()
                })
            })
            .collect()
    })
}

/// The same N×C×H×W tensor stored channels-last (N×H×W×C in memory), the layout libtorch's
/// CPU convolutions run fastest on: the shipped EfficientNet's forward pass took 16 % less
/// time on one thread (`benches/RESULTS.md`, server load). Convolutions keep the layout, so
/// one copy of the input converts the whole network.
pub fn channels_last(batch: &Tensor) -> Tensor {
    batch
        .permute([0, 2, 3, 1])
        .contiguous()
        .permute([0, 3, 1, 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_preparation_keeps_order_and_contains_a_panicking_item() {
        let items: Vec<u32> = (0..37).collect();
        for threads in [1, 2, 5, 64] {
            let out = prepare_parallel(&items, threads, |&i| Ok(i * 2));
            let got: Vec<u32> = out.into_iter().map(|r| r.unwrap()).collect();
            assert_eq!(got, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        }
        // A panic fails its own chunk (here 10 items of 4 chunks), never the caller.
        let out = prepare_parallel(&items, 4, |&i| {
            if i == 15 {
                panic!("decoder bug");
            }
            Ok(i)
        });
        let failed: Vec<usize> = (0..out.len()).filter(|&k| out[k].is_err()).collect();
        assert_eq!(failed, (10..20).collect::<Vec<_>>());
        assert!(matches!(out[15], Err(Error::Decode(_))));
    }

    fn spec(colour_constancy: ColourConstancy) -> InputSpec {
        InputSpec {
            width: 32,
            height: 24,
            colour_constancy,
            ..crate::testing::small_input()
        }
    }

    /// A lesion-like picture: a brownish disc on pinkish skin, with texture; no channel
    /// above 200, so gains up to 1.25 do not saturate.
    fn picture(gain: [f32; 3]) -> RgbImage {
        RgbImage::from_fn(32, 24, |x, y| {
            let (dx, dy) = (x as f32 - 16.0, y as f32 - 12.0);
            let inside = dx * dx + dy * dy < 64.0;
            let base: [f32; 3] = if inside {
                [120.0, 80.0, 60.0]
            } else {
                [200.0, 150.0, 140.0]
            };
            let texture = ((x * 7 + y * 13) % 17) as f32;
            image::Rgb(std::array::from_fn(|c| {
                ((base[c] - texture) * gain[c]).round() as u8
            }))
        })
    }

    fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn shades_of_gray_cancels_a_colour_cast() {
        let sog = spec(ColourConstancy::ShadesOfGray);
        let plain = spec(ColourConstancy::None);
        let original = picture([1.0; 3]);
        for cast in [[1.2, 1.0, 0.8], [0.8, 1.0, 1.25], [0.9, 0.9, 0.9]] {
            let tinted = picture(cast);
            // Only the rounding of the tinted pixels to 8 bits remains (under 1/255 before the
            // division by std, about 0.02 after it).
            let corrected = max_difference(&normalize(&original, &sog), &normalize(&tinted, &sog));
            assert!(corrected < 0.03, "{cast:?}: {corrected}");
            let raw = max_difference(&normalize(&original, &plain), &normalize(&tinted, &plain));
            assert!(raw > 0.15, "{cast:?}: {raw}");
        }
        // A grey picture gets the same gain in every channel. And no colour constancy is no
        // change at all.
        let grey = RgbImage::from_fn(8, 8, |x, y| image::Rgb([(x * 30 + y) as u8; 3]));
        let [r, g, b] = ColourConstancy::ShadesOfGray.gains(&grey);
        assert!(r == g && g == b && r > 1.0, "{r} {g} {b}");
        assert_eq!(ColourConstancy::None.gains(&original), [1.0; 3]);
        // A channel without any light is left alone rather than divided by zero.
        let no_blue = RgbImage::from_pixel(4, 4, image::Rgb([100, 50, 0]));
        let gains = ColourConstancy::ShadesOfGray.gains(&no_blue);
        assert!(
            gains.iter().all(|g| g.is_finite()) && gains[2] == 1.0,
            "{gains:?}"
        );
    }

    #[test]
    fn colour_constancy_is_stored_only_when_used() {
        let json = serde_json::to_value(spec(ColourConstancy::None)).unwrap();
        assert!(
            json.get("colour_constancy").is_none(),
            "older readers keep working"
        );
        let json = serde_json::to_value(spec(ColourConstancy::ShadesOfGray)).unwrap();
        assert_eq!(json["colour_constancy"], "shades-of-gray");
        let back: InputSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back.colour_constancy, ColourConstancy::ShadesOfGray);
        let mut older = serde_json::to_value(spec(ColourConstancy::None)).unwrap();
        older.as_object_mut().unwrap().remove("colour_constancy");
        let back: InputSpec = serde_json::from_value(older.clone()).unwrap();
        assert_eq!(back.colour_constancy, ColourConstancy::None);
        older["colour_constancy"] = "retinex".into();
        assert!(serde_json::from_value::<InputSpec>(older).is_err());
        let parse = |s: &str| s.parse::<ColourConstancy>().ok();
        assert_eq!(parse("shades-of-gray"), Some(ColourConstancy::ShadesOfGray));
        assert_eq!(parse("none"), Some(ColourConstancy::None));
        assert!(matches!(
            "grey".parse::<ColourConstancy>(),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn center_crop_keeps_the_middle() {
        assert_eq!(center_crop_box(200, 150, 128, 128), (25, 0, 150, 150));
        assert_eq!(center_crop_box(150, 200, 128, 128), (0, 25, 150, 150));
        assert_eq!(center_crop_box(128, 128, 128, 128), (0, 0, 128, 128));
        assert_eq!(center_crop_box(1, 10_000, 128, 128), (0, 4999, 1, 1));
    }

    #[test]
    fn pixels_need_consistent_sizes() {
        let limits = DecodeLimits::default();
        let data = vec![7u8; 4 * 3 * 2 + 4];
        let img = image_from_pixels(&data, 4, 2, 16, PixelFormat::Rgb8, &limits).unwrap();
        assert_eq!((img.width(), img.height()), (4, 2));
        let short = image_from_pixels(&data, 4, 3, 16, PixelFormat::Rgb8, &limits);
        assert!(matches!(short, Err(Error::InvalidPixels(_))));
        let narrow = image_from_pixels(&data, 4, 2, 11, PixelFormat::Rgb8, &limits);
        assert!(matches!(narrow, Err(Error::InvalidPixels(_))));
        let empty = image_from_pixels(&data, 0, 2, 12, PixelFormat::Rgb8, &limits);
        assert!(matches!(empty, Err(Error::InvalidPixels(_))));
        let huge = image_from_pixels(&data, 100_000, 100_000, 300_000, PixelFormat::Rgb8, &limits);
        assert!(matches!(huge, Err(Error::ImageTooLarge { .. })));
        let overflow = image_from_pixels(
            &data,
            1,
            u32::MAX,
            usize::MAX,
            PixelFormat::Gray8,
            &DecodeLimits {
                max_pixels: u64::MAX,
                max_bytes: 1,
            },
        );
        assert!(matches!(overflow, Err(Error::InvalidPixels(_))));
    }
}
