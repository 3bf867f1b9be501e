//! The dermoscopy gate: is this a dermoscopic picture of skin at all?
//!
//! Two scores of the pooled features, traced into the exported network as the column after
//! its logits, so the one forward pass that classifies also gates:
//!
//! - [`Mahalanobis`]: the smallest squared Mahalanobis distance to a training class mean, with
//!   one covariance shared by the classes (Lee et al., 2018), shrunk towards a multiple of the
//!   identity so that it inverts with fewer images than features;
//! - [`LinearHead`]: a logistic regression of "not dermoscopy" on the features, fitted on a
//!   fitting set (`scripts/gate_fit_set.py`) of dermoscopy from several sources and shifted
//!   as other devices take it, against photographs, X-rays and generated images.
//!
//! With a fitting set the gate is [`Gate::HeadOrDistance`]: refused when the head says "not
//! dermoscopy" or the distance is beyond what [`DISTANCE_VAL_REFUSED`] of validation exceeds
//! (far from every dermoscopy the head saw). Without one (tests, quick runs) it is v4.1's
//! [`Gate::Distance`], refusing [`VAL_REFUSED`] of validation. Measured in `benches/ood`;
//! no image it is measured on is fitted on.

use anyhow::{bail, Result};
use skinlesion_core::{DermoscopyGate, GateScore};
use tch::{Kind, Tensor};

/// The share of validation dermoscopy the distance-only gate may refuse.
pub const VAL_REFUSED: f64 = 0.05;
/// The share of validation dermoscopy beyond the distance limit of [`Gate::HeadOrDistance`]:
/// none, so the distance refuses only what is farther than every validation image (a safety
/// net for what the head never saw; the head does the work).
pub const DISTANCE_VAL_REFUSED: f64 = 0.0;
/// Weight of the identity in the shrunk covariance, relative to the mean variance.
pub const SHRINKAGE: f64 = 0.01;
/// Most training images per class the distance-only fit reads: the rare classes whole, nevi
/// capped, so that no class dominates the shared covariance and export stays quick.
pub const PER_CLASS: usize = 400;
/// The head's L2 penalty on standardised features, against a loss whose weights sum to 1
/// (half to each side): chosen by two-fold cross-validation on the fitting set (train
/// splits only; see the model card): 1e-4 to 1e-1 refuse the same negatives, the smallest
/// refuses the fewest blurred and hairy dermoscopy images.
pub const HEAD_L2: f64 = 1e-4;
/// Newton steps of the head's fit at most (the penalised log-likelihood is strictly concave;
/// 17 for v4.3's fitting set).
const NEWTON_STEPS: usize = 200;

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
}

/// The score that at most `share` of `val_scores` exceed (the smallest such).
pub fn val_quantile(val_scores: &[f32], share: f64) -> f32 {
    let mut sorted = val_scores.to_vec();
    sorted.sort_by(f32::total_cmp);
    let keep = ((1.0 - share) * sorted.len() as f64).ceil() as usize;
    sorted.get(keep.max(1) - 1).copied().unwrap_or(f32::MAX)
}

/// Logistic regression of "not dermoscopy" on the pooled features: `features · weight + bias`
/// is the log-odds, with the features' standardisation folded into both.
#[derive(Debug)]
pub struct LinearHead {
    /// D.
    weight: Tensor,
    bias: f64,
}

impl LinearHead {
    /// Fits the head on N×D `features`, `other[i]` true for what is not dermoscopy: each side
    /// weighs half of the loss, the weights (not the bias) have an L2 penalty of [`HEAD_L2`]
    /// on standardised features, solved by Newton's method in double precision.
    pub fn fit(features: &Tensor, other: &[bool]) -> Result<Self> {
        let f = features.to_kind(Kind::Double);
        let (n, d) = f.size2()?;
        let positives = other.iter().filter(|&&o| o).count();
        if n as usize != other.len() || positives == 0 || positives == other.len() {
            bail!("the gate's head needs features of both dermoscopy and other images");
        }
        let mean = f.mean_dim(0, false, None);
        let std = f.std_dim(0, true, false) + 1e-6;
        let z = Tensor::cat(
            &[
                (&f - &mean) / &std,
                Tensor::ones([n, 1], (Kind::Double, f.device())),
            ],
            1,
        );
        let y = Tensor::from_slice(
            &other
                .iter()
                .map(|&o| f64::from(u8::from(o)))
                .collect::<Vec<_>>(),
        );
        let side = [
            0.5 / (other.len() - positives) as f64,
            0.5 / positives as f64,
        ];
        let w = Tensor::from_slice(
            &other
                .iter()
                .map(|&o| side[usize::from(o)])
                .collect::<Vec<_>>(),
        );
        let penalty = Tensor::ones([d + 1], (Kind::Double, f.device())) * HEAD_L2;
        let _ = penalty.get(d).fill_(0.0);
        // The penalised, weighted negative log-likelihood (softplus(s) - y·s per image).
        let objective = |beta: &Tensor| -> f64 {
            let s = z.mv(beta);
            let nll = (&w * (s.softplus() - &y * &s)).sum(Kind::Double);
            (nll + (&penalty * beta * beta).sum(Kind::Double) / 2.0).double_value(&[])
        };
        let mut beta = Tensor::zeros([d + 1], (Kind::Double, f.device()));
        let mut converged = None;
        for step_count in 1..=NEWTON_STEPS {
            let p = z.mv(&beta).sigmoid();
            let gradient = z.tr().mv(&(&w * (&p - &y))) + &penalty * &beta;
            let curvature: Tensor = &w * &p * (1.0 - &p);
            let hessian = (z.tr() * curvature.unsqueeze(0)).matmul(&z) + penalty.diag(0);
            let step = Tensor::linalg_solve(&hessian, &gradient.unsqueeze(1), true).squeeze_dim(1);
            // Backtracking (Armijo): a full Newton step can overshoot where the classes are
            // nearly separable, as they are with fewer images than features.
            let (before, slope) = (
                objective(&beta),
                (&gradient * &step).sum(Kind::Double).double_value(&[]),
            );
            let mut size = 1.0;
            while size > 1e-6 && objective(&(&beta - &step * size)) > before - 1e-4 * size * slope {
                size /= 2.0;
            }
            beta -= &step * size;
            if (&step * size).abs().max().double_value(&[]) < 1e-9 {
                converged = Some(step_count);
                break;
            }
        }
        let Some(steps) = converged else {
            bail!("the gate's head did not converge in {NEWTON_STEPS} Newton steps");
        };
        eprintln!("dermoscopy gate: head converged in {steps} Newton steps");
        let scaled = beta.narrow(0, 0, d) / &std;
        let bias = beta.double_value(&[d]) - (&mean * &scaled).sum(Kind::Double).double_value(&[]);
        Ok(Self {
            weight: scaled.to_kind(Kind::Float),
            bias,
        })
    }

    /// The N log-odds of N×D features (traceable).
    pub fn scores(&self, features: &Tensor) -> Tensor {
        features.mv(&self.weight) + self.bias
    }
}

/// A fitted gate, as traced into the network.
#[derive(Debug)]
pub enum Gate {
    /// v4.1 and v4.2: the distance, refused above `threshold`.
    Distance {
        distance: Mahalanobis,
        threshold: f32,
    },
    /// Refused when the head's log-odds or `ln(distance / limit)` is above 0: the network's
    /// score is the larger of the two.
    HeadOrDistance {
        head: LinearHead,
        distance: Mahalanobis,
        limit: f32,
    },
}

impl Gate {
    /// The N gate scores of N×D features (traceable).
    pub fn scores(&self, features: &Tensor) -> Tensor {
        match self {
            Gate::Distance { distance, .. } => distance.scores(features),
            Gate::HeadOrDistance {
                head,
                distance,
                limit,
            } => {
                let far = (distance.scores(features) / f64::from(*limit)).log();
                head.scores(features).maximum(&far)
            }
        }
    }

    /// Which of N×D features the gate accepts (as the library decides: refused above the
    /// threshold, NaN refused).
    pub fn accepts(&self, features: &Tensor) -> Result<Vec<bool>> {
        let threshold = self.manifest().threshold;
        let scores = Vec::<f32>::try_from(self.scores(features))?;
        Ok(scores.iter().map(|&s| s <= threshold).collect())
    }

    /// What the manifest says of it.
    pub fn manifest(&self) -> DermoscopyGate {
        match self {
            Gate::Distance { threshold, .. } => DermoscopyGate {
                score: GateScore::Mahalanobis,
                threshold: *threshold,
            },
            Gate::HeadOrDistance { .. } => DermoscopyGate {
                score: GateScore::DermoscopyHead,
                threshold: 0.0,
            },
        }
    }

    /// The rule in words, for the manifest's provenance.
    pub fn rule(&self) -> String {
        match self {
            Gate::Distance { .. } => format!(
                "Unknown (not dermoscopy) when the smallest squared Mahalanobis distance of the \
                 pooled features to a training class mean (shared covariance, shrunk by \
                 {SHRINKAGE} of the mean variance) is above the threshold that {:.0}% of \
                 validation images exceed",
                VAL_REFUSED * 100.0
            ),
            Gate::HeadOrDistance { .. } => format!(
                "Unknown (not dermoscopy) when a logistic head on the pooled features (L2 \
                 {HEAD_L2} on standardised features, fitted on dermoscopy of two sources with \
                 shifted copies against photographs, X-rays and generated images) gives \
                 positive log-odds of not dermoscopy, or when the smallest squared Mahalanobis \
                 distance to a class mean of that dermoscopy (shrinkage {SHRINKAGE}) is above \
                 the value that {:.1}% of validation images exceed",
                DISTANCE_VAL_REFUSED * 100.0
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn scores_are_squared_mahalanobis_distances_to_the_nearest_class() {
        let _turn = crate::generator_turn();
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
    fn the_quantile_refuses_at_most_the_set_share_of_validation() {
        let _turn = crate::generator_turn();
        let scores: Vec<f32> = (1..=100).map(|i| i as f32).collect();
        let threshold = val_quantile(&scores, VAL_REFUSED);
        assert_eq!(threshold, 95.0);
        assert_eq!(scores.iter().filter(|&&s| s > threshold).count(), 5);
    }

    /// Two overlapping clouds in 3-D told apart along the first axis only.
    fn clouds() -> (Tensor, Vec<bool>) {
        let n = 200;
        let x = Tensor::randn([n, 3], (Kind::Double, Device::Cpu));
        let other: Vec<bool> = (0..n).map(|i| i % 4 == 0).collect();
        let shift = Tensor::from_slice(
            &other
                .iter()
                .map(|&o| if o { 1.5 } else { -1.5 })
                .collect::<Vec<f64>>(),
        );
        let _ = x.select(1, 0).g_add_(&shift);
        (x.to_kind(Kind::Float), other)
    }

    #[test]
    fn the_head_separates_what_it_was_fitted_on_and_is_stationary() {
        let _turn = crate::generator_turn();
        tch::manual_seed(3);
        let (x, other) = clouds();
        let head = LinearHead::fit(&x, &other).unwrap();
        let s = Vec::<f32>::try_from(head.scores(&x)).unwrap();
        let right = s
            .iter()
            .zip(&other)
            .filter(|(s, &o)| (**s > 0.0) == o)
            .count();
        assert!(
            right as f64 / s.len() as f64 > 0.9,
            "{right} of {}",
            s.len()
        );
        // The class-balanced log-likelihood's gradient vanishes at the fit: scores shifted
        // either way fit worse.
        let loss = |shift: f32| -> f64 {
            let n_other = other.iter().filter(|&&o| o).count() as f64;
            s.iter()
                .zip(&other)
                .map(|(&s, &o)| {
                    let p = 1.0 / (1.0 + (-(f64::from(s + shift))).exp());
                    let w = if o {
                        0.5 / n_other
                    } else {
                        0.5 / (other.len() as f64 - n_other)
                    };
                    -w * if o { p.ln() } else { (1.0 - p).ln() }
                })
                .sum()
        };
        assert!(loss(0.0) < loss(0.1) && loss(0.0) < loss(-0.1));
        // The first axis carries the separation; the others are noise.
        let w = Vec::<f32>::try_from(&head.weight).unwrap();
        assert!(w[0] > 5.0 * w[1].abs() && w[0] > 5.0 * w[2].abs(), "{w:?}");
    }

    #[test]
    fn the_head_converges_with_fewer_images_than_features() {
        let _turn = crate::generator_turn();
        tch::manual_seed(5);
        // 24 images, 300 features: the two sides are separable, only the penalty bounds it.
        let x = Tensor::randn([24, 300], (Kind::Float, Device::Cpu));
        let other: Vec<bool> = (0..24).map(|i| i < 12).collect();
        let head = LinearHead::fit(&x, &other).unwrap();
        let s = Vec::<f32>::try_from(head.scores(&x)).unwrap();
        assert!(s.iter().zip(&other).all(|(&s, &o)| (s > 0.0) == o), "{s:?}");
    }

    #[test]
    fn head_or_distance_refuses_when_either_rule_does() {
        let _turn = crate::generator_turn();
        tch::manual_seed(4);
        let (x, other) = clouds();
        let dermoscopy: Vec<i64> = other.iter().map(|&o| i64::from(o)).collect();
        let kept = Tensor::from_slice(
            &(0..dermoscopy.len() as i64)
                .filter(|&i| dermoscopy[i as usize] == 0)
                .collect::<Vec<_>>(),
        );
        let distance =
            Mahalanobis::fit(&x.index_select(0, &kept), &vec![0; kept.size()[0] as usize]).unwrap();
        let gate = Gate::HeadOrDistance {
            head: LinearHead::fit(&x, &other).unwrap(),
            distance,
            limit: 25.0,
        };
        assert_eq!(gate.manifest().score, GateScore::DermoscopyHead);
        // Typical dermoscopy; far along the head's axis; far along an axis the head ignores.
        let query =
            Tensor::from_slice(&[-1.5f32, 0.0, 0.0, 4.0, 0.0, 0.0, -1.5, 0.0, 40.0]).view([3, 3]);
        let s = Vec::<f32>::try_from(gate.scores(&query)).unwrap();
        assert!(s[0] < 0.0 && s[1] > 0.0 && s[2] > 0.0, "{s:?}");
    }
}
