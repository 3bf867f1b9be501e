//! The result of classifying one image.

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};

use crate::dicom::DicomInfo;
use crate::model::most_probable;
use crate::taxonomy::LesionClass;

/// One classification: the answer, how sure the model is, the calibrated probability of every
/// class the model was trained on, and, when it abstains, why.
///
/// Serializes to the original HTTP API's shape, plus two fields:
/// `{"class_name": "Melanoma", "is_cancerous": true, "confidence": 0.85, "all_predictions":
/// {"Actinic keratosis": 0.01, ...}, "unknown_reason": null, "ood_score": 12.5}`, and, for
/// an image read from a DICOM file, `"dicom": {...}` ([`DicomInfo`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    // Set by the Unknown rule (`model::decision`), read here.
    pub(crate) class: LesionClass,
    pub(crate) best_guess: LesionClass,
    pub(crate) confidence: f32,
    pub(crate) probabilities: Vec<(LesionClass, f32)>,
    pub(crate) unknown_reason: Option<UnknownReason>,
    pub(crate) ood_score: Option<f32>,
    // Boxed: most predictions have none, and it would triple the size of each.
    pub(crate) dicom: Option<Box<DicomInfo>>,
}

/// Why a prediction is Unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownReason {
    /// The image does not look like dermoscopy of a skin lesion (the model's out-of-distribution
    /// gate refused it): its lesion probabilities mean nothing.
    NotDermoscopy,
    /// The image looks like dermoscopy, but no lesion class is probable enough to name.
    LowConfidence,
}

impl UnknownReason {
    /// The wire name: `not_dermoscopy` or `low_confidence`.
    pub fn code(self) -> &'static str {
        match self {
            UnknownReason::NotDermoscopy => "not_dermoscopy",
            UnknownReason::LowConfidence => "low_confidence",
        }
    }

    /// A plain sentence for the person who uploaded the image.
    pub fn explanation(self) -> &'static str {
        match self {
            UnknownReason::NotDermoscopy => {
                "This does not look like a dermoscopic image of a skin lesion, so the model \
                 gives no lesion class."
            }
            UnknownReason::LowConfidence => {
                "The model is not confident enough in any lesion class to name one."
            }
        }
    }
}

impl Prediction {
    /// The answer: a trained class, or [`LesionClass::Unknown`] when the model abstains.
    pub fn class(&self) -> LesionClass {
        self.class
    }

    /// The trained class the model chose, also when the answer is Unknown.
    pub fn best_guess(&self) -> LesionClass {
        self.best_guess
    }

    /// Calibrated probability of [`Prediction::best_guess`], the number the Unknown rule uses.
    pub fn confidence(&self) -> f32 {
        self.confidence
    }

    /// True when the answer is melanoma, basal cell carcinoma or squamous cell carcinoma.
    pub fn is_cancerous(&self) -> bool {
        self.class.is_cancerous()
    }

    /// True when the model abstained.
    pub fn is_unknown(&self) -> bool {
        self.class == LesionClass::Unknown
    }

    /// Why the answer is Unknown; `None` when it is a lesion class.
    pub fn unknown_reason(&self) -> Option<UnknownReason> {
        self.unknown_reason
    }

    /// The out-of-distribution score of the model's gate (larger is less like the training
    /// dermoscopy); `None` for a model without a gate.
    pub fn ood_score(&self) -> Option<f32> {
        self.ood_score
    }

    /// What the DICOM file the image came from says about it (SOP class, modality, body site,
    /// laterality, age, sex; never an identifier); `None` for other inputs.
    pub fn dicom(&self) -> Option<&DicomInfo> {
        self.dicom.as_deref()
    }

    /// Calibrated probability of every trained class, in [`LesionClass::ALL`] order.
    pub fn probabilities(&self) -> &[(LesionClass, f32)] {
        &self.probabilities
    }

    /// The probability of one class; `None` for a class the model was not trained on.
    pub fn probability(&self, class: LesionClass) -> Option<f32> {
        self.probabilities
            .iter()
            .find(|(c, _)| *c == class)
            .map(|(_, p)| *p)
    }
}

/// `all_predictions`: display name → probability, in the stable class order.
struct AllPredictions<'a>(&'a [(LesionClass, f32)]);

impl Serialize for AllPredictions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (class, p) in self.0 {
            map.serialize_entry(class.name(), p)?;
        }
        map.end()
    }
}

impl Serialize for Prediction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = 6 + usize::from(self.dicom.is_some());
        let mut s = serializer.serialize_struct("Prediction", fields)?;
        s.serialize_field("class_name", self.class.name())?;
        s.serialize_field("is_cancerous", &self.is_cancerous())?;
        s.serialize_field("confidence", &self.confidence)?;
        s.serialize_field("all_predictions", &AllPredictions(&self.probabilities))?;
        s.serialize_field("unknown_reason", &self.unknown_reason)?;
        s.serialize_field("ood_score", &self.ood_score)?;
        match &self.dicom {
            Some(dicom) => s.serialize_field("dicom", dicom)?,
            None => s.skip_field("dicom")?,
        }
        s.end()
    }
}

/// The wire shape, for reading predictions back (e.g. an HTTP client).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    class_name: LesionClass,
    #[allow(dead_code)] // derived from the class; read only to reject unknown fields
    is_cancerous: bool,
    confidence: f32,
    all_predictions: std::collections::BTreeMap<LesionClass, f32>,
    // Absent from the original API's answers.
    #[serde(default)]
    unknown_reason: Option<UnknownReason>,
    #[serde(default)]
    ood_score: Option<f32>,
    #[serde(default)]
    dicom: Option<Box<DicomInfo>>,
}

impl<'de> Deserialize<'de> for Prediction {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let probabilities: Vec<_> = wire.all_predictions.into_iter().collect();
        // An answer is its own best guess (a model's decision rule may pick another class
        // than the most probable one); an abstention's best guess is not on the wire, so it
        // reads back as the most probable class.
        let best_guess = match wire.class_name {
            LesionClass::Unknown => most_probable(&probabilities).unwrap_or(wire.class_name),
            answer => answer,
        };
        let unknown_reason = match wire.class_name {
            LesionClass::Unknown => wire.unknown_reason.or(Some(UnknownReason::LowConfidence)),
            _ => None,
        };
        Ok(Self {
            class: wire.class_name,
            best_guess,
            confidence: wire.confidence,
            probabilities,
            unknown_reason,
            ood_score: wire.ood_score,
            dicom: wire.dicom,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LesionClass::*;

    #[test]
    fn serializes_to_the_original_shape_in_stable_order() {
        let p = Prediction::from_probabilities(
            [
                (MelanocyticNevi, 0.1),
                (Melanoma, 0.85),
                (BasalCellCarcinoma, 0.05),
            ],
            0.5,
        );
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"class_name":"Melanoma","is_cancerous":true,"confidence":0.85,"all_predictions":{"Basal cell carcinoma":0.05,"Melanoma":0.85,"Melanocytic nevi":0.1},"unknown_reason":null,"ood_score":null}"#
        );
        let back: Prediction = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn abstains_below_threshold_but_keeps_probabilities() {
        let p = Prediction::from_probabilities([(Melanoma, 0.45), (MelanocyticNevi, 0.55)], 0.6);
        assert_eq!(p.class(), Unknown);
        assert!(p.is_unknown() && !p.is_cancerous());
        assert_eq!(p.best_guess(), MelanocyticNevi);
        assert_eq!(p.confidence(), 0.55);
        assert_eq!(p.probability(Melanoma), Some(0.45));
        assert_eq!(p.probability(Dermatofibroma), None);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["class_name"], "Unknown");
        assert_eq!(json["all_predictions"].as_object().unwrap().len(), 2);
        assert!(json["all_predictions"].get("Unknown").is_none());
    }

    #[test]
    fn a_decided_class_reports_its_own_probability() {
        let p =
            Prediction::with_decision([(Melanoma, 0.35), (MelanocyticNevi, 0.65)], Melanoma, 0.3);
        assert_eq!(p.class(), Melanoma);
        assert_eq!(p.confidence(), 0.35);
        let p =
            Prediction::with_decision([(Melanoma, 0.25), (MelanocyticNevi, 0.75)], Melanoma, 0.3);
        assert_eq!((p.class(), p.best_guess()), (Unknown, Melanoma));
    }

    #[test]
    fn the_gate_refuses_above_its_threshold_whatever_the_classes_say() {
        let sure =
            || Prediction::from_probabilities([(Melanoma, 0.9), (MelanocyticNevi, 0.1)], 0.5);
        let kept = sure().gated(3.0, 4.0);
        assert_eq!((kept.class(), kept.unknown_reason()), (Melanoma, None));
        assert_eq!(kept.ood_score(), Some(3.0));
        let refused = sure().gated(5.0, 4.0);
        assert_eq!(refused.class(), Unknown);
        assert_eq!(refused.unknown_reason(), Some(UnknownReason::NotDermoscopy));
        assert_eq!(
            (refused.best_guess(), refused.confidence()),
            (Melanoma, 0.9)
        );
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(json["unknown_reason"], "not_dermoscopy");
        assert_eq!(json["ood_score"], 5.0);
        let back: Prediction = serde_json::from_value(json).unwrap();
        assert_eq!(back, refused);
        // A NaN score is refused too; low confidence under a passing gate keeps its reason.
        assert!(sure().gated(f32::NAN, 4.0).is_unknown());
        let unsure = Prediction::from_probabilities([(Melanoma, 0.4)], 0.5).gated(1.0, 4.0);
        assert_eq!(unsure.unknown_reason(), Some(UnknownReason::LowConfidence));
    }

    #[test]
    fn an_answer_from_the_original_api_still_reads() {
        let p: Prediction = serde_json::from_str(
            r#"{"class_name":"Unknown","is_cancerous":false,"confidence":0.2,"all_predictions":{"Melanoma":0.2}}"#,
        )
        .unwrap();
        assert_eq!(p.unknown_reason(), Some(UnknownReason::LowConfidence));
        assert_eq!(p.ood_score(), None);
    }

    #[test]
    fn nan_is_an_abstention() {
        let p = Prediction::from_probabilities([(Melanoma, f32::NAN)], 0.0);
        assert_eq!(p.class(), Unknown);
    }
}
