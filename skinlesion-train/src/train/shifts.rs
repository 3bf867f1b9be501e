//! Acquisition shifts in training, modelled on the shift bench (`benches/ood/shifts.py`):
//! what another clinic's dermatoscope, camera, archive or gateway does to an image. Each
//! shift applies to an image with probability `p` (`--acquisition-shifts p`), with the
//! bench's ranges, so the network learns that none of them changes the diagnosis. The bench
//! scores other images under other draws; the model card says the shifts were trained on.
//!
//! Parameters come from a small generator seeded by one draw of libtorch's seeded generator
//! per image, so a resumed run draws what the uninterrupted one did.

use std::f64::consts::PI;

use skinlesion_core::image::codecs::jpeg::JpegEncoder;
use skinlesion_core::image::{self, RgbImage};
use tch::{Device, Kind, Tensor};

/// SplitMix64: a few dozen parameters per image from one seed.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [low, high).
    fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.uniform(0.0, 1.0) < p
    }

    /// One of two ranges, evenly.
    fn either(&mut self, a: (f64, f64), b: (f64, f64)) -> f64 {
        let (low, high) = if self.chance(0.5) { a } else { b };
        self.uniform(low, high)
    }
}

/// One seed per image of an N-image batch (drawn from libtorch's generator).
pub fn seeds(n: i64) -> Vec<u64> {
    let t = Tensor::randint(i64::MAX, [n], (Kind::Int64, Device::Cpu));
    Vec::<i64>::try_from(t)
        .expect("int64")
        .into_iter()
        .map(|s| s as u64)
        .collect()
}

/// The picture `rgb` (3×H×W on the 0–1 scale) under each shift with probability `p`, in the
/// order a picture meets them: magnification, the sensor, the angle it is held at, the field
/// stop, hairs on the skin, then tone, focus and a gateway's JPEG; clamped to 0–1.
pub fn shift(rgb: &Tensor, p: f64, seed: u64) -> Tensor {
    let mut d = Draws(seed);
    let mut rgb = rgb.shallow_clone();
    let side = rgb.size()[2].min(rgb.size()[1]) as f64;
    if d.chance(p) {
        rgb = zoom_out(&rgb, d.uniform(0.6, 0.8));
    }
    if d.chance(p) {
        rgb = squash(&rgb, d.uniform(0.6, 0.85), d.chance(0.5));
    }
    if d.chance(p) {
        rgb = downscale(&rgb, d.uniform(0.33, 0.5));
    }
    // After the surround is made, so that its black corners are not mirrored into it.
    if d.chance(p) {
        let degrees = d.uniform(15.0, 75.0) * if d.chance(0.5) { 1.0 } else { -1.0 };
        rgb = rotate(&rgb, degrees);
    }
    if d.chance(p) {
        rgb = field_stop(&rgb, side * d.uniform(0.45, 0.6));
    }
    if d.chance(p) {
        rgb = hairs(&rgb, &mut d);
    }
    if d.chance(p) {
        rgb = rgb
            .clamp(1e-4, 1.0)
            .pow_tensor_scalar(d.either((0.6, 0.8), (1.3, 1.6)));
    }
    if d.chance(p) {
        rgb *= d.either((0.6, 0.75), (1.2, 1.35));
    }
    if d.chance(p) {
        let m = rgb.mean(Kind::Float);
        rgb = (&rgb - &m) * d.either((0.5, 0.65), (1.3, 1.5)) + m;
    }
    if d.chance(p) {
        rgb = blur(&rgb.clamp(0.0, 1.0), side * d.uniform(0.008, 0.02));
    }
    if d.chance(p) {
        rgb = jpeg(&rgb, d.uniform(30.0, 61.0) as u8);
    }
    rgb.clamp(0.0, 1.0)
}

/// Resized bilinearly to h×w.
fn resize(x: &Tensor, h: i64, w: i64) -> Tensor {
    x.unsqueeze(0)
        .upsample_bilinear2d([h.max(1), w.max(1)], false, None, None)
        .squeeze_dim(0)
}

/// Held at another angle: corners black, as a rotated field of view.
fn rotate(x: &Tensor, degrees: f64) -> Tensor {
    let (s, c) = (degrees * PI / 180.0).sin_cos();
    let theta = Tensor::from_slice(&[c as f32, -s as f32, 0.0, s as f32, c as f32, 0.0])
        .view([1, 2, 3])
        .to_device(x.device());
    let size = x.size();
    let grid = Tensor::affine_grid_generator(&theta, [1, size[0], size[1], size[2]], false);
    // Bilinear, zeros outside.
    x.unsqueeze(0)
        .grid_sampler(&grid, 0, 0, false)
        .squeeze_dim(0)
}

/// Lower magnification: the image at `f` of its size inside its own mirrored surround.
fn zoom_out(x: &Tensor, f: f64) -> Tensor {
    let (h, w) = (x.size()[1], x.size()[2]);
    let (sh, sw) = ((h as f64 * f).round() as i64, (w as f64 * f).round() as i64);
    let (top, left) = ((h - sh) / 2, (w - sw) / 2);
    resize(x, sh, sw)
        .unsqueeze(0)
        .reflection_pad2d([left, w - sw - left, top, h - sh - top])
        .squeeze_dim(0)
}

/// Stored squashed: the middle `f` of one side stretched to the whole side.
fn squash(x: &Tensor, f: f64, vertical: bool) -> Tensor {
    let (h, w) = (x.size()[1], x.size()[2]);
    let dim = if vertical { 1 } else { 2 };
    let len = x.size()[dim];
    let kept = ((len as f64 * f).round() as i64).max(1);
    resize(&x.narrow(dim as i64, (len - kept) / 2, kept), h, w)
}

/// A low-resolution camera: `f` of the pixels on each side, scaled back.
fn downscale(x: &Tensor, f: f64) -> Tensor {
    let (h, w) = (x.size()[1], x.size()[2]);
    let small = resize(
        x,
        (h as f64 * f).round() as i64,
        (w as f64 * f).round() as i64,
    );
    resize(&small, h, w)
}

/// The pixel grid's (row, column) coordinates, each H×W.
fn grid(h: i64, w: i64, device: Device) -> (Tensor, Tensor) {
    let rows = Tensor::arange(h, (Kind::Float, device))
        .view([h, 1])
        .expand([h, w], true);
    let cols = Tensor::arange(w, (Kind::Float, device))
        .view([1, w])
        .expand([h, w], true);
    (rows + 0.5, cols + 0.5)
}

/// A round field of view of radius `r` pixels: black outside.
fn field_stop(x: &Tensor, r: f64) -> Tensor {
    let (h, w) = (x.size()[1], x.size()[2]);
    let (y, c) = grid(h, w, x.device());
    let inside = (y - h as f64 / 2.0).square() + (c - w as f64 / 2.0).square();
    x * inside.le(r * r).to_kind(Kind::Float)
}

/// 8-20 dark, curved strands 1-3 px wide (each four straight pieces).
fn hairs(x: &Tensor, d: &mut Draws) -> Tensor {
    let (h, w) = (x.size()[1], x.size()[2]);
    let (py, px) = grid(h, w, x.device());
    let mut out = x.shallow_clone();
    let side = h.max(w) as f64;
    for _ in 0..(d.uniform(8.0, 21.0) as usize) {
        let (mut ax, mut ay) = (d.uniform(0.0, w as f64), d.uniform(0.0, h as f64));
        let mut heading = d.uniform(0.0, 2.0 * PI);
        let (length, bend) = (d.uniform(0.3, 0.8) * side, d.uniform(-0.03, 0.03) * 11.0);
        let tone: Vec<f32> = (0..3)
            .map(|_| d.uniform(10.0, 60.0) as f32 / 255.0)
            .collect();
        let half_width = d.uniform(1.0, 4.0).floor() / 2.0;
        let mut mask = Tensor::zeros([h, w], (Kind::Bool, x.device()));
        for _ in 0..4 {
            let (bx, by) = (
                ax + heading.cos() * length / 4.0,
                ay + heading.sin() * length / 4.0,
            );
            let (dx, dy) = (bx - ax, by - ay);
            let t = (((&px - ax) * dx + (&py - ay) * dy) / (dx * dx + dy * dy).max(1e-6))
                .clamp(0.0, 1.0);
            let dist = (&px - ax - &t * dx).square() + (&py - ay - t * dy).square();
            mask = mask.logical_or(&dist.le(half_width.max(0.5).powi(2)));
            (ax, ay, heading) = (bx, by, heading + bend * 11.0 / 4.0);
        }
        let tone = Tensor::from_slice(&tone)
            .view([3, 1, 1])
            .to_device(x.device());
        out = out.where_self(&mask.logical_not(), &tone);
    }
    out
}

/// Out of focus: a Gaussian blur of `sigma` pixels (edges mirrored).
fn blur(x: &Tensor, sigma: f64) -> Tensor {
    let radius = (3.0 * sigma).ceil().max(1.0) as i64;
    let taps: Vec<f32> = (-radius..=radius)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let sum: f32 = taps.iter().sum();
    let k =
        Tensor::from_slice(&taps.iter().map(|t| t / sum).collect::<Vec<_>>()).to_device(x.device());
    let n = 2 * radius + 1;
    let across = k.view([1, 1, 1, n]).expand([3, 1, 1, n], true);
    let down = k.view([1, 1, n, 1]).expand([3, 1, n, 1], true);
    let padded = x
        .unsqueeze(0)
        .reflection_pad2d([radius, radius, radius, radius]);
    padded
        .conv2d::<&Tensor>(&across, None, [1, 1], [0, 0], [1, 1], 3)
        .conv2d::<&Tensor>(&down, None, [1, 1], [0, 0], [1, 1], 3)
        .squeeze_dim(0)
}

/// Saved by a gateway as a JPEG of this quality, and read back.
fn jpeg(x: &Tensor, quality: u8) -> Tensor {
    let (h, w) = (x.size()[1], x.size()[2]);
    let device = x.device();
    let bytes = Vec::<u8>::try_from(
        (x.clamp(0.0, 1.0) * 255.0)
            .round()
            .to_kind(Kind::Uint8)
            .permute([1, 2, 0])
            .contiguous()
            .to_device(Device::Cpu)
            .flatten(0, -1),
    )
    .expect("bytes");
    let picture = RgbImage::from_raw(w as u32, h as u32, bytes).expect("H×W×3 bytes");
    let mut encoded = Vec::new();
    let written = JpegEncoder::new_with_quality(&mut encoded, quality).encode_image(&picture);
    let decoded = written
        .ok()
        .and_then(|()| image::load_from_memory(&encoded).ok())
        .map(|i| i.to_rgb8());
    // An encoder failure leaves the image as it was (it cannot happen for RGB bytes).
    let Some(decoded) = decoded else {
        return x.shallow_clone();
    };
    Tensor::from_slice(decoded.as_raw())
        .view([h, w, 3])
        .permute([2, 0, 1])
        .to_kind(Kind::Float)
        .to_device(device)
        / 255.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 48×48 picture on the 0–1 scale: two ramps and a flat channel.
    fn image() -> Tensor {
        let ramp = Tensor::arange(48, (Kind::Float, Device::Cpu)) / 47.0;
        Tensor::stack(
            &[
                ramp.view([1, 48]).expand([48, 48], true),
                ramp.view([48, 1]).expand([48, 48], true),
                Tensor::full([48, 48], 0.5, (Kind::Float, Device::Cpu)),
            ],
            0,
        )
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn no_shift_at_probability_zero_and_the_same_shift_for_the_same_seed() {
        let _turn = crate::generator_turn();
        let x = image();
        assert!(max_diff(&shift(&x, 0.0, 9), &x) < 1e-6);
        let a = shift(&x, 1.0, 9);
        assert_eq!(a.size(), x.size());
        assert!(max_diff(&a, &shift(&x, 1.0, 9)) < 1e-6);
        assert!(max_diff(&a, &shift(&x, 1.0, 10)) > 0.05);
        assert!(a.min().double_value(&[]) >= 0.0 && a.max().double_value(&[]) <= 1.0);
    }

    #[test]
    fn each_shift_does_what_it_says() {
        let _turn = crate::generator_turn();
        let rgb = image();
        // Field stop: corners black, centre kept.
        let round = field_stop(&rgb, 20.0);
        assert_eq!(round.get(0).get(0).get(0).double_value(&[]), 0.0);
        assert!(
            max_diff(
                &round.narrow(1, 20, 8).narrow(2, 20, 8),
                &rgb.narrow(1, 20, 8).narrow(2, 20, 8)
            ) < 1e-6
        );
        // Rotation: a corner turns black, the centre stays.
        let turned = rotate(&rgb, 45.0);
        assert!(turned.get(2).get(0).get(0).double_value(&[]) < 0.01);
        assert!((turned.get(2).get(24).get(24).double_value(&[]) - 0.5).abs() < 1e-3);
        // Blur keeps a flat channel flat and the mean of a ramp.
        let blurred = blur(&rgb, 2.0);
        assert!(max_diff(&blurred.get(2), &rgb.get(2)) < 1e-5);
        assert!(
            (blurred.mean(Kind::Float) - rgb.mean(Kind::Float))
                .abs()
                .double_value(&[])
                < 0.01
        );
        // JPEG at quality 30: close, not equal.
        let saved = jpeg(&rgb, 30);
        let error = (&saved - &rgb).abs().mean(Kind::Float).double_value(&[]);
        assert!(error > 0.0 && error < 0.05, "{error}");
        // Zoom out and squash keep the size; hairs darken some pixels only.
        assert_eq!(zoom_out(&rgb, 0.6).size(), rgb.size());
        assert_eq!(squash(&rgb, 0.6, true).size(), rgb.size());
        assert_eq!(downscale(&rgb, 0.4).size(), rgb.size());
        let haired = hairs(
            &Tensor::ones([3, 48, 48], (Kind::Float, Device::Cpu)),
            &mut Draws(3),
        );
        let dark = haired
            .lt(0.5)
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        assert!(dark > 0.01 && dark < 0.5, "{dark}");
    }
}
