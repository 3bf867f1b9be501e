//! An image to the network's input tensor: resize, colour constancy, normalise.

use image::imageops;
use image::{DynamicImage, RgbImage};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::resample::resize_region;
#[cfg(feature = "training")]
use super::{decode_image, DecodeLimits};
use crate::error::{Error, Result};

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
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
    /// How an image of another aspect ratio is brought to this size.
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

/// Converts to 8-bit RGB and brings the image to the spec's size: the resampling step alone,
/// for callers (training) that cache resized pixels.
///
/// Grey images are replicated to three channels, alpha is dropped, 16-bit and float images are
/// scaled to 8 bits. Resampling is bilinear with antialiasing (support widened by the
/// downscale factor), as PIL's `Image.resize(..., BILINEAR)` does.
pub fn resize_rgb(image: &DynamicImage, spec: &InputSpec) -> RgbImage {
    let converted;
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => {
            converted = other.to_rgb8();
            &converted
        }
    };
    let (w, h) = rgb.dimensions();
    let region = match spec.resize {
        ResizePolicy::Stretch => (0, 0, w, h),
        ResizePolicy::CenterCrop => center_crop_box(w, h, spec.width, spec.height),
    };
    let (x, y, cw, ch) = region;
    if (cw, ch) == (spec.width, spec.height) {
        return imageops::crop_imm(rgb, x, y, cw, ch).to_image();
    }
    resize_region(rgb, region, spec.width, spec.height)
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
    // Written in place: `Tensor::from_slice` zero-fills first, and libtorch fills in parallel,
    // which would give every thread that prepares images a libgomp thread team of its own
    // (once teams outnumber the cores, every multi-threaded pass runs about 2× slower).
    let tensor = Tensor::empty(
        [1, 3, i64::from(h), i64::from(w)],
        (Kind::Float, Device::Cpu),
    );
    if plane == 0 {
        return tensor;
    }
    // SAFETY: a new contiguous f32 CPU tensor of 3 × plane elements, not shared until returned.
    let data = tensor.data_ptr().cast::<f32>();
    let chw = unsafe { std::slice::from_raw_parts_mut(data, 3 * plane) };
    let gains = spec.colour_constancy.gains(rgb);
    // Per channel: (min(p / 255 * gain, 1) - mean) / std.
    let recip_std: [f32; 3] = std::array::from_fn(|c| 1.0 / spec.std[c]);
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            let v = (f32::from(px.0[c]) / 255.0 * gains[c]).min(1.0);
            chw[c * plane + i] = (v - spec.mean[c]) * recip_std[c];
        }
    }
    tensor
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
#[cfg(feature = "training")]
pub fn preprocess(bytes: &[u8], spec: &InputSpec, limits: &DecodeLimits) -> Result<Tensor> {
    Ok(preprocess_image(&decode_image(bytes, limits)?, spec))
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
}
