//! The whole rule from one row of logits to an answer: calibrated probabilities, the one
//! argmax, the dermoscopy gate and the Unknown threshold.

use super::{Calibration, DecisionRule, GateScore};
use crate::error::{Error, Result};
use crate::prediction::{Prediction, UnknownReason};
use crate::taxonomy::LesionClass;

impl Calibration {
    /// The calibrated probabilities of one row of logits, `softmax(logits / temperature +
    /// log_prior)`, computed in `f64`. Training, evaluation and serving all call this.
    pub fn probabilities(&self, logits: &[f32]) -> Vec<f64> {
        let scaled = self.scaled(logits);
        let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exp: Vec<f64> = scaled.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = exp.iter().sum();
        exp.iter().map(|e| e / sum).collect()
    }

    fn scaled(&self, logits: &[f32]) -> Vec<f64> {
        let temperature = f64::from(self.temperature);
        logits
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                f64::from(l) / temperature + self.log_prior.get(i).map_or(0.0, |&p| f64::from(p))
            })
            .collect()
    }

    /// The index of the answer for one row of logits (the first on ties): by the manifest's
    /// [`DecisionRule`] (the most probable class unless it names another), or for a format-1
    /// calibration with a `decision_bias` the largest `logit + bias`.
    pub fn decision(&self, logits: &[f32]) -> usize {
        argmax(self.decision_scores(logits))
    }

    /// The scores [`Calibration::decision`] compares, in units of log probability: the answer
    /// is the largest, and its lead over the runner-up is how far the answer is from changing.
    /// For a format-1 calibration with a `decision_bias`, `logit + bias`.
    pub(crate) fn decision_scores(&self, logits: &[f32]) -> Vec<f64> {
        if !self.decision_bias.is_empty() {
            return logits
                .iter()
                .zip(&self.decision_bias)
                .map(|(&l, &b)| f64::from(l + b))
                .collect();
        }
        let scaled = self.scaled(logits);
        match self.decision_rule {
            DecisionRule::MostProbable => scaled,
            DecisionRule::TwoStep {
                melanoma_output,
                nevus_output,
                melanocytic_bias,
            } => two_step_scores(
                scaled,
                melanoma_output,
                nevus_output,
                f64::from(melanocytic_bias),
            ),
        }
    }

    /// The calibrated probability of the answer for one row of logits (what a prediction
    /// shows as its confidence, before the Unknown threshold).
    pub fn confidence(&self, logits: &[f32]) -> f32 {
        let probabilities = self.probabilities(logits);
        probabilities
            .get(self.decision(logits))
            .map_or(f32::NAN, |&p| p as f32)
    }

    /// The gate's score for one row of logits and the network's own score (its second output,
    /// if it has one); `None` without a gate.
    pub fn gate_score(&self, logits: &[f32], network_score: Option<f32>) -> Option<f32> {
        let gate = self.dermoscopy_gate.as_ref()?;
        match gate.score {
            // A missing network score fails closed: NaN is above no threshold, so refused.
            GateScore::Mahalanobis | GateScore::DermoscopyHead => {
                Some(network_score.unwrap_or(f32::NAN))
            }
            GateScore::Energy => Some(self.energy(logits)),
        }
    }

    /// `-T · logsumexp(logits / T)`: low for inputs like the training data.
    pub fn energy(&self, logits: &[f32]) -> f32 {
        let t = f64::from(self.temperature);
        let scaled: Vec<f64> = logits.iter().map(|&l| f64::from(l) / t).collect();
        let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = scaled.iter().map(|l| (l - max).exp()).sum();
        (-t * (max + sum.ln())) as f32
    }

    /// The whole rule for one row of logits of a network trained on `classes` (in output
    /// order), with the network's out-of-distribution score if it returns one: calibrated
    /// probabilities, the answer, Unknown when the gate refuses the image or the answer is
    /// below the threshold. A row that is not one logit per class is
    /// [`Error::MetadataMismatch`].
    pub fn prediction(
        &self,
        classes: &[LesionClass],
        logits: &[f32],
        network_score: Option<f32>,
    ) -> Result<Prediction> {
        if logits.len() != classes.len() || classes.is_empty() {
            return Err(Error::MetadataMismatch(format!(
                "{} logits for {} classes",
                logits.len(),
                classes.len()
            )));
        }
        let probabilities = self.probabilities(logits);
        let prediction = Prediction::with_decision(
            classes
                .iter()
                .copied()
                .zip(probabilities.iter().map(|&p| p as f32)),
            classes[self.decision(logits)],
            self.unknown_threshold,
        );
        match (
            self.gate_score(logits, network_score),
            &self.dermoscopy_gate,
        ) {
            (Some(score), Some(gate)) => Ok(prediction.gated(score, gate.threshold)),
            _ => Ok(prediction),
        }
    }
}

impl Default for Calibration {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            unknown_threshold: 0.0,
            log_prior: Vec::new(),
            decision_bias: Vec::new(),
            dermoscopy_gate: None,
            decision_rule: DecisionRule::MostProbable,
        }
    }
}

impl Prediction {
    /// Builds a prediction from calibrated probabilities, answering the most probable class,
    /// or [`LesionClass::Unknown`] when its probability is below `unknown_threshold`.
    ///
    /// `probabilities` may come in any order (e.g. the model's output order); they are kept in
    /// the stable order of [`LesionClass::ALL`]. Ties go to the class earlier in that order.
    pub fn from_probabilities(
        probabilities: impl IntoIterator<Item = (LesionClass, f32)>,
        unknown_threshold: f32,
    ) -> Self {
        let mut probabilities: Vec<(LesionClass, f32)> = probabilities.into_iter().collect();
        probabilities.sort_by_key(|(class, _)| *class);
        let decision = most_probable(&probabilities).unwrap_or(LesionClass::Unknown);
        Self::with_decision(probabilities, decision, unknown_threshold)
    }

    /// Builds a prediction whose answer was decided by another rule (e.g. the balanced
    /// decision of [`crate::Calibration`]); the confidence is that class's probability, and
    /// below `unknown_threshold` the answer is [`LesionClass::Unknown`].
    pub fn with_decision(
        probabilities: impl IntoIterator<Item = (LesionClass, f32)>,
        decision: LesionClass,
        unknown_threshold: f32,
    ) -> Self {
        let mut probabilities: Vec<(LesionClass, f32)> = probabilities.into_iter().collect();
        probabilities.sort_by_key(|(class, _)| *class);
        let confidence = probabilities
            .iter()
            .find(|(c, _)| *c == decision)
            .map_or(0.0, |(_, p)| *p);
        // NaN compares as neither, so it too is an abstention.
        let confident = confidence >= unknown_threshold;
        Self {
            class: if confident {
                decision
            } else {
                LesionClass::Unknown
            },
            best_guess: decision,
            confidence,
            probabilities,
            unknown_reason: (!confident).then_some(UnknownReason::LowConfidence),
            ood_score: None,
            dicom: None,
        }
    }

    /// Applies an out-of-distribution gate: records `score`, and above `threshold` (or for a
    /// NaN score) the answer is Unknown because the image is not dermoscopy, whatever the
    /// lesion classes said.
    pub fn gated(mut self, score: f32, threshold: f32) -> Self {
        self.ood_score = Some(score);
        // NaN compares as neither, so it is refused too.
        let accepted = score <= threshold;
        if !accepted {
            self.class = LesionClass::Unknown;
            self.unknown_reason = Some(UnknownReason::NotDermoscopy);
        }
        self
    }
}

/// The two-step rule's scores from the log probabilities (up to one constant): each
/// non-melanocytic class keeps its own; the melanocytic group scores `ln(p(MEL) + p(NV)) +
/// bias`, given to whichever of the two is more probable, and the other of the two scores
/// that less their log ratio. So the argmax is the rule's answer, and the lead over the
/// runner-up is the nearer of the rule's two boundaries. Outputs out of range leave the
/// scores as they are (the manifest check refuses such a rule).
fn two_step_scores(mut scores: Vec<f64>, melanoma: usize, nevus: usize, bias: f64) -> Vec<f64> {
    let (Some(&m), Some(&n)) = (scores.get(melanoma), scores.get(nevus)) else {
        return scores;
    };
    let high = m.max(n);
    let group = high + ((m - high).exp() + (n - high).exp()).ln() + bias;
    scores[melanoma] = group + (m - n).min(0.0);
    scores[nevus] = group + (n - m).min(0.0);
    scores
}

/// The most probable class (of equal ones, the first listed); `None` for none.
pub(crate) fn most_probable(probabilities: &[(LesionClass, f32)]) -> Option<LesionClass> {
    let best = argmax(probabilities.iter().map(|&(_, p)| f64::from(p)));
    probabilities.get(best).map(|&(class, _)| class)
}

/// The index of the largest score, the first on ties; NaN never wins (all NaN: 0). The one
/// argmax of the crate: the answer, the best guess and a prediction read back all use it, so
/// they break ties alike.
pub(crate) fn argmax(scores: impl IntoIterator<Item = f64>) -> usize {
    let mut best = (0, f64::NAN);
    for (i, score) in scores.into_iter().enumerate() {
        if score > best.1 || (best.1.is_nan() && !score.is_nan()) {
            best = (i, score);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_of_ties_and_never_nan() {
        assert_eq!(argmax([1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax([f64::NAN, 0.5, f64::NAN, 0.7]), 3);
        assert_eq!(argmax([0.2, f64::NAN]), 0);
        assert_eq!(argmax([f64::NAN, f64::NAN]), 0);
        assert_eq!(argmax(std::iter::empty()), 0);
    }

    const CLASSES: [LesionClass; 4] = [
        LesionClass::BasalCellCarcinoma,
        LesionClass::BenignKeratosis,
        LesionClass::Melanoma,
        LesionClass::MelanocyticNevi,
    ];

    fn two_step(bias: f32, melanoma_log_prior: f32) -> Calibration {
        Calibration {
            log_prior: vec![0.0, 0.0, melanoma_log_prior, 0.0],
            decision_rule: DecisionRule::two_step(&CLASSES, bias).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn the_two_step_rule_groups_melanoma_with_nevi_first() {
        // BKL is the most probable class, but melanoma and nevi together outweigh it.
        let logits = [-3.0, 0.0, -0.4, -0.5];
        assert_eq!(Calibration::default().decision(&logits), 1);
        assert_eq!(two_step(0.0, 0.0).decision(&logits), 2);
        // Without the group's share the keratosis stays; a negative bias needs more.
        assert_eq!(two_step(-1.0, 0.0).decision(&logits), 1);
        // Melanoma against nevi is their ratio alone, moved by melanoma's log prior.
        assert_eq!(two_step(0.0, -0.2).decision(&logits), 3);
        // The answer's confidence is its own probability, as for every rule.
        let calibration = two_step(0.0, 0.0);
        let p = calibration.probabilities(&logits);
        assert!((f64::from(calibration.confidence(&logits)) - p[2]).abs() < 1e-6);
    }

    #[test]
    fn the_two_step_margin_is_the_nearer_boundary() {
        let calibration = two_step(0.0, 0.0);
        // Melanocytic by a wide margin, melanoma over nevi by 0.1: the margin is 0.1.
        let margins = calibration.margins(&[-5.0, -5.0, 1.0, 0.9], None);
        assert!((margins.answer - 0.1).abs() < 1e-6, "{margins:?}");
        // Not melanocytic: BKL over BCC by 0.3, over the group by more.
        let margins = calibration.margins(&[0.7, 1.0, -4.0, -4.0], None);
        assert!((margins.answer - 0.3).abs() < 1e-6, "{margins:?}");
    }

    #[test]
    fn the_two_step_rule_needs_melanoma_nevi_and_another_class() {
        use LesionClass::{MelanocyticNevi as N, Melanoma as M};
        assert!(DecisionRule::two_step(&[M, N], 0.0).is_err());
        assert!(DecisionRule::two_step(&[M, LesionClass::BenignKeratosis], 0.0).is_err());
        assert_eq!(
            DecisionRule::two_step(&CLASSES, 0.5).unwrap(),
            DecisionRule::TwoStep {
                melanoma_output: 2,
                nevus_output: 3,
                melanocytic_bias: 0.5
            }
        );
    }

    #[test]
    fn a_manifest_is_refused_when_its_two_step_rule_names_other_outputs() {
        let manifest = |rule| {
            let calibration = Calibration {
                decision_rule: rule,
                ..Default::default()
            };
            let mut m =
                crate::testing::test_metadata(&CLASSES, crate::testing::small_input(), calibration);
            m.weights.file = "m.pt".into();
            m.weights.sha256 = "0".repeat(64);
            m
        };
        assert!(manifest(two_step(0.3, 0.0).decision_rule)
            .validate()
            .is_ok());
        for wrong in [
            DecisionRule::TwoStep {
                melanoma_output: 3,
                nevus_output: 2,
                melanocytic_bias: 0.0,
            },
            DecisionRule::TwoStep {
                melanoma_output: 2,
                nevus_output: 7,
                melanocytic_bias: 0.0,
            },
            DecisionRule::TwoStep {
                melanoma_output: 2,
                nevus_output: 3,
                melanocytic_bias: f32::NAN,
            },
        ] {
            let e = manifest(wrong).validate().unwrap_err();
            assert!(matches!(e, Error::MetadataMismatch(_)), "{e}");
        }
        // The rule reads back from the manifest's JSON as it was written.
        let json = serde_json::to_value(two_step(0.3, 0.0)).unwrap();
        assert_eq!(json["decision_rule"]["rule"], "two_step");
        let back: Calibration = serde_json::from_value(json).unwrap();
        assert_eq!(back.decision_rule, two_step(0.3, 0.0).decision_rule);
        // The default rule is not written, so older manifests read as they were.
        let plain = serde_json::to_value(Calibration::default()).unwrap();
        assert!(plain.get("decision_rule").is_none());
    }

    #[test]
    fn a_row_of_logits_that_does_not_fit_the_classes_is_an_error() {
        let classes = [LesionClass::Melanoma, LesionClass::MelanocyticNevi];
        let calibration = Calibration::default();
        assert!(calibration.prediction(&classes, &[0.1, 0.9], None).is_ok());
        for logits in [&[0.1, 0.9, 3.0][..], &[0.1][..], &[][..]] {
            let e = calibration.prediction(&classes, logits, None).unwrap_err();
            assert!(matches!(e, Error::MetadataMismatch(_)), "{e}");
        }
    }
}
