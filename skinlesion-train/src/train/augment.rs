//! Augmentation that fits dermoscopy (no canonical orientation, varying zoom and lighting),
//! as separate steps: random resized crop, flips and 90° rotations, colour jitter with
//! optional casts, and mixup. Randomness comes from libtorch's seeded generator, so a resumed
//! run draws exactly what the uninterrupted one would have.

use skinlesion_core::InputSpec;
use tch::{Device, Kind, Tensor};

/// How many uniform draws each image takes (crop 4, flips 2, rotation 1, colour 2).
const DRAWS: usize = 9;

/// The augmented copy of a normalised N×3×H×W batch: per image a random resized crop (65–100%
/// of the area, aspect 3:4–4:3), horizontal and vertical flips, a 90° rotation (square
/// inputs), mild brightness, contrast and saturation jitter, and, when `colour_cast` s > 0, a
/// per-channel gain e^u with u ~ U(−s, s); then, when `shifts` p > 0, each acquisition shift
/// of [`super::shifts`] with probability p.
pub fn augment(batch: &Tensor, spec: &InputSpec, colour_cast: f64, shifts: f64) -> Tensor {
    let n = batch.size()[0];
    let random = Vec::<f32>::try_from(
        Tensor::rand([n, DRAWS as i64], (Kind::Float, Device::Cpu)).flatten(0, -1),
    )
    .expect("float");
    // Drawn after the others, and only when on, so runs without it keep their random stream.
    // (Drawn on the CPU wherever the batch is, so a GPU run draws what a CPU run does.)
    let gains = (colour_cast > 0.0).then(|| {
        let u = Tensor::rand([n, 3, 1, 1], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        (u * colour_cast).exp().to_device(batch.device())
    });
    let seeds = (shifts > 0.0).then(|| super::shifts::seeds(n));
    let colour = Colour::new(spec, batch.device());
    let out: Vec<Tensor> = (0..n)
        .map(|i| {
            let r = &random[i as usize * DRAWS..(i as usize + 1) * DRAWS];
            let x = random_resized_crop(&batch.get(i), spec, &r[0..4]);
            let x = flip_and_rotate(x, &r[4..7]);
            // Colour work on the 0–1 scale: out of the normalisation once, back once.
            let rgb = colour.jitter(
                &colour.to_rgb(&x),
                &r[7..9],
                gains.as_ref().map(|g| g.get(i)),
            );
            let rgb = match &seeds {
                Some(seeds) => super::shifts::shift(&rgb, shifts, seeds[i as usize]),
                None => rgb,
            };
            colour.normalise(&rgb)
        })
        .collect();
    Tensor::stack(&out, 0)
}

/// A crop of 65–100% of the area with aspect 3:4–4:3 at a random place, resized back to the
/// input size. `r`: four uniform draws.
fn random_resized_crop(x: &Tensor, spec: &InputSpec, r: &[f32]) -> Tensor {
    let (h, w) = (i64::from(spec.height), i64::from(spec.width));
    let scale = 0.65 + 0.35 * f64::from(r[0]);
    let (low, high) = ((0.75f64).ln(), (4.0f64 / 3.0).ln());
    let ratio = (low + f64::from(r[1]) * (high - low)).exp();
    let cw = ((w as f64 * (scale * ratio).sqrt()).round() as i64).clamp(8, w);
    let ch = ((h as f64 * (scale / ratio).sqrt()).round() as i64).clamp(8, h);
    let x0 = ((f64::from(r[2]) * (w - cw + 1) as f64) as i64).min(w - cw);
    let y0 = ((f64::from(r[3]) * (h - ch + 1) as f64) as i64).min(h - ch);
    x.narrow(2, x0, cw)
        .narrow(1, y0, ch)
        .unsqueeze(0)
        .upsample_bilinear2d([h, w], false, None, None)
        .squeeze_dim(0)
}

/// Horizontal and vertical flips (half the time each) and, for a square image, a rotation by
/// a random multiple of 90°. `r`: three uniform draws.
fn flip_and_rotate(mut x: Tensor, r: &[f32]) -> Tensor {
    if r[0] < 0.5 {
        x = x.flip([2]);
    }
    if r[1] < 0.5 {
        x = x.flip([1]);
    }
    let size = x.size();
    if size[1] == size[2] {
        let k = (r[2] * 4.0) as i64 % 4;
        if k > 0 {
            x = x.rot90(k, [1, 2]);
        }
    }
    x
}

/// The input's normalisation, and colour jitter on the 0–1 scale.
struct Colour {
    mean: Tensor,
    std: Tensor,
    luma: Tensor,
}

impl Colour {
    fn new(spec: &InputSpec, device: Device) -> Self {
        let column = |v: &[f32]| Tensor::from_slice(v).view([3, 1, 1]).to_device(device);
        Self {
            mean: column(&spec.mean),
            std: column(&spec.std),
            luma: column(&[0.299, 0.587, 0.114]),
        }
    }

    /// A normalised image on the 0–1 scale.
    fn to_rgb(&self, x: &Tensor) -> Tensor {
        x * &self.std + &self.mean
    }

    /// A 0–1 image normalised as the network takes it.
    fn normalise(&self, rgb: &Tensor) -> Tensor {
        (rgb - &self.mean) / &self.std
    }

    /// Brightness and contrast 0.85–1.15, saturation 0.9–1.1, and the colour cast `gain`
    /// (3×1×1) when given, on a 0–1 image; clamped to 0–1. `r`: two uniform draws.
    fn jitter(&self, rgb: &Tensor, r: &[f32], gain: Option<Tensor>) -> Tensor {
        let brightness = 0.85 + 0.3 * f64::from(r[0]);
        let contrast = 0.85 + 0.3 * f64::from(r[1]);
        let saturation = 0.9 + 0.2 * f64::from((r[0] + r[1]) / 2.0);
        let rgb = match gain {
            Some(g) => rgb * g * brightness,
            None => rgb * brightness,
        };
        let m = rgb.mean(Kind::Float);
        let rgb = (rgb - &m) * contrast + &m;
        let grey = (&rgb * &self.luma).sum_dim_intlist(0, true, Kind::Float);
        let rgb = (rgb - &grey) * saturation + grey;
        rgb.clamp(0.0, 1.0)
    }
}

/// Mixup: blends the batch with a shuffled copy of itself by λ ~ Beta(α, α) and returns the
/// blend with (λ, the partner of each image); `alpha` 0 returns the batch unchanged. Randomness
/// comes from libtorch's seeded generator, like the augmentation's.
pub fn mixup(batch: Tensor, alpha: f64) -> (Tensor, Option<(f64, Tensor)>) {
    if alpha <= 0.0 {
        return (batch, None);
    }
    // Beta(α, α) as the first share of two Gamma(α) draws.
    let gamma = Tensor::full([2], alpha, (Kind::Double, Device::Cpu)).internal_standard_gamma();
    let g = Vec::<f64>::try_from(gamma).expect("double");
    let lambda = g[0] / (g[0] + g[1]);
    let partner =
        Tensor::randperm(batch.size()[0], (Kind::Int64, Device::Cpu)).to_device(batch.device());
    let mixed = &batch * lambda + batch.index_select(0, &partner) * (1.0 - lambda);
    (mixed, Some((lambda, partner)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nets::Architecture;
    use skinlesion_core::ColourConstancy;
    use tch;

    #[test]
    fn mixup_blends_each_image_with_one_partner() {
        let _turn = crate::generator_turn();
        tch::manual_seed(3);
        let batch = Tensor::rand([6, 3, 8, 8], (Kind::Float, Device::Cpu));
        let (same, none) = mixup(batch.shallow_clone(), 0.0);
        assert!(none.is_none() && same.equal(&batch));
        let (mixed, mix) = mixup(batch.shallow_clone(), 0.4);
        let (lambda, partner) = mix.unwrap();
        assert!((0.0..=1.0).contains(&lambda));
        let mut seen = Vec::<i64>::try_from(&partner).unwrap();
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 3, 4, 5], "a permutation");
        let expected = &batch * lambda + batch.index_select(0, &partner) * (1.0 - lambda);
        assert!(f64::try_from((mixed - expected).abs().max()).unwrap() < 1e-6);
        // Beta(0.4, 0.4) draws spread over (0, 1), mostly near its ends.
        let draws: Vec<f64> = (0..400)
            .map(|_| mixup(batch.shallow_clone(), 0.4).1.unwrap().0)
            .collect();
        let mean = draws.iter().sum::<f64>() / 400.0;
        assert!((mean - 0.5).abs() < 0.06, "mean {mean}");
        assert!(draws.iter().filter(|&&l| !(0.1..0.9).contains(&l)).count() > 150);
    }

    #[test]
    fn augmentation_keeps_shape_and_range() {
        let _turn = crate::generator_turn();
        let spec = Architecture::ResNetLite.input_spec(32, ColourConstancy::None);
        let to_rgb = |y: &Tensor| {
            y * Tensor::from_slice(&spec.std).view([1, 3, 1, 1])
                + Tensor::from_slice(&spec.mean).view([1, 3, 1, 1])
        };
        tch::manual_seed(1);
        let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu));
        let x = (x - Tensor::from_slice(&spec.mean).view([1, 3, 1, 1]))
            / Tensor::from_slice(&spec.std).view([1, 3, 1, 1]);
        for (cast, shifts) in [(0.0, 0.0), (0.25, 0.0), (0.25, 1.0)] {
            tch::manual_seed(2);
            let y = augment(&x, &spec, cast, shifts);
            assert_eq!(y.size(), [4, 3, 32, 32]);
            let rgb = to_rgb(&y);
            assert!(
                rgb.min().double_value(&[]) >= -1e-5 && rgb.max().double_value(&[]) <= 1.0 + 1e-5
            );
            tch::manual_seed(2);
            assert!(augment(&x, &spec, cast, shifts).allclose(&y, 1e-6, 1e-6, false));
        }
    }

    #[test]
    fn colour_casts_tint_grey_images_only_when_asked() {
        let _turn = crate::generator_turn();
        let spec = Architecture::ResNetLite.input_spec(32, ColourConstancy::None);
        let grey_rgb = Tensor::full([8, 3, 32, 32], 0.5, (Kind::Float, Device::Cpu));
        let grey = (grey_rgb - Tensor::from_slice(&spec.mean).view([1, 3, 1, 1]))
            / Tensor::from_slice(&spec.std).view([1, 3, 1, 1]);
        // Per image: largest over smallest channel mean (1 for grey).
        let tint = |y: Tensor| {
            let rgb = y * Tensor::from_slice(&spec.std).view([1, 3, 1, 1])
                + Tensor::from_slice(&spec.mean).view([1, 3, 1, 1]);
            let means = rgb.mean_dim([2, 3].as_slice(), false, Kind::Float);
            let ratio = means.amax([1].as_slice(), false) / means.amin([1].as_slice(), false);
            Vec::<f32>::try_from(ratio).expect("float")
        };
        tch::manual_seed(3);
        assert!(tint(augment(&grey, &spec, 0.0, 0.0))
            .iter()
            .all(|&r| r < 1.001));
        tch::manual_seed(3);
        let tinted = tint(augment(&grey, &spec, 0.25, 0.0));
        // Gains lie in e^±0.25, so two channels differ by at most e^0.5 (saturation jitter
        // can only pull them together or push them apart by 10%).
        assert!(tinted.iter().all(|&r| r < 0.5f32.exp() * 1.1), "{tinted:?}");
        assert!(
            tinted.iter().filter(|&&r| r > 1.05).count() >= 6,
            "{tinted:?}"
        );
    }
}
