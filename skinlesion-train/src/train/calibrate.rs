//! Calibration fitted on validation logits, with the library's own rule
//! ([`Calibration::prediction`]), so what is fitted here is exactly what is served.

use skinlesion_core::{Calibration, LesionClass};

use crate::metrics;

/// Fits the calibration on validation logits of a network trained with a class-balanced loss.
///
/// The operating point comes first: melanoma's log prior is the smallest offset to its logit
/// that finds `melanoma_sensitivity` of validation melanomas (every other class 0, so the
/// probabilities are balanced). The temperature then minimises the class-balanced NLL of
/// `softmax((logits + offset) / T)`: probabilities calibrated for a population where every
/// lesion type is equally common, whose most probable class is the answer. The Unknown
/// threshold follows with [`abstain`] over the validation images `accepted` by the gate.
pub fn calibrate(
    val_logits: &[Vec<f32>],
    val_truth: &[usize],
    classes: &[LesionClass],
    melanoma_sensitivity: f64,
    accepted: &[bool],
) -> Calibration {
    let mut offset = vec![0f32; classes.len()];
    if let Some(mel) = classes.iter().position(|&c| c == LesionClass::Melanoma) {
        offset[mel] = metrics::bias_for_recall(val_logits, val_truth, mel, melanoma_sensitivity);
    }
    let at = |temperature: f32| Calibration {
        temperature,
        log_prior: match offset.iter().all(|&o| o == 0.0) {
            true => Vec::new(),
            false => offset.iter().map(|o| o / temperature).collect(),
        },
        ..Default::default()
    };
    let weights = metrics::class_balanced_weights(val_truth, classes.len());
    let temperature = metrics::fit_temperature(val_logits, val_truth, &weights, at);
    let mut calibration = at(temperature);
    abstain(&mut calibration, val_logits, val_truth, accepted);
    let decisions: Vec<usize> = val_logits.iter().map(|l| calibration.decision(l)).collect();
    let (raw, confidence, correct) = val_logits
        .iter()
        .zip(&decisions)
        .zip(val_truth)
        .map(|((l, &d), &t)| {
            let shown = calibration.confidence(l);
            (metrics::softmax(l, 1.0)[d], f64::from(shown), d == t)
        })
        .fold(
            (vec![], vec![], vec![]),
            |(mut r, mut c, mut k), (a, b, d)| {
                r.push(a);
                c.push(b);
                k.push(d);
                (r, c, k)
            },
        );
    let matrix = metrics::confusion(val_truth, &decisions, classes.len());
    let ece = |c: &[f64]| metrics::expected_calibration_error(c, &correct, &weights, 15);
    eprintln!(
        "calibration on val: temperature {temperature:.3}, melanoma offset {:.3}; val balanced \
         accuracy {:.4}, class-balanced ECE {:.4} -> {:.4}",
        offset.iter().copied().fold(0f32, f32::max),
        metrics::balanced_accuracy(&matrix),
        ece(&raw),
        ece(&confidence)
    );
    calibration
}

/// Sets the Unknown (`low_confidence`) threshold: the least confident validation answers
/// among the images the gate `accepted`, so that at least [`UNKNOWN_COVERAGE`] of them are
/// answered (the library's own rule computes the confidence, so what is fitted here is what
/// is served). Prints how often the abstained and the answered images are right.
pub fn abstain(
    calibration: &mut Calibration,
    val_logits: &[Vec<f32>],
    val_truth: &[usize],
    accepted: &[bool],
) {
    let (confidence, correct): (Vec<f64>, Vec<bool>) = val_logits
        .iter()
        .zip(val_truth)
        .zip(accepted.iter().chain(std::iter::repeat(&true)))
        .filter(|(_, &a)| a)
        .map(|((l, &t), _)| {
            let shown = calibration.confidence(l);
            (f64::from(shown), calibration.decision(l) == t)
        })
        .unzip();
    let threshold = metrics::coverage_threshold(&confidence, UNKNOWN_COVERAGE);
    calibration.unknown_threshold = threshold as f32;
    let share_right = |answered: bool| {
        let (n, right) = confidence
            .iter()
            .zip(&correct)
            .filter(|(&c, _)| (c >= threshold) == answered)
            .fold((0, 0), |(n, r), (_, &k)| (n + 1, r + usize::from(k)));
        (n, right as f64 / n.max(1) as f64)
    };
    let ((answered, right), (abstained, abstained_right)) = (share_right(true), share_right(false));
    eprintln!(
        "Unknown below {threshold:.3}: answers {answered} of {} val images (right {right:.3}), \
         abstains on {abstained} (right {abstained_right:.3})",
        confidence.len()
    );
}

/// The Unknown rule: answer at least this share of the validation images the gate accepts,
/// abstaining on the least confident rest (see the model card's coverage-accuracy table).
pub const UNKNOWN_COVERAGE: f64 = 0.95;

/// The log of each class's share of the images an epoch trains on (`counts`, per class),
/// Laplace-smoothed so that a class absent from training stays finite.
pub fn log_prior(counts: &[usize]) -> Vec<f32> {
    let seen: Vec<f64> = counts.iter().map(|&n| n as f64 + 1.0).collect();
    let total: f64 = seen.iter().sum();
    seen.iter().map(|c| (c / total).ln() as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_prior_is_the_smoothed_class_share() {
        // Counts 3, 1, 0 over 4 labels; +1 each over 4 + 3.
        let p = log_prior(&[3, 1, 0]);
        let expected = [4.0f32 / 7.0, 2.0 / 7.0, 1.0 / 7.0].map(f32::ln);
        for (a, b) in p.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn the_answer_is_the_most_probable_class_at_the_operating_point() {
        use LesionClass::*;
        let classes = [Melanoma, MelanocyticNevi];
        // Melanomas whose logit trails the nevus logit: an offset must find 3 of 4.
        let logits: Vec<Vec<f32>> = [[0.0, 1.0], [0.5, 1.0], [0.9, 1.0], [2.0, 0.0]]
            .iter()
            .chain(&[[0.0, 3.0], [0.2, 2.5], [0.1, 2.0], [1.0, 1.2]])
            .map(|r| r.to_vec())
            .collect();
        let truth = [0, 0, 0, 0, 1, 1, 1, 1];
        let c = calibrate(&logits, &truth, &classes, 0.75, &[]);
        assert!(c.decision_bias.is_empty() && c.log_prior[0] > 0.0 && c.log_prior[1] == 0.0);
        let found = (0..4).filter(|&i| c.decision(&logits[i]) == 0).count();
        assert_eq!(found, 3);
        for row in &logits {
            let p = c.prediction(&classes, row, None).unwrap();
            let top = p
                .probabilities()
                .iter()
                .copied()
                .reduce(|a, b| if b.1 > a.1 { b } else { a });
            assert_eq!(Some(p.best_guess()), top.map(|(class, _)| class));
        }
    }
}
