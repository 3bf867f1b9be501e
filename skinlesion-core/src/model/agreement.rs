//! Measuring how often a network in another precision answers as the fp32 network does.

use super::Agreement;
use crate::prediction::{Prediction, UnknownReason};
use crate::taxonomy::LesionClass;

/// Counts, image by image, where two classifiers of one model agree (feature `training`):
/// what `skinlesion-train add-precision` records and the agreement tests check.
#[derive(Debug, Clone)]
pub struct AgreementTally {
    classes: Vec<LesionClass>,
    count: u64,
    same_answer: u64,
    same_gate: u64,
    max_probability_difference: f32,
    /// Per true class: (images, fp32 best guesses right, other best guesses right).
    recall: Vec<(u64, u64, u64)>,
}

impl AgreementTally {
    /// An empty tally for a model trained on `classes`.
    pub fn new(classes: &[LesionClass]) -> Self {
        Self {
            classes: classes.to_vec(),
            count: 0,
            same_answer: 0,
            same_gate: 0,
            max_probability_difference: 0.0,
            recall: vec![(0, 0, 0); classes.len()],
        }
    }

    /// Adds one image's two predictions, and its true class when known and trained.
    pub fn add(&mut self, truth: Option<LesionClass>, fp32: &Prediction, other: &Prediction) {
        let refused = |p: &Prediction| p.unknown_reason() == Some(UnknownReason::NotDermoscopy);
        self.count += 1;
        self.same_answer += u64::from(
            fp32.class() == other.class() && fp32.unknown_reason() == other.unknown_reason(),
        );
        self.same_gate += u64::from(refused(fp32) == refused(other));
        for (&(_, p), &(_, q)) in fp32.probabilities().iter().zip(other.probabilities()) {
            self.max_probability_difference = self.max_probability_difference.max((p - q).abs());
        }
        if let Some(slot) = truth.and_then(|t| self.classes.iter().position(|&c| c == t)) {
            let row = &mut self.recall[slot];
            row.0 += 1;
            row.1 += u64::from(fp32.best_guess() == self.classes[slot]);
            row.2 += u64::from(other.best_guess() == self.classes[slot]);
        }
    }

    /// Images added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The agreement so far; `images` says which images they were.
    pub fn agreement(&self, images: impl Into<String>) -> Agreement {
        let share = |n: u64| n as f64 / self.count.max(1) as f64;
        let balanced = |right: fn(&(u64, u64, u64)) -> u64| {
            let present: Vec<_> = self.recall.iter().filter(|r| r.0 > 0).collect();
            let sum: f64 = present.iter().map(|r| right(r) as f64 / r.0 as f64).sum();
            sum / present.len().max(1) as f64
        };
        Agreement {
            images: images.into(),
            count: self.count,
            same_answer: share(self.same_answer),
            same_gate: share(self.same_gate),
            max_probability_difference: self.max_probability_difference,
            balanced_accuracy_fp32: balanced(|r| r.1),
            balanced_accuracy: balanced(|r| r.2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_calibration as calibration;

    #[test]
    fn counts_answers_gates_differences_and_recall() {
        let classes = [LesionClass::Melanoma, LesionClass::MelanocyticNevi];
        let c = calibration();
        let p = |logits: [f32; 2], gate: f32| c.prediction(&classes, &logits, Some(gate)).unwrap();
        let mut tally = AgreementTally::new(&classes);
        // The same answer.
        tally.add(
            Some(LesionClass::Melanoma),
            &p([3.0, 0.0], -1.0),
            &p([2.9, 0.0], -1.0),
        );
        // Another class: the fp32 guess right, the other's wrong.
        tally.add(
            Some(LesionClass::MelanocyticNevi),
            &p([0.0, 0.3], -1.0),
            &p([0.3, 0.0], -1.0),
        );
        // Refused by one gate only.
        tally.add(None, &p([3.0, 0.0], -1.0), &p([3.0, 0.0], 0.5));
        let a = tally.agreement("three");
        assert_eq!((a.count, a.images.as_str()), (3, "three"));
        assert!((a.same_answer - 1.0 / 3.0).abs() < 1e-9, "{a:?}");
        assert!((a.same_gate - 2.0 / 3.0).abs() < 1e-9, "{a:?}");
        assert!(a.max_probability_difference > 0.14, "{a:?}");
        // Recall per true class: fp32 1 and 1, the other 1 and 0.
        assert!((a.balanced_accuracy_fp32 - 1.0).abs() < 1e-9, "{a:?}");
        assert!((a.balanced_accuracy - 0.5).abs() < 1e-9, "{a:?}");
        assert!(
            a.to_string().starts_with("| three | 3 | 0.3333 | 0.6667 |"),
            "{a}"
        );
    }
}
