//! Fitting the two-step decision ([`DecisionRule::TwoStep`]) on validation logits of several
//! sources: melanoma's log prior (step two, melanoma against nevus) and the melanocytic bias
//! (step one, melanocytic or not), with the library's own rule, so what is fitted is what is
//! served.

use serde::Serialize;
use skinlesion_core::{Calibration, DecisionRule, LesionClass};

use crate::metrics;

/// Validation logits of one source.
pub struct SourceLogits<'a> {
    /// For people, e.g. `ham10000 val`.
    pub name: String,
    pub logits: &'a [Vec<f32>],
    pub truth: &'a [usize],
}

/// What the fitted rule does on each fitting source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceFit {
    pub source: String,
    pub images: usize,
    pub balanced_accuracy: f64,
    pub melanoma_sensitivity: Option<f64>,
    pub melanoma_specificity: Option<f64>,
}

/// The fitted rule and what it gives.
#[derive(Debug, Clone, Serialize)]
pub struct TwoStepFit {
    /// Melanoma's log prior (in units of the temperature-scaled logits).
    pub melanoma_log_prior: f32,
    pub melanocytic_bias: f32,
    /// Melanoma sensitivity over every fitting source's melanomas together.
    pub pooled_melanoma_sensitivity: f64,
    /// The objective: the mean over sources of each source's balanced accuracy.
    pub mean_balanced_accuracy: f64,
    pub per_source: Vec<SourceFit>,
}

/// The melanocytic biases searched (log units): a nevus-heavy source needs the group favoured,
/// a source with many keratoses the other way.
const BIASES: std::ops::RangeInclusive<i32> = -60..=60;
const BIAS_STEP: f32 = 0.05;

/// Fits the two-step rule into `calibration` (its temperature and gate kept; melanoma's log
/// prior and the rule replaced): for each melanocytic bias on a grid, the smallest melanoma log
/// prior that finds `melanoma_sensitivity` of the melanomas of all sources together; of those
/// pairs, the one with the highest mean of the sources' balanced accuracies (each source
/// counts the same, whatever its size, so the non-melanocytic classes of one are not drowned
/// by the nevi of another). `None` when the classes lack melanoma or nevi, or no source has
/// a melanoma.
pub fn fit_two_step(
    calibration: &mut Calibration,
    classes: &[LesionClass],
    sources: &[SourceLogits<'_>],
    melanoma_sensitivity: f64,
) -> Option<TwoStepFit> {
    let melanoma = classes.iter().position(|&c| c == LesionClass::Melanoma)?;
    DecisionRule::two_step(classes, 0.0).ok()?;
    if !sources.iter().any(|s| s.truth.contains(&melanoma)) {
        return None;
    }
    let mut best: Option<TwoStepFit> = None;
    for step in BIASES {
        let bias = step as f32 * BIAS_STEP;
        let prior =
            prior_for_sensitivity(calibration, classes, sources, bias, melanoma_sensitivity);
        let fit = assess(calibration, classes, sources, bias, prior);
        if best
            .as_ref()
            .is_none_or(|b| fit.mean_balanced_accuracy > b.mean_balanced_accuracy)
        {
            best = Some(fit);
        }
    }
    let best = best?;
    *calibration = with_rule(
        calibration,
        classes,
        best.melanocytic_bias,
        best.melanoma_log_prior,
    );
    Some(best)
}

/// `calibration` with the two-step rule at `bias` and melanoma's log prior `prior`.
fn with_rule(
    calibration: &Calibration,
    classes: &[LesionClass],
    bias: f32,
    prior: f32,
) -> Calibration {
    let mut c = calibration.clone();
    let melanoma = classes.iter().position(|&c| c == LesionClass::Melanoma);
    c.log_prior = classes
        .iter()
        .enumerate()
        .map(|(i, _)| if Some(i) == melanoma { prior } else { 0.0 })
        .collect();
    c.decision_rule = DecisionRule::two_step(classes, bias).expect("checked by the caller");
    c
}

/// The smallest melanoma log prior (bisection: more prior never finds fewer melanomas) whose
/// rule finds `target` of the pooled melanomas.
fn prior_for_sensitivity(
    calibration: &Calibration,
    classes: &[LesionClass],
    sources: &[SourceLogits<'_>],
    bias: f32,
    target: f64,
) -> f32 {
    let melanoma = classes.iter().position(|&c| c == LesionClass::Melanoma);
    let found = |prior: f32| {
        let rule = with_rule(calibration, classes, bias, prior);
        let (mut hit, mut all) = (0usize, 0usize);
        for s in sources {
            for (l, &t) in s.logits.iter().zip(s.truth) {
                if Some(t) == melanoma {
                    all += 1;
                    hit += usize::from(Some(rule.decision(l)) == melanoma);
                }
            }
        }
        hit as f64 / all.max(1) as f64
    };
    let (mut low, mut high) = (-10f32, 10f32);
    if found(low) >= target {
        return low;
    }
    for _ in 0..40 {
        let mid = (low + high) / 2.0;
        match found(mid) >= target {
            true => high = mid,
            false => low = mid,
        }
    }
    high
}

fn assess(
    calibration: &Calibration,
    classes: &[LesionClass],
    sources: &[SourceLogits<'_>],
    bias: f32,
    prior: f32,
) -> TwoStepFit {
    let rule = with_rule(calibration, classes, bias, prior);
    let melanoma = classes.iter().position(|&c| c == LesionClass::Melanoma);
    let (mut hit, mut all) = (0usize, 0usize);
    let per_source: Vec<SourceFit> = sources
        .iter()
        .map(|s| {
            let predicted: Vec<usize> = s.logits.iter().map(|l| rule.decision(l)).collect();
            let matrix = metrics::confusion(s.truth, &predicted, classes.len());
            let m = melanoma.expect("checked by the caller");
            let positives = matrix[m].iter().sum::<u64>();
            let negatives = matrix.iter().map(|r| r.iter().sum::<u64>()).sum::<u64>() - positives;
            let called: u64 = matrix.iter().map(|r| r[m]).sum();
            hit += matrix[m][m] as usize;
            all += positives as usize;
            SourceFit {
                source: s.name.clone(),
                images: s.truth.len(),
                balanced_accuracy: metrics::balanced_accuracy(&matrix),
                melanoma_sensitivity: (positives > 0)
                    .then(|| matrix[m][m] as f64 / positives as f64),
                melanoma_specificity: (negatives > 0)
                    .then(|| 1.0 - (called - matrix[m][m]) as f64 / negatives as f64),
            }
        })
        .collect();
    TwoStepFit {
        melanoma_log_prior: prior,
        melanocytic_bias: bias,
        pooled_melanoma_sensitivity: hit as f64 / all.max(1) as f64,
        mean_balanced_accuracy: per_source.iter().map(|s| s.balanced_accuracy).sum::<f64>()
            / per_source.len().max(1) as f64,
        per_source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LesionClass::{BenignKeratosis as Bkl, MelanocyticNevi as Nv, Melanoma as Mel};

    /// Two sources: on the second, a keratosis logit steals from nevi (what off-source images
    /// do), so only the melanocytic step with a bias keeps them melanocytic.
    #[test]
    fn the_fit_reaches_the_sensitivity_on_the_pooled_melanomas() {
        let classes = [Bkl, Mel, Nv];
        let first: Vec<Vec<f32>> = vec![
            vec![2.0, 0.0, 0.0],
            vec![1.5, 0.1, -0.5],
            vec![0.0, 1.0, 0.5],
            vec![0.0, 0.8, 0.9],
            vec![0.0, 0.2, 1.5],
            vec![0.0, -0.5, 2.0],
        ];
        let second: Vec<Vec<f32>> = vec![
            vec![1.2, 0.6, 0.2],
            vec![1.0, -0.2, 0.9],
            vec![1.1, -0.4, 0.8],
            vec![2.5, -1.0, 0.0],
        ];
        let (t1, t2) = ([0, 0, 1, 1, 2, 2], [1, 2, 2, 0]);
        let sources = [
            SourceLogits {
                name: "a".into(),
                logits: &first,
                truth: &t1,
            },
            SourceLogits {
                name: "b".into(),
                logits: &second,
                truth: &t2,
            },
        ];
        let mut calibration = Calibration::default();
        let fit = fit_two_step(&mut calibration, &classes, &sources, 0.99).unwrap();
        assert_eq!(fit.pooled_melanoma_sensitivity, 1.0);
        let melanomas_found = [(&first[2], 1), (&first[3], 1), (&second[0], 1)]
            .iter()
            .all(|(l, m)| calibration.decision(l) == *m);
        assert!(melanomas_found, "{fit:?}");
        assert!(matches!(
            calibration.decision_rule,
            DecisionRule::TwoStep { melanocytic_bias, .. } if melanocytic_bias == fit.melanocytic_bias
        ));
        assert_eq!(calibration.log_prior[1], fit.melanoma_log_prior);
        // The objective is each source's balanced accuracy under the very rule written.
        let predicted: Vec<usize> = second.iter().map(|l| calibration.decision(l)).collect();
        let ba = metrics::balanced_accuracy(&metrics::confusion(&t2, &predicted, 3));
        assert!((ba - fit.per_source[1].balanced_accuracy).abs() < 1e-12);
    }

    #[test]
    fn no_fit_without_melanoma_and_nevi() {
        let logits = vec![vec![0.0f32, 1.0]];
        let sources = [SourceLogits {
            name: "a".into(),
            logits: &logits,
            truth: &[0],
        }];
        let mut c = Calibration::default();
        assert!(fit_two_step(&mut c, &[Bkl, Mel], &sources, 0.85).is_none());
        assert_eq!(c, Calibration::default());
    }
}
