//! Checking a bf16 network's close calls in fp32: how far an answer is from each boundary
//! that decides it, and the bands inside which bf16's rounding may have moved it across.
//!
//! bf16 moves a logit by a few hundredths; that changes an answer only when the answer was
//! that close to a boundary. [`Precision::Bf16Checked`](crate::Precision::Bf16Checked) answers
//! from the bf16 pass and re-runs in fp32 only the images whose margins fall inside the bands
//! that `skinlesion-train add-precision` fitted on labelled images.

use serde::{Deserialize, Serialize};

use super::decision::argmax;
use super::Calibration;

/// How far one image's answer is from each boundary of the rule, in the units the rule
/// compares: the answer's lead over the runner-up (decision scores), the confidence's distance
/// to the Unknown threshold (natural logarithm of probability) and the gate score's distance
/// to the gate's threshold. Infinite where the model has no such boundary; a NaN is 0 (an
/// answer that cannot be trusted is always a close call).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Margins {
    /// The answer's decision score minus the runner-up's.
    pub answer: f64,
    /// |ln(confidence) − ln(Unknown threshold)|.
    pub confidence: f64,
    /// |gate score − gate threshold|.
    pub gate: f64,
}

impl Margins {
    /// Whether any margin is at most its band: fp32 might answer otherwise.
    pub fn within(&self, bands: &Margins) -> bool {
        self.answer <= bands.answer
            || self.confidence <= bands.confidence
            || self.gate <= bands.gate
    }
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x
    }
}

impl Calibration {
    /// The margins of the answer to one row of logits (with the network's gate score, if it
    /// returns one).
    pub fn margins(&self, logits: &[f32], network_score: Option<f32>) -> Margins {
        let scores = self.decision_scores(logits);
        let top = argmax(scores.iter().copied());
        let runner_up = (scores.iter().enumerate())
            .filter(|&(i, _)| i != top)
            .map(|(_, &s)| s)
            .fold(f64::NEG_INFINITY, f64::max);
        let confidence = match self.unknown_threshold > 0.0 {
            true => {
                let p = self
                    .probabilities(logits)
                    .get(top)
                    .copied()
                    .unwrap_or(f64::NAN);
                (p.ln() - f64::from(self.unknown_threshold).ln()).abs()
            }
            false => f64::INFINITY,
        };
        let gate = match (
            self.gate_score(logits, network_score),
            &self.dermoscopy_gate,
        ) {
            (Some(score), Some(gate)) => f64::from(score - gate.threshold).abs(),
            _ => f64::INFINITY,
        };
        Margins {
            answer: finite_or_zero(scores.get(top).copied().unwrap_or(f64::NAN) - runner_up),
            confidence: finite_or_zero(confidence),
            gate: finite_or_zero(gate),
        }
    }

    /// How far another network's row moved each margin's quantity from the fp32 row of the
    /// same image: the largest change between two classes' decision scores, the change of
    /// the log-confidence of the other network's answer, the change of the gate score. What
    /// the bands are fitted on (feature `training`).
    #[cfg(feature = "training")]
    pub fn margin_shifts(
        &self,
        fp32: (&[f32], Option<f32>),
        other: (&[f32], Option<f32>),
    ) -> Margins {
        let (a, b) = (self.decision_scores(fp32.0), self.decision_scores(other.0));
        let moved: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y - x).collect();
        let most = moved.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let least = moved.iter().copied().fold(f64::INFINITY, f64::min);
        let answer = argmax(b.iter().copied());
        let log_p = |logits| {
            let p: Vec<f64> = self.probabilities(logits);
            p.get(answer).map_or(f64::NAN, |p| p.ln())
        };
        let gate = match (
            self.gate_score(fp32.0, fp32.1),
            self.gate_score(other.0, other.1),
        ) {
            (Some(x), Some(y)) => f64::from(y - x).abs(),
            _ => 0.0,
        };
        Margins {
            answer: most - least,
            confidence: (log_p(other.0) - log_p(fp32.0)).abs(),
            gate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_calibration as calibration;

    #[test]
    fn margins_measure_the_distance_to_each_boundary() {
        let c = calibration();
        let m = c.margins(&[2.0, 0.5, 0.0], Some(-0.25));
        assert!((m.answer - 1.5).abs() < 1e-9, "{m:?}");
        let p = c.probabilities(&[2.0, 0.5, 0.0])[0];
        assert!((m.confidence - (p / 0.5).ln().abs()).abs() < 1e-9, "{m:?}");
        assert!((m.gate - 0.25).abs() < 1e-9, "{m:?}");
        // A NaN score is a close call; no threshold and no gate are no boundaries.
        assert_eq!(c.margins(&[2.0, 0.5, 0.0], Some(f32::NAN)).gate, 0.0);
        let plain = Calibration::default().margins(&[2.0, 0.5, 0.0], None);
        assert!(plain.confidence.is_infinite() && plain.gate.is_infinite());
    }

    #[test]
    fn an_answer_is_rechecked_when_any_margin_is_inside_its_band() {
        let bands = Margins {
            answer: 0.1,
            confidence: 0.05,
            gate: 0.2,
        };
        let clear = Margins {
            answer: 1.0,
            confidence: 1.0,
            gate: 1.0,
        };
        assert!(!clear.within(&bands));
        for close in [
            Margins {
                answer: 0.05,
                ..clear
            },
            Margins {
                confidence: 0.05,
                ..clear
            },
            Margins { gate: 0.0, ..clear },
        ] {
            assert!(close.within(&bands), "{close:?}");
        }
    }

    #[cfg(feature = "training")]
    #[test]
    fn shifts_are_what_moved_between_the_two_rows() {
        let c = calibration();
        let s = c.margin_shifts(
            (&[2.0, 0.5, 0.0], Some(-1.0)),
            (&[2.1, 0.4, 0.0], Some(-0.9)),
        );
        // Class 0 rose 0.1 while class 1 fell 0.1: their gap moved 0.2.
        assert!((s.answer - 0.2).abs() < 1e-6, "{s:?}");
        assert!((s.gate - 0.1).abs() < 1e-6, "{s:?}");
        let (a, b) = (
            c.probabilities(&[2.0, 0.5, 0.0]),
            c.probabilities(&[2.1, 0.4, 0.0]),
        );
        assert!(
            (s.confidence - (b[0] / a[0]).ln().abs()).abs() < 1e-9,
            "{s:?}"
        );
    }
}
