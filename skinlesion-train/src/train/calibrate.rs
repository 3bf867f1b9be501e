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
/// threshold follows the rule of [`metrics::unknown_threshold`] on that answer's probability.
pub fn calibrate(
    val_logits: &[Vec<f32>],
    val_truth: &[usize],
    classes: &[LesionClass],
    melanoma_sensitivity: f64,
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
    let mut decisions = Vec::new();
    let mut raw = Vec::new();
    let (confidence, correct): (Vec<f64>, Vec<bool>) = val_logits
        .iter()
        .zip(val_truth)
        .map(|(l, &t)| {
            // The library's own rule, so that what is fitted here is what is served.
            let prediction = calibration.prediction(classes, l, None);
            let decision = calibration.decision(l);
            decisions.push(decision);
            raw.push(metrics::softmax(l, 1.0)[decision]);
            (f64::from(prediction.confidence()), decision == t)
        })
        .unzip();
    let threshold = metrics::unknown_threshold(
        &confidence,
        &correct,
        UNKNOWN_MIN_ACCURACY,
        UNKNOWN_MAX_ABSTAIN,
    );
    calibration.unknown_threshold = threshold as f32;
    let matrix = metrics::confusion(val_truth, &decisions, classes.len());
    let ece = |c: &[f64]| metrics::expected_calibration_error(c, &correct, &weights, 15);
    eprintln!(
        "calibration on val: temperature {temperature:.3}, melanoma offset {:.3}, Unknown below \
         {threshold:.3}; val balanced accuracy {:.4}, class-balanced ECE {:.4} -> {:.4}",
        offset.iter().copied().fold(0f32, f32::max),
        metrics::balanced_accuracy(&matrix),
        ece(&raw),
        ece(&confidence)
    );
    calibration
}

/// The Unknown rule's parameters (see [`metrics::unknown_threshold`]): abstain on the least
/// confident predictions while those are right less than half the time, at most 20% of them.
pub const UNKNOWN_MIN_ACCURACY: f64 = 0.5;
pub const UNKNOWN_MAX_ABSTAIN: f64 = 0.2;

/// The log of each class's share of the training labels, Laplace-smoothed so that a class
/// absent from training stays finite.
pub fn log_prior(truth: &[usize], classes: usize) -> Vec<f32> {
    let mut counts = vec![0f64; classes];
    for &t in truth {
        counts[t] += 1.0;
    }
    let total = truth.len() as f64 + classes as f64;
    counts
        .iter()
        .map(|c| ((c + 1.0) / total).ln() as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_prior_is_the_smoothed_class_share() {
        // Counts 3, 1, 0 over 4 labels; +1 each over 4 + 3.
        let p = log_prior(&[0, 0, 0, 1], 3);
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
        let c = calibrate(&logits, &truth, &classes, 0.75);
        assert!(c.decision_bias.is_empty() && c.log_prior[0] > 0.0 && c.log_prior[1] == 0.0);
        let found = (0..4).filter(|&i| c.decision(&logits[i]) == 0).count();
        assert_eq!(found, 3);
        for row in &logits {
            let p = c.prediction(&classes, row, None);
            let top = p
                .probabilities()
                .iter()
                .copied()
                .reduce(|a, b| if b.1 > a.1 { b } else { a });
            assert_eq!(Some(p.best_guess()), top.map(|(class, _)| class));
        }
    }
}
