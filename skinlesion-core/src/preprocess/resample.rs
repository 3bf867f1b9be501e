//! The one resampling step: bilinear with antialiasing (the triangle's support widened by the
//! downscale factor, as PIL's `Image.resize(..., BILINEAR)` does).
//!
//! The arithmetic is `image::imageops::resize(.., FilterType::Triangle)`'s, operation for
//! operation (the same f32 weights, sums in the same order, the same rounding), so every model
//! trained through that function sees the same bytes; the tests hold the two equal. What
//! differs is the memory walk: image's generic version reads one pixel at a time through a
//! bounds-checked view and keeps four f32 channels, which made a 1512×1512 region's resize to
//! 192×192 take 13 ms; here each pass runs over contiguous rows that the compiler vectorises,
//! and a crop is read in place instead of copied out first.

use image::RgbImage;

/// A region of an image: x, y, width, height.
pub(crate) type Region = (u32, u32, u32, u32);

/// `region` of `source` resampled to `width`×`height` (both at least 1; the region inside
/// `source` and not empty).
pub(crate) fn resize_region(
    source: &RgbImage,
    region: Region,
    width: u32,
    height: u32,
) -> RgbImage {
    let (x, y, w, h) = region;
    assert!(w > 0 && h > 0 && x + w <= source.width() && y + h <= source.height());
    let columns = vertical(source, region, height);
    horizontal(&columns, w as usize, width, height)
}

/// For each output coordinate along one axis: the first source index it reads and the
/// normalised weights of the source samples from there on.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// The taps of a `from` → `to` resampling along one axis, computed as image's `resize` does.
fn taps(from: u32, to: u32) -> Vec<Taps> {
    let ratio = from as f32 / to as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    let support = sratio; // the triangle's support is 1, widened by the downscale factor
    (0..to)
        .map(|out| {
            let centre = (out as f32 + 0.5) * ratio;
            let left = ((centre - support).floor() as i64).clamp(0, i64::from(from) - 1);
            let right = ((centre + support).ceil() as i64).clamp(left + 1, i64::from(from));
            // The kernel treats a pixel's centre as 0.
            let centre = centre - 0.5;
            let mut weights: Vec<f32> = (left..right)
                .map(|i| triangle((i as f32 - centre) / sratio))
                .collect();
            let mut sum = 0.0;
            for w in &weights {
                sum += w;
            }
            for w in &mut weights {
                *w /= sum;
            }
            Taps {
                first: left as usize,
                weights,
            }
        })
        .collect()
}

fn triangle(x: f32) -> f32 {
    if x.abs() < 1.0 {
        1.0 - x.abs()
    } else {
        0.0
    }
}

/// The vertical pass: `height` rows of the region's width, three f32 channels a pixel,
/// unrounded (image keeps this intermediate in f32 too).
fn vertical(source: &RgbImage, (x, y, w, h): Region, height: u32) -> Vec<f32> {
    let stride = source.width() as usize * 3;
    let row_len = w as usize * 3;
    let start = x as usize * 3;
    let raw = source.as_raw();
    let mut out = vec![0.0f32; row_len * height as usize];
    for (taps, acc) in taps(h, height).iter().zip(out.chunks_exact_mut(row_len)) {
        for (i, &weight) in taps.weights.iter().enumerate() {
            let row = (y as usize + taps.first + i) * stride + start;
            for (a, &p) in acc.iter_mut().zip(&raw[row..row + row_len]) {
                *a += f32::from(p) * weight;
            }
        }
    }
    out
}

/// The horizontal pass over the vertical pass's rows (`w` pixels wide), rounded to 8 bits.
fn horizontal(columns: &[f32], w: usize, width: u32, height: u32) -> RgbImage {
    let taps = taps(w as u32, width);
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for row in columns.chunks_exact(w * 3) {
        for taps in &taps {
            let mut t = [0.0f32; 3];
            let pixels = row[taps.first * 3..].chunks_exact(3);
            for (&weight, p) in taps.weights.iter().zip(pixels) {
                for c in 0..3 {
                    t[c] += p[c] * weight;
                }
            }
            out.extend(t.map(|v| v.clamp(0.0, 255.0).round() as u8));
        }
    }
    RgbImage::from_raw(width, height, out).expect("width × height × 3 values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::{self, FilterType};

    /// A picture with detail at every scale (so that a wrong weight shows).
    fn picture(w: u32, h: u32, seed: u32) -> RgbImage {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        RgbImage::from_fn(w, h, |x, y| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state & 0x3f) as u8;
            image::Rgb([
                (x * 7 + y) as u8 ^ noise,
                (y * 5) as u8,
                ((x * y) % 251) as u8 / 2 + noise,
            ])
        })
    }

    #[test]
    fn same_bytes_as_image_resize() {
        let sizes = [
            (200, 150),
            (192, 192),
            (1, 1),
            (3, 7),
            (640, 31),
            (2016, 1512),
        ];
        let targets = [(192, 192), (224, 224), (1, 1), (5, 3), (300, 12)];
        for (seed, &(w, h)) in sizes.iter().enumerate() {
            let source = picture(w, h, seed as u32);
            for &(tw, th) in &targets {
                let expected = imageops::resize(&source, tw, th, FilterType::Triangle);
                let got = resize_region(&source, (0, 0, w, h), tw, th);
                assert!(got == expected, "{w}x{h} -> {tw}x{th}");
            }
        }
    }

    #[test]
    fn a_region_reads_as_its_crop() {
        let source = picture(403, 302, 9);
        for region in [(51, 0, 302, 302), (0, 40, 403, 200), (400, 299, 3, 3)] {
            let (x, y, w, h) = region;
            let crop = imageops::crop_imm(&source, x, y, w, h).to_image();
            let expected = imageops::resize(&crop, 192, 192, FilterType::Triangle);
            assert!(
                resize_region(&source, region, 192, 192) == expected,
                "{region:?}"
            );
        }
    }
}
