//! Raw pixel buffers from callers that decoded the image themselves.

use image::DynamicImage;

use super::DecodeLimits;
use crate::error::{Error, Result};

/// Channel layout of a raw pixel buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// One byte per pixel: grey.
    Gray8,
    /// Three bytes per pixel: red, green, blue.
    Rgb8,
    /// Four bytes per pixel: red, green, blue, alpha (ignored).
    Rgba8,
}

impl PixelFormat {
    /// Bytes per pixel.
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
    /// The pixels, row after row.
    pub data: &'a [u8],
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Bytes from the start of one row to the next; at least `width × channels`.
    pub stride: usize,
    /// The channel layout.
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

#[cfg(test)]
mod tests {
    use super::*;

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
                ..DecodeLimits::default()
            },
        );
        assert!(matches!(overflow, Err(Error::InvalidPixels(_))));
    }
}
