//! Calibration fitted on validation logits, with the library's own rule
//! ([`Calibration::prediction`]), so what is fitted here is exactly what is served.

use skinlesion_core::{Calibration, LesionClass};

use crate::metrics;

/// Fits the calibration on validation logits: the log training prior undoes the balanced
/// loss's prior shift, the temperature minimises NLL, the melanoma decision bias is the
/// smallest that finds `melanoma_sensitivity` of validation melanomas, and the Unknown
/// threshold follows the rule of [`metrics::unknown_threshold`] on the calibrated confidence
/// of each answer.
pub fn calibrate(
    val_logits: &[Vec<f32>],
    val_truth: &[usize],
    train_truth: &[usize],
    classes: &[LesionClass],
    melanoma_sensitivity: f64,
) -> Calibration {
    let log_prior = log_prior(train_truth, classes.len());
    let temperature = metrics::fit_temperature(val_logits, val_truth, &log_prior);
    let mut decision_bias = vec![0f32; classes.len()];
    if let Some(mel) = classes.iter().position(|&c| c == LesionClass::Melanoma) {
        decision_bias[mel] =
            metrics::bias_for_recall(val_logits, val_truth, mel, melanoma_sensitivity);
    }
    let mut calibration = Calibration {
        temperature: temperature as f32,
        unknown_threshold: 0.0,
        log_prior,
        decision_bias,
    };
    if calibration.decision_bias.iter().all(|&b| b == 0.0) {
        calibration.decision_bias.clear();
    }
    let mut raw = Vec::new();
    let mut decisions = Vec::new();
    let (confidence, correct): (Vec<f64>, Vec<bool>) = val_logits
        .iter()
        .zip(val_truth)
        .map(|(l, &t)| {
            // The library's own rule, so that what is fitted here is what is served.
            let prediction = calibration.prediction(classes, l);
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
    eprintln!(
        "calibration on val: temperature {temperature:.3} with the log training prior, melanoma \
         decision bias {:.3}, Unknown below {threshold:.3}; val balanced accuracy {:.4}, ECE \
         {:.4} -> {:.4}",
        calibration
            .decision_bias
            .iter()
            .copied()
            .fold(0f32, f32::max),
        metrics::balanced_accuracy(&matrix),
        metrics::expected_calibration_error(&raw, &correct, 15),
        metrics::expected_calibration_error(&confidence, &correct, 15)
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
}
