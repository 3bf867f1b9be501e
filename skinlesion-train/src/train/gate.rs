//! The dermoscopy gate: how far an image's pooled features are from the training dermoscopy.
//!
//! The score is the smallest squared Mahalanobis distance of the features to a training class
//! mean, with one covariance shared by the classes (Lee et al., 2018), shrunk towards a
//! multiple of the identity so that it inverts with fewer images than features. It is traced
//! into the exported network as its second output, so the one forward pass that classifies
//! also scores; the manifest holds the threshold. Fitted on `train` only; the threshold is the
//! score above which [`VAL_REFUSED`] of `val` lies. Measured against natural photographs and
//! generated images in `benches/ood` (no such image is used in fitting).

use anyhow::{bail, Result};
use skinlesion_core::tch::{Kind, Tensor};
use skinlesion_core::{DermoscopyGate, GateScore};

/// The share of validation dermoscopy the gate may refuse.
pub const VAL_REFUSED: f64 = 0.05;
/// Weight of the identity in the shrunk covariance, relative to the mean variance.
pub const SHRINKAGE: f64 = 0.01;
/// Most training images per class the fit reads: the rare classes whole, nevi capped, so that
/// no class dominates the shared covariance and export stays quick.
pub const PER_CLASS: usize = 400;

/// The fitted distance: `features · whitening` minus the whitened class means.
#[derive(Debug)]
pub struct Mahalanobis {
    /// D×D, with `whitening · whitening' = covariance⁻¹`.
    whitening: Tensor,
    /// C×D whitened class means.
    centroids: Tensor,
}

impl Mahalanobis {
    /// Fits class means and the shared, shrunk covariance of N×D `features` labelled `truth`.
    pub fn fit(features: &Tensor, truth: &[usize]) -> Result<Self> {
        let f = features.to_kind(Kind::Double);
        let (n, d) = f.size2()?;
        if n as usize != truth.len() || n < 2 {
            bail!("the gate needs features for at least two labelled images");
        }
        let classes = truth.iter().max().map_or(0, |m| m + 1);
        let labels = Tensor::from_slice(&truth.iter().map(|&t| t as i64).collect::<Vec<_>>());
        let mut means = Vec::with_capacity(classes);
        for c in 0..classes {
            let rows = labels.eq(c as i64).nonzero().squeeze_dim(1);
            means.push(match rows.size()[0] {
                0 => f.mean_dim(0, false, None),
                _ => f.index_select(0, &rows).mean_dim(0, false, None),
            });
        }
        let means = Tensor::stack(&means, 0);
        let centred = &f - means.index_select(0, &labels);
        let covariance = centred.tr().matmul(&centred) / n as f64;
        let ridge = SHRINKAGE * covariance.trace().double_value(&[]) / d as f64;
        let covariance = covariance + Tensor::eye(d, (Kind::Double, f.device())) * ridge.max(1e-12);
        let whitening = covariance.inverse().linalg_cholesky(false);
        let centroids = means.matmul(&whitening);
        Ok(Self {
            whitening: whitening.to_kind(Kind::Float),
            centroids: centroids.to_kind(Kind::Float),
        })
    }

    /// The N scores of N×D features (traceable: only tensor operations). The distances are
    /// summed from differences, not expanded into ‖y‖² − 2y·m + ‖m‖², whose cancellation
    /// would make a score depend on the batch it was computed in.
    pub fn scores(&self, features: &Tensor) -> Tensor {
        let y = features.matmul(&self.whitening).unsqueeze(1);
        let offsets = y - self.centroids.unsqueeze(0);
        (&offsets * &offsets)
            .sum_dim_intlist(2, false, Kind::Float)
            .amin(1, false)
    }

    /// The gate refusing [`VAL_REFUSED`] of validation images with these scores.
    pub fn gate(&self, val_scores: &[f32]) -> DermoscopyGate {
        let mut sorted = val_scores.to_vec();
        sorted.sort_by(f32::total_cmp);
        // The smallest threshold with at most VAL_REFUSED of the scores above it.
        let keep = ((1.0 - VAL_REFUSED) * sorted.len() as f64).ceil() as usize;
        let threshold = sorted.get(keep.max(1) - 1).copied().unwrap_or(f32::MAX);
        DermoscopyGate {
            score: GateScore::Mahalanobis,
            threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_squared_mahalanobis_distances_to_the_nearest_class() {
        // Two classes in 2-D with a known within-class spread.
        let rows = [[-1.1f32, 0.0], [-0.9, 0.0], [-1.0, 0.2], [-1.0, -0.2]];
        let mut data: Vec<f32> = rows.iter().flatten().copied().collect();
        data.extend(rows.iter().flat_map(|r| [r[0] + 4.0, r[1]]));
        let features = Tensor::from_slice(&data).view([8, 2]);
        let truth = [0, 0, 0, 0, 1, 1, 1, 1];
        let m = Mahalanobis::fit(&features, &truth).unwrap();
        // Within-class variances: x 0.005, y 0.02 (plus the ridge).
        let ridge = SHRINKAGE * 0.025 / 2.0;
        let query = Tensor::from_slice(&[-1.0f32, 0.0, 3.0, 0.4, 1.0, 0.0]).view([3, 2]);
        let s = Vec::<f32>::try_from(m.scores(&query)).unwrap();
        assert!(s[0].abs() < 1e-3, "{s:?}");
        let expected = (0.16 / (0.02 + ridge)) as f32;
        assert!((s[1] - expected).abs() / expected < 1e-3, "{s:?}");
        // Midway between the classes, far in the tight x direction.
        assert!(s[2] > s[1] * 10.0);
    }

    #[test]
    fn the_threshold_refuses_at_most_the_set_share_of_validation() {
        let m = Mahalanobis::fit(
            &Tensor::eye(3, (Kind::Float, skinlesion_core::tch::Device::Cpu)),
            &[0, 1, 2],
        )
        .unwrap();
        let scores: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        let gate = m.gate(&scores);
        assert_eq!(gate.threshold, 95.0);
        assert_eq!(scores.iter().filter(|&&s| s > gate.threshold).count(), 5);
    }
}
